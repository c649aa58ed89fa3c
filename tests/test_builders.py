import random
import re

from evalkit import synth
from evalkit.train.builders import choice_pairs, corrupt_first_value, metamath_synthetic_pairs


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


def test_corrupted_solution_changes_one_intermediate_result_carried_through():
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
