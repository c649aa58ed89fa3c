"""Open LLM Leaderboard v1 as the leaderboard ran it: lm-evaluation-harness commit b281b09.

The v1 leaderboard ran `main.py --model=hf-causal-experimental --batch_size=1` at that commit.
Its task code differs from today's lm-eval in a few places that change scores; this module
rebuilds that protocol as lm-eval 0.4 task pieces, referenced by the task YAML packaged in
evalkit/data/tasks/open_llm_v1/, so the requests still run through lm-eval's backends.

What is reproduced, per piece of the archived code:
1. Few-shot sampling (evaluator.evaluate + base.Task.fewshot_examples): one random.Random
   seeded 42 per task first shuffles the evaluation docs, then draws `rnd.sample(train, k)`
   for each doc in the shuffled order. `ArchivedTask` shuffles the eval docs the same way and
   hands the same generator, in the same state, to `ArchivedSampler`. lm-eval's own tasks
   keep the docs in order and draw from random.Random(fewshot_random_seed) instead.
   MMLU (hendrycksTest) takes the first k dev docs and draws nothing.
2. Per-task doc processing and prompts: `*_process_doc` mirror the archived `_process_doc`.
3. GSM8K: stop at ":", "Question:", "Question"; answer = first `#### N` with commas removed,
   compared as a string with the gold's (no "$" or trailing "." stripping, case kept).
4. TruthfulQA mc2: the archived split-at-first-false-label normalisation.
5. Winogrande's partial scoring and HellaSwag's preprocessing equal lm-eval 0.4's; they are
   restated here so the protocol does not move when lm-eval's files do.
"""
from __future__ import annotations

import random
import re

import numpy as np
from lm_eval.api.samplers import ContextSampler
from lm_eval.api.task import ConfigurableTask

ARCHIVED_COMMIT = "b281b0921b636bc36ad05c0b0b0763bd6dd43463"
ARCHIVED_SEED = 42  # evaluator.evaluate: rnd = random.Random(); rnd.seed(42)


# ---------------------------------------------------------------- sampling (evaluator.py, base.py)

class ArchivedSampler(ContextSampler):
    """base.Task.fewshot_examples: `rnd.sample(training_docs, k)`, no exclusion of the eval doc
    (every v1 task with shots draws from a split other than the one it scores)."""

    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if n == 0:
            return []
        return self.rnd.sample(self.fewshot_docs(), n)

    def set_rnd(self, rnd):  # the task owns the generator (see ArchivedTask.set_fewshot_seed)
        return self


def archived_generator(n_eval_docs: int) -> tuple[random.Random, list[int]]:
    """(the generator after the archived shuffle, the shuffled doc order)."""
    rnd = random.Random()
    rnd.seed(ARCHIVED_SEED)
    order = list(range(n_eval_docs))
    rnd.shuffle(order)  # consumes the generator exactly as shuffling the docs themselves does
    return rnd, order


class ArchivedTask(ConfigurableTask):
    """A ConfigurableTask whose eval docs and few-shot draws follow b281b09's evaluator.

    The few-shot seed lm-eval passes in is ignored: the archived run always used 42, and the
    draw for a doc depends on every draw before it, as it did there. So the draws match only
    when one process builds every doc's context in order (evalkit's hf/vllm/api runs do; a
    multi-process accelerate run, where each rank builds a strided share, would not).
    """

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        self._shuffled = None
        super().__init__(config=config, **kwargs)
        self.set_fewshot_seed(ARCHIVED_SEED)

    @property
    def eval_docs(self):
        if self._shuffled is None:
            docs = super().eval_docs
            _, order = archived_generator(len(docs))
            self._shuffled = docs.select(order) if hasattr(docs, "select") else [docs[i] for i in order]
        return self._shuffled

    def set_fewshot_seed(self, seed=None) -> None:
        rnd, _ = archived_generator(len(self.eval_docs))
        self.fewshot_rnd = rnd
        if hasattr(self, "sampler"):
            self.sampler.rnd = rnd


class HendrycksTestTask(ArchivedTask):
    """hendrycks_test.GeneralHendrycksTest.fewshot_context: the description names the subject
    (the hub config name with underscores as spaces). The subject comes from the task name,
    `...hendrycksTest-<subject>` as the archived create_task named it, so it survives local data
    files (which clear dataset_name)."""

    def __init__(self, config: dict | None = None, **kwargs):
        config = dict(config or {})
        name = config.get("task") or ""
        subject = name.rsplit("hendrycksTest-", 1)[1] if "hendrycksTest-" in name else config.get("dataset_name")
        if not subject:
            raise ValueError(f"task {name!r}: name it <prefix>hendrycksTest-<subject> to set the MMLU subject")
        config["description"] = mmlu_description(subject) + "\n\n"  # base.fewshot_context adds "\n\n"
        super().__init__(config=config, **kwargs)


def mmlu_description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}."


# ---------------------------------------------------------------- doc processing (tasks/*.py)

def _map(dataset, fn):
    """The archived tasks replace each doc by their processed dict; so do we."""
    return dataset.map(fn, remove_columns=list(dataset.column_names))


def arc_process_doc(doc: dict) -> dict:
    num_to_letter = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}
    answer = num_to_letter.get(doc["answerKey"], doc["answerKey"])
    return {"id": doc["id"], "query": "Question: " + doc["question"] + "\nAnswer:",
            "choices": doc["choices"]["text"], "gold": ["A", "B", "C", "D", "E"].index(answer)}


def arc_process_docs(dataset):
    return _map(dataset, arc_process_doc)


def hellaswag_preprocess(text: str) -> str:
    text = text.strip()
    # NOTE: Brackets are artifacts of the WikiHow dataset portion of HellaSwag.
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_process_doc(doc: dict) -> dict:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {"query": hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [hellaswag_preprocess(e) for e in doc["endings"]], "gold": int(doc["label"])}


def hellaswag_process_docs(dataset):
    return _map(dataset, hellaswag_process_doc)


def mmlu_process_doc(doc: dict) -> dict:
    keys = ["A", "B", "C", "D"]
    question = doc["question"].strip()
    choices = "".join(f"{key}. {choice}\n" for key, choice in zip(keys, doc["choices"]))
    return {"query": f"{question}\n{choices}Answer:", "choices": keys, "gold": doc["answer"]}


def mmlu_process_docs(dataset):
    return _map(dataset, mmlu_process_doc)


QA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def truthfulqa_doc_to_text(doc: dict) -> str:
    return QA_PROMPT + "\n\nQ: " + doc["question"] + "\nA:"


def truthfulqa_mc2(doc: dict, results) -> dict:
    """TruthfulQAMultipleChoice.process_results' mc2: the true answers are the ones before the
    first 0 label; probabilities are normalised over all mc2 choices."""
    lls = [r[0] for r in results]
    split_idx = list(doc["mc2_targets"]["labels"]).index(0)
    ll_true, ll_false = lls[:split_idx], lls[split_idx:]
    p_true, p_false = np.exp(np.array(ll_true)), np.exp(np.array(ll_false))
    p_true = p_true / (sum(p_true) + sum(p_false))
    return {"acc": float(sum(p_true))}


def winogrande_doc_to_text(doc: dict) -> int:
    """The correct option's index: few-shot examples show the correct partial sentence."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_doc_to_choice(doc: dict) -> list[str]:
    """Winogrande.partial_context for each option: the sentence up to the blank, filled."""
    loc = doc["sentence"].index("_")
    return [doc["sentence"][:loc] + opt for opt in (doc["option1"], doc["option2"])]


def winogrande_doc_to_target(doc: dict) -> str:
    """Winogrande.partial_target without its leading space (the target delimiter adds it)."""
    loc = doc["sentence"].index("_") + 1
    return doc["sentence"][loc:].strip()


# ---------------------------------------------------------------- GSM8K answers (tasks/gsm8k.py)

GSM8K_STOP = [":", "Question:", "Question"]
ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
INVALID_ANS = "[invalid]"


def gsm8k_doc_to_text(doc: dict) -> str:
    return "Question: " + doc["question"] + "\nAnswer:"


def gsm8k_doc_to_target(doc: dict) -> str:
    """The worked answer; the target delimiter supplies the archived leading space."""
    return doc["answer"]


def gsm8k_extract(completion: str) -> str:
    match = ANS_RE.search(completion)
    if match:
        return match.group(1).strip().replace(",", "")
    return INVALID_ANS


def gsm8k_filter(resps, docs):
    """lm-eval custom filter: every response of a doc -> its extracted answer."""
    return [[gsm8k_extract(r) if isinstance(r, str) else INVALID_ANS for r in inst] for inst in resps]


def gsm8k_process_results(doc: dict, results) -> dict:
    gold = gsm8k_extract(doc["answer"])
    assert gold != INVALID_ANS, "No ground truth answer found in the document."
    return {"acc": float(results[0] == gold)}
