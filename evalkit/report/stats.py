"""Paired bootstrap over per-sample results: is a variant's delta against the base real?

Two overlapping stderr bars say little; resampling the same documents for both models
does. For an entry made of subtasks (MMLU's 57 subjects), documents are resampled within
each subtask and the entry's own aggregate (unweighted or size-weighted mean) is taken.
"""
from __future__ import annotations

import random
from typing import Sequence


def _aggregate(means: Sequence[float], sizes: Sequence[int], how: str) -> float:
    if how == "weighted_mean":
        return sum(m * n for m, n in zip(means, sizes)) / sum(sizes)
    return sum(means) / len(means)


def paired_bootstrap(groups: list[tuple[Sequence[float], Sequence[float]]], how: str = "unweighted_mean",
                     n: int = 2000, seed: int = 0) -> dict:
    """groups: per subtask, (base values, variant values) for the same documents in order.

    Returns {delta, lo, hi, significant}: the observed delta (variant - base) of the
    aggregate and its 95% percentile interval; significant when the interval excludes 0.
    """
    groups = [(list(a), list(b)) for a, b in groups if len(a) and len(a) == len(b)]
    if not groups:
        return {"delta": None, "lo": None, "hi": None, "significant": False, "n_docs": 0}
    sizes = [len(a) for a, _ in groups]
    diffs = [[y - x for x, y in zip(a, b)] for a, b in groups]
    observed = _aggregate([sum(d) / len(d) for d in diffs], sizes, how)
    rng = random.Random(seed)
    stats = []
    for _ in range(n):
        means = []
        for d in diffs:
            k = len(d)
            means.append(sum(d[rng.randrange(k)] for _ in range(k)) / k)
        stats.append(_aggregate(means, sizes, how))
    stats.sort()
    lo, hi = stats[int(0.025 * (n - 1))], stats[int(0.975 * (n - 1))]
    return {"delta": observed, "lo": lo, "hi": hi, "significant": lo > 0 or hi < 0, "n_docs": sum(sizes)}
