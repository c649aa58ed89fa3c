"""Leaderboard suites: data files packaged in evalkit/data/suites/, turned into lm-eval task YAML.

A suite is a list of entries; an entry is one leaderboard column (e.g. "mmlu") made of one or
more lm-eval tasks, a shot count, a metric (and filter), how subtasks combine, and for
normalised suites a chance baseline. The YAML we generate for each task only `include`s
lm-eval's own built-in task file and overrides the shot count and, offline, the data
source: prompts, targets, filters and metrics stay lm-eval's.
"""
from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..data import path as packaged
from ..errors import UserError
from ..rundir import read_text, suite_file, write

SUITES_DIR = packaged("suites")
TASKS_DIR = packaged("tasks")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskRef(_Strict):
    task: str
    yaml: Optional[str] = Field(None, description="task YAML, relative to lm_eval/tasks/ (or evalkit/data/tasks/)")
    dataset_name: Optional[str] = Field(None, description="hub config the task reads (e.g. an MMLU subject)")
    baseline: Optional[float] = None


class Entry(_Strict):
    name: str
    shots: int = Field(ge=0)
    metric: Union[str, list[str]]
    filter: str = "none"
    aggregate: Literal["single", "unweighted_mean", "weighted_mean"] = "single"
    baseline: Optional[float] = None
    normalise_subtasks: bool = False
    tasks: list[TaskRef]

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)


class Suite(_Strict):
    name: str
    description: str = ""
    protocol: str = Field("lm-eval built-in tasks", description="which protocol the numbers follow (recorded)")
    task_source: Literal["lm_eval", "evalkit"] = Field(
        "lm_eval", description="where the tasks' `yaml` paths live: lm_eval/tasks/ or evalkit/data/tasks/")
    task_code: Optional[str] = Field(None, description="whose task code builds the requests (recorded)")
    fewshot_seed: Optional[int] = Field(None, description="the protocol's own fixed few-shot seed, if any")
    batch_size: Optional[int] = Field(None, ge=1, description="fixed batch size the protocol needs "
                                      "(batching changes log-likelihoods through padding)")
    apply_chat_template: Optional[bool] = Field(
        None, description="default for models run on this suite; False: the protocol never applied one")
    fewshot_as_multiturn: Optional[bool] = Field(None, description="default; few-shot examples as chat turns")
    system_instruction: Optional[str] = Field(None, description="default system prompt (chat runs)")
    model_args: dict[str, Any] = Field(
        {}, description="lm-eval model arguments the protocol needs (archived v1: add_bos_token false); "
                        "a run's own --model-args / model_args override them and mark the run not comparable")
    lm_eval_models: dict[str, str] = Field(
        {}, description="lm-eval model per backend where the protocol needs its own (archived v1, hf: "
                        "evalkit-v1-hf, b281b09's generation length and long-context trimming)")
    normalise: bool = False
    entries: list[Entry]

    def task_refs(self) -> list[tuple[Entry, TaskRef]]:
        return [(e, t) for e in self.entries for t in e.tasks]


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            names = available_suites()
            close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (available: {', '.join(names)})"
            raise UserError(f"unknown suite {name_or_path!r}{hint}")
    try:
        return Suite.model_validate(yaml.safe_load(read_text(path)))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {getattr(e, 'problem', e)}") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{path}: {loc}: {'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}") from None


def only_entries(suite: Suite, names: list[str] | None) -> Suite:
    """The suite restricted to the named entries (in the suite's order); None: all of it."""
    if not names:
        return suite
    known = [e.name for e in suite.entries]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"eval.leaderboard.entries: {unknown[0]!r} is not an entry of suite {suite.name} "
                        f"({', '.join(known)})")
    return suite.model_copy(update={"entries": [e for e in suite.entries if e.name in names]})


def show_suite(suite: Suite) -> str:
    rows = [("entry", "task(s)", "shots", "metric", "filter", "combine")]
    for e in suite.entries:
        tasks = e.tasks[0].task if len(e.tasks) == 1 else f"{len(e.tasks)} tasks ({e.tasks[0].task}, ...)"
        combine = {"single": "-", "unweighted_mean": "unweighted mean", "weighted_mean": "size-weighted mean"}[e.aggregate]
        if suite.normalise:
            combine += ", normalised per subtask" if e.normalise_subtasks else f", baseline {e.baseline}"
        rows.append((e.name, tasks, str(e.shots), "+".join(e.metrics), e.filter, combine))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{suite.name}: {suite.description}"]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("average: plain mean of the entries" + (" after normalisation" if suite.normalise else ""))
    fixed = [f"batch size {suite.batch_size}"] if suite.batch_size else []
    fixed += [f"few-shot seed {suite.fewshot_seed}"] if suite.fewshot_seed is not None else []
    fixed += ["no chat template"] if suite.apply_chat_template is False else []
    lines.append(f"protocol: {suite.protocol}" + (f" ({', '.join(fixed)})" if fixed else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- lm-eval task YAML

def lm_eval_tasks_dir() -> Path:
    import lm_eval
    return Path(lm_eval.__file__).resolve().parent / "tasks"


_TASK_LINE = re.compile(r"""^["']?task["']?\s*:\s*["']?([A-Za-z0-9_.\-]+)["']?\s*$""", re.M)
# any `task:` line, task_list entries ("  - task: name") included: names, not include targets
_ANY_TASK_LINE = re.compile(r"""^\s*(?:-\s*)?["']?task["']?\s*:\s*["']?([A-Za-z0-9_.\-]+)["']?\s*$""", re.M)


@functools.lru_cache(maxsize=1)
def known_task_names() -> frozenset[str]:
    names = set()
    for path in lm_eval_tasks_dir().rglob("*.yaml"):
        try:
            names.update(_ANY_TASK_LINE.findall(path.read_text(encoding="utf-8", errors="ignore")))
        except OSError:
            continue
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def quick_task_index() -> dict[str, Path]:
    """task name -> built-in YAML, from a scan of the `task:` lines of lm-eval's files.

    About a second, against ~15 s for lm-eval's full TaskManager index. Tasks that only a
    `task_list` defines are not in it; builtin_yaml falls back to TaskManager for those.
    """
    index: dict[str, Path] = {}
    for path in lm_eval_tasks_dir().rglob("*.yaml"):
        try:
            text = path.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        for name in _TASK_LINE.findall(text):
            index.setdefault(name, path)
    return index


def builtin_yaml(ref: TaskRef, source: str = "lm_eval") -> Path:
    """The YAML a task includes: from the suite file, else found in lm-eval's files."""
    if source == "evalkit":
        p = TASKS_DIR / (ref.yaml or "")
        if not ref.yaml or not p.is_file():
            raise UserError(f"task {ref.task}: packaged task file {ref.yaml!r} not found in {TASKS_DIR}")
        return p
    if ref.yaml:
        p = lm_eval_tasks_dir() / ref.yaml
        if not p.exists():
            raise UserError(f"task {ref.task}: built-in file {ref.yaml} not found in this lm-eval "
                            f"({lm_eval_tasks_dir()})")
        return p
    index = quick_task_index()
    if ref.task in index:
        return index[ref.task]
    names = known_task_names()
    close = difflib.get_close_matches(ref.task, list(names), n=3)
    if ref.task not in names and close:   # a typo: say so now, not after lm-eval's full index
        raise UserError(f"unknown lm-eval task {ref.task!r}; did you mean {', '.join(close)}?")
    from lm_eval.tasks import TaskManager
    tm = TaskManager()
    info = tm.task_index.get(ref.task) or {}
    yaml_path = info.get("yaml_path") if isinstance(info, dict) else getattr(info, "yaml_path", None)
    if yaml_path and yaml_path != -1:
        return Path(yaml_path)
    close = difflib.get_close_matches(ref.task, list(index), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown lm-eval task {ref.task!r}{hint}")


def resolved_config(path: Path) -> dict:
    """The built-in task config with its includes merged (functions left unresolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml
    return load_yaml(path, resolve_func=False)


def local_data_files(cfg: dict, data_dir: Path, task: str, shots: int) -> tuple[str, dict]:
    """(loader, {split: file}) for a task's hub dataset under data_dir.

    Layout: DATA_DIR/<dataset_path>/<dataset_name or "default">/<split>.{jsonl,json,parquet}
    The evaluation split is required, the few-shot split too when shots > 0; other splits are
    used when present.
    """
    folder = data_dir / cfg["dataset_path"] / (cfg.get("dataset_name") or "default")
    fewshot_split = cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    wanted = {s for s in (cfg.get("training_split"), cfg.get("validation_split"), cfg.get("test_split"),
                          cfg.get("fewshot_split")) if s}
    required = {eval_split} | ({fewshot_split} if shots > 0 and not _has_fixed_samples(cfg) else set())
    files: dict[str, Path] = {}
    for split in sorted(wanted):
        found = [folder / f"{split}{suf}" for suf in DATA_SUFFIXES if (folder / f"{split}{suf}").exists()]
        if found:
            files[split] = found[0]
        elif split in required:
            raise UserError(f"task {task}: missing data file {folder / (split + '.jsonl')} "
                            f"(or .json/.parquet), needed for the {split!r} split")
    kinds = {f.suffix for f in files.values()}
    if len(kinds) > 1:
        raise UserError(f"task {task}: mixed data formats in {folder}; use one of .jsonl, .json, .parquet")
    loader = "parquet" if kinds == {".parquet"} else "json"
    if loader == "parquet":            # a corrupt file: one line now, not a pyarrow error inside lm-eval
        import pyarrow.parquet as pq
        for f in files.values():
            try:
                pq.read_metadata(f)
            except OSError:
                raise
            except Exception as e:
                raise UserError(f"{f}: not a readable Parquet file ({str(e).strip().splitlines()[0]})") from None
    return loader, {k: str(v) for k, v in files.items()}


def _has_fixed_samples(cfg: dict) -> bool:
    return bool((cfg.get("fewshot_config") or {}).get("samples"))


def check_hub_data(suite: Suite) -> None:
    """Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and without --data-dir: every hub dataset
    the suite reads must be in the local cache. One line naming the first that is not, before
    any model loads (lm-eval would fail later, with a ConnectionError from inside datasets)."""
    import datasets
    if not datasets.config.HF_HUB_OFFLINE:
        return
    seen = set()
    for entry, ref in suite.task_refs():
        cfg = {**resolved_config(builtin_yaml(ref, suite.task_source)),
               **({"dataset_name": ref.dataset_name} if ref.dataset_name else {})}
        key = (cfg.get("dataset_path"), cfg.get("dataset_name"))
        if key in seen or not key[0]:
            continue
        seen.add(key)
        try:
            datasets.load_dataset_builder(key[0], key[1])
        except Exception as e:   # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError...
            raise UserError(f"task {ref.task}: hub dataset {key[0]}" + (f" ({key[1]})" if key[1] else "")
                            + f" is not in the local cache and the hub is offline "
                              f"({type(e).__name__}); give --data-dir DIR with local copies "
                              f"(DIR/{key[0]}/{key[1] or 'default'}/<split>.jsonl)") from None


def write_task_yamls(suite: Suite, out_dir: Path, data_dir: Path | None = None) -> list[str]:
    """One YAML per task under out_dir; returns the task names to run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for entry, ref in suite.task_refs():
        src = builtin_yaml(ref, suite.task_source)
        doc: dict = {"include": str(src), "task": ref.task, "num_fewshot": entry.shots}
        if ref.dataset_name:
            doc["dataset_name"] = ref.dataset_name
        if data_dir is not None:
            cfg = {**resolved_config(src), **doc}
            loader, files = local_data_files(cfg, data_dir, ref.task, entry.shots)
            # datasets keys its cache of local files on their path and mtime: a file edited with
            # its mtime kept (cp -p, rsync -a, tar -x) would be served stale; rebuild from the bytes
            doc.update({"dataset_path": loader, "dataset_name": None,
                        "dataset_kwargs": {"data_files": files, "download_mode": "force_redownload"}})
            for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
                if cfg.get(key) and cfg[key] not in files:
                    doc[key] = None  # a split the local data does not have
        # absolute paths: lm-eval resolves relative data paths against the working directory
        (out_dir / f"{ref.task}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        names.append(ref.task)
    write("suite", suite_file(out_dir), suite.model_dump())
    return names
