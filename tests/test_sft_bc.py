"""Maximum likelihood (`loss: sft`) and the on-policy filtered behaviour-cloning arm.

The contrastive and the maximum-likelihood arm of one experiment must train on the very same
round-1 samples (Tajwar et al.'s comparison); the samples are cached by content, so the
second arm reads the first arm's file."""
import textwrap

import pytest
import torch

from evalkit import schema
from evalkit.cli import main
from evalkit.config import load_experiment
from evalkit.errors import UserError
from evalkit.rundir import RunDir, read_json
from evalkit.train.losses import add_sft, dpo, nll, sft
from evalkit.train.onpolicy import numeric_answer, sample_completions, select_bc


def test_sft_loss_by_hand_token_mean_and_sum():
    """Two completions, summed log-probs -6 over 3 tokens and -2 over 1 token:
    token_mean NLL = [6/3, 2/1] = [2, 2]; sum NLL = [6, 2]."""
    sums, lengths = torch.tensor([-6.0, -2.0], requires_grad=True), torch.tensor([3, 1])
    assert torch.equal(sft(sums, lengths).losses, torch.tensor([2.0, 2.0]))                 # default: token_mean
    assert torch.equal(sft(sums, lengths, nll_reduction="sum").losses, torch.tensor([6.0, 2.0]))
    out = sft(sums, lengths)
    assert out.chosen_rewards is None and out.rejected_rewards is None
    # d NLL / d sum: -1/|y| per token-mean example, -1 summed
    out.losses.sum().backward()
    assert torch.allclose(sums.grad, torch.tensor([-1 / 3, -1.0]))
    # sft_weight adds the same quantity: dpo at h = 0 is log 2 per pair; + 0.5 * [2, 2] or 0.5 * [6, 2]
    z = torch.zeros(2)
    base = dpo(z, z, z, z, beta=0.1)
    assert torch.allclose(add_sft(base, sums.detach(), lengths, 0.5).losses, torch.log(torch.tensor(2.0)) + 1.0)
    assert torch.allclose(add_sft(base, sums.detach(), lengths, 0.5, "sum").losses,
                          torch.log(torch.tensor(2.0)) + torch.tensor([3.0, 1.0]))
    assert torch.equal(nll(sums.detach(), lengths, "sum"), -sums.detach())
    with pytest.raises(ValueError):
        nll(sums, lengths, "mean")


def test_filtered_bc_keeps_the_best_passing_samples():
    prompts = ["p1", "p2", "p3", "p4"]
    samples = [["a", "b", "c", "d"], ["x", "y", "x", "z"], ["m", "n", "o", "p"], ["", " ", "q", "q"]]
    rewards = [[0.0, 1.0, 1.0, 0.5], [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.9, 0.0], [1.0, 1.0, 1.0, 1.0]]
    rows, empty = select_bc(prompts, samples, rewards, min_reward=1.0)
    # p1: the first of the tied best (sample order); p2: "x"; p3: 0.9 < 1.0 -> none; p4: empty ones skipped
    assert [(r["prompt"], r["chosen"], r["sample"]) for r in rows] == [("p1", "b", 1), ("p2", "x", 0), ("p4", "q", 2)]
    assert empty == 1
    rows, empty = select_bc(prompts, samples, rewards, min_reward=0.5, per_prompt=2)
    # p1: b, c (d's 0.5 is third); p2: x then z (the second "x" is a duplicate); p3: o; p4: q once
    assert [(r["prompt"], r["chosen"]) for r in rows] == [("p1", "b"), ("p1", "c"), ("p2", "x"), ("p2", "z"),
                                                          ("p3", "o"), ("p4", "q")]
    assert empty == 0
    assert select_bc(prompts, samples, rewards, min_reward=1.0 + 1e-9) == ([], 4)


BAD = {   # the experiment file's line, the key path, the message
    "lambda: 5": ":6: variants[0]: lambda: loss 'sft' does not take this option (it takes: nll_reduction)",
    "beta: 0.3": ":6: variants[0]: beta: loss 'sft' does not take this option",
    "sft_weight: 0.5": ":6: variants[0]: sft_weight: loss 'sft' does not take this option",
    "onpolicy: {objective: contrastive}": ":6: variants[0]: onpolicy.objective: contrastive trains pairs, the variant "
                                          "has loss 'sft'",
    "onpolicy: {objective: cloning}": ":9: variants[0].onpolicy.objective: Input should be 'contrastive' or "
                                      "'filtered_bc'",
    "onpolicy: {objective: filtered_bc, min_gap: 0.2}": ":9: variants[0].onpolicy: min_gap: applies to objective "
                                                        "contrastive",
    "onpolicy: {objective: filtered_bc, samples: 2, bc_per_prompt: 3}": ":9: variants[0].onpolicy: bc_per_prompt: 3 "
                                                                        "is more than the 2 samples per prompt",
    "onpolicy: {objective: filtered_bc, min_reward: 1.5}": ":9: variants[0].onpolicy.min_reward: Input should be less "
                                                           "than or equal to 1",
    "nll_reduction: mean": ":9: variants[0].nll_reduction: Input should be 'token_mean' or 'sum'",
}


@pytest.mark.parametrize("extra", list(BAD))
def test_config_errors_are_one_line_exit_2(tmp_path, capsys, extra):
    p = tmp_path / "exp.yaml"
    p.write_text(f"name: e\nbase_model: x\ndatasets:\n  d: {{generate: metamath_synthetic, n: 4}}\n"
                 f"variants:\n  - name: v\n    data: d\n    loss: sft\n    {extra}\n")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{p}{BAD[extra]}" in err and "\n" not in err


def test_nll_reduction_and_objective_on_preference_losses(tmp_path):
    def variant(text):
        p = tmp_path / "e.yaml"
        p.write_text(f"name: e\nbase_model: x\ndatasets:\n  d: {{generate: metamath_synthetic, n: 4}}\n"
                     f"variants:\n  - {{name: v, data: d, {text}}}\n")
        return load_experiment(p).variants[0]
    with pytest.raises(UserError, match=r"nll_reduction: applies to loss sft or sft_weight > 0"):
        variant("loss: dpo, nll_reduction: sum")
    assert variant("loss: dpo, sft_weight: 1.0, nll_reduction: sum").nll_reduction == "sum"
    with pytest.raises(UserError, match=r"onpolicy.objective: filtered_bc trains loss sft, the variant has loss 'dpop'"):
        variant("loss: dpop, onpolicy: {objective: filtered_bc}")
    with pytest.raises(UserError, match=r"stepwise: sDPO steps the reference model"):
        variant("loss: sft, stepwise: {chunks: 2}")
    assert variant("loss: sft, onpolicy: {objective: filtered_bc}").onpolicy.min_reward == 1.0


ARMS = """\
    name: arms
    base_model: {base}
    seed: 3
    datasets:
      math: {{generate: metamath_synthetic, n: 16, seed: 1}}
    variants:
      - &on
        name: contrastive
        data: math
        loss: dpo
        learning_rate: 1.0e-3
        batch_size: 4
        max_length: 160
        max_prompt_length: 96
        logging_steps: 1
        onpolicy: {{rounds: 2, samples: 4, prompts: 4, max_new_tokens: 24, steps_per_round: 2,
                    mixing_ratio: 0.5, min_gap: 0.5}}
      - <<: *on
        name: ml
        loss: sft
        onpolicy: {{rounds: 2, samples: 4, prompts: 4, max_new_tokens: 24, steps_per_round: 2,
                    mixing_ratio: 0.5, objective: filtered_bc}}
      - name: sft_offline
        data: math
        loss: sft
        nll_reduction: sum
        learning_rate: 1.0e-3
        batch_size: 8
        max_steps: 3
        max_length: 160
        max_prompt_length: 96
    """


def answer_format_reward(completion: str, reference: str) -> float:
    """1 when the completion ends in a readable '#### n' final answer, right or wrong, else 0:
    deterministic, and the tiny model's samples of one prompt differ in it (it rarely gets a
    sum right, so exact match would give every sample 0: no pair, nothing cloned)."""
    return 1.0 if numeric_answer(completion) is not None else 0.0


@pytest.fixture(scope="module")
def arms(tmp_path_factory, tiny_model_dir):
    """Both on-policy arms and an offline sft variant, trained on the tiny test model, with
    the answer-format reward in place of exact match."""
    from evalkit.runner import train_experiment
    from evalkit.train import onpolicy, reference
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("arms")
    p = root / "exp.yaml"
    p.write_text(textwrap.dedent(ARMS.format(base=tiny_model_dir)))
    exp = load_experiment(p)
    rd = RunDir("arms", root=root)
    passes = reference.FORWARD_PASSES
    train_experiment(exp, only=["sft_offline"], rd=rd, progress=False)
    sft_passes = reference.FORWARD_PASSES - passes, sorted(rd.reference_cache().glob("*")) if rd.reference_cache().exists() else []
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(onpolicy.REWARDS, "exact_match", answer_format_reward)
        train_experiment(exp, rd=rd, progress=False)
    return exp, rd, sft_passes


def test_both_arms_train_on_byte_identical_round1_samples(arms):
    exp, rd, _ = arms
    c, m = (read_json(rd.train_metadata(v)) for v in ("contrastive", "ml"))
    assert c["rounds"][0]["samples_key"] == m["rounds"][0]["samples_key"]
    assert (c["rounds"][0]["samples_cached"], m["rounds"][0]["samples_cached"]) == (False, True)
    f_c, f_m = (rd.checkpoint(v) / "onpolicy_samples" / "round1.json" for v in ("contrastive", "ml"))
    assert f_c.read_bytes() == f_m.read_bytes()
    # sampling is deterministic given the request: drawing again gives the cached samples
    rec = read_json(f_c)
    req = rec["request"]
    again = sample_completions(str(exp.base_model), req["prompts"], req["k"], req["max_new_tokens"],
                               req["temperature"], req["seed"])
    assert again == rec["samples"]
    # what each arm trained on in round 1 came from those samples, chosen by their rewards
    rewards = [[answer_format_reward(o, "") for o in outs] for outs in rec["samples"]]
    print("\nround-1 rewards per prompt:", rewards)
    pairs = read_json(rd.checkpoint("contrastive").with_name("contrastive.round1") / "onpolicy_pairs.json")
    bc = read_json(rd.checkpoint("ml").with_name("ml.round1") / "onpolicy_bc.json")
    assert pairs["samples_key"] == bc["samples_key"] == m["rounds"][0]["samples_key"]
    assert pairs["rewards"] == bc["rewards"] == rewards
    best = {}        # prompt -> (its first top-reward sample, its first lowest-reward sample)
    for prompt, outs, r in zip(req["prompts"], rec["samples"], rewards):
        chosen, rejected = outs[r.index(max(r))], outs[r.index(min(r))]
        if max(r) - min(r) >= 0.5 and rejected.strip() and chosen.strip() != rejected.strip():   # min_gap 0.5
            best[prompt] = (chosen, rejected)
    assert best, "no prompt's samples differ in reward: the test shows nothing"
    #  the contrastive arm: best vs worst sample of every prompt whose samples differ
    assert [(q["prompt"], q["chosen"], q["rejected"]) for q in pairs["pairs"]] == \
        [(p, ch, rj) for p, (ch, rj) in best.items()]
    assert len(pairs["pairs"]) == c["rounds"][0]["n_pairs"] > 0
    #  the ML arm: the top sample of every prompt whose top reward reaches min_reward (1.0)
    top = [(p, outs[r.index(max(r))], r.index(max(r)))
           for p, outs, r in zip(req["prompts"], rec["samples"], rewards) if max(r) >= 1.0]
    assert [(q["prompt"], q["chosen"], q["sample"]) for q in bc["bc"]] == top
    assert len(bc["bc"]) == m["rounds"][0]["n_bc"] > 0
    assert {q["chosen"] for q in bc["bc"]} >= {q["chosen"] for q in pairs["pairs"]}   # the same top samples
    # the same prompts every round for both arms; round 2 samples from each arm's own policy
    assert c["rounds"][1]["samples_key"] != m["rounds"][1]["samples_key"]
    for r in c["rounds"] + m["rounds"]:
        assert set(r) <= set(schema.OnPolicyRound.__annotations__), "undocumented round keys"
        assert 0 <= r["share_correct"] <= 1 and r["n_samples"] == 16
        assert r["offline_share"] == pytest.approx(r["offline_mixed"] / max(1, r["offline_mixed"] + r["n_pairs"] + r["n_bc"]))
    assert m["reference_model"] is None and c["reference_model"] == str(exp.base_model)


def test_sft_trains_without_a_reference(arms):
    _, rd, reference_passes = arms
    meta = read_json(rd.train_metadata("sft_offline"))
    assert meta["loss"] == "sft" and meta["reference"] is None and meta["reference_model"] is None
    s = meta["logps_summary"]
    assert "rejected_start" not in s and s["chosen_end"] > s["chosen_start"]       # likelihood of y_w rises
    metrics = [r for r in (rd.checkpoint("sft_offline") / "train_metrics.jsonl").read_text().splitlines() if r]
    assert metrics and all('"reward_margin"' not in r and '"logps_rejected"' not in r for r in metrics)
    # no reference forward pass and nothing written to the reference cache
    assert reference_passes == (0, [])


def test_report_shows_the_per_round_table(arms, tmp_path):
    from evalkit.report.render import render
    _, rd, _ = arms
    html = render([rd.reports], tmp_path / "r.html").read_text()
    assert "On-policy rounds" in html
    for v in ("contrastive", "ml"):
        meta = read_json(rd.train_metadata(v))
        for r in meta["rounds"]:
            assert f'data-round="{v}:{r["round"]}"' in html
    assert "BC samples" in html and "filtered_bc" in html
