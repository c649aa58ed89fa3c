"""A result directory in every documented schema, with hostile model text in it."""
from __future__ import annotations

import json
from pathlib import Path

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def _w(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _jl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def leaderboard(model: str, arc: float, gsm: float, mmlu: tuple[float, float], limit=None) -> dict:
    return {"schema_version": 1, "suite": "open_llm_v1_lmeval", "backend": "hf", "lm_eval_version": "0.4.13",
            "protocol": "Open LLM Leaderboard v1 tasks, shots and metrics on lm-eval's built-in tasks",
            "model": model, "dtype": "auto", "batch_size": "16", "apply_chat_template": False, "limit": limit,
            # as a run on local data reads: a long absolute path in the reason
            "comparable": False, "comparable_reasons": ([f"limit: {limit} documents per task"] if limit else []) + [
                "local data (/home/someone/projects/evalkit-experiments/reports/demo/sample_data/leaderboard), "
                "not the benchmark's published splits"],
            "normalised": False, "samples_dir": "leaderboard_samples",
            "tasks": {"arc_challenge": {"metric": "acc_norm", "value": arc, "stderr": 0.05, "n_shot": 25,
                                        "n_samples": 100, "version": 1.0, "aggregate": "single"},
                      "mmlu": {"metric": "acc", "value": sum(mmlu) / 2, "stderr": 0.04, "n_shot": 5, "n_samples": 100,
                               "version": 1.0, "aggregate": "unweighted_mean",
                               "subtasks": {"mmlu_anatomy": {"value": mmlu[0], "stderr": 0.05, "n_samples": 50},
                                            "mmlu_virology": {"value": mmlu[1], "stderr": 0.05, "n_samples": 50}}},
                      "gsm8k": {"metric": "exact_match,strict-match", "value": gsm, "stderr": 0.03, "n_shot": 5,
                                "n_samples": 100, "version": 3.0, "aggregate": "single"}},
            "average": (arc + sum(mmlu) / 2 + gsm) / 3}


def samples(n_ones: int, n: int, metric: str, flt: str = "none") -> list[dict]:
    return [{"doc_id": i, "filter": flt, "metrics": [metric], metric: 1.0 if i < n_ones else 0.0} for i in range(n)]


def build(root: Path) -> Path:
    reports = root / "reports" / "fx"
    ck = root / "checkpoints" / "fx"
    manifest = {"schema_version": 1, "experiment": "fx", "created": "2026-11-01T00:00:00", "updated": "2026-11-02T00:00:00",
                "config": {"name": "fx", "base_model": "org/base-7b", "variants": [{"name": "dpo"}, {"name": "dpop"}],
                           "report": {"title": "Fixture report", "published": "smaug"}},
                "versions": {"python": "3.11", "torch": "2.13"}, "git_sha": "abc123",
                "hardware": {"platform": "Linux", "cpu_count": 2},
                "stages": {"train:dpo": {"status": "done", "path": str(ck / "dpo")},
                           "train:dpop": {"status": "done", "path": str(ck / "dpop")}}}
    _w(reports / "manifest.json", manifest)
    for model, arc_ones, gsm_ones, limit in (("base", 30, 10, None), ("dpo", 60, 10, None), ("dpop", 45, 12, 100)):
        _w(reports / model / "leaderboard.json",
           leaderboard(model, arc_ones / 100, gsm_ones / 100, (0.4, 0.6 if model != "base" else 0.5), limit))
        _jl(reports / model / "leaderboard_samples" / "arc_challenge.jsonl", samples(arc_ones, 100, "acc_norm"))
        _jl(reports / model / "leaderboard_samples" / "gsm8k.jsonl",
            samples(gsm_ones, 100, "exact_match", "strict-match") + samples(50, 100, "exact_match", "flexible-extract"))
        for subj, ones in (("mmlu_anatomy", 20), ("mmlu_virology", 30 if model != "base" else 25)):
            _jl(reports / model / "leaderboard_samples" / f"{subj}.jsonl", samples(ones, 50, "acc"))
    for model, res in (("dpo", 0.12), ("dpop", 0.34)):
        _w(reports / model / "contamination.json", {
            "schema_version": 1, "method": "reference-based",
            "parameters": {"method": "shi2023", "n_neighbours": 100, "n_examples": 4, "ratio_gen": 0.4, "threshold": 0.1},
            "target": f"checkpoints/fx/{model}", "reference": "org/base-7b", "control": "org/base-7b",
            "control_kind": "reference as target",
            "benchmarks": {"gsm8k": {"result": res, "control": 0.05, "ci": [res - 0.05, res + 0.05],
                                     "control_ci": [0.0, 0.1], "n_examples": 4, "per_example": "contamination_gsm8k.jsonl",
                                     "signals": {"ppl": 7.5, "min_k_prob": -5.25}}}})
        _jl(reports / model / "contamination_gsm8k.jsonl",
            [{"id": str(i), "text": XSS, "score": s, "control_score": 0.5} for i, s in enumerate([0.0, 0.3, 0.6, 0.9])])
    _w(reports / "ngram_overlap.json", {"schema_version": 1, "n": 13, "datasets": {"pairs": {"source": "x", "n_rows": 10,
        "benchmarks": {"gsm8k": {"n": 13, "n_items": 40, "n_dirty": 3, "share": 0.075, "dirty_ids": ["7", "9", "11"]}}}}})
    for model, t1, t2 in (("base", 5.5, 4.25), ("dpo", 6.0, 5.0)):
        mt = reports / model / "mtbench"
        _w(mt / "summary.json", {"schema_version": 1, "mode": "single", "judge": "judge", "turn_1": t1, "turn_2": t2, "overall": (t1 + t2) / 2,
                                 "per_category": {"math": t1, "writing": t2}, "failed_parses": 1 if model == "dpo" else 0,
                                 "errors": 0, "tokens": {"prompt": 1000, "completion": 200}, "cost": 0.0123,
                                 "judgments_file": "model_judgment/judge_single.jsonl",
                                 "answers_file": f"model_answer/{model}.jsonl"})
        _jl(mt / "questions.jsonl", [{"question_id": 81, "category": "writing", "turns": ["Write a poem " + XSS, "Shorter."]}])
        _jl(mt / "model_answer" / f"{model}.jsonl", [{"question_id": 81, "answer_id": "a", "model_id": model, "tstamp": 0,
                                    "choices": [{"index": 0, "turns": [f"Answer from {model}: {XSS}", "Short."]}]}])
        _jl(mt / "model_judgment" / "judge_single.jsonl", [{"question_id": 81, "model": model, "judge": ["judge", "single-v1"], "turn": 1,
                                      "score": 6, "judgment": "Rating: [[6]] " + XSS, "user_prompt": "...", "tstamp": 0}])
    for v, start, end in (("dpo", -30.0, -45.5), ("dpop", -30.0, -28.25)):
        _w(ck / v / "evalkit.json", {"schema_version": 1, "variant": v, "loss": v, "steps": 20,
                                     "hyperparameters": {"beta": 0.3, "lambda": 50.0},
                                     "data": {"n_pairs": 64, "edit_distance": {"median": 4, "min": 4, "max": 6}},
                                     "logps_summary": {"chosen_start": start, "chosen_end": end,
                                                       "rejected_start": -31.0, "rejected_end": -60.0},
                                     "warnings": ["chosen fell"] if v == "dpo" else [],
                                     "heldout": {"n_pairs": 8, "pairs": [f"pairs.jsonl:{i}" for i in range(8)],
                                                 "reduction": "sum", "unseen": "next prompt's chosen",
                                                 "start": {"chosen": -31.5, "rejected": -32.5, "unseen": -70.0},
                                                 "end": {"chosen": start - 7.25, "rejected": -61.0, "unseen": -66.5}},
                                     "post_edit": {"n_pairs": 56, "max_relative_edit": 0.25, "edit_distance_median": 3,
                                                   "reduction": "mean per token after the first differing token",
                                                   "start": {"chosen": -0.412, "rejected": -0.533},
                                                   "end": {"chosen": -0.875 if v == "dpo" else -0.321, "rejected": -1.625}}})
        _jl(ck / v / "train_metrics.jsonl", [{"schema_version": 2, "step": s, "loss": 0.69 - s / 100, "logps_chosen": start - s / 10,
                                              "logps_rejected": -31 - s, "reward_margin": s / 10, "reward_accuracy": 0.5,
                                              "penalty_active": 0.3 if v == "dpop" else None,
                                              "heldout_logps_chosen": -31.5 - s / 5, "heldout_logps_rejected": -32.5 - s,
                                              "heldout_logps_unseen": -70 + s / 10} for s in (5, 10, 15, 20)])
    return reports
