"""The model side of the archived v1 protocol: evalkit's open_llm_v1 run through lm-eval's hf
backend gives the log-likelihoods and generations that b281b09's own model class
(`hf-causal-experimental`, AutoCausalLM) gives, on a tiny model whose tokenizer adds a BOS token.

The archived class runs in a subprocess (tests/golden/run_archived_model.py imports it from
../shared/reference/lm-evaluation-harness-b281b09; skipped when absent). The requests are the
golden ones the archived task code built (tests/golden/open_llm_v1_archived.json).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.eval import open_llm_v1 as v1
from evalkit.eval.leaderboard import LeaderboardOptions, model_spec, parse_model_args
from evalkit.eval.suites import load_suite

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = json.loads((GOLDEN_DIR / "open_llm_v1_archived.json").read_text())
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "lm-evaluation-harness-b281b09"


def golden_requests():
    ll, gen = [], []
    for recorded in [*GOLDEN["tasks"].values(), GOLDEN["gsm8k_real"]]:
        for r in recorded["requests"]:
            ctx = recorded["contexts"][r["context"]]
            if r["type"] == "loglikelihood":
                ll.append([ctx, r["continuation"]])
            elif [ctx, r["until"]] not in gen:
                gen.append([ctx, r["until"]])
    return {"loglikelihood": ll, "greedy_until": gen}


def archived(model_dir: Path, reqs: dict, tmp: Path, max_length: int | None = None) -> dict:
    if not (REFERENCE / "lm_eval" / "models" / "huggingface.py").exists():
        pytest.skip(f"archived harness files not found at {REFERENCE} (../shared/reference)")
    (tmp / "requests.json").write_text(json.dumps(reqs))
    cmd = [sys.executable, str(GOLDEN_DIR / "run_archived_model.py"), str(model_dir), str(tmp / "requests.json"),
           str(tmp / "archived.json")] + (["--max-length", str(max_length)] if max_length else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / "archived.json").read_text())


def evalkit_lm(model_dir: Path, suite_args: bool = True, **extra):
    """lm-eval's model as evalkit's open_llm_v1 run builds it (model_spec), batch size 1."""
    import torch
    from lm_eval.api.registry import get_model
    torch.set_num_threads(1)
    opt = LeaderboardOptions(dtype="float32", device="cpu", extra_model_args=extra)
    name, args = model_spec(str(model_dir), opt, load_suite("open_llm_v1") if suite_args else None)
    return get_model(name).create_from_arg_obj(args, {"batch_size": 1})


def loglikelihoods(lm, reqs: list) -> list[list]:
    from lm_eval.api.instance import Instance
    inst = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(reqs)]
    return [[float(ll), bool(greedy)] for ll, greedy in lm.loglikelihood(inst, disable_tqdm=True)]


def generations(lm, reqs: list) -> list[str]:
    from lm_eval.api.instance import Instance
    kwargs = {"until": list(v1.GSM8K_STOP), "do_sample": False, "max_gen_toks": 256}
    inst = []
    for i, (c, until) in enumerate(reqs):
        assert until == v1.GSM8K_STOP
        inst.append(Instance("generate_until", {}, (c, dict(kwargs)), i))
    return lm.generate_until(inst, disable_tqdm=True)


@pytest.fixture(scope="module")
def both(tiny_model_dir, tmp_path_factory):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # the tokenizer adds BOS by default
    reqs = golden_requests()
    theirs = archived(tiny_model_dir, reqs, tmp_path_factory.mktemp("archived"))
    return tiny_model_dir, reqs, theirs


def test_open_llm_v1_sends_no_bos_token():
    suite = load_suite("open_llm_v1")
    assert suite.model_args == {"add_bos_token": False}
    name, args = model_spec("some/model", LeaderboardOptions(device="cpu"), suite)
    assert (name, args["add_bos_token"]) == ("evalkit-v1-hf", False)
    assert model_spec("some/model", LeaderboardOptions(device="cpu", extra_model_args={"max_length": 4096}),
                      suite)[1]["max_length"] == 4096
    assert parse_model_args("max_length=600,add_bos_token=True") == {"max_length": 600, "add_bos_token": True}
    from evalkit.config import LeaderboardSection
    assert LeaderboardSection(model_args={"max_length": 600}).model_args == {"max_length": 600}
    # overriding an argument the protocol sets makes the numbers incomparable
    from evalkit.eval.leaderboard import incomparable_because
    why = incomparable_because(suite, LeaderboardOptions(extra_model_args={"add_bos_token": True}), None)
    assert why == ["model arguments override the protocol's (add_bos_token=True)"]


def test_loglikelihoods_equal_the_archived_model_class(both):
    """Every log-likelihood and is-greedy flag bit for bit (106 requests over the six tasks);
    with the tokenizer's default (a BOS token first, what lm-eval 0.4's hf backend sends) they
    move."""
    model_dir, reqs, theirs = both
    ours = loglikelihoods(evalkit_lm(model_dir), reqs["loglikelihood"])
    assert len(ours) == len(theirs["loglikelihood"]) == 106
    assert ours == theirs["loglikelihood"]
    with_bos = loglikelihoods(evalkit_lm(model_dir, suite_args=False), reqs["loglikelihood"])
    assert sum(a[0] != b[0] for a, b in zip(with_bos, theirs["loglikelihood"])) > 90


def test_gsm8k_generations_equal_the_archived_model_class(both):
    """Greedy GSM8K generations, stops applied (8 contexts, one of 1881 tokens, over
    max_length - max_gen_toks = 1792: cut, and its first 89 new tokens dropped, as b281b09 did);
    lm-eval's own hf backend stops at the model's generation_config max_new_tokens (128 here)
    and keeps the whole generation of the cut context."""
    model_dir, reqs, theirs = both
    assert theirs["max_length"] == 2048 and theirs["max_gen_toks"] == 256
    assert generations(evalkit_lm(model_dir), reqs["greedy_until"]) == theirs["greedy_until"]
    plain = generations(evalkit_lm(model_dir, suite_args=False, add_bos_token=False), reqs["greedy_until"])
    assert plain != theirs["greedy_until"]


def test_long_contexts_are_cut_as_the_archived_model_class_cut_them(both, tmp_path):
    """max_length 600: every GSM8K context is over 600 - 256 tokens; b281b09 returns "" where
    fewer new tokens came than were cut, else the tail past the uncut width."""
    model_dir, reqs, _ = both
    theirs = archived(model_dir, {"greedy_until": reqs["greedy_until"]}, tmp_path, max_length=600)
    ours = generations(evalkit_lm(model_dir, max_length=600), reqs["greedy_until"])
    assert ours == theirs["greedy_until"]
    assert "" in ours
