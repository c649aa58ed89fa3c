"""Paired bootstrap over per-sample results: is a variant's delta against the base real?

Two overlapping stderr bars say little; resampling the same documents for both models
does. For an entry made of subtasks (MMLU's 57 subjects), documents are resampled within
each subtask and the entry's own aggregate (unweighted or size-weighted mean) is taken.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def resample_means(values: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """n bootstrap means of `values`: one (n, k) draw of indices, then a row mean."""
    v = np.asarray(values, dtype=np.float64)
    return v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)


def percentile_interval(stats: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval as the order statistics at 2.5% and 97.5% of n-1."""
    s = np.sort(stats)
    n = len(s)
    return float(s[int(0.025 * (n - 1))]), float(s[int(0.975 * (n - 1))])


def paired_bootstrap(groups: list[tuple[Sequence[float], Sequence[float]]], how: str = "unweighted_mean",
                     n: int = 2000, seed: int = 0) -> dict:
    """groups: per subtask, (base values, variant values) for the same documents in order.

    Returns {delta, lo, hi, significant}: the observed delta (variant - base) of the
    aggregate and its 95% percentile interval; significant when the interval excludes 0.
    Vectorised: each subtask's n resamples are one numpy draw (seeded, so a fixed seed
    gives the same interval on every run).
    """
    groups = [(list(a), list(b)) for a, b in groups if len(a) and len(a) == len(b)]
    if not groups:
        return {"delta": None, "lo": None, "hi": None, "significant": False, "n_docs": 0}
    sizes = np.array([len(a) for a, _ in groups], dtype=np.float64)
    diffs = [np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64) for a, b in groups]
    rng = np.random.default_rng(seed)
    means = np.stack([resample_means(d, n, rng) for d in diffs], axis=1)       # (n, subtasks)
    observed_means = np.array([d.mean() for d in diffs])
    if how == "weighted_mean":
        observed = float(observed_means @ sizes / sizes.sum())
        stats = means @ sizes / sizes.sum()
    else:
        observed = float(observed_means.mean())
        stats = means.mean(axis=1)
    lo, hi = percentile_interval(stats)
    return {"delta": observed, "lo": lo, "hi": hi, "significant": lo > 0 or hi < 0, "n_docs": int(sizes.sum())}
