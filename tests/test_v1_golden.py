"""Golden prompt invariants: evalkit's archived v1 suite builds, through lm-eval, exactly the
requests lm-evaluation-harness b281b09 built (tests/golden/open_llm_v1_archived.json, recorded by
tests/golden/record_v1_prompts.py from the archived code itself).

Compared byte for byte, per task and doc, in the archived order: every context string (few-shot
examples, their order and the draws of random.Random(42) after the doc shuffle included), every
continuation, GSM8K's stop sequences; then the per-doc metrics both compute from the same fake
log-likelihoods / canned generations (acc, acc_norm, mc2, GSM8K's extracted answer and acc).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from evalkit.eval import open_llm_v1 as v1
from evalkit.eval.suites import Suite, load_suite, write_task_yamls

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = json.loads((GOLDEN_DIR / "open_llm_v1_archived.json").read_text())
SHARED_GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
sys.path.insert(0, str(GOLDEN_DIR))
import record_v1_prompts as recorder  # noqa: E402  (its helpers only; the archived code is not imported)


def write_docs(root: Path, docs: dict) -> Path:
    for folder, splits in docs.items():
        for split, rows in splits.items():
            path = root / folder / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def suite_with(task_names) -> Suite:
    """open_llm_v1 cut down to the given lm-eval tasks (same shots, same task files)."""
    suite = load_suite("open_llm_v1")
    entries = []
    for e in suite.entries:
        refs = [t for t in e.tasks if t.task in task_names]
        if refs:
            entries.append(e.model_copy(update={"tasks": refs}))
    return suite.model_copy(update={"entries": entries})


def build(tmp: Path, docs: dict, names, limit_of) -> dict:
    """lm-eval tasks from evalkit's generated YAML, requests built as simple_evaluate builds them."""
    from lm_eval.tasks import TaskManager
    data = write_docs(tmp / "data", docs)
    names = write_task_yamls(suite_with(set(names)), tmp / "tasks", data)
    tasks = TaskManager(include_path=str(tmp / "tasks"), include_defaults=False).load(names)["tasks"]
    for name, task in tasks.items():
        task.set_fewshot_seed(1234)  # simple_evaluate passes its seed; the archived generator must win
        task.build_all_requests(limit=limit_of(name))
    return tasks


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return build(tmp_path_factory.mktemp("v1golden"), GOLDEN["docs"], GOLDEN["tasks"],
                 lambda name: GOLDEN["tasks"][name]["limit"])


def evalkit_requests(task) -> list[dict]:
    rows = []
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        ctx, second = inst.arguments[0], inst.arguments[1]
        if inst.request_type == "generate_until":
            rows.append({"doc": inst.doc_id, "type": "greedy_until", "context": ctx, "until": list(second["until"])})
        else:
            rows.append({"doc": inst.doc_id, "type": "loglikelihood", "context": ctx, "continuation": second})
    return rows


def golden_requests(recorded: dict) -> list[dict]:
    return [{**r, "context": recorded["contexts"][r["context"]]} for r in recorded["requests"]]


def assert_same_requests(name: str, ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs), f"{name}: {len(ours)} requests, archived {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        for key in b:
            if a.get(key) != b[key]:
                x, y = str(a.get(key)), str(b[key])
                at = next((j for j in range(min(len(x), len(y))) if x[j] != y[j]), min(len(x), len(y)))
                pytest.fail(f"{name} request {i} (doc {b['doc']}) {key} differs at char {at}:\n"
                            f"  evalkit : {x[max(0, at - 60):at + 60]!r}\n  archived: {y[max(0, at - 60):at + 60]!r}")


def doc_metrics(task, golds: dict[str, str]) -> list[dict]:
    """Per doc, what the evalkit task computes from the recorder's fake model."""
    by_doc: dict[int, list] = {}
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        by_doc.setdefault(inst.doc_id, []).append(inst)
    out = []
    for _, insts in sorted(by_doc.items()):
        doc = insts[0].doc
        if insts[0].request_type == "generate_until":
            ctx, kwargs = insts[0].arguments
            cut = recorder.split_at_stops(recorder.fake_generation(ctx, golds), kwargs["until"])
            extracted = v1.gsm8k_filter([[cut]], [doc])[0]
            m = task.process_results(doc, extracted)
            out.append({"acc": m["acc"], "extracted": extracted[0], "generation": cut})
        else:
            results = [(recorder.fake_loglikelihood(*i.arguments), False) for i in insts]
            m = task.process_results(doc, results)
            out.append({k: float(v) for k, v in m.items()})
    return out


ALL = sorted(GOLDEN["tasks"])


@pytest.mark.parametrize("name", ALL)
def test_requests_match_the_archived_harness(tasks, name):
    assert_same_requests(name, evalkit_requests(tasks[name]), golden_requests(GOLDEN["tasks"][name]))


@pytest.mark.parametrize("name", ALL)
def test_per_doc_metrics_match_the_archived_harness(tasks, name):
    golds = recorder.gold_by_question(GOLDEN["docs"]["openai/gsm8k/main"]["test"])
    ours = doc_metrics(tasks[name], golds)
    theirs = GOLDEN["tasks"][name]["metrics"]
    if name == "v1_truthfulqa_mc":  # the archived task calls mc2 "mc2"; the v1 entry scores it as acc
        theirs = [{"acc": m["mc2"]} for m in theirs]
    # mc2 sums probabilities in numpy: the last bit follows numpy's summation order (1 ulp
    # seen, 0.2895817696906962 vs ...616); every other metric is exact
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() and all(
            a[k] == pytest.approx(b[k], rel=1e-12, abs=0) if isinstance(b[k], float) else a[k] == b[k] for k in b), (a, b)


def test_gsm8k_stops_and_answer_extraction(tasks):
    until = tasks["v1_gsm8k"].config.generation_kwargs["until"]
    assert until == v1.GSM8K_STOP == GOLDEN["tasks"]["v1_gsm8k"]["requests"][0]["until"]
    for row in GOLDEN["gsm8k_answers"]:
        cut = recorder.split_at_stops(row["generation"], until)
        assert cut == row["after_stops"]
        extracted = v1.gsm8k_filter([[cut]], [{}])[0]
        assert extracted[0] == row["extracted"], row
        assert v1.gsm8k_process_results({"answer": row["gold_answer"]}, extracted)["acc"] == row["acc"], row


def test_real_gsm8k_items(tmp_path):
    if not (SHARED_GSM8K / "train_sample.jsonl").exists():
        pytest.skip(f"real GSM8K items not found at {SHARED_GSM8K} (../shared/data/gsm8k)")
    read = lambda f: [json.loads(x) for x in (SHARED_GSM8K / f).read_text().splitlines() if x.strip()]  # noqa: E731
    real = {"openai/gsm8k/main": {"train": read("train_sample.jsonl"), "test": read("test_sample.jsonl")}}
    recorded = GOLDEN["gsm8k_real"]
    task = build(tmp_path, real, ["v1_gsm8k"], lambda _: recorded["limit"])["v1_gsm8k"]
    assert_same_requests("v1_gsm8k (real items)", evalkit_requests(task), golden_requests(recorded))
    assert doc_metrics(task, recorder.gold_by_question(real["openai/gsm8k/main"]["test"])) == recorded["metrics"]


def test_lm_eval_04_differs_only_where_documented(tmp_path):
    """The same docs through lm-eval's own tasks (open_llm_v1_lmeval): prompts and continuations
    per doc are the archived ones, MMLU and TruthfulQA are identical request for request, while
    the few-shot draws (ARC, HellaSwag, Winogrande, GSM8K) and GSM8K's stops are not."""
    from lm_eval.tasks import TaskManager
    pairs = {"arc_challenge": "v1_arc_challenge", "hellaswag": "v1_hellaswag", "winogrande": "v1_winogrande",
             "mmlu_anatomy": "v1_hendrycksTest-anatomy", "truthfulqa_mc2": "v1_truthfulqa_mc", "gsm8k": "v1_gsm8k"}
    full = load_suite("open_llm_v1_lmeval")
    entries = [e.model_copy(update={"tasks": [t for t in e.tasks if t.task in pairs]})
               for e in full.entries if any(t.task in pairs for t in e.tasks)]
    names = write_task_yamls(full.model_copy(update={"entries": entries}), tmp_path / "tasks",
                             write_docs(tmp_path / "data", GOLDEN["docs"]))
    built = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False).load(names)["tasks"]

    def key(rows, whole):
        return sorted((r["context"] if whole else r["context"].rsplit("\n\n", 1)[-1],
                       str(r.get("continuation")), str(r.get("until"))) for r in rows)
    for name, task in built.items():
        task.set_fewshot_seed(1234)
        task.build_all_requests()
        ours, archived = evalkit_requests(task), golden_requests(GOLDEN["tasks"][pairs[name]])
        if name == "gsm8k":
            assert ours[0]["until"] == ["Question:", "</s>", "<|im_end|>"] != archived[0]["until"]
            last = [sorted(r["context"].rsplit("\n\n", 1)[-1] for r in rows) for rows in (ours, archived)]
            assert last[0] == last[1] and len(last[0]) == 3
        elif name in ("mmlu_anatomy", "truthfulqa_mc2"):
            assert key(ours, whole=True) == key(archived, whole=True), name
        else:  # same doc prompts and continuations, other few-shot examples
            assert key(ours, whole=False) == key(archived, whole=False), name
            assert key(ours, whole=True) != key(archived, whole=True), name
