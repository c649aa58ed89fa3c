"""Reference log-probs, computed once per (reference model, tokenized data) and cached.

The cache key is the reference model's fingerprint, the data fingerprint (which hashes the
token ids and prompt boundaries: it covers the rows, the tokenizer, the chat template and the
max lengths) and the precision the log-probs were computed in (fp32, or the policy's bf16 /
fp16 autocast: the reference must match the policy's forward, or h_w starts as noise). Variants trained from the same base on the same data (DPO and
DPOP, say) share one cache file, so the second variant runs no reference forward pass.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from ..progress import bar as progress_bar

from .data import PreferenceData, make_batch, supports_packing
from .logps import autocast, batch_logps

log = logging.getLogger("evalkit")

# Counts reference forward passes in this process (tests assert the cache is reused).
FORWARD_PASSES = 0


def state_dict_fingerprint(model) -> str:
    """Content hash of a model's parameters (for models that exist only in memory)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(name_or_path: str) -> str:
    """A local directory: hash of its weights/config/tokenizer files. A hub id: its cached
    snapshot's files when present, else the id and revision as given."""
    from ..models import directory_fingerprint
    p = Path(name_or_path)
    if p.is_dir():
        return directory_fingerprint(p)
    try:
        from huggingface_hub import snapshot_download
        return directory_fingerprint(snapshot_download(name_or_path, local_files_only=True))
    except Exception:
        return "hub:" + hashlib.sha256(name_or_path.encode()).hexdigest()[:16]


class ReferenceCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def key(self, reference_fingerprint: str, data: PreferenceData, autocast_dtype: torch.dtype | None = None) -> str:
        precision = "fp32" if autocast_dtype is None else f"autocast-{str(autocast_dtype).removeprefix('torch.')}"
        return hashlib.sha256(f"{reference_fingerprint}:{data.fingerprint()}:{precision}".encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def get_or_compute(self, reference_fingerprint: str, data: PreferenceData,
                       load_reference: Callable[[], object], batch_size: int = 8,
                       device: str = "cpu", progress: bool = True, pack: bool | str = "auto",
                       autocast_dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], str]:
        """{chosen_logps, rejected_logps, chosen_lengths, rejected_lengths} (summed), and the key."""
        key = self.key(reference_fingerprint, data, autocast_dtype)
        path = self.path(key)
        if path.exists():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                if len(cached["chosen_logps"]) == len(data):
                    log.info("reference log-probs: reusing cache %s", path.name)
                    return cached, key
            except Exception:  # a foreign or damaged file: recompute
                log.warning("reference cache %s unreadable; recomputing", path)
        model = load_reference()
        result = compute_reference_logps(model, data, batch_size, device, progress, pack, autocast_dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.folder)
        os.close(fd)
        try:
            torch.save(result, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return result, key


@torch.no_grad()
def compute_reference_logps(model, data: PreferenceData, batch_size: int = 8, device: str = "cpu",
                            progress: bool = True, pack: bool | str = "auto",
                            autocast_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Summed completion log-probs of every pair under `model`, batched by length, under
    torch.autocast(autocast_dtype) when given (the policy's mixed precision)."""
    global FORWARD_PASSES
    n = len(data)
    order = sorted(range(n), key=lambda i: max(len(data.pairs[i].chosen_ids), len(data.pairs[i].rejected_ids)))
    out = {k: torch.zeros(n, dtype=torch.float64 if "logps" in k else torch.long)
           for k in ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")}
    was_training = model.training
    model.eval()
    pad = _pad_id(model)
    pack = supports_packing(model) if pack == "auto" else bool(pack)
    for start in progress_bar(range(0, n, batch_size), desc="reference log-probs", enabled=progress):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in make_batch([data.pairs[i] for i in idx], pad, pack).items()}
        with autocast(device, autocast_dtype):
            sums, lengths = batch_logps(model, batch)
        FORWARD_PASSES += 1
        b = len(idx)
        ids = torch.tensor(idx)
        out["chosen_logps"][ids] = sums[:b].double().cpu()
        out["rejected_logps"][ids] = sums[b:].double().cpu()
        out["chosen_lengths"][ids] = lengths[:b].cpu()
        out["rejected_lengths"][ids] = lengths[b:].cpu()
    model.train(was_training)
    return out


def _pad_id(model) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        eos = getattr(model.config, "eos_token_id", 0)
        pad = eos[0] if isinstance(eos, list) else (eos or 0)
    return pad
