"""A Hugging Face model card (README.md) for every trained checkpoint.

Written by the report stage from the files the runner already wrote, so `huggingface-cli
upload` of a checkpoint folder publishes a complete card. The report stage depends on every
other stage, so a changed result rewrites the cards with the report. Nothing is uploaded.

1. metadata: base_model, tags, and `model-index` with one EvalResult per leaderboard entry
   (value x100, the number leaderboard.json holds) and MT-Bench's overall rating;
2. body: the training recipe, the data fingerprint, the chosen completions' mean log-prob at
   the start (the reference) and the end, the contamination result against its control.
"""
from __future__ import annotations

from pathlib import Path

from .backends import known_models
from .rundir import RunDir, atomic_write_text, read
from .train.summary import logps_line

# lm-eval task -> (hub dataset, config, split) the numbers come from
DATASETS = {"arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test"), "hellaswag": ("Rowan/hellaswag", None, "validation"),
            "mmlu": ("cais/mmlu", "all", "test"), "truthfulqa_mc2": ("truthfulqa/truthful_qa", "multiple_choice", "validation"),
            "winogrande": ("allenai/winogrande", "winogrande_xl", "validation"), "gsm8k": ("openai/gsm8k", "main", "test")}


def eval_results(rd: RunDir, model: str, leaderboard: bool = True, mtbench: bool = True) -> list:
    from huggingface_hub import EvalResult

    from .report.render import metric_name
    out = []
    lb_path = rd.leaderboard(model)
    if leaderboard and lb_path.exists():
        lb = read("leaderboard", lb_path)
        key = "normalised" if lb.get("normalised") else "value"
        for entry, t in lb["tasks"].items():
            hub, config, split = DATASETS.get(entry, (entry, None, None))
            out.append(EvalResult(task_type="text-generation", task_name=entry, dataset_type=hub, dataset_name=entry,
                                  dataset_config=config, dataset_split=split,
                                  dataset_args={"num_few_shot": t.get("n_shot")} if t.get("n_shot") is not None else None,
                                  metric_type=t["metric"], metric_name=metric_name(t),
                                  metric_value=round(100 * t[key], 4)))
    mt_path = rd.mtbench_files(model).summary
    if mtbench and mt_path.exists():
        mt = read("mtbench_summary", mt_path)
        if mt.get("mode", "single") == "single" and mt.get("overall") is not None:
            out.append(EvalResult(task_type="text-generation", task_name="MT-Bench", dataset_type="lmsys/mt_bench_human_judgments",
                                  dataset_name="MT-Bench", metric_type="mt_bench_score",
                                  metric_name=f"MT-Bench rating (judge {mt.get('judge')})",
                                  metric_value=round(mt["overall"], 4)))
    return out


def _contamination_lines(rd: RunDir, model: str, checked: bool = True) -> list[str]:
    path = rd.contamination(model)
    if not checked or not path.exists():
        return ["Not checked."]
    rec = read("contamination", path)
    lines = [f"Reference-based check (Shi 2023), reference `{rec.get('reference')}`; result = share of examples "
             "with s(x) < 0.1, beside the same statistic for the control:", "",
             "| benchmark | result | control | verdict |", "|---|---|---|---|"]
    for bench, b in rec.get("benchmarks", {}).items():
        verdict = b.get("verdict") or ("higher than the control" if b["result"] > b["control_ci"][1] else
                                       "not above the control")
        lines.append(f"| {bench} | {b['result']:.2f} | {b['control']:.2f} | {verdict} |")
    return lines


def card_text(rd: RunDir, exp_name: str, variant: str, base_model: str, scored: frozenset = frozenset(
        ("leaderboard", "mtbench", "contamination"))) -> str:
    """The card; `scored`: the eval sections that score this variant now (a result left from a
    section that no longer does may be of weights retrained since: not shown)."""
    from huggingface_hub import ModelCard, ModelCardData
    meta = rd.read("evalkit", variant=variant)
    results = eval_results(rd, variant, "leaderboard" in scored, "mtbench" in scored)
    data = ModelCardData(base_model=base_model if "/" in base_model and not Path(base_model).exists() else None,
                         library_name="transformers", pipeline_tag="text-generation",
                         tags=["evalkit", meta.get("loss", "dpo"), "preference-tuning"],
                         model_name=f"{exp_name}/{variant}", eval_results=results or None)
    hp = meta.get("hyperparameters") or {}
    d = meta.get("data") or {}
    s = meta.get("logps_summary") or {}
    recipe = ", ".join(f"{k} {hp[k]}" for k in ("loss", "beta", "lambda", "learning_rate", "max_steps", "epochs",
                                                   "batch_size", "max_length") if hp.get(k) is not None)
    body = [f"# {exp_name}/{variant}", "",
            f"Trained by evalkit from `{meta.get('base_model')}` with {meta.get('loss')} "
            + ("(maximum likelihood, no reference model)." if meta.get("loss") == "sft"
               else f"(reference: `{meta.get('reference_model')}`)."), "",
            "## Training recipe", "", f"- {recipe}", f"- seed {meta.get('seed')}, steps {meta.get('steps')}",
            f"- data: {d.get('dataset')} ({d.get('n_pairs')} pairs), fingerprint `{d.get('fingerprint')}`",
            (f"- mean log-prob, per part (start: the model before it): {logps_line(s)}"
             if any(k.startswith("per_") for k in s) else
             f"- mean log-prob of the chosen completions: {s.get('chosen_start', float('nan')):.2f} (start, "
             f"{'the policy before training' if meta.get('loss') == 'sft' else 'the reference'}) -> "
             f"{s.get('chosen_end', float('nan')):.2f} (end)" + (
                 f"; rejected {s['rejected_start']:.2f} -> {s['rejected_end']:.2f}" if "rejected_start" in s else "")),
            *(f"- warning: {w}" for w in meta.get("warnings") or []),
            *([f"- base: {c['note']} (GGUF sha256 `{c['gguf_sha256']}`)"]
              if (c := known_models.card(meta.get("base_model") or "")) else []), "",
            "## Evaluation", ""]
    lb_path = rd.leaderboard(variant)
    if "leaderboard" in scored and lb_path.exists():
        lb = read("leaderboard", lb_path)
        body.append(f"Leaderboard suite `{lb.get('suite')}` ({lb.get('protocol')}), values x100."
                    + ("" if lb.get("comparable", True) else " Not comparable with published numbers: "
                       + "; ".join(lb.get("comparable_reasons") or []) + "."))
        body.append("")
    if results:
        body += ["| benchmark | metric | value |", "|---|---|---|"]
        body += [f"| {r.task_name} | {r.metric_name} | {r.metric_value:.2f} |" for r in results]
    else:
        body.append("Not evaluated.")
    body += ["", "## Contamination", "", *_contamination_lines(rd, variant, "contamination" in scored), ""]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(body)).content


def write_cards(rd: RunDir, exp) -> list[Path]:
    """README.md in every trained checkpoint of the experiment (skips variants not trained)."""
    base = exp.base_model if isinstance(exp.base_model, str) else "evalkit tiny model"
    out = []
    for v in exp.variants:
        if not rd.train_metadata(v.name).exists():
            continue
        path = rd.checkpoint_files(v.name).model_card
        scored = frozenset(k for k in ("leaderboard", "mtbench", "contamination")
                           if getattr(exp.eval, k) is not None and v.name in exp.scored(k))
        atomic_write_text(path, card_text(rd, exp.name, v.name, base, scored))
        out.append(path)
    return out
