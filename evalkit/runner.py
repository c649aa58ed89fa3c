"""`evalkit run`: an experiment file as an ordered plan of stages, each skipped when done.

A stage's hash covers its slice of the config, the hashes of the stages it depends on, and
evalkit's version. The manifest records the hash of every finished stage; a stage whose
recorded hash matches (and whose outputs exist) is skipped. Changing one variant's beta
therefore reruns that variant's training and what depends on it, nothing else. A stage that
reruns first removes its old outputs, so nothing stale is reused. All writes are atomic or
append-only with fsync, so a run killed at any moment resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__, pipeline
from .config import Experiment, TinyBase
from .errors import UserError
from .rundir import RunDir, content_hash

log = logging.getLogger("evalkit")


@dataclass
class Stage:
    name: str
    slice: Any
    deps: list[str]
    run: Callable[[], Any]
    outputs: list[Path] = field(default_factory=list)   # removed before a rerun; must exist when done
    estimate: str = ""

    def done_on_disk(self) -> bool:
        return all(p.exists() for p in self.outputs)


class Runner:
    def __init__(self, exp: Experiment, rd: RunDir):
        self.exp, self.rd = exp, rd
        self.base_path: str | None = None
        self.judge_stack = contextlib.ExitStack()
        self.judge_url: str | None = None
        self.ran: list[str] = []
        self.stages = self._plan()
        self.hashes = self._hashes()

    # ------------------------------------------------------------ the plan
    def base(self) -> str:
        if self.base_path is None:
            self.base_path = pipeline.resolve_base_model(self.exp, self.rd)
        return self.base_path

    def model_path(self, label: str) -> str:
        return self.base() if label == "base" else str(self.rd.checkpoint(label))

    def _plan(self) -> list[Stage]:
        exp, rd = self.exp, self.rd
        dump = lambda m: m.model_dump(mode="json", by_alias=True) if m is not None else None  # noqa: E731
        base_out = [rd.base_checkpoint() / "tiny_spec.json"] if isinstance(exp.base_model, TinyBase) else []
        stages = [Stage("base", dump(exp.base_model) if isinstance(exp.base_model, TinyBase) else exp.base_model,
                        [], self.base, base_out, "build the tiny model" if base_out else "use the hub/local model")]
        for ds, src in exp.datasets.items():
            out = [rd.generated_data(ds)] if src.generate else []
            stages.append(Stage(f"data:{ds}", dump(src), [], lambda ds=ds: pipeline.dataset_rows(exp, ds, rd), out,
                                {"metamath_synthetic": f"generate {src.n} pairs", "arc_pairs": "build ARC-style pairs",
                                 None: "read and check"}[src.generate]))
        for v in exp.variants:
            steps = v.max_steps or f"{v.epochs} epoch(s)"
            stages.append(Stage(f"train:{v.name}", {"variant": dump(v), "seed": exp.seed}, ["base", f"data:{v.data}"],
                                lambda v=v: pipeline.train_variants(exp, only=[v.name], rd=rd, base=self.base()),
                                [rd.train_metadata(v.name)], f"{v.loss}, {steps} steps, batch {v.batch_size}"))
        labels = ["base"] + [v.name for v in exp.variants]
        dep = lambda m: ["base"] if m == "base" else ["base", f"train:{m}"]  # noqa: E731
        lb = exp.eval.leaderboard
        if lb is not None and lb.enabled:
            for m in labels:
                stages.append(Stage(f"leaderboard:{m}", dump(lb), dep(m),
                                    lambda m=m: pipeline.score_leaderboard(exp, rd, {m: self.model_path(m)}),
                                    [rd.leaderboard(m)], f"suite {lb.suite}" + (f", limit {lb.limit}" if lb.limit else "")))
        mt = exp.eval.mtbench
        if mt is not None and mt.enabled:
            for m in labels:
                if mt.mode == "pairwise" and m == mt.baseline:
                    continue
                deps = dep(m) + (dep(mt.baseline) if mt.mode == "pairwise" and mt.baseline else [])
                stages.append(Stage(f"mtbench:{m}", dump(mt), sorted(set(deps)), lambda m=m: self._mtbench(m),
                                    [rd.mtbench_dir(m) / "summary.json"], f"{mt.mode} judging by "
                                    f"{(mt.judge.serve or mt.judge.model) if mt.judge else '?'}"))
        ct = exp.eval.contamination
        if ct is not None and ct.enabled:
            for v in exp.variants:
                stages.append(Stage(f"contamination:{v.name}", dump(ct), dep(v.name),
                                    lambda v=v: pipeline.check_contamination(exp, rd, self.base(),
                                                                             {v.name: self.model_path(v.name)}),
                                    [rd.contamination(v.name)],
                                    f"{len(ct.benchmarks)} benchmarks x {ct.n_examples} examples x {ct.n_neighbours}"))
            if exp.datasets:
                stages.append(Stage("ngram", dump(ct), [f"data:{d}" for d in exp.datasets],
                                    lambda: pipeline.check_ngram_overlap(exp, rd), [rd.ngram_overlap()],
                                    f"{ct.ngram}-grams"))
        if exp.report.enabled:
            stages.append(Stage("report", dump(exp.report), [s.name for s in stages],
                                lambda: pipeline.write_report(exp, rd), [rd.report_html()], "one HTML page"))
        return stages

    def _hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.stages:
            out[s.name] = content_hash({"stage": s.name.split(":")[0], "slice": s.slice, "deps": [out[d] for d in s.deps],
                              "evalkit": __version__})
        return out

    def _mtbench(self, label: str):
        mt = self.exp.eval.mtbench
        if self.judge_url is None and mt.judge is not None:
            if mt.judge.serve:
                from .eval.serve import transformers_serve
                self.judge_url = self.judge_stack.enter_context(transformers_serve(mt.judge.serve))
            else:
                self.judge_url = mt.judge.base_url or ""
        paths = {label: self.model_path(label)}
        if mt.mode == "pairwise" and mt.baseline:
            paths[mt.baseline] = self.model_path(mt.baseline)
        return pipeline.run_mtbench(self.exp, self.rd, paths, judge_url=self.judge_url or None,
                                    only=[label])

    # ------------------------------------------------------------ running
    def status(self, force: list[str]) -> list[tuple[Stage, str, str]]:
        recorded = (self.rd.load_manifest().get("stages") or {})
        rows = []
        for s in self.stages:
            rec = recorded.get(s.name) or {}
            forced = any(s.name == f or s.name.split(":")[0] == f for f in force)
            if forced:
                rows.append((s, "run", "forced"))
            elif rec.get("status") == "done" and rec.get("hash") == self.hashes[s.name] and s.done_on_disk():
                rows.append((s, "skip", "done"))
            elif rec.get("status") == "done" and rec.get("hash") == self.hashes[s.name]:
                rows.append((s, "run", "outputs missing"))
            elif rec.get("hash") and rec.get("hash") != self.hashes[s.name]:
                rows.append((s, "run", "inputs changed"))
            else:
                rows.append((s, "run", "not done" if not rec else f"was {rec.get('status')}"))
        return rows

    def run(self, force: list[str] | None = None) -> dict[str, str]:
        force = force or []
        known = {s.name for s in self.stages} | {s.name.split(":")[0] for s in self.stages}
        for f in force:
            if f not in known:
                raise UserError(f"--force {f}: no such stage (stages: {', '.join(s.name for s in self.stages)})")
        plan = self.status(force)
        todo = [s for s, what, _ in plan if what == "run"]
        if not todo:
            print(f"{self.exp.name}: every stage is up to date; nothing to do")
            return {}
        results = {}
        with self.judge_stack:
            for i, (stage, what, why) in enumerate(plan, 1):
                if what == "skip":
                    log.info("[%d/%d] %s: up to date", i, len(plan), stage.name)
                    continue
                log.info("[%d/%d] %s: running (%s; %s)", i, len(plan), stage.name, why, stage.estimate)
                for p in stage.outputs:                    # nothing stale survives a rerun
                    self._clear(stage, p)
                self.rd.set_stage(stage.name, "running", hash=self.hashes[stage.name])
                t0 = time.time()
                stage.run()
                self.rd.set_stage(stage.name, "done", hash=self.hashes[stage.name], seconds=round(time.time() - t0, 2))
                results[stage.name] = f"{time.time() - t0:.1f}s"
                self.ran.append(stage.name)
        return results

    def _clear(self, stage: Stage, output: Path) -> None:
        kind = stage.name.split(":")[0]
        if kind == "base":
            return  # the tiny builder checks its own spec and rebuilds only when it differs
        if kind in ("train",):
            shutil.rmtree(output.parent, ignore_errors=True)
        elif kind in ("leaderboard", "contamination", "mtbench"):
            label = stage.name.split(":", 1)[1]
            d = self.rd.model_dir(label)
            if kind == "leaderboard":
                for p in (d / "leaderboard.json", d / "leaderboard_samples", d / "lm_eval_cache", d / "lm_eval_tasks"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            elif kind == "contamination":
                for p in [d / "contamination.json", *d.glob("contamination_*.jsonl")]:
                    p.unlink(missing_ok=True)
            else:
                shutil.rmtree(self.rd.mtbench_dir(label), ignore_errors=True)
        elif output.exists() and output.is_file():
            output.unlink()


def print_plan(runner: Runner, force: list[str]) -> None:
    rows = runner.status(force)
    width = max(len(s.name) for s, _, _ in rows)
    print(f"plan for {runner.exp.name} ({sum(1 for _, w, _ in rows if w == 'run')} of {len(rows)} stages to run):")
    for s, what, why in rows:
        print(f"  {s.name:<{width}}  {what:<4}  {why:<16} {s.estimate}")


def run_experiment(exp: Experiment, rd: RunDir | None = None, force: list[str] | None = None,
                   dry_run: bool = False) -> Runner:
    rd = rd or pipeline.rundir_for(exp)
    runner = Runner(exp, rd)
    if dry_run:
        print_plan(runner, force or [])
        return runner
    rd.reports.mkdir(parents=True, exist_ok=True)
    for folder in (rd.reports, rd.checkpoints):       # temp files of writes a kill interrupted
        for tmp in folder.rglob(".*.tmp") if folder.exists() else []:
            tmp.unlink(missing_ok=True)
    handler = logging.FileHandler(rd.log_file())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        rd.write_manifest(exp.model_dump(mode="json", by_alias=True))
        t0 = time.time()
        done = runner.run(force)
        if done:
            print(f"{exp.name}: ran {len(done)} stage(s) in {time.time() - t0:.1f}s; results in {rd.reports}")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return runner
