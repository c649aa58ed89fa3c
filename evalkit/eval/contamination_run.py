"""Run the contamination check for a target model and write contamination.json.

    {schema_version, method, parameters, target, reference, control,
     benchmarks: {name: {result, control, ci, control_ci, n_examples, per_example,
                         signals: {mean of each signal}}}}

Per-example records (id, text, score, control_score, losses and every signal, and the
neighbours with their losses under the target and the control, so the original's functions
can be re-run on them) go to contamination_<benchmark>.jsonl beside it.
"""
from __future__ import annotations

import json
import logging
import random
import statistics
import time
from pathlib import Path

from ..backends.scoring import score_texts
from ..errors import UserError
from .. import schema
from ..rundir import ModelFiles, write
from . import contamination as C
from . import calibrated
from .benchmark_texts import load_examples

log = logging.getLogger("evalkit")

METHOD = "reference-based neighbour comparison (Shi 2023; Smaug's contamination check)"


def select(examples: list[C.Example], p: C.Params, shuffles: int = 1) -> list[C.Example]:
    """Shuffle as the original does (random.seed(seed); random.shuffle) and keep the first N.
    The original shuffles a JSONL twice (when it loads it, then before taking the first 100,
    each time after random.seed(0)) and a hub dataset once: `shuffles` says how often."""
    shuffled = list(examples)
    for _ in range(shuffles):
        random.Random(p.seed).shuffle(shuffled)
    return shuffled[:p.n_examples]


def shuffles_of(bench: str, p: C.Params) -> int:
    """2 for a JSONL file under method shi2023 (as the original reads JSONL), else 1."""
    return 2 if p.method == "shi2023" and Path(bench).suffix in (".jsonl", ".json") and Path(bench).exists() else 1


def shi_reading(result: float) -> str:
    """The original tool's own reading of its number (its README: > 0.85 likely contaminated)."""
    return "flagged (> 0.85)" if result > 0.85 else "not flagged"


def prepare(benchmarks: list[str], p: C.Params, data_dir: str | None = None) -> dict[str, tuple[str, list]]:
    """Every input of a check, read and checked before any model loads or any file is written:
    each benchmark's examples (selected as the original selects them; at least n_examples of
    them, each long enough for a prefix) and the twins. {benchmark: (name, selected examples)}."""
    out: dict[str, tuple[str, list]] = {}
    names: dict[str, str] = {}
    for bench in benchmarks:
        name, examples = load_examples(bench, data_dir)
        if name in names:
            raise UserError(f"benchmark {bench}: its results would be written over those of {names[name]} "
                            f"(both are named {name!r})")
        names[name] = bench
        if not examples:
            raise UserError(f"benchmark {bench}: no examples")
        if len(examples) < p.n_examples:
            raise UserError(f"n_examples {p.n_examples}: benchmark {bench} has only {len(examples)} examples")
        selected = select(examples, p, shuffles_of(bench, p))
        for ex in selected:
            if C.prefix_of(ex.text, p.ratio_gen)[1] < 1:
                raise UserError(f"benchmark {bench}: example {ex.id}: text too short for a prefix "
                                f"({len(ex.text.split())} words at ratio_gen {p.ratio_gen})")
        out[bench] = (name, selected)
    problem = calibrated.twins_problem(p.twins, p.n_examples)
    if problem:
        raise UserError(f"twins {problem}")
    return out


def run(target: str, reference: str, benchmarks: list[str], out_dir: str | Path, p: C.Params | None = None,
        control: str | None = None, data_dir: str | None = None, progress: bool = True,
        models: dict | None = None, labels: dict | None = None, backend: str = "hf") -> dict:
    """Check `target` against `reference` on each benchmark; `control` (default: the reference
    itself as the target) runs beside it. `models` may pass already loaded (model, tok) pairs
    keyed by path, to share them across calls."""
    from ..backends.models import load_model
    p = p or C.Params()
    out_dir = Path(out_dir)
    models = models if models is not None else {}

    def get(path: str):
        if path not in models:
            models[path] = load_model(path, dtype=p.dtype)
        return models[path]

    inputs = prepare(benchmarks, p, data_dir)       # before any model loads or anything is written
    control = control or reference
    cache = models.setdefault(("neighbours", reference, json.dumps(C.params_dict(p), sort_keys=True), data_dir), {})
    t_model, t_tok = get(target)
    r_model, r_tok = get(reference)
    c_model, c_tok = get(control)
    record = {"schema_version": schema.version("contamination"), "method": METHOD, "parameters": C.params_dict(p),
              "sampling": C.sampling_of(r_model if backend == "hf" else None, p.generation),
              "padding_side": {"target": C.layout(t_tok, p)[0], "control": C.layout(c_tok, p)[0]},
              "target": target, "reference": reference, "control": control,
              "control_kind": "reference as target (sanity check only)" if control == reference else "clean model",
              "backend": backend, **(labels or {}), "benchmarks": {}}
    for bench in benchmarks:
        t0 = time.time()
        name, examples = inputs[bench]
        if name in cache:  # the same examples and reference: reuse the neighbours
            examples, neighbours, t_gen = cache[name]
        else:
            neighbours = C.generate_neighbours(r_model if backend == "hf" else reference, r_tok, examples, p,
                                               progress=progress, backend=backend)
            t_gen = time.time() - t0
            cache[name] = (examples, neighbours, t_gen)
        run_t, details = C.score_target(t_model, t_tok, examples, neighbours, p, progress=progress)
        t_side, (t_bs, _) = C.layout(t_tok, p)
        r_side, (r_bs, _) = C.layout(r_tok, p)
        c_side, (c_bs, _) = C.layout(c_tok, p)
        # what depends on the reference and control only is scored once per benchmark and reused
        # by every target checked against them
        fixed = cache.setdefault(("fixed", control, name), {})
        if "control" not in fixed:
            fixed["control"], _ = C.score_target(c_model, c_tok, examples, neighbours, p, details=False)
            fixed["ref_nll"] = score_texts(r_model, r_tok, [e.text for e in examples], padding_side=r_side,
                                             batch_size=r_bs).mean_nll
        run_c, ref_nll = fixed["control"], fixed["ref_nll"]
        lower = score_texts(t_model, t_tok, [e.text.lower() for e in examples], padding_side=t_side,
                              batch_size=t_bs).mean_nll
        # the calibrated verdict: items vs unseen twins, target and control each against the reference
        vp = calibrated.VerdictParams(twins=p.twins, margin=p.margin, alpha=p.alpha, bootstrap=max(p.bootstrap, 1000),
                                      seed=p.seed)
        twin_texts, paired = calibrated.twins_of([e.text for e in examples], vp)
        idx = [i for i, t in enumerate(twin_texts) if t] if paired else list(range(len(examples)))
        tw = [twin_texts[i] for i in idx] if paired else [t for t in twin_texts if t]
        tw_t = score_texts(t_model, t_tok, tw, padding_side=t_side, batch_size=t_bs).mean_nll
        if "twins" not in fixed or fixed["twins"][0] != tw:
            fixed["twins"] = (tw, score_texts(r_model, r_tok, tw, padding_side=r_side, batch_size=r_bs).mean_nll,
                              score_texts(c_model, c_tok, tw, padding_side=c_side, batch_size=c_bs).mean_nll)
        _, tw_r, tw_c = fixed["twins"]
        cal = calibrated.verdict([run_t.example_nll[i] for i in idx], [ref_nll[i] for i in idx], tw_t, tw_r,
                                 paired, vp)
        cal_c = calibrated.verdict([run_c.example_nll[i] for i in idx], [ref_nll[i] for i in idx], tw_c, tw_r,
                                   paired, vp)
        if control == reference:
            cal_c = calibrated.sanity_control(cal_c)
        twin_of = {i: k for k, i in enumerate(idx)} if paired else {}
        rows = []
        for i, ex in enumerate(examples):
            sig = C.signals(ex.text, run_t.example_nll[i], ref_nll[i], lower[i], details.token_logps[i],
                            details.minkpp_z[i], p.k)
            nb = run_t.neighbour_nll[i]
            rows.append({"id": ex.id, "text": ex.text, "score": run_t.scores[i], "control_score": run_c.scores[i],
                         "target_nll": run_t.example_nll[i], "control_nll": run_c.example_nll[i],
                         "reference_nll": ref_nll[i],
                         "neighbour_nll_mean": statistics.fmean(nb), "neighbour_nll_min": min(nb), **sig,
                         "neighbours": neighbours[i], "neighbour_nll": nb,
                         "control_neighbour_nll": run_c.neighbour_nll[i],
                         **({"twin": tw[twin_of[i]], "twin_target_nll": tw_t[twin_of[i]],
                             "twin_reference_nll": tw_r[twin_of[i]], "twin_control_nll": tw_c[twin_of[i]]}
                            if i in twin_of else {})})
        per_path = ModelFiles(out_dir).contamination_examples(name)
        write("contamination_examples", per_path, rows)
        result = C.result_of(run_t.scores, p.threshold)
        control_result = C.result_of(run_c.scores, p.threshold)
        record["benchmarks"][name] = {
            "result": result, "control": control_result,
            "ci": C.bootstrap_ci(run_t.scores, p.threshold, p.bootstrap, p.seed),
            "control_ci": C.bootstrap_ci(run_c.scores, p.threshold, p.bootstrap, p.seed),
            "n_examples": len(examples), "per_example": per_path.name,
            "shi_reading": shi_reading(result),
            "verdict": cal["verdict"], "calibrated": cal, "control_verdict": cal_c["verdict"],
            "control_calibrated": cal_c,
            "signals": {k: statistics.fmean(r[k] for r in rows) for k in
                        ("ppl", "log_ppl_minus_ref", "lowercase_ratio", "zlib_ratio", "min_k_prob", "min_k_plus_plus")},
            "seconds": {"generate": round(t_gen, 2), "total": round(time.time() - t0, 2)},
        }
        log.info("contamination %s on %s: Shi %.2f (control %.2f); calibrated: %s (%s) in %.1fs", target, name,
                 result, control_result, cal["verdict"], cal["reason"], time.time() - t0)
    write("contamination", ModelFiles(out_dir).contamination, record)
    return record


def format_record(rec: dict) -> str:
    lines = [f"{rec['target']} (reference {rec['reference']}; control: {rec['control_kind']})",
             f"  {'benchmark':<16}{'Shi':>6}  {'95% CI':<14}{'control':>8}  {'n':>4}  {'verdict':<10} evidence"]
    for name, b in rec["benchmarks"].items():
        ci = f"[{b['ci'][0]:.2f}, {b['ci'][1]:.2f}]"
        cal = b.get("calibrated", {})
        lines.append(f"  {name:<16}{b['result']:>6.2f}  {ci:<14}{b['control']:>8.2f}  {b['n_examples']:>4}  "
                     f"{b.get('verdict', '-'):<10} {cal.get('reason', '')}")
    lines.append("  Shi = share of examples whose loss beats >= 90% of sampled neighbours (the original's number; "
                 "it also rises with mere domain shift). verdict = items vs unseen twins, relative to the reference.")
    return "\n".join(lines)
