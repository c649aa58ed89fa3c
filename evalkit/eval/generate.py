"""Multi-turn answers for MT-Bench-style questions: hf (in-process, batched), vllm, or api.

Each question is answered with the model's own chat template, an optional system prompt,
the per-category temperature, and at most max_new_tokens; turn 2 follows the model's own
turn-1 answer. Output is FastChat's model_answer JSONL, one line per finished question,
appended and fsync'd, so an interrupted run resumes with the questions still missing.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..progress import bar as progress_bar
from ..rundir import append_jsonl, read_jsonl

log = logging.getLogger("evalkit")

# FastChat llm_judge's answer temperatures by category
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
               "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}


@dataclass
class GenOptions:
    backend: str = "hf"                 # hf | vllm | api
    max_new_tokens: int = 1024
    system_prompt: str | None = None
    batch_size: int = 8
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


def generate_answers(model: str, questions: list[dict], out_path: str | Path, opt: GenOptions,
                     model_id: str | None = None, progress: bool = True) -> list[dict]:
    """Answer every question not yet in out_path; returns all answers in question order."""
    out_path = Path(out_path)
    model_id = model_id or Path(model).name
    done = {a["question_id"] for a in read_jsonl(out_path)}
    todo = [q for q in questions if q["question_id"] not in done]
    if todo:
        log.info("answering %d questions with %s (%s backend)", len(todo), model_id, opt.backend)
        if opt.backend == "hf":
            _hf(model, todo, out_path, opt, model_id, progress)
        elif opt.backend == "api":
            asyncio.run(_api(model, todo, out_path, opt, model_id, progress))
        elif opt.backend == "vllm":
            _vllm(model, todo, out_path, opt, model_id)
        else:
            raise UserError(f"unknown generation backend {opt.backend!r} (use hf, vllm or api)")
    by_id = {a["question_id"]: a for a in read_jsonl(out_path)}
    return [by_id[q["question_id"]] for q in questions if q["question_id"] in by_id]


def _hf(model_path: str, questions: list[dict], out_path: Path, opt: GenOptions, model_id: str, progress: bool):
    import torch

    from ..models import load_model
    model, tok = load_model(model_path, dtype=opt.dtype)
    device = next(model.parameters()).device
    tok.padding_side = "left"
    if not getattr(tok, "chat_template", None):
        raise UserError(f"{model_path}: the tokenizer has no chat template; MT-Bench needs one")
    n_turns = max(len(q["turns"]) for q in questions)
    answers: dict[Any, list[str]] = {q["question_id"]: [] for q in questions}
    # batch questions that share a temperature; turn t of every question before turn t+1
    groups: dict[float, list[dict]] = {}
    for q in questions:
        groups.setdefault(TEMPERATURE.get(q.get("category", ""), 0.7), []).append(q)
    bar = progress_bar(total=len(questions) * n_turns, desc=f"answers {model_id}", enabled=progress)
    for temp, qs in groups.items():
        for turn in range(n_turns):
            active = [q for q in qs if turn < len(q["turns"])]
            for s in range(0, len(active), opt.batch_size):
                chunk = active[s:s + opt.batch_size]
                prompts = [tok.apply_chat_template(_messages(opt.system_prompt, q["turns"][:turn + 1],
                                                             answers[q["question_id"]]),
                                                   tokenize=False, add_generation_prompt=True) for q in chunk]
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                gen_kwargs = {"max_new_tokens": opt.max_new_tokens, "pad_token_id": tok.pad_token_id}
                if temp > 1e-4:
                    gen_kwargs.update(do_sample=True, temperature=temp, top_p=1.0, top_k=0)
                else:
                    gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                torch.manual_seed(opt.seed + turn)
                with torch.no_grad():
                    out = model.generate(**enc, **gen_kwargs)
                for q, row in zip(chunk, out[:, enc["input_ids"].shape[1]:]):
                    answers[q["question_id"]].append(tok.decode(row, skip_special_tokens=True).strip())
                bar.update(len(chunk))
    bar.close()
    for q in questions:
        append_jsonl(out_path, answer_record(q, model_id, answers[q["question_id"]]))


async def _api(model: str, questions: list[dict], out_path: Path, opt: GenOptions, model_id: str, progress: bool):
    from .judge import ChatClient, ClientOptions
    client = ChatClient(ClientOptions(model=opt.api_model or model, base_url=opt.base_url,
                                      api_key_env=opt.api_key_env, concurrency=opt.concurrency))
    bar = progress_bar(total=len(questions), desc=f"answers {model_id}", enabled=progress)

    async def one(q: dict):
        temp = TEMPERATURE.get(q.get("category", ""), 0.7)
        answers: list[str] = []
        for turn in range(len(q["turns"])):
            reply = await client.chat(_messages(opt.system_prompt, q["turns"][:turn + 1], answers),
                                      temperature=temp, max_tokens=opt.max_new_tokens, logprobs=False)
            answers.append(reply.text.strip())
        append_jsonl(out_path, answer_record(q, model_id, answers))  # each question as soon as it is done
        bar.update(1)

    try:
        await asyncio.gather(*(one(q) for q in questions))
    finally:
        bar.close()
        await client.close()


def _vllm(model: str, questions: list[dict], out_path: Path, opt: GenOptions, model_id: str):
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise UserError("backend vllm is not installed: pip install 'evalkit[vllm]' (CUDA machines only)") from None
    llm = LLM(model=model, dtype=opt.dtype, seed=opt.seed)
    answers: dict[Any, list[str]] = {q["question_id"]: [] for q in questions}
    for turn in range(max(len(q["turns"]) for q in questions)):
        active = [q for q in questions if turn < len(q["turns"])]
        convs = [_messages(opt.system_prompt, q["turns"][:turn + 1], answers[q["question_id"]]) for q in active]
        params = [SamplingParams(temperature=TEMPERATURE.get(q.get("category", ""), 0.7),
                                 max_tokens=opt.max_new_tokens, seed=opt.seed) for q in active]
        for q, out in zip(active, llm.chat(convs, params)):
            answers[q["question_id"]].append(out.outputs[0].text.strip())
    for q in questions:
        append_jsonl(out_path, answer_record(q, model_id, answers[q["question_id"]]))
