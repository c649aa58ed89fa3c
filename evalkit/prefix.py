"""Reusing a prompt's KV cache across the texts that continue it (transformers' cache API).

Generation samples n continuations of one prefill; contamination scoring scores 100
neighbours that start with the same prefix tokens on one forward pass of that prefix. Both
need the model's cache argument by its name (transformers 5 calls it `cache`, 4.x
`past_key_values`) and a cache that can be repeated per row; where either is missing the
callers take their plain path.
"""
from __future__ import annotations

import copy
import inspect


def cache_argument(model) -> str | None:
    """The forward() keyword that takes a KV cache, or None (then no prefix reuse)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return None
    params = inspect.signature(model.forward).parameters
    return next((n for n in ("cache", "past_key_values") if n in params), None)


def prefill(model, input_ids, attention_mask, position_ids, *, last_logits_only: bool):
    """(logits, cache) of one forward pass with use_cache; cache None when the model's cache
    cannot be repeated per row."""
    name = cache_argument(model)
    keep = {}
    if last_logits_only and "logits_to_keep" in inspect.signature(model.forward).parameters:
        keep = {"logits_to_keep": 1}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                **keep)
    cache = out.get(name) if name else None
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        cache = None
    return out.logits, cache


def repeated(cache, n: int, copy_first: bool = False):
    """The cache with each row repeated n times (in place unless copy_first)."""
    cache = copy.deepcopy(cache) if copy_first else cache
    cache.batch_repeat_interleave(n)
    return cache
