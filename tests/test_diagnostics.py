"""Training diagnostics: held-out dispersion (3D-properties) and Smaug's post-edit view."""
import json
import textwrap

import pytest
import torch

from evalkit import schema
from evalkit.config import load_experiment
from evalkit.rundir import RunDir, read_json, read_jsonl
from evalkit.runner import train_experiment
from evalkit.train.data import PreferenceData, TokenizedPair, read_rows, tokenize_rows
from evalkit.train.diagnostics import PostEdit, first_difference, post_edit_pairs, split_heldout


def _experiment(tmp_path, base, data_path, heldout):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: t
        base_model: {base}
        seed: 0
        datasets:
          math: {{path: {data_path}}}
        variants:
          - {{name: dpo, data: math, loss: dpo, beta: 0.3, learning_rate: 3.0e-4, max_steps: 2, batch_size: 8,
              max_length: 160, max_prompt_length: 96, logging_steps: 1, heldout_pairs: {heldout}}}
        """))
    return load_experiment(p)


def _completion_logps(model, ids: list[int], n_prompt: int, after: int = 0) -> float:
    """Summed log-probs of ids[n_prompt + after:] from the model's full logits, one unpadded
    sequence at a time (independent of the trainer's batching and chunked head)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
    return logp[n_prompt + after - 1:].sum().item()


def test_heldout_logged_equal_an_independent_computation_and_never_trained(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from evalkit.backends.models import load_tokenizer
    from evalkit.train.builders import metamath_synthetic_pairs
    torch.set_num_threads(1)
    full = tmp_path / "full.jsonl"
    full.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(32, seed=1)))
    rd = RunDir("t", root=tmp_path / "a")
    train_experiment(_experiment(tmp_path, tiny_model_dir, full, 4), rd=rd, progress=False)
    meta, rows = read_json(rd.train_metadata("dpo")), read_jsonl(rd.train_metrics("dpo"))
    held = meta["heldout"]
    assert meta["data"]["n_pairs"] == 32 and meta["data"]["n_heldout"] == held["n_pairs"] == 4
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["schema_version"] == schema.version("train_metrics") == 2 for r in rows)
    for r in rows:
        assert {"heldout_logps_chosen", "heldout_logps_rejected", "heldout_logps_unseen"} <= set(r)
    assert held["end"]["chosen"] == rows[-1]["heldout_logps_chosen"]

    # 1. the logged values at the last step are the saved checkpoint's, computed independently
    tok = load_tokenizer(str(tiny_model_dir))
    pairs = {p.where: p for p in tokenize_rows(tok, read_rows(full), 160, 96).pairs}
    held_pairs = [pairs[w] for w in held["pairs"]]
    model = AutoModelForCausalLM.from_pretrained(rd.checkpoint("dpo"), dtype=torch.float32).eval()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    chosen = mean([_completion_logps(model, p.chosen_ids, p.chosen_prompt_len) for p in held_pairs])
    rejected = mean([_completion_logps(model, p.rejected_ids, p.rejected_prompt_len) for p in held_pairs])
    # (c): prompt i + the chosen response of held-out pair i+1 (every prompt here is distinct)
    unseen = mean([_completion_logps(model, p.chosen_ids[:p.chosen_prompt_len] + q.chosen_ids[q.chosen_prompt_len:],
                                     p.chosen_prompt_len)
                   for p, q in zip(held_pairs, held_pairs[1:] + held_pairs[:1])])
    last = rows[-1]
    assert last["heldout_logps_chosen"] == pytest.approx(chosen, abs=2e-3)
    assert last["heldout_logps_rejected"] == pytest.approx(rejected, abs=2e-3)
    assert last["heldout_logps_unseen"] == pytest.approx(unseen, abs=2e-3)
    assert unseen < chosen          # another problem's solution is less likely than its own

    # 2. excluded from training: the same run on the file without the held-out rows (and no
    # held-out split) ends in the same weights
    lines = full.read_text().splitlines(keepends=True)
    gone = {int(w.rsplit(":", 1)[1]) for w in held["pairs"]}
    rest = tmp_path / "rest.jsonl"
    rest.write_text("".join(x for i, x in enumerate(lines, 1) if i not in gone))
    rd2 = RunDir("t", root=tmp_path / "b")
    train_experiment(_experiment(tmp_path, tiny_model_dir, rest, 0), rd=rd2, progress=False)
    assert read_json(rd2.train_metadata("dpo"))["heldout"] is None
    assert [r["loss"] for r in read_jsonl(rd2.train_metrics("dpo"))] == [r["loss"] for r in rows]
    other = AutoModelForCausalLM.from_pretrained(rd2.checkpoint("dpo"), dtype=torch.float32).state_dict()
    assert all(torch.equal(v, other[k]) for k, v in model.state_dict().items())


def _pair(prompt, chosen, rejected, where="x", edit=1):
    return TokenizedPair(prompt + chosen, prompt + rejected, len(prompt), len(prompt), edit, where)


def test_heldout_split_takes_whole_prompts_by_seed_and_at_most_a_quarter():
    # 12 prompts, the first four with 3 pairs each (ARC-style), the rest with one
    pairs = [_pair([1, 100 + q], [5, a], [6, a], f"q{q}a{a}") for q in range(12) for a in range(3 if q < 4 else 1)]
    data = PreferenceData(pairs)
    train, held = split_heldout(data, 4, seed=3)
    assert 2 <= len(held) <= len(data) // 4 and len(train) + len(held) == len(data)
    prompts = lambda ps: {tuple(p.chosen_ids[:2]) for p in ps}  # noqa: E731
    assert not prompts(train.pairs) & prompts(held) and len(prompts(held)) >= 2
    assert [p.where for p in split_heldout(data, 4, seed=3)[1]] == [p.where for p in held]
    assert [p.where for p in split_heldout(data, 4, seed=4)[1]] != [p.where for p in held]
    assert split_heldout(PreferenceData(pairs[:7]), 8, seed=0)[1] == []        # a quarter of 7 is 1: none
    assert split_heldout(data, 0, seed=0) == (data, [])


def test_heldout_split_passes_over_prompts_too_large_and_keeps_drawing():
    # 2 prompts with 10 pairs each and 10 with one: a 10-pair prompt drawn first does not fit
    # in 4 pairs and is passed over, for every seed
    pairs = [_pair([1, 100 + q], [5, a], [6, a], f"q{q}a{a}") for q in range(12) for a in range(10 if q < 2 else 1)]
    data = PreferenceData(pairs)
    for seed in range(20):
        train, held = split_heldout(data, 4, seed=seed)
        prompts = {tuple(p.chosen_ids[:2]) for p in held}
        assert 2 <= len(held) <= 4 and len(prompts) == len(held), seed      # one-pair prompts only
        assert len(train) + len(held) == len(data)


def test_heldout_split_warns_when_nothing_can_be_held_out(caplog):
    # 4 prompts x 10 pairs: a quarter is 10 pairs, one prompt at most; (c) needs two prompts
    pairs = [_pair([1, 100 + q], [5, a], [6, a], f"q{q}a{a}") for q in range(4) for a in range(10)]
    data = PreferenceData(pairs, source="big.jsonl")
    for n in (8, 20):
        caplog.clear()
        with caplog.at_level("WARNING", logger="evalkit"):
            assert split_heldout(data, n, seed=0) == (data, [])
        assert [r.getMessage() for r in caplog.records if f"heldout_pairs {n}: nothing held out of big.jsonl (40 "
                "pairs, 4 prompts with 10 to 10 pairs each)" in r.getMessage()], caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="evalkit"):
        split_heldout(data, 0, seed=0)          # not asked for: no warning
    assert not caplog.records


def test_post_edit_counts_only_the_tokens_after_the_first_differing_one(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(1)
    prompt = [1, 40, 41, 42]
    chosen, rejected = [50, 51, 60, 52, 53, 54, 55, 56], [50, 51, 61, 62, 52, 53, 54, 55, 56]   # differ first at 2
    assert first_difference(chosen, rejected) == 2
    low = _pair(prompt, chosen, rejected, "low", edit=2)
    high = _pair(prompt, [70, 71, 72, 73], [80, 81, 82, 83], "high", edit=4)     # every token differs
    tail_empty = _pair(prompt, [50, 51, 60], [50, 51, 61], "tail", edit=1)        # nothing after the edit
    index, skip, dists = post_edit_pairs([high, low, tail_empty])
    assert index == [1] and skip == [3] and dists == [2]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    diag = PostEdit([high, low, tail_empty])
    got = diag.measure(model, pad_id=0, device=torch.device("cpu"), batch_size=4, pack=False)
    # after the edit: chosen's [52 .. 56] after [.., 60]; rejected's [62, 52 .. 56] after [.., 61]
    want_c = _completion_logps(model, prompt + chosen, 4, after=3) / 5
    want_r = _completion_logps(model, prompt + rejected, 4, after=3) / 6
    assert got["chosen"] == pytest.approx(want_c, abs=1e-4) and got["rejected"] == pytest.approx(want_r, abs=1e-4)
    s = diag.summary(got)
    assert s["n_pairs"] == 1 and s["edit_distance_median"] == 2 and s["end"] == got


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_post_edit_from_the_summary_forwards_equals_its_own_padded_pass(tiny_model_dir, pack, chunked):
    """The trainer reads the post-edit values off the logps_summary forwards (_final_logps) and,
    at the start, off the reference pass; they equal the separate pass it used to run (each
    selected side as (ids, prompt + skipped tokens), two to a padded pseudo-pair), and the
    summary numbers equal a pass over the first pairs alone."""
    from transformers import AutoModelForCausalLM

    from evalkit.backends.models import load_tokenizer
    from evalkit.train.builders import metamath_synthetic_pairs
    from evalkit.train.data import Row, make_batch
    from evalkit.train.diagnostics import pair_logps, sequence_logps
    from evalkit.train.logps import install_completion_head, reduce_logps
    from evalkit.train.reference import compute_reference_logps
    from evalkit.train.trainer import _final_logps
    torch.set_num_threads(1)
    tok = load_tokenizer(str(tiny_model_dir))
    data = tokenize_rows(tok, [Row(r, str(i)) for i, r in enumerate(metamath_synthetic_pairs(10, seed=3))], 160, 96)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if chunked:
        assert install_completion_head(model)
    cpu = torch.device("cpu")
    diag = PostEdit(data.pairs)
    # selected pairs inside and beyond the first 4 (those scored along after them)
    assert any(i < 4 for i in diag.index) and any(i >= 4 for i in diag.index), diag.index
    assert ("allowed" in make_batch(data.pairs[:3], tok.pad_token_id, pack)) == pack
    got = _final_logps(model, data, tok.pad_token_id, cpu, 3, pack, post_edit=diag, max_pairs=4)

    chosen = [(data.pairs[i].chosen_ids, data.pairs[i].chosen_prompt_len + diag.skip[i]) for i in diag.index]
    rejected = [(data.pairs[i].rejected_ids, data.pairs[i].rejected_prompt_len + diag.skip[i]) for i in diag.index]
    sums, lengths = sequence_logps(model, chosen + rejected, tok.pad_token_id, cpu, 4)
    per_token = reduce_logps(sums, lengths, "length_average")
    n = len(diag.index)
    assert abs(got["post_edit"]["chosen"] - per_token[:n].mean().item()) <= 1e-5
    assert abs(got["post_edit"]["rejected"] - per_token[n:].mean().item()) <= 1e-5
    assert diag.measure(model, tok.pad_token_id, cpu, 3, pack) == pytest.approx(got["post_edit"], abs=1e-5)
    # the start value when the policy is the reference: off the reference pass (batched by length)
    ref = compute_reference_logps(model, data, 3, progress=False, pack=pack, pad_id=tok.pad_token_id)
    assert diag.values(ref, list(range(len(data)))) == pytest.approx(got["post_edit"], abs=1e-5)

    alone = pair_logps(model, data.pairs[:4], tok.pad_token_id, cpu, 3, pack)
    for side in ("chosen", "rejected"):
        assert len(got[f"{side}_logps"]) == 4
        assert torch.allclose(got[f"{side}_logps"], alone[f"{side}_logps"], atol=1e-5, rtol=0)
