"""Typed definitions of every result file evalkit writes, and the one way to read them.

Each file carries `schema_version`. `read(path, kind)` accepts the versions this evalkit
knows (upgrading older ones in memory) and refuses a newer or unknown version in one line,
so a report never silently misreads a file written by another evalkit. The README's
"Files" section is checked against these definitions by the tests.

Values of benchmark metrics are fractions (0-1); the report shows them x100.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, TypedDict

from .errors import UserError

# ---------------------------------------------------------------- leaderboard.json


class TaskResult(TypedDict, total=False):
    metric: str              # lm-eval metric name(s), e.g. "acc_norm"; "+"-joined when averaged ("acc+acc_norm")
    filter: str              # lm-eval filter, e.g. "strict-match"; "none" when the task has none
    value: float             # the entry's score (fraction)
    stderr: Optional[float]  # lm-eval's standard error of `value` (None when lm-eval gives none)
    n_shot: int              # few-shot examples per prompt
    n_samples: int           # documents scored (all subtasks)
    version: Any             # lm-eval's task version
    aggregate: str           # how subtasks combine: "unweighted_mean" or "weighted_mean"
    subtasks: dict[str, dict[str, Any]]   # per lm-eval subtask: value, stderr, n_samples (+ baseline, normalised)
    normalised: float        # v2 suites: max(0, (raw - baseline) / (1 - baseline))
    baseline: float          # v2 suites: the chance score used to normalise
    protocol: str            # the protocol this number follows (as the record's `protocol`)
    lm_eval_task: str        # single-task entries: the lm-eval task name (per-sample file leaderboard_samples/<task>.jsonl)


class LeaderboardRecord(TypedDict, total=False):
    schema_version: int
    suite: str               # suite name (e.g. open_llm_v1)
    protocol: str            # what produced the numbers, e.g. the archived Open LLM Leaderboard v1 task code
    harness: dict[str, str]  # lm_eval_version that ran the requests, task_code whose tasks built them
    backend: str             # hf | vllm | api
    lm_eval_model: str       # lm-eval's model type (hf, vllm, local-completions, local-chat-completions; evalkit-v1-hf: open_llm_v1 on hf)
    lm_eval_model_args: dict[str, Any]  # the model_args lm-eval was given (the suite's, e.g. add_bos_token, and the run's)
    lm_eval_version: str     # the lm-eval release that produced the numbers
    model: str               # the label (base, a variant's name, or the given model)
    model_path: str          # hub id or local directory that was scored
    dtype: str
    batch_size: str
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    system_instruction: Optional[str]   # system prompt of chat-template runs
    seed: int                # lm-eval's random / numpy / torch seed
    fewshot_seed: int        # the few-shot draw's seed (archived v1: 42, whatever `seed` says)
    data_dir: Optional[str]  # local data in hub schema, when not read from the hub
    limit: Optional[int]     # documents per task, when limited
    comparable: bool         # False when the numbers cannot be set beside published ones of the protocol
    comparable_reasons: list[str]   # why not: a limit, local or synthetic data, a suite that differs from the packaged one
    normalised: bool         # True for v2 suites (average of normalised scores)
    tasks: dict[str, TaskResult]
    average: float           # plain mean over entries (of `normalised` for v2 suites)
    seconds: float           # wall time of lm-eval's run
    samples_dir: str         # per-sample JSONL folder, relative to this file


# ---------------------------------------------------------------- contamination.json


class BenchmarkContamination(TypedDict, total=False):
    result: float            # share of examples with s(x) < threshold (near 1: likely seen)
    control: float           # the same test with the control model as the target
    ci: list[float]          # 95% bootstrap interval of `result`
    control_ci: list[float]
    n_examples: int
    per_example: str         # contamination_<bench>.jsonl beside this file
    signals: dict[str, float]   # means of ppl, log_ppl_minus_ref, lowercase_ratio, zlib_ratio, min_k_prob, min_k_plus_plus
    shi_reading: str         # the original's own reading of `result`: "flagged (> 0.85)" or "not flagged"
    verdict: str             # calibrated verdict on the target: "seen", "not seen" or "undecided" (always, with number twins)
    calibrated: dict[str, Any]   # its evidence: statistic, twins, paired, n, effect (nats), ci, p, margin, alpha, reading (what the statistic alone says), ci_half_width, mde (minimum detectable effect, nats), n_for_not_seen, reason
    control_verdict: str     # the same verdict with the control model as the target; "sanity check" when the control is the reference
    control_calibrated: dict[str, Any]
    seconds: dict[str, float]   # generate, total


class ContaminationRecord(TypedDict, total=False):
    schema_version: int
    method: str              # the check's name and source
    parameters: dict[str, Any]   # ratio_gen, n_neighbours, n_examples, threshold, max_tokens, seed, ...
    target: str              # model path checked
    reference: str           # model that sampled the neighbours
    control: str             # model run as the clean control target
    control_kind: str        # "reference as target (sanity check only)" or "clean model"
    backend: str             # how the neighbours were generated (hf | vllm)
    sampling: dict[str, float]   # temperature, top_k, top_p: the reference's generation_config + overrides
    padding_side: dict[str, str]  # scoring padding side of the target and the control ("left" or "right")
    benchmarks: dict[str, BenchmarkContamination]


# ---------------------------------------------------------------- evalkit.json (a checkpoint)


class OnPolicyRound(TypedDict, total=False):
    round: int
    objective: str           # contrastive (best vs worst pairs) | filtered_bc (maximum likelihood on the best)
    policy: str              # the checkpoint that sampled this round
    samples_key: str         # content key of the samples (policy weights, prompts, K, sampling settings, seed)
    samples_cached: bool     # the samples were read from the cache (another arm drew them first)
    n_prompts: int
    n_samples: int           # prompts x K
    mean_reward: float
    min_reward: float        # the reward a sample needs to count as correct
    share_correct: float     # share of the samples whose reward reaches min_reward
    n_pairs: int             # contrastive: pairs trained on
    n_bc: int                # filtered_bc: samples cloned (0: none passed the filter)
    dropped: int             # prompts with no pair (gap below min_gap) or no sample passing min_reward
    offline_mixed: int       # offline rows mixed in
    offline_share: float     # offline rows / all rows trained on this round
    trained: bool            # false: nothing to train on, the policy was kept
    steps: int               # trained rounds: optimizer steps of the round
    seconds: float           # trained rounds: the round's training time
    logps_summary: dict[str, Any]   # trained rounds: its rows' mean log-probs, start (the policy that sampled) and end
    data_fingerprint: str    # trained rounds: the rows it trained on
    train_tokens_per_second: float


class TrainMetadata(TypedDict, total=False):
    schema_version: int
    variant: str
    base_model: str
    reference_model: Optional[str]   # the model whose log-probs are the reference; sDPO: the last step's (M_{T-1}); null for sft
    loss: str                # dpo | dpop | ipo | hinge | sft
    hyperparameters: dict[str, Any]   # the variant's resolved config
    seed: int
    data: dict[str, Any]     # dataset, source, fingerprint, (on-policy: over the run: n_onpolicy, n_offline, offline_share, per_round), n_pairs (held-out ones included), n_heldout, n_skipped (invalid rows, and source rows the pair builder skipped), n_skipped_building (generated pairs: those source rows), edit_distance
    reference: Optional[dict[str, Any]]   # fingerprint, cache_key of the reference log-probs; null for sft
    steps: Any               # optimizer steps (on-policy: summed over the rounds); sDPO: per-step records (index, dataset, n_pairs trained on, reference_model, heldout, ...)
    micro_batches: int
    processes: int           # training processes (accelerate launch)
    global_batch_pairs: int  # pairs per optimizer step, all processes and accumulation together
    tokenization: dict[str, int]   # pairs with a straddling token, a prefix fallback, a truncated prompt or completion
    chunked_lm_head: bool    # completion log-probs through the LM head in chunks (no full logits)
    logps_summary: dict[str, Any]   # chosen/rejected mean log-prob at start and end (sft: chosen only, start = before training); sDPO / on-policy: per_step / per_round (each on its own pairs), and whole_run only on a fixed pair set (sDPO's held-out pairs)
    heldout: Optional[dict[str, Any]]   # pairs kept out of training (n_pairs, pairs, reduction, unseen: how (c) is built) and their mean log-probs at start and end (chosen, rejected, unseen); sDPO: one set split before chunking, measured at every step, start under the base; None when none were held out (and for sft)
    post_edit: dict[str, Any]   # Smaug's token view: n_pairs (low edit distance; 0 for sft), max_relative_edit, edit_distance_median, mean per-token log-prob after the first differing token, chosen/rejected, at start and end (sDPO: the last step's; each step's under steps)
    warnings: list[str]
    seconds: float           # on-policy: the whole run, sampling included
    train_tokens_per_second: Optional[float]   # on-policy: null (per round under rounds[])
    train_processed_tokens_per_second: Optional[float]
    packed_prompt: bool
    device: str
    mixed_precision: str
    config_hash: str         # the variant's config, base and data fingerprints
    versions: dict[str, str]
    git_sha: Optional[str]
    hardware: dict[str, Any]
    stepwise: dict[str, Any]    # sDPO only
    onpolicy: dict[str, Any]    # on-policy only
    rounds: list[OnPolicyRound]   # on-policy only: per round rewards, pair / cloned-sample counts, offline share


class TrainMetricsRow(TypedDict, total=False):
    schema_version: int      # on every line
    step: int                # optimizer step (sDPO: continued across steps, with sdpo_step)
    sdpo_step: int           # sDPO: the step (1..T) the line belongs to
    loss: float              # mean over the pairs since the last line
    logps_chosen: float      # policy log pi(y_w) (the variant's logp_reduction), training pairs
    logps_rejected: float
    rewards_chosen: float    # the loss's implicit reward of y_w (DPO: beta * (log pi - log pi_ref))
    rewards_rejected: float
    reward_margin: float
    reward_accuracy: float   # share of pairs with rewards_chosen > rewards_rejected
    chosen_vs_reference: float   # log pi(y_w) - log pi_ref(y_w)
    penalty_active: Optional[float]   # DPOP: share of pairs with log pi(y_w) below the reference; null otherwise
    heldout_logps_chosen: float   # held-out pairs (evalkit.json `heldout`, not trained on; sDPO: the same pairs at every step): mean log pi(y_w)
    heldout_logps_rejected: float   # held-out pairs: mean log pi(y_l)
    heldout_logps_unseen: float   # a held-out prompt followed by another held-out prompt's chosen response
    lr: float
    grad_norm: float
    epoch: float


# ---------------------------------------------------------------- manifest.json


class StageRecord(TypedDict, total=False):
    status: Literal["running", "done", "failed", "interrupted", "incomplete"]   # incomplete: judge calls left to retry
    hash: str                # what determined the stage's result (config slice, input content, deps)
    updated: str
    seconds: float
    model_fingerprint: str   # scoring stages: the scored model's files when the result was made
    peak_rss_mb: float       # the run's peak resident memory so far, when the stage ended (evalkit's process)


class Manifest(TypedDict, total=False):
    schema_version: int
    experiment: str
    created: str
    updated: str
    config: dict[str, Any]   # the resolved experiment file
    versions: dict[str, str]
    git_sha: Optional[str]
    hardware: dict[str, Any]   # incl. torch threads
    stages: dict[str, StageRecord]
    last_run: RunRecord      # the latest `evalkit run` that had work to do


class RunRecord(TypedDict, total=False):
    started: str
    seconds: float           # wall time
    stages_run: list[str]
    peak_rss_mb: float       # evalkit's process (ru_maxrss; a served judge runs in a process of its own)


# ---------------------------------------------------------------- mtbench/summary.json


class MTBenchSummary(TypedDict, total=False):
    schema_version: int
    mode: Literal["single", "pairwise"]
    judge: str
    questions: str           # where the questions came from
    n_requests: int
    n_judged: int
    errors: int              # requests with no judgment (failed calls; retried by the next run)
    error_examples: list[str]
    calls_this_run: int
    tokens: dict[str, int]   # prompt, completion
    failed_parses: int       # judgments whose rating or verdict could not be read (FastChat drops them)
    out_of_range: int        # single: ratings outside 1-10 (kept in the means, as FastChat keeps them)
    judgments_file: str      # the FastChat judgment file these numbers come from, relative to this file
    answers_key: str         # the content hash of the answers judged: `runs` keeps other judges' numbers of these answers only
    answers_file: str        # the FastChat answer file judged, relative to this file (when generated here)
    turn_1: Optional[float]  # single: mean rating of turn 1 (1-10)
    turn_2: Optional[float]
    overall: Optional[float]
    per_category: dict[str, float]
    overall_weighted: float  # single, with logprobs: probability-weighted rating
    win_rate: float          # pairwise
    loss_rate: float
    tie_rate: float
    win_rate_adjusted: float  # pairwise: (win + tie / 2) / pairs, FastChat's ranking number
    n_pairs: int             # pairwise: pairs counted (both games parsed)
    n_pairs_dropped: int     # pairwise: pairs with a game that failed to parse (FastChat drops them)
    cost: Optional[float]    # USD from the price table, when given
    runs: dict[str, dict[str, Any]]   # "<judge>_<single|pair>": that judge and mode's summary


# ---------------------------------------------------------------- records beside the results above
# (checked on read like the others; not part of the README's "Files" section)


class NgramOverlap(TypedDict, total=False):          # reports/<experiment>/ngram_overlap.json
    schema_version: int
    n: int                   # n-gram length
    datasets: dict[str, dict[str, Any]]   # per training set: source, n_rows, benchmarks {name: n_dirty, n_items, ...}


class CacheStamp(TypedDict, total=False):            # a cache slot's stamp (evalkit.caches.Slot; names: rundir.cache_stamp)
    schema_version: int
    kind: str                # the cache's kind (evalkit.caches.KINDS)
    key: str                 # content key of what the cache was made from
    identity: dict[str, Any]   # answers: what produced them (model files, backend, settings)
    items: int               # sample data: items per benchmark split
    seed: int                # sample data: the generators' seed


class TinySpecRecord(TypedDict, total=False):        # <tiny model>/tiny_spec.json
    schema_version: int
    spec: dict[str, Any]     # the resolved TinySpec
    builder: str             # content hash of the builder code
    n_parameters: int
    build_seconds: float


class OnPolicySamples(TypedDict, total=False):       # _onpolicy_samples/<key>.json, onpolicy_samples/round<r>.json
    schema_version: int
    key: str
    request: dict[str, Any]  # the whole sampling request (policy fingerprint, prompts, K, settings)
    samples: list[list[str]]


class OnPolicyRoundData(TypedDict, total=False):     # <variant>.round<r>/onpolicy_pairs.json | onpolicy_bc.json
    schema_version: int
    round: int
    samples_key: str
    rewards: list[list[float]]
    pairs: list[dict[str, Any]]   # contrastive rounds
    bc: list[dict[str, Any]]      # filtered_bc rounds
    offline: int


BESIDE: dict[str, type] = {"ngram_overlap": NgramOverlap, "cache_stamp": CacheStamp, "tiny_spec": TinySpecRecord,
                          "onpolicy_samples": OnPolicySamples,
                          "onpolicy_round": OnPolicyRoundData}

# kinds stored one JSON object a line
JSONL_KINDS = {"train_metrics", "contamination_examples", "leaderboard_samples", "mtbench_questions",
               "mtbench_answers", "mtbench_judgments", "mtbench_errors", "pairs", "benchmark_rows"}
# kinds whose records may lack schema_version (one without it reads as version 1): another
# program's format, which write() leaves as it is (FastChat's questions, answers and judgments,
# lm-eval's samples, the hub's datasets, preference pairs in the user's data format, the suite
# lm-eval is given; the lines evalkit appends to FastChat's answer and judgment files do carry
# one, an extra key), and two of evalkit's own that never carried one: the contamination check's
# per-example lines and a known model's record
UNVERSIONED = {"contamination_examples", "leaderboard_samples", "mtbench_questions", "mtbench_answers",
               "mtbench_judgments", "mtbench_errors", "pairs", "benchmark_rows", "suite", "known_model"}


SCHEMAS: dict[str, type] = {"leaderboard": LeaderboardRecord, "contamination": ContaminationRecord,
                            "evalkit": TrainMetadata, "manifest": Manifest, "mtbench_summary": MTBenchSummary}
# the newest version of each file this evalkit writes and reads
# evalkit 3: sDPO / on-policy logps_summary per step / round; on-policy top-level fields cover the run
VERSIONS: dict[str, int] = {"leaderboard": 2, "contamination": 1, "evalkit": 3, "manifest": 1,
                            "mtbench_summary": 1,
                            # 2: the held-out log-probs (heldout_logps_*) joined the lines
                            "train_metrics": 2,
                            "ngram_overlap": 1, "cache_stamp": 1, "tiny_spec": 1,
                            "onpolicy_samples": 1, "onpolicy_round": 1,
                            "contamination_examples": 1, "leaderboard_samples": 1, "mtbench_questions": 1,
                            "mtbench_answers": 1, "mtbench_judgments": 1, "mtbench_errors": 1, "pairs": 1,
                            "benchmark_rows": 1, "suite": 1, "known_model": 1}


# ---------------------------------------------------------------- reading and upgrading

def summary_by_part(summaries: list[dict | None], part: str, indices: list[int] | None = None,
                    fixed: dict | None = None) -> dict[str, Any]:
    """logps_summary of a run trained in parts (sDPO steps, on-policy rounds): each part's own
    start -> end, on its own pairs (start under the model before the part, end after it).
    There is no whole-run start -> end on the training pairs: the parts train on different
    pairs, so the first part's start and the last part's end would compare different texts.
    `fixed` (held-out pairs measured at every part: their `start` under the base and `end`
    under the final model) gives the one whole-run number, on a fixed set."""
    indices = indices or list(range(1, len(summaries) + 1))
    out: dict[str, Any] = {
        f"per_{part}": [{part: i, **(s or {})} for i, s in zip(indices, summaries)],
        "note": f"each {part}'s own pairs: start under the model before that {part}, end after it; "
                "a whole-run number only on a fixed pair set (held-out pairs)"}
    if fixed and (fixed.get("start") or {}).get("chosen") is not None:
        out["whole_run"] = {"pairs": f"the {fixed.get('n_pairs')} held-out pairs, the same at every {part}, "
                                     "never trained on; start under the base, end under the final model",
                            **{f"{k}_{when}": fixed[when].get(k) for k in ("chosen", "rejected")
                               for when in ("start", "end")}}
    return out


def version(kind: str) -> int:
    return VERSIONS[kind]


def _upgrade(kind: str, rec: dict[str, Any], v: int) -> dict[str, Any]:
    if kind == "leaderboard" and v == 1:       # v1 kept lm-eval's "metric,filter" string
        for t in (rec.get("tasks") or {}).values():
            if isinstance(t, dict) and "filter" not in t:
                metric, _, flt = str(t.get("metric", "")).partition(",")
                t["metric"], t["filter"] = metric, flt or "none"
    if kind == "evalkit" and v == 1:           # v1 on-policy rounds were all contrastive
        for r in rec.get("rounds") or []:
            if isinstance(r, dict):
                r.setdefault("objective", "contrastive")
                r.setdefault("n_bc", 0)
                r.setdefault("trained", bool(r.get("n_pairs") or r.get("offline_mixed")))
    if kind == "evalkit" and v <= 2 and isinstance(rec.get("steps"), list):   # v2 sDPO: a per-step headline
        heldout = rec.get("heldout")
        rec["logps_summary"] = summary_by_part([s.get("logps_summary") for s in rec["steps"] if isinstance(s, dict)],
                                               "step", fixed=heldout if isinstance(heldout, dict) else None)
    if kind == "evalkit" and v <= 2 and rec.get("rounds"):   # v2 on-policy: the top level was the last round's
        rec["logps_summary"] = {**(rec.get("logps_summary") or {}), "note": "the last on-policy round's rows only"}
    return rec


# keys without which a file cannot be read at all
REQUIRED: dict[str, tuple[str, ...]] = {"leaderboard": ("suite", "tasks", "average"), "contamination": ("benchmarks",),
                                        "mtbench_summary": ("mode",), "ngram_overlap": ("n", "datasets"),
                                        "cache_stamp": ("key",), "tiny_spec": ("spec", "builder"),
                                        "onpolicy_samples": ("request", "samples"),
                                        "onpolicy_round": ("round",), "mtbench_questions": ("question_id",),
                                        "mtbench_answers": ("question_id", "choices"), "train_metrics": ("step",),
                                        "mtbench_errors": ("request_hash",), "suite": ("name",)}


def check(rec: Any, kind: str, source: str | Path) -> dict[str, Any]:
    """Check a loaded record's type and version; returns it upgraded to the current version."""
    if not isinstance(rec, dict):
        raise UserError(f"{source}: not a {kind} record (a JSON object expected, found {type(rec).__name__})")
    v = rec.get("schema_version", 1 if kind in UNVERSIONED else None)
    if not isinstance(v, int) or isinstance(v, bool):
        raise UserError(f"{source}: schema_version missing or not an integer; not an evalkit {kind} file")
    if v > VERSIONS[kind] or v < 1:
        raise UserError(f"{source}: schema_version {v} is not one this evalkit reads (<= {VERSIONS[kind]}); "
                        f"written by a newer evalkit?")
    missing = [k for k in REQUIRED.get(kind, ()) if k not in rec]
    if missing:
        raise UserError(f"{source}: not a complete {kind} record (missing {', '.join(missing)})")
    return _upgrade(kind, rec, v)


def read(path: str | Path, kind: str) -> Any:
    """Read a result file of `kind`, checked (one-line UserError on any problem): a record,
    or for JSONL kinds the list of records (a torn, unterminated last line is left out: the
    append that wrote it was cut short, and the next append cuts it off)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if kind not in JSONL_KINDS:
            return check(json.loads(text), kind, path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    return [check(row, kind, f"{path}:{lineno}") for lineno, row in jsonl_lines(text, path)]


def jsonl_lines(text: str, source: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) of every complete line of a JSONL file evalkit appends to: the text
    after the last newline is "" or a torn line (an append cut short), and is left out."""
    rows = []
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{source}:{lineno}: invalid JSON line ({e.msg})") from None
    return rows


def fields(kind: str) -> set[str]:
    """The top-level keys a file of `kind` may hold."""
    return set({**SCHEMAS, **BESIDE}[kind].__annotations__)


# ---------------------------------------------------------------- the README's "Files" section

WHERE = {"manifest": "reports/<experiment>/manifest.json",
         "leaderboard": "reports/<experiment>/<model>/leaderboard.json",
         "mtbench_summary": "reports/<experiment>/<model>/mtbench/summary.json",
         "contamination": "reports/<experiment>/<model>/contamination.json",
         "evalkit": "checkpoints/<experiment>/<variant>/evalkit.json"}


def _documented_fields(cls: type) -> list[tuple[str, str, str]]:
    """(name, type, comment) of a TypedDict, read from its source lines."""
    import inspect
    out = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        m = __import__("re").match(r"\s+(\w+): ([^#]+?)\s*(?:#\s*(.*))?$", line)
        if m:
            out.append((m.group(1), m.group(2).strip(), (m.group(3) or "").strip()))
    return out


def markdown() -> str:
    """The README's "Files" section, generated from the definitions above
    (`python -m evalkit.schema` prints it)."""
    lines = ["## Files", "",
             "Every JSON file carries `schema_version`; evalkit refuses, in one line, a version newer than",
             "it knows. Writes are atomic, so an interrupted run never leaves half a file. The fields",
             "(generated from `evalkit/schema.py` by `python -m evalkit.schema`):", ""]
    nested = {"leaderboard": [("tasks.<entry>", TaskResult)], "contamination": [("benchmarks.<name>",
                                                                                 BenchmarkContamination)],
              "manifest": [("stages.<stage>", StageRecord), ("last_run", RunRecord)],
              "evalkit": [("rounds[]", OnPolicyRound)]}
    for kind, cls in SCHEMAS.items():
        lines.append(f"### `{WHERE[kind].rsplit('/', 1)[1]}` — `{WHERE[kind]}` (version {VERSIONS[kind]})")
        lines.append("")
        for prefix, sub in [("", cls)] + nested.get(kind, []):
            for name, typ, comment in _documented_fields(sub):
                key = f"{prefix}.{name}" if prefix else name
                lines.append(f"- `{key}` ({typ})" + (f": {comment}" if comment else ""))
        lines.append("")
        if kind == "evalkit":    # its JSONL companion: one object per logging step
            lines += ["### `train_metrics.jsonl` — `checkpoints/<experiment>/<variant>/train_metrics.jsonl` "
                      f"(version {VERSIONS['train_metrics']}, one line per logging step)", ""]
            lines += [f"- `{name}` ({typ})" + (f": {comment}" if comment else "")
                      for name, typ, comment in _documented_fields(TrainMetricsRow)]
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
