"""Multi-turn answers for MT-Bench-style questions through a generation backend (hf, vllm, api).

Each question is answered with the model's own chat template, an optional system prompt,
the per-category temperature, and at most max_new_tokens; turn 2 follows the model's own
turn-1 answer. Questions go in batches, every turn of a batch before the next batch, and
each finished batch is appended to FastChat's model_answer JSONL (fsync'd), so an
interrupted run resumes with the questions still missing.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import MTBenchSection, default_of
from ..progress import bar as progress_bar
from ..rundir import answers_meta, append, read_lines

log = logging.getLogger("evalkit")

# FastChat llm_judge's answer temperatures by category
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
               "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}


@dataclass
class GenOptions:
    backend: str = default_of(MTBenchSection, "backend")               # hf | vllm | api
    max_new_tokens: int = default_of(MTBenchSection, "max_new_tokens")
    system_prompt: str | None = default_of(MTBenchSection, "system_prompt")
    batch_size: int = default_of(MTBenchSection, "batch_size")
    seed: int = 0
    base_url: str | None = None         # api
    api_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    dtype: str = "auto"


def _messages(system: str | None, turns: list[str], answers: list[str]) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    for i, q in enumerate(turns):
        msgs.append({"role": "user", "content": q})
        if i < len(answers):
            msgs.append({"role": "assistant", "content": answers[i]})
    return msgs


def answer_record(question: dict, model_id: str, answers: list[str]) -> dict:
    return {"question_id": question["question_id"], "answer_id": uuid.uuid4().hex[:22], "model_id": model_id,
            "choices": [{"index": 0, "turns": answers}], "tstamp": time.time()}


def _identity(model: str, opt: GenOptions) -> dict:
    """What determines the answers: the model's files (a local dir) or its name, and the
    generation settings."""
    from ..backends.fingerprint import model_fingerprint
    return {"model": model_fingerprint(model) if opt.backend != "api" else f"api:{opt.api_model or model}",
            "backend": opt.backend, "max_new_tokens": opt.max_new_tokens, "system_prompt": opt.system_prompt,
            "seed": opt.seed, "dtype": opt.dtype, "temperatures": TEMPERATURE}


def answers_slot(out_path: Path, identity: dict) -> bool:
    """Claim the answer file for `identity` (evalkit.caches): answers made by other weights or
    settings are removed before generating, never resumed from. The identity is recorded
    beside the answers (<model>.meta.json). True when earlier answers are kept."""
    from ..caches import Slot, key_of
    slot = Slot("answers", out_path, file=True, stamp_path=answers_meta(out_path))
    return slot.claim(key_of(identity), identity=identity)


def generate_answers(model: str, questions: list[dict], out_path: str | Path, opt: GenOptions,
                     model_id: str | None = None, progress: bool = True) -> list[dict]:
    """Answer every question not yet in out_path; returns all answers in question order."""
    from ..backends.generate import GenOptions as BackendOptions, Sampling, generator
    out_path = Path(out_path)
    model_id = model_id or Path(model).name
    answers_slot(out_path, _identity(model, opt))
    done = {a["question_id"] for a in read_lines("mtbench_answers", out_path)}
    todo = [q for q in questions if q["question_id"] not in done]
    if todo:
        log.info("answering %d questions with %s (%s backend)", len(todo), model_id, opt.backend)
        gen = generator(model, BackendOptions(backend=opt.backend, dtype=opt.dtype, seed=opt.seed,
                                              batch_rows=opt.batch_size, base_url=opt.base_url,
                                              api_model=opt.api_model, api_key_env=opt.api_key_env,
                                              concurrency=opt.concurrency))
        # hf batches in-process; vllm and api take every question at once and schedule it themselves
        size = opt.batch_size if opt.backend == "hf" else len(todo)
        bar = progress_bar(total=len(todo), desc=f"answers {model_id}", enabled=progress)
        try:
            for s in range(0, len(todo), size):
                chunk = todo[s:s + size]
                answers: dict[Any, list[str]] = {q["question_id"]: [] for q in chunk}
                for turn in range(max(len(q["turns"]) for q in chunk)):
                    active = [q for q in chunk if turn < len(q["turns"])]
                    convs = [_messages(opt.system_prompt, q["turns"][:turn + 1], answers[q["question_id"]])
                             for q in active]
                    params = [Sampling(max_new_tokens=opt.max_new_tokens,
                                       temperature=TEMPERATURE.get(q.get("category", ""), 0.7)) for q in active]
                    for q, outs in zip(active, gen.chat(convs, params, progress=False)):
                        answers[q["question_id"]].append(outs[0].strip())
                for q in chunk:   # a finished batch is on disk before the next one starts
                    append("mtbench_answers", out_path, answer_record(q, model_id, answers[q["question_id"]]))
                bar.update(len(chunk))
        finally:
            bar.close()
            gen.close()
    by_id = {a["question_id"]: a for a in read_lines("mtbench_answers", out_path)}
    return [by_id[q["question_id"]] for q in questions if q["question_id"] in by_id]
