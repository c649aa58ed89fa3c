"""The lm-eval model name and model_args of each backend: lm-eval loads and calls the model
itself (the leaderboard), from these."""
from __future__ import annotations

from typing import Any

from ..errors import UserError
from .generate import check_backend, require_vllm
from .models import check_model_ref, resolve_device, resolve_model


def lm_eval_model(backend: str, model: str, *, dtype: str = "auto", device: str | None = None,
                  tensor_parallel_size: int = 1, data_parallel_size: int = 1, base_url: str | None = None,
                  api_model: str | None = None, tokenizer: str | None = None, num_concurrent: int = 1,
                  chat: bool = False, extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(lm-eval model name, model_args) for a backend."""
    check_backend(backend)
    if backend in ("hf", "vllm"):
        model = resolve_model(model)
    if backend == "hf":
        check_model_ref(model)
        return "hf", {"pretrained": model, "dtype": dtype, "device": resolve_device(device), **(extra or {})}
    if backend == "vllm":
        require_vllm()
        check_model_ref(model)
        return "vllm", {"pretrained": model, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size,
                        "data_parallel_size": data_parallel_size, **(extra or {})}
    if not base_url:
        raise UserError("backend api needs --base-url (an OpenAI-compatible server, e.g. `vllm serve`)")
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    name, url = ("local-chat-completions", f"{base}/chat/completions") if chat else \
        ("local-completions", f"{base}/completions")
    args = {"model": api_model or model, "base_url": url, "num_concurrent": num_concurrent, "max_retries": 3,
            "tokenized_requests": False}
    if tokenizer or not chat:
        args["tokenizer"] = tokenizer or model
        args["tokenizer_backend"] = "huggingface"
    return name, {**args, **(extra or {})}


