"""The work of each stage, as plain functions of (experiment, run directory, label).

Nothing here decides whether a stage should run, and nothing here writes the manifest:
that is the runner's job alone (evalkit.runner). Each function does its work and writes
its outputs, replacing an old output only with a finished new one.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from . import trackers
from .config import Experiment, TinyBase
from .rundir import RunDir, content_hash, file_hash, is_main_process, sample_key_file, swap_in, write

log = logging.getLogger("evalkit")


def rundir_for(exp: Experiment, reports: str | Path | None = None) -> RunDir:
    return RunDir(exp.name, reports=reports)


# ---------------------------------------------------------------- base model and data

def base_model(exp: Experiment, rd: RunDir) -> str:
    """The base model's hub id or local dir; builds the tiny model when the config asks."""
    if isinstance(exp.base_model, TinyBase):
        t0 = time.time()
        path = tiny_base(exp.base_model.tiny.model_dump(), rd.base_checkpoint())
        log.info("tiny base model ready at %s (%.1fs)", path, time.time() - t0)
        return str(path)
    from .backends.models import resolve_model
    return resolve_model(exp.base_model)     # a known real model: its materialised folder


def tiny_base(spec: dict, out: Path) -> Path:
    """The tiny model of `spec` at `out`. It is pretrained once per machine: built in the shared
    cache (EVALKIT_CACHE, keyed by the spec and the builder's code, as build_tiny_model checks)
    and copied into the run's checkpoints, so another clone or run directory skips pretraining."""
    import tempfile

    from .backends.known_models import cache_root
    from .backends.tiny import build_tiny_model, spec_hash, tiny_builder_hash, tiny_is_built
    if tiny_is_built(out, spec):       # up to date: no torch import, no copy (an up-to-date rerun is quick)
        return out
    shared = cache_root() / "tiny" / f"tiny-{spec_hash(spec)}-{tiny_builder_hash()}"
    build_tiny_model(shared, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(shared, tmp, dirs_exist_ok=True)
        swap_in(tmp, out, main_only=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def dataset_rows(exp: Experiment, name: str, rd: RunDir):
    """(rows, source) of a named dataset; generated datasets are written to the run dir
    first (by the data stage), and read back from there."""
    from .train.data import read_rows
    src = exp.datasets[name]
    if src.generate:
        path = generate_dataset(exp, name, rd)
        return read_rows(path), str(path)
    if src.hub:
        return read_rows(hub=src.hub, subset=src.subset, split=src.split), f"hub:{src.hub}[{src.split}]"
    return read_rows(src.path), src.path


def build_pairs(exp: Experiment, name: str) -> tuple[list[dict], int, str]:
    """(pairs, source rows skipped, what was skipped) of a generated dataset (`generate:`)."""
    from .train import builders
    from .train.data import read_rows
    src = exp.datasets[name]
    if src.generate in ("arc_pairs", "metamath_pairs", "solutions"):
        source = read_rows(src.path) if src.path else read_rows(hub=src.hub, subset=src.subset, split=src.split)
        skipped, what = 0, ""
        if src.generate == "solutions":
            rows = builders.solution_rows([r.data for r in source])
        elif src.generate == "arc_pairs":
            rows, skipped = builders.choice_pairs([r.data for r in source], src.fewshot, src.seed)
            what = "colliding or unlabelled choices"
        else:
            rows, skipped = builders.math_row_pairs([r.data for r in source], src.seed)
            what = "solutions with no marked intermediate result"
        rows = rows[:src.n] if src.n is not None else rows
        return rows, skipped, what
    if src.generate == "metamath_carried":
        return builders.metamath_carried_pairs(src.n or 200, src.seed), 0, ""
    return builders.metamath_synthetic_pairs(src.n or 200, src.seed), 0, ""


def generated_key(exp: Experiment, name: str) -> str:
    """What a generated dataset is made from: its entry, the bytes of the file it reads and
    the builders' code (a hub source is named, and cached by `datasets`)."""
    from . import synth
    from .caches import key_of
    from .train import builders
    src = exp.datasets[name]
    return key_of({"entry": src.model_dump(mode="json", exclude={"path"}),
                   "source": file_hash(src.path) if src.path and Path(src.path).is_file() else src.path,
                   "code": [file_hash(builders.__file__), file_hash(synth.__file__)]})


def generate_dataset(exp: Experiment, name: str, rd: RunDir) -> Path:
    """A generated dataset's rows in the run dir, built again only when generated_key() changes."""
    from .caches import Slot

    def build(tmp: Path) -> None:
        rows, skipped, what = build_pairs(exp, name)
        if skipped:
            log.warning("dataset %s: skipped %d %s", name, skipped, what)
        write("pairs", tmp, rows)
    slot = Slot("generated-data", rd.generated_data(name), file=True)
    slot.fill(generated_key(exp, name), build)
    return slot.path


def skipped_building(exp: Experiment, name: str) -> int:
    """Source rows the pair builder skipped for a generated dataset (0 otherwise): rebuilt from
    the source (seeded, so the same count the data stage logged), for evalkit.json's n_skipped."""
    if exp.datasets[name].generate not in ("arc_pairs", "metamath_pairs"):
        return 0
    return build_pairs(exp, name)[1]


def data(exp: Experiment, rd: RunDir, name: str) -> int:
    """The data stage: generate (when asked) and read every row, so bad rows fail here."""
    rows, source = dataset_rows(exp, name, rd)
    log.info("dataset %s: %d rows from %s", name, len(rows), source)
    return len(rows)


# ---------------------------------------------------------------- training

def train(exp: Experiment, rd: RunDir, name: str, base: str, progress: bool = True) -> Path:
    """Train one variant from `base`; the checkpoint is built beside and swapped in."""
    from .backends.models import load_tokenizer
    from .train.reference import ReferenceCache

    v = exp.variant(name)
    tok = load_tokenizer(base)
    cache = ReferenceCache(rd.reference_cache())
    rows, source = dataset_rows(exp, v.data, rd)
    ckpt = rd.checkpoint(v.name)
    info = {"dataset": v.data, "source": source}
    if exp.datasets[v.data].generate in ("arc_pairs", "metamath_pairs"):
        info["n_skipped_building"] = skipped_building(exp, v.data)
    t0 = time.time()
    # report_to: the trainer logs its metrics to the experiment's trackers as well
    with trackers.active(exp.report_to, rd.reports / "tracking", exp.name, v.name):
        res = _train(exp, rd, v, base, rows, ckpt, cache, tok, progress, info, source)
    if not is_main_process():
        return ckpt
    from .train.summary import logps_line
    steps = res.metadata.get("steps", 0)
    steps = sum(s.get("steps") or 0 for s in steps) if isinstance(steps, list) else steps  # sDPO lists its steps
    # sDPO and on-policy: per step / round (each on its own pairs), never first start vs last end
    log.info("variant %s: %d steps in %.1fs; mean log-prob %s",
             v.name, steps, time.time() - t0, logps_line(res.metadata.get("logps_summary") or {}))
    return ckpt


def _train(exp: Experiment, rd: RunDir, v, base: str, rows, ckpt: Path, cache, tok, progress: bool, info: dict,
           source):
    from .train.data import tokenize_rows
    from .train.trainer import train_variant
    if v.onpolicy is not None:
        from .train.onpolicy import train_onpolicy
        return train_onpolicy(v, base, rows, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                              data_info=info, samples_dir=rd.onpolicy_samples())
    from .train.losses import REFERENCE_FREE
    # maximum likelihood (loss: sft) reads each row's prompt and chosen completion only
    data = tokenize_rows(tok, rows, v.max_length, v.max_prompt_length,
                         skip_invalid=exp.datasets[v.data].skip_invalid, source=source,
                         chosen_only=v.loss in REFERENCE_FREE)
    # rows the pair builder skipped count as skipped rows too (n_skipped); n_skipped_building says how many
    data.n_skipped += info.get("n_skipped_building", 0)
    if v.stepwise is not None:
        from .train.stepwise import train_stepwise
        parts = None
        if v.stepwise.datasets:        # one dataset a step, in order
            parts = [(v.data, data)]
            for d in v.stepwise.datasets[1:]:
                d_rows, d_source = dataset_rows(exp, d, rd)
                part = tokenize_rows(tok, d_rows, v.max_length, v.max_prompt_length,
                                     skip_invalid=exp.datasets[d].skip_invalid, source=d_source)
                built = skipped_building(exp, d)
                part.n_skipped += built
                info["n_skipped_building"] = info.get("n_skipped_building", 0) + built
                parts.append((d, part))
            info = {**info, "datasets": list(v.stepwise.datasets)}
        return train_stepwise(v, base, data, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                              data_info=info, parts=parts)
    return train_variant(v, base, data, ckpt, cache, seed=exp.seed, tokenizer=tok, progress=progress,
                         data_info=info)


# ---------------------------------------------------------------- evaluation

# items per benchmark split in `data_dir: sample`: the contamination check gets more, so
# that its calibrated verdict has >= 10 items with a twin on every benchmark (8 gave 4-5)
SAMPLE_ITEMS = {"leaderboard": 8, "contamination": 24}


def sample_key(exp: Experiment, kind: str) -> str:
    """What `data_dir: sample` data is made from: the generators' code and the suite file they
    read, the size and the seed
    (the runner's stage hashes include it; the folder records it)."""
    from . import synth
    from .eval import sample_data
    return content_hash({"code": [file_hash(sample_data.__file__), file_hash(synth.__file__),
                                  file_hash(sample_data.MMLU_SUBJECTS_FILE)],     # it reads the MMLU subjects
                         "items": SAMPLE_ITEMS[kind], "seed": exp.seed})


def sample_data(exp: Experiment, rd: RunDir, kind: str = "leaderboard") -> str:
    """The project's small generated benchmark data in hub schema (`data_dir: sample`), made
    again (into a temp folder, then swapped in) whenever sample_key() changes."""
    from .caches import Slot
    from .eval.sample_data import write_open_llm_v1
    slot = Slot("sample-data", rd.sample_data(kind), stamp_path=sample_key_file(rd.sample_data(kind)))
    slot.fill(sample_key(exp, kind), lambda tmp: write_open_llm_v1(tmp, n_eval=SAMPLE_ITEMS[kind], seed=exp.seed),
              items=SAMPLE_ITEMS[kind], seed=exp.seed)
    return str(slot.path)


def sample_data_dir(exp: Experiment, rd: RunDir, value: str | None, kind: str = "leaderboard") -> str | None:
    """A section's data_dir, with `sample` meaning sample_data()."""
    return sample_data(exp, rd, kind) if value == "sample" else value


def chat_settings(sec, label: str) -> dict:
    """The section's chat settings with this model's own (`per_model`) over them."""
    own = sec.per_model.get(label)
    out = {k: getattr(sec, k) for k in ("apply_chat_template", "fewshot_as_multiturn", "system_instruction")}
    if own is not None:
        out.update({k: v for k, v in own.model_dump().items() if v is not None})
    return out


def leaderboard(exp: Experiment, rd: RunDir, label: str, path: str) -> dict:
    from .eval import leaderboard as L
    from .eval.suites import load_suite, only_entries

    sec = exp.eval.leaderboard
    opt = L.options_from(sec, chat_settings(sec, label), data_dir=sample_data_dir(exp, rd, sec.data_dir))
    t0 = time.time()
    rec = L.run(path, only_entries(load_suite(sec.suite), sec.entries), rd.model_dir(label), opt, model_label=label)
    log.info("leaderboard %s: average %.2f (%.1fs)", label, 100 * rec["average"], time.time() - t0)
    return rec


def contamination(exp: Experiment, rd: RunDir, label: str, path: str, base: str, loaded: dict | None = None) -> dict:
    """One target against the reference (default: the base), with a control beside it."""
    from .eval import contamination as C, contamination_run

    sec = exp.eval.contamination
    p = C.params_from(sec)
    from .backends.models import resolve_model
    return contamination_run.run(path, resolve_model(sec.reference) if sec.reference else base, sec.benchmarks,
                                 rd.model_dir(label), p, control=resolve_model(sec.control) if sec.control else None,
                                 data_dir=sample_data_dir(exp, rd, sec.data_dir, "contamination"),
                                 models=loaded if loaded is not None else {}, labels={"target": label},
                                 backend=sec.backend)


def ngram(exp: Experiment, rd: RunDir) -> dict:
    """n-gram overlap of every training dataset with every contamination benchmark."""
    from .eval.benchmark_texts import load_examples
    from .eval.ngram import overlap

    sec = exp.eval.contamination
    data_dir = sample_data_dir(exp, rd, sec.data_dir, "contamination")
    bench = {name: load_examples(name, data_dir)[1] for name in sec.benchmarks}
    result: dict = {"n": sec.ngram, "datasets": {}}
    for ds in exp.datasets:
        rows, source = dataset_rows(exp, ds, rd)
        train_texts = [_row_text(r.data) for r in rows]
        result["datasets"][ds] = {"source": source, "n_rows": len(rows), "benchmarks": {
            name: overlap(train_texts, [(e.id, e.text) for e in exs], sec.ngram) for name, exs in bench.items()}}
    rd.write("ngram_overlap", result)
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


def mtbench(exp: Experiment, rd: RunDir, label: str, paths: dict[str, str], judge_url: str | None) -> dict:
    """Answers for `label` (and the pairwise baseline), then the judge at `judge_url`."""
    from .backends.client import judge_client
    from .eval import generate, mtbench as M

    sec = exp.eval.mtbench
    j = sec.judge
    data = M.load_data(sec.questions, sec.data_dir, sec.reference_answers, sec.question_ids)
    gen = generate.GenOptions(backend=sec.backend, max_new_tokens=sec.max_new_tokens, system_prompt=sec.system_prompt,
                              batch_size=sec.batch_size, base_url=sec.base_url, seed=exp.seed)
    files = {m: M.answer_path(rd.mtbench_dir(m), m) for m in paths}
    answers = {m: generate.generate_answers(p, data.questions, files[m], gen, model_id=m) for m, p in paths.items()}
    client = judge_client(j.model, j.serve, judge_url, api_key_env=j.api_key_env, concurrency=j.concurrency,
                          timeout=j.timeout, max_retries=j.max_retries, logprobs=j.logprobs)
    opt = M.JudgeOptions(client, mode=sec.mode, max_tokens=j.max_tokens, price_per_million=j.price_per_million)
    baseline = answers.get(sec.baseline) if sec.mode == "pairwise" else None
    return M.judge_answers(data, answers[label], rd.mtbench_dir(label), opt, baseline=baseline,
                           answers_file=files[label])


def report(exp: Experiment, rd: RunDir) -> Path:
    """The HTML report, and a model card (README.md) in every trained checkpoint from the same
    results (the report stage depends on every stage, so changed results rewrite both)."""
    from .modelcard import write_cards
    from .report.render import render
    write_cards(rd, exp)
    return render([rd.reports], rd.report_html())


# ---------------------------------------------------------------- the console summary

def print_summary(exp: Experiment, rd: RunDir) -> None:
    """A few lines per finished result, read back from the run directory."""
    labels = ["base"] + [v.name for v in exp.variants]
    for v in exp.variants:
        if rd.train_metadata(v.name).exists():
            from .train.summary import logps_line
            s = rd.read("evalkit", variant=v.name).get("logps_summary", {})
            print(f"  train {v.name:<8}: mean log-prob {logps_line(s)}  ({rd.checkpoint(v.name)})")
    for m in labels:
        shown = lambda kind: getattr(exp.eval, kind) is not None and m in exp.scored(kind)  # noqa: E731
        if shown("leaderboard") and rd.leaderboard(m).exists():
            rec = rd.read("leaderboard", model=m)
            print(f"  leaderboard {m:<8}: average {100 * rec['average']:.2f} on {rec['suite']}")
        if shown("mtbench") and rd.mtbench_files(m).summary.exists():
            s = rd.read("mtbench_summary", model=m)
            print(f"  mt-bench {m:<8}: overall {_fmt(s.get('overall'))} ({s.get('failed_parses', 0)} failed parses, "
                  f"{s.get('errors', 0)} errors; judge {s.get('judge')})")
        if shown("contamination") and rd.contamination(m).exists():
            rec = rd.read("contamination", model=m)
            cells = ", ".join(f"{b} {v['result']:.2f} (control {v['control']:.2f})" for b, v in rec["benchmarks"].items())
            print(f"  contamination {m:<8}: {cells}")
    if rd.ngram_overlap().exists():
        ov = rd.read("ngram_overlap")
        for ds, d in ov["datasets"].items():
            cells = ", ".join(f"{b} {r['n_dirty']}/{r['n_items']}" for b, r in d["benchmarks"].items())
            print(f"  {ov['n']}-gram overlap of {ds}: {cells}")
    print(f"  manifest: {rd.manifest_path}")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
