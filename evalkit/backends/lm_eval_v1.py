"""The model side of the archived v1 protocol on lm-eval's hf backend.

b281b09's `hf-causal-experimental` (lm_eval/models/huggingface.py, AutoCausalLM) differs from
lm-eval 0.4's `hf` backend in three ways that change results:

1. It encoded with add_special_tokens=False: no BOS token. That one is a plain model argument,
   `add_bos_token: false` in the suite (open_llm_v1.yaml `model_args`), honoured by every backend.
2. generate_until asked for max_new_tokens=max_gen_toks (256). lm-eval 0.4 passes max_length
   instead, so a model whose generation_config sets max_new_tokens stops there.
3. A context longer than max_length - max_gen_toks was cut to its last max_length - max_gen_toks
   tokens, and the output was then sliced at the UNCUT context's width: the first
   (uncut - cut) generated tokens are dropped, and the answer is "" when no more came. lm-eval 0.4
   keeps the whole generation.

`ArchivedHFLM` is lm-eval's HFLM with 2 and 3 restored (registered as `evalkit-v1-hf`; the
open_llm_v1 suite names it for the hf backend). Both rely on batch size 1, which the suite fixes.
vllm and api runs keep lm-eval's behaviour for 2 and 3.
"""
from __future__ import annotations

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

NAME = "evalkit-v1-hf"


@register_model(NAME)
class ArchivedHFLM(HFLM):
    _uncut_width = 0

    def tok_batch_encode(self, strings, padding_side="left", left_truncate_len=None, truncation=False):
        ids, mask = super().tok_batch_encode(strings, padding_side=padding_side, truncation=truncation)
        self._uncut_width = ids.shape[1]      # what b281b09 sliced the output at
        if left_truncate_len:
            ids, mask = ids[:, -left_truncate_len:], mask[:, -left_truncate_len:]
        return ids, mask

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        width = context.shape[1]
        out = super()._model_generate(context, None, stop, max_new_tokens=max_length - width, **generation_kwargs)
        lost = self._uncut_width - width
        if lost > 0:  # drop the first `lost` new tokens, as slicing at the uncut width did
            out = torch.cat([out[:, :width], out[:, width + lost:]], dim=1)
        return out
