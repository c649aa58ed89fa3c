"""Read one experiment's result directory into plain Python structures for the report.

Everything here follows the documented file formats (evalkit.schema); a section whose files are
missing comes back empty and the report leaves it out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .. import schema
from ..rundir import read_json, read_jsonl


@dataclass
class Experiment:
    name: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)            # base first, then variants
    leaderboard: dict[str, dict] = field(default_factory=dict)
    contamination: dict[str, dict] = field(default_factory=dict)
    contamination_rows: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    ngram: dict | None = None
    training: dict[str, dict] = field(default_factory=dict)    # variant -> {meta, metrics}
    mtbench: dict[str, dict] = field(default_factory=dict)     # model -> {summary, judgments, answers, questions}

    def label(self, model: str) -> str:
        return model if not self.multi else f"{self.name}/{model}"

    multi: bool = False


def _load_json(path: Path, kind: str | None = None) -> dict | None:
    """A result file (checked against its schema when `kind` is given), or None if absent."""
    if not path.exists():
        return None
    if kind is not None:
        return schema.read(path, kind)
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None


def _jsonl(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def load_experiment_dir(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such result directory")
    manifest = _load_json(path / "manifest.json", "manifest") or {}
    exp = Experiment(manifest.get("experiment", path.name), path, manifest)
    variants = [v["name"] for v in (manifest.get("config") or {}).get("variants", [])]
    found = sorted(p.name for p in path.iterdir() if p.is_dir() and (
        (p / "leaderboard.json").exists() or (p / "contamination.json").exists() or (p / "mtbench").is_dir()))
    order = ["base"] + variants
    exp.models = [m for m in order if m in found or m in variants] + [m for m in found if m not in order]
    # a section's `models:` says which models it scores now: a result left from a model it no
    # longer scores was made on weights that may have been retrained since, so it is not shown
    sections = ((manifest.get("config") or {}).get("eval") or {})
    scored = lambda kind, m: not isinstance((sections.get(kind) or {}).get("models"), list) \
        or m in sections[kind]["models"]  # noqa: E731
    for m in exp.models:
        d = path / m
        if scored("leaderboard", m) and (rec := _load_json(d / "leaderboard.json", "leaderboard")) is not None:
            exp.leaderboard[m] = rec
        if scored("contamination", m) and (rec := _load_json(d / "contamination.json", "contamination")) is not None:
            exp.contamination[m] = rec
            exp.contamination_rows[m] = {b: _jsonl(d / info.get("per_example", f"contamination_{b}.jsonl"))
                                         for b, info in rec.get("benchmarks", {}).items()}
        mt = d / "mtbench"
        if scored("mtbench", m) and (summary := _load_json(mt / "summary.json", "mtbench_summary")) is not None:
            judgments = mt / summary.get("judgments_file", "judgments.jsonl")
            answers = mt / summary["answers_file"] if summary.get("answers_file") else None
            exp.mtbench[m] = {"summary": summary, "judgments": _jsonl(judgments) if judgments.exists() else [],
                              "answers": _jsonl(answers) if answers is not None and answers.exists() else [],
                              "questions": {q["question_id"]: q for q in _jsonl(mt / "questions.jsonl")}}
    exp.ngram = _load_json(path / "ngram_overlap.json")
    for v in variants:
        ckpt = _checkpoint_dir(exp, v)
        if ckpt is not None and (meta := _load_json(ckpt / "evalkit.json", "evalkit")) is not None:
            exp.training[v] = {"meta": meta, "metrics": _jsonl(ckpt / "train_metrics.jsonl")}
    exp.models = [m for m in exp.models if m in exp.leaderboard or m in exp.contamination
                  or m in exp.mtbench or m in exp.training or m == "base"]
    if not (exp.leaderboard or exp.contamination or exp.mtbench or exp.training or exp.ngram):
        raise UserError(f"{path}: no results to report (no leaderboard.json, contamination.json, mtbench/ "
                        f"or trained checkpoints)")
    return exp


def _checkpoint_dir(exp: Experiment, variant: str) -> Path | None:
    stage = (exp.manifest.get("stages") or {}).get(f"train:{variant}") or {}
    candidates = [stage.get("path"), Path("checkpoints") / exp.name / variant,
                  exp.path.parent.parent / "checkpoints" / exp.name / variant]
    for c in candidates:
        if c and (Path(c) / "evalkit.json").exists():
            return Path(c)
    return None


def leaderboard_samples(exp: Experiment, model: str, task: str) -> list[dict]:
    rec = exp.leaderboard.get(model) or {}
    path = exp.path / model / rec.get("samples_dir", "leaderboard_samples") / f"{task}.jsonl"
    return _jsonl(path) if path.exists() else []
