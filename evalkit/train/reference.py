"""Reference log-probs, computed once per (reference model, tokenized data) and cached.

The cache key is the reference model's fingerprint, the data fingerprint (which hashes the
token ids and prompt boundaries: it covers the rows, the tokenizer, the chat template and the
max lengths) and the precision the log-probs were computed in (fp32, or the policy's bf16 /
fp16 autocast: the reference must match the policy's forward, or h_w starts as noise). Variants trained from the same base on the same data (DPO and
DPOP, say) share one cache file, so the second variant runs no reference forward pass.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import torch
from ..progress import bar as progress_bar

from .data import PreferenceData, make_batch, supports_packing
from .diagnostics import post_edit_skip
from .logps import autocast, batch_rows, completion_token_logps, row_sums

log = logging.getLogger("evalkit")

# Counts reference forward passes in this process (tests assert the cache is reused).
FORWARD_PASSES = 0


class ReferenceCache:
    """Reference log-probs of a training set, in a store keyed by their content (evalkit.caches)."""

    def __init__(self, folder: str | os.PathLike):
        from ..caches import Store
        self.folder = Path(folder)
        self.store_ = Store("reference-logps", self.folder, ".pt")

    def key(self, reference_fingerprint: str, data: PreferenceData, autocast_dtype: torch.dtype | None = None,
            setting: dict | None = None) -> str:
        """What the numbers depend on: the reference's files, the token ids (data, tokenizer,
        template, lengths), the precision and the device type. Packed vs padded batches under
        sdpa or eager attention agree within 1e-4 nats per pair (checked by
        tests/test_train_data.py), so one cached file serves them all."""
        precision = "fp32" if autocast_dtype is None else f"autocast-{str(autocast_dtype).removeprefix('torch.')}"
        how = json.dumps(setting or {}, sort_keys=True, default=str)
        return hashlib.sha256(f"{reference_fingerprint}:{data.fingerprint()}:{precision}:{how}".encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.store_.path(key)

    def lookup(self, reference_fingerprint: str, data: PreferenceData, autocast_dtype: torch.dtype | None = None,
               setting: dict | None = None) -> tuple[dict[str, torch.Tensor] | None, str]:
        """The cached log-probs (None when absent, unreadable or of another size) and their key."""
        key = self.key(reference_fingerprint, data, autocast_dtype, setting)
        cached = self.store_.get(key, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                                 lambda c: isinstance(c, dict) and len(c.get("chosen_logps", ())) == len(data))
        return cached, key

    def store(self, key: str, result: dict[str, torch.Tensor]) -> None:
        """Write atomically: a temp file in the folder, then rename."""
        self.store_.put(key, lambda tmp: torch.save(result, tmp))

    def get_or_compute(self, reference_fingerprint: str, data: PreferenceData,
                       load_reference: Callable[[], object], batch_size: int = 8,
                       device: str = "cpu", progress: bool = True, pack: bool | str = "auto",
                       autocast_dtype: torch.dtype | None = None,
                       setting: dict | None = None) -> tuple[dict[str, torch.Tensor], str]:
        """{chosen_logps, rejected_logps, chosen_lengths, rejected_lengths} (summed), and the key."""
        setting = setting or {"device": torch.device(device).type}
        cached, key = self.lookup(reference_fingerprint, data, autocast_dtype, setting)
        if cached is not None:
            return cached, key
        result = compute_reference_logps(load_reference(), data, batch_size, device, progress, pack, autocast_dtype)
        self.store(key, result)
        return result, key


@torch.no_grad()
def compute_reference_logps(model, data: PreferenceData, batch_size: int = 8, device: str = "cpu",
                            progress: bool = True, pack: bool | str = "auto",
                            autocast_dtype: torch.dtype | None = None, accelerator=None,
                            pad_id: int | None = None, attn_implementation: str | None = None
                            ) -> dict[str, torch.Tensor]:
    """Summed completion log-probs of every pair under `model`, batched by length, under
    torch.autocast(autocast_dtype) when given (the policy's mixed precision): chosen_logps,
    rejected_logps, chosen_lengths, rejected_lengths. From the same forwards, for the post-edit
    diagnostic: chosen_tail_logps, rejected_tail_logps, chosen_tail_lengths,
    rejected_tail_lengths, the same sums and counts leaving out each pair's first
    post_edit_skip() completion tokens (not for chosen-only examples).

    With an `accelerator` and a prepared (DDP / FSDP / ZeRO-3) model, every process scores
    its share of the batches through the sharded model, all running the same number of
    forwards (collectives inside), and the results are gathered on every process.
    """
    global FORWARD_PASSES
    n = len(data)
    order = sorted(range(n), key=lambda i: max(len(data.pairs[i].chosen_ids), len(data.pairs[i].rejected_ids)))
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    n_proc, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    mine = batches[rank::n_proc]
    rounds = -(-len(batches) // n_proc)
    was_training = model.training
    model.eval()
    pad = pad_id if pad_id is not None else _pad_id(model)
    if pack == "auto":
        pack = supports_packing(model)
    keys = ["chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths"]
    skip = None if data.chosen_only else torch.tensor([post_edit_skip(p) for p in data.pairs])
    if skip is not None:
        keys += ["chosen_tail_logps", "rejected_tail_logps", "chosen_tail_lengths", "rejected_tail_lengths"]
    scored = []
    for k in progress_bar(range(rounds), desc="reference log-probs", enabled=progress):
        idx = mine[k] if k < len(mine) else batches[0]   # a stand-in keeps the forwards in step
        batch = {key: v.to(device) for key, v in make_batch([data.pairs[i] for i in idx], pad, bool(pack)).items()
                 if key not in ("n_tokens", "n_processed")}
        with autocast(device, autocast_dtype):
            token_logps, rows = completion_token_logps(model, batch, attn_implementation)
        FORWARD_PASSES += 1
        if k < len(mine):
            b, n_rows = len(idx), batch_rows(batch)
            sums, lengths = row_sums(token_logps, rows, n_rows)
            found = [sums[:b], sums[b:], lengths[:b], lengths[b:]]
            if skip is not None:
                tail, tail_lengths = row_sums(token_logps, rows, n_rows, skip[idx].repeat(2))
                found += [tail[:b], tail[b:], tail_lengths[:b], tail_lengths[b:]]
            scored.append((idx, [v.cpu() for v in found]))
    model.train(was_training)
    if n_proc > 1:
        from accelerate.utils import gather_object
        scored = gather_object(scored)
    out = {k: torch.zeros(n, dtype=torch.float64 if "logps" in k else torch.long) for k in keys}
    for idx, found in scored:
        ids = torch.tensor(idx)
        for key, v in zip(keys, found):
            out[key][ids] = v
    return out


def _pad_id(model) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        eos = getattr(model.config, "eos_token_id", 0)
        pad = eos[0] if isinstance(eos, list) else (eos or 0)
    return pad
