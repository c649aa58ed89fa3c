"""Sequence log-probs of completions: the one place a model's logits become numbers.

Two paths give the same numbers. The plain one indexes the model's (rows, tokens, vocab)
logits at the completion positions. The memory-lean one (`install_completion_head`, used by
the trainer) never builds them: the backbone's hidden states at the positions that predict
completion tokens go through the LM head in chunks of rows, keeping only each token's
log-prob, and the backward recomputes each chunk's logits instead of storing them (as
Liger-Kernel's fused linear preference losses do, here in plain torch so it runs on CPU and
GPU alike). Both give per-token log-probs (completion_token_logps), summed per row in float64
(row_sums).
"""
from __future__ import annotations

import contextlib
import types

import torch


def autocast(device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`'s type; a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


# ---------------------------------------------------------------- chunked LM head

CHUNK_ELEMENTS = 1 << 23   # logits per chunk: 8M floats = 32 MB in fp32, whatever the vocabulary


class ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(hidden @ weight.T + bias)[target] per row, chunk by chunk.

    hidden (M, H), weight (V, H), bias (V,) or None, targets (M,) -> (M,) float32. Saves only
    its inputs; backward recomputes each chunk's logits, under the autocast of the forward.
    d logp / d logits = onehot(target) - softmax(logits).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int):
        device = hidden.device.type
        ctx.autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.chunk = chunk
        ctx.save_for_backward(hidden, weight, bias, targets)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logits = _logits(hidden[s:s + chunk], weight, bias)
            out[s:s + chunk] = logits.gather(1, targets[s:s + chunk, None]).squeeze(1) - logits.logsumexp(1)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets = ctx.saved_tensors
        enabled, dtype = ctx.autocast
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b and bias is not None else None
        with torch.autocast(hidden.device.type, dtype=dtype, enabled=enabled):
            for s in range(0, hidden.shape[0], ctx.chunk):
                h, g_out = hidden[s:s + ctx.chunk], grad_out[s:s + ctx.chunk].float()
                logits = _logits(h, weight, bias)
                g = torch.softmax(logits, dim=1).mul_(-g_out[:, None])
                g.scatter_add_(1, targets[s:s + ctx.chunk, None], g_out[:, None])   # (n, V) d/d logits
                # under autocast the matmuls take its dtype, as the forward's did; else the weights'
                if need_h:
                    grad_h[s:s + ctx.chunk] = (g if enabled else g.to(weight.dtype)) @ weight
                if need_w:
                    grad_w += ((g.T @ h) if enabled else (g.to(h.dtype).T @ h)).float()
                if grad_b is not None:
                    grad_b += g.sum(0)
        return (grad_h, grad_w.to(weight.dtype) if need_w else None,
                grad_b.to(bias.dtype) if grad_b is not None else None, None, None)


def _logits(hidden, weight, bias):
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    return logits.float()


def chunked_token_logps(hidden, weight, bias, targets, chunk: int | None = None) -> torch.Tensor:
    chunk = chunk or max(1, CHUNK_ELEMENTS // weight.shape[0])
    return ChunkedTokenLogps.apply(hidden, weight, bias, targets, chunk)


# Configs whose logits are not plain hidden @ lm_head (scaled or soft-capped): those keep the
# plain path, whose numbers come from the model's own forward.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                     "lm_head_multiplier")


def install_completion_head(model) -> bool:
    """Let `model(..., logps_rows=, logps_positions=, logps_targets=)` return per-token
    completion log-probs through the chunked LM head (no full logits); plain calls are unchanged.

    The forward itself is replaced, as TRL's fused LM head does, so DDP / FSDP wrappers still
    run their hooks around it. Returns False (and changes nothing) for models whose logits
    are transformed after the LM head, or without a base model and output embeddings.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(getattr(config, k, None) not in (None, 1.0) for k in _LOGIT_TRANSFORMS):
        return False
    backbone = getattr(model, model.base_model_prefix, None)
    if backbone is None or model.get_output_embeddings() is None:
        return False
    original = model.forward

    # a bound method, like the original: accelerate re-wraps forward.__func__ for autocast
    def forward(self, *args, logps_rows=None, logps_positions=None, logps_targets=None, **kwargs):
        if logps_rows is None:
            return original(*args, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k != "labels" and v is not None}
        kwargs["use_cache"] = False
        # looked up on each call: PEFT and FSDP replace modules after this is installed
        hidden = getattr(self, self.base_model_prefix)(*args, **kwargs).last_hidden_state
        head = self.get_output_embeddings()
        return chunked_token_logps(hidden[logps_rows, logps_positions], head.weight, head.bias, logps_targets)

    model.forward = types.MethodType(forward, model)
    model._evalkit_completion_head = True
    return True


def has_completion_head(model) -> bool:
    inner = model
    for _ in range(4):   # DDP / FSDP / PEFT wrappers keep the model one or two levels down
        if getattr(inner, "_evalkit_completion_head", False):
            return True
        inner = getattr(inner, "module", None) or getattr(inner, "base_model", None) or getattr(inner, "model", None)
        if inner is None:
            return False
    return False


def completion_token_logps(model, batch: dict[str, torch.Tensor], attn_implementation: str | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over a batch; (token_logps, rows): the log-prob of every completion token,
    flat, and the row it belongs to: 0..B-1 the B chosen, B..2B-1 the B rejected (0..B-1 alone
    for a batch of chosen-only examples). Rows come in ascending order and each row's tokens in
    completion order, so a row's k-th entry is its completion's k-th token.

    Accepts collate() batches (2B padded rows) and collate_packed() batches (B rows, the
    prompt encoded once). With the completion head (install_completion_head) only the selected
    positions go through the LM head, chunked; without it the model's full logits are indexed.
    `attn_implementation` defaults to the model's (pass it for a model wrapped by DDP, which
    hides the config).
    """
    if "allowed" not in batch:
        mask = batch["loss_mask"][:, 1:]
        rows, positions = mask.nonzero(as_tuple=True)          # position pos predicts token pos + 1
        targets = batch["input_ids"][rows, positions + 1]
        out_rows = rows
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    else:
        picks = []
        for side in ("chosen", "rejected"):
            r, k = batch[f"{side}_valid"].nonzero(as_tuple=True)
            picks.append((r, batch[f"{side}_pred"][r, k], batch["input_ids"][r, batch[f"{side}_target"][r, k]]))
        rows, positions, targets = (torch.cat([p[i] for p in picks]) for i in range(3))
        out_rows = torch.cat([picks[0][0], picks[1][0] + batch["input_ids"].shape[0]])
        inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
                  "attention_mask": _packed_mask(model, batch["allowed"], attn_implementation)}
    if has_completion_head(model):
        token_logps = model(**inputs, logps_rows=rows, logps_positions=positions, logps_targets=targets)
    else:
        # log p(token) = logit[token] - logsumexp(logits), at the selected positions only
        logits = model(**inputs, use_cache=False).logits[rows, positions].float()
        token_logps = logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)
    return token_logps, out_rows


def _packed_mask(model, allowed: torch.Tensor, attn_implementation: str | None) -> torch.Tensor:
    """The (B, 1, W, W) attention mask of a packed batch, in the form the attention takes."""
    if attn_implementation is None:
        attn_implementation = getattr(model.config, "_attn_implementation", None)
    if attn_implementation == "sdpa":
        return allowed[:, None]                   # SDPA takes a boolean mask: True = may attend
    dtype = next(model.parameters()).dtype        # eager adds the mask to the scores
    if torch.is_autocast_enabled(allowed.device.type):   # scores are in the autocast dtype
        dtype = torch.get_autocast_dtype(allowed.device.type)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def row_sums(token_logps: torch.Tensor, rows: torch.Tensor, n_rows: int, skip: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of completion_token_logps' output: the sum of its token log-probs (float64)
    and how many tokens were summed. `skip` (n_rows,): leave out each row's first skip[row]
    tokens.

    Summed in float64: a sequence of a few hundred tokens sums to hundreds of nats, where
    float32's spacing is ~1e-4.
    """
    if skip is not None:
        counts = torch.bincount(rows, minlength=n_rows)
        first = torch.cumsum(counts, 0) - counts                       # each row's first entry
        index = torch.arange(len(rows), device=rows.device) - first[rows]   # k: the row's k-th token
        keep = index >= skip.to(rows.device)[rows]
        token_logps, rows = token_logps[keep], rows[keep]
    sums = torch.zeros(n_rows, dtype=torch.float64, device=token_logps.device)
    return sums.index_add(0, rows, token_logps.double()), torch.bincount(rows, minlength=n_rows)


def batch_rows(batch: dict[str, torch.Tensor]) -> int:
    """Rows of completion_token_logps' output for this batch: 2B for pairs, B chosen-only."""
    if "allowed" in batch:
        return 2 * batch["input_ids"].shape[0]
    return batch["loss_mask"].shape[0]


def batch_logps(model, batch: dict[str, torch.Tensor], attn_implementation: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over a batch; returns (sums, lengths) for the B chosen then the B rejected
    (the B chosen alone for chosen-only examples): each completion's summed token log-probs
    (float64) and its token count. Batches as completion_token_logps takes them."""
    token_logps, rows = completion_token_logps(model, batch, attn_implementation)
    return row_sums(token_logps, rows, batch_rows(batch))


def reduce_logps(logp_sums: torch.Tensor, lengths: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return logp_sums
    if reduction == "length_average":
        return logp_sums / lengths.clamp(min=1)
    raise ValueError(f"unknown logp reduction {reduction!r}")
