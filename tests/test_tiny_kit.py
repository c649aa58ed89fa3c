import json

import torch

from evalkit.backends.tiny import build_tiny_model

from evalkit.backends.models import load_model

FAST = {"seed": 3, "n_documents": 200, "pretrain_steps": 5, "vocab_size": 400}


def test_tiny_kit_is_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", FAST, progress=False)
    b = build_tiny_model(tmp_path / "b", FAST, progress=False)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    ma, _ = load_model(str(a))
    mb, _ = load_model(str(b))
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    c = build_tiny_model(tmp_path / "c", {**FAST, "seed": 4}, progress=False)
    mc, _ = load_model(str(c))
    assert not torch.equal(mc.state_dict()["model.embed_tokens.weight"][:10], sa["model.embed_tokens.weight"][:10])


def test_tiny_kit_reuses_a_finished_build(tmp_path):
    out = build_tiny_model(tmp_path / "m", FAST, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(tmp_path / "m", FAST, progress=False)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_round_trip_through_from_pretrained(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    n = sum(p.numel() for p in model.parameters())
    assert 150_000 <= n <= 2_000_000
    spec = json.loads((tiny_model_dir / "tiny_spec.json").read_text())
    assert spec["n_parameters"] == n
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}],
        tokenize=False)
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert ids[-1] == tok.eos_token_id
    # plain encode adds exactly one BOS, as a Llama tokenizer does
    assert tok("hello").input_ids[0] == tok.bos_token_id
    # the pretrained model is far from uniform on text in the corpus' formats
    enc = tok("Question: What is 3 plus 4?\nA. 7\nB. 8\nC. 6\nD. 9\nAnswer: 7", return_tensors="pt")
    with torch.no_grad():
        loss = model(**enc, labels=enc.input_ids).loss.item()
    assert loss < 0.6 * torch.log(torch.tensor(float(len(tok)))).item()


def test_scores_with_lm_eval_hflm(tiny_model_dir, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    rows = [{"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 3), "0"],
             "label": 0} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    tm = TaskManager(include_path=str(tmp_path), include_defaults=False)
    res = simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model_dir)}, tasks=["tiny_mc"],
                          task_manager=tm, batch_size=4, device="cpu")
    r = res["results"]["tiny_mc"]
    assert r["sample_len"] == 5 if "sample_len" in r else True
    assert 0.0 <= r["acc,none"] <= 1.0
    assert res["n-samples"]["tiny_mc"]["effective"] == 5


def test_cached_tiny_model_follows_its_builder_code(tmp_path):
    """A cached tiny model is reused only for the same spec AND the same builder code: a
    marker written by other builder code (an edit to models.py or synth.py) rebuilds it."""
    from evalkit.backends.tiny import build_tiny_model, tiny_builder_hash
    spec = {"seed": 7, "n_documents": 40, "pretrain_steps": 2}
    out = build_tiny_model(tmp_path / "m", spec, progress=False)
    marker = json.loads((out / "tiny_spec.json").read_text())
    assert marker["builder"] == tiny_builder_hash()
    weights = next(out.glob("*.safetensors")).stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "m", spec, progress=False) == out
    assert next(out.glob("*.safetensors")).stat().st_mtime_ns == weights, "same spec and code: reused"
    (out / "tiny_spec.json").write_text(json.dumps({**marker, "builder": "older-code"}))
    build_tiny_model(tmp_path / "m", spec, progress=False)
    assert json.loads((out / "tiny_spec.json").read_text())["builder"] == tiny_builder_hash()
    assert next(out.glob("*.safetensors")).stat().st_mtime_ns != weights, "other builder code: rebuilt"


def test_a_second_run_directory_reuses_the_pretrained_tiny_base(tmp_path, monkeypatch):
    """The demo's base is pretrained once per machine (the shared cache, keyed by spec and builder
    code) and copied into each run's checkpoints: another clone or --out does not pretrain again."""
    import torch

    from evalkit.backends.tiny import TinySpec
    from evalkit.stages import tiny_base
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    spec = TinySpec(seed=3, n_documents=60, pretrain_steps=2, hidden_size=16, intermediate_size=32,
                    vocab_size=300).model_dump()
    first = tiny_base(spec, tmp_path / "a" / "base")
    # pretraining builds an AdamW (patching the builder itself would change its code hash)
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pretrained again")))
    second = tiny_base(spec, tmp_path / "b" / "base")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (second / "tiny_spec.json").read_bytes() == (first / "tiny_spec.json").read_bytes()
