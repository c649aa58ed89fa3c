"""Preference pairs built from existing data, the way the Smaug paper built its datasets.

metamath_synthetic: a correct worked solution (chosen) against the same solution with the
first intermediate result changed and the change carried through the next step (rejected),
as in MetaMath-DPOP. Low edit distance by construction: the failure mode DPOP fixes.
"""
from __future__ import annotations

import random

from .. import synth
from ..errors import UserError


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


def choice_pairs(rows: list[dict]) -> tuple[list[dict], int]:
    """ARC/HellaSwag-DPOP: each question's correct answer against each wrong choice.

    Rows in ARC's schema (question, choices {text, label}, answerKey) or a generic one
    (question, choices [..], answer index). A 4-choice question gives exactly 3 pairs.
    Returns (pairs, skipped): a pair whose chosen and rejected texts collide is skipped.
    """
    pairs, skipped = [], 0
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("question", "choices") if k not in row] + \
            ([] if isinstance(row.get("choices"), dict) or "answer" in row else ["answer or answerKey"])
        if missing:
            raise UserError(f"row {n}: not a multiple-choice row (missing {', '.join(missing)}; "
                            f"expected ARC's question/choices/answerKey or question/choices/answer)")
        q = row["question"]
        if isinstance(row.get("choices"), dict):
            texts, labels = row["choices"]["text"], row["choices"]["label"]
            if row.get("answerKey") not in labels:
                skipped += 1
                continue
            correct = labels.index(row["answerKey"])
        else:
            texts, correct = row["choices"], int(row["answer"])
        for i, wrong in enumerate(texts):
            if i == correct:
                continue
            if wrong.strip() == texts[correct].strip():
                skipped += 1
                continue
            pairs.append({"prompt": q, "chosen": texts[correct], "rejected": wrong})
    return pairs, skipped
