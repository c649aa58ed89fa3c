"""The LLM judge, and the only module that uses the openai client.

Any model name and base_url work (OpenAI, vLLM, `transformers serve`, ...). The API key is
read from the environment variable the config names and is never written anywhere.

Robustness: async calls under a concurrency limit; every request has a timeout; 429, 5xx,
timeouts, connection errors and unreadable responses are retried with exponential backoff
and jitter, honouring Retry-After. Each judgment is keyed by a request hash and appended
(fsync'd) to judgments.jsonl the moment it returns, so a rerun makes no call for a finished
key and a run killed with -9 resumes without duplicates. Calls that still fail after the
retries go to judge_errors.jsonl (and are retried by the next run), never into the
judgments file.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

log = logging.getLogger("evalkit")

ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(text: str) -> float:
    """FastChat's rule exactly: the first [[N]], else the first [N]; -1 when absent. A
    number outside 1-10 is kept, as FastChat keeps it (summary.json counts them as
    `out_of_range` so they can be seen)."""
    m = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    if not m:
        return -1
    value = float(m.group(1))
    return int(value) if value.is_integer() else value


def parse_verdict(text: str) -> str:
    """Pairwise: [[A]], [[B]] or [[C]] (tie); 'error' otherwise (FastChat's pair-v2 format)."""
    if "[[A]]" in text:
        return "A"
    if "[[B]]" in text:
        return "B"
    if "[[C]]" in text:
        return "tie"
    return "error"


def combine_swapped(g1: str, g2: str) -> str:
    """g1 judged (model_1 as A, model_2 as B); g2 with positions swapped. After mapping back to
    model names, agreement wins; any disagreement (or an error) is a tie."""
    g1_m = {"A": "model_1", "B": "model_2"}.get(g1, g1)
    g2_m = {"A": "model_2", "B": "model_1"}.get(g2, g2)
    return g1_m if g1_m == g2_m else "tie"


def weighted_rating(logprobs: Any) -> float | None:
    """Probability-weighted rating over 1-10 at the rating position (the token right after
    "[["), when the endpoint returned logprobs.

    Tokenizers that split digits write 10 as "1" then "0": when the rating's first token
    is "1", the next position's distribution splits the "1" mass into 10 (p("0") there)
    and 1 (the rest); a whole "10" token counts as 10."""
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    for i, item in enumerate(content):
        prev = "".join(c.token for c in content[max(0, i - 2):i])
        if prev.endswith("[[") and item.token.strip().isdigit():
            p_zero_after_one = None
            if item.token.strip() == "1" and i + 1 < len(content):
                nxt = content[i + 1]
                p_zero_after_one = sum(math.exp(a.logprob) for a in (nxt.top_logprobs or []) if a.token.strip() == "0")
            weights: dict[int, float] = {}
            for alt in item.top_logprobs or []:
                t = alt.token.strip()
                if not t.isdigit() or not 1 <= int(t) <= 10:
                    continue
                p = math.exp(alt.logprob)
                if t == "1" and p_zero_after_one is not None:
                    weights[10] = weights.get(10, 0.0) + p * p_zero_after_one
                    p *= 1.0 - p_zero_after_one
                weights[int(t)] = weights.get(int(t), 0.0) + p
            total = sum(weights.values())
            return sum(k * w for k, w in weights.items()) / total if total else None
    return None


def request_hash(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]


# ---------------------------------------------------------------- the client

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
                   logprobs: bool | None = None) -> Reply:
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


# ---------------------------------------------------------------- running many requests

@dataclass
class JudgeRequest:
    key: str
    messages: list[dict]
    record: dict[str, Any]        # the fields of the judgment record besides the reply
    kind: str = "single"          # single | pair


async def run_requests(client: ChatClient, requests: list[JudgeRequest], sink, error_sink,
                       max_tokens: int = 2048, progress=None) -> dict[str, int]:
    """Send every request; `sink(record)` gets each finished judgment as it returns."""
    counts = {"done": 0, "failed": 0}
    write_lock = asyncio.Lock()

    async def write(fn, rec):
        # appends fsync: run them off the event loop (one at a time) so they never stall
        # the requests in flight
        async with write_lock:
            await asyncio.to_thread(fn, rec)

    async def one(req: JudgeRequest):
        try:
            reply = await client.chat(req.messages, temperature=0.0, max_tokens=max_tokens)
            if not reply.text.strip():      # nothing to parse: a failed call, retried next run
                raise CallFailed("empty reply from the judge")
        except CallFailed as e:
            await write(error_sink, {"request_hash": req.key, "error": str(e), "tstamp": time.time(), **{
                k: v for k, v in req.record.items() if k in ("question_id", "model", "model_1", "model_2", "turn")}})
            counts["failed"] += 1
        else:
            rec = dict(req.record)
            if req.kind == "single":
                rec["judgment"] = reply.text
                rec["score"] = parse_rating(reply.text)
                weighted = weighted_rating(reply.logprobs)
                if weighted is not None:
                    rec["score_weighted"] = weighted
            else:
                rec["winner"] = parse_verdict(reply.text)
                rec["judgment"] = reply.text
            rec.update({"usage": reply.usage, "attempts": reply.attempts, "tstamp": time.time(),
                        "request_hash": req.key})
            await write(sink, rec)
            counts["done"] += 1
        if progress is not None:
            progress.update(1)

    await asyncio.gather(*(one(r) for r in requests))
    return counts
