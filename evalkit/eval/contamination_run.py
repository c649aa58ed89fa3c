"""Run the contamination check for a target model and write contamination.json.

    {schema_version, method, parameters, target, reference, control,
     benchmarks: {name: {result, control, ci, control_ci, n_examples, per_example,
                         signals: {mean of each signal}}}}

Per-example records (id, text, score, control_score, losses and every signal) go to
contamination_<benchmark>.jsonl beside it.
"""
from __future__ import annotations

import json
import logging
import random
import statistics
import time
from pathlib import Path

from ..errors import UserError
from ..rundir import SCHEMA_VERSION, atomic_write_json, atomic_write_text
from . import contamination as C
from .benchmark_texts import load_examples

log = logging.getLogger("evalkit")

METHOD = "reference-based neighbour comparison (Shi 2023; Smaug's contamination check)"


def select(examples: list[C.Example], p: C.Params) -> list[C.Example]:
    """Shuffle as the original does (random.seed(seed); random.shuffle) and keep the first N."""
    shuffled = list(examples)
    random.Random(p.seed).shuffle(shuffled)
    return shuffled[:p.n_examples]


def run(target: str, reference: str, benchmarks: list[str], out_dir: str | Path, p: C.Params | None = None,
        control: str | None = None, data_dir: str | None = None, progress: bool = True,
        models: dict | None = None, labels: dict | None = None, backend: str = "hf") -> dict:
    """Check `target` against `reference` on each benchmark; `control` (default: the reference
    itself as the target) runs beside it. `models` may pass already loaded (model, tok) pairs
    keyed by path, to share them across calls."""
    from ..models import load_model
    p = p or C.Params()
    out_dir = Path(out_dir)
    models = models if models is not None else {}

    def get(path: str):
        if path not in models:
            models[path] = load_model(path)
        return models[path]

    control = control or reference
    cache = models.setdefault(("neighbours", reference, tuple(sorted(C.params_dict(p).items())), data_dir), {})
    t_model, t_tok = get(target)
    r_model, r_tok = get(reference)
    c_model, c_tok = get(control)
    record = {"schema_version": SCHEMA_VERSION, "method": METHOD, "parameters": C.params_dict(p),
              "target": target, "reference": reference, "control": control,
              "control_kind": "reference as target" if control == reference else "clean model",
              "backend": backend, **(labels or {}), "benchmarks": {}}
    for bench in benchmarks:
        t0 = time.time()
        name, examples = load_examples(bench, data_dir)
        if not examples:
            raise UserError(f"benchmark {bench}: no examples")
        if name in cache:  # the same examples and reference: reuse the neighbours
            examples, neighbours, t_gen = cache[name]
        else:
            examples = select(examples, p)
            neighbours = C.generate_neighbours(r_model if backend == "hf" else reference, r_tok, examples, p,
                                               progress=progress, backend=backend)
            t_gen = time.time() - t0
            cache[name] = (examples, neighbours, t_gen)
        run_t, details = C.score_target(t_model, t_tok, examples, neighbours, p, progress=progress)
        run_c, _ = C.score_target(c_model, c_tok, examples, neighbours, p, details=False)
        lower = C.score_texts(t_model, t_tok, [e.text.lower() for e in examples]).mean_nll
        ref_nll = C.score_texts(r_model, r_tok, [e.text for e in examples]).mean_nll
        rows = []
        for i, ex in enumerate(examples):
            sig = C.signals(ex.text, run_t.example_nll[i], ref_nll[i], lower[i], details.token_logps[i],
                            details.minkpp_z[i], p.k)
            nb = run_t.neighbour_nll[i]
            rows.append({"id": ex.id, "text": ex.text, "score": run_t.scores[i], "control_score": run_c.scores[i],
                         "target_nll": run_t.example_nll[i], "control_nll": run_c.example_nll[i],
                         "neighbour_nll_mean": statistics.fmean(nb), "neighbour_nll_min": min(nb), **sig})
        per_path = out_dir / f"contamination_{name}.jsonl"
        atomic_write_text(per_path, "".join(json.dumps(r) + "\n" for r in rows))
        result = C.result_of(run_t.scores, p.threshold)
        control_result = C.result_of(run_c.scores, p.threshold)
        record["benchmarks"][name] = {
            "result": result, "control": control_result,
            "ci": C.bootstrap_ci(run_t.scores, p.threshold, p.bootstrap, p.seed),
            "control_ci": C.bootstrap_ci(run_c.scores, p.threshold, p.bootstrap, p.seed),
            "n_examples": len(examples), "per_example": per_path.name,
            "signals": {k: statistics.fmean(r[k] for r in rows) for k in
                        ("ppl", "log_ppl_minus_ref", "lowercase_ratio", "zlib_ratio", "min_k_prob", "min_k_plus_plus")},
            "seconds": {"generate": round(t_gen, 2), "total": round(time.time() - t0, 2)},
        }
        log.info("contamination %s on %s: %.2f (control %.2f) in %.1fs", target, name, result, control_result,
                 time.time() - t0)
    atomic_write_json(out_dir / "contamination.json", record)
    return record


def format_record(rec: dict) -> str:
    lines = [f"{rec['target']} (reference {rec['reference']}; control: {rec['control_kind']})",
             f"  {'benchmark':<16}{'result':>8}  {'95% CI':<14}{'control':>8}  {'n':>4}"]
    for name, b in rec["benchmarks"].items():
        ci = f"[{b['ci'][0]:.2f}, {b['ci'][1]:.2f}]"
        lines.append(f"  {name:<16}{b['result']:>8.2f}  {ci:<14}{b['control']:>8.2f}  {b['n_examples']:>4}")
    lines.append("  result = share of examples whose loss beats >= 90% of sampled neighbours; near 1 suggests "
                 "the benchmark was seen in training. Compare with the control.")
    return "\n".join(lines)
