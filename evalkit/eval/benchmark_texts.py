"""Benchmark examples as plain texts (question + " " + correct answer), for the contamination
check and the n-gram overlap check. Built as the reference implementation builds them.

Sources: a hub dataset, the --data-dir layout the leaderboard uses
(DIR/<dataset_path>/<dataset_name|default>/<split>.jsonl), or a custom JSONL with a
"text" field (and optionally "id").
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..rundir import path_component, read_jsonl_file, read_text

@dataclass
class Example:
    """One benchmark example as the checks read it: an id and the text."""
    id: str
    text: str


# name: (hub path, hub config, split, builder)
def _arc(row, i):
    key = {"A": 0, "B": 1, "C": 2, "D": 3}.get(row["answerKey"])
    if key is None:  # the original skips keys outside A-D
        return None
    return row["question"] + " " + row["choices"]["text"][key]


def _truthfulqa_mc1(row, i):
    t = row["mc1_targets"]
    return row["question"] + " " + t["choices"][t["labels"].index(1)]


def _truthfulqa_mc2(row, i):
    t = row["mc2_targets"]
    return row["question"] + " " + t["choices"][t["labels"].index(1)]


def _gsm8k(row, i):
    return row["question"] + " " + row["answer"].split("####")[0].strip()


def _mmlu(row, i):
    return row["question"] + " " + row["choices"][int(row["answer"])]


def _hellaswag(row, i):
    return row["ctx"] + " " + row["endings"][int(row["label"])]


def _winogrande(row, i):
    option = row["option1"] if str(row["answer"]) == "1" else row["option2"]
    return row["sentence"].replace("_", option, 1)


BENCHMARKS: dict[str, tuple[str, str | None, str, Callable]] = {
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", _arc),
    "truthfulqa": ("truthfulqa/truthful_qa", "multiple_choice", "validation", _truthfulqa_mc1),
    "truthfulqa_mc2": ("truthfulqa/truthful_qa", "multiple_choice", "validation", _truthfulqa_mc2),
    "gsm8k": ("openai/gsm8k", "main", "test", _gsm8k),
    "mmlu": ("cais/mmlu", "all", "test", _mmlu),
    "hellaswag": ("Rowan/hellaswag", None, "validation", _hellaswag),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "validation", _winogrande),
}


def _rows_from_dir(data_dir: Path, path: str, config: str | None, split: str, name: str) -> list[dict]:
    base = data_dir / path
    folders = [base / (config or "default")]
    if name == "mmlu" and not folders[0].exists():  # per-subject folders, as lm-eval reads them
        folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []
    rows = []
    for folder in folders:
        for suffix in (".jsonl", ".json", ".parquet"):
            f = folder / f"{split}{suffix}"
            if f.exists():
                rows += _read_rows(f)
                break
    if not rows:
        raise UserError(f"benchmark {name}: no data at {base / (config or 'default') / (split + '.jsonl')}")
    return rows


def _read_rows(f: Path) -> list[dict]:
    if f.suffix == ".parquet":
        from ..train.data import read_parquet
        return read_parquet(f)
    if f.suffix == ".json":
        try:
            return json.loads(read_text(f))
        except json.JSONDecodeError as e:
            raise UserError(f"{f}:{e.lineno}: invalid JSON ({e.msg})") from None
    return read_jsonl_file(f)


def benchmark_problem(name_or_path: str) -> str | None:
    """Why `name_or_path` is neither a known benchmark nor an existing JSONL/JSON file (None
    when it is one): checked before any model loads or anything is written."""
    p = Path(name_or_path)
    if name_or_path in BENCHMARKS or (p.suffix in (".jsonl", ".json") and p.is_file()):
        return None
    if p.suffix in (".jsonl", ".json"):
        return f"{name_or_path}: no such file"
    close = difflib.get_close_matches(name_or_path, list(BENCHMARKS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(BENCHMARKS)})"
    return f"unknown benchmark {name_or_path!r}{hint}"


def load_examples(name_or_path: str, data_dir: str | Path | None = None) -> tuple[str, list[Example]]:
    """(benchmark name, examples in source order). A file's name is its stem, made safe to
    be part of a file name (contamination_<name>.jsonl)."""
    p = Path(name_or_path)
    problem = benchmark_problem(name_or_path)
    if problem:
        raise UserError(problem)
    if p.suffix in (".jsonl", ".json") and p.exists():
        rows = _read_rows(p)
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise UserError(f"{p}:{i + 1}: needs a non-empty string field 'text'")
            out.append(Example(str(row.get("id", i)), row["text"]))
        return path_component(p.stem), out
    path, config, split, build = BENCHMARKS[name_or_path]
    if data_dir is not None:
        rows = _rows_from_dir(Path(data_dir), path, config, split, name_or_path)
    else:
        import datasets
        try:
            rows = list(datasets.load_dataset(path, config, split=split))
        except Exception as e:
            raise UserError(f"benchmark {name_or_path}: cannot load hub dataset {path} ({config}, {split}): "
                            f"{str(e).splitlines()[0]}; offline, give --data-dir DIR with local copies "
                            f"(DIR/{path}/{config or 'default'}/{split}.jsonl)") from None
    out = []
    for i, row in enumerate(rows):
        try:
            text = build(row, i)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise UserError(f"benchmark {name_or_path}: row {i} lacks the fields it needs ({e!r})") from None
        if text is not None:
            out.append(Example(str(row.get("id", i)) if isinstance(row, dict) else str(i), text))
    return name_or_path, out
