import copy
import json
import math
import random

import pytest
import torch
from torch.nn import CrossEntropyLoss

from evalkit import synth
from evalkit.backends.models import load_model
from evalkit.backends.scoring import score_groups_shared, score_texts
from evalkit.errors import UserError
from evalkit.eval import contamination as C
from evalkit.eval.benchmark_texts import load_examples
from evalkit.eval.ngram import overlap


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
    ours = score_texts(model, tok, sample, max_tokens=150, batch_tokens=4096).mean_nll
    ref = original_evaluate_model(model, tok, sample)
    assert torch.allclose(torch.tensor(ours), ref.double().float(), atol=1e-5)
    # the example loss: model(ids, labels=ids).loss on the untruncated text
    one = sample[3]
    ids = torch.tensor([tok(one)["input_ids"]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert score_texts(model, tok, [one]).mean_nll[0] == pytest.approx(loss, abs=1e-5)


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
    (That clean models score high on GSM-style text, the reason every result has a control, is
    the real-GSM8K acceptance test below.) 30 items a set and 50 neighbours are enough: dirty
    flags all of A, the others at most 0.1, and neighbours that lose their prefix fail it."""
    base, tok = tiny
    pool = record_items(520, seed=11)
    set_a, set_b, set_c, format_set = pool[:30], pool[40:70], pool[80:110], pool[120:]
    reference = _finetune(base, tok, format_set, steps=100)
    dirty = _finetune(reference, tok, set_a, steps=100)
    clean = _finetune(reference, tok, set_c, steps=100)
    p = C.Params(n_neighbours=50)
    ex_a = [C.Example(f"a{i}", t) for i, t in enumerate(set_a)]
    ex_b = [C.Example(f"b{i}", t) for i, t in enumerate(set_b)]
    nb_a = C.generate_neighbours(reference, tok, ex_a, p)
    nb_b = C.generate_neighbours(reference, tok, ex_b, p)

    def result(model, ex, nb):
        return C.result_of(C.score_target(model, tok, ex, nb, p, details=False)[0].scores, p.threshold)

    res = {"dirty_on_A": result(dirty, ex_a, nb_a), "dirty_on_B": result(dirty, ex_b, nb_b),
           "clean_twin_on_A": result(clean, ex_a, nb_a), "base_on_A": result(base, ex_a, nb_a)}
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
    (tmp_path / "openai/gsm8k/main/test.jsonl").write_text(
        "".join(json.dumps({"question": f"How many is {i} and {i}?", "answer": f"It is {2 * i}. #### {2 * i}"})
                + "\n" for i in range(2)))
    with pytest.raises(UserError, match="no such model directory"):   # the inputs are fine: the model is not
        contamination_run.run(str(tmp_path / "missing"), str(tmp_path / "missing"), ["gsm8k"], tmp_path,
                              C.Params(n_examples=2), data_dir=str(tmp_path))


# ---------------------------------------------------------------- method shi2023: the original, exactly

def _original_loss_of_text(model, tok, text):
    """The original's calculatePerplexity: the text alone, loss of model(ids, labels=ids)."""
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


def _original_neighbour_losses(model, tok, neighbours):
    """The original's evaluate_model from its description: pad = EOS on the tokenizer's own
    side, batches of 32 in order, truncation at 150 tokens, padding labels -100, per-row mean
    of the shifted token cross-entropy."""
    tok = copy.copy(tok)
    tok.pad_token = tok.eos_token
    out = []
    for s in range(0, len(neighbours), 32):
        b = tok(neighbours[s:s + 32], padding=True, return_tensors="pt", truncation=True, max_length=150)
        labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
        with torch.no_grad():
            logits = model(b["input_ids"], attention_mask=b["attention_mask"]).logits
        ce = CrossEntropyLoss(reduction="none")(logits[:, :-1].transpose(1, 2), labels[:, 1:])
        out += (ce.sum(1) / (labels[:, 1:] != -100).sum(1)).tolist()
    return out


@pytest.mark.parametrize("side", ["right", "left"])
def test_shi2023_matches_the_original_on_saved_neighbours(tmp_path, tiny_model_dir, side):
    """Run the check, then recompute every saved number with the original's arithmetic."""
    import shutil

    from transformers import AutoTokenizer

    from evalkit.eval import contamination_run
    model_dir = tmp_path / f"tiny-{side}"
    shutil.copytree(tiny_model_dir, model_dir)
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    cfg["padding_side"] = side  # as Llama/Mistral tokenizers declare it
    (model_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    bench = tmp_path / "items.jsonl"
    items = texts(40, seed=5)
    bench.write_text("".join(json.dumps({"id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(items)))
    p = C.Params(n_examples=5, n_neighbours=40, generate_batch=80)
    rec = contamination_run.run(str(model_dir), str(model_dir), [str(bench)], tmp_path / "out", p, progress=False)
    assert rec["padding_side"]["target"] == side
    rows = [json.loads(line) for line in (tmp_path / "out" / "contamination_items.jsonl").read_text().splitlines()]
    # selection: the original shuffles a JSONL twice, each time after random.seed(0)
    data = list(range(40))
    for _ in range(2):
        random.seed(0)
        random.shuffle(data)
    assert [r["id"] for r in rows] == [f"q{i}" for i in data[:5]]
    model, _ = load_model(str(model_dir), dtype="float32")
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.padding_side == side
    worst = 0.0
    for r in rows:
        assert len(r["neighbours"]) == 40 and len(r["neighbour_nll"]) == 40
        x = _original_loss_of_text(model, tok, r["text"])
        zs = _original_neighbour_losses(model, tok, r["neighbours"])
        worst = max(worst, abs(x - r["target_nll"]), *(abs(a - b) for a, b in zip(zs, r["neighbour_nll"])))
        assert r["score"] == sum(z < x for z in zs) / len(zs)
    assert worst < 1e-5
    if side == "left":  # the layout matters: right-padded, length-sorted scoring does not reproduce it
        right = [score_texts(model, tok, r["neighbours"], 150).mean_nll for r in rows]
        assert max(abs(a - b) for r, rr in zip(rows, right) for a, b in zip(r["neighbour_nll"], rr)) > 1e-3
    assert rec["benchmarks"]["items"]["result"] == sum(r["score"] < 0.1 for r in rows) / len(rows)


# ---------------------------------------------------------------- the calibrated verdict on real GSM8K

def _gsm8k_texts(name):
    from pathlib import Path
    f = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / name
    if not f.exists():
        f = Path("/work/shared/data/gsm8k") / name
    if not f.exists():
        pytest.skip(f"real GSM8K sample not found ({name})")
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return [r["question"] + " " + r["answer"].split("####")[0].strip() for r in rows], f


def _cached_finetune(cache, key, start_dir, tok, train_texts, steps):
    """Tune the model at start_dir on packed 256-token windows of train_texts (8 per step),
    cached by content (start, recipe and data) under `cache`."""
    import hashlib

    from evalkit.backends.fingerprint import directory_fingerprint
    h = hashlib.sha256(json.dumps([directory_fingerprint(start_dir), key, steps, train_texts]).encode()).hexdigest()[:16]
    out = cache / f"gsm8k-{key}-{h}"
    if not (out / "config.json").exists():
        model, _ = load_model(str(start_dir), dtype="float32")
        stream = []
        for ids in tok(train_texts, add_special_tokens=False)["input_ids"]:
            stream += [tok.bos_token_id] + ids + [tok.eos_token_id]
        stream = torch.tensor(stream)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            starts = torch.randint(0, len(stream) - 257, (8,), generator=gen)
            x = torch.stack([stream[s:s + 256] for s in starts.tolist()])
            model(input_ids=x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        tmp = cache / f".{out.name}.tmp"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(out)
    return out


@pytest.fixture(scope="module")
def gsm8k_models(tiny_model_dir):
    """Reference: the tiny base tuned on the real GSM8K train sample. Target: the reference
    tuned further on 50 test items (A) mixed with train items. Clean twin: the same recipe on
    50 other test items (C). B: 50 test items neither saw."""
    from transformers import AutoTokenizer
    test, _ = _gsm8k_texts("test_sample.jsonl")
    train, _ = _gsm8k_texts("train_sample.jsonl")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cache = tiny_model_dir.parent
    set_a, set_b, set_c = test[:50], test[50:100], test[100:150]
    ref = _cached_finetune(cache, "reference", tiny_model_dir, tok, train, steps=40)
    target = _cached_finetune(cache, "target", ref, tok, set_a + train[:25], steps=40)
    clean = _cached_finetune(cache, "clean", ref, tok, set_c + train[:25], steps=40)
    return {"reference": ref, "target": target, "clean": clean, "A": set_a, "B": set_b,
            "twins A": test[150:200], "twins B": test[200:250]}


def test_calibrated_verdict_tells_memorised_from_unseen_on_real_gsm8k(tmp_path, gsm8k_models):
    """Twins: 50 other real test items no model saw (another split), compared unpaired. (Number
    twins were measured biased here: a model tuned on other GSM8K items prefers real numbers
    over changed ones, -0.058 nats on the clean twin; see the README.)"""
    from evalkit.eval import contamination_run
    m = gsm8k_models
    cells = {}
    for name in ("A", "B"):
        bench, twins = tmp_path / f"{name}.jsonl", tmp_path / f"twins{name}.jsonl"
        for f, items in ((bench, m[name]), (twins, m[f"twins {name}"])):
            f.write_text("".join(json.dumps({"id": f"{f.stem}{i}", "text": t}) + "\n" for i, t in enumerate(items)))
        p = C.Params(n_examples=50, n_neighbours=4, generate_batch=200, bootstrap=1000, twins=str(twins))
        rec = contamination_run.run(str(m["target"]), str(m["reference"]), [str(bench)], tmp_path / name, p,
                                    control=str(m["clean"]), progress=False)
        b = rec["benchmarks"][name]
        cells[f"target on {name}"] = (b["result"], b["calibrated"])
        if name == "A":
            cells["clean twin on A"] = (b["control"], b["control_calibrated"])
    print("\nacceptance (real GSM8K):")
    for cell, (shi, cal) in cells.items():
        print(f"  {cell:<16} Shi {shi:.2f}  verdict {cal['verdict']:<9} effect {cal['effect']:+.3f} "
              f"CI [{cal['ci'][0]:+.3f}, {cal['ci'][1]:+.3f}] p={cal['p']:.4f}")
    assert cells["target on A"][1]["verdict"] == "seen"
    assert cells["target on B"][1]["verdict"] == "not seen"
    assert cells["clean twin on A"][1]["verdict"] == "not seen"


def test_defaults_never_read_a_clean_in_domain_model_as_seen(tmp_path, gsm8k_models):
    """Under the defaults (number twins, the reference as control) a model tuned on OTHER real
    GSM8K items (the clean twin) must not read `seen` on items it never saw (the numbers alone
    read seen: -0.058 nats, CI [-0.076, -0.043], p 0.0002); the memorised target's number twins
    read `not seen` (-0.032 nats): number twins decide nothing, both are `undecided` with the
    reason, and every result says what its n could detect. The default control is labelled a
    sanity check."""
    from evalkit.eval import contamination_run
    m = gsm8k_models
    bench = tmp_path / "A.jsonl"
    bench.write_text("".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(m["A"])))
    p = C.Params(n_examples=50, n_neighbours=4, generate_batch=200, bootstrap=1000)
    assert p.twins == "numbers"
    got = {}
    for who in ("clean", "target"):
        rec = contamination_run.run(str(m[who]), str(m["reference"]), [str(bench)], tmp_path / who, p, progress=False)
        got[who] = rec["benchmarks"]["A"]
        cal = got[who]["calibrated"]
        print(f"\n{who}: {cal['verdict']} effect {cal['effect']:+.4f} CI [{cal['ci'][0]:+.4f}, {cal['ci'][1]:+.4f}] "
              f"p={cal['p']:.4f} mde {cal['mde']:.3f} n_for_not_seen {cal['n_for_not_seen']}")
    assert got["clean"]["verdict"] != "seen"
    clean, target = got["clean"]["calibrated"], got["target"]["calibrated"]
    assert clean["reading"] == "seen" and target["reading"] == "not seen"   # misleading both ways
    for cal in (clean, target):
        assert cal["verdict"] == "undecided" and "unseen set" in cal["reason"]
    assert target["mde"] > 0 and "minimum detectable effect" in target["reason"]
    assert rec["control_kind"].endswith("(sanity check only)")
    assert got["target"]["control_verdict"] == "sanity check"
    assert "sanity check only" in got["target"]["control_calibrated"]["reason"]


def test_number_twins_keep_the_form():
    from evalkit.eval.calibrated import number_twin
    t = "Tom has 12 apples and buys 12 more, then 3 pears: 12 + 12 = 24."
    tw = number_twin(t, 0)
    assert tw != t and tw == number_twin(t, 0)
    import re
    nums = re.findall(r"\d+", tw)
    assert [len(x) for x in nums] == [2, 2, 1, 2, 2, 2]
    assert nums[0] == nums[1] == nums[3] == nums[4] and nums[0] != "12"
    assert re.sub(r"\d", "#", tw) == re.sub(r"\d", "#", t)
    assert number_twin("no numbers here", 0) is None


def test_shared_prefix_generation_matches_plain_generate(tiny_model_dir):
    """n samples of a prompt continue ONE prefill of it (its KV cache repeated per sample).
    With top_k=1 every sample is the greedy continuation, so each must equal what a plain
    one-prompt generate() writes; prompts of different lengths share a left-padded batch."""
    import torch
    from evalkit.backends.generate import GenOptions, HFGenerator, Sampling
    from evalkit.backends.models import load_model
    torch.set_num_threads(1)
    model, tok = load_model(str(tiny_model_dir), dtype="float32")
    prompts = ["Natalia sold clips to 48 of her friends in April", "A cat", "Weng earns $12 an hour for babysitting."]
    gen = HFGenerator(model, tok, GenOptions(seed=0))
    caches = []
    real = gen._shared_prefix
    gen._shared_prefix = lambda *a: caches.append(real(*a)) or caches[-1]
    got = gen.complete(prompts, [Sampling(max_new_tokens=10, n=3, top_k=1)] * 3, include_prompt=True, progress=False)
    assert caches and all(c is not None for c in caches), "the shared-prefix path ran and returned a cache"
    (cache,) = caches[0].values()
    assert cache.get_seq_length() > 0
    for prompt, samples in zip(prompts, got):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        row = ref[0, ids.shape[1]:].tolist()
        eos = tok.eos_token_id
        row = row[:row.index(eos)] if eos in row else row
        want = tok.decode(ids[0].tolist() + row, skip_special_tokens=True)
        assert samples == [want] * 3, (prompt, samples, want)


def test_shared_prefix_scoring_equals_scoring_each_text_whole(tiny_model_dir):
    """Neighbours of one example share their first tokens: scored once on a shared KV cache,
    the rest per text. Each loss must equal score_texts' whole-text loss (float rounding only),
    including texts cut at max_tokens and a group whose texts share almost nothing."""
    import torch
    from evalkit.backends.models import load_model
    torch.set_num_threads(1)
    model, tok = load_model(str(tiny_model_dir), dtype="float32")
    stem = "Natalia sold clips to 48 of her friends in April, and then she sold"
    groups = [[stem + tail for tail in (" half as many clips in May.", " 24 more.", " them all", " x" * 40)],
              ["Weng earns $12 an hour.", "Betty is saving money for a new wallet.", "Q"]]
    shared = score_groups_shared(model, tok, groups, max_tokens=40, batch_tokens=64)
    assert shared is not None
    for texts, got in zip(groups, shared):
        want = score_texts(model, tok, texts, 40).mean_nll
        assert got == pytest.approx(want, abs=1e-5), (texts, got, want)
