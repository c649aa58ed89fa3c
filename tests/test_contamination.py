import json
import math
import random

import pytest
import torch
from torch.nn import CrossEntropyLoss

from evalkit import synth
from evalkit.errors import UserError
from evalkit.eval import contamination as C
from evalkit.eval.benchmark_texts import load_examples
from evalkit.eval.ngram import overlap
from evalkit.models import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def texts(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        it = synth.choice_item(rng)
        out.append(" ".join(synth.format_choice_prompt(it).split()) + " " + it.answer)
    return out


def original_evaluate_model(model, tok, batch_texts, max_length=150, batch_size=32):
    """The reference implementation's evaluate_model, re-computed plainly (right padding)."""
    tok.padding_side = "right"
    losses = []
    for s in range(0, len(batch_texts), batch_size):
        b = tok(batch_texts[s:s + batch_size], padding=True, return_tensors="pt", truncation=True,
                max_length=max_length)
        labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
        with torch.no_grad():
            logits = model(b["input_ids"], attention_mask=b["attention_mask"]).logits
        shift_logits, shift_labels = logits[..., :-1, :], labels[..., 1:]
        loss = CrossEntropyLoss(reduction="none")(shift_logits.transpose(1, 2), shift_labels)
        losses.append(loss.sum(1) / (shift_labels != -100).sum(1))
    return torch.cat(losses)


def test_text_losses_match_the_original_formula(tiny):
    model, tok = tiny
    sample = texts(70) + ["word " * 200]  # one text longer than the 150-token truncation
    ours = C.score_texts(model, tok, sample, max_tokens=150, batch_tokens=4096).mean_nll
    ref = original_evaluate_model(model, tok, sample)
    assert torch.allclose(torch.tensor(ours), ref.double().float(), atol=1e-5)
    # the example loss: model(ids, labels=ids).loss on the untruncated text
    one = sample[3]
    ids = torch.tensor([tok(one)["input_ids"]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert C.score_texts(model, tok, [one]).mean_nll[0] == pytest.approx(loss, abs=1e-5)


def test_scores_and_result_with_fixed_neighbours(tiny):
    model, tok = tiny
    examples = [C.Example(str(i), t) for i, t in enumerate(texts(6, seed=1))]
    neighbours = [texts(10, seed=100 + i) for i in range(6)]
    p = C.Params(n_neighbours=10)
    run, _ = C.score_target(model, tok, examples, neighbours, p)
    ex_nll = original_evaluate_model(model, tok, [e.text for e in examples], max_length=10_000)
    for i in range(6):
        nb = original_evaluate_model(model, tok, neighbours[i])
        direct = (nb < ex_nll[i]).sum().item() / 10
        assert run.scores[i] == pytest.approx(direct)
    assert C.result_of(run.scores, 0.1) == sum(s < 0.1 for s in run.scores) / 6
    assert C.result_of([0.0, 0.05, 0.5, 0.09], 0.1) == 0.75


def test_neighbours_are_seeded_and_respect_the_budget(tiny):
    model, tok = tiny
    examples = [C.Example(str(i), t) for i, t in enumerate(texts(5, seed=2))]
    p = C.Params(n_neighbours=7, generate_batch=14)
    a = C.generate_neighbours(model, tok, examples, p)
    b = C.generate_neighbours(model, tok, examples, p)
    assert a == b and all(len(n) == 7 for n in a)
    for ex, nbs in zip(examples, a):
        prefix, budget = C.prefix_of(ex.text, 0.4)
        n_prefix_tokens = len(tok(prefix)["input_ids"])
        for z in nbs:
            assert z.startswith(prefix)
            assert len(tok(z)["input_ids"]) <= n_prefix_tokens + budget + 1
    c = C.generate_neighbours(model, tok, examples, C.Params(n_neighbours=7, generate_batch=14, seed=9))
    assert c != a


def test_signals_by_hand():
    s = C.signals("abc abc abc", nll=2.0, ref_nll=1.5, lower_nll=3.0, token_logps=[-1, -5, -2, -0.5, -4],
                  minkpp_z=[0.5, -2.0, 1.0, -1.0, 0.0], k=0.4)
    assert s["ppl"] == pytest.approx(math.exp(2.0))
    assert s["log_ppl_minus_ref"] == pytest.approx(0.5)
    assert s["lowercase_ratio"] == pytest.approx(-1.5)
    assert s["min_k_prob"] == pytest.approx((-5 + -4) / 2)          # lowest 40% of 5 = 2 values
    assert s["min_k_plus_plus"] == pytest.approx((-2.0 + -1.0) / 2)
    import zlib
    assert s["zlib_ratio"] == pytest.approx(2.0 / len(zlib.compress(b"abc abc abc")))


COLORS = ["red", "blue", "green", "white", "black", "yellow"]


def record_items(n, seed):
    """High-entropy items in a fixed format (random names, numbers, objects): an unseen item
    cannot be predicted, a memorised one can. Words are mostly single tokens of the tiny
    vocabulary, so neighbour budgets (in tokens) cover most of the continuation."""
    rng = random.Random(seed)
    return [f"{a} gave {rng.randint(2, 99)} {rng.choice(synth.ITEMS)} to {b} in the {rng.choice(COLORS)} "
            f"{rng.choice(synth.CONTAINERS)} and kept {rng.randint(2, 99)} {rng.choice(synth.ITEMS)} for "
            f"{rng.choice(synth.NAMES)}."
            for a, b in (rng.sample(synth.NAMES, 2) for _ in range(n))]


def _finetune(start, tok, train_texts, steps, lr=3e-3, batch=40, seed=0):
    import copy
    model = copy.deepcopy(start)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok.padding_side = "right"
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        enc = tok(rng.sample(train_texts, min(batch, len(train_texts))), padding=True, return_tensors="pt")
        loss = model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model


@pytest.mark.slow
def test_planted_contamination_is_found(tiny):
    """Reference R = the tiny base tuned on 400 items of a format (it knows the format, not the
    items). Dirty = R tuned on set A until memorised; clean twin = R tuned equally on set C;
    set B is seen by neither. Dirty flags A and not B; the clean twin and the base do not flag A.
    On GSM-style solutions clean models also score high: the reason every result has a control."""
    base, tok = tiny
    pool = record_items(520, seed=11)
    set_a, set_b, set_c, format_set = pool[:40], pool[40:80], pool[80:120], pool[120:]
    reference = _finetune(base, tok, format_set, steps=100)
    dirty = _finetune(reference, tok, set_a, steps=150)
    clean = _finetune(reference, tok, set_c, steps=150)
    p = C.Params(n_neighbours=100)
    ex_a = [C.Example(f"a{i}", t) for i, t in enumerate(set_a)]
    ex_b = [C.Example(f"b{i}", t) for i, t in enumerate(set_b)]
    nb_a = C.generate_neighbours(reference, tok, ex_a, p)
    nb_b = C.generate_neighbours(reference, tok, ex_b, p)

    def result(model, ex, nb):
        return C.result_of(C.score_target(model, tok, ex, nb, p, details=False)[0].scores, p.threshold)

    res = {"dirty_on_A": result(dirty, ex_a, nb_a), "dirty_on_B": result(dirty, ex_b, nb_b),
           "clean_twin_on_A": result(clean, ex_a, nb_a), "base_on_A": result(base, ex_a, nb_a)}
    rng = random.Random(3)
    gsm = [C.Example(str(i), q.question + " " + q.solution().split("####")[0].strip())
           for i, q in enumerate(synth.math_problem(rng) for _ in range(40))]
    nb_g = C.generate_neighbours(base, tok, gsm, p)
    res["base_on_gsm_style (reference = base)"] = result(base, gsm, nb_g)
    res["format_tuned_on_gsm_style"] = result(reference, gsm, nb_g)
    print("\nplanted contamination:", json.dumps(res))
    assert res["dirty_on_A"] >= 0.85
    assert res["dirty_on_B"] <= 0.2 and res["clean_twin_on_A"] <= 0.2 and res["base_on_A"] <= 0.2


def test_ngram_overlap_finds_planted_duplicates():
    train = ["the quick brown fox jumps over the lazy dog near the old river bank today and then sleeps",
             "completely unrelated training text about apples and pears in a basket"]
    items = [("dup", "Yesterday THE quick brown fox   jumps over the lazy dog near the old river bank today!"),
             ("near", "the quick brown fox jumps over the lazy cat near the old river bank today and then sleeps"),
             ("clean", "a totally different question about numbers and their sums in a long sentence here"),
             ("short", "apples and pears")]
    r = overlap(train, items, n=13)
    assert r["dirty_ids"] == ["dup", "short"]
    assert r["n_dirty"] == 2 and r["share"] == 0.5
    # the near-miss differs inside every 13-gram window; at n=5 it overlaps
    assert "near" in overlap(train, items, n=5)["dirty_ids"]


def test_bad_input(tmp_path, tiny):
    model, tok = tiny
    with pytest.raises(UserError, match="text too short for a prefix"):
        C.generate_neighbours(model, tok, [C.Example("x", "hello")], C.Params(n_neighbours=2))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "fine text here"}\n{"question": "no text field"}\n')
    with pytest.raises(UserError, match=r"b.jsonl:2: needs a non-empty string field 'text'"):
        load_examples(str(bad))
    with pytest.raises(UserError, match=r"unknown benchmark 'gsm8kk'; did you mean gsm8k"):
        load_examples("gsm8kk")
    (tmp_path / "openai/gsm8k/main").mkdir(parents=True)
    (tmp_path / "openai/gsm8k/main/test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(UserError, match=r"benchmark gsm8k: row 0 lacks the fields it needs"):
        load_examples("gsm8k", tmp_path)
    from evalkit.eval import contamination_run
    with pytest.raises(UserError, match="no such model directory"):
        contamination_run.run(str(tmp_path / "missing"), str(tmp_path / "missing"), ["gsm8k"], tmp_path)
