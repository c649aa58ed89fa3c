"""Stages in order. Each stage records its status in the manifest."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from .data import path as packaged
from .config import Experiment, TinyBase, load_experiment
from .rundir import RunDir, content_hash, read_json

log = logging.getLogger("evalkit")

DEMO_EXPERIMENT = packaged("experiments", "demo.yaml")


def rundir_for(exp: Experiment, reports: str | Path | None = None) -> RunDir:
    return RunDir(exp.name, reports=reports)



def resolve_base_model(exp: Experiment, rd: RunDir) -> str:
    """The base model's hub id or local dir; builds the tiny model when the config asks."""
    if isinstance(exp.base_model, TinyBase):
        from .models import build_tiny_model
        t0 = time.time()
        path = build_tiny_model(rd.base_checkpoint(), exp.base_model.tiny.model_dump())
        log.info("tiny base model ready at %s (%.1fs)", path, time.time() - t0)
        return str(path)
    return exp.base_model


def run_demo(out: str | Path = "reports/demo", force: list[str] | None = None) -> RunDir:
    """`evalkit demo` is exactly `evalkit run` on the packaged demo experiment (reports under `out`)."""
    from .runner import run_experiment
    exp = load_experiment(DEMO_EXPERIMENT)
    rd = rundir_for(exp, reports=out)
    t0 = time.time()
    run_experiment(exp, rd, force=force)
    print_summary(exp, rd)
    print(f"demo finished in {time.time() - t0:.1f}s; open {rd.report_html()}")
    return rd


def print_summary(exp: Experiment, rd: RunDir) -> None:
    """A few lines per finished result, read back from the run directory."""
    labels = ["base"] + [v.name for v in exp.variants]
    for v in exp.variants:
        if rd.train_metadata(v.name).exists():
            s = read_json(rd.train_metadata(v.name)).get("logps_summary", {})
            print(f"  train {v.name:<8}: mean chosen log-prob {s.get('chosen_start', float('nan')):.2f} -> "
                  f"{s.get('chosen_end', float('nan')):.2f}  ({rd.checkpoint(v.name)})")
    for m in labels:
        if rd.leaderboard(m).exists():
            rec = read_json(rd.leaderboard(m))
            print(f"  leaderboard {m:<8}: average {100 * rec['average']:.2f} on {rec['suite']}")
        if (rd.mtbench_dir(m) / "summary.json").exists():
            s = read_json(rd.mtbench_dir(m) / "summary.json")
            print(f"  mt-bench {m:<8}: overall {_fmt(s.get('overall'))} ({s.get('failed_parses', 0)} failed parses, "
                  f"{s.get('errors', 0)} errors; judge {s.get('judge')})")
        if rd.contamination(m).exists():
            rec = read_json(rd.contamination(m))
            cells = ", ".join(f"{b} {v['result']:.2f} (control {v['control']:.2f})" for b, v in rec["benchmarks"].items())
            print(f"  contamination {m:<8}: {cells}")
    if rd.ngram_overlap().exists():
        ov = read_json(rd.ngram_overlap())
        for ds, d in ov["datasets"].items():
            cells = ", ".join(f"{b} {r['n_dirty']}/{r['n_items']}" for b, r in d["benchmarks"].items())
            print(f"  {ov['n']}-gram overlap of {ds}: {cells}")
    print(f"  manifest: {rd.manifest_path}")


# ---------------------------------------------------------------- training

def dataset_rows(exp: Experiment, name: str, rd: RunDir):
    """Rows of a named dataset; generated datasets are written to the run dir first."""
    from .rundir import atomic_write_text
    from .train.data import read_rows
    import json
    src = exp.datasets[name]
    if src.generate:
        path = rd.generated_data(name)
        if not path.exists():
            from .train import builders
            if src.generate == "arc_pairs":
                source = read_rows(src.path) if src.path else read_rows(hub=src.hub, subset=src.subset, split=src.split)
                rows, skipped = builders.choice_pairs([r.data for r in source])
                if skipped:
                    log.warning("dataset %s: skipped %d colliding or unlabelled choices", name, skipped)
            else:
                rows = builders.metamath_synthetic_pairs(src.n, src.seed)
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        return read_rows(path), str(path)
    if src.hub:
        return read_rows(hub=src.hub, subset=src.subset, split=src.split), f"hub:{src.hub}[{src.split}]"
    return read_rows(src.path), src.path


def train_variants(exp: Experiment, only: list[str] | None = None, rd: RunDir | None = None,
                   progress: bool = True, base: str | None = None) -> dict[str, Path]:
    """Train each variant (or those in `only`); a variant whose checkpoint records the same
    config, base and data is skipped."""
    from .models import load_tokenizer
    from .rundir import read_json
    from .train.data import tokenize_rows
    from .train.reference import ReferenceCache, model_fingerprint
    from .train.trainer import train_variant, variant_config_hash

    rd = rd or rundir_for(exp)
    base = base or resolve_base_model(exp, rd)
    tok = load_tokenizer(base)
    cache = ReferenceCache(rd.reference_cache())
    base_fp = model_fingerprint(base)
    out: dict[str, Path] = {}
    for v in exp.variants:
        if only and v.name not in only:
            continue
        rows, source = dataset_rows(exp, v.data, rd)
        data = tokenize_rows(tok, rows, v.max_length, v.max_prompt_length,
                             skip_invalid=exp.datasets[v.data].skip_invalid, source=source)
        ckpt = rd.checkpoint(v.name)
        meta_path = rd.train_metadata(v.name)
        want = variant_config_hash(v, base_fp, data.fingerprint())
        if meta_path.exists() and read_json(meta_path).get("config_hash") == want:
            log.info("variant %s: up to date at %s, skipped", v.name, ckpt)
            out[v.name] = ckpt
            continue
        stage = f"train:{v.name}"
        rd.set_stage(stage, "running")
        t0 = time.time()
        if v.onpolicy is not None:
            from .train.onpolicy import train_onpolicy
            res = train_onpolicy(v, base, rows, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                                 data_info={"dataset": v.data, "source": source})
        elif v.stepwise is not None:
            from .train.stepwise import train_stepwise
            res = train_stepwise(v, base, data, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                                 data_info={"dataset": v.data, "source": source})
        else:
            res = train_variant(v, base, data, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                                data_info={"dataset": v.data, "source": source})
        s = res.metadata.get("logps_summary", {})
        steps = res.metadata.get("steps", 0)
        steps = sum(s.get("steps") or 0 for s in steps) if isinstance(steps, list) else steps  # sDPO lists its steps
        log.info("variant %s: %d steps in %.1fs; mean chosen log-prob %.2f -> %.2f, rejected %.2f -> %.2f",
                 v.name, steps, time.time() - t0, s.get("chosen_start", float("nan")),
                 s.get("chosen_end", float("nan")), s.get("rejected_start", float("nan")),
                 s.get("rejected_end", float("nan")))
        rd.set_stage(stage, "done", path=str(ckpt), seconds=round(time.time() - t0, 2),
                     config_hash=want)
        out[v.name] = ckpt
    return out


# ---------------------------------------------------------------- leaderboard

def _sample_data_dir(exp: Experiment, rd: RunDir, value: str | None) -> str | None:
    if value != "sample":
        return value
    from .eval.sample_data import write_open_llm_v1
    data_dir = rd.sample_data("leaderboard")
    if not (data_dir / "openai/gsm8k/main/test.jsonl").exists():
        write_open_llm_v1(data_dir, seed=exp.seed)
    return str(data_dir)



def score_leaderboard(exp: Experiment, rd: RunDir, models: dict[str, str]) -> dict[str, dict]:
    """Score every model on the configured suite; a finished, matching result is kept."""
    from .eval import leaderboard
    from .eval.suites import load_suite
    from .train.reference import model_fingerprint

    sec = exp.eval.leaderboard
    if sec is None or not sec.enabled:
        return {}
    suite = load_suite(sec.suite)
    data_dir = _sample_data_dir(exp, rd, sec.data_dir)
    opt = leaderboard.LeaderboardOptions(
        backend=sec.backend, batch_size=sec.batch_size, dtype=sec.dtype, limit=sec.limit, data_dir=data_dir,
        apply_chat_template=sec.apply_chat_template, fewshot_as_multiturn=sec.fewshot_as_multiturn,
        seed=sec.seed, base_url=sec.base_url, api_model=sec.api_model, num_concurrent=sec.num_concurrent,
        tensor_parallel_size=sec.tensor_parallel_size, data_parallel_size=sec.data_parallel_size)
    out = {}
    for label, path in models.items():
        want = content_hash({"model": model_fingerprint(path), "suite": suite.model_dump(),
                             "section": sec.model_dump(mode="json")})
        target = rd.leaderboard(label)
        if target.exists():
            rec = read_json(target)
            if rec.get("input_hash") == want:
                log.info("leaderboard %s: up to date, skipped", label)
                out[label] = rec
                continue
        stage = f"leaderboard:{label}"
        rd.set_stage(stage, "running")
        t0 = time.time()
        rec = leaderboard.run(path, suite, rd.model_dir(label), opt, model_label=label, input_hash=want)
        rd.set_stage(stage, "done", seconds=round(time.time() - t0, 2), input_hash=want)
        log.info("leaderboard %s: average %.2f (%.1fs)", label, 100 * rec["average"], time.time() - t0)
        out[label] = rec
    return out


# ---------------------------------------------------------------- contamination

def check_contamination(exp: Experiment, rd: RunDir, base: str, targets: dict[str, str]) -> dict[str, dict]:
    """Each target against the reference (default: the base), with a control beside it."""
    from .eval import contamination as C
    from .eval import contamination_run
    from .train.reference import model_fingerprint

    sec = exp.eval.contamination
    if sec is None or not sec.enabled or not targets:
        return {}
    reference = sec.reference or base
    data_dir = _sample_data_dir(exp, rd, sec.data_dir)
    p = C.Params(ratio_gen=sec.ratio_gen, n_neighbours=sec.n_neighbours, n_examples=sec.n_examples,
                 threshold=sec.threshold, max_tokens=sec.max_tokens, seed=sec.seed)
    loaded: dict = {}
    out = {}
    for label, path in targets.items():
        want = content_hash({"target": model_fingerprint(path), "reference": model_fingerprint(reference),
                             "section": sec.model_dump(mode="json")})
        target_file = rd.contamination(label)
        if target_file.exists() and read_json(target_file).get("input_hash") == want:
            log.info("contamination %s: up to date, skipped", label)
            out[label] = read_json(target_file)
            continue
        stage = f"contamination:{label}"
        rd.set_stage(stage, "running")
        t0 = time.time()
        rec = contamination_run.run(path, reference, sec.benchmarks, rd.model_dir(label), p,
                                    control=sec.control, data_dir=data_dir, models=loaded, input_hash=want,
                                    labels={"target": label})
        rd.set_stage(stage, "done", seconds=round(time.time() - t0, 2), input_hash=want)
        out[label] = rec
    return out


def check_ngram_overlap(exp: Experiment, rd: RunDir) -> dict | None:
    """n-gram overlap of every training dataset with every contamination benchmark."""
    from .eval.benchmark_texts import load_examples
    from .eval.ngram import overlap
    from .rundir import atomic_write_json

    sec = exp.eval.contamination
    if sec is None or not sec.enabled or not exp.datasets:
        return None
    data_dir = _sample_data_dir(exp, rd, sec.data_dir)
    bench = {name: load_examples(name, data_dir)[1] for name in sec.benchmarks}
    result: dict = {"n": sec.ngram, "datasets": {}}
    for ds in exp.datasets:
        rows, source = dataset_rows(exp, ds, rd)
        train_texts = [_row_text(r.data) for r in rows]
        result["datasets"][ds] = {"source": source, "n_rows": len(rows), "benchmarks": {
            name: overlap(train_texts, [(e.id, e.text) for e in exs], sec.ngram) for name, exs in bench.items()}}
    atomic_write_json(rd.ngram_overlap(), result)
    for ds, d in result["datasets"].items():
        for name, r in d["benchmarks"].items():
            if r["n_dirty"]:
                log.warning("training set %s shares %d-grams with %d of %d %s items", ds, sec.ngram,
                            r["n_dirty"], r["n_items"], name)
    return result


def _row_text(data: dict) -> str:
    parts = []
    for key in ("prompt", "chosen", "rejected"):
        v = data.get(key)
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, list):
            parts += [m.get("content", "") for m in v if isinstance(m, dict)]
    return "\n".join(parts)


def write_report(exp: Experiment, rd: RunDir) -> Path | None:
    if not exp.report.enabled:
        return None
    from .report.render import render
    t0 = time.time()
    out = render([rd.reports], rd.report_html())
    rd.set_stage("report", "done", seconds=round(time.time() - t0, 2), path=str(out))
    return out


# ---------------------------------------------------------------- MT-Bench

def run_mtbench(exp: Experiment, rd: RunDir, models: dict[str, str], judge_url: str | None = None,
                only: list[str] | None = None) -> dict[str, dict]:
    """Answers for every model, then the judge (served locally when the config says so)."""
    import contextlib

    from .eval import generate, mtbench
    from .eval import judge as J
    from .eval.serve import transformers_serve

    sec = exp.eval.mtbench
    if sec is None or not sec.enabled:
        return {}
    if sec.judge is None:
        from .errors import UserError
        raise UserError("eval.mtbench.judge: required key missing (model, and base_url or serve)")
    data = mtbench.load_data(sec.questions, sec.data_dir, sec.reference_answers)
    gen = generate.GenOptions(backend=sec.backend, max_new_tokens=sec.max_new_tokens, system_prompt=sec.system_prompt,
                              batch_size=sec.batch_size, base_url=sec.base_url, seed=exp.seed)
    answers = {}
    for label, path in models.items():
        stage = f"mtbench_answers:{label}"
        rd.set_stage(stage, "running")
        answers[label] = generate.generate_answers(path, data.questions, rd.mtbench_dir(label) / "answers.jsonl",
                                                   gen, model_id=label)
        rd.set_stage(stage, "done")
    j = sec.judge
    out = {}
    if judge_url is not None:
        serving = contextlib.nullcontext(judge_url)
    else:
        serving = transformers_serve(j.serve) if j.serve else contextlib.nullcontext(j.base_url)
    with serving as base_url:
        # a server we start is pinned to the model it serves: requests must name that model
        client = J.ClientOptions(model=j.serve or j.model, base_url=base_url, api_key_env=j.api_key_env,
                                 concurrency=j.concurrency, timeout=j.timeout, max_retries=j.max_retries,
                                 logprobs=j.logprobs)
        opt = mtbench.JudgeOptions(client, mode=sec.mode, max_tokens=j.max_tokens,
                                   price_per_million=j.price_per_million)
        for label in (only or list(models)):
            if sec.mode == "pairwise" and label == sec.baseline:
                continue
            stage = f"mtbench_judge:{label}"
            rd.set_stage(stage, "running")
            baseline = answers.get(sec.baseline) if sec.mode == "pairwise" else None
            out[label] = mtbench.judge_answers(data, answers[label], rd.mtbench_dir(label), opt, baseline=baseline)
            rd.set_stage(stage, "done", errors=out[label]["errors"], failed_parses=out[label]["failed_parses"])
    return out


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
