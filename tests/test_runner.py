"""`evalkit run`: the plan, invalidation, and resuming after SIGKILL at random moments."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from evalkit.config import load_experiment
from evalkit.devserver import Script, ServerThread
from evalkit.rundir import RunDir
from evalkit.runner import run_experiment
from test_schema import assert_matches_schema, assert_reads_back

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "tasks" / "experiments").glob("*.yaml")) + [REPO / "evalkit" / "data" / "experiments" / "demo.yaml"]
MINI_SUITE = """name: mini
entries:
  - {name: arc_challenge, shots: 0, metric: acc_norm, tasks: [{task: arc_challenge}]}
  - {name: gsm8k, shots: 1, metric: exact_match, filter: strict-match, tasks: [{task: gsm8k}]}
"""


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_dry_run_of_every_shipped_experiment(path, tmp_path):
    res = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", str(path), "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"plan for {load_experiment(path).name}")
    assert "train:" in res.stdout and "report" in res.stdout
    assert not (tmp_path / "checkpoints").exists(), "a dry run loads and writes nothing"


def write_experiment(root: Path, base: Path, judge_url: str) -> Path:
    (root / "mini.yaml").write_text(MINI_SUITE)
    p = root / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: r
        base_model: {base}
        datasets:
          math: {{generate: metamath_synthetic, n: 32, seed: 1}}
        variants:
          - &dpo {{name: dpo, data: math, loss: dpo, beta: 0.3, learning_rate: 3.0e-4, max_steps: 12, batch_size: 8,
                  max_length: 160, max_prompt_length: 96, logging_steps: 4}}
          - {{<<: *dpo, name: dpop, loss: dpop}}
        eval:
          leaderboard: {{suite: {root / 'mini.yaml'}, data_dir: sample, batch_size: 8, limit: 4}}
          mtbench:
            questions: sample
            max_new_tokens: 8
            judge: {{model: scripted, base_url: "{judge_url}", timeout: 5}}
          contamination: {{benchmarks: [gsm8k], data_dir: sample, n_examples: 4, n_neighbours: 10}}
        """))
    return p


def run_cli(cwd: Path, exp: Path, *extra, quiet_bars: bool = True) -> subprocess.Popen:
    # one torch thread: the uninterrupted run and the interrupted ones share two cores
    env = {**{k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "evalkit.cli", "run", str(exp), *extra], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "TQDM_DISABLE": "1"} if quiet_bars else env)


def results(root: Path) -> dict:
    rd = RunDir("r", root=root)
    out = {}
    for m in ("base", "dpo", "dpop"):
        if m != "base":
            out[f"train:{m}"] = rd.read("evalkit", variant=m)["logps_summary"]
            out[f"contamination:{m}"] = {b: (v["result"], v["control"]) for b, v in
                                         rd.read("contamination", model=m)["benchmarks"].items()}
        out[f"leaderboard:{m}"] = rd.read("leaderboard", model=m)["tasks"]
        out[f"answers:{m}"] = sorted((a["question_id"], a["choices"][0]["turns"]) for a in
                                     rd.read("mtbench_answers", model=m, answerer=m))
        out[f"judgments:{m}"] = sorted((j["request_hash"], j["score"]) for j in
                                       rd.read("mtbench_judgments", model=m, judge="scripted", mode="single"))
        assert out[f"answers:{m}"] and out[f"judgments:{m}"], m
    return json.loads(json.dumps(out))


def assert_clean(root: Path) -> None:
    """No half files: every JSON parses, no JSONL has a torn line or a duplicate key."""
    for f in list(root.rglob("*.json")) + list(root.rglob("*.jsonl")):
        if "lm_eval" in str(f) or "leaderboard_samples" in str(f):
            continue
        text = f.read_text()
        if f.suffix == ".json":
            json.loads(text)
        else:
            assert text == "" or text.endswith("\n"), f
            rows = [json.loads(line) for line in text.splitlines()]
            keys = [r.get("request_hash") or r.get("question_id") for r in rows if "step" not in r]
            keys = [k for k in keys if k is not None]
            assert len(keys) == len(set(keys)), f"duplicates in {f}"
    assert not list(root.rglob(".*.tmp")) and not list(root.rglob("*.partial"))


def watch_for_work(p: subprocess.Popen, working: threading.Event) -> None:
    """Set `working` when the run starts a stage with work (or ends); drain its stderr."""
    for line in p.stderr:
        if ": running" in line:
            working.set()
    working.set()


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, tiny_model_dir):
    """The experiment run twice beside each other: uninterrupted (`ref_root`), and killed with
    SIGKILL at five random moments, then resumed to the end (`run_root`). The judge server stays
    up while the module's tests use the folders."""
    tmp_path = tmp_path_factory.mktemp("runner")
    with ServerThread(Script()) as srv:
        ref_root, run_root = tmp_path / "ref", tmp_path / "killed"
        ref_root.mkdir(), run_root.mkdir()
        exp_ref = write_experiment(ref_root, tiny_model_dir, srv.base_url)
        exp_run = write_experiment(run_root, tiny_model_dir, srv.base_url)
        # the uninterrupted run goes on beside the interrupted ones (separate folders)
        t0 = time.time()
        ref = run_cli(ref_root, exp_ref, quiet_bars=False)
        ref_out = {}
        reader = threading.Thread(target=lambda: ref_out.update(zip(("out", "err"), ref.communicate(timeout=600))))
        reader.start()
        rng = random.Random(0)
        kills = []
        for _ in range(5):
            p = run_cli(run_root, exp_run)
            # past start-up (imports), somewhere in the stages: a random moment after the first
            # stage with work starts (a fixed delay from launch missed the stages on a fast machine)
            working = threading.Event()
            threading.Thread(target=watch_for_work, args=(p, working)).start()
            moment = rng.uniform(0.2, 2.5)
            try:
                working.wait(120)
                p.wait(moment)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills.append(round(moment, 1))
            stages = (RunDir("r", root=run_root).load_manifest().get("stages") or {})
            assert_clean(run_root / "reports") if not stages else None
        reader.join(600)
        full = time.time() - t0
        final = run_cli(run_root, exp_run)
        assert final.wait(600) == 0, final.stderr.read()[-3000:]
        yield SimpleNamespace(ref_root=ref_root, run_root=run_root, exp_run=exp_run, ref=ref,
                              ref_err=ref_out["err"], seconds=full, kills=kills)


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(resumed_run):
    ref_root, run_root, exp_run, err = resumed_run.ref_root, resumed_run.run_root, resumed_run.exp_run, resumed_run.ref_err
    assert resumed_run.ref.returncode == 0, err[-3000:]
    # a quiet console: one line per stage with work and the warnings (no bars: stderr is a pipe);
    # the libraries' chatter and evalkit's other lines are in run.log
    stage_lines = [x for x in err.splitlines() if ": running (" in x]
    assert len(stage_lines) == len(RunDir("r", root=ref_root).load_manifest()["stages"]), err[-3000:]
    assert len(err.splitlines()) <= len(stage_lines) + 10 and "it/s]" not in err, err[-3000:]
    for chatter in ("Generating", "Task: ", "fatal: not a git", "deprecated", "lm_eval", "Warning"):
        assert chatter not in err, (chatter, err[-3000:])
    assert "[1/" in err and "leaderboard:base: running" in err
    run_log = RunDir("r", root=ref_root).log_file().read_text()
    assert "Task: " in run_log and "leaderboard:base: running" in run_log
    print(f"\nuninterrupted run done {resumed_run.seconds:.1f}s after its start; killed at {resumed_run.kills}")
    assert len(resumed_run.kills) >= 4, f"runs interrupted: {resumed_run.kills}"
    assert results(run_root) == results(ref_root)
    assert_clean(run_root / "reports")
    assert_clean(run_root / "checkpoints")
    # every result file the run wrote reads back through its typed schema
    assert assert_matches_schema(run_root) >= 10
    # a finished experiment: no model work, says so
    again = run_cli(run_root, exp_run)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "nothing to do" in out

    # invalidation: one variant's beta changes -> only its stages rerun
    rd = RunDir("r", root=run_root)
    cwd = os.getcwd()
    try:
        os.chdir(run_root)
        exp = load_experiment(exp_run, ["variants.dpop.beta=0.5"])
        runner = run_experiment(exp, rd)
    finally:
        os.chdir(cwd)
    assert set(runner.ran) == {"train:dpop", "leaderboard:dpop", "mtbench:dpop", "contamination:dpop", "report"}
    assert rd.load_manifest()["stages"]["train:dpop"]["hash"] == runner.hashes["train:dpop"]
    assert rd.read("evalkit", variant="dpop")["hyperparameters"]["beta"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("run", ["ref_root", "run_root"])
def test_every_file_the_run_wrote_reads_back_through_rundir(resumed_run, run):
    """RunDir.records() finds every JSON / JSONL file under reports/ and checkpoints/ (save_pretrained's
    own files aside), and RunDir.read reads each through its schema."""
    root = getattr(resumed_run, run)
    kinds = assert_reads_back(RunDir("r", root=root), root / "reports", root / "checkpoints")
    assert {"manifest", "leaderboard", "leaderboard_samples", "contamination", "contamination_examples",
            "mtbench_summary", "mtbench_answers", "mtbench_judgments", "mtbench_questions", "cache_stamp",
            "evalkit", "train_metrics", "ngram_overlap", "benchmark_rows", "pairs", "suite"} <= kinds


def test_models_are_released_when_no_later_stage_needs_them(tmp_path, tiny_model_dir):
    """The contamination stages share loaded models through the runner; a target goes once its
    own stage is done, the reference (the base) once no contamination stage is left."""
    from evalkit.runner import Runner
    exp_path = write_experiment(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
    exp = load_experiment(exp_path)
    runner = Runner(exp, RunDir("r", root=tmp_path), progress=False)
    dpo, dpop, base = runner.model_path("dpo"), runner.model_path("dpop"), runner.model_path("base")
    runner.loaded.update({dpo: "dpo model", dpop: "dpop model", base: "reference", ("neighbours", base): {}})
    stages = {s.name: s for s in runner.stages}
    runner._release([stages["contamination:dpop"], stages["report"]])
    assert set(runner.loaded) == {dpop, base, ("neighbours", base)}
    runner._release([stages["report"]])
    assert runner.loaded == {}


def test_manifest_records_the_runs_peak_memory(tmp_path, tiny_model_dir):
    exp = tmp_path / "e.yaml"
    exp.write_text(f"name: m\nbase_model: {tiny_model_dir}\ndatasets:\n  d: {{generate: metamath_synthetic, n: 4}}\n"
                   "report: {enabled: false}\n")
    rd = RunDir("m", root=tmp_path)
    run_experiment(load_experiment(exp), rd, progress=False)
    man = rd.load_manifest()
    assert man["last_run"]["peak_rss_mb"] > 50 and man["last_run"]["stages_run"] == ["base", "data:d"]
    assert man["stages"]["data:d"]["peak_rss_mb"] > 50
    assert assert_matches_schema(tmp_path) >= 1
    # a rerun with nothing to do keeps the record of the last run that had work
    run_experiment(load_experiment(exp), rd, progress=False)
    assert rd.load_manifest()["last_run"] == man["last_run"]
