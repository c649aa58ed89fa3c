"""evalkit's token ids and reference log-probs against TRL 1.16's, recorded on real templates.

tests/fixtures/trl_logps.json holds, per pair, the ids and ref_chosen_logps/ref_rejected_logps
that TRL's DPOTrainer produced (fp32, precomputed reference) on the same locally built
tokenizers and random models; tests/fixtures/record_trl_logps.py re-records it with trl
installed. No TRL needed here.
"""
import json
import logging
from pathlib import Path

import pytest
import torch

from chat_templates import TEMPLATES, base_pairs, no_template_tokenizer, pairs, random_model, template_tokenizer
from evalkit.backends.fingerprint import state_dict_fingerprint
from evalkit.train.data import Row, tokenize_rows
from evalkit.train.reference import compute_reference_logps

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "trl_logps.json").read_text())
NAMES = list(TEMPLATES) + ["none"]


def case(name, base_dir):
    if name == "none":
        return no_template_tokenizer(base_dir), base_pairs(), "llama"
    return template_tokenizer(base_dir, name), pairs(name), name


@pytest.mark.parametrize("name", NAMES)
def test_token_ids_and_reference_logps_equal_trl(name, tiny_model_dir, caplog):
    torch.set_num_threads(1)
    tok, rows, arch = case(name, tiny_model_dir)
    recorded = FIXTURE["templates"][name]
    with caplog.at_level(logging.WARNING, logger="evalkit"):
        data = tokenize_rows(tok, [Row(r, f"{name}#{i}") for i, r in enumerate(rows)], 1024, 512)
    assert len(data) == len(recorded["pairs"])
    for ours, theirs in zip(data.pairs, recorded["pairs"]):
        n = len(theirs["prompt_ids"])
        assert (ours.chosen_prompt_len, ours.rejected_prompt_len) == (n, n)
        assert ours.chosen_ids == theirs["prompt_ids"] + theirs["chosen_ids"]
        assert ours.rejected_ids == theirs["prompt_ids"] + theirs["rejected_ids"]
    model = random_model(tok, arch)
    assert state_dict_fingerprint(model) == recorded["model_fingerprint"], "the random model changed; re-record"
    ref = compute_reference_logps(model, data, batch_size=4, progress=False, pack=False)
    packed = compute_reference_logps(model, data, batch_size=4, progress=False, pack=True)
    for side in ("chosen", "rejected"):
        theirs = torch.tensor([p[f"ref_{side}_logps"] for p in recorded["pairs"]], dtype=torch.float64)
        assert torch.allclose(ref[f"{side}_logps"], theirs, atol=1e-4, rtol=0), (ref[f"{side}_logps"] - theirs)
        assert torch.allclose(packed[f"{side}_logps"], theirs, atol=1e-4, rtol=0)
