"""Real lm-eval runs on the tiny model and the project's sample data in hub schema."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evalkit.caches import STAMP, Slot
from evalkit.errors import UserError
from evalkit.eval import leaderboard
from evalkit.eval.sample_data import write_open_llm_v1
from evalkit.eval.suites import Suite, load_suite

MINI = textwrap.dedent("""\
    name: mini
    entries:
      - {name: arc_challenge, shots: 25, metric: acc_norm, tasks: [{task: arc_challenge, yaml: arc/arc_challenge.yaml}]}
      - {name: mmlu, shots: 5, metric: acc, aggregate: unweighted_mean,
         tasks: [{task: mmlu_anatomy}, {task: mmlu_virology}]}
      - {name: truthfulqa_mc2, shots: 0, metric: acc, tasks: [{task: truthfulqa_mc2}]}
      - {name: gsm8k, shots: 5, metric: exact_match, filter: strict-match, tasks: [{task: gsm8k}]}
    """)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return write_open_llm_v1(tmp_path_factory.mktemp("data"), n_eval=6)


@pytest.fixture(scope="module")
def mini_suite(tmp_path_factory):
    p = tmp_path_factory.mktemp("suite") / "mini.yaml"
    p.write_text(MINI)
    return load_suite(str(p))


@pytest.fixture(scope="module")
def scored(tiny_model_dir, sample_dir, mini_suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("lb")
    opt = leaderboard.LeaderboardOptions(batch_size=16, data_dir=str(sample_dir), device="cpu")
    rec = leaderboard.run(str(tiny_model_dir), mini_suite, out, opt, model_label="tiny")
    return out, rec


def test_record_fields_and_samples(scored):
    out, rec = scored
    on_disk = json.loads((out / "leaderboard.json").read_text())
    assert on_disk == json.loads(json.dumps(rec))
    for key in ("schema_version", "suite", "backend", "lm_eval_version", "model", "dtype", "batch_size",
                "apply_chat_template", "limit", "tasks", "average"):
        assert key in rec, key
    # sample data and a custom suite: not comparable with published numbers, and it says why
    assert rec["comparable"] is False and rec["limit"] is None
    assert any("local data" in r for r in rec["comparable_reasons"])
    assert any("not a packaged protocol" in r for r in rec["comparable_reasons"])
    arc = rec["tasks"]["arc_challenge"]
    assert arc["n_shot"] == 25 and arc["n_samples"] == 6 and arc["metric"] == "acc_norm"
    assert (rec["tasks"]["gsm8k"]["metric"], rec["tasks"]["gsm8k"]["filter"]) == ("exact_match", "strict-match")
    assert set(rec["tasks"]["mmlu"]["subtasks"]) == {"mmlu_anatomy", "mmlu_virology"}
    rows = [json.loads(x) for x in (out / "leaderboard_samples" / "arc_challenge.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("acc_norm" in r for r in rows)
    # generated task YAML only includes the built-in and overrides shots and data (absolute paths)
    doc = (out / "lm_eval_tasks" / "arc_challenge.yaml").read_text()
    assert "include: /" in doc and "num_fewshot: 25" in doc and "data_files" in doc


def test_parity_with_the_lm_eval_cli(scored, tiny_model_dir, tmp_path):
    """Every number evalkit reports equals what the lm_eval CLI computes for the same tasks."""
    out, rec = scored
    tasks = ["arc_challenge", "mmlu_anatomy", "mmlu_virology", "truthfulqa_mc2", "gsm8k"]
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "run", "--model", "hf",
         "--model_args", f"pretrained={tiny_model_dir},dtype=auto", "--device", "cpu",
         "--tasks", ",".join(tasks), "--include_path", str(out / "lm_eval_tasks"), "--batch_size", "16",
         "--seed", "1234", "--output_path", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    results = json.loads(next((tmp_path / "cli").rglob("results_*.json")).read_text())["results"]
    t = rec["tasks"]
    assert t["arc_challenge"]["value"] == results["arc_challenge"]["acc_norm,none"]
    assert t["arc_challenge"]["stderr"] == results["arc_challenge"]["acc_norm_stderr,none"]
    assert t["truthfulqa_mc2"]["value"] == results["truthfulqa_mc2"]["acc,none"]
    assert t["gsm8k"]["value"] == results["gsm8k"]["exact_match,strict-match"]
    for subject in ("mmlu_anatomy", "mmlu_virology"):
        assert t["mmlu"]["subtasks"][subject]["value"] == results[subject]["acc,none"]
    assert t["mmlu"]["value"] == pytest.approx((results["mmlu_anatomy"]["acc,none"]
                                                + results["mmlu_virology"]["acc,none"]) / 2, abs=1e-15)


def test_rerun_is_served_from_the_request_cache(scored, tiny_model_dir, sample_dir, mini_suite, monkeypatch):
    out, rec = scored
    from lm_eval.models.huggingface import HFLM
    calls = []
    real = HFLM._loglikelihood_tokens

    def counting(self, requests, *a, **kw):
        calls.append(len(requests))
        return real(self, requests, *a, **kw)

    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", counting)
    opt = leaderboard.LeaderboardOptions(batch_size=16, data_dir=str(sample_dir), device="cpu")
    again = leaderboard.run(str(tiny_model_dir), mini_suite, out, opt, model_label="tiny")
    assert sum(calls) == 0, f"{sum(calls)} log-likelihood requests recomputed"
    assert again["tasks"] == rec["tasks"]


def test_limit_is_recorded_as_not_comparable(tiny_model_dir, sample_dir, tmp_path):
    suite = Suite.model_validate({"name": "one", "entries": [
        {"name": "arc_challenge", "shots": 0, "metric": "acc", "tasks": [{"task": "arc_challenge"}]}]})
    opt = leaderboard.LeaderboardOptions(batch_size=8, data_dir=str(sample_dir), device="cpu", limit=2)
    rec = leaderboard.run(str(tiny_model_dir), suite, tmp_path, opt)
    assert rec["limit"] == 2 and rec["comparable"] is False
    assert "limit: 2 documents per task" in rec["comparable_reasons"]
    assert rec["tasks"]["arc_challenge"]["n_samples"] == 2


def test_comparable_only_with_the_packaged_suite_on_the_benchmarks_own_data():
    v1 = load_suite("open_llm_v1")
    assert leaderboard.incomparable_because(v1, leaderboard.LeaderboardOptions(), None) == []
    fewer_shots = v1.model_copy(update={"entries": [v1.entries[0].model_copy(update={"shots": 0})] + v1.entries[1:]})
    assert leaderboard.incomparable_because(fewer_shots, leaderboard.LeaderboardOptions(), None) == [
        "suite differs from the packaged open_llm_v1 (shots, tasks or metrics changed)"]


def test_bad_input_errors(tiny_model_dir, sample_dir, mini_suite, tmp_path):
    opt = leaderboard.LeaderboardOptions(data_dir=str(sample_dir))
    with pytest.raises(UserError, match="no such model directory"):
        leaderboard.run(str(tmp_path / "nope"), mini_suite, tmp_path / "o", opt)
    with pytest.raises(UserError, match=r"install 'evalkit\[vllm\]'"):
        leaderboard.run(str(tiny_model_dir), mini_suite, tmp_path / "o",
                        leaderboard.LeaderboardOptions(backend="vllm"))
    broken = tmp_path / "data"
    import shutil
    shutil.copytree(sample_dir, broken)
    (broken / "openai/gsm8k/main/test.jsonl").unlink()
    with pytest.raises(UserError, match=r"task gsm8k: missing data file .*openai/gsm8k/main/test.jsonl"):
        leaderboard.run(str(tiny_model_dir), mini_suite, tmp_path / "o",
                        leaderboard.LeaderboardOptions(data_dir=str(broken)))
    bad = Suite.model_validate({"name": "x", "entries": [
        {"name": "a", "shots": 0, "metric": "acc", "tasks": [{"task": "arc_challange"}]}]})
    with pytest.raises(UserError, match=r"unknown lm-eval task 'arc_challange'; did you mean arc_challenge"):
        leaderboard.run(str(tiny_model_dir), bad, tmp_path / "o", opt)


def test_api_backend_against_transformers_serve(tiny_model_dir, tiny_model_served, sample_dir, tmp_path):
    """lm-eval's local-completions over HTTP to a real `transformers serve` (generation only:
    that server returns no log-probs)."""
    suite = Suite.model_validate({"name": "gen", "entries": [
        {"name": "gsm8k", "shots": 1, "metric": "exact_match", "filter": "strict-match",
         "tasks": [{"task": "gsm8k"}]}]})
    opt = leaderboard.LeaderboardOptions(backend="api", base_url=tiny_model_served, api_model=str(tiny_model_dir),
                                         data_dir=str(sample_dir), limit=2)
    rec = leaderboard.run(str(tiny_model_dir), suite, tmp_path, opt)
    assert rec["backend"] == "api" and rec["lm_eval_model"] == "local-completions"
    assert rec["tasks"]["gsm8k"]["n_samples"] == 2
    rows = [json.loads(x) for x in (tmp_path / "leaderboard_samples" / "gsm8k.jsonl").read_text().splitlines()]
    strict = [r for r in rows if r["filter"] == "strict-match"]
    assert len(strict) == 2
    # the server really generated text for each prompt
    assert all(isinstance(r["resps"][0][0], str) and r["resps"][0][0].strip() for r in strict)


def test_new_weights_at_the_same_path_are_scored_not_served_from_the_old_cache(tiny_model_dir, sample_dir,
                                                                                tmp_path):
    """Score M1 into D; put other weights at M1's path; score again into D: the numbers are
    the new model's (equal to a fresh folder), not M1's cached answers."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM
    suite = Suite.model_validate({"name": "one", "entries": [
        {"name": "arc_challenge", "shots": 0, "metric": "acc", "tasks": [{"task": "arc_challenge"}]},
        {"name": "truthfulqa_mc2", "shots": 0, "metric": "acc", "tasks": [{"task": "truthfulqa_mc2"}]}]})
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    opt = leaderboard.LeaderboardOptions(batch_size=16, data_dir=str(sample_dir), device="cpu")
    first = leaderboard.run(str(model), suite, tmp_path / "D", opt)
    cache = Slot("lm-eval-requests", tmp_path / "D" / "lm_eval_cache")
    first_key = cache.stored_key()
    m = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    m.save_pretrained(model)
    again = leaderboard.run(str(model), suite, tmp_path / "D", opt)
    fresh = leaderboard.run(str(model), suite, tmp_path / "fresh", opt)
    assert again["tasks"] == fresh["tasks"]
    assert again["tasks"]["truthfulqa_mc2"]["value"] != first["tasks"]["truthfulqa_mc2"]["value"]
    # the request cache was cleared for the new weights and now holds theirs only
    assert first_key and cache.stored_key() not in (None, first_key)
    assert [p.name for p in cache.path.iterdir() if p.name != STAMP] == [p.name for p in
                                                                        (tmp_path / "fresh" / "lm_eval_cache").iterdir()
                                                                        if p.name != STAMP]


def test_archived_v1_suite_runs_and_says_so(tiny_model_dir, sample_dir, tmp_path):
    """`open_llm_v1` (the archived b281b09 protocol) through lm-eval's hf backend, cut to four
    tasks: batch size 1 whatever was asked, protocol and harness recorded, GSM8K's v1 filter."""
    full = load_suite("open_llm_v1")
    keep = {"v1_arc_challenge", "v1_hendrycksTest-anatomy", "v1_winogrande", "v1_gsm8k"}
    entries = [e.model_copy(update={"tasks": [t for t in e.tasks if t.task in keep]})
               for e in full.entries if any(t.task in keep for t in e.tasks)]
    suite = full.model_copy(update={"entries": entries})
    opt = leaderboard.LeaderboardOptions(batch_size=16, data_dir=str(sample_dir), device="cpu", limit=3)
    rec = leaderboard.run(str(tiny_model_dir), suite, tmp_path, opt, model_label="tiny")
    assert rec["suite"] == "open_llm_v1" and "b281b09" in rec["protocol"]
    assert rec["harness"]["task_code"].startswith("lm-evaluation-harness b281b09")
    assert rec["harness"]["lm_eval_version"] == rec["lm_eval_version"]
    assert rec["batch_size"] == "1" and rec["fewshot_seed"] == 42 and rec["apply_chat_template"] is False
    assert rec["tasks"]["arc_challenge"]["n_shot"] == 25 and rec["tasks"]["arc_challenge"]["n_samples"] == 3
    assert all(t["protocol"] == rec["protocol"] for t in rec["tasks"].values())
    assert (rec["tasks"]["gsm8k"]["metric"], rec["tasks"]["gsm8k"]["filter"]) == ("acc", "v1-extract")
    # each single-task entry names its lm-eval task, whose per-sample file the report pairs by doc
    assert rec["tasks"]["arc_challenge"]["lm_eval_task"] == "v1_arc_challenge"
    assert (tmp_path / "leaderboard_samples" / "v1_arc_challenge.jsonl").exists()
    rows = [json.loads(x) for x in (tmp_path / "leaderboard_samples" / "v1_gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["filter"] == "v1-extract" for r in rows)
    # the filtered answer is the archived extraction of the raw generation
    from evalkit.eval.open_llm_v1 import gsm8k_extract
    assert all(r["filtered_resps"][0] == gsm8k_extract(r["resps"][0][0]) for r in rows)
    with pytest.raises(UserError, match="never applied a chat template"):
        leaderboard.run(str(tiny_model_dir), suite, tmp_path / "chat", leaderboard.LeaderboardOptions(
            data_dir=str(sample_dir), device="cpu", limit=1, apply_chat_template=True))


def test_chat_template_run_is_applied_and_recorded(tiny_model_dir, sample_dir, tmp_path, monkeypatch):
    """v2-style: the model's chat template, few-shot examples as turns, a system prompt."""
    from lm_eval.models.huggingface import HFLM
    from evalkit.backends.tiny import BOS
    contexts = []
    real = HFLM.loglikelihood

    def capture(self, requests, *a, **kw):
        contexts.extend(r.args[0] for r in requests)
        return real(self, requests, *a, **kw)
    monkeypatch.setattr(HFLM, "loglikelihood", capture)
    suite = Suite.model_validate({"name": "chat", "fewshot_as_multiturn": True, "entries": [
        {"name": "arc_challenge", "shots": 2, "metric": "acc", "tasks": [{"task": "arc_challenge"}]}]})
    opt = leaderboard.LeaderboardOptions(batch_size=4, data_dir=str(sample_dir), device="cpu", limit=2,
                                         apply_chat_template=True, system_instruction="Answer with one word.")
    rec = leaderboard.run(str(tiny_model_dir), suite, tmp_path, opt, model_label="tiny")
    assert (rec["apply_chat_template"], rec["fewshot_as_multiturn"], rec["system_instruction"]) == \
        (True, True, "Answer with one word.")
    assert "chat template + multi-turn few-shot" in leaderboard.format_record(rec)
    ctx = contexts[0]
    # the template's roles: the system prompt, then each shot a user and an assistant turn, then the doc
    assert ctx.startswith(BOS) and ctx.count("<|system|>") == 1 and "Answer with one word." in ctx
    assert ctx.count("<|user|>") == 3 and ctx.count("<|assistant|>") == 3 and ctx.count("Question:") == 3
