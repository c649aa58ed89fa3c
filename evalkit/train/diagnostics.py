"""What training does to likelihoods beyond the training pairs: two diagnostics the trainer calls.

1. Held-out dispersion (Yan et al., "3D-properties", arXiv 2406.07327). DPO pushes the rejected
   likelihood down, often drags the chosen one with it, and moves the mass to responses that
   are in no pair ("dispersion"). Seen only on the training pairs, the first two look like
   learning; so a few pairs are held out of training (`heldout_pairs`, whole prompts, drawn
   with the seed) and at every logging step the policy's mean log-prob of
     a. the held-out chosen responses,
     b. the held-out rejected responses,
     c. responses to other prompts: held-out pair i's prompt followed by the chosen response of
        the next held-out pair with a different prompt (cyclically), token ids joined; a
        response the prompt did not ask for, in no pair,
   is logged beside the training metrics (heldout_logps_chosen / _rejected / _unseen), with
   the variant's logp_reduction, like logps_chosen. No gradients, one batched pass.

2. Smaug's post-edit view (Pal et al., arXiv 2402.13228). On a pair whose rejected response is
   the chosen one with a small edit, the tokens after the edit are (nearly) the same text in
   both; DPO's push on the rejected tokens there lowers the chosen ones too. For each
   low-edit-distance training pair: the first completion token where chosen and rejected
   differ, and the mean per-token log-prob of the tokens AFTER it (the differing token
   itself excluded), chosen and rejected, under the policy at the start and at the end.
"""
from __future__ import annotations

import logging
import statistics
from typing import Any

import torch

from .data import PreferenceData, TokenizedPair, make_batch
from .logps import autocast, batch_logps, batch_rows, completion_token_logps, reduce_logps, row_sums

log = logging.getLogger("evalkit")

HELDOUT_MAX_SHARE = 4         # hold out at most 1/4 of the pairs
POST_EDIT_MAX_RELATIVE_EDIT = 0.25   # "low edit distance": at most a quarter of the longer completion
POST_EDIT_MAX_PAIRS = 64
UNSEEN_CONSTRUCTION = ("held-out pair i's prompt + the chosen response of the next held-out pair "
                       "with another prompt (cyclically), token ids joined")


def _prompt(p: TokenizedPair) -> tuple[int, ...]:
    return tuple(p.chosen_ids[:p.chosen_prompt_len])


def split_heldout(data: PreferenceData, n: int, seed: int) -> tuple[PreferenceData, list[TokenizedPair]]:
    """(training data, held-out pairs): whole prompts drawn with `seed` until >= n pairs are held
    out, at most a quarter of the data; a prompt with more pairs than still fit is passed over
    and the drawing goes on. None when that leaves fewer than 2 prompts (response (c) needs two),
    with a warning when some were asked for. The held-out pairs share no prompt with the
    training pairs."""
    if n <= 0:
        return data, []
    limit = min(n, len(data) // HELDOUT_MAX_SHARE)
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(data.pairs):
        by_prompt.setdefault(_prompt(p), []).append(i)
    groups = list(by_prompt.values())
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    held: list[int] = []
    taken = 0
    for g in order:
        if len(held) >= limit:
            break
        if len(held) + len(groups[g]) <= limit:      # a prompt too large for what is left: skip it
            held += groups[g]
            taken += 1
    if taken < 2 or len(held) >= len(data):
        sizes = sorted(len(g) for g in groups)
        log.warning("heldout_pairs %d: nothing held out of %s (%d pairs, %d prompts with %d to %d pairs each): "
                    "the split takes whole prompts, at least two, and at most %d pairs (a quarter of the data); "
                    "the held-out diagnostic is off for this run", n, data.source or "the data", len(data),
                    len(groups), sizes[0] if sizes else 0, sizes[-1] if sizes else 0, limit)
        return data, []
    if len(held) < n:
        log.warning("heldout_pairs %d: %d pairs held out of %s (%d pairs): at most a quarter of the data, "
                    "whole prompts", n, len(held), data.source or "the data", len(data))
    held_set = set(held)
    train = [p for i, p in enumerate(data.pairs) if i not in held_set]
    return PreferenceData(train, data.n_skipped, data.source, data.counts), [data.pairs[i] for i in sorted(held)]


def unseen_sequences(heldout: list[TokenizedPair]) -> list[tuple[list[int], int]]:
    """Response (c) for each held-out pair: (token ids, prompt length)."""
    out = []
    for i, p in enumerate(heldout):
        for k in range(1, len(heldout)):
            other = heldout[(i + k) % len(heldout)]
            if _prompt(other) != _prompt(p):
                out.append((p.chosen_ids[:p.chosen_prompt_len] + other.chosen_ids[other.chosen_prompt_len:],
                            p.chosen_prompt_len))
                break
    return out


@torch.no_grad()
def sequence_logps(model, seqs: list[tuple[list[int], int]], pad_id: int, device, batch_size: int,
                   autocast_dtype=None, attn: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs and completion lengths of (ids, prompt_len) sequences,
    two to a pseudo-pair through the trainer's own batch path (padded, not packed)."""
    if not seqs:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    was = model.training
    model.eval()
    padded = seqs + seqs[-1:] * (len(seqs) % 2)
    pairs = [TokenizedPair(a, b, na, nb, 0, "") for (a, na), (b, nb) in zip(padded[0::2], padded[1::2])]
    sums, lengths = [], []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        batch = {k: v.to(device) for k, v in make_batch(chunk, pad_id, pack=False).items()
                 if k not in ("n_tokens", "n_processed")}
        with autocast(device, autocast_dtype):
            s_, l_ = batch_logps(model, batch, attn)
        b = len(chunk)
        # rows are [a_1..a_b, b_1..b_b]: back to a_1, b_1, a_2, b_2, ...
        sums.append(torch.stack([s_[:b], s_[b:]], 1).reshape(-1).double().cpu())
        lengths.append(torch.stack([l_[:b], l_[b:]], 1).reshape(-1).cpu())
    model.train(was)
    return torch.cat(sums)[:len(seqs)], torch.cat(lengths)[:len(seqs)]


class HeldOut:
    """The held-out sequences of one training run and their mean log-probs under a model."""
    KEYS = ("chosen", "rejected", "unseen")

    def __init__(self, pairs: list[TokenizedPair], reduction: str):
        self.pairs, self.reduction = pairs, reduction
        self.groups = {"chosen": [(p.chosen_ids, p.chosen_prompt_len) for p in pairs],
                       "rejected": [(p.rejected_ids, p.rejected_prompt_len) for p in pairs],
                       "unseen": unseen_sequences(pairs)}
        self.start: dict[str, float] | None = None

    def measure(self, model, pad_id, device, batch_size, autocast_dtype=None, attn=None) -> dict[str, float]:
        """{"heldout_logps_chosen": ..., "_rejected": ..., "_unseen": ...}: means over the held-out set."""
        seqs = [s for k in self.KEYS for s in self.groups[k]]
        sums, lengths = sequence_logps(model, seqs, pad_id, device, batch_size, autocast_dtype, attn)
        values = reduce_logps(sums, lengths, self.reduction)
        out, at = {}, 0
        for k in self.KEYS:
            n = len(self.groups[k])
            out[f"heldout_logps_{k}"] = values[at:at + n].mean().item()
            at += n
        return out

    def summary(self, end: dict[str, float]) -> dict[str, Any]:
        return {"n_pairs": len(self.pairs), "pairs": [p.where for p in self.pairs], "reduction": self.reduction,
                "unseen": UNSEEN_CONSTRUCTION,
                "start": {k: (self.start or {}).get(f"heldout_logps_{k}") for k in self.KEYS},
                "end": {k: end.get(f"heldout_logps_{k}") for k in self.KEYS}}


# ---------------------------------------------------------------- post-edit

def first_difference(a: list[int], b: list[int]) -> int:
    """Index of the first position where two token lists differ (the shorter length when one
    is a prefix of the other)."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def post_edit_skip(p: TokenizedPair) -> int:
    """The completion tokens the post-edit view leaves out of both sides of a pair: their
    common start and the first differing token."""
    return first_difference(p.chosen_ids[p.chosen_prompt_len:], p.rejected_ids[p.rejected_prompt_len:]) + 1


def post_edit_pairs(pairs: list[TokenizedPair], max_relative_edit: float = POST_EDIT_MAX_RELATIVE_EDIT,
                    max_pairs: int = POST_EDIT_MAX_PAIRS) -> tuple[list[int], list[int], list[int]]:
    """(indices into `pairs`, tokens skipped, edit distances) of the first `max_pairs`
    low-edit-distance pairs. The skipped tokens, the same count on both sides, are the
    completions' common start and the first differing token, so only the tokens after it
    count. Pairs with nothing after it on either side are left out."""
    index, skip, dists = [], [], []
    for i, p in enumerate(pairs):
        c, r = p.chosen_ids[p.chosen_prompt_len:], p.rejected_ids[p.rejected_prompt_len:]
        if p.edit_distance > max_relative_edit * max(len(c), len(r)):
            continue
        n_skip = post_edit_skip(p)
        if n_skip >= len(c) or n_skip >= len(r):
            continue
        index.append(i)
        skip.append(n_skip)
        dists.append(p.edit_distance)
        if len(index) >= max_pairs:
            break
    return index, skip, dists


@torch.no_grad()
def pair_logps(model, pairs: list[TokenizedPair], pad_id: int, device, batch_size: int, pack: bool,
               autocast_dtype=None, attn: str | None = None, skip: list[int] | None = None
               ) -> dict[str, torch.Tensor | None]:
    """Summed completion log-probs of `pairs` (at least one), in their order, `batch_size`
    pairs to a forward through the trainer's batch path (packed when `pack` and make_batch
    can), in eval mode: chosen_logps and rejected_logps (None for chosen-only examples),
    float64.

    With `skip` (one count per pair), from the same forwards: chosen_tail_logps,
    chosen_tail_lengths, rejected_tail_logps, rejected_tail_lengths, the sums and token
    counts leaving out each completion's first skip[i] tokens.
    """
    was = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        batch = {k: v.to(device) for k, v in make_batch(chunk, pad_id, pack).items()
                 if k not in ("n_tokens", "n_processed")}
        with autocast(device, autocast_dtype):
            token_logps, rows = completion_token_logps(model, batch, attn)
        n_rows, b = batch_rows(batch), len(chunk)
        sums, _ = row_sums(token_logps, rows, n_rows)
        found = {"chosen_logps": sums[:b], "rejected_logps": sums[b:]}
        if skip is not None:
            cut = torch.tensor(skip[s:s + b], device=rows.device).repeat(n_rows // b)
            tail, tail_lengths = row_sums(token_logps, rows, n_rows, cut)
            found.update(chosen_tail_logps=tail[:b], rejected_tail_logps=tail[b:],
                         chosen_tail_lengths=tail_lengths[:b], rejected_tail_lengths=tail_lengths[b:])
        for k, v in found.items():
            parts.setdefault(k, []).append(v.cpu())
    model.train(was)
    out = {k: torch.cat(v) for k, v in parts.items()}
    if pairs[0].chosen_only:
        out = {k: None if k.startswith("rejected") else v for k, v in out.items()}
    return out


class PostEdit:
    """Smaug's token-level view on the first low-edit-distance training pairs."""

    def __init__(self, pairs: list[TokenizedPair]):
        self.pairs = pairs
        self.index, skip, self.dists = post_edit_pairs(pairs)
        self.skip = dict(zip(self.index, skip))      # pair index -> completion tokens left out
        self.start: dict[str, float | None] | None = None

    def values(self, scores: dict[str, torch.Tensor | None], order: list[int]) -> dict[str, float | None]:
        """{"chosen", "rejected"}: the mean over the selected pairs of the per-token log-prob after
        the first differing token, from `scores`' chosen/rejected_tail_logps and _tail_lengths
        of the pairs `order` (indices into the pairs, every selected one among them), whose
        tails leave out self.skip[i] tokens: pair_logps() with skip=self.skip_for(order), or
        compute_reference_logps() with order = every pair."""
        if not self.index:
            return {"chosen": None, "rejected": None}
        at = {i: k for k, i in enumerate(order)}
        rows = torch.tensor([at[i] for i in self.index])
        return {side: reduce_logps(scores[f"{side}_tail_logps"][rows], scores[f"{side}_tail_lengths"][rows],
                                   "length_average").mean().item() for side in ("chosen", "rejected")}

    def skip_for(self, order: list[int]) -> list[int]:
        """The tokens to leave out of each pair in `order` (0 for a pair not selected)."""
        return [self.skip.get(i, 0) for i in order]

    def measure(self, model, pad_id, device, batch_size, pack, autocast_dtype=None, attn=None
                ) -> dict[str, float | None]:
        """values() from forwards over the selected pairs alone (no forward when there are none)."""
        if not self.index:
            return self.values({}, [])
        scores = pair_logps(model, [self.pairs[i] for i in self.index], pad_id, device, batch_size, pack,
                            autocast_dtype, attn, self.skip_for(self.index))
        return self.values(scores, self.index)

    def summary(self, end: dict[str, float | None]) -> dict[str, Any]:
        return {"n_pairs": len(self.index), "max_relative_edit": POST_EDIT_MAX_RELATIVE_EDIT,
                "edit_distance_median": statistics.median(self.dists) if self.dists else None,
                "reduction": "mean per token after the first differing token",
                "start": self.start or {"chosen": None, "rejected": None}, "end": end}
