import json

import pytest

from evalkit.backends.models import load_tokenizer
from evalkit.errors import UserError
from evalkit.train.data import collate, read_rows, tokenize_rows


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {"prompt": "What is 2 plus 3?", "chosen": "2 + 3 = 5\n#### 5", "rejected": "2 + 3 = 6\n#### 6"}


@pytest.mark.parametrize("bad, message", [
    ({"prompt": "q", "chosen": "a"}, "rejected: missing key"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen: empty completion"),
    ({"prompt": "q", "chosen": "a", "rejected": 7}, "rejected: completion must be a string"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "chosen: identical to rejected"),
    ({"chosen": "a", "rejected": "b"}, "prompt: missing key"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, tok, bad, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, bad, GOOD])
    with pytest.raises(UserError) as e:
        tokenize_rows(tok, read_rows(path), max_length=128, max_prompt_length=64)
    assert str(e.value).startswith(f"{path}:2: {message}")


def test_completion_truncated_to_zero_tokens(tmp_path, tok):
    row = {"prompt": "word " * 80, "chosen": "yes", "rejected": "no"}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    with pytest.raises(UserError, match=r"p.jsonl:1: chosen: completion truncated to zero tokens"):
        tokenize_rows(tok, read_rows(path), max_length=40, max_prompt_length=40)


def test_skip_invalid_counts(tmp_path, tok):
    path = write_jsonl(tmp_path / "p.jsonl", [GOOD, {"prompt": "q", "chosen": "x"}, GOOD, {"x": 1}])
    data = tokenize_rows(tok, read_rows(path), 128, 64, skip_invalid=True)
    assert len(data) == 2 and data.n_skipped == 2


def test_single_bos_eos_at_end_and_prompt_masked(tmp_path, tok):
    data = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "p.jsonl", [GOOD])), 128, 64)
    p = data.pairs[0]
    for ids, n_prompt, completion in ((p.chosen_ids, p.chosen_prompt_len, GOOD["chosen"]),
                                      (p.rejected_ids, p.rejected_prompt_len, GOOD["rejected"])):
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        # the prompt part ends with the generation prompt; the rest is completion + EOS
        assert tok.decode(ids[:n_prompt]).endswith("<|assistant|>\n")
        assert tok.decode(ids[n_prompt:], skip_special_tokens=True) == completion
    batch = collate(data.pairs, tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 2
    row0 = batch["loss_mask"][0]
    assert not row0[: p.chosen_prompt_len].any()
    assert row0[p.chosen_prompt_len: len(p.chosen_ids)].all()
    assert not row0[len(p.chosen_ids):].any()
    assert p.edit_distance >= 1


def test_conversational_equals_standard(tmp_path, tok):
    conv = {"prompt": [{"role": "user", "content": GOOD["prompt"]}],
            "chosen": [{"role": "assistant", "content": GOOD["chosen"]}],
            "rejected": [{"role": "assistant", "content": GOOD["rejected"]}]}
    implicit = {"chosen": conv["prompt"] + conv["chosen"], "rejected": conv["prompt"] + conv["rejected"]}
    a = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "a.jsonl", [GOOD])), 128, 64).pairs[0]
    b = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "b.jsonl", [conv])), 128, 64).pairs[0]
    c = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "c.jsonl", [implicit])), 128, 64).pairs[0]
    for other in (b, c):
        assert (a.chosen_ids, a.chosen_prompt_len, a.rejected_ids) == \
               (other.chosen_ids, other.chosen_prompt_len, other.rejected_ids)


def test_truncation_keeps_the_end_of_the_prompt(tmp_path, tok):
    row = {"prompt": "Count: " + " ".join(str(i) for i in range(60)),
           "chosen": " ".join(["apple"] * 40), "rejected": " ".join(["plum"] * 40)}
    p = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "p.jsonl", [row])), 48, 20).pairs[0]
    assert p.chosen_prompt_len == 20 and len(p.chosen_ids) == 48
    prompt = tok.decode(p.chosen_ids[:20])
    assert prompt.startswith("<s>") and not prompt.startswith("<s><|user|>")   # BOS, then the end
    assert prompt.endswith(" 58 59\n<|assistant|>\n")
    assert tok.decode(p.chosen_ids[20:]).startswith("apple apple")


def test_parquet_and_json_sources(tmp_path, tok):
    import pandas as pd
    pd.DataFrame([GOOD, GOOD]).to_parquet(tmp_path / "p.parquet")
    (tmp_path / "p.json").write_text(json.dumps([GOOD]))
    assert len(tokenize_rows(tok, read_rows(tmp_path / "p.parquet"), 128, 64)) == 2
    assert len(tokenize_rows(tok, read_rows(tmp_path / "p.json"), 128, 64)) == 1
    with pytest.raises(UserError, match="no such data file"):
        read_rows(tmp_path / "missing.jsonl")


def test_edit_distance_summary(tmp_path, tok):
    rows = [GOOD, {"prompt": "q", "chosen": "a b c d e f", "rejected": "totally different words here"}]
    data = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "p.jsonl", rows)), 128, 64)
    s = data.edit_distance_summary()
    assert s["n"] == 2 and s["min"] <= s["median"] <= s["max"] and s["max"] > s["min"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_prompt_gives_the_same_logps_as_padding(tmp_path, tiny_model_dir, tok, attn):
    """[prompt|chosen|rejected] with a 4D mask and restarted positions == two padded rows."""
    import torch
    from transformers import AutoModelForCausalLM

    from evalkit.train.builders import metamath_synthetic_pairs
    from evalkit.train.data import collate_packed, shares_prompt
    from evalkit.train.logps import batch_logps
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    rows = metamath_synthetic_pairs(6, seed=5) + [GOOD]
    data = tokenize_rows(tok, read_rows(write_jsonl(tmp_path / "p.jsonl", rows)), 160, 96)
    assert all(shares_prompt(p) for p in data.pairs)
    with torch.no_grad():
        padded = batch_logps(model, collate(data.pairs, tok.pad_token_id))
        packed = batch_logps(model, collate_packed(data.pairs, tok.pad_token_id))
    assert torch.equal(padded[1], packed[1])
    assert torch.allclose(padded[0], packed[0], atol=1e-4), (padded[0] - packed[0]).abs().max()
