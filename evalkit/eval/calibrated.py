"""The calibrated verdict: benchmark items against distribution-matched unseen twins.

The Shi test compares an item with neighbours the reference writes; when the reference does
not know the domain well, every real item beats its neighbours and the test flags unseen
items as readily as memorised ones. Here each item x gets an unseen twin x' of the same
form and length, and the membership statistic is the target's loss relative to the
reference:

    d(x) = L_target(x) - L_reference(x)

For a model that never saw the benchmark, d(x) and d(x') come from the same distribution
(the twin is as typical as the item, and the reference cancels what is easy or hard about
the text). For a model that saw x, d(x) is lower. Per item, delta = d(x) - d(x'); the
evidence is mean(delta) with a 95% bootstrap interval and a one-sided sign-flip permutation
p-value (H0: deltas are symmetric around 0).

Twins: `numbers` changes every number in the text consistently (the same number gets the
same replacement, same digit count; GSM8K and any numeric item); `<file.jsonl>` is a
user-given unseen set of the same kind ("text" field), compared unpaired (bootstrap of both
groups, label permutation).

Verdict: `seen` when p < alpha, the interval lies below 0 and the mean is below -margin, and
the twins are an unseen set (a file); `not seen` when the interval's lower end is above -margin
(any membership effect is smaller than the margin); otherwise `undecided`. Number twins give
`undecided` whatever the numbers read (kept as `reading`), because they mislead both ways on real
GSM8K: a model tuned on OTHER GSM8K items prefers real numbers to changed ones as much as a
memorising one would (a false `seen`), and a model that memorised the items finds their number
twins nearly as familiar (a false `not seen`). A verdict needs an unseen set of the same kind
(twins: FILE.jsonl, e.g. another split no model trained on).

Each result also states what the run could detect: the interval's half-width, the minimum
detectable effect (one-sided test at alpha with 80% power, from the bootstrap standard error)
and, when the interval is wider than the margin, about how many items a `not seen` would need.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

_NUMBER = re.compile(r"\d+")


@dataclass
class VerdictParams:
    twins: str = "numbers"     # "numbers" or a path to an unseen JSONL ("text" field)
    margin: float = 0.05       # nats: smaller membership effects read as "not seen"
    alpha: float = 0.01
    bootstrap: int = 2000
    permutations: int = 5000
    seed: int = 0
    min_pairs: int = 10


def number_twin(text: str, seed: int) -> str | None:
    """`text` with each distinct number replaced by another of the same digit count, the same
    everywhere it occurs; None when the text has no number."""
    found = list(dict.fromkeys(_NUMBER.findall(text)))
    if not found:
        return None
    rng = random.Random(f"{seed}:{text}")
    mapping: dict[str, str] = {}
    used = set(found)
    for s in found:
        for _ in range(100):
            if len(s) == 1:
                new = str(rng.randint(1 if s != "0" else 0, 9))
            else:
                new = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(len(s) - 1))
            if new not in used:
                break
        mapping[s] = new
        used.add(new)
    return _NUMBER.sub(lambda m: mapping[m.group(0)], text)


def twins_problem(twins: str, n_examples: int) -> str | None:
    """Why `twins` cannot serve a check of n_examples items (None when it can): 'numbers', or
    a JSONL/JSON file of at least n_examples texts. Read before any model loads."""
    if twins == "numbers":
        return None
    from .benchmark_texts import load_examples
    p = Path(twins)
    if p.suffix not in (".jsonl", ".json") or not p.is_file():
        return f"{twins}: use 'numbers' or an existing JSONL with a 'text' field"
    _, examples = load_examples(str(p))
    if not examples:
        return f"{twins}: no twins in the file"
    if len(examples) < n_examples:
        return (f"{twins}: {len(examples)} twins, fewer than the {n_examples} examples checked per benchmark "
                f"(give at least as many, or fewer examples)")
    return None


def twins_of(texts: list[str], vp: VerdictParams) -> tuple[list[str | None] | list[str], bool]:
    """(twin texts, paired). Paired twins are per item (None where an item has none)."""
    if vp.twins == "numbers":
        return [number_twin(t, vp.seed) for t in texts], True
    from .benchmark_texts import load_examples
    p = Path(vp.twins)
    if p.suffix not in (".jsonl", ".json") or not p.exists():
        raise UserError(f"contamination twins {vp.twins!r}: use 'numbers' or an existing JSONL with a 'text' field")
    _, examples = load_examples(str(p))
    return [e.text for e in examples], False


def paired_test(delta: np.ndarray, vp: VerdictParams) -> dict[str, Any]:
    rng = np.random.default_rng(vp.seed)
    n = len(delta)
    means = delta[rng.integers(0, n, size=(vp.bootstrap, n))].mean(axis=1)
    signs = rng.choice([-1.0, 1.0], size=(vp.permutations, n))
    null = (signs * np.abs(delta)).mean(axis=1)
    obs = float(delta.mean())
    p = (1 + int((null <= obs).sum())) / (vp.permutations + 1)
    return {"effect": obs, "ci": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))], "p": p}


def unpaired_test(items: np.ndarray, twins: np.ndarray, vp: VerdictParams) -> dict[str, Any]:
    rng = np.random.default_rng(vp.seed)
    obs = float(items.mean() - twins.mean())
    bi = items[rng.integers(0, len(items), size=(vp.bootstrap, len(items)))].mean(axis=1)
    bt = twins[rng.integers(0, len(twins), size=(vp.bootstrap, len(twins)))].mean(axis=1)
    diff = bi - bt
    pooled = np.concatenate([items, twins])
    null = np.empty(vp.permutations)
    for k in range(vp.permutations):
        perm = rng.permutation(pooled)
        null[k] = perm[:len(items)].mean() - perm[len(items):].mean()
    p = (1 + int((null <= obs).sum())) / (vp.permutations + 1)
    return {"effect": obs, "ci": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))], "p": p}


def decide(test: dict[str, Any], vp: VerdictParams) -> str:
    lo, hi = test["ci"]
    if test["p"] < vp.alpha and hi < 0 and test["effect"] < -vp.margin:
        return "seen"
    if lo > -vp.margin:
        return "not seen"
    return "undecided"


def detectable(test: dict[str, Any], n: int, vp: VerdictParams) -> dict[str, Any]:
    """What this n could tell: the 95% interval's half-width, the minimum detectable effect
    (one-sided at alpha, 80% power; normal approximation with the bootstrap standard error)
    and about how many items a `not seen` would need (its interval inside the margin)."""
    from statistics import NormalDist
    lo, hi = test["ci"]
    se = (hi - lo) / (2 * 1.96)
    z = NormalDist().inv_cdf
    out = {"ci_half_width": (hi - lo) / 2, "mde": (z(1 - vp.alpha) + z(0.8)) * se}
    out["n_for_not_seen"] = n if 1.96 * se < vp.margin else math.ceil(n * (1.96 * se / vp.margin) ** 2)
    return out


def verdict(item_target: list[float], item_ref: list[float], twin_target: list[float], twin_ref: list[float],
            paired: bool, vp: VerdictParams, n_items: int | None = None) -> dict[str, Any]:
    """The evidence and the verdict from per-text losses (twins aligned with items when paired)."""
    d_items = np.asarray(item_target, dtype=np.float64) - np.asarray(item_ref, dtype=np.float64)
    d_twins = np.asarray(twin_target, dtype=np.float64) - np.asarray(twin_ref, dtype=np.float64)
    n = len(d_items)
    out: dict[str, Any] = {"statistic": "target loss minus reference loss (nats), item vs twin",
                           "twins": vp.twins, "paired": paired, "n": n, "margin": vp.margin, "alpha": vp.alpha}
    if n < vp.min_pairs or len(d_twins) < vp.min_pairs:
        return {**out, "verdict": "undecided", "effect": None, "ci": None, "p": None,
                "reason": f"only {min(n, len(d_twins))} items have a twin (need {vp.min_pairs})"}
    test = paired_test(d_items - d_twins, vp) if paired else unpaired_test(d_items, d_twins, vp)
    power = detectable(test, n, vp)
    v = decide(test, vp)
    lo, hi = test["ci"]
    words = {"seen": "items read as memorised: their loss relative to the reference is lower than their twins'",
             "not seen": f"items and unseen twins read alike (any effect is under {vp.margin} nats)",
             "undecided": "the evidence is not strong either way"}[v]
    reading = v
    if vp.twins == "numbers":
        v = "undecided"
        words = (f"number twins read '{reading}', but they cannot decide: a model tuned on other text of the same "
                 "kind also prefers real numbers, and one that memorised the items knows their twins too; "
                 "a verdict needs an unseen set of the same kind (twins: FILE.jsonl, e.g. another split)")
    evidence = f"effect {test['effect']:+.3f} nats, 95% CI [{lo:+.3f}, {hi:+.3f}], p={test['p']:.4f}"
    limits = f"n={n}: interval +-{power['ci_half_width']:.3f}, minimum detectable effect {power['mde']:.3f} nats"
    if power["n_for_not_seen"] > n:
        limits += f"; 'not seen' (interval within {vp.margin}) needs about {power['n_for_not_seen']} items"
    return {**out, **test, **power, "reading": reading, "verdict": v, "reason": f"{words}: {evidence} ({limits})"}


CONTROL_SANITY = ("sanity check only: the reference scored against itself gives d(x) = d(twin) = 0 by "
                  "construction, so it checks the plumbing, not how often a clean model reads 'seen'; "
                  "pass a clean model (tuned on the same kind of data, never on the benchmark) as the control")


def sanity_control(cal: dict[str, Any]) -> dict[str, Any]:
    """The control verdict when the control is the reference itself: not evidence."""
    return {**cal, "verdict": "sanity check", "reason": CONTROL_SANITY}
