"""Leaderboard scoring: a thin adapter over lm_eval.simple_evaluate.

It writes the suite's task YAML (evalkit.eval.suites), calls lm-eval with the chosen backend,
and turns lm-eval's results into evalkit's record (leaderboard.json, typed and documented
field by field in evalkit.schema.LeaderboardRecord; each task's metric is stored as
{metric, filter}, never lm-eval's "metric,filter" string).

`protocol` names the protocol each number follows (e.g. the archived Open LLM Leaderboard v1
task code of lm-evaluation-harness b281b09, or lm-eval's own tasks); `harness` says which
lm-eval ran the requests and whose task code built them. Chat settings resolve as: the run's
own (CLI flag or experiment key), else the suite's default, else off.

Values are fractions (0-1), as lm-eval reports them; the report shows x100.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LeaderboardSection, default_of
from ..errors import UserError
from .. import schema
from ..rundir import ModelFiles, content_hash, read, write
from .suites import Entry, Suite, write_task_yamls

log = logging.getLogger("evalkit")


_SEC = LeaderboardSection


@dataclass
class LeaderboardOptions:
    """One leaderboard run's settings. Those an experiment file or `evalkit leaderboard` sets
    take their defaults from config.LeaderboardSection (written there once); options_from()
    builds them from a section."""
    backend: str = default_of(_SEC, "backend")
    batch_size: str | int = default_of(_SEC, "batch_size")
    dtype: str = default_of(_SEC, "dtype")
    device: str | None = None
    limit: int | None = default_of(_SEC, "limit")
    data_dir: str | None = None
    apply_chat_template: bool | None = default_of(_SEC, "apply_chat_template")   # None: the suite's default (else off)
    fewshot_as_multiturn: bool | None = default_of(_SEC, "fewshot_as_multiturn")
    system_instruction: str | None = default_of(_SEC, "system_instruction")
    seed: int = default_of(_SEC, "seed")
    # vllm
    tensor_parallel_size: int = default_of(_SEC, "tensor_parallel_size")
    data_parallel_size: int = default_of(_SEC, "data_parallel_size")
    # api: an OpenAI-compatible server (vLLM's for log-likelihood tasks)
    base_url: str | None = default_of(_SEC, "base_url")
    api_model: str | None = default_of(_SEC, "api_model")
    tokenizer: str | None = None
    num_concurrent: int = default_of(_SEC, "num_concurrent")
    # lm-eval model arguments of this run (CLI --model-args, an experiment's model_args); over the
    # suite's own (Suite.model_args)
    extra_model_args: dict[str, Any] = field(default_factory=dict)


def options_from(sec: LeaderboardSection, chat: dict[str, Any] | None = None, *, data_dir: str | None = None,
                 device: str | None = None, tokenizer: str | None = None) -> LeaderboardOptions:
    """A run's settings from a leaderboard section (an experiment's or the CLI's); `chat`: one
    model's chat settings (its `per_model` over the section's), `data_dir` with `sample` resolved."""
    chat = chat or {k: getattr(sec, k) for k in ("apply_chat_template", "fewshot_as_multiturn", "system_instruction")}
    return LeaderboardOptions(
        backend=sec.backend, batch_size=sec.batch_size, dtype=sec.dtype, device=device, limit=sec.limit,
        data_dir=data_dir, seed=sec.seed, base_url=sec.base_url, api_model=sec.api_model, tokenizer=tokenizer,
        num_concurrent=sec.num_concurrent, tensor_parallel_size=sec.tensor_parallel_size,
        data_parallel_size=sec.data_parallel_size, extra_model_args=dict(sec.model_args), **chat)


# ---------------------------------------------------------------- lm-eval model arguments

def model_spec(model: str, opt: LeaderboardOptions, suite: Suite | None = None) -> tuple[str, dict[str, Any]]:
    """(lm-eval model name, model_args) for a backend: the suite's own model for the backend if it
    names one, the suite's model arguments (archived v1: add_bos_token false), the run's over them."""
    from ..backends.lm_eval import lm_eval_model
    extra = {**(suite.model_args if suite is not None else {}), **opt.extra_model_args}
    name, args = lm_eval_model(opt.backend, model, dtype=opt.dtype, device=opt.device,
                               tensor_parallel_size=opt.tensor_parallel_size,
                               data_parallel_size=opt.data_parallel_size, base_url=opt.base_url,
                               api_model=opt.api_model, tokenizer=opt.tokenizer, num_concurrent=opt.num_concurrent,
                               chat=opt.apply_chat_template, extra=extra)
    own = (suite.lm_eval_models if suite is not None else {}).get(opt.backend)
    if own:
        from ..backends import lm_eval_v1  # noqa: F401  (registers evalkit's lm-eval models)
        name = own
    return name, args


def parse_model_args(text: str | None) -> dict[str, Any]:
    """`k=v,k2=v2` as lm-eval's own --model_args parser reads it (true/false, numbers typed)."""
    from lm_eval.utils import simple_parse_args_string
    try:
        return simple_parse_args_string(text)
    except IndexError:
        raise UserError(f"--model-args {text!r}: give key=value pairs separated by commas") from None


# ---------------------------------------------------------------- summarising

def _metric_value(result: dict, metric: str, flt: str) -> tuple[float, float | None]:
    key = f"{metric},{flt}"
    if key not in result:
        have = sorted(k for k in result if "," in k and "_stderr" not in k)
        raise UserError(f"lm-eval returned no {key!r} (has: {', '.join(have)})")
    stderr = result.get(f"{metric}_stderr,{flt}")
    stderr = None if stderr in (None, "N/A") or (isinstance(stderr, float) and math.isnan(stderr)) else stderr
    return float(result[key]), stderr


def normalise(raw: float, baseline: float) -> float:
    """The v2 leaderboard normalisation: chance maps to 0, perfect to 1, below chance to 0."""
    if baseline >= 1:
        return 0.0
    return max(0.0, (raw - baseline) / (1.0 - baseline))


def summarise_entry(entry: Entry, results: dict, n_samples: dict, versions: dict, n_shot: dict,
                    normalised_suite: bool) -> dict[str, Any]:
    subtasks = {}
    for ref in entry.tasks:
        if ref.task not in results:
            raise UserError(f"lm-eval returned no results for task {ref.task}")
        vals = [_metric_value(results[ref.task], m, entry.filter) for m in entry.metrics]
        value = sum(v for v, _ in vals) / len(vals)
        errs = [e for _, e in vals if e is not None]
        stderr = (sum(errs) / len(errs)) if len(errs) == len(vals) else None
        n = int((n_samples.get(ref.task) or {}).get("effective", 0))
        sub = {"value": value, "stderr": stderr, "n_samples": n}
        if normalised_suite and entry.normalise_subtasks:
            sub["baseline"] = ref.baseline if ref.baseline is not None else entry.baseline
            sub["normalised"] = normalise(value, sub["baseline"] or 0.0)
        subtasks[ref.task] = sub
    key = "normalised" if normalised_suite and entry.normalise_subtasks else "value"
    total_n = sum(s["n_samples"] for s in subtasks.values())
    if entry.aggregate == "weighted_mean" and total_n:
        value = sum(s[key] * s["n_samples"] for s in subtasks.values()) / total_n
        # stderr of a size-weighted mean of independent means
        stderr = math.sqrt(sum((s["stderr"] * s["n_samples"] / total_n) ** 2 for s in subtasks.values())) \
            if all(s["stderr"] is not None for s in subtasks.values()) else None
    else:  # single task, or the plain (unweighted) mean over subtasks
        value = sum(s[key] for s in subtasks.values()) / len(subtasks)
        stderr = math.sqrt(sum(s["stderr"] ** 2 for s in subtasks.values())) / len(subtasks) \
            if all(s["stderr"] is not None for s in subtasks.values()) and key == "value" else None
    first = entry.tasks[0].task
    out = {"metric": "+".join(entry.metrics), "filter": entry.filter,
           "value": value, "stderr": stderr, "n_shot": entry.shots, "n_samples": total_n,
           "version": versions.get(first), "aggregate": entry.aggregate}
    if normalised_suite:
        if entry.normalise_subtasks:
            out["normalised"] = value
            out["value"] = sum(s["value"] for s in subtasks.values()) / len(subtasks)
        else:
            out["normalised"] = normalise(value, entry.baseline or 0.0)
            out["baseline"] = entry.baseline or 0.0
    if len(entry.tasks) > 1:
        out["subtasks"] = subtasks
    else:
        out["lm_eval_task"] = first  # its per-sample file: leaderboard_samples/<lm_eval_task>.jsonl
    if n_shot.get(first) is not None and n_shot.get(first) != entry.shots:
        log.warning("task %s ran %s-shot, the suite asks for %s", first, n_shot.get(first), entry.shots)
    return out


def summarise(suite: Suite, lm_results: dict) -> dict[str, Any]:
    """evalkit's tasks table and average from lm-eval's output dict (pure; no model)."""
    tasks = {e.name: summarise_entry(e, lm_results["results"], lm_results.get("n-samples", {}),
                                     lm_results.get("versions", {}), lm_results.get("n-shot", {}), suite.normalise)
             for e in suite.entries}
    for t in tasks.values():
        t["protocol"] = suite.protocol
    key = "normalised" if suite.normalise else "value"
    return {"tasks": tasks, "average": sum(t[key] for t in tasks.values()) / len(tasks)}


# ---------------------------------------------------------------- running

@dataclass
class ChatSettings:
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    system_instruction: str | None


def chat_settings(suite: Suite, opt: LeaderboardOptions) -> ChatSettings:
    """The run's chat settings: the model's own (options), else the suite's defaults, else off."""
    def pick(mine, suites):
        return mine if mine is not None else suites
    apply = bool(pick(opt.apply_chat_template, suite.apply_chat_template))
    if apply and suite.apply_chat_template is False:
        raise UserError(f"suite {suite.name}: its protocol ({suite.protocol}) never applied a chat template; "
                        f"drop --chat-template / apply_chat_template, or use another suite")
    if opt.fewshot_as_multiturn and not apply:
        raise UserError("fewshot_as_multiturn needs apply_chat_template (few-shot turns are chat turns)")
    multiturn = apply and bool(pick(opt.fewshot_as_multiturn, suite.fewshot_as_multiturn))
    system = pick(opt.system_instruction, suite.system_instruction)
    return ChatSettings(apply, multiturn, system or None)


def batch_size_for(suite: Suite, opt: LeaderboardOptions) -> str | int:
    """A suite that fixes the batch size (the archived v1 ran --batch_size=1: padding in a batch
    changes log-likelihoods) wins over the run's choice."""
    if opt.backend == "api":
        return 1
    if suite.batch_size is None:
        return opt.batch_size
    if opt.batch_size not in ("auto", suite.batch_size):
        log.warning("suite %s runs at batch size %d, as its protocol did (asked: %s)",
                    suite.name, suite.batch_size, opt.batch_size)
    return suite.batch_size


def incomparable_because(suite: Suite, opt: LeaderboardOptions, data_dir: Path | None) -> list[str]:
    """Why these numbers cannot stand beside published ones of the suite's protocol (empty
    when they can): a document limit, data other than the benchmark's own, or a suite that
    is not the packaged one of that name (other shots, tasks or metrics)."""
    from .suites import available_suites, load_suite
    reasons = []
    if opt.limit:
        reasons.append(f"limit: {opt.limit} documents per task")
    if data_dir is not None:
        reasons.append(f"local data ({data_dir}), not the benchmark's published splits")
    if suite.name not in available_suites():
        reasons.append(f"suite {suite.name} is not a packaged protocol")
    else:
        packaged = load_suite(suite.name)
        kept = [e for e in packaged.entries if e.name in {x.name for x in suite.entries}]
        if packaged.model_copy(update={"entries": kept}).model_dump() != suite.model_dump():
            reasons.append(f"suite differs from the packaged {suite.name} (shots, tasks or metrics changed)")
        elif len(kept) < len(packaged.entries):     # each entry as packaged; the average covers these only
            reasons.append(f"entries {', '.join(e.name for e in kept)} of {suite.name} only: the average is theirs, "
                           f"not the suite's")
    changed = {k: v for k, v in opt.extra_model_args.items() if k in suite.model_args and v != suite.model_args[k]}
    if changed:
        reasons.append(f"model arguments override the protocol's ({', '.join(f'{k}={v}' for k, v in changed.items())})")
    return reasons


def harness_info(suite: Suite, lm_eval_version: str) -> dict[str, str]:
    code = suite.task_code or (f"lm-eval {lm_eval_version} built-in tasks" if suite.task_source == "lm_eval"
                               else "evalkit task configs")
    return {"lm_eval_version": lm_eval_version, "task_code": code}


def _quiet_git_hash() -> None:
    """lm-eval records `git describe` of the working directory and lets git print "fatal: not
    a git repository" on the console outside a checkout; the same lookup, with git's stderr
    discarded (lm-eval imports the function by name into its evaluator)."""
    import subprocess

    import lm_eval.evaluator as ev
    from lm_eval.loggers import utils as lm_utils
    if getattr(ev.get_git_commit_hash, "_evalkit", False):
        return

    def git_hash():
        try:
            return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return lm_utils.get_commit_from_path(os.getcwd())
    git_hash._evalkit = True
    ev.get_git_commit_hash = git_hash


def run(model: str, suite: Suite, out_dir: str | Path, opt: LeaderboardOptions, *,
        model_label: str | None = None) -> dict[str, Any]:
    """Score `model` on `suite`; write leaderboard.json and per-sample JSONL into out_dir."""
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from .. import logs
    logs.route()                # lm-eval's and datasets' records go to run.log, not the console
    _quiet_git_hash()
    out_dir = Path(out_dir)
    data_dir = Path(opt.data_dir).resolve() if opt.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {opt.data_dir}: no such directory")
    chat = chat_settings(suite, opt)
    opt = dataclasses.replace(opt, apply_chat_template=chat.apply_chat_template)
    lm_name, model_args = model_spec(model, opt, suite)
    if data_dir is None:
        from .suites import check_hub_data
        check_hub_data(suite)         # offline: every dataset cached, before any model loads
    task_dir = ModelFiles(out_dir).lm_eval_tasks
    names = write_task_yamls(suite, task_dir, data_dir)
    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    # lm-eval keys its request cache on the request text only: keep one cache per model
    # content (weights, tokenizer, template) and backend settings, so another model scored
    # into the same folder, or new weights at the same path, never get these answers
    from ..backends.fingerprint import model_fingerprint
    cache_key = content_hash({"model": model_fingerprint(model) if opt.backend != "api" else model,
                              "lm_eval_model": lm_name, "model_args": model_args, "chat": dataclasses.asdict(chat),
                              "seed": opt.seed, "lm_eval": _version("lm_eval")})
    from ..caches import Slot
    cache_dir = ModelFiles(out_dir).lm_eval_cache
    Slot("lm-eval-requests", cache_dir).claim(cache_key)
    t0 = time.time()
    log.info("leaderboard %s on %s (%d lm-eval tasks, backend %s%s)", suite.name, model_label or model, len(names),
             opt.backend, f", limit {opt.limit}" if opt.limit else "")
    with _quiet_context_bars():
        res = simple_evaluate(
            model=lm_name, model_args=model_args, tasks=names, task_manager=tm,
            batch_size=batch_size_for(suite, opt), limit=opt.limit,
            use_cache=str(cache_dir / "requests"),  # lm-eval's request cache: a rerun recomputes nothing
            log_samples=True, apply_chat_template=chat.apply_chat_template,
            fewshot_as_multiturn=chat.fewshot_as_multiturn, system_instruction=chat.system_instruction,
            random_seed=opt.seed, numpy_random_seed=opt.seed, torch_random_seed=opt.seed,
            fewshot_random_seed=opt.seed, bootstrap_iters=1000)
    seconds = time.time() - t0
    summary = summarise(suite, res)
    version = lm_eval.__version__ if hasattr(lm_eval, "__version__") else _version("lm_eval")
    record = {
        "schema_version": schema.version("leaderboard"),
        "suite": suite.name,
        "protocol": suite.protocol,
        "harness": harness_info(suite, version),
        "backend": opt.backend,
        "lm_eval_model": lm_name,
        "lm_eval_model_args": model_args,
        "lm_eval_version": version,
        "model": model_label or model,
        "model_path": model,
        "dtype": opt.dtype,
        "batch_size": str(res.get("config", {}).get("batch_size", opt.batch_size)),
        "apply_chat_template": chat.apply_chat_template,
        "fewshot_as_multiturn": chat.fewshot_as_multiturn,
        "system_instruction": chat.system_instruction,
        "seed": opt.seed,
        # a protocol with its own few-shot generator (archived v1: random.Random(42)) ignores the seed
        "fewshot_seed": suite.fewshot_seed if suite.fewshot_seed is not None else opt.seed,
        "data_dir": str(data_dir) if data_dir else None,
        "limit": opt.limit,
        "comparable": not (reasons := incomparable_because(suite, opt, data_dir)),
        "comparable_reasons": reasons,
        "normalised": suite.normalise,
        **summary,
        "seconds": round(seconds, 2),
        "samples_dir": ModelFiles.leaderboard_samples_dir,
    }
    # per-sample logs first, then the record: the record's presence means "finished"
    for task, samples in (res.get("samples") or {}).items():
        write("leaderboard_samples", ModelFiles(out_dir).leaderboard_samples(task), [_sample_row(s) for s in samples])
    write("leaderboard", ModelFiles(out_dir).leaderboard, record)
    return record


@contextlib.contextmanager
def _quiet_context_bars():
    """lm-eval draws an unlabelled bar per task while it builds contexts (62 a model on
    open_llm_v1), and bars for checking its request cache and tokenizing (two per request
    type): the console keeps the bars of the requests being run, so those stay off; and those too
    when stderr is not a terminal (evalkit.progress: no redraw lines in a log)."""
    import importlib
    import sys

    import lm_eval.api.model as model_module
    import lm_eval.api.task as task_module
    from tqdm import tqdm

    from ..progress import disabled_by_env
    modules = [task_module, model_module]
    if not sys.stderr.isatty() or disabled_by_env():
        for name in ("lm_eval.models.huggingface", "lm_eval.models.api_models", "lm_eval.models.vllm_causallms"):
            try:
                modules.append(importlib.import_module(name))
            except ImportError:        # vllm's module needs vllm
                pass
    real = {m: m.tqdm for m in modules if hasattr(m, "tqdm")}

    def off(*args, **kwargs):          # lm-eval passes its own disable=: ours wins
        return tqdm(*args, **{**kwargs, "disable": True})

    for m in real:
        m.tqdm = off
    try:
        yield
    finally:
        for m, bar in real.items():
            m.tqdm = bar


def format_record(rec: dict) -> str:
    """A short table of a leaderboard record, values x100."""
    key = "normalised" if rec.get("normalised") else "value"
    chat = ", chat template" + (" + multi-turn few-shot" if rec.get("fewshot_as_multiturn") else "") \
        if rec.get("apply_chat_template") else ""
    lines = [f"{rec['model']} on {rec['suite']} ({rec['backend']}{chat}"
             + (f", limit {rec['limit']}: NOT comparable" if rec.get("limit") else "") + ")"]
    if rec.get("protocol"):
        lines.append(f"  protocol: {rec['protocol']}")
    for name, t in rec["tasks"].items():
        err = f" +- {100 * t['stderr']:.2f}" if t.get("stderr") is not None and key == "value" else ""
        lines.append(f"  {name:<16} {100 * t[key]:6.2f}{err}   ({t['metric']}{'' if t.get('filter', 'none') == 'none' else ', ' + t['filter']}, {t['n_shot']}-shot, n={t['n_samples']})")
    lines.append(f"  {'average':<16} {100 * rec['average']:6.2f}")
    return "\n".join(lines)


def _sample_row(sample: dict) -> dict:
    """The per-sample fields worth keeping: id, target, metrics, the filtered response."""
    keep = {"doc_id": sample.get("doc_id"), "target": sample.get("target"), "filter": sample.get("filter"),
            "metrics": sample.get("metrics")}
    for m in sample.get("metrics") or []:
        if m in sample:
            keep[m] = sample[m]
    for key in ("resps", "filtered_resps"):
        if sample.get(key) is not None:
            keep[key] = sample[key]
    return keep


def _version(pkg: str) -> str:
    from importlib import metadata
    return metadata.version(pkg.replace("_", "-"))


def load_results(paths: list[str | Path]):
    """Many leaderboard.json files as one pandas frame: a row per model, a column per entry."""
    import pandas as pd
    rows = []
    for p in paths:
        p = Path(p)
        rec = read("leaderboard", ModelFiles(p).leaderboard if p.is_dir() else p)
        key = "normalised" if rec.get("normalised") else "value"
        row = {"model": rec["model"], "suite": rec["suite"], "comparable": rec.get("comparable", True)}
        row.update({name: t[key] for name, t in rec["tasks"].items()})
        row["average"] = rec["average"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
