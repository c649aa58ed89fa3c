"""Seams where a result could be lost or served stale, or a run could hang (issue 23's
reproductions that are not one bad input): each test fails on the code before the fix."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evalkit.cli import build_parser, main
from evalkit.devserver import Script, ServerThread
from evalkit.errors import UserError
from evalkit.rundir import RunDir, read_jsonl

REPO = Path(__file__).resolve().parent.parent
SHOW_RESULT = REPO.parent / "shared" / "reference" / "fastchat-llm_judge" / "show_result.py"


def _questions(tmp_path: Path) -> Path:
    p = tmp_path / "q.jsonl"
    p.write_text("".join(json.dumps({"question_id": i, "category": "writing", "turns": [f"Write {i}.", f"Cut {i}."]})
                         + "\n" for i in range(2)))
    return p


def _answers(tmp_path: Path, model: str, text: str = "An answer") -> Path:
    p = tmp_path / f"{model}.jsonl"
    p.write_text("".join(json.dumps({"question_id": i, "model_id": model,
                                     "choices": [{"index": 0, "turns": [f"{text} {i}.", f"{text} {i}, shorter."]}]})
                         + "\n" for i in range(2)))
    return p


def test_mtbench_second_model_into_one_out_keeps_the_first(tmp_path, capsys):
    """FastChat's layout: one judgment file per judge holding every model. Judging m2 into m1's
    --out keeps m1's rows; re-judging m1 with new answers replaces only m1's stale rows."""
    q, out = _questions(tmp_path), tmp_path / "out"
    judgments = out / "model_judgment" / "scripted_single.jsonl"
    with ServerThread(Script()) as srv:
        def judge(answers: Path) -> int:
            return main(["mtbench", str(answers), "--judge", "scripted", "--questions", str(q),
                         "--judge-base-url", srv.base_url, "--out", str(out)])
        assert judge(_answers(tmp_path, "m1")) == 0
        assert judge(_answers(tmp_path, "m2")) == 0
        rows = read_jsonl(judgments)
        assert sorted(r["model"] for r in rows) == ["m1"] * 4 + ["m2"] * 4
        m2_rows = [r for r in rows if r["model"] == "m2"]
        assert judge(_answers(tmp_path, "m1", "A new answer")) == 0    # m1's answers changed
    rows = read_jsonl(judgments)
    assert [r for r in rows if r["model"] == "m2"] == m2_rows, "the other model's judgments are untouched"
    m1 = [r for r in rows if r["model"] == "m1"]
    assert len(m1) == 4 and all("A new answer" in r["user_prompt"] for r in m1), "only m1's stale rows went"
    if SHOW_RESULT.exists():           # FastChat's own show_result lists both models
        res = subprocess.run([sys.executable, str(SHOW_RESULT), "--mode", "single", "--input-file", str(judgments)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        average = res.stdout.split("Average")[-1]
        assert "m1" in average and "m2" in average, res.stdout


def test_mtbench_judge_that_never_answers_is_bounded_by_timeout(tmp_path, capsys):
    q, a = _questions(tmp_path), _answers(tmp_path, "m1")
    with ServerThread(Script(fault_rate=1.0, faults=("hang",), hang_seconds=30)) as srv:
        t0 = time.time()
        code = main(["mtbench", str(a), "--judge", "scripted", "--questions", str(q), "--judge-base-url",
                     srv.base_url, "--out", str(tmp_path / "out"), "--timeout", "0.3", "--max-retries", "0"])
        seconds = time.time() - t0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "4 of 4 judge calls failed" in err[0], err
    assert seconds < 15, f"took {seconds:.1f}s"


def test_debug_and_verbose_after_the_verb(tmp_path):
    parser = build_parser()
    assert parser.parse_args(["validate", "x.yaml", "--debug"]).debug is True
    assert parser.parse_args(["--debug", "validate", "x.yaml"]).debug is True     # before the verb still works
    assert parser.parse_args(["validate", "x.yaml"]).debug is False
    assert parser.parse_args(["run", "x.yaml", "-v"]).verbose is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\n")
    with pytest.raises(UserError):     # --debug after the verb: the traceback, as the hint promises
        main(["validate", str(bad), "--debug"])


def test_local_task_data_edited_with_its_mtime_kept_is_read_again(tmp_path):
    """datasets keys its cache of local files on path and mtime: an edit that keeps the mtime
    (cp -p, rsync -a, tar -x) must still be what lm-eval scores."""
    import datasets
    import yaml

    from evalkit.eval.sample_data import write_open_llm_v1
    from evalkit.eval.suites import Entry, Suite, TaskRef, write_task_yamls
    write_open_llm_v1(tmp_path / "data", n_eval=4, seed=0)
    suite = Suite(name="one", entries=[Entry(name="arc", shots=0, metric="acc",
                                             tasks=[TaskRef(task="arc_challenge")])])
    write_task_yamls(suite, tmp_path / "tasks", tmp_path / "data")
    doc = yaml.safe_load((tmp_path / "tasks" / "arc_challenge.yaml").read_text())
    kwargs = doc["dataset_kwargs"]
    split = "test"
    f = Path(kwargs["data_files"][split])

    def first_question():   # as lm-eval's ConfigurableTask.download calls it
        return datasets.load_dataset(doc["dataset_path"], **kwargs)[split][0]["question"]

    before, st = first_question(), f.stat()
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    rows[0]["question"] = rows[0]["question"][::-1]                  # same length, other content
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert first_question() == before[::-1]


def test_sample_data_follows_the_seed(tmp_path):
    """`data_dir: sample` is made again when its inputs change, and the stages that read it rerun."""
    from evalkit import stages
    from evalkit.config import load_experiment
    from evalkit.eval.sample_data import write_open_llm_v1
    from evalkit.runner import Runner
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent("""\
        name: s
        base_model: some-org/some-model
        eval: {leaderboard: {data_dir: sample}}
        """))
    rd = RunDir("s", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")
    exp0, exp1 = load_experiment(p), load_experiment(p, ["seed=1"])
    rel = "openai/gsm8k/main/test.jsonl"
    d0 = Path(stages.sample_data_dir(exp0, rd, "sample"))
    first = (d0 / rel).read_text()
    d1 = Path(stages.sample_data_dir(exp1, rd, "sample"))
    write_open_llm_v1(tmp_path / "fresh", n_eval=stages.SAMPLE_ITEMS["leaderboard"], seed=1)
    assert d1 == d0 and (d1 / rel).read_text() == (tmp_path / "fresh" / rel).read_text() != first
    assert Runner(exp0, rd).hashes["leaderboard:base"] != Runner(exp1, rd).hashes["leaderboard:base"]


def test_the_seed_is_part_of_every_stage_that_samples_with_it(tmp_path):
    """MT-Bench answers are sampled with the experiment's seed (temperature 0.7 for writing):
    another seed reruns the MT-Bench stage, never keeps the other seed's answers as done."""
    from evalkit.config import load_experiment
    from evalkit.runner import Runner
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent("""\
        name: s
        base_model: some-org/some-model
        eval: {mtbench: {questions: sample, judge: {model: j, base_url: "http://127.0.0.1:9/v1"}}}
        """))
    rd = RunDir("s", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")
    hashes = [Runner(load_experiment(p, [f"seed={s}"]), rd).hashes["mtbench:base"] for s in (0, 1)]
    assert hashes[0] != hashes[1]


def test_checkpoint_swap_leaves_a_loadable_checkpoint_at_every_point(tmp_path, monkeypatch):
    from evalkit import rundir
    from evalkit.train import onpolicy, stepwise, trainer
    assert trainer.swap_in is stepwise.swap_in is onpolicy.swap_in is rundir.swap_in, "one swap for all three"
    target, new = tmp_path / "dpo", tmp_path / "dpo.partial"

    def folder(path: Path, text: str) -> None:
        path.mkdir()
        (path / "model.safetensors").write_text(text)
    folder(target, "old")
    folder(new, "new")
    real_rename, calls = os.rename, []

    def killed_after_aside(src, dst):
        calls.append(src)
        if len(calls) == 2:                      # the old one is aside, the new one not yet in
            raise KeyboardInterrupt
        real_rename(src, dst)
    monkeypatch.setattr(rundir.os, "rename", killed_after_aside)
    with pytest.raises(KeyboardInterrupt):
        rundir.swap_in(new, target)
    monkeypatch.setattr(rundir.os, "rename", real_rename)
    assert not target.exists()
    rundir.restore_swapped(target)               # what the next run (or swap) does first
    assert (target / "model.safetensors").read_text() == "old"
    monkeypatch.setenv("RANK", "1")              # under accelerate launch only rank 0 swaps
    rundir.swap_in(new, target)
    assert (target / "model.safetensors").read_text() == "old" and new.exists()
    monkeypatch.setenv("RANK", "0")
    rundir.swap_in(new, target)
    assert (target / "model.safetensors").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpo"], "nothing left aside"


def test_non_finite_training_stops_and_keeps_the_previous_checkpoint(tmp_path, tiny_model_dir):
    from evalkit.config import load_experiment
    from evalkit.runner import train_experiment
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: nf
        base_model: {tiny_model_dir}
        datasets: {{math: {{generate: metamath_synthetic, n: 8}}}}
        variants:
          - {{name: dpo, data: math, learning_rate: 1.0e-4, max_steps: 2, batch_size: 4, max_length: 96,
              max_prompt_length: 48, logging_steps: 1}}
        """))
    rd = RunDir("nf", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")
    train_experiment(load_experiment(p), rd=rd, progress=False)
    before = {f.name: f.read_bytes() for f in rd.checkpoint("dpo").iterdir() if f.is_file()}
    with pytest.raises(UserError, match="non-finite"):
        train_experiment(load_experiment(p, ["variants.dpo.learning_rate=1.0e+30"]), rd=rd, progress=False)
    after = {f.name: f.read_bytes() for f in rd.checkpoint("dpo").iterdir() if f.is_file()}
    assert after == before, "the previous checkpoint is kept byte for byte"
    assert sorted(x.name for x in rd.checkpoints.iterdir() if not x.name.startswith("_")) == ["dpo"]


def test_one_rule_for_names_that_become_paths():
    from evalkit.rundir import name_problem, path_component
    for bad in ["../escape", "/etc/x", "a/b", "a\\b", "..", ".hidden", "-x", "", "x" * 129, "a\0b"]:
        assert name_problem(bad), bad
    for good in ["dpo", "math_pairs", "v1.2-b", "A" * 128]:
        assert name_problem(good) is None, good
    for outside in ["org/model", "../../x", "..", "/abs/model", "gpt-4o", "a b", ""]:   # hub ids, judge names
        assert name_problem(path_component(outside)) is None, outside
    assert path_component("org/model") == "org_model" and path_component("gpt-4o") == "gpt-4o"
    rd = RunDir("r")
    for where in (rd.generated_data, rd.checkpoint, rd.model_dir):
        with pytest.raises(UserError, match="cannot name a file or folder"):
            where("../../escape")


def test_a_reader_that_leaves_the_pipe_is_not_an_error(tmp_path):
    """`evalkit run FILE --dry-run | head`: the reader closes the pipe early; no internal error line."""
    import subprocess
    import sys
    from pathlib import Path
    demo = Path(__file__).resolve().parent.parent / "evalkit" / "data" / "experiments" / "demo.yaml"
    res = subprocess.run(f"{sys.executable} -m evalkit.cli run {demo} --dry-run | true", shell=True, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert "error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
