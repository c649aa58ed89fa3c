"""Sequence log-probs of completions: the one place a model's logits become numbers."""
from __future__ import annotations

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


def batch_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over a collated batch (chosen rows then rejected rows)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return sequence_logps(out.logits, batch["input_ids"], batch["loss_mask"])


def reduce_logps(logp_sums: torch.Tensor, lengths: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return logp_sums
    if reduction == "length_average":
        return logp_sums / lengths.clamp(min=1)
    raise ValueError(f"unknown logp reduction {reduction!r}")
