"""The OpenAI-compatible chat client with retry: the only evalkit module that imports openai.

Any model name and base_url work (OpenAI, vLLM, `transformers serve`, ...). The API key is
read from the environment variable the options name and is never written anywhere.

Robustness: async calls under a concurrency limit; every request has a timeout; 429, 5xx,
timeouts, connection errors and unreadable responses are retried with exponential backoff
and jitter, honouring Retry-After. A call that still fails raises CallFailed.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .models import resolve_model


@dataclass
class ClientOptions:
    model: str                    # what requests name (a served model: the folder it serves)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 6
    backoff: float = 0.5          # first retry waits about this long, doubling, with jitter
    max_backoff: float = 30.0
    logprobs: bool = False
    name: str | None = None       # the judge's name in records and file names (default: model)

    @property
    def label(self) -> str:
        return self.name or self.model


@dataclass
class Reply:
    text: str
    usage: dict[str, int] = field(default_factory=dict)
    logprobs: Any = None
    attempts: int = 1


class CallFailed(Exception):
    pass


class ChatClient:
    """An AsyncOpenAI chat client with our own retry loop (the library's is switched off so
    every attempt is visible and Retry-After is honoured)."""

    def __init__(self, opt: ClientOptions):
        import openai
        self.opt = opt
        key = os.environ.get(opt.api_key_env)
        if not key:
            if opt.base_url is None:
                raise UserError(f"the judge needs an API key in ${opt.api_key_env} (or a --judge-base-url for a "
                                f"local server)")
            key = "EMPTY"  # local OpenAI-compatible servers ignore it
        self._openai = openai
        self.client = openai.AsyncOpenAI(api_key=key, base_url=opt.base_url, timeout=opt.timeout, max_retries=0)
        self.sem = asyncio.Semaphore(opt.concurrency)
        self.calls = 0

    async def chat(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 2048,
                   logprobs: bool | None = None, body_extra: dict[str, Any] | None = None) -> Reply:
        """One completion. `body_extra`: more request fields (top_p, seed, a server's own
        sampling fields), sent as given."""
        openai = self._openai
        want_lp = self.opt.logprobs if logprobs is None else logprobs
        last_error = "no attempt"
        for attempt in range(1, self.opt.max_retries + 2):
            retry_after = None
            async with self.sem:
                self.calls += 1
                try:
                    body = {"model": self.opt.model, "messages": messages, "temperature": temperature,
                            "max_tokens": max_tokens}
                    if want_lp:
                        body.update(logprobs=True, top_logprobs=20)
                    body.update(body_extra or {})
                    # the client's own POST: its HTTP layer, errors and response types, without
                    # the per-call TypedDict transform of create() (plain dicts need none; it
                    # costs ~3 ms of CPU a call, which serialises a concurrent run)
                    resp = await self.client.post("/chat/completions", body=body,
                                                  cast_to=self._openai.types.chat.ChatCompletion)
                    if isinstance(resp, str) or not getattr(resp, "choices", None):
                        raise ValueError("response without choices")
                    choice = resp.choices[0]
                    usage = {"prompt_tokens": getattr(resp.usage, "prompt_tokens", 0) or 0,
                             "completion_tokens": getattr(resp.usage, "completion_tokens", 0) or 0} \
                        if resp.usage else {}
                    return Reply(choice.message.content or "", usage, getattr(choice, "logprobs", None), attempt)
                except openai.APIStatusError as e:
                    last_error = f"HTTP {e.status_code}"
                    if e.status_code not in (408, 409, 429) and e.status_code < 500:
                        detail = e.body.get("detail") or e.body.get("error") if isinstance(e.body, dict) else e.body
                        raise CallFailed(f"{last_error}: {str(detail or e)[:200]}") from None
                    retry_after = _retry_after(e.response)
                except (openai.APITimeoutError, openai.APIConnectionError) as e:
                    last_error = type(e).__name__
                except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, TypeError,
                        AttributeError) as e:
                    last_error = f"unreadable response ({type(e).__name__})"
            if attempt > self.opt.max_retries:
                break
            delay = min(self.opt.max_backoff, self.opt.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(max(delay, retry_after or 0.0))
        raise CallFailed(f"{last_error} after {self.opt.max_retries + 1} attempts")

    async def close(self) -> None:
        await self.client.close()


def _retry_after(response) -> float | None:
    try:
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None


def judge_client(model: str | None, serve: str | None, base_url: str | None, **options: Any) -> ClientOptions:
    """A judge's client options. A server evalkit starts (`serve`) is pinned to the model it
    serves, so requests name that model (a known model: its materialised folder); records
    and file names use the name given."""
    return ClientOptions(model=resolve_model(serve) if serve else model, name=serve or model, base_url=base_url,
                         **options)
