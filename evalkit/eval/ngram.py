"""n-gram overlap between a training set and a benchmark (GPT-3 appendix C; lm-eval uses 13).

A benchmark item is dirty when any n consecutive words of it (after lower-casing and
collapsing whitespace) also occur in the training texts. Items shorter than n words are
dirty when their whole word sequence occurs in a training text.
"""
from __future__ import annotations

import re
from typing import Iterable


def words(text: str) -> list[str]:
    return re.sub(r"\s+", " ", text.lower()).strip().split(" ") if text.strip() else []


def ngrams(ws: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))


def overlap(train_texts: Iterable[str], items: list[tuple[str, str]], n: int = 13) -> dict:
    """{n, n_items, n_dirty, share, dirty_ids} for benchmark items (id, text)."""
    train_words = [words(t) for t in train_texts]
    index = {g for ws in train_words for g in ngrams(ws, n)}
    short_needed = any(len(words(t)) < n for _, t in items)
    joined = " " + " \n ".join(" ".join(ws) for ws in train_words) + " " if short_needed else ""
    dirty = []
    for item_id, text in items:
        ws = words(text)
        if not ws:
            continue
        if len(ws) >= n:
            hit = any(g in index for g in ngrams(ws, n))
        else:
            hit = f" {' '.join(ws)} " in joined
        if hit:
            dirty.append(item_id)
    return {"n": n, "n_items": len(items), "n_dirty": len(dirty),
            "share": len(dirty) / len(items) if items else 0.0, "dirty_ids": dirty}
