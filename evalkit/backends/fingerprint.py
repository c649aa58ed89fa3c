"""Content fingerprints of models: a directory's files, a hub id's commit, weights in memory.

They key every cache that depends on a model (reference log-probs, answers, on-policy
samples, lm-eval requests) and the runner's record of which model a result scored.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..rundir import stat_file_hash


def directory_fingerprint(path: str | Path, patterns=("*.safetensors", "*.bin", "tokenizer*",
                                                       "config.json", "*.jinja")) -> str:
    """Content hash of a model directory's weights, config and tokenizer files."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted({f for pat in patterns for f in path.glob(pat) if f.is_file()})
    for f in files:
        h.update(f.name.encode())
        h.update(stat_file_hash(f).encode())
    return h.hexdigest()[:16]


def model_fingerprint(name_or_path: str) -> str:
    """A local directory: hash of its weights/config/tokenizer files. A hub id: its commit,
    the same before and after the download (the cached snapshot's folder is named by it, or
    the hub says which commit it serves now): a new upload is a new fingerprint. Offline
    with nothing cached: the id as given."""
    p = Path(name_or_path)
    if p.is_dir():
        return directory_fingerprint(p)
    name = name_or_path
    try:
        from huggingface_hub import snapshot_download
        name = f"{name_or_path}@{Path(snapshot_download(name_or_path, local_files_only=True)).name}"
    except Exception:    # not cached (or not a hub id)
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
            try:
                from huggingface_hub import HfApi
                name = f"{name_or_path}@{HfApi().model_info(name_or_path, timeout=10).sha}"
            except Exception:   # not a hub id (an API model name) or the hub is unreachable
                pass
    return "hub:" + hashlib.sha256(name.encode()).hexdigest()[:16]


def state_dict_fingerprint(model) -> str:
    """Content hash of a model's parameters (for models that exist only in memory)."""
    import torch
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
