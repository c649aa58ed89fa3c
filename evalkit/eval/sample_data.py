"""Small synthetic benchmark data in each task's hub schema, for the demo and tests.

Written in the --data-dir layout (DATA_DIR/<dataset_path>/<dataset_name|default>/<split>.jsonl),
so lm-eval reads it through the built-in task definitions exactly as it would the real data.
The content comes from evalkit.synth, the same generators the tiny model was pretrained on.
"""
from __future__ import annotations

import random
from pathlib import Path

from .. import synth
from ..data import path as packaged
from ..rundir import split_file, write

MMLU_SUBJECTS_FILE = packaged("suites", "open_llm_v1.yaml")


def _write(path: Path, rows: list[dict]) -> None:
    write("benchmark_rows", path, rows)


def arc_rows(rng: random.Random, n: int, prefix: str) -> list[dict]:
    rows = []
    for i in range(n):
        it = synth.choice_item(rng)
        rows.append({"id": f"{prefix}-{i}", "question": it.question,
                     "choices": {"text": it.choices, "label": list("ABCD")}, "answerKey": "ABCD"[it.label]})
    return rows


def mmlu_rows(rng: random.Random, n: int, subject: str) -> list[dict]:
    rows = []
    for _ in range(n):
        it = synth.choice_item(rng)
        rows.append({"question": it.question, "subject": subject, "choices": it.choices, "answer": it.label})
    return rows


def hellaswag_rows(rng: random.Random, n: int, split: str) -> list[dict]:
    rows = []
    for i in range(n):
        p = synth.math_problem(rng)
        first, rest = p.question.split(". ", 1)
        wrong = [synth.math_problem(rng).question.split(". ")[0] + "." for _ in range(3)]
        endings = [rest] + wrong
        rng.shuffle(endings)
        rows.append({"ind": i, "activity_label": "Counting", "ctx_a": first + ".", "ctx_b": "then",
                     "ctx": first + ". then", "endings": endings, "source_id": f"synthetic-{i}",
                     "split": split, "split_type": "indomain", "label": str(endings.index(rest))})
    return rows


def truthfulqa_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        it = synth.choice_item(rng)
        correct = it.answer
        wrong = [c for c in it.choices if c != correct]
        mc1 = [correct] + wrong
        mc2 = [correct, f"It is {correct}."] + wrong
        rows.append({"question": it.question,
                     "mc1_targets": {"choices": mc1, "labels": [1] + [0] * len(wrong)},
                     "mc2_targets": {"choices": mc2, "labels": [1, 1] + [0] * len(wrong)}})
    return rows


def winogrande_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        a, b = rng.sample(synth.NAMES, 2)
        item = rng.choice(synth.ITEMS)
        rows.append({"sentence": f"{a} gave {b} some {item} because _ had too many {item}.",
                     "option1": a, "option2": b, "answer": rng.choice(["1", "2"])})
    return rows


def gsm8k_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        p = synth.math_problem(rng)
        rows.append({"question": p.question, "answer": p.solution()})
    return rows


def mmlu_subjects() -> list[str]:
    import yaml
    suite = yaml.safe_load(MMLU_SUBJECTS_FILE.read_text())
    entry = next(e for e in suite["entries"] if e["name"] == "mmlu")
    return [t["dataset_name"] for t in entry["tasks"]]


def write_open_llm_v1(data_dir: str | Path, n_eval: int = 8, seed: int = 0) -> Path:
    """Every split the v1 suite reads, in hub schema. Few-shot splits hold enough rows for
    the suite's shot counts (25 for ARC)."""
    d = Path(data_dir)
    rng = random.Random(seed)
    arc = d / "allenai/ai2_arc/ARC-Challenge"
    _write(split_file(arc, "train"), arc_rows(rng, 30, "train"))
    _write(split_file(arc, "validation"), arc_rows(rng, n_eval, "val"))
    _write(split_file(arc, "test"), arc_rows(rng, n_eval, "test"))
    hs = d / "Rowan/hellaswag/default"
    _write(split_file(hs, "train"), hellaswag_rows(rng, 12, "train"))
    _write(split_file(hs, "validation"), hellaswag_rows(rng, n_eval, "val"))
    for subject in mmlu_subjects():
        folder = d / "cais/mmlu" / subject
        _write(split_file(folder, "dev"), mmlu_rows(rng, 5, subject))
        _write(split_file(folder, "test"), mmlu_rows(rng, max(2, n_eval // 4), subject))
    _write(split_file(d / "truthfulqa/truthful_qa/multiple_choice", "validation"), truthfulqa_rows(rng, n_eval))
    wg = d / "allenai/winogrande/winogrande_xl"
    _write(split_file(wg, "train"), winogrande_rows(rng, 8))
    _write(split_file(wg, "validation"), winogrande_rows(rng, n_eval))
    gsm = d / "openai/gsm8k/main"
    _write(split_file(gsm, "train"), gsm8k_rows(rng, 8))
    _write(split_file(gsm, "test"), gsm8k_rows(rng, max(2, n_eval // 2)))
    return d
