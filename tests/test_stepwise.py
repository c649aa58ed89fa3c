import textwrap

from evalkit.backends.fingerprint import model_fingerprint
from evalkit.config import load_experiment
from evalkit.rundir import RunDir, read_json
from evalkit.runner import train_experiment as train_variants
from test_schema import assert_reads_back


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
    assert {"evalkit", "train_metrics"} <= assert_reads_back(rd, tmp_path / "c")
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
    # the headline is per step: step 1's pairs under the base vs step 2's pairs under the final
    # model would compare different pairs; no held-out set here, so no whole-run number
    summary = meta["logps_summary"]
    assert summary["per_step"] == [{"step": 1, **s1["logps_summary"]}, {"step": 2, **s2["logps_summary"]}]
    assert "chosen_start" not in summary and "whole_run" not in summary


def test_sdpo_steps_through_datasets_in_order_holding_out_one_set(tmp_path, tiny_model_dir, monkeypatch):
    """Two datasets, one a step, with heldout_pairs 4: the held-out pairs are split once from
    both datasets, no step trains on them, and both steps measure the same set."""

    import pytest

    from evalkit import schema
    from evalkit.report.render import _with_heldout_start
    from evalkit.rundir import read_jsonl
    from evalkit.train import stepwise
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: s
        base_model: {tiny_model_dir}
        datasets:
          first: {{generate: metamath_synthetic, n: 24, seed: 1}}
          second: {{generate: metamath_carried, n: 8, seed: 2}}
        variants:
          - {{name: sdpo, data: first, loss: dpop, beta: 0.3, learning_rate: 3.0e-4, max_steps: 8, batch_size: 8,
              max_length: 160, max_prompt_length: 96, logging_steps: 2, heldout_pairs: 4,
              stepwise: {{datasets: [first, second]}}}}
        """))
    exp = load_experiment(p)
    rd = RunDir("s", reports=tmp_path / "r", checkpoints=tmp_path / "c")
    calls = []     # what each step was handed: its training pairs and the held-out pairs
    real = stepwise.train_variant

    def recording(variant, base, data, out_dir, cache, **kw):
        calls.append((list(data.pairs), list(kw["heldout"])))
        return real(variant, base, data, out_dir, cache, **kw)
    monkeypatch.setattr(stepwise, "train_variant", recording)
    train_variants(exp, rd=rd, progress=False)
    meta = read_json(rd.train_metadata("sdpo"))
    s1, s2 = meta["steps"]
    assert (s1["dataset"], s2["dataset"]) == ("first", "second")
    # held out once: 4 pairs of 32, counted once; the steps train on the other 28
    assert meta["data"]["n_pairs"] == 32 and meta["data"]["n_heldout"] == meta["heldout"]["n_pairs"] == 4
    assert s1["n_pairs"] + s2["n_pairs"] == 28 and s1["n_pairs"] <= 24 and s2["n_pairs"] <= 8
    n_train = s1["n_pairs"] + s2["n_pairs"]          # max_steps shared by the sizes trained on
    assert s1["steps"] + s2["steps"] == 8, "max_steps is the total, shared by the sizes trained on"
    assert abs(s1["steps"] - 8 * s1["n_pairs"] / n_train) < 1 and abs(s2["steps"] - 8 * s2["n_pairs"] / n_train) < 1
    # the same held-out pairs at every step, and none of their prompts in any step's training pairs
    key = lambda q: (tuple(q.chosen_ids), tuple(q.rejected_ids))  # noqa: E731
    prompt = lambda q: tuple(q.chosen_ids[:q.chosen_prompt_len])  # noqa: E731
    (train1, held1), (train2, held2) = calls
    assert len(held1) == 4 and [key(q) for q in held1] == [key(q) for q in held2]
    assert [len(train1), len(train2)] == [s1["n_pairs"], s2["n_pairs"]]
    assert not {prompt(q) for q in held1} & {prompt(q) for q in train1 + train2}
    assert s1["heldout"]["pairs"] == s2["heldout"]["pairs"] == meta["heldout"]["pairs"]
    # step 2 starts where step 1 ended (M_1 on the same pairs); the variant's start is the base's
    for k in ("chosen", "rejected", "unseen"):
        assert s2["heldout"]["start"][k] == pytest.approx(s1["heldout"]["end"][k], abs=1e-4)
    assert meta["heldout"]["start"] == s1["heldout"]["start"] and meta["heldout"]["end"] == s2["heldout"]["end"]
    # the one whole-run number is on that fixed set: the base before step 1, the final model after step 2
    whole = meta["logps_summary"]["whole_run"]
    assert (whole["chosen_start"], whole["chosen_end"]) == (s1["heldout"]["start"]["chosen"], s2["heldout"]["end"]["chosen"])
    # one curve over one set: every line measures it; the report's step 0 is the base
    rows = read_jsonl(rd.train_metrics("sdpo"))
    assert sorted(r["sdpo_step"] for r in rows) == [r["sdpo_step"] for r in rows] and rows[-1]["sdpo_step"] == 2
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})     # the steps continue
    assert all(r["schema_version"] == schema.version("train_metrics") and "heldout_logps_unseen" in r for r in rows)
    curve = _with_heldout_start({"meta": meta, "metrics": rows})
    assert curve[0]["step"] == 0 and curve[0]["heldout_logps_chosen"] == s1["heldout"]["start"]["chosen"]
    assert s1["reference_model"] == str(tiny_model_dir) and s2["reference_model"] == s1["checkpoint"]
    assert meta["reference_model"] == s1["checkpoint"] and meta["base_model"] == str(tiny_model_dir)
    assert meta["data"]["datasets"] == ["first", "second"]
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


def test_max_steps_is_shared_to_the_exact_total():
    from evalkit.train.stepwise import share_steps
    assert share_steps(4, [24, 4]) == [3, 1]
    assert share_steps(5, [1, 1]) in ([3, 2], [2, 3]) and sum(share_steps(5, [1, 1])) == 5
    assert sum(share_steps(150, [28, 28])) == 150 and share_steps(None, [3, 4]) == [None, None]
    assert share_steps(2, [100, 1, 1]) == [2, 1, 1]      # at least one step each
