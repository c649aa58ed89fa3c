import textwrap

from evalkit.config import load_experiment
from evalkit.runner import train_experiment as train_variants
from evalkit.rundir import RunDir, read_json
from evalkit.train.reference import model_fingerprint


def test_sdpo_steps_use_the_previous_step_as_reference(tmp_path, tiny_model_dir):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: s
        base_model: {tiny_model_dir}
        datasets:
          math: {{generate: metamath_synthetic, n: 64, seed: 1}}
        variants:
          - {{name: sdpo, data: math, loss: dpop, beta: 0.3, learning_rate: 3.0e-4, max_steps: 60, batch_size: 8,
              max_length: 160, max_prompt_length: 96, logging_steps: 10,
              stepwise: {{chunks: 2, order: as_given}}}}
        """))
    exp = load_experiment(p)
    rd = RunDir("s", reports=tmp_path / "r", checkpoints=tmp_path / "c")
    train_variants(exp, rd=rd, progress=False)
    meta = read_json(rd.train_metadata("sdpo"))
    s1, s2 = meta["steps"]
    assert (s1["index"], s2["index"]) == (1, 2) and s1["n_pairs"] + s2["n_pairs"] == 64
    assert s1["reference_fingerprint"] == model_fingerprint(str(tiny_model_dir))          # M_0 = the base
    assert s2["reference_model"] == s1["checkpoint"]
    assert s2["reference_fingerprint"] == model_fingerprint(s1["checkpoint"])              # M_1 is step 2's reference
    print(f"\nsDPO reference margins: step 1 {s1['reference_margin']:.3f}, step 2 {s2['reference_margin']:.3f} "
          f"(the base on step 2's chunk: {s2['base_margin']:.3f})")
    assert s2["reference_margin"] >= s1["reference_margin"]     # the reference gets stronger
    assert s2["reference_margin"] > s2["base_margin"]
    # each step's checkpoint is kept; the variant is the last one
    assert (tmp_path / "c" / "sdpo.step1" / "evalkit.json").exists()
    assert read_json(rd.train_metadata("sdpo"))["stepwise"] == {"chunks": 2, "order": "as_given", "datasets": None}
    assert meta["reference_model"] == s2["reference_model"]     # the final model's reference, not the base


def test_sdpo_steps_through_datasets_in_order(tmp_path, tiny_model_dir):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: s
        base_model: {tiny_model_dir}
        datasets:
          first: {{generate: metamath_synthetic, n: 24, seed: 1}}
          second: {{generate: metamath_carried, n: 8, seed: 2}}
        variants:
          - {{name: sdpo, data: first, loss: dpop, beta: 0.3, learning_rate: 3.0e-4, max_steps: 8, batch_size: 8,
              max_length: 160, max_prompt_length: 96, logging_steps: 2,
              stepwise: {{datasets: [first, second]}}}}
        """))
    exp = load_experiment(p)
    rd = RunDir("s", reports=tmp_path / "r", checkpoints=tmp_path / "c")
    train_variants(exp, rd=rd, progress=False)
    meta = read_json(rd.train_metadata("sdpo"))
    s1, s2 = meta["steps"]
    assert (s1["dataset"], s1["n_pairs"]) == ("first", 24) and (s2["dataset"], s2["n_pairs"]) == ("second", 8)
    assert (s1["steps"], s2["steps"]) == (6, 2)                  # max_steps shared by the datasets' sizes
    assert s1["reference_model"] == str(tiny_model_dir) and s2["reference_model"] == s1["checkpoint"]
    assert meta["reference_model"] == s1["checkpoint"] and meta["base_model"] == str(tiny_model_dir)
    assert meta["data"]["n_pairs"] == 32 and meta["data"]["datasets"] == ["first", "second"]
    # the step-2 checkpoint's own record names its reference too
    assert read_json(rd.checkpoint("sdpo").with_name("sdpo.step2") / "evalkit.json")["reference_model"] == s1["checkpoint"]


def test_sdpo_dataset_list_is_checked(tmp_path):
    import pytest

    from evalkit.errors import UserError
    head = "name: s\nbase_model: {tiny: {seed: 0}}\ndatasets:\n  a: {generate: metamath_synthetic, n: 8}\n" \
           "  b: {generate: metamath_synthetic, n: 8}\nvariants:\n  - {name: v, data: a, loss: dpo, "
    for tail, msg in (("stepwise: {datasets: [b, a]}}", "first step's dataset"),
                      ("stepwise: {datasets: [a, c]}}", "unknown dataset 'c'"),
                      ("stepwise: {datasets: [a, b], order: easy_to_hard}}", "orders the chunks")):
        p = tmp_path / "e.yaml"
        p.write_text(head + tail + "\n")
        with pytest.raises(UserError, match=msg):
            load_experiment(p)
