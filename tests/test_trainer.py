import json
import textwrap

import pytest
import torch

from evalkit.config import load_experiment
from evalkit.runner import train_experiment as train_variants
from evalkit.rundir import RunDir, read_json, read_jsonl
from evalkit.train import reference

METRIC_FIELDS = {"step", "loss", "logps_chosen", "logps_rejected", "rewards_chosen", "rewards_rejected",
                 "reward_margin", "reward_accuracy", "penalty_active", "lr", "grad_norm"}


def experiment(tmp_path, base, steps, extra="", seed=0):
    text = textwrap.dedent(f"""\
        name: t
        base_model: {base}
        seed: {seed}
        datasets:
          math: {{generate: metamath_synthetic, n: 64, seed: 1}}
        variants:
          - &dpo {{name: dpo, data: math, loss: dpo, beta: 0.3, learning_rate: 3.0e-4, max_steps: {steps},
                  batch_size: 8, max_length: 160, max_prompt_length: 96, logging_steps: 10{extra}}}
          - {{<<: *dpo, name: dpop, loss: dpop, lambda: 50}}
        """)
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return load_experiment(p)


def rundir(tmp_path):
    return RunDir("t", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")


def test_reference_cache_shared_and_outputs_complete(tmp_path, tiny_model_dir):
    exp = experiment(tmp_path, tiny_model_dir, steps=3, extra=", logging_steps: 1")
    rd = rundir(tmp_path)
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
def test_two_process_accelerate_launch_on_cpu(tmp_path, tiny_model_dir):
    """DDP through `accelerate launch` (gloo on CPU): two processes train one checkpoint."""
    import subprocess
    import sys
    from pathlib import Path
    experiment(tmp_path, tiny_model_dir, steps=4, extra=", logging_steps: 2, batch_size: 4")
    exe = Path(sys.executable).parent / "accelerate"
    res = subprocess.run([str(exe), "launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "evalkit.cli", "train",
                          str(tmp_path / "exp.yaml"), "--only", "dpop"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rd = RunDir("t", root=tmp_path)
    meta = read_json(rd.train_metadata("dpop"))
    assert meta["steps"] == 4
    rows = read_jsonl(rd.train_metrics("dpop"))
    assert [r["step"] for r in rows] == [2, 4]        # written once, by the main process
