import os
import textwrap

import pytest
import torch
import yaml

from evalkit.config import load_experiment
from evalkit.rundir import RunDir, read_json, read_jsonl
from evalkit.runner import train_experiment as train_variants
from evalkit.train import reference
from evalkit.train.diagnostics import PostEdit

METRIC_FIELDS = {"step", "loss", "logps_chosen", "logps_rejected", "rewards_chosen", "rewards_rejected",
                 "reward_margin", "reward_accuracy", "penalty_active", "lr", "grad_norm"}


def experiment(tmp_path, base, steps, extra="", seed=0, pairs="metamath_synthetic"):
    # `extra` (", key: value, ...") replaces the defaults below: a key given twice is an error
    dpo = {"name": "dpo", "data": "math", "loss": "dpo", "beta": 0.3, "learning_rate": 3.0e-4, "max_steps": steps,
           "batch_size": 8, "max_length": 160, "max_prompt_length": 96, "logging_steps": 10}
    dpo.update(yaml.safe_load("{" + extra.lstrip(", ") + "}") or {})
    text = textwrap.dedent(f"""\
        name: t
        base_model: {base}
        seed: {seed}
        datasets:
          math: {{generate: {pairs}, n: 64, seed: 1}}
        variants:
          - &dpo {yaml.safe_dump(dpo, default_flow_style=True, width=10_000).strip()}
          - {{<<: *dpo, name: dpop, loss: dpop, lambda: 50}}
        """)
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return load_experiment(p)


def rundir(tmp_path):
    return RunDir("t", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")


def test_reference_cache_shared_and_outputs_complete(tmp_path, tiny_model_dir, monkeypatch):
    exp = experiment(tmp_path, tiny_model_dir, steps=3, extra=", logging_steps: 1")
    rd = rundir(tmp_path)

    def no_separate_pass(*args, **kwargs):
        raise AssertionError("the post-edit values come off the reference and final passes")
    monkeypatch.setattr(PostEdit, "measure", no_separate_pass)
    before = reference.FORWARD_PASSES
    train_variants(exp, only=["dpo"], rd=rd, progress=False)
    after_first = reference.FORWARD_PASSES
    assert after_first > before, "the first variant computes reference log-probs"
    train_variants(exp, only=["dpop"], rd=rd, progress=False)
    assert reference.FORWARD_PASSES == after_first, "the second variant reuses the cache"
    assert len(list(rd.reference_cache().glob("*.pt"))) == 1

    for name in ("dpo", "dpop"):
        meta = read_json(rd.train_metadata(name))
        for key in ("schema_version", "base_model", "loss", "hyperparameters", "data", "reference", "steps",
                    "versions", "git_sha", "logps_summary"):
            assert key in meta, key
        assert meta["steps"] == 3 and meta["loss"] == name
        assert meta["data"]["n_pairs"] == 64 and meta["data"]["edit_distance"]["median"] >= 1
        rows = read_jsonl(rd.train_metrics(name))
        assert [r["step"] for r in rows] == [1, 2, 3]
        assert METRIC_FIELDS <= set(rows[0])
        assert (rows[0]["penalty_active"] is None) == (name == "dpo")
        assert meta["post_edit"]["n_pairs"] > 0 and None not in meta["post_edit"]["start"].values()
    # the post-edit start values come off the reference pass: the second variant's from the cache
    dpo_start, dpop_start = (read_json(rd.train_metadata(n))["post_edit"]["start"] for n in ("dpo", "dpop"))
    assert dpo_start == dpop_start
    # a checkpoint loads unchanged with AutoModelForCausalLM / AutoTokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    AutoModelForCausalLM.from_pretrained(rd.checkpoint("dpop"))
    AutoTokenizer.from_pretrained(rd.checkpoint("dpop"))
    assert not list(rd.checkpoints.glob("*.partial"))

    # a rerun with the same config trains nothing; a changed beta retrains that variant only
    stamp = (rd.checkpoint("dpo") / "evalkit.json").stat().st_mtime_ns
    train_variants(exp, rd=rd, progress=False)
    assert (rd.checkpoint("dpo") / "evalkit.json").stat().st_mtime_ns == stamp
    exp.variants[1].beta = 0.5
    train_variants(exp, rd=rd, progress=False)
    assert (rd.checkpoint("dpo") / "evalkit.json").stat().st_mtime_ns == stamp
    assert read_json(rd.train_metadata("dpop"))["hyperparameters"]["beta"] == 0.5


def test_step_zero_loss_is_ln2_and_seed_reproducible(tmp_path, tiny_model_dir):
    exp = experiment(tmp_path, tiny_model_dir, steps=2, extra=", logging_steps: 1, learning_rate: 1.0e-9")
    rd = rundir(tmp_path)
    train_variants(exp, only=["dpo"], rd=rd, progress=False)
    first = read_jsonl(rd.train_metrics("dpo"))[0]
    # policy == reference at step 0, so h_w = h_l = 0 and the loss is -log sigmoid(0) = ln 2
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)


@pytest.mark.slow
def test_dpo_lowers_chosen_logprob_and_dpop_does_not(tmp_path, tiny_model_dir):
    """Smaug's phenomenon: same seed, data and steps; only the loss differs."""
    exp = experiment(tmp_path, tiny_model_dir, steps=150)
    rd = rundir(tmp_path)
    train_variants(exp, rd=rd, progress=False)
    dpo, dpop = (read_json(rd.train_metadata(n)) for n in ("dpo", "dpop"))
    s_dpo, s_dpop = dpo["logps_summary"], dpop["logps_summary"]
    print(f"\nDPO  chosen log-prob {s_dpo['chosen_start']:.2f} -> {s_dpo['chosen_end']:.2f}"
          f"\nDPOP chosen log-prob {s_dpop['chosen_start']:.2f} -> {s_dpop['chosen_end']:.2f}")
    assert s_dpo["chosen_start"] == s_dpop["chosen_start"]
    assert s_dpo["chosen_end"] < s_dpo["chosen_start"] - 5.0
    assert s_dpop["chosen_end"] >= s_dpop["chosen_start"]
    # Smaug's token view: after the edit the chosen tokens lose likelihood under DPO, not under DPOP
    p_dpo, p_dpop = dpo["post_edit"], dpop["post_edit"]
    print(f"post-edit chosen per token: DPO {p_dpo['start']['chosen']:.3f} -> {p_dpo['end']['chosen']:.3f}, "
          f"DPOP {p_dpop['start']['chosen']:.3f} -> {p_dpop['end']['chosen']:.3f} ({p_dpo['n_pairs']} pairs)")
    assert p_dpo["n_pairs"] > 0 and p_dpo["end"]["chosen"] < p_dpo["start"]["chosen"]
    assert p_dpop["end"]["chosen"] > p_dpo["end"]["chosen"]
    # both still learn the preference
    assert s_dpo["rejected_end"] < s_dpo["chosen_end"] and s_dpop["rejected_end"] < s_dpop["chosen_end"]
    # the failure-mode warning fires for DPO only, and is recorded
    assert dpo["warnings"] and "dpop" in dpo["warnings"][0]
    assert not dpop["warnings"]
    # the DPOP penalty was active on part of the data during training
    shares = [r["penalty_active"] for r in read_jsonl(rd.train_metrics("dpop"))]
    assert 0 < max(shares) <= 1


def test_lora_and_gradient_checkpointing_save_a_plain_checkpoint(tmp_path, tiny_model_dir):
    exp = experiment(tmp_path, tiny_model_dir, steps=2,
                     extra=", gradient_checkpointing: true, lora: {r: 4, alpha: 8}, learning_rate: 1.0e-2")
    rd = rundir(tmp_path)
    train_variants(exp, only=["dpop"], rd=rd, progress=False)
    from transformers import AutoModelForCausalLM
    merged = AutoModelForCausalLM.from_pretrained(rd.checkpoint("dpop"))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not any("lora" in k for k in merged.state_dict())
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


def test_train_cli_unknown_variant_is_one_line(tmp_path, tiny_model_dir, capsys):
    from evalkit.cli import main
    experiment(tmp_path, tiny_model_dir, steps=1)
    code = main(["train", str(tmp_path / "exp.yaml"), "--only", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "evalkit: error: no variant named 'nope' (have: dpo, dpop)"


@pytest.mark.slow
def test_two_processes_train_what_one_process_does_with_the_global_batch(tmp_path, tiny_model_dir):
    """DDP through `accelerate launch` (gloo on CPU), 2 processes x batch 4 against 1 process x
    batch 8: the same global batches, so the same optimizer steps (an epoch of 8 global
    batches in windows of 3: 3, 3 and a short last window of 2), the same LR trajectory and
    final weights within tolerance."""
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoModelForCausalLM
    extra = ", epochs: 1, max_steps: null, grad_accum: 3, lr_scheduler: linear, logging_steps: 1"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    # metamath_carried pairs: with Smaug's one-token pairs the final weights differ by 2.1e-5 (loss and
    # grad norm agree); presumably near-zero gradients, whose Adam update is about +-lr whatever
    # their size, turning reduction-order noise into weight differences (3 steps at lr 2e-4)
    exp = experiment(one, tiny_model_dir, steps=1, extra=extra + ", batch_size: 8", pairs="metamath_carried")
    rd1 = RunDir("t", root=one)
    train_variants(exp, only=["dpop"], rd=rd1, progress=False)
    experiment(two, tiny_model_dir, steps=1, extra=extra + ", batch_size: 4", pairs="metamath_carried")
    exe = Path(sys.executable).parent / "accelerate"
    # `--cpu` alone starts ONE process; two gloo processes on CPU are --multi_gpu with
    # ACCELERATE_USE_CPU (accelerate's MULTI_CPU), which is what is checked below
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(exe), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "evalkit.cli", "train",
                          str(two / "exp.yaml"), "--only", "dpop"], cwd=two, capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rd2 = RunDir("t", root=two)
    m1, m2 = read_json(rd1.train_metadata("dpop")), read_json(rd2.train_metadata("dpop"))
    assert m1["steps"] == m2["steps"] == 3
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["global_batch_pairs"] == m2["global_batch_pairs"] == 24
    r1, r2 = read_jsonl(rd1.train_metrics("dpop")), read_jsonl(rd2.train_metrics("dpop"))
    assert [r["step"] for r in r2] == [1, 2, 3]        # written once, by the main process
    assert [r["lr"] for r in r1] == [r["lr"] for r in r2] == pytest.approx([2e-4, 1e-4, 0.0])
    for a, b in zip(r1, r2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    w0 = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    w1 = AutoModelForCausalLM.from_pretrained(rd1.checkpoint("dpop")).state_dict()
    w2 = AutoModelForCausalLM.from_pretrained(rd2.checkpoint("dpop")).state_dict()
    # Adam moves every weight by about lr whatever its gradient's size, so summation-order noise
    # on near-zero gradients shows up as ~1e-5 in single weights (1.2e-5 seen): compare the two
    # runs' whole updates instead. Other batches or a wrong reduction differ by O(1) of the update.
    import torch
    diff = torch.cat([(w1[k] - w2[k]).flatten() for k in w1])
    update = torch.cat([(w1[k] - w0[k]).flatten() for k in w1])
    rel = (diff.norm() / update.norm()).item()
    print(f"\n1 vs 2 processes: |w1 - w2| / |w1 - w0| = {rel:.2e}, worst weight {diff.abs().max().item():.2e}")
    assert rel < 1e-3 and diff.abs().max().item() < 1e-4, (rel, diff.abs().max().item())


def test_pack_prompt_with_flash_attention_falls_back_with_one_notice(tiny_model_dir, caplog):
    import logging

    from transformers import AutoModelForCausalLM

    from evalkit.train.trainer import choose_packing
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert choose_packing(model, True, "v") and choose_packing(model, "auto", "v")
    model.config._attn_implementation = "flash_attention_2"     # cannot take the 4D mask
    with caplog.at_level(logging.WARNING, logger="evalkit"):
        assert not choose_packing(model, True, "v") and not choose_packing(model, "auto", "v")
    assert [r.getMessage() for r in caplog.records] == [
        "variant v: pack_prompt needs eager or sdpa attention, the model uses flash_attention_2; "
        "training on padded batches"]


def test_reference_precision_is_applied_and_keyed(tmp_path, tiny_model_dir):
    """The reference runs under the policy's autocast, and the cache keeps fp32 and bf16 apart."""
    from transformers import AutoModelForCausalLM

    from evalkit.backends.models import load_tokenizer
    from evalkit.train.builders import metamath_synthetic_pairs
    from evalkit.train.data import Row, tokenize_rows
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = load_tokenizer(str(tiny_model_dir))
    data = tokenize_rows(tok, [Row(r, str(i)) for i, r in enumerate(metamath_synthetic_pairs(4, seed=3))], 160, 96)
    cache = reference.ReferenceCache(tmp_path)
    fp32, k32 = cache.get_or_compute("m", data, lambda: model, progress=False)
    bf16, k16 = cache.get_or_compute("m", data, lambda: model, progress=False, autocast_dtype=torch.bfloat16)
    assert k32 != k16 and len(list(tmp_path.glob("*.pt"))) == 2
    assert not torch.equal(fp32["chosen_logps"], bf16["chosen_logps"])
    assert torch.allclose(fp32["chosen_logps"], bf16["chosen_logps"], rtol=0.05)


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_packaged_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    from evalkit.train.distributed import accelerate_config
    path = accelerate_config(name)
    config = load_config_from_file(str(path))
    assert config.distributed_type == kind and config.mixed_precision == "bf16"
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2 and config.fsdp_config["fsdp_reshard_after_forward"]
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
