"""Load a model and its tokenizer (hub id, local directory, or a known real model's name),
with one dtype policy:

- training (`load_training_model`): float32 master weights, always; mixed precision comes
  from autocast in the trainer, never from the stored weights.
- inference (`load_model`): "auto" is bfloat16 on a CUDA GPU that supports it and float32
  everywhere else (CPU: every number the project records is float32); an explicit dtype
  ("float32", "bfloat16", "float16") wins.

lm-eval (the leaderboard, from `lm_eval.lm_eval_model`'s arguments) and vLLM
(`generate.VLLMGenerator`) load their models themselves: the dtype is passed to them as
given, and an "auto" there is theirs (lm-eval's hf: the checkpoint's own dtype).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

# ---------------------------------------------------------------- loading

def resolve_dtype(dtype: str | None, device: str):
    import torch
    if dtype in (None, "auto"):
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "float16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16, float16)") from None


def resolve_device(device: str | None = None) -> str:
    import torch
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).parts[0] in (
        "checkpoints", "reports", "tasks") or Path(name).exists()


def check_model_ref(name_or_path: str) -> None:
    """Fail early, in one line, for a local path that does not exist."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists():
            raise UserError(f"{name_or_path}: not a Hugging Face model directory (no config.json)")
        return
    if _looks_like_path(name_or_path) or name_or_path.count("/") > 1:
        raise UserError(f"{name_or_path}: no such model directory")


def resolve_model(name_or_path: str) -> str:
    """A known real model's name (backends.known_models, e.g. smollm2-135m-instruct) -> its
    materialised local folder; a hub id or a path unchanged."""
    from .known_models import resolve
    return resolve(name_or_path)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer
    name_or_path = resolve_model(name_or_path)
    check_model_ref(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load tokenizer {name_or_path!r}: {_first_line(e)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str, dtype: str | None = "auto", device: str | None = "auto",
               trust_remote_code: bool = False, with_tokenizer: bool = True):
    """(model, tokenizer) for inference, in eval mode on `device`, in the inference dtype
    (module docstring)."""
    device = resolve_device(device)
    model = _from_pretrained(name_or_path, resolve_dtype(dtype, device), trust_remote_code)
    model.to(device).eval()
    tok = load_tokenizer(name_or_path, trust_remote_code) if with_tokenizer else None
    return model, tok


def load_training_model(name_or_path: str, trust_remote_code: bool = False):
    """A model to train, or to score as a DPO reference beside one: float32 master weights,
    left on the CPU (the trainer's accelerator places it)."""
    import torch
    return _from_pretrained(name_or_path, torch.float32, trust_remote_code)


def _from_pretrained(name_or_path: str, torch_dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM
    name_or_path = resolve_model(name_or_path)
    check_model_ref(name_or_path)
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype,
                                                    trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load model {name_or_path!r}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

