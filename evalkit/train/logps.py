"""Sequence log-probs of completions: the one place a model's logits become numbers."""
from __future__ import annotations

import contextlib

import torch


def sequence_logps(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of completion-token log-probs and the completion token count, per row.

    logits (N, T, V) predict input_ids shifted by one; loss_mask (N, T) marks the tokens
    that count. log p(token) = logit[token] - logsumexp(logits), which avoids holding a
    full (N, T, V) log-softmax.
    """
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    mask = loss_mask[:, 1:]
    picked = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1)
    token_logps = (picked - torch.logsumexp(logits, dim=-1)) * mask
    return token_logps.sum(-1), mask.sum(-1)


def autocast(device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`'s type; a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def batch_logps(model, batch: dict[str, torch.Tensor], attn_implementation: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over a batch; returns (sums, lengths) for the B chosen then the B rejected.

    Accepts collate() batches (2B padded rows) and collate_packed() batches (B rows, the
    prompt encoded once). `attn_implementation` defaults to the model's (pass it for a model
    wrapped by DDP, which hides the config).
    """
    if "allowed" not in batch:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        return sequence_logps(out.logits, batch["input_ids"], batch["loss_mask"])
    if attn_implementation is None:
        attn_implementation = getattr(model.config, "_attn_implementation", None)
    if attn_implementation == "sdpa":
        mask = batch["allowed"][:, None]          # SDPA takes a boolean mask: True = may attend
    else:                                         # eager adds the mask to the scores
        dtype = next(model.parameters()).dtype
        if torch.is_autocast_enabled(batch["allowed"].device.type):   # scores are in the autocast dtype
            dtype = torch.get_autocast_dtype(batch["allowed"].device.type)
        mask = torch.zeros(batch["allowed"].shape, dtype=dtype, device=batch["allowed"].device)
        mask.masked_fill_(~batch["allowed"], torch.finfo(dtype).min)
        mask = mask[:, None]
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                attention_mask=mask, use_cache=False)
    logits = out.logits.float()
    lse = torch.logsumexp(logits, dim=-1)                              # (B, W)
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
    sums, lengths = [], []
    for side in ("chosen", "rejected"):
        target, pred, valid = batch[f"{side}_target"], batch[f"{side}_pred"], batch[f"{side}_valid"]
        tokens = batch["input_ids"][rows, target]
        token_logps = (logits[rows, pred, tokens] - lse[rows, pred]) * valid
        sums.append(token_logps.sum(-1))
        lengths.append(valid.sum(-1))
    return torch.cat(sums), torch.cat(lengths)


def reduce_logps(logp_sums: torch.Tensor, lengths: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return logp_sums
    if reduction == "length_average":
        return logp_sums / lengths.clamp(min=1)
    raise ValueError(f"unknown logp reduction {reduction!r}")
