"""Suite arithmetic on fake lm-eval results: no model, no lm-eval run."""
import pytest

from evalkit.cli import main
from evalkit.errors import UserError
from evalkit.eval.leaderboard import normalise, summarise
from evalkit.eval.suites import load_suite


def fake(results: dict[str, dict], sizes: dict[str, int]) -> dict:
    return {"results": results, "n-samples": {t: {"effective": n, "original": n} for t, n in sizes.items()},
            "versions": {t: 1.0 for t in results}, "n-shot": {}}


def v1_results(mmlu_values: dict[str, tuple[float, int]]):
    suite = load_suite("open_llm_v1_lmeval")  # lm-eval's own task names and metric keys
    res, sizes = {}, {}
    for e in suite.entries:
        for t in e.tasks:
            res[t.task] = {"acc,none": 0.5, "acc_stderr,none": 0.01, "acc_norm,none": 0.6,
                           "acc_norm_stderr,none": 0.02, "exact_match,strict-match": 0.3,
                           "exact_match_stderr,strict-match": 0.03, "exact_match,flexible-extract": 0.9}
            sizes[t.task] = 100
    for task, (acc, n) in mmlu_values.items():
        res[task]["acc,none"] = acc
        sizes[task] = n
    return suite, fake(res, sizes)


def test_v1_lmeval_show_lists_the_suite_exactly(capsys):
    assert main(["leaderboard", "--show", "--suite", "open_llm_v1_lmeval"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:9]]
    assert [r[0] for r in rows] == ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
    table = {r[0]: r for r in rows}
    assert table["arc_challenge"][2:5] == ["25", "acc_norm", "none"]
    assert table["hellaswag"][2:5] == ["10", "acc_norm", "none"]
    assert table["mmlu"][1:3] == ["57", "tasks"] and table["mmlu"][5:8] == ["5", "acc", "none"]
    assert table["mmlu"][-2:] == ["unweighted", "mean"]
    assert table["truthfulqa_mc2"][2:5] == ["0", "acc", "none"]
    assert table["winogrande"][2:5] == ["5", "acc", "none"]
    assert table["gsm8k"][2:5] == ["5", "exact_match", "strict-match"]


def test_mmlu_is_the_unweighted_mean_of_subjects():
    # two subjects differ in size: 0.9 on 10 docs, 0.1 on 990 docs; the other 55 sit at 0.5.
    suite, res = v1_results({"mmlu_anatomy": (0.9, 10), "mmlu_virology": (0.1, 990)})
    out = summarise(suite, res)
    # unweighted: (0.9 + 0.1 + 55*0.5) / 57 = 28.5 / 57 = 0.5 ; size-weighted would be ~0.18
    assert out["tasks"]["mmlu"]["value"] == pytest.approx(0.5)
    weighted = (0.9 * 10 + 0.1 * 990 + 0.5 * 55 * 100) / (10 + 990 + 5500)
    assert abs(out["tasks"]["mmlu"]["value"] - weighted) > 0.05
    assert out["tasks"]["mmlu"]["n_samples"] == 10 + 990 + 55 * 100
    # average = plain mean of six entries: arc .6, hellaswag .6, mmlu .5, tqa .5, wino .5, gsm8k .3
    assert out["average"] == pytest.approx((0.6 + 0.6 + 0.5 + 0.5 + 0.5 + 0.3) / 6)
    assert out["tasks"]["gsm8k"]["value"] == 0.3  # strict-match, not flexible-extract
    assert (out["tasks"]["gsm8k"]["metric"], out["tasks"]["gsm8k"]["filter"]) == ("exact_match", "strict-match")


def test_normalise_by_hand():
    # (raw - baseline) / (1 - baseline), floored at 0
    assert normalise(0.25, 0.25) == 0.0
    assert normalise(0.625, 0.25) == pytest.approx(0.5)      # 0.375 / 0.75
    assert normalise(0.1, 0.25) == 0.0                       # below chance
    assert normalise(0.55, 0.1) == pytest.approx(0.5)        # 0.45 / 0.9
    assert normalise(0.8, 0.0) == 0.8


def test_v2_normalisation_by_hand():
    suite = load_suite("open_llm_v2")
    res, sizes = {}, {}
    for e in suite.entries:
        for t in e.tasks:
            res[t.task] = {"acc_norm,none": 0.5, "acc_norm_stderr,none": 0.01}
            sizes[t.task] = 100
    res["leaderboard_ifeval"] = {"prompt_level_strict_acc,none": 0.4, "inst_level_strict_acc,none": 0.6}
    for t in [t.task for e in suite.entries if e.name == "math_hard" for t in e.tasks]:
        res[t] = {"exact_match,none": 0.2}
    res["leaderboard_mmlu_pro"] = {"acc,none": 0.55}
    res["leaderboard_gpqa_diamond"] = {"acc_norm,none": 0.25}
    sizes["leaderboard_gpqa_diamond"] = 200          # gpqa: (0.25*200 + 0.5*100 + 0.5*100)/400 = 0.375
    out = summarise(suite, fake(res, sizes))
    t = out["tasks"]
    assert t["ifeval"]["normalised"] == pytest.approx(0.5)               # mean(0.4, 0.6), baseline 0
    assert t["math_hard"]["normalised"] == pytest.approx(0.2)
    assert t["mmlu_pro"]["normalised"] == pytest.approx((0.55 - 0.1) / 0.9)   # 0.5
    assert t["gpqa"]["value"] == pytest.approx(0.375)
    assert t["gpqa"]["normalised"] == pytest.approx((0.375 - 0.25) / 0.75)    # 1/6
    # musr: 0.5 on each subtask; baselines 1/2, 1/5, 1/3 -> 0, 0.375, 0.25 -> mean 0.2083
    assert t["musr"]["normalised"] == pytest.approx((0.0 + 0.375 + 0.25) / 3)
    # bbh: every subtask at 0.5 with baseline 1/k: mean over 24 of max(0, (0.5-1/k)/(1-1/k))
    bbh = [e for e in suite.entries if e.name == "bbh"][0]
    by_hand = sum(max(0.0, (0.5 - r.baseline) / (1 - r.baseline)) for r in bbh.tasks) / 24
    assert t["bbh"]["normalised"] == pytest.approx(by_hand)
    assert t["bbh"]["subtasks"]["leaderboard_bbh_navigate"]["normalised"] == 0.0  # 2 choices: chance
    expected = (0.5 + by_hand + 0.2 + 1 / 6 + (0.375 + 0.25) / 3 + 0.5) / 6
    assert out["average"] == pytest.approx(expected)


def test_unknown_suite_suggests_names():
    with pytest.raises(UserError, match=r"unknown suite 'open_llm_v3'; did you mean .*open_llm_v1"):
        load_suite("open_llm_v3")


def test_missing_metric_is_a_clear_error():
    suite, res = v1_results({})
    del res["results"]["gsm8k"]["exact_match,strict-match"]
    with pytest.raises(UserError, match=r"no 'exact_match,strict-match'"):
        summarise(suite, res)


def test_v1_archived_show_and_protocol(capsys):
    """The default suite is the archived protocol: v1's shots, its own task names and GSM8K metric."""
    assert main(["leaderboard", "--show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("open_llm_v1: Open LLM Leaderboard v1, archived protocol (lm-evaluation-harness b281b09)")
    table = {r.split()[0]: r.split() for r in out.splitlines()[3:9]}
    assert table["arc_challenge"][1:5] == ["v1_arc_challenge", "25", "acc_norm", "none"]
    assert table["mmlu"][1:3] == ["57", "tasks"] and table["mmlu"][5:8] == ["5", "acc", "none"]
    assert table["gsm8k"][1:5] == ["v1_gsm8k", "5", "acc", "v1-extract"]
    assert out.splitlines()[-1] == ("protocol: lm-evaluation-harness b281b09 (Open LLM Leaderboard v1), reproduced as "
                                    "lm-eval task configs (batch size 1, few-shot seed 42, no chat template)")
    suite = load_suite("open_llm_v1")
    assert suite.batch_size == 1 and suite.fewshot_seed == 42 and suite.apply_chat_template is False
    assert suite.task_source == "evalkit" and "b281b09" in suite.protocol
    subjects = [t.dataset_name for e in suite.entries if e.name == "mmlu" for t in e.tasks]
    lmeval = [t.task[len("mmlu_"):] for e in load_suite("open_llm_v1_lmeval").entries if e.name == "mmlu"
              for t in e.tasks]
    assert subjects == lmeval and len(subjects) == 57


def test_chat_settings_resolve_model_then_suite():
    from evalkit.eval.leaderboard import LeaderboardOptions, batch_size_for, chat_settings
    v1, v2 = load_suite("open_llm_v1"), load_suite("open_llm_v2")
    off = chat_settings(v2, LeaderboardOptions())
    assert (off.apply_chat_template, off.fewshot_as_multiturn, off.system_instruction) == (False, False, None)
    # a chat run on v2: few-shot turns default to multi-turn (the suite's default), as v2 ran them
    on = chat_settings(v2, LeaderboardOptions(apply_chat_template=True, system_instruction="Be brief."))
    assert (on.apply_chat_template, on.fewshot_as_multiturn, on.system_instruction) == (True, True, "Be brief.")
    single = chat_settings(v2, LeaderboardOptions(apply_chat_template=True, fewshot_as_multiturn=False))
    assert single.fewshot_as_multiturn is False
    suite_prompt = v2.model_copy(update={"system_instruction": "You are a helpful assistant."})
    assert chat_settings(suite_prompt, LeaderboardOptions(apply_chat_template=True)).system_instruction \
        == "You are a helpful assistant."
    with pytest.raises(UserError, match="never applied a chat template"):
        chat_settings(v1, LeaderboardOptions(apply_chat_template=True))
    with pytest.raises(UserError, match="fewshot_as_multiturn needs apply_chat_template"):
        chat_settings(v2, LeaderboardOptions(fewshot_as_multiturn=True))
    # the archived protocol ran at batch size 1 whatever the run asks
    assert batch_size_for(v1, LeaderboardOptions(batch_size="auto")) == 1
    assert batch_size_for(v1, LeaderboardOptions(batch_size=16)) == 1
    assert batch_size_for(v2, LeaderboardOptions(batch_size=16)) == 16
