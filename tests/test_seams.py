"""Sequences of commands a user runs, with a change in between: the results must follow
the change, and nothing finished may be redone or deleted."""
import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.devserver import Script, ServerThread
from evalkit.rundir import RunDir, read_json


def write_experiment(tmp_path: Path, base: Path, data: Path, judge_url: str = "http://127.0.0.1:9/v1") -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: seams
        base_model: {base}
        datasets:
          pairs: {{path: {data}}}
        variants:
          - &dpo {{name: dpo, data: pairs, loss: dpo, beta: 0.3, learning_rate: 3.0e-4, max_steps: 2,
                  batch_size: 4, max_length: 160, max_prompt_length: 96, logging_steps: 1}}
          - {{<<: *dpo, name: dpop, loss: dpop, lambda: 50}}
          - {{<<: *dpo, name: onpolicy, loss: dpop, lambda: 50, max_length: 200,
              onpolicy: {{rounds: 1, samples: 3, prompts: 4, min_gap: 0.1, max_new_tokens: 16,
                          steps_per_round: 2, mixing_ratio: 0.5, reward: judge,
                          judge: {{model: scripted, base_url: "{judge_url}", timeout: 5}}}}}}
        report: {{enabled: false}}
        """))
    return p


def arc_leaderboard_experiment(tmp_path: Path, name: str, base: Path, data_dir) -> Path:
    """An experiment that scores the base on ARC alone (0-shot) from `data_dir`."""
    (tmp_path / "mini.yaml").write_text("name: mini\nentries:\n  - {name: arc_challenge, shots: 0, metric: acc, "
                                        "tasks: [{task: arc_challenge}]}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent(f"""\
        name: {name}
        base_model: {base}
        eval:
          leaderboard: {{suite: {tmp_path / 'mini.yaml'}, data_dir: {data_dir}, batch_size: 8}}
        report: {{enabled: false}}
        """))
    return exp


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(f.relative_to(folder)): (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
            for f in sorted(folder.rglob("*")) if f.is_file()}


def plan(capsys, exp: Path, *extra: str) -> dict[str, tuple[str, str]]:
    capsys.readouterr()
    assert main(["run", str(exp), "--dry-run", *extra]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        name, what, *why = line.split()
        rows[name] = (what, " ".join(why[:2]))
    return rows


@pytest.mark.slow
def test_train_then_run_keeps_every_checkpoint_and_data_edits_retrain(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from evalkit.train.builders import metamath_synthetic_pairs
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(8, 1)))
    with ServerThread(Script()) as judge:     # the on-policy variant's reward: a scripted LLM judge
        _train_then_run(tmp_path, capsys, data, write_experiment(tmp_path, tiny_model_dir, data, judge.base_url))


def _train_then_run(tmp_path, capsys, data, exp):
    from evalkit.train.builders import metamath_synthetic_pairs
    rd = RunDir("seams")

    # 1. `evalkit train`, then `evalkit run`: nothing retrains, no checkpoint file is touched
    assert main(["train", str(exp)]) == 0
    before = {v: snapshot(rd.checkpoint(v)) for v in ("dpo", "dpop", "onpolicy")}
    assert all(before.values())
    rows = plan(capsys, exp)
    assert {n: w for n, (w, _) in rows.items()} == {"base": "skip", "data:pairs": "skip", "train:dpo": "skip",
                                                   "train:dpop": "skip", "train:onpolicy": "skip"}
    assert main(["run", str(exp)]) == 0
    assert "every stage is up to date" in capsys.readouterr().out
    assert {v: snapshot(rd.checkpoint(v)) for v in before} == before
    assert main(["train", str(exp), "--only", "dpop"]) == 0          # and train again: still nothing
    assert snapshot(rd.checkpoint("dpop")) == before["dpop"]

    # 2. the data file is rewritten in place (same path, more rows): data and every variant rerun
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(19, 2)))
    rows = plan(capsys, exp)
    assert rows["base"][0] == "skip"
    for stage in ("data:pairs", "train:dpo", "train:dpop", "train:onpolicy"):
        assert rows[stage] == ("run", "inputs changed"), (stage, rows[stage])
    assert main(["train", str(exp), "--only", "dpo"]) == 0
    assert read_json(rd.train_metadata("dpo"))["data"]["n_pairs"] == 19
    assert snapshot(rd.checkpoint("dpop")) == before["dpop"], "--only dpo leaves dpop alone"
    rows = plan(capsys, exp)
    assert rows["train:dpo"][0] == "skip" and rows["train:dpop"] == ("run", "inputs changed")

    # 3. a broken data file and a forced retrain: exit 2, the good checkpoint is still there
    dpo = snapshot(rd.checkpoint("dpo"))
    data.write_text(data.read_text() + "{not json\n")
    assert main(["run", str(exp), "--force", "train:dpo"]) == 2
    assert "pairs.jsonl:20: invalid JSON" in capsys.readouterr().err
    assert snapshot(rd.checkpoint("dpo")) == dpo
    stages = rd.load_manifest()["stages"]
    assert stages["data:pairs"]["status"] == "failed" and stages["train:dpo"]["status"] == "done"


def test_a_second_run_of_a_running_experiment_stops_at_once_naming_the_holder(tmp_path, tiny_model_dir):
    import subprocess
    import sys
    import time
    from evalkit.train.builders import metamath_synthetic_pairs
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(8, 1)))
    exp = write_experiment(tmp_path, tiny_model_dir, data)
    lock = tmp_path / "reports" / "seams" / ".evalkit.lock"
    first = subprocess.Popen([sys.executable, "-m", "evalkit.cli", "train", str(exp)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.time() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        t0 = time.time()
        second = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", str(exp)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run must still be running for this test to mean anything"
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"PID {first.pid}" in lines[0] and "Traceback" not in second.stderr
        assert time.time() - t0 < 60
    finally:
        first.kill()
        first.wait()


def test_a_served_judge_dies_with_the_process_that_started_it(tmp_path):
    """kill -9 of evalkit leaves no server behind: the child is started with
    PR_SET_PDEATHSIG (the same start-up hook transformers_serve uses)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    code = ("import subprocess, sys; from evalkit.backends.serve import _die_with_parent; "
            "p = subprocess.Popen(['sleep', '120'], preexec_fn=_die_with_parent); print(p.pid, flush=True); "
            "import time; time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as f:
            if f.read().split()[2] == "Z":     # exited, waiting to be reaped by init
                return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the child outlived its killed parent")


def test_editing_benchmark_data_reruns_the_leaderboard_and_its_numbers_follow(tmp_path, tiny_model_dir, monkeypatch,
                                                                               capsys):
    """A leaderboard over a user's data_dir: an unchanged rerun skips it, an edited data file
    (every ARC answer key moved to another choice) reruns it and the score follows the edit;
    the stage record depends on the bytes, never on the folder's name."""
    from evalkit.eval.sample_data import write_open_llm_v1
    monkeypatch.chdir(tmp_path)
    data = write_open_llm_v1(tmp_path / "bench", n_eval=8)
    exp = arc_leaderboard_experiment(tmp_path, "lbdata", tiny_model_dir, data)
    rd = RunDir("lbdata", root=tmp_path)
    assert main(["run", str(exp)]) == 0
    before = read_json(rd.leaderboard("base"))["tasks"]["arc_challenge"]["value"]
    assert plan(capsys, exp)["leaderboard:base"][0] == "skip"
    arc = data / "allenai/ai2_arc/ARC-Challenge/test.jsonl"
    rows = [json.loads(x) for x in arc.read_text().splitlines()]
    for r in rows:
        r["answerKey"] = "ABCD"[("ABCD".index(r["answerKey"]) + 1) % 4]
    arc.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plan(capsys, exp)["leaderboard:base"][0] == "run"
    assert main(["run", str(exp)]) == 0
    after = read_json(rd.leaderboard("base"))["tasks"]["arc_challenge"]["value"]
    assert after != before, (before, after)
    # the same bytes in a folder of another name: the same stage record (content, not path)
    from evalkit.runner import _inputs_content
    here = list(_inputs_content({"d": str(data)}, rd).values())
    moved = tmp_path / "elsewhere"
    data.rename(moved)
    assert here and list(_inputs_content({"d": str(moved)}, rd).values()) == here


def test_the_same_data_under_another_name_is_not_new(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """A dataset file is its bytes: copied to another name (the experiment's path edited), the
    data stage and the training it feeds are up to date; an edit to the bytes reruns both."""
    from evalkit.train.builders import metamath_synthetic_pairs
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(8, 1)))
    exp = tmp_path / "exp.yaml"
    body = textwrap.dedent("""\
        name: rename
        base_model: {base}
        datasets:
          pairs: {{path: {data}}}
        variants:
          - {{name: dpo, data: pairs, loss: dpo, max_steps: 2, batch_size: 4, max_length: 160, max_prompt_length: 96}}
        report: {{enabled: false}}
        """)
    exp.write_text(body.format(base=tiny_model_dir, data=data))
    assert main(["run", str(exp)]) == 0
    copy = tmp_path / "renamed_copy.jsonl"
    copy.write_bytes(data.read_bytes())
    exp.write_text(body.format(base=tiny_model_dir, data=copy))
    rows = plan(capsys, exp)
    assert rows["data:pairs"][0] == rows["train:dpo"][0] == "skip", rows
    copy.write_text("".join(copy.read_text().splitlines(keepends=True)[:-1]))   # one pair fewer
    rows = plan(capsys, exp)
    assert rows["data:pairs"][0] == rows["train:dpo"][0] == "run", rows


@pytest.mark.slow
def test_sample_data_made_from_other_inputs_is_never_read(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """`data_dir: sample` through the runner: another seed makes the data again before the
    leaderboard reruns, and the documents lm-eval scored are the new data's; sample data left
    without its key (a killed build, a copied folder) is made again, never read; back on the
    first seed, the first data and scores come back."""
    from evalkit.caches import Slot
    from evalkit.eval.sample_data import write_open_llm_v1
    monkeypatch.chdir(tmp_path)
    exp = arc_leaderboard_experiment(tmp_path, "sample", tiny_model_dir, "sample")
    rd = RunDir("sample", root=tmp_path)
    rel = "allenai/ai2_arc/ARC-Challenge/test.jsonl"

    def scored() -> tuple[list, list]:
        """(answer index, log-likelihoods) of each document lm-eval scored (its per-sample file)."""
        rec = read_json(rd.leaderboard("base"))
        samples = next((rd.model_dir("base") / rec["samples_dir"]).glob("*arc_challenge*.jsonl"))
        rows = sorted((json.loads(x) for x in samples.read_text().splitlines()), key=lambda r: r["doc_id"])
        return [r["target"] for r in rows], [r["resps"] for r in rows]

    def targets(folder: Path) -> list[int]:
        rows = [json.loads(x) for x in (folder / rel).read_text().splitlines()]
        return [r["choices"]["label"].index(r["answerKey"]) for r in rows]

    def questions(folder: Path) -> list[str]:
        return [json.loads(x)["question"] for x in (folder / rel).read_text().splitlines()]

    assert main(["run", str(exp)]) == 0
    first = scored()
    assert first[0] == targets(rd.sample_data("leaderboard"))
    seed0 = questions(rd.sample_data("leaderboard"))
    assert main(["run", str(exp), "--set", "seed=1"]) == 0
    fresh1 = write_open_llm_v1(tmp_path / "fresh1", n_eval=8, seed=1)
    assert questions(fresh1) != seed0 and questions(rd.sample_data("leaderboard")) == questions(fresh1)
    second = scored()
    assert second[0] == targets(fresh1) and second[1] != first[1]
    # a folder of seed-0 data without its key, in place of the seed-1 data: made again, not read
    slot = Slot("sample-data", rd.sample_data("leaderboard"), stamp_path=rd.sample_data("leaderboard") / "sample_key.json")
    shutil.rmtree(slot.path)
    write_open_llm_v1(slot.path, n_eval=8, seed=0)
    assert plan(capsys, exp, "--set", "seed=1")["leaderboard:base"][0] == "skip"   # done; its key is unchanged
    requests = Slot("lm-eval-requests", rd.model_dir("base") / "lm_eval_cache")
    stamped = requests.stamp.stat().st_mtime_ns
    assert main(["run", str(exp), "--set", "seed=1", "--force", "leaderboard"]) == 0
    assert questions(slot.path) == questions(fresh1) and scored() == second
    assert requests.stamp.stat().st_mtime_ns != stamped, "--force clears lm-eval's request cache too"
    assert main(["run", str(exp)]) == 0
    assert questions(slot.path) == seed0 and scored() == first
