"""`evalkit run` (and `evalkit train`, `evalkit demo`): an experiment as an ordered plan of
stages; it decides which stages to skip and what the manifest says, and claims each stage's
caches (evalkit.caches) before the stage runs.

1. Each stage has a hash of what determines its result: its slice of the config, the
   content of its inputs (the bytes of a dataset file, the files of a local base model, the
   tiny model's spec) and the hashes of the stages it depends on. A trained checkpoint is
   therefore recognised by its recipe, however it was produced (`evalkit train`, `evalkit
   run`, several processes under `accelerate launch`).
2. A stage is skipped when the manifest records it done with the same hash, its outputs
   exist, and (for scoring stages) the model it scored still has the files it had then.
3. Before a stage runs, its caches are claimed: its scratch (partial work such as lm-eval's
   request cache or MT-Bench answers) is kept only for the same stage hash and model files,
   and `data_dir: sample` data is made again when its key changes (evalkit.caches.Slot).
   Caches opened inside a stage follow the same rule with their own content keys.
4. Stage functions (evalkit.stages) replace an old output only with a finished new one, so
   a rerun that fails keeps the previous result and the manifest says `failed`.
5. All writes are atomic or append-only with fsync: a run killed at any moment resumes
   where it stopped.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__, logs, stages
from .backends import known_models
from .caches import Slot, key_of
from .config import Experiment, TinyBase, load_experiment
from .data import path as packaged
from .errors import UserError
from .rundir import CheckpointFiles, RunDir, content_hash, file_hash, is_main_process, restore_swapped, stat_file_hash

log = logging.getLogger("evalkit")

DEMO_EXPERIMENT = packaged("experiments", "demo.yaml")
REAL_EXPERIMENT = packaged("experiments", "smollm2-gsm8k.yaml")


@dataclass
class Stage:
    name: str
    slice: Any                          # the config (and input content) that determines the result
    deps: list[str]
    run: Callable[[], Any]
    outputs: list[Path] = field(default_factory=list)   # must exist when done
    estimate: str = ""
    model: str | None = None            # scoring stages: the label of the model they score
    scratch: list[Slot] = field(default_factory=list)   # partial work, kept for the same hash and model
    made: list[Callable[[], Any]] = field(default_factory=list)   # inputs made before it runs (sample data)
    # caches the stage claims itself under a content key of its own (lm-eval's request
    # cache): cleared by the runner only when the stage is forced, so --force recomputes
    forced_clear: list[Slot] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.name.split(":")[0]

    def done_on_disk(self) -> bool:
        return all(p.exists() for p in self.outputs)


class Runner:
    def __init__(self, exp: Experiment, rd: RunDir, only: Callable[[str], bool] | None = None,
                 progress: bool = True):
        self.exp, self.rd, self.progress = exp, rd, progress
        self.base_path: str | None = None
        self.judge_stack = contextlib.ExitStack()
        self.judge_url: str | None = None
        self.loaded: dict = {}                       # models shared by contamination stages
        self.ran: list[str] = []
        self.stages = self._plan()
        if only is not None:
            self.stages = self._closure([s.name for s in self.stages if only(s.name)])
        self.hashes = self._hashes()
        self._fingerprints: dict[str, str] = {}

    # ------------------------------------------------------------ the plan
    def base(self) -> str:
        if self.base_path is None:
            self.base_path = stages.base_model(self.exp, self.rd)
        return self.base_path

    def model_path(self, label: str) -> str:
        return self.base() if label == "base" else str(self.rd.checkpoint(label))

    def _plan(self) -> list[Stage]:
        exp, rd = self.exp, self.rd
        dump = lambda m: m.model_dump(mode="json", by_alias=True) if m is not None else None  # noqa: E731
        tiny = isinstance(exp.base_model, TinyBase)
        # a tiny base is its spec and its builder's code (an edit to the builder rebuilds it)
        from .backends.tiny import tiny_builder_hash
        base_slice = {"tiny": dump(exp.base_model), "builder": tiny_builder_hash()} if tiny else \
            ({"files": files} if (files := _model_content(exp.base_model)) else {"model": exp.base_model})
        plan = [Stage("base", base_slice, [], self.base, [CheckpointFiles(rd.base_checkpoint()).tiny_spec] if tiny else [],
                      "build the tiny model" if tiny else "materialise the packaged model (once)"
                      if isinstance(exp.base_model, str) and known_models.is_known(exp.base_model)
                      else "use the hub/local model")]
        for ds, src in exp.datasets.items():
            # a dataset file is its bytes: the same data under another name or folder is not new
            content = _data_content(src)
            source = {k: v for k, v in dump(src).items() if not (k == "path" and content)}
            plan.append(Stage(f"data:{ds}", {"source": source, "content": content}, [],
                              lambda ds=ds: stages.data(exp, rd, ds),
                              [rd.generated_data(ds)] if src.generate else [],
                              {"metamath_synthetic": f"generate {src.n or 200} pairs", "arc_pairs": "build ARC-style pairs",
                               None: "read and check"}.get(src.generate, f"build {src.generate}")))
        for v in exp.variants:
            steps = v.max_steps or f"{v.epochs} epoch(s)"
            if v.onpolicy is not None:
                steps = f"{v.onpolicy.rounds} rounds x {v.onpolicy.steps_per_round}"
            plan.append(Stage(f"train:{v.name}", {"variant": dump(v), "seed": exp.seed},
                              ["base"] + [f"data:{d}" for d in v.datasets_read()],
                              lambda v=v: stages.train(exp, rd, v.name, self.base(), self.progress),
                              [rd.train_metadata(v.name)], f"{v.loss}, {steps} steps, batch {v.batch_size}"))
        dep = lambda m: ["base"] if m == "base" else ["base", f"train:{m}"]  # noqa: E731
        lb = exp.eval.leaderboard
        if lb is not None and lb.enabled:
            lb_inputs = _inputs_content(dump(lb), rd, "leaderboard", exp)
            # a packaged suite is named, not given as a file: its bytes (the protocol's shots,
            # model arguments, lm-eval model) are part of what a leaderboard stage depends on
            from .eval.suites import SUITES_DIR
            packaged_suite = file_hash(SUITES_DIR / f"{lb.suite}.yaml") \
                if (SUITES_DIR / f"{lb.suite}.yaml").is_file() else None
            for m in exp.scored("leaderboard"):
                files = rd.model_files(m)
                # one model's chat settings are part of its own stage only
                lb_slice = {**{k: v for k, v in dump(lb).items() if k not in ("per_model", "models")},
                            "chat": stages.chat_settings(lb, m), "inputs": lb_inputs, "suite": packaged_suite}
                plan.append(Stage(f"leaderboard:{m}", lb_slice, dep(m),
                                  lambda m=m: stages.leaderboard(exp, rd, m, self.model_path(m)),
                                  [rd.leaderboard(m)], f"suite {lb.suite}" + (f", limit {lb.limit}" if lb.limit else ""),
                                  model=m, scratch=[Slot("stage-scratch", files.lm_eval_tasks)],
                                  forced_clear=[Slot("lm-eval-requests", files.lm_eval_cache)],
                                  made=self._sample_data(lb.data_dir, "leaderboard")))
        mt = exp.eval.mtbench
        if mt is not None and mt.enabled:
            # which models are scored is not part of one model's result
            # answers are sampled with the experiment's seed: part of every MT-Bench result
            mt_slice = {**{k: v for k, v in dump(mt).items() if k != "models"}, "seed": exp.seed,
                        "inputs": _inputs_content(dump(mt), rd, exp=exp)}
            for m in exp.scored("mtbench"):
                if mt.mode == "pairwise" and m == mt.baseline:
                    continue
                deps = dep(m) + (dep(mt.baseline) if mt.mode == "pairwise" and mt.baseline else [])
                plan.append(Stage(f"mtbench:{m}", mt_slice, sorted(set(deps)), lambda m=m: self._mtbench(m),
                                  [rd.mtbench_files(m).summary], f"{mt.mode} judging by "
                                  f"{(mt.judge.serve or mt.judge.model) if mt.judge else '?'}",
                                  model=m, scratch=[Slot("stage-scratch", rd.mtbench_dir(m))]))
        ct = exp.eval.contamination
        if ct is not None and ct.enabled:
            ct_slice = {**{k: v for k, v in dump(ct).items() if k != "models"},
                        "inputs": _inputs_content(dump(ct), rd, "contamination", exp)}
            for name in exp.scored("contamination"):
                plan.append(Stage(f"contamination:{name}", ct_slice, dep(name),
                                  lambda name=name: stages.contamination(exp, rd, name, self.model_path(name),
                                                                         self.base(), self.loaded),
                                  [rd.contamination(name)],
                                  f"{len(ct.benchmarks)} benchmarks x {ct.n_examples} examples x {ct.n_neighbours}",
                                  model=name, made=self._sample_data(ct.data_dir, "contamination")))
            if exp.datasets:
                plan.append(Stage("ngram", ct_slice, [f"data:{d}" for d in exp.datasets],
                                  lambda: stages.ngram(exp, rd), [rd.ngram_overlap()], f"{ct.ngram}-grams",
                                  made=self._sample_data(ct.data_dir, "contamination")))
        if exp.report.enabled:
            plan.append(Stage("report", dump(exp.report), [s.name for s in plan],
                              lambda: stages.report(exp, rd), [rd.report_html()], "one HTML page"))
        return plan

    def _sample_data(self, data_dir: str | None, kind: str) -> list[Callable[[], Any]]:
        """`data_dir: sample`: the sample data a stage reads, made (again) before it runs."""
        return [lambda: stages.sample_data(self.exp, self.rd, kind)] if data_dir == "sample" else []

    def _closure(self, names: list[str]) -> list[Stage]:
        """The named stages and everything they depend on, in plan order."""
        by_name = {s.name: s for s in self.stages}
        want, todo = set(), list(names)
        while todo:
            n = todo.pop()
            if n not in want:
                want.add(n)
                todo += by_name[n].deps
        return [s for s in self.stages if s.name in want]

    def _hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.stages:
            out[s.name] = content_hash({"stage": s.kind, "slice": s.slice, "deps": [out[d] for d in s.deps],
                                        "evalkit": __version__})
        return out

    def _model_fingerprint(self, label: str) -> str | None:
        """Content fingerprint of a model on disk (None while it does not exist yet)."""
        from .backends.fingerprint import model_fingerprint
        path = self.rd.checkpoint(label) if label != "base" else None
        if path is not None and not path.is_dir():
            return None
        if label not in self._fingerprints:
            if label == "base" and isinstance(self.exp.base_model, TinyBase) and not self.rd.base_checkpoint().is_dir():
                return None
            if label == "base" and known_models.is_known(self.exp.base_model) and \
                    known_models.materialised(self.exp.base_model) is None:
                return None
            self._fingerprints[label] = model_fingerprint(str(path) if path else self.model_path("base"))
        return self._fingerprints[label]

    def _mtbench(self, label: str):
        from .backends.serve import judge_endpoint
        mt = self.exp.eval.mtbench
        if mt.judge is None:
            raise UserError("eval.mtbench.judge: required key missing (model, and base_url or serve)")
        if self.judge_url is None:
            self.judge_url = self.judge_stack.enter_context(judge_endpoint(mt.judge.serve, mt.judge.base_url)) or ""
        paths = {label: self.model_path(label)}
        if mt.mode == "pairwise" and mt.baseline:
            paths[mt.baseline] = self.model_path(mt.baseline)
        return stages.mtbench(self.exp, self.rd, label, paths, self.judge_url or None)

    # ------------------------------------------------------------ deciding
    def status(self, force: list[str]) -> list[tuple[Stage, str, str]]:
        recorded = (self.rd.load_manifest().get("stages") or {})
        rows = []
        for s in self.stages:
            rec = recorded.get(s.name) or {}
            forced = any(s.name == f or s.kind == f for f in force)
            same = rec.get("status") == "done" and rec.get("hash") == self.hashes[s.name]
            if forced:
                rows.append((s, "run", "forced"))
            elif same and not s.done_on_disk():
                rows.append((s, "run", "outputs missing"))
            elif same and s.model and rec.get("model_fingerprint") != self._model_fingerprint(s.model):
                rows.append((s, "run", "model changed"))
            elif same:
                rows.append((s, "skip", "done"))
            elif rec.get("hash") and rec.get("hash") != self.hashes[s.name]:
                rows.append((s, "run", "inputs changed"))
            else:
                rows.append((s, "run", "not done" if not rec else f"was {rec.get('status')}"))
        return rows

    def preflight(self, force: list[str]) -> None:
        """Checks that need no model, before anything is written: --force names and
        check_inputs (a misspelt task or benchmark fails in seconds, not after training)."""
        self.check_force(force)
        check_inputs(self.exp)

    def check_force(self, force: list[str]) -> None:
        known = {s.name for s in self.stages} | {s.kind for s in self.stages}
        for f in force:
            if f not in known:
                raise UserError(f"--force {f}: no such stage (stages: {', '.join(s.name for s in self.stages)})")

    # ------------------------------------------------------------ running
    def _release(self, remaining: list[Stage]) -> None:
        """Free what no stage still to run needs: loaded contamination models (a 7B model is
        28 GB in fp32), a judge server this run started, and (a garbage collection after every
        stage) models a finished stage left in reference cycles, such as lm-eval's."""
        import gc
        kinds = {s.kind for s in remaining}
        if "contamination" not in kinds:
            self.loaded.clear()
        elif self.loaded:
            # a target is needed by its own stage only; the reference and control by every one
            from .backends.models import resolve_model
            sec = self.exp.eval.contamination
            keep = {self.model_path(s.model) for s in remaining if s.kind == "contamination"}
            keep |= {self.base(), *(resolve_model(m) for m in (sec.reference, sec.control) if m)}
            for key in [k for k in self.loaded if isinstance(k, str) and k not in keep]:
                del self.loaded[key]
        if "mtbench" not in kinds and self.judge_url is not None:
            self.judge_stack.close()          # stops a served judge
            self.judge_url = None
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()

    def run(self, force: list[str] | None = None) -> dict[str, str]:
        force = force or []
        self.check_force(force)
        plan = self.status(force)
        if not any(what == "run" for _, what, _ in plan):
            print(f"{self.exp.name}: every stage is up to date; nothing to do")
            return {}
        results = {}
        main = is_main_process()
        with self.judge_stack:
            for i, (stage, what, why) in enumerate(plan, 1):
                if what == "skip":
                    log.info("[%d/%d] %s: up to date", i, len(plan), stage.name)
                    continue
                log.info("[%d/%d] %s: running (%s; %s)", i, len(plan), stage.name, why, stage.estimate,
                         extra=logs.CONSOLE)
                logs.route()        # a library imported by an earlier stage: its records go to run.log
                if main:
                    fp = {"model_fingerprint": self._model_fingerprint(stage.model)} if stage.model else {}
                    # partial work of the same stage hash and model files resumes; any other is cleared
                    identity = key_of({"hash": self.hashes[stage.name], **fp})
                    for slot in stage.scratch:
                        slot.claim(identity, clear=why == "forced")
                    for slot in stage.forced_clear if why == "forced" else []:
                        slot.clear("forced")
                    for make in stage.made:
                        make()
                    self.rd.set_stage(stage.name, "running", hash=self.hashes[stage.name], **fp)
                t0 = time.time()
                try:
                    out = stage.run()
                except BaseException as e:
                    if main:
                        self.rd.set_stage(stage.name, "failed" if not isinstance(e, KeyboardInterrupt) else "interrupted",
                                          hash=self.hashes[stage.name])
                    raise
                self._fingerprints.pop(stage.name.split(":", 1)[-1], None)   # a new checkpoint
                self._release([s for s, w, _ in plan[i:] if w == "run"])
                # a judge that left calls unanswered: the stage resumes (only those calls) next run
                missing = out.get("errors", 0) if isinstance(out, dict) and stage.kind == "mtbench" else 0
                if missing:
                    log.warning("%s: %d judge calls failed (%s); `evalkit run` again retries just those",
                                stage.name, missing, "; ".join(out.get("error_examples", [])[:2]))
                if main:
                    extra = {}
                    if stage.model:
                        extra["model_fingerprint"] = self._model_fingerprint(stage.model)
                    self.rd.set_stage(stage.name, "incomplete" if missing else "done", hash=self.hashes[stage.name],
                                      seconds=round(time.time() - t0, 2), peak_rss_mb=peak_rss_mb(), **extra)
                results[stage.name] = f"{time.time() - t0:.1f}s"
                self.ran.append(stage.name)
        return results


def check_inputs(exp: Experiment) -> None:
    """What the eval stages read that needs no model, checked before any work (`validate`,
    `run --dry-run`, `run`): the leaderboard suite, its entries and task names; the MT-Bench
    questions (question_ids included); the contamination benchmarks in a local data_dir (sizes,
    prefixes, twins). `sample` data is made by the stage itself; hub data is checked by the stage
    before its models load."""
    lb, mt, ct = exp.eval.leaderboard, exp.eval.mtbench, exp.eval.contamination
    if lb is not None and lb.enabled:
        from .eval.suites import builtin_yaml, load_suite, only_entries
        suite = only_entries(load_suite(lb.suite), lb.entries)
        for _, ref in suite.task_refs():
            builtin_yaml(ref, suite.task_source)
    if mt is not None and mt.enabled:
        from .eval.mtbench import load_data
        try:
            load_data(mt.questions, mt.data_dir, mt.reference_answers, mt.question_ids)
        except UserError as e:
            raise UserError(f"eval.mtbench: {e}") from None
    if ct is not None and ct.enabled and ct.data_dir not in (None, "sample"):
        from .eval import contamination, contamination_run
        try:
            contamination_run.prepare(ct.benchmarks, contamination.params_from(ct), ct.data_dir)
        except UserError as e:
            raise UserError(f"eval.contamination: {e}") from None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (ru_maxrss). A served judge is a process of its
    own and is not counted (the children's figure would be no help: a child forked from evalkit
    starts with evalkit's pages)."""
    import resource
    kib = 1024 if os.uname().sysname == "Darwin" else 1     # ru_maxrss: bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib / 1024, 1)


def _data_content(src) -> str | None:
    """The bytes that determine a dataset: its file (or the file a builder reads)."""
    if src.path:
        p = Path(src.path)
        if not p.exists():
            return None               # the data stage names the missing file
        return file_hash(p)
    return None


def _inputs_content(section: Any, rd: RunDir, sample_kind: str | None = None,
                    exp: Experiment | None = None) -> dict[str, str]:
    """The bytes behind every file or folder an evaluation section names (a data_dir, a
    suite or questions file, a JSONL benchmark, twins, a local reference model): editing one
    reruns what read it. `sample` data is what the generator writes: its code, size and seed.
    This run's own checkpoints and reports are outputs of its stages (their hashes come in
    through the stage dependencies), so they are not read here."""
    found: dict[str, str] = {}
    own = [rd.checkpoints.resolve(), rd.reports.resolve()]

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v not in found:
            if known_models.is_known(v):       # a known real model: its GGUF's bytes
                found[v] = known_models.content_key(v)
                return
            if v == "sample" and sample_kind and exp is not None:
                found[v] = stages.sample_key(exp, sample_kind)
                return
            p = Path(v).expanduser()
            if len(v) < 4096 and ("/" in v or p.suffix) and p.exists() and \
                    not any(p.resolve() == o or o in p.resolve().parents for o in own):
                if p.is_file():
                    found[v] = file_hash(p)
                elif (p / "config.json").is_file():      # a model: its weights, config and tokenizer
                    from .backends.fingerprint import model_fingerprint
                    found[v] = model_fingerprint(str(p))
                elif p.is_dir():
                    found[v] = content_hash(sorted((str(f.relative_to(p)), stat_file_hash(f))
                                                   for f in p.rglob("*") if f.is_file()))

    walk(section)
    return found


def _model_content(name: str) -> str | None:
    """A local base model's files, so replacing its weights invalidates what used it; a
    known real model's GGUF bytes and conversion recipe."""
    if known_models.is_known(name):
        return known_models.content_key(name)
    if Path(name).expanduser().is_dir():
        from .backends.fingerprint import model_fingerprint
        return model_fingerprint(name)
    return None


def print_plan(runner: Runner, force: list[str]) -> None:
    rows = runner.status(force)
    width = max(len(s.name) for s, _, _ in rows)
    print(f"plan for {runner.exp.name} ({sum(1 for _, w, _ in rows if w == 'run')} of {len(rows)} stages to run):")
    for s, what, why in rows:
        print(f"  {s.name:<{width}}  {what:<4}  {why:<16} {s.estimate}")


def run_experiment(exp: Experiment, rd: RunDir | None = None, force: list[str] | None = None,
                   dry_run: bool = False, only: Callable[[str], bool] | None = None,
                   progress: bool = True) -> Runner:
    rd = rd or stages.rundir_for(exp)
    runner = Runner(exp, rd, only=only, progress=progress)
    runner.check_force(force or [])
    if dry_run:
        check_inputs(exp)
        print_plan(runner, force or [])
        return runner
    runner.preflight(force or [])
    if any(s.kind == "train" and what == "run" for s, what, _ in runner.status(force or [])):
        from .train.trainer import check_world_size
        check_world_size()            # before anything is written
    from .trackers import check
    check(exp.report_to)              # a tracker asked for and not installed: one line, before any work
    rd.reports.mkdir(parents=True, exist_ok=True)
    lock = _lock(rd) if is_main_process() else contextlib.nullcontext()
    with lock:
        return _run_locked(exp, rd, runner, force)


def _run_locked(exp: Experiment, rd: RunDir, runner: Runner, force: list[str] | None) -> Runner:
    handler = logging.FileHandler(rd.log_file())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        if is_main_process():
            for v in exp.variants:        # a checkpoint swap killed half way: put the old one back
                restore_swapped(rd.checkpoint(v.name))
            rd.write_manifest(exp.model_dump(mode="json", by_alias=True))
        t0, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
        done = runner.run(force)
        if done:
            own = peak_rss_mb()
            if is_main_process():
                rd.record_run({"started": started, "seconds": round(time.time() - t0, 1), "stages_run": list(done),
                               "peak_rss_mb": own})
            print(f"{exp.name}: ran {len(done)} stage(s) in {time.time() - t0:.1f}s (peak memory {own:.0f} MiB); "
                  f"results in {rd.reports}")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return runner


@contextlib.contextmanager
def _lock(rd: RunDir):
    """One run of an experiment at a time: a second one stops at once, naming the first.
    The kernel drops the lock when its holder dies (kill -9 included), so no stale lock
    outlives a killed run."""
    import fcntl
    path = rd.files.lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"{rd.reports}: experiment {rd.experiment!r} is already being run by PID {holder}; "
                            f"wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def train_experiment(exp: Experiment, only: list[str] | None = None, rd: RunDir | None = None,
                     progress: bool = True) -> dict[str, Path]:
    """`evalkit train`: the runner restricted to the train stages (of `only`, or all)."""
    for name in only or []:
        exp.variant(name)  # an unknown name fails early, in one line
    wanted = {f"train:{n}" for n in (only or [v.name for v in exp.variants])}
    runner = run_experiment(exp, rd, only=lambda s: s in wanted, progress=progress)
    return {n.split(":", 1)[1]: runner.rd.checkpoint(n.split(":", 1)[1]) for n in sorted(wanted)}


def run_demo(out: str | Path | None = None, force: list[str] | None = None, real: bool = False) -> RunDir:
    """`evalkit demo` is exactly `evalkit run` on the packaged demo experiment (`--real`: on the
    packaged real-model experiment)."""
    exp = load_experiment(REAL_EXPERIMENT if real else DEMO_EXPERIMENT)
    rd = stages.rundir_for(exp, reports=out or f"reports/{exp.name}")
    t0 = time.time()
    run_experiment(exp, rd, force=force)
    stages.print_summary(exp, rd)
    print(f"demo finished in {time.time() - t0:.1f}s; open {rd.report_html()}")
    return rd
