"""Preference pairs built from existing data, the way the Smaug paper built its datasets.

metamath_synthetic: a correct worked solution (chosen) against the same solution with the
first intermediate result changed and the change carried through the next step (rejected),
as in MetaMath-DPOP. Low edit distance by construction: the failure mode DPOP fixes.
"""
from __future__ import annotations

import random

from .. import synth


def corrupt_first_value(problem: synth.MathProblem, rng: random.Random) -> str:
    """The solution with v0 replaced by a different positive value, carried consistently."""
    v0 = problem.steps[0][1]
    while True:
        wrong = v0 + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10])
        if wrong > 0 and wrong != v0:
            break
    return problem.solution(problem.values_from(wrong))


def metamath_synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n {prompt, chosen, rejected} rows from generated arithmetic problems."""
    rng = random.Random(seed)
    rows = []
    seen = set()
    while len(rows) < n:
        p = synth.math_problem(rng)
        if p.question in seen:
            continue
        seen.add(p.question)
        rows.append({"prompt": p.question, "chosen": p.solution(), "rejected": corrupt_first_value(p, rng)})
    return rows
