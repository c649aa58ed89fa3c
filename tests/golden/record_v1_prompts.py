"""Record what lm-evaluation-harness b281b09 (Open LLM Leaderboard v1) builds, into golden files.

Run only by hand:  .venv/bin/python tests/golden/record_v1_prompts.py
It imports the archived files from ../shared/reference/lm-evaluation-harness-b281b09 (relative to
the repository root; --reference to point elsewhere) and drives them through the archived
`evaluator.evaluate` with a recording language model, so docs are shuffled and few-shot examples
drawn by the archived code itself. tests/test_v1_golden.py rebuilds evalkit's requests through
lm-eval and compares them with these files byte for byte.

Recorded per task: every request (context, continuation or stop sequences) for a fixed set of
docs, and the per-doc metrics the archived process_results computes from deterministic fake
log-likelihoods / canned generations (so answer extraction and mc2 are pinned too).
Docs: evalkit's sample data in each task's hub schema (stored in the golden file, so the test does
not depend on the generators staying the same), and real GSM8K items from ../shared/data/gsm8k
(not stored: only the strings the archived code builds from them).

The archived code imports packages it does not use for these tasks or that this environment does
not have (omegaconf, the hub `datasets` loader, sqlitedict, lm_eval.models/lm_eval.tasks); they are
stubbed here, in this script only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import types
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference" / "lm-evaluation-harness-b281b09"
DEFAULT_GSM8K = REPO.parent / "shared" / "data" / "gsm8k"
OUT = Path(__file__).resolve().parent / "open_llm_v1_archived.json"
SCHEMA_VERSION = 1

# (archived task class, its shots on the v1 leaderboard, docs, how many eval docs to record)
MMLU_SUBJECTS = ["anatomy", "high_school_government_and_politics"]
GSM8K_COMPLETIONS = [  # canned generations: stops, commas, a trailing dot, no answer, two answers
    " She has 3 + 4 = 7 apples.\n#### {gold_commas}\n\nQuestion: next",
    " 6 * 7 = 42\n#### {gold}.",
    " The answer is: {gold}\n#### {gold}",
    " #### {gold_commas} dollars",
    " I do not know.",
    " 2 + 2 = 4\n#### 4 and then #### {gold}",
    " 5 * 5 = 25\n#### {gold}",
]


def fake_loglikelihood(context: str, continuation: str) -> float:
    """Deterministic stand-in for a model: a function of the two strings only."""
    return -(0.25 * len(continuation) + (zlib.crc32((context + "\x00" + continuation).encode()) % 997) / 97.0)


def fake_generation(context: str, gold_by_question: dict[str, str]) -> str:
    """A canned generation for a GSM8K prompt, some with the doc's gold answer in them."""
    question = context.rsplit("Question: ", 1)[-1].rsplit("\nAnswer:", 1)[0]
    gold = gold_by_question[question].rsplit("#### ", 1)[-1].strip()
    commas = f"{int(gold):,}" if gold.lstrip("-").isdigit() else gold
    template = GSM8K_COMPLETIONS[zlib.crc32(context.encode()) % len(GSM8K_COMPLETIONS)]
    return template.format(gold=gold, gold_commas=commas)


def split_at_stops(text: str, until: list[str]) -> str:
    """What the archived (and lm-eval's) HF backend does with a generation and the stop list."""
    for term in until:
        text = text.split(term)[0]
    return text


# ---------------------------------------------------------------- importing the archived code

def import_archived(reference: Path, splits_for: dict):
    """The archived lm_eval package, with stubs for what it imports but these tasks do not use."""
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        del sys.modules[name]
    stub = types.ModuleType
    omegaconf = stub("omegaconf")
    omegaconf.OmegaConf = object
    sys.modules["omegaconf"] = omegaconf
    datasets = stub("datasets")

    def load_dataset(path=None, name=None, **kwargs):
        return json.loads(json.dumps(splits_for[(path, name)]))  # a copy: archived code mutates docs
    datasets.load_dataset = load_dataset
    sys.modules["datasets"] = datasets  # the hub loader: docs come from `splits_for`
    pkg = stub("lm_eval")
    pkg.__path__ = [str(reference / "lm_eval")]
    sys.modules["lm_eval"] = pkg
    for sub in ("models", "tasks"):  # evaluator imports them; tasks get loaded below by file
        m = stub(f"lm_eval.{sub}")
        m.__path__ = [str(reference / "lm_eval" / sub)] if sub == "tasks" else []
        sys.modules[f"lm_eval.{sub}"] = m
        setattr(pkg, sub, m)

    def load(modname: str):
        path = reference / "lm_eval" / (modname.replace(".", "/") + ".py")
        spec = importlib.util.spec_from_file_location(f"lm_eval.{modname}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"lm_eval.{modname}"] = module
        if "." not in modname:
            setattr(pkg, modname, module)
        spec.loader.exec_module(module)
        return module
    mods = {n: load(n) for n in ("utils", "metrics", "base")}
    for t in ("arc", "hellaswag", "hendrycks_test", "truthfulqa", "winogrande", "gsm8k"):
        mods[t] = load(f"tasks.{t}")
        setattr(sys.modules["lm_eval.tasks"], t, mods[t])
    mods["evaluator"] = load("evaluator")
    return mods


class RecordingLM:
    """Stands where the archived HF model stood: records each request, answers deterministically."""

    def __init__(self, gold_by_question: dict[str, str]):
        self.requests = []
        self.gold_by_question = gold_by_question

    def loglikelihood(self, requests):
        out = []
        for context, continuation in requests:
            self.requests.append({"type": "loglikelihood", "context": context, "continuation": continuation})
            out.append((fake_loglikelihood(context, continuation), False))
        return out

    def greedy_until(self, requests):
        out = []
        for context, args in requests:
            until = args["until"]
            self.requests.append({"type": "greedy_until", "context": context, "until": list(until)})
            out.append(split_at_stops(fake_generation(context, self.gold_by_question), until))
        return out


def gold_by_question(rows: list[dict]) -> dict[str, str]:
    return {r["question"]: r["answer"] for r in rows if "answer" in r and isinstance(r["answer"], str)}


def run_archived(mods, task, shots: int, limit: int | None, golds: dict[str, str] | None = None) -> dict:
    """Drive one task through the archived evaluator; requests and per-doc metrics in doc order."""
    lm = RecordingLM(golds or {})
    per_doc = []
    real = task.process_results

    def recording(doc, results):
        metrics = real(doc, results)
        row = {k: (float(v) if not isinstance(v, str) else v) for k, v in metrics.items() if k != "mc1"}
        if hasattr(task, "_extract_answer"):
            row["extracted"] = task._extract_answer(results[0])
            row["generation"] = results[0]
        per_doc.append(row)
        return metrics
    task.process_results = recording
    doc_of_request: list[tuple[int, str]] = []  # (doc index, part) per request, in build order
    build = task.construct_requests

    def counting(doc, ctx):
        reqs = build(doc, ctx)
        n = len(reqs) if isinstance(reqs, (list, tuple)) else 1
        n_mc1 = len(doc["mc1_targets"]["choices"]) if "mc1_targets" in doc else 0
        ids = len({d for d, _ in doc_of_request})
        doc_of_request.extend((ids, "mc1" if i < n_mc1 else "") for i in range(n))
        return reqs
    task.construct_requests = counting
    mods["evaluator"].evaluate(lm=lm, task_dict={"t": task}, num_fewshot=shots, limit=limit,
                               bootstrap_iters=10)
    # requests in the order the archived code built them (the evaluator groups them by type)
    contexts: list[str] = []
    rows = []
    assert len(doc_of_request) == len(lm.requests)
    for r, (doc_index, part) in zip(lm.requests, doc_of_request):
        if part == "mc1":  # TruthfulQA: v1 reported mc2; the mc1 requests are not rebuilt
            continue
        if r["context"] not in contexts:
            contexts.append(r["context"])
        row = {"doc": doc_index, "type": r["type"], "context": contexts.index(r["context"])}
        row.update({k: v for k, v in r.items() if k in ("continuation", "until")})
        rows.append(row)
    return {"shots": shots, "limit": limit, "contexts": contexts, "requests": rows, "metrics": per_doc}


# ---------------------------------------------------------------- docs

def sample_docs() -> dict:
    """evalkit's sample data in hub schema: {lm-eval dataset key: {split: rows}}."""
    import tempfile

    from evalkit.eval.sample_data import write_open_llm_v1
    with tempfile.TemporaryDirectory() as d:
        root = write_open_llm_v1(d, n_eval=6, seed=0)
        docs = {}
        for f in sorted(root.rglob("*.jsonl")):
            rel = f.relative_to(root)
            folder = str(rel.parent)
            if folder.startswith("cais/mmlu/") and rel.parent.name not in MMLU_SUBJECTS:
                continue
            docs.setdefault(folder, {})[f.stem] = [json.loads(x) for x in f.read_text().splitlines()]
    return docs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not (args.reference / "lm_eval" / "base.py").exists():
        print(f"archived harness not found at {args.reference}", file=sys.stderr)
        return 2
    docs = sample_docs()
    real_gsm8k = {"train": read_jsonl(args.gsm8k / "train_sample.jsonl"),
                  "test": read_jsonl(args.gsm8k / "test_sample.jsonl")}
    splits_for = {
        ("ai2_arc", "ARC-Challenge"): docs["allenai/ai2_arc/ARC-Challenge"],
        ("hellaswag", None): docs["Rowan/hellaswag/default"],
        ("truthful_qa", "multiple_choice"): docs["truthfulqa/truthful_qa/multiple_choice"],
        ("winogrande", "winogrande_xl"): docs["allenai/winogrande/winogrande_xl"],
        ("gsm8k", "main"): docs["openai/gsm8k/main"],
        **{("cais/mmlu", s): docs[f"cais/mmlu/{s}"] for s in MMLU_SUBJECTS},
    }
    mods = import_archived(args.reference, splits_for)
    tasks = {
        "v1_arc_challenge": (mods["arc"].ARCChallenge(), 25, None),
        "v1_hellaswag": (mods["hellaswag"].HellaSwag(), 10, None),
        **{f"v1_hendrycksTest-{s}": (mods["hendrycks_test"].create_task(s)(), 5, None) for s in MMLU_SUBJECTS},
        "v1_truthfulqa_mc": (mods["truthfulqa"].TruthfulQAMultipleChoice(), 0, None),
        "v1_winogrande": (mods["winogrande"].Winogrande(), 5, None),
        "v1_gsm8k": (mods["gsm8k"].GradeSchoolMath8K(), 5, None),
    }
    golds = gold_by_question(docs["openai/gsm8k/main"]["test"])
    recorded = {name: run_archived(mods, task, shots, limit, golds) for name, (task, shots, limit) in tasks.items()}
    # real GSM8K items: the same archived task over ../shared/data/gsm8k's files, first 5 shuffled docs
    splits_for[("gsm8k", "main")] = real_gsm8k
    real = run_archived(mods, mods["gsm8k"].GradeSchoolMath8K(), 5, 5, gold_by_question(real_gsm8k["test"]))
    real["data"] = "../shared/data/gsm8k (train_sample.jsonl as train, test_sample.jsonl as test)"
    # answer extraction over every canned completion, for a gold with and without thousands
    gsm = mods["gsm8k"].GradeSchoolMath8K()
    until = recorded["v1_gsm8k"]["requests"][0]["until"]
    answers = []
    for gold in ("1234", "-3000", "42"):
        doc_answer = f"Some working.\n#### {gold}"
        for template in GSM8K_COMPLETIONS:
            commas = f"{int(gold):,}"
            raw = template.format(gold=gold, gold_commas=commas)
            cut = split_at_stops(raw, until)
            answers.append({"gold_answer": doc_answer, "generation": raw, "after_stops": cut,
                            "extracted": gsm._extract_answer(cut), "acc": float(gsm._is_correct(cut, doc_answer))})
    golden = {
        "schema_version": SCHEMA_VERSION,
        "archived": "lm-evaluation-harness b281b0921b636bc36ad05c0b0b0763bd6dd43463",
        "recorded_by": "tests/golden/record_v1_prompts.py",
        "fake_model": "fake_loglikelihood / fake_generation in the recording script (tests repeat them)",
        "gsm8k_completions": GSM8K_COMPLETIONS,
        "docs": docs,
        "tasks": recorded,
        "gsm8k_real": real,
        "gsm8k_answers": answers,
    }
    args.out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size // 1024} KiB): " + ", ".join(
        f"{k} {len(v['requests'])} requests" for k, v in recorded.items()) + f", gsm8k_real {len(real['requests'])}")
    return 0


if __name__ == "__main__":
    random.seed(0)  # nothing here should depend on it; the archived evaluator seeds its own generators
    sys.exit(main())
