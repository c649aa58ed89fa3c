"""MT-Bench numbers as FastChat computes them, from files in FastChat's own layout, and
judgments that follow every change of judge, mode, prompt or settings."""
import argparse
import contextlib
import io
import re
import sys
import time
from pathlib import Path

import pytest

from evalkit.backends.client import ClientOptions
from evalkit.devserver import Script, ServerThread
from evalkit.eval import mtbench
from evalkit.rundir import read_jsonl
from test_mtbench import answers_file, questions_file

SHOW_RESULT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fastchat-llm_judge"


def show_result():
    if not (SHOW_RESULT / "show_result.py").exists():
        pytest.skip(f"FastChat's show_result.py is not at {SHOW_RESULT} (the shared reference files)")
    sys.path.insert(0, str(SHOW_RESULT))
    try:
        import show_result as sr
    finally:
        sys.path.remove(str(SHOW_RESULT))
    return sr


def fastchat_numbers(mode: str, input_file: Path, baseline: str | None = None) -> dict:
    """Run FastChat's own show_result.py on the file and read the numbers it prints."""
    sr = show_result()
    args = argparse.Namespace(bench_name="mt_bench", input_file=str(input_file), judge_model="x",
                              baseline_model=baseline, model_list=None, mode=mode)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        (sr.display_result_single if mode == "single" else sr.display_result_pairwise)(args)
    text = out.getvalue()
    if mode == "single":
        sections = re.split(r"#+ (First turn|Second turn|Average) #+", text)
        got = {}
        for name, body in zip(sections[1::2], sections[2::2]):
            nums = re.findall(r"^\S+\s+(?:\d\s+)?(-?[\d.]+)\s*$", body, re.M)
            got[name] = float(nums[0]) if nums else None
        return {"turn_1": got["First turn"], "turn_2": got["Second turn"], "overall": got["Average"]}
    line = [ln for ln in text.splitlines() if ln.startswith("m ")][0].split()
    win, loss, tie, win_rate, loss_rate, adjusted = line[1:7]
    return {"win_rate": float(win_rate), "loss_rate": float(loss_rate), "win_rate_adjusted": float(adjusted),
            "n_pairs": int(win) + int(loss) + int(tie)}


def opts(url, model="scripted", **kw):
    mode = kw.pop("mode", "single")
    return mtbench.JudgeOptions(ClientOptions(model=model, base_url=url, timeout=2.0, backoff=0.01, max_backoff=0.05,
                                                **kw), mode=mode)


@pytest.fixture
def qa(tmp_path):
    data = mtbench.load_data(str(questions_file(tmp_path, 20)))
    return data, mtbench.read_answer_file(answers_file(tmp_path, 20))


def test_single_numbers_equal_fastchat_with_parse_failures_and_out_of_range(tmp_path, qa):
    data, answers = qa
    with ServerThread(Script(fault_rate=0.3, faults=("no_rating",), seed=2)) as srv:
        s = mtbench.judge_answers(data, answers, tmp_path / "a", opts(srv.base_url), progress=False)
    assert 0 < s["failed_parses"] < 40
    fc = fastchat_numbers("single", tmp_path / "a" / s["judgments_file"])
    for k in ("turn_1", "turn_2", "overall"):
        assert s[k] == pytest.approx(fc[k], abs=1e-5), k
    # ratings outside 1-10 are kept (FastChat keeps them) and flagged
    with ServerThread(Script(rating=11)) as srv:
        s = mtbench.judge_answers(data, answers[:3], tmp_path / "b", opts(srv.base_url), progress=False)
    assert s["out_of_range"] == 6 and s["overall"] == 11
    assert fastchat_numbers("single", tmp_path / "b" / s["judgments_file"])["overall"] == pytest.approx(11)


def test_pairwise_rates_equal_fastchat_with_parse_failures(tmp_path, qa):
    data, answers = qa
    answers = [dict(a, model_id="m") for a in answers]
    base = [dict(a, model_id="base", choices=[{"index": 0, "turns": [f"x{a['question_id']}", "y"]}]) for a in answers]
    with ServerThread(Script(fault_rate=0.25, faults=("no_rating",), seed=5)) as srv:
        s = mtbench.judge_answers(data, answers, tmp_path / "p", opts(srv.base_url, mode="pairwise"),
                                  baseline=base, progress=False)
    assert s["failed_parses"] > 0 and s["n_pairs_dropped"] > 0
    fc = fastchat_numbers("pairwise-baseline", tmp_path / "p" / s["judgments_file"], baseline="base")
    for k in ("win_rate", "loss_rate", "win_rate_adjusted", "n_pairs"):
        assert s[k] == pytest.approx(fc[k], abs=1e-5), k


def test_a_second_judge_into_the_same_folder_is_summarised_alone(tmp_path, qa):
    data, answers = qa
    with ServerThread(Script()) as srv:
        mtbench.judge_answers(data, answers, tmp_path / "shared", opts(srv.base_url, model="judge-a"), progress=False)
        b = mtbench.judge_answers(data, answers, tmp_path / "shared", opts(srv.base_url, model="judge-b"),
                                  progress=False)
        alone = mtbench.judge_answers(data, answers, tmp_path / "alone", opts(srv.base_url, model="judge-b"),
                                      progress=False)
    for k in ("overall", "turn_1", "turn_2", "n_judged"):
        assert b[k] == alone[k], k
    assert b["judge"] == "judge-b" and set(b["runs"]) == {"judge-a_single", "judge-b_single"}
    assert len(read_jsonl(tmp_path / "shared" / "model_judgment" / "judge-b_single.jsonl")) == 40


def test_single_pairwise_single_share_a_folder_without_rejudging(tmp_path, qa):
    data, answers = qa
    base = [dict(a, model_id="base") for a in answers]
    with ServerThread(Script()) as srv:
        first = mtbench.judge_answers(data, answers, tmp_path / "o", opts(srv.base_url), progress=False)
        pair = mtbench.judge_answers(data, answers, tmp_path / "o", opts(srv.base_url, mode="pairwise"),
                                     baseline=base, progress=False)
        again = mtbench.judge_answers(data, answers, tmp_path / "o", opts(srv.base_url), progress=False)
    assert again["calls_this_run"] == 0 and again["overall"] == first["overall"] and again["errors"] == 0
    assert pair["n_pairs"] == 40 and set(again["runs"]) == {"scripted_single", "scripted_pair"}


def test_request_keys_cover_logprobs_max_tokens_and_the_answering_model(tmp_path, qa):
    data, answers = qa
    with ServerThread(Script()) as srv:
        plain = mtbench.judge_answers(data, answers[:5], tmp_path / "o", opts(srv.base_url), progress=False)
        assert plain["overall_weighted"] is None
        lp = mtbench.judge_answers(data, answers[:5], tmp_path / "o", opts(srv.base_url, logprobs=True),
                                   progress=False)
    assert lp["calls_this_run"] == 10 and lp["overall_weighted"] is not None and lp["n_judged"] == 10
    o = opts("http://127.0.0.1:1/v1")
    q = {x["question_id"]: x for x in data.questions}[0]
    one = mtbench._single_request(data, o, q, answers[0], 1)
    other_model = mtbench._single_request(data, o, q, dict(answers[0], model_id="other"), 1)
    longer = mtbench._single_request(data, mtbench.JudgeOptions(o.client, max_tokens=10), q, answers[0], 1)
    assert len({one.key, other_model.key, longer.key}) == 3


def test_weighted_rating_reads_ten_from_split_digits_and_empty_replies_are_retried(tmp_path, qa):
    data, answers = qa
    with ServerThread(Script(rating=10, split_digits=True)) as srv:
        s = mtbench.judge_answers(data, answers[:2], tmp_path / "w", opts(srv.base_url, logprobs=True),
                                  progress=False)
    assert s["overall"] == 10 and s["overall_weighted"] > 6.5     # reading "1" alone gave ~1.4
    with ServerThread(Script(fault_rate=1.0, faults=("empty",))) as srv:
        e = mtbench.judge_answers(data, answers[:2], tmp_path / "e", opts(srv.base_url, max_retries=0),
                                  progress=False)
    assert e["n_judged"] == 0 and e["errors"] == 4 and "empty reply" in e["error_examples"][0]
    with ServerThread(Script()) as srv:
        e2 = mtbench.judge_answers(data, answers[:2], tmp_path / "e", opts(srv.base_url), progress=False)
    assert e2["n_judged"] == 4 and e2["calls_this_run"] == 4 and e2["errors"] == 0


def test_hf_answers_are_on_disk_per_finished_batch(tmp_path, tiny_model_dir, monkeypatch):
    from evalkit.backends.generate import HFGenerator
    from evalkit.eval import generate
    data = mtbench.load_data("sample")
    real_chat, calls = HFGenerator.chat, []

    def failing_after_first_batch(self, convs, params, **kw):
        calls.append(len(convs))
        if len(calls) > 2:                     # batch 1 = two turns; then the run dies
            raise KeyboardInterrupt("killed")
        return real_chat(self, convs, params, **kw)

    monkeypatch.setattr(HFGenerator, "chat", failing_after_first_batch)
    out = mtbench.answer_path(tmp_path, "tiny")
    with pytest.raises(KeyboardInterrupt):
        generate.generate_answers(str(tiny_model_dir), data.questions, out,
                                  generate.GenOptions(max_new_tokens=4, batch_size=2), model_id="tiny", progress=False)
    assert len(read_jsonl(out)) == 2, "the first batch's answers are kept"
    monkeypatch.setattr(HFGenerator, "chat", real_chat)
    done = generate.generate_answers(str(tiny_model_dir), data.questions, out,
                                     generate.GenOptions(max_new_tokens=4, batch_size=2), model_id="tiny",
                                     progress=False)
    assert len(done) == 4 and len(read_jsonl(out)) == 4


def test_cli_dead_judge_url_and_empty_answers_are_one_line_errors(tmp_path, capsys):
    from evalkit.backends.serve import free_port
    from evalkit.cli import main
    q = questions_file(tmp_path, 2)
    t0 = time.time()
    code = main(["mtbench", str(answers_file(tmp_path, 2)), "--judge", "j", "--questions", str(q),
                 "--judge-base-url", f"http://127.0.0.1:{free_port()}/v1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nothing answers there" in err[0] and time.time() - t0 < 20
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with ServerThread(Script()) as srv:
        code = main(["mtbench", str(empty), "--judge", "j", "--questions", str(q), "--judge-base-url", srv.base_url,
                     "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no answers" in err[0]
