"""Preference pairs built from existing data, the way the Smaug paper built its datasets.

metamath (Smaug's MetaMath-DPOP): a correct worked solution (chosen) against the same
solution with ONE intermediate result -- a number a calculation step produces -- replaced by
a plausible wrong value, and nothing else changed: later steps that use it, and the final
`#### n`, stay as they were (the datasheet's "= $47" -> "= $52" example). Intermediate
results are marked by GSM8K's calculator notes (`<<25+15.2=40.2>>40.2`: the note's result and
the number shown after it are the same result and change together) and by MetaMath's "= n".
Low edit distance by construction: the failure mode DPOP fixes.

metamath_carried: the older, self-consistent variant -- the first intermediate result
changed and carried through the next step to `#### n` (a larger edit; not Smaug's).
"""
from __future__ import annotations

import random
import re

from .. import synth
from ..errors import UserError

NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"     # 1,234.50: commas only between thousands
NOTE = re.compile(r"<<([^<>=]*)=\s*(" + NUM + r")\s*>>(\$?)(" + NUM + r")?")
# "= n" marks a result only when n is not followed by an operator and another operand or a
# calculator note: in "= 240-40 = <<240-40=200>>200" the 240 is an operand, 200 the result
OPERATOR_NEXT = r"(?!\s*[-+*/×÷x^]\s*\$?\s*[\d(]|\s*<<|\d|[.,]\d)"
EQUALS = re.compile(r"=\s*\$?\s*(" + NUM + r")" + OPERATOR_NEXT)
FINAL = re.compile(r"(####|The answer is:?)\s*\$?\s*" + NUM)


def _final_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in FINAL.finditer(text)]


def intermediate_results(solution: str) -> list[list[tuple[int, int]]]:
    """Each intermediate result as the character spans that show it, in solution order.

    A calculator note gives one result with two spans (inside the note and just after it);
    an "= n" outside any note gives one span. Numbers in the final-answer line are not
    intermediate results.
    """
    found, notes = [], []
    for m in NOTE.finditer(solution):
        spans = [m.span(2)] + ([m.span(4)] if m.group(4) is not None else [])
        found.append(spans)
        notes.append(m.span())
    finals = _final_spans(solution)
    inside = lambda s, ranges: any(a <= s[0] < b for a, b in ranges)  # noqa: E731
    for m in EQUALS.finditer(solution):
        if inside(m.span(), notes) or inside(m.span(), finals):
            continue
        found.append([m.span(1)])
    return sorted(found)


def plausible_wrong(value: str, rng: random.Random) -> str:
    """A different number in the same format (decimals, thousands commas): value + a small offset."""
    plain = value.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    v = float(plain)
    while True:
        wrong = v + rng.choice([-10, -5, -3, -2, -1, 1, 2, 3, 5, 10])
        if wrong != v and (wrong >= 0 or v < 0):
            break
    return f"{wrong:,.{decimals}f}" if "," in value else f"{wrong:.{decimals}f}"


def corrupt_one_result(solution: str, rng: random.Random) -> str | None:
    """Smaug's rejected completion: one intermediate result (chosen at random) made wrong.

    The last calculation step is not a candidate when there are others (its result is the
    final answer, not an intermediate one). None when the solution has no marked result.
    """
    results = intermediate_results(solution)
    if len(results) > 1:
        results = results[:-1]
    if not results:
        return None
    spans = rng.choice(results)
    wrong = plausible_wrong(solution[spans[0][0]:spans[0][1]], rng)
    out = solution
    for a, b in sorted(spans, reverse=True):
        shown = solution[a:b]
        # the note's "144.00" and the shown "144" keep their own formats
        out = out[:a] + _reformat(wrong, shown) + out[b:]
    return out


def _reformat(wrong: str, like: str) -> str:
    plain = like.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    v = float(wrong.replace(",", ""))
    return f"{v:,.{decimals}f}" if "," in like else f"{v:.{decimals}f}"


def corrupt_first_value(problem: synth.MathProblem, rng: random.Random) -> str:
    """metamath_carried: v0 replaced by a different positive value and carried to `#### n`."""
    v0 = problem.steps[0][1]
    while True:
        wrong = v0 + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10])
        if wrong > 0 and wrong != v0:
            break
    return problem.solution(problem.values_from(wrong))


def _synthetic(n: int, seed: int, rejected) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        p = synth.math_problem(rng)
        if p.question in seen:
            continue
        seen.add(p.question)
        rows.append({"prompt": p.question, "chosen": p.solution(), "rejected": rejected(p, rng)})
    return rows


def metamath_synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n Smaug-style {prompt, chosen, rejected} rows from generated arithmetic problems."""
    return _synthetic(n, seed, lambda p, rng: corrupt_one_result(p.solution(), rng))


def metamath_carried_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n rows of the carried-through variant (first result changed and carried to the answer)."""
    return _synthetic(n, seed, corrupt_first_value)


def _solution_keys(n: int, row: dict) -> tuple[str, str]:
    keys = ("question", "answer") if "question" in row and "answer" in row else \
        ("query", "response") if "query" in row and "response" in row else None
    if keys is None:
        raise UserError(f"row {n}: not a worked-solution row (expected GSM8K's question/answer "
                        f"or MetaMathQA's query/response; has {', '.join(sorted(row)) or 'no keys'})")
    return keys


def solution_rows(rows: list[dict]) -> list[dict]:
    """Chosen-only rows {prompt, chosen} from worked-solution rows, every row kept: the
    training data of `loss: sft` (e.g. a target fine-tuned on benchmark items)."""
    out = []
    for n, row in enumerate(rows, 1):
        q, a = _solution_keys(n, row)
        out.append({"prompt": str(row[q]), "chosen": str(row[a])})
    return out


def math_row_pairs(rows: list[dict], seed: int = 0) -> tuple[list[dict], int]:
    """Smaug-style pairs from worked-solution rows: GSM8K (question/answer) or MetaMathQA
    (query/response). Returns (pairs, skipped): a solution with no marked intermediate
    result is skipped."""
    rng = random.Random(seed)
    pairs, skipped = [], 0
    for n, row in enumerate(rows, 1):
        keys = _solution_keys(n, row)
        prompt, chosen = str(row[keys[0]]), str(row[keys[1]])
        rejected = corrupt_one_result(chosen, rng)
        if rejected is None or rejected == chosen:
            skipped += 1
            continue
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs, skipped


def _choice_row(n: int, row: dict) -> tuple[str, list[str], int | None, str]:
    """(prompt, choice texts, correct index or None, kind) from ARC, HellaSwag or a generic row."""
    if "ctx" in row and "endings" in row:               # HellaSwag (Rowan/hellaswag): ctx, endings, label
        label = str(row.get("label", "")).strip()
        correct = int(label) if label.isdigit() and int(label) < len(row["endings"]) else None
        return str(row["ctx"]), [str(e) for e in row["endings"]], correct, "hellaswag"
    missing = [k for k in ("question", "choices") if k not in row] + \
        ([] if isinstance(row.get("choices"), dict) or "answer" in row else ["answer or answerKey"])
    if missing:
        raise UserError(f"row {n}: not a multiple-choice row (missing {', '.join(missing)}; expected ARC's "
                        f"question/choices/answerKey, HellaSwag's ctx/endings/label or question/choices/answer)")
    if isinstance(row.get("choices"), dict):
        texts, labels = row["choices"]["text"], row["choices"]["label"]
        correct = labels.index(row["answerKey"]) if row.get("answerKey") in labels else None
        return str(row["question"]), list(texts), correct, "arc"
    return str(row["question"]), list(row["choices"]), int(row["answer"]), "arc"


def _shot(prompt: str, answer: str, kind: str, last: bool = False) -> str:
    if kind == "hellaswag":           # a continuation: context then ending, as the leaderboard scores it
        return prompt if last else f"{prompt} {answer}"
    return f"Question: {prompt}\nAnswer:" + ("" if last else f" {answer}")


def choice_pairs(rows: list[dict], fewshot: int = 0, seed: int = 0) -> tuple[list[dict], int]:
    """ARC/HellaSwag-DPOP: each question's correct answer against each wrong choice.

    Rows in ARC's hub schema (question, choices {text, label}, answerKey), HellaSwag's
    (ctx, endings, label) or a generic one (question, choices [..], answer index). A
    4-choice question gives exactly 3 pairs. `fewshot` > 0 writes the prompts in the style
    of Smaug's *_DPO_FewShot sets: that many solved examples from other rows (drawn with
    `seed`) before the question ("Question: ..\nAnswer: .." for ARC; context + ending for
    HellaSwag). Returns (pairs, skipped): a pair whose chosen and rejected texts collide, or
    a row without a usable label, is skipped (one count each).
    """
    parsed = [_choice_row(n, row) for n, row in enumerate(rows, 1)]
    solved = [i for i, (_, _, c, _) in enumerate(parsed) if c is not None]
    rng = random.Random(seed)
    pairs, skipped = [], 0
    for i, (q, texts, correct, kind) in enumerate(parsed):
        if correct is None:
            skipped += 1
            continue
        prompt = q
        if fewshot:
            others = [j for j in solved if j != i]
            shots = rng.sample(others, min(fewshot, len(others)))
            prompt = "\n\n".join([_shot(parsed[j][0], parsed[j][1][parsed[j][2]], parsed[j][3]) for j in shots]
                                  + [_shot(q, "", kind, last=True)])
        for k, wrong in enumerate(texts):
            if k == correct:
                continue
            if wrong.strip() == texts[correct].strip():
                skipped += 1
                continue
            pairs.append({"prompt": prompt, "chosen": texts[correct], "rejected": wrong})
    return pairs, skipped
