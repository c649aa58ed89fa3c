"""MT-Bench judging over real HTTP: a scripted fault-injecting server and `transformers serve`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.backends.client import ClientOptions
from evalkit.devserver import Script, ServerThread
from evalkit.eval import generate, mtbench
from evalkit.eval import judge as J
from evalkit.rundir import read_jsonl


def test_parse_rating_cases():
    assert J.parse_rating("Good answer. Rating: [[8]]") == 8
    assert J.parse_rating("[[8.5]]") == 8.5
    assert J.parse_rating("first [[3]] then [[9]]") == 3          # two bracketed numbers: the first
    assert J.parse_rating("no rating here") == -1
    assert J.parse_rating("Rating: [[11]]") == 11                  # out of range: kept, as FastChat keeps it
    assert J.parse_rating("Rating: [[0]]") == 0
    assert J.parse_rating("single bracket [7] works as fallback") == 7


def test_pairwise_swap_logic():
    # g1: model_1 in position A; g2: positions swapped
    assert J.combine_swapped("A", "B") == "model_1"      # both games favour model_1
    assert J.combine_swapped("B", "A") == "model_2"
    assert J.combine_swapped("A", "A") == "tie"          # A wins, then B... the swap disagrees: a tie
    assert J.combine_swapped("tie", "tie") == "tie"
    assert J.combine_swapped("A", "error") == "tie"
    assert J.parse_verdict("so [[B]]") == "B" and J.parse_verdict("[[C]]") == "tie" and J.parse_verdict("?") == "error"


def questions_file(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "questions.jsonl"
    p.write_text("".join(json.dumps({"question_id": i, "category": "writing",
                                     "turns": [f"Write about topic {i}.", f"Shorten topic {i}."]}) + "\n"
                         for i in range(n)))
    return p


def answers_file(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "answers.jsonl"
    p.write_text("".join(json.dumps({"question_id": i, "answer_id": f"a{i}", "model_id": "m", "tstamp": 0,
                                     "choices": [{"index": 0, "turns": [f"About topic {i}.", f"Topic {i}."]}]}) + "\n"
                         for i in range(n)))
    return p


def judge_opts(url, **kw):
    return mtbench.JudgeOptions(ClientOptions(model="scripted", base_url=url, timeout=kw.pop("timeout", 1.0),
                                                backoff=0.02, max_backoff=0.2, **kw))


def test_faults_end_scored_or_explicitly_failed(tmp_path):
    data = mtbench.load_data(str(questions_file(tmp_path, 30)))
    answers = mtbench.read_answer_file(answers_file(tmp_path, 30))
    out = tmp_path / "out"
    with ServerThread(Script(fault_rate=0.3, hang_seconds=5, seed=3)) as srv:
        s = mtbench.judge_answers(data, answers, out, judge_opts(srv.base_url, max_retries=1, concurrency=8),
                                  progress=False)
        kinds = dict(srv.script.by_kind)
    judged = read_jsonl(out / "model_judgment" / "scripted_single.jsonl")
    keys = [j["request_hash"] for j in judged]
    assert len(keys) == len(set(keys)), "no duplicates"
    failed = {e["request_hash"] for e in read_jsonl(out / "model_judgment" / "scripted_single_errors.jsonl")}
    assert set(keys).isdisjoint(failed)
    assert len(keys) + len(failed) == 60 == s["n_requests"], "none lost"
    assert s["errors"] == len(failed) and s["n_judged"] == len(keys)
    assert all(j["score"] == -1 or 1 <= j["score"] <= 10 for j in judged)
    assert s["failed_parses"] == sum(1 for j in judged if j["score"] == -1)
    assert {"429", "500", "hang", "garbage", "truncated"} <= set(kinds), kinds
    # a rerun retries only the explicit failures, with more patience, and adds no duplicates
    with ServerThread(Script(fault_rate=0.3, hang_seconds=5, seed=4)) as srv:
        s2 = mtbench.judge_answers(data, answers, out, judge_opts(srv.base_url, max_retries=8), progress=False)
    keys2 = [j["request_hash"] for j in read_jsonl(out / "model_judgment" / "scripted_single.jsonl")]
    assert len(keys2) == len(set(keys2)) == 60 and s2["errors"] == 0


def run_cli_judge(tmp_path, url, out, n=20):
    return subprocess.Popen([sys.executable, "-m", "evalkit.cli", "mtbench", str(answers_file(tmp_path, n)),
                             "--judge", "scripted", "--judge-base-url", url, "--questions",
                             str(questions_file(tmp_path, n)), "--out", str(out), "--concurrency", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENAI_API_KEY": "sk-test-secret-0123456789"})


JUDGMENTS = Path("model_judgment") / "scripted_single.jsonl"


def test_kill_9_then_resume_gives_the_uninterrupted_file(tmp_path):
    with ServerThread(Script(latency=0.1)) as srv:
        ref = run_cli_judge(tmp_path, srv.base_url, tmp_path / "ref")
        assert ref.wait(120) == 0, ref.stderr.read()[-2000:]
        victim = run_cli_judge(tmp_path, srv.base_url, tmp_path / "killed")
        deadline = time.time() + 60
        while len(read_jsonl(tmp_path / "killed" / JUDGMENTS)) < 10 and time.time() < deadline:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        time.sleep(0.5)  # requests the victim had in flight finish on the server side
        partial = read_jsonl(tmp_path / "killed" / JUDGMENTS)
        assert 10 <= len(partial) < 40
        before = srv.script.ok_calls
        again = run_cli_judge(tmp_path, srv.base_url, tmp_path / "killed")
        assert again.wait(120) == 0, again.stderr.read()[-2000:]
        made = srv.script.ok_calls - before
    final = read_jsonl(tmp_path / "killed" / JUDGMENTS)
    expected = read_jsonl(tmp_path / "ref" / JUDGMENTS)
    strip = lambda rows: sorted((r["request_hash"], r["question_id"], r["turn"], r["score"], r["judgment"])  # noqa: E731
                                for r in rows)
    assert strip(final) == strip(expected) and len(final) == 40
    assert made == 40 - len(partial), "calls only for the missing keys"
    # the key never reaches a file
    for f in (tmp_path / "killed").rglob("*"):
        if f.is_file():
            assert "sk-test-secret" not in f.read_text()


def test_rerun_makes_no_calls_and_weighted_scores(tmp_path):
    data = mtbench.load_data(str(questions_file(tmp_path, 5)))
    answers = mtbench.read_answer_file(answers_file(tmp_path, 5))
    with ServerThread(Script()) as srv:
        s = mtbench.judge_answers(data, answers, tmp_path / "o", judge_opts(srv.base_url, logprobs=True),
                                  progress=False)
        calls = srv.script.calls
        s2 = mtbench.judge_answers(data, answers, tmp_path / "o", judge_opts(srv.base_url, logprobs=True),
                                   progress=False)
        assert srv.script.calls == calls and s2["calls_this_run"] == 0
    assert s["n_judged"] == 10 and s["overall"] is not None and s["overall_weighted"] is not None
    assert s["tokens"]["prompt"] > 0


def test_pairwise_mode_writes_fastchat_pair_records(tmp_path):
    data = mtbench.load_data(str(questions_file(tmp_path, 3)))
    answers = mtbench.read_answer_file(answers_file(tmp_path, 3))
    base = [dict(a, model_id="base", choices=[{"index": 0, "turns": ["x", "y"]}]) for a in answers]
    with ServerThread(Script()) as srv:
        s = mtbench.judge_answers(data, answers, tmp_path / "p", mtbench.JudgeOptions(
            ClientOptions(model="scripted", base_url=srv.base_url), mode="pairwise"), baseline=base, progress=False)
    rows = read_jsonl(tmp_path / "p" / "model_judgment" / "scripted_pair.jsonl")
    assert len(rows) == 6 and s["n_pairs"] == 6
    for r in rows:
        assert {"g1_winner", "g2_winner", "model_1", "model_2", "g1_judgment", "g2_judgment", "turn"} <= set(r)
    assert s["win_rate"] + s["loss_rate"] + s["tie_rate"] == pytest.approx(1.0)
    assert s["win_rate_adjusted"] == pytest.approx(s["win_rate"] + s["tie_rate"] / 2)


def test_end_to_end_against_transformers_serve(tiny_model_dir, tiny_judge_dir, tmp_path):
    """Answers from the tiny model in-process; the tiny judge (its corpus has judge chats, as
    the demo's has) judging through `transformers serve`: the ratings parse."""
    from servers import transformers_serve
    data = mtbench.load_data("sample")
    answers = generate.generate_answers(str(tiny_model_dir), data.questions, mtbench.answer_path(tmp_path, "tiny"),
                                        generate.GenOptions(max_new_tokens=16), model_id="tiny", progress=False)
    assert len(answers) == 4 and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    with transformers_serve(tiny_judge_dir) as url:
        s = mtbench.judge_answers(data, answers, tmp_path, mtbench.JudgeOptions(
            ClientOptions(model=str(tiny_judge_dir), base_url=url, timeout=60), max_tokens=24), progress=False)
    assert s["errors"] == 0 and s["n_judged"] == 8
    judged = read_jsonl(tmp_path / "model_judgment" / f"{mtbench.file_safe(str(tiny_judge_dir))}_single.jsonl")
    assert all(isinstance(j["judgment"], str) for j in judged)
    assert s["failed_parses"] == sum(1 for j in judged if j["score"] == -1)
    parsed = [j for j in judged if 1 <= j["score"] <= 10]
    print("\njudgments:", [j["judgment"] for j in judged])
    assert len(parsed) >= 0.9 * len(judged), [j["judgment"] for j in judged]
    # math and reasoning questions are judged against the reference answers
    math = [j for j in judged if j["question_id"] == 1002][0]
    assert math["judge"][1].startswith("single-math-v1") and "36" in math["user_prompt"]
