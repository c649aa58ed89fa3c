"""Tokenisation on the templates real models ship: no extra EOS, straddling tokens go to the
completion, long prompts keep their end, and what happened is warned once with counts."""
import logging

import pytest

from chat_templates import TEMPLATES, base_pairs, no_template_tokenizer, pairs, template_tokenizer
from evalkit.train.data import Row, tokenize_rows


def tokenize(tok, rows, max_length=1024, max_prompt_length=512):
    return tokenize_rows(tok, [Row(r, f"row{i}") for i, r in enumerate(rows)], max_length, max_prompt_length,
                         source="pairs.jsonl")


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_sequence_ends_as_the_template_renders_it(name, tiny_model_dir):
    """The completion ends with the template's own end of turn and nothing after it: no EOS
    appended after `<|im_end|>\\n`, `<|eot_id|>`, `<end_of_turn>\\n`, `<|end|>\\n<|endoftext|>`..."""
    tok = template_tokenizer(tiny_model_dir, name)
    rows = pairs(name)
    data = tokenize(tok, rows)
    turn_end = TEMPLATES[name]["turn_end"]
    for row, p in zip(rows, data.pairs):
        full = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
        assert p.chosen_ids == tok(full, add_special_tokens=False).input_ids
        assert tok.decode(p.chosen_ids).endswith(turn_end)
        assert not tok.decode(p.chosen_ids).endswith(turn_end + tok.eos_token) or turn_end.endswith(tok.eos_token)
        # the prompt is the rendered generation prompt, shared by chosen and rejected
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert p.chosen_prompt_len == p.rejected_prompt_len
        assert p.chosen_ids[:p.chosen_prompt_len] == p.rejected_ids[:p.rejected_prompt_len]
        assert tok.decode(p.chosen_ids[:p.chosen_prompt_len]) in (prompt, prompt.rstrip("\n"))


def test_straddling_token_goes_to_the_completion_and_is_warned_once(tiny_model_dir, caplog):
    tok = no_template_tokenizer(tiny_model_dir)
    rows = base_pairs()
    with caplog.at_level(logging.WARNING, logger="evalkit"):
        data = tokenize(tok, rows)
    p = data.pairs[1]                                  # "Say: the" + "re is": " there" is one token
    assert tok.convert_ids_to_tokens(p.chosen_ids[p.chosen_prompt_len]) == "Ġthere"
    assert tok.decode(p.chosen_ids[:p.chosen_prompt_len]).endswith("Say:")
    assert p.chosen_prompt_len == p.rejected_prompt_len   # both sides, so packing stays on
    assert p.chosen_ids[-1] == tok.eos_token_id and p.chosen_ids.count(tok.eos_token_id) == 1
    assert data.counts.straddles == 2                  # this pair, and the first prompt's trailing space
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("pairs.jsonl: of 3 pairs: 2 with a token straddling")


def test_long_prompt_keeps_its_end_and_bos(tiny_model_dir, caplog):
    tok = template_tokenizer(tiny_model_dir, "llama3")
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"Question number {i} about apples?"},
                  {"role": "assistant", "content": f"Answer number {i}."}]
    row = {"prompt": turns + [{"role": "user", "content": "And the last one?"}],
           "chosen": [{"role": "assistant", "content": "Yes. " * 30}],
           "rejected": [{"role": "assistant", "content": "No. " * 30}]}
    with caplog.at_level(logging.WARNING, logger="evalkit"):
        data = tokenize(tok, [row], max_length=100, max_prompt_length=60)
    p = data.pairs[0]
    prompt = tok.decode(p.chosen_ids[:p.chosen_prompt_len])
    assert p.chosen_prompt_len == 60 and len(p.chosen_ids) == 100
    assert prompt.startswith("<|begin_of_text|>")
    assert prompt.endswith("And the last one?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tok.decode(p.chosen_ids[60:]).startswith("Yes. Yes.")
    assert (data.counts.truncated_prompts, data.counts.truncated_completions) == (1, 2)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "1 prompt(s) cut to max_prompt_length 60 (the end kept)" in message
    assert "2 completion(s) cut to fit max_length 100" in message


def test_prompt_rendered_differently_alone_falls_back_and_is_counted(tiny_model_dir, caplog):
    tok = template_tokenizer(tiny_model_dir, "qwen2")
    # a template whose generation prompt opens a thinking block that a finished turn does not have
    tok.chat_template = TEMPLATES["qwen2"]["template"].replace(
        "'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>\n'")
    with caplog.at_level(logging.WARNING, logger="evalkit"):
        data = tokenize(tok, pairs("qwen2")[:2])
    assert data.counts.prefix_fallbacks == 2
    p = data.pairs[0]
    assert tok.decode(p.chosen_ids[:p.chosen_prompt_len]).endswith("<|im_start|>assistant\n")
    assert "2 whose rendered prompt is not a prefix" in " ".join(r.getMessage() for r in caplog.records)


def test_a_role_the_template_refuses_names_the_row(tiny_model_dir):
    from evalkit.errors import UserError
    tok = template_tokenizer(tiny_model_dir, "gemma")
    row = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
           "chosen": "Hello.", "rejected": "Go away."}
    with pytest.raises(UserError, match=r"^row0: chat template: System role not supported$"):
        tokenize(tok, [row])
