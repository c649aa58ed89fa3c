"""Read one experiment's result directory into plain Python structures for the report.

Everything here follows the documented file formats (evalkit.schema); a section whose files are
missing comes back empty and the report leaves it out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..rundir import CheckpointFiles, ModelFiles, ReportFiles, RunDir, read, read_lines


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


def _load_json(path: Path, kind: str) -> dict | None:
    """A result file checked against its schema, or None if absent."""
    return read(kind, path) if path.exists() else None


def load_experiment_dir(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such result directory")
    files = ReportFiles(path)
    manifest = _load_json(files.manifest, "manifest") or {}
    exp = Experiment(manifest.get("experiment", path.name), path, manifest)
    variants = [v["name"] for v in (manifest.get("config") or {}).get("variants", [])]
    found = files.models()
    order = ["base"] + variants
    exp.models = [m for m in order if m in found or m in variants] + [m for m in found if m not in order]
    # a section's `models:` says which models it scores now: a result left from a model it no
    # longer scores was made on weights that may have been retrained since, so it is not shown
    sections = ((manifest.get("config") or {}).get("eval") or {})
    scored = lambda kind, m: not isinstance((sections.get(kind) or {}).get("models"), list) \
        or m in sections[kind]["models"]  # noqa: E731
    for m in exp.models:
        d = files.model(m)
        if scored("leaderboard", m) and (rec := _load_json(d.leaderboard, "leaderboard")) is not None:
            exp.leaderboard[m] = rec
        if scored("contamination", m) and (rec := _load_json(d.contamination, "contamination")) is not None:
            exp.contamination[m] = rec
            exp.contamination_rows[m] = {
                b: read_lines("contamination_examples", d.root / info["per_example"] if info.get("per_example")
                              else d.contamination_examples(b)) for b, info in rec.get("benchmarks", {}).items()}
        mt = d.mtbench
        if scored("mtbench", m) and (summary := _load_json(mt.summary, "mtbench_summary")) is not None:
            # the files the summary names, relative to it (a summary without them: no rows)
            judgments = mt.root / summary["judgments_file"] if summary.get("judgments_file") else None
            answers = mt.root / summary["answers_file"] if summary.get("answers_file") else None
            exp.mtbench[m] = {"summary": summary,
                              "judgments": read_lines("mtbench_judgments", judgments) if judgments else [],
                              "answers": read_lines("mtbench_answers", answers) if answers else [],
                              "questions": {q["question_id"]: q for q in read_lines("mtbench_questions", mt.questions)}}
    exp.ngram = _load_json(files.ngram_overlap, "ngram_overlap")
    for v in variants:
        ckpt = _checkpoint_dir(exp, v)
        if ckpt is not None and (meta := _load_json(ckpt.metadata, "evalkit")) is not None:
            exp.training[v] = {"meta": meta, "metrics": read_lines("train_metrics", ckpt.metrics)}
    exp.models = [m for m in exp.models if m in exp.leaderboard or m in exp.contamination
                  or m in exp.mtbench or m in exp.training or m == "base"]
    if not (exp.leaderboard or exp.contamination or exp.mtbench or exp.training or exp.ngram):
        raise UserError(f"{path}: no results to report (no leaderboard, contamination or MT-Bench results, "
                        f"no trained checkpoints)")
    return exp


def _checkpoint_dir(exp: Experiment, variant: str) -> CheckpointFiles | None:
    """A variant's checkpoint, where `evalkit run` puts it: checkpoints/<experiment>/<variant>
    under the working directory, or beside the reports/ folder holding this one."""
    for root in (Path("."), exp.path.parent.parent):
        try:
            files = RunDir(exp.name, root=root).checkpoint_files(variant)
        except UserError:             # a folder or variant name that is no experiment's
            return None
        if files.metadata.exists():
            return files
    return None


def leaderboard_samples(exp: Experiment, model: str, task: str) -> list[dict]:
    rec = exp.leaderboard.get(model) or {}
    return read_lines("leaderboard_samples", ModelFiles(exp.path / model).leaderboard_samples(task, rec.get("samples_dir")))
