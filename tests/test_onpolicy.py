import textwrap

import pytest
import torch

from evalkit.config import load_experiment
from evalkit.runner import train_experiment as train_variants
from evalkit.rundir import RunDir, read_json
from test_schema import assert_reads_back
from evalkit.train.onpolicy import (build_pairs, choice_reward, exact_match_reward, numeric_answer, offline_count,
                                    offline_for_round)


def test_verifier_parsing_including_malformed():
    assert numeric_answer("so 3 + 4 = 7\n#### 7") == 7
    assert numeric_answer("#### 1,234") == 1234
    assert numeric_answer("#### -5") == -5
    assert numeric_answer("#### 2.5") == 2.5
    assert numeric_answer("the answer is 7") is None            # no marker
    assert numeric_answer("#### 13 then garbage 2 + 2 = 5\n#### 9") == 9     # the final answer, not the first
    assert numeric_answer("#### seven") is None                 # not a number
    assert numeric_answer("") is None and numeric_answer(None) is None
    ref = "Tom has 3 * 4 = 12 apples.\n#### 12"
    assert exact_match_reward("... #### 12", ref) == 1.0
    assert exact_match_reward("... #### 13", ref) == 0.0
    assert exact_match_reward("12 apples", ref) == 0.0          # malformed: no reward
    assert choice_reward("dog", "dog") == 1.0 and choice_reward("The dog.", "dog") == 1.0
    assert choice_reward("cat", "dog") == 0.0


def test_pairs_respect_the_gap():
    ref = "#### 5"
    samples = [["#### 5", "#### 4", "#### 5"], ["#### 1", "#### 2"], ["#### 5", "#### 5"]]
    pairs, rewards, dropped = build_pairs(["p1", "p2", "p3"], [ref, ref, ref], samples, "exact_match", 0.5)
    assert len(pairs) == 1 and dropped == 2 and len(rewards) == 7
    for p in pairs:
        assert p["reward_chosen"] > p["reward_rejected"] + 0.5 - 1e-9


@pytest.mark.slow
def test_onpolicy_rounds_train_and_log_rewards(tmp_path, tiny_model_dir):
    """Two rounds with the LLM judge as the reward (the scripted judge over real HTTP: the
    small test model rarely gets a sum right, so the exact-match verifier would find no pairs)."""
    from evalkit.devserver import Script, ServerThread
    with ServerThread(Script()) as srv:
        _onpolicy_rounds(tmp_path, tiny_model_dir, srv.base_url)


def _onpolicy_rounds(tmp_path, tiny_model_dir, judge_url):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: o
        base_model: {tiny_model_dir}
        datasets:
          math: {{generate: metamath_synthetic, n: 24, seed: 1}}
        variants:
          - {{name: onpolicy, data: math, loss: dpop, beta: 0.3, learning_rate: 3.0e-4, batch_size: 4,
              max_length: 200, max_prompt_length: 96,
              onpolicy: {{rounds: 2, samples: 6, prompts: 12, min_gap: 0.2, max_new_tokens: 60,
                          steps_per_round: 4, temperature: 1.0, mixing_ratio: 0.25,
                          reward: judge, judge: {{model: scripted, base_url: "{judge_url}", timeout: 5}}}}}}
        """))
    exp = load_experiment(p)
    rd = RunDir("o", reports=tmp_path / "r", checkpoints=tmp_path / "c")
    train_variants(exp, rd=rd, progress=False)
    assert {"onpolicy_round", "onpolicy_samples", "evalkit", "train_metrics"} <= assert_reads_back(rd, tmp_path / "c")
    meta = read_json(rd.train_metadata("onpolicy"))
    rounds = meta["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    on_run = off_run = 0
    for r in rounds:      # offline pairs are mixing_ratio of the run's data, not of the prompts
        assert r["offline_mixed"] == offline_for_round(r["n_pairs"], r["n_prompts"], on_run, off_run, 0.25)
        if r["n_pairs"]:
            on_run, off_run = on_run + r["n_pairs"], off_run + r["offline_mixed"]
    # the top-level record covers the run, not its last round
    trained = [r for r in rounds if r["trained"]]
    assert meta["steps"] == sum(r["steps"] for r in trained) == 4 * len(trained)
    assert meta["data"]["n_onpolicy"] == on_run and meta["data"]["n_offline"] == off_run == offline_count(on_run, 0.25)
    assert meta["data"]["n_pairs"] == sum(r["n_pairs"] + r["offline_mixed"] for r in trained)
    assert [x["round"] for x in meta["logps_summary"]["per_round"]] == [r["round"] for r in trained]
    assert "chosen_start" not in meta["logps_summary"] and "whole_run" not in meta["logps_summary"]
    assert meta["seconds"] >= sum(r["seconds"] for r in trained)
    assert all(0 <= r["mean_reward"] <= 1 for r in rounds)
    print("\non-policy rounds:", [(r["mean_reward"], r["n_pairs"], r["dropped"]) for r in rounds])
    for r in range(1, 3):
        f = tmp_path / "c" / f"onpolicy.round{r}" / "onpolicy_pairs.json"
        if f.exists():
            for pair in read_json(f)["pairs"]:
                assert pair["reward_chosen"] > pair["reward_rejected"] + 0.2 - 1e-9
    assert rounds[1]["policy"].endswith("onpolicy.round1") or rounds[0]["n_pairs"] == 0


def test_judge_reward_through_the_scripted_server(tmp_path):
    """reward: judge rates each completion with the LLM judge over HTTP (rating / 10)."""
    from evalkit.config import JudgeSection
    from evalkit.devserver import Script, ServerThread, rating_for
    from evalkit.train.onpolicy import judge_rewards
    prompts = ["What is 2 plus 2?", "Name an animal."]
    samples = [["4", "5", "four"], ["dog", "rock", "cat"]]
    with ServerThread(Script()) as srv:
        rewards = judge_rewards(JudgeSection(model="scripted", base_url=srv.base_url, timeout=5), prompts, samples)
        assert srv.script.ok_calls == 6
        prompts_seen = list(srv.script.prompts)
    assert all(0.1 <= r <= 1.0 for row in rewards for r in row)
    # the scripted judge's rating is a function of the prompt it received: check one by hand
    assert sorted(r for row in rewards for r in row) == sorted(rating_for(p) / 10 for p in prompts_seen)
    pairs, _, _ = build_pairs(prompts, ["", ""], samples, "judge", 0.1, rewards)
    for p in pairs:
        assert p["reward_chosen"] >= p["reward_rejected"] + 0.1 - 1e-9


def test_mixing_ratio_is_exactly_the_share_of_offline_pairs():
    from fractions import Fraction
    assert exact_match_reward("#### 13 ... #### 9", "#### 9") == 1.0
    assert exact_match_reward("#### 9 ... #### 13", "#### 9") == 0.0
    for ratio in (0.2, 0.25, 0.5, 0.75):
        for n in range(1, 41):
            k = offline_count(n, ratio)
            exact = Fraction(ratio).limit_denominator(100) * n / (1 - Fraction(ratio).limit_denominator(100))
            if exact.denominator == 1:
                assert Fraction(k, k + n) == Fraction(ratio).limit_denominator(100), (ratio, n, k)
            # never further from the asked share than one pair can make it
            assert abs(k - float(exact)) <= 0.5
    assert offline_count(1, 0.25) == 0 and offline_count(3, 0.25) == 1 and offline_count(0, 0.5) == 0
    assert offline_count(6, 0.0) == 0


def test_offline_share_is_the_nearest_row_over_the_run():
    """17 + 17 on-policy pairs at 0.25: rounding each round gave 6 + 6 offline (12 of 46,
    26.1%); the run draws 6 then 5 (11 of 45, 24.4%: the nearest whole row to 11.33)."""
    first = offline_for_round(17, 20, 0, 0, 0.25)
    second = offline_for_round(17, 20, 17, first, 0.25)
    assert (first, second) == (6, 5)
    on = off = 0
    for n in (17, 13, 5, 1, 9, 22):
        off += offline_for_round(n, 30, on, off, 0.25)
        on += n
        assert abs(off - on / 3) <= 0.5          # r n / (1 - r) = n / 3: never more than half a row off
    assert offline_for_round(0, 12, on, off, 0.25) == 4     # nothing on-policy: a quarter of the prompts' worth


def test_onpolicy_config_hash_is_keyed_on_content_not_paths(tmp_path, tiny_model_dir):
    """The same weights at another path and the same rows read from elsewhere give the same
    hash; changed weights or a changed row (same count) give another."""
    import shutil

    from transformers import AutoModelForCausalLM

    from evalkit.config import Variant
    from evalkit.train.data import Row
    from evalkit.train.onpolicy import onpolicy_config_hash
    v = Variant(name="o", data="d", loss="dpop", onpolicy={"rounds": 1})
    data = [{"prompt": f"What is {i} + 1?", "chosen": f"#### {i + 1}", "rejected": f"#### {i}"} for i in range(4)]
    rows = [Row(d, f"a.jsonl:{i}") for i, d in enumerate(data, 1)]
    h = onpolicy_config_hash(v, str(tiny_model_dir), rows)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_model_dir, moved)
    assert onpolicy_config_hash(v, str(moved), [Row(dict(d), f"b.jsonl:{i}") for i, d in enumerate(data)]) == h
    edited = [Row({**d, "chosen": "#### 7"} if i == 2 else d, f"a.jsonl:{i}") for i, d in enumerate(data, 1)]
    assert onpolicy_config_hash(v, str(tiny_model_dir), edited) != h
    model = AutoModelForCausalLM.from_pretrained(moved)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(moved)
    assert onpolicy_config_hash(v, str(moved), rows) != h
