import random
import re

from evalkit import synth
import json
from pathlib import Path

import pytest

from evalkit.errors import UserError
from evalkit.train.builders import (choice_pairs, corrupt_first_value, corrupt_one_result, intermediate_results,
                                    math_row_pairs, metamath_carried_pairs, metamath_synthetic_pairs)

GSM8K = Path("/work/shared/data/gsm8k/train_sample.jsonl")
NOTES = re.compile(r"<<[^<>]*>>")


def numbers(text: str) -> list[str]:
    """The numbers a reader sees: calculator notes removed (a note repeats the result after it)."""
    return re.findall(r"\d[\d,]*(?:\.\d+)?", NOTES.sub("", text))


def final(text: str) -> str:
    return text.rsplit("####", 1)[1].strip()


def test_arc_style_gives_three_pairs_per_four_choice_question():
    rows = [{"question": "Q1?", "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]},
             "answerKey": "C"},
            {"question": "Q2?", "choices": ["x", "y", "z", "w"], "answer": 0},
            {"question": "Q3?", "choices": {"text": ["1", "2", "3"], "label": ["1", "2", "3"]}, "answerKey": "2"}]
    pairs, skipped = choice_pairs(rows)
    assert skipped == 0 and len(pairs) == 3 + 3 + 2
    assert all(p["chosen"] == "c" for p in pairs[:3]) and {p["rejected"] for p in pairs[:3]} == {"a", "b", "d"}


def test_colliding_texts_are_skipped_with_a_count():
    rows = [{"question": "Q?", "choices": ["same", "same ", "other", "x"], "answer": 0},
            {"question": "Q2?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}]
    pairs, skipped = choice_pairs(rows)
    assert len(pairs) == 2 and skipped == 2     # one collision, one question whose key is not a label


def test_carried_variant_changes_one_intermediate_result_carried_through():
    rng = random.Random(0)
    for _ in range(50):
        p = synth.math_problem(rng)
        good, bad = p.solution(), corrupt_first_value(p, rng)
        assert good != bad
        nums = lambda s: re.findall(r"\d+", s)  # noqa: E731
        g, b = nums(good), nums(bad)
        assert len(g) == len(b)
        v0, v1 = p.steps[0][1], p.steps[1][1]
        changed = {x for x, y in zip(g, b) if x != y}
        # only the first intermediate result and what is computed from it (step 2, the answer) change
        assert changed <= {str(v0), str(v1)} and str(v0) in changed
        # the corrupted solution stays internally consistent: its final answer follows its own v0
        w0 = int(b[g.index(str(v0))])
        assert b[-1] == str(p.values_from(w0)[1])


def test_metamath_synthetic_pairs_are_distinct_and_seeded():
    a = metamath_synthetic_pairs(20, seed=3)
    assert a == metamath_synthetic_pairs(20, seed=3) and len({r["prompt"] for r in a}) == 20
    assert all(r["chosen"] != r["rejected"] for r in a)
    assert metamath_carried_pairs(20, seed=3) != a and len(metamath_carried_pairs(5, seed=3)) == 5


def _one_result_changed(chosen: str, rejected: str) -> None:
    g, b = numbers(chosen), numbers(rejected)
    assert len(g) == len(b)
    assert sum(x != y for x, y in zip(g, b)) == 1, (chosen, rejected)
    assert final(chosen) == final(rejected)
    # the line structure and every word are unchanged: only the one number differs
    assert [re.sub(r"\d[\d,.]*", "#", x) for x in chosen.splitlines()] == \
        [re.sub(r"\d[\d,.]*", "#", x) for x in rejected.splitlines()]


@pytest.mark.skipif(not GSM8K.exists(), reason="the shared GSM8K sample is not on this machine")
def test_smaug_pairs_on_real_gsm8k_rows_change_exactly_one_number():
    rows = [json.loads(x) for x in GSM8K.read_text().splitlines()]
    pairs, skipped = math_row_pairs(rows, seed=0)
    assert skipped == 0 and len(pairs) == len(rows)
    for row, p in zip(rows, pairs):
        assert p["prompt"] == row["question"] and p["chosen"] == row["answer"]
        _one_result_changed(p["chosen"], p["rejected"])
        # a calculator note and the number after it are one result: both show the same wrong value
        note = re.compile(r"<<[^<>=]*=([^<>]*)>>(\d[\d,]*(?:\.\d+)?)")
        for c, r in zip(note.finditer(p["chosen"]), note.finditer(p["rejected"])):
            value = lambda m, i: float(m.group(i).replace(",", ""))  # noqa: E731
            if value(c, 1) == value(c, 2):
                assert value(r, 1) == value(r, 2)
    assert math_row_pairs(rows, seed=0) == (pairs, 0) and math_row_pairs(rows, seed=1)[0] != pairs
    # the changed result is drawn at random, not always the first one
    firsts = sum(numbers(p["chosen"])[:3] != numbers(p["rejected"])[:3] for p in pairs)
    assert 0 < firsts < len(pairs)


def test_smaug_construction_matches_the_datasheet_example_and_metamath_rows():
    assert corrupt_one_result("So 2 + 3 = 5, and 5 * 2 = 10.\n#### 10", random.Random(0)).startswith("So 2 + 3 = ")
    assert corrupt_one_result("So 2 + 3 = 5, and 5 * 2 = 10.\n#### 10", random.Random(0))[12:] == \
        ", and 5 * 2 = 10.\n#### 10"                      # punctuation after a number is kept
    r = corrupt_one_result("It costs 1,000 + 250 = $1,250 in all, so 2 * 1,250 = 2,500.\n#### 2500", random.Random(0))
    assert re.search(r"= \$1,2[0-9]{2} in all, so 2 \* 1,250 = 2,500\.", r) and "= $1,250 " not in r
    chosen = ("The total cost of the items is $25 + $15.20 + $6.80 = $47.\n"
              "For 16 of them, 16 * $47 = $752.\n#### 752\nThe answer is: 752")
    assert len(intermediate_results(chosen)) == 2          # "= $47" and "= $752"; the answer lines are not
    pairs, skipped = math_row_pairs([{"query": "Q?", "response": chosen}], seed=0)
    assert skipped == 0
    rej = pairs[0]["rejected"]
    assert "16 * $47 = $752." in rej and rej.endswith("#### 752\nThe answer is: 752") and "= $47." not in rej
    _one_result_changed(chosen, rej)
    with pytest.raises(UserError, match="row 1: not a worked-solution row"):
        math_row_pairs([{"prompt": "x"}])
    assert math_row_pairs([{"question": "Q", "answer": "No steps.\n#### 3"}]) == ([], 1)


def test_smaug_pairs_on_synthetic_problems():
    for p in metamath_synthetic_pairs(50, seed=4):
        _one_result_changed(p["chosen"], p["rejected"])
        # the changed number is the first step's result; step 2 still uses the correct one
        assert p["chosen"].splitlines()[1] == p["rejected"].splitlines()[1]


def test_pairs_cli_writes_jsonl(tmp_path, capsys):
    import json

    from evalkit.cli import main
    out = tmp_path / "p.jsonl"
    assert main(["pairs", "metamath", "--n", "5", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 5 and "5 pairs" in capsys.readouterr().out
    src = tmp_path / "arc.jsonl"
    src.write_text(json.dumps({"question": "Q?", "choices": {"text": ["a", "b", "c", "d"], "label": list("ABCD")},
                               "answerKey": "B"}) + "\n")
    assert main(["pairs", "arc", "--path", str(src), "--out", str(tmp_path / "a.jsonl")]) == 0
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3


@pytest.mark.skipif(not GSM8K.exists(), reason="the shared GSM8K sample is not on this machine")
def test_pairs_cli_metamath_on_real_rows_reports_single_word_edits(tmp_path, capsys):
    from evalkit.cli import main
    out = tmp_path / "m.jsonl"
    assert main(["pairs", "metamath", "--path", str(GSM8K), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # a note's result and the number shown after it sit in one word: one word changes per pair
    assert "600 pairs" in text and "min 1, max 1" in text, text
    assert main(["pairs", "metamath-carried", "--n", "4", "--out", str(out)]) == 0
    assert "4 pairs" in capsys.readouterr().out


HELLASWAG = [  # rows in Rowan/hellaswag's hub schema (label is a string; "" in the unlabelled test split)
    {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow.",
     "ctx_b": "then", "ctx": "Then, the man writes over the snow. then",
     "endings": [", the man adds wax to the windshield.", ", a person board a ski lift.",
                 ", the man puts on a christmas coat.", ", the man continues removing the snow on his car."],
     "source_id": "activitynet~v_-1IBHYS3L-Y", "split": "train", "split_type": "indomain", "label": "3"},
    {"ind": 8, "activity_label": "Baking cookies", "ctx_a": "A female chef in white uniform shows a stack.",
     "ctx_b": "she", "ctx": "A female chef in white uniform shows a stack. she",
     "endings": ["pours milk into a bowl.", "shows the cookies.", "eats the tray.", "sings a song."],
     "source_id": "activitynet~v_-2dxp-mv2zo", "split": "train", "split_type": "indomain", "label": "1"},
    {"ind": 9, "activity_label": "x", "ctx_a": "a", "ctx_b": "b", "ctx": "a b",
     "endings": ["1", "2", "3", "4"], "source_id": "s", "split": "test", "split_type": "zeroshot", "label": ""},
]


def test_hellaswag_hub_rows_pair_the_correct_ending_with_each_wrong_one():
    pairs, skipped = choice_pairs(HELLASWAG)
    assert skipped == 1 and len(pairs) == 6        # the unlabelled row is counted, not guessed
    first = pairs[:3]
    assert {p["prompt"] for p in first} == {HELLASWAG[0]["ctx"]}
    assert {p["chosen"] for p in first} == {HELLASWAG[0]["endings"][3]}
    assert {p["rejected"] for p in first} == set(HELLASWAG[0]["endings"][:3])


def test_fewshot_prompts_hold_solved_examples_from_other_rows():
    arc = [{"question": f"Q{i}?", "choices": {"text": [f"a{i}", f"b{i}", f"c{i}", f"d{i}"], "label": list("ABCD")},
            "answerKey": "B"} for i in range(5)]
    pairs, _ = choice_pairs(arc, fewshot=2, seed=1)
    assert len(pairs) == 15 and pairs == choice_pairs(arc, fewshot=2, seed=1)[0]
    p = pairs[0]["prompt"]
    assert p.endswith("Question: Q0?\nAnswer:") and p.count("Question:") == 3 and "Q0?" not in p[:-len("Q0?\nAnswer:")]
    shots = re.findall(r"Question: Q(\d)\?\nAnswer: (\S+)", p)
    assert len(shots) == 2 and all(a == f"b{i}" for i, a in shots)   # each shot shows its own correct answer
    hs, _ = choice_pairs(HELLASWAG, fewshot=1)
    assert hs[0]["prompt"] == HELLASWAG[1]["ctx"] + " " + HELLASWAG[1]["endings"][1] + "\n\n" + HELLASWAG[0]["ctx"]


def test_pair_sources_validate(tmp_path):
    from evalkit.config import DataSource
    assert DataSource(generate="metamath_pairs", path="x.jsonl").generate == "metamath_pairs"
    for bad in ({"generate": "metamath_pairs"}, {"generate": "metamath_synthetic", "fewshot": 2},
                {"generate": "arc_pairs", "hub": "h", "fewshot": -1}):
        with pytest.raises(ValueError):
            DataSource(**bad)


REAL_GSM8K = [GSM8K.parent / "test_sample.jsonl", GSM8K]
OPERAND = re.compile(r"\s*[-+*/x×÷]\s*\$?\s*\d")


def changed_number(chosen: str, rejected: str) -> tuple[int, int]:
    """The span, in chosen, of the first number that differs from rejected."""
    i = next(k for k in range(min(len(chosen), len(rejected))) if chosen[k] != rejected[k])
    a, b = i, i
    while a > 0 and (chosen[a - 1].isdigit() or chosen[a - 1] in ".,"):
        a -= 1
    while b < len(chosen) and (chosen[b].isdigit() or chosen[b] in ".,"):
        b += 1
    return a, b


def test_equals_rule_changes_a_result_never_an_operand():
    """'= 240-40 = <<240-40=200>>200': 240 is an operand; only 200 is a result."""
    text = "She gives away 40 so she has 240 = 240-40 = <<240-40=200>>200 left.\n#### 200"
    assert [[text[a:b] for a, b in spans] for spans in intermediate_results(text)] == [["200", "200"]]
    assert [[t[a:b] for a, b in s] for t in ["x = 3 * 4 = 12.", "so $47 = 47, and"]
            for s in intermediate_results(t)] == [["12"], ["47"]]


@pytest.mark.skipif(not all(p.exists() for p in REAL_GSM8K), reason="the shared GSM8K sample is not on this machine")
def test_smaug_pairs_on_real_gsm8k_change_no_operand():
    """All 900 real rows (300 test, 600 train): the number changed is never followed by an
    operator and another operand (before the fix 11 pairs changed an operand, e.g.
    'c = 280/4 = <<280/4=70>>70' became 'c = 270/4 = ...')."""
    rows = [json.loads(x) for f in REAL_GSM8K for x in f.read_text().splitlines() if x.strip()]
    pairs, skipped = math_row_pairs(rows, seed=0)
    assert len(rows) == 900 and skipped == 0 and len(pairs) == 900
    operands = []
    for p in pairs:
        a, b = changed_number(p["chosen"], p["rejected"])
        if OPERAND.match(p["chosen"][b:]):
            operands.append(p["chosen"][max(0, a - 30):b + 30])
    assert operands == []


def test_rows_skipped_building_pairs_count_in_n_skipped(tmp_path, tiny_model_dir, monkeypatch):
    """A metamath_pairs dataset: two source rows with no marked result are skipped by the
    builder, and evalkit.json's n_skipped says 2 (it said 0 while the log said 2)."""
    from evalkit import cli
    from evalkit.rundir import read_json
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i} and then "
             f"{2 * i} + 1 = <<{2 * i}+1={2 * i + 1}>>{2 * i + 1}\n#### {2 * i + 1}"} for i in range(1, 9)]
    rows += [{"question": "Say hi.", "answer": "hi\n#### 0"}, {"question": "Name it.", "answer": "it\n#### 1"}]
    src = tmp_path / "gsm.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "exp.yaml").write_text(
        f"name: skips\nbase_model: {tiny_model_dir}\n"
        f"datasets:\n  math: {{generate: metamath_pairs, path: {src}}}\n"
        "variants:\n  - {name: dpo, data: math, loss: dpo, max_steps: 1, batch_size: 4, max_length: 96, "
        "max_prompt_length: 32}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "exp.yaml"]) == 0
    meta = read_json(tmp_path / "checkpoints" / "skips" / "dpo" / "evalkit.json")
    assert meta["data"]["n_skipped"] == 2 and meta["data"]["n_skipped_building"] == 2
    assert meta["data"]["n_pairs"] == 8
