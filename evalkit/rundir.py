"""Where evalkit's output files are named, and the one way records are read and written.

Layout (the README's "Files" section documents the results; evalkit.schema types every record):
    checkpoints/<experiment>/<variant>/        trained weights + evalkit.json + train_metrics.jsonl (CheckpointFiles)
    reports/<experiment>/manifest.json         resolved config, versions, git sha, stage status (ReportFiles)
    reports/<experiment>/<model>/...           per-model results (ModelFiles, MTBenchFiles)
A verb with `--out DIR` writes one folder kind into DIR: ModelFiles(DIR) or MTBenchFiles(DIR).
tests/test_layout.py fails on a *.json / *.jsonl / *.html / *.log name written anywhere
else in evalkit. Not named here: the `.partial` folders the trainer, sDPO and on-policy build
beside a checkpoint before rundir.swap_in, a store's entry files (caches.Store: key + suffix)
and the file prefix of lm-eval's request cache inside lm_eval_cache/.

Records go through evalkit.schema: write(kind, path, record) stamps the kind's version,
read(kind, path) checks it (and upgrades older ones); RunDir.read / RunDir.write find the
path from the kind and where (model, variant, ...).

Writes are atomic: JSON goes to a temp file in the same folder, is fsync'd, then renamed
over the target, so a crash leaves either the old file or the new one, never half of one.
JSONL appends are fsync'd line by line; readers skip a torn (unterminated) last line.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import schema

_UMASK = os.umask(0)
os.umask(_UMASK)


def content_hash(obj: Any, length: int = 16) -> str:
    """A stable short hash of JSON-able data (sorted keys): the key of caches and stage records."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# ---------------------------------------------------------------- names that become paths

# The one rule for a name evalkit turns into a file or folder name (experiment, variant and
# dataset names, model labels): a letter or digit first, then letters, digits, '_', '.', '-'.
# No separators, no '..', nothing absolute, so a name can never leave the folder it is put in.
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a file or folder name (None when it can)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_RE, name):
        return (f"{name!r} cannot name a file or folder: use letters, digits, '_', '.' and '-', "
                f"starting with a letter or digit (at most 128 characters)")
    return None


def check_name(name: str, what: str) -> str:
    """`name` if it passes the rule above, else a one-line UserError naming `what`."""
    from .errors import UserError
    problem = name_problem(name)
    if problem:
        raise UserError(f"{what}: {problem}")
    return name


def path_component(name: str) -> str:
    """A name evalkit did not choose (a hub model id, a judge model, a benchmark file's stem)
    made to pass the rule: every other character becomes '_' ('org/model' -> 'org_model')."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/"))
    safe = re.sub(r"^[^A-Za-z0-9]+", lambda m: "_" * len(m.group()), safe)   # no leading '.' or '-'
    safe = ("x" + safe if safe.startswith("_") else safe)[:128]
    return safe if not name_problem(safe) else "model"


# ---------------------------------------------------------------- atomic primitives

def is_main_process() -> bool:
    """Under `accelerate launch`, only rank 0 records anything (and speaks)."""
    return os.environ.get("RANK", "0") == "0"


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    """sha256 of a file's bytes (what a result depends on, never its path or name)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


_FILE_HASHES: dict[tuple, str] = {}


def stat_file_hash(path: str | os.PathLike) -> str:
    """file_hash() (full length), read once per process while the file's size, mtime and
    inode stay the same (a 7B checkpoint is ~14 GB); any rewrite changes the stat and is
    hashed again."""
    f = Path(path)
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_hash(f, 64)
    return _FILE_HASHES[key]


def read_text(path: str | os.PathLike) -> str:
    """A user's text file as UTF-8, or one line naming the file and where it is not."""
    from .errors import UserError
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):    # a FIFO or device would block or never end
            raise UserError(f"{path}: not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_jsonl_file(path: str | os.PathLike, objects: bool = False) -> list[Any]:
    """A user's JSONL file (not one evalkit appends to: see read_jsonl): one JSON value a
    line (a JSON object each, with `objects`); errors name the file and the line."""
    from .errors import UserError
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
        if objects and not isinstance(rows[-1], dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object")
    return rows


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    with naming(path):
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def naming(path: str | os.PathLike):
    """An OSError raised while writing `path` names `path` (the file or folder asked for), not
    a hidden temp file beside it or nothing at all (a full disk fails write() and fsync(),
    which carry no file name). An error naming a folder above `path` or a file inside it
    is left as it is."""
    try:
        yield
    except OSError as e:
        named = Path(e.filename) if isinstance(e.filename, (str, os.PathLike)) else None
        if named is not None and (named in (Path(path), *Path(path).parents) or Path(path) in named.parents):
            raise                      # the path itself, a folder above it, or a file inside it
        raise type(e)(e.errno, e.strerror or str(e), str(path)) from e


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON atomically, as it is (a record of evalkit's goes through write())."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file as it is, unchecked (for tests and tools: evalkit reads its records through read())."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as it is and fsync. A crash mid-write leaves at most a torn last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str) + "\n"
    with naming(path):
        # A previous crash may have left a torn tail: cut it before appending.
        _truncate_torn_tail(path)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists():
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # find the last newline and cut after it
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            idx = data.rfind(b"\n")
            if idx >= 0:
                f.truncate(start + idx + 1)
                return
            pos = start
        f.truncate(0)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete lines of a JSONL file, unchecked (for tests and tools: evalkit reads its
    records through read()). A torn last line (no newline) is ignored; [] when there is no file."""
    path = Path(path)
    if not path.exists():
        return []
    return [row for _, row in schema.jsonl_lines(path.read_text(encoding="utf-8"), path)]


# ---------------------------------------------------------------- checkpoint folders

def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.swap-old")


def swap_in(new: str | os.PathLike, target: str | os.PathLike, main_only: bool = True) -> None:
    """Make the finished folder `new` the folder `target` (a checkpoint), on the main process
    only unless `main_only` is False (other ranks return at once; callers wait for it at
    their own barrier):
      1. a folder a killed swap left aside is put back (restore_swapped);
      2. the old `target` is renamed aside, 3. `new` is renamed to `target`, 4. the old one
         is removed.
    Each rename is atomic, so a kill at any point leaves a loadable checkpoint: `target`
    itself, or (killed between 2 and 3) the old one aside, which the next swap or
    restore_swapped() renames back."""
    if main_only and not is_main_process():
        return
    new, target = Path(new), Path(target)
    restore_swapped(target)
    old = _aside(target)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def restore_swapped(target: str | os.PathLike) -> None:
    """Undo a swap_in() killed half way: the old folder goes back when `target` is missing,
    and is removed when the new one made it into place."""
    target = Path(target)
    old = _aside(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, target)


# ---------------------------------------------------------------- environment facts

def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ["evalkit", "torch", "transformers", "accelerate", "datasets", "lm_eval",
                 "openai", "tokenizers", "peft", "vllm"]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name.replace("_", "-"))
    return out


def git_sha(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    sha = res.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=cwd or Path(__file__).parent, capture_output=True, text=True)
    return sha + ("-dirty" if dirty.stdout.strip() else "")


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    if "torch" in sys.modules or _importable("torch"):
        import torch
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    return info


def _importable(mod: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(mod) is not None


def environment() -> dict[str, Any]:
    return {"versions": package_versions(), "git_sha": git_sha(), "hardware": hardware()}


# ---------------------------------------------------------------- typed records

def write(kind: str, path: str | os.PathLike, record: Any) -> None:
    """Write a record of `kind` (evalkit.schema) atomically: a JSON object, stamped with the
    kind's schema_version when it has none (kinds in another program's format are written as
    they are), or for JSONL kinds the list of its lines."""
    if kind in schema.JSONL_KINDS:
        atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in record))
        return
    if "schema_version" not in record and kind not in schema.UNVERSIONED:
        record = {"schema_version": schema.version(kind), **record}
    atomic_write_json(path, record)


def append(kind: str, path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one line to a JSONL record file of `kind`, stamped with its schema_version, fsync'd."""
    append_jsonl(path, row if "schema_version" in row else {"schema_version": schema.version(kind), **row})


def read(kind: str, path: str | os.PathLike) -> Any:
    """A record of `kind`, checked and upgraded by evalkit.schema (JSONL kinds: the list of
    lines, a torn last line left out); a one-line UserError on any problem."""
    return schema.read(path, kind)


def read_lines(kind: str, path: str | os.PathLike) -> list[dict[str, Any]]:
    """read() of a JSONL kind whose file may not exist yet (a resumable log): [] then."""
    return read(kind, path) if Path(path).exists() else []


# ---------------------------------------------------------------- file names, per folder kind

CACHE_STAMP = ".evalkit-cache.json"     # a cache folder's stamp (evalkit.caches.Slot): the key of its content


def cache_stamp(path: str | os.PathLike, file: bool = False) -> Path:
    """Where a cache slot records the key its content was made from (kind cache_stamp): inside
    a folder, or beside a file (<file>.key.json)."""
    path = Path(path)
    return path.with_name(path.name + ".key.json") if file else path / CACHE_STAMP


def sample_key_file(folder: str | os.PathLike) -> Path:
    """The stamp of a folder of generated sample benchmark data: what it was made from."""
    return Path(folder) / "sample_key.json"


def onpolicy_samples_file(folder: str | os.PathLike, key: str) -> Path:
    """On-policy samples cached under their content key (kind onpolicy_samples)."""
    return Path(folder) / f"{key}.json"


def serve_log(port: int) -> Path:
    """The log of a `transformers serve` child evalkit starts (in the system's temp folder)."""
    return Path(tempfile.gettempdir()) / f"evalkit-transformers-serve-{port}.log"


def known_model_record(folder: str | os.PathLike) -> Path:
    """The materialisation record of a known model's folder (kind known_model)."""
    return Path(folder) / "evalkit_model.json"


def suite_file(task_dir: str | os.PathLike) -> Path:
    """The suite a folder of lm-eval task YAMLs was written from."""
    return Path(task_dir) / "suite.json"


def answers_meta(answers: str | os.PathLike) -> Path:
    """The stamp of an answer file, beside it (<model>.meta.json): what produced the answers."""
    return Path(answers).with_suffix(".meta.json")


class MTBenchFiles:
    """FastChat's llm_judge layout, so its show_result.py reads the folder as it is:
    reports/<experiment>/<model>/mtbench/, or the --out DIR of `evalkit mtbench`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def questions(self) -> Path:               # the questions used
        return self.root / "questions.jsonl"

    @property
    def summary(self) -> Path:                 # evalkit's numbers (kind mtbench_summary)
        return self.root / "summary.json"

    def answers(self, answerer: str) -> Path:  # FastChat's model_answer/<model>.jsonl
        return self.root / "model_answer" / f"{path_component(answerer)}.jsonl"

    def answers_meta(self, answerer: str) -> Path:   # what produced those answers
        return answers_meta(self.answers(answerer))

    def judgments(self, judge: str, mode: str) -> Path:   # model_judgment/<judge>_single|pair.jsonl
        return self.root / "model_judgment" / f"{path_component(judge)}_{mode}.jsonl"

    def games(self, judge: str) -> Path:       # pairwise: one line per judge call (game)
        return self.root / "model_judgment" / f"{path_component(judge)}_pair_games.jsonl"

    def errors(self, judge: str, mode: str) -> Path:   # failed calls, retried by the next run
        return self.root / "model_judgment" / f"{path_component(judge)}_{mode}_errors.jsonl"

    def records(self) -> list[tuple[str, dict[str, str]]]:
        """(kind, where) of every record file in the folder (where: MTBenchFiles.path's keys)."""
        out = [(k, {}) for k, p in (("mtbench_summary", self.summary), ("mtbench_questions", self.questions))
               if p.exists()]
        for f in sorted((self.root / "model_answer").glob("*.jsonl")):
            out.append(("mtbench_answers", {"answerer": f.stem}))
        for f in sorted((self.root / "model_answer").glob("*.jsonl")):
            out += [("cache_stamp", {"answerer": f.stem})] if self.answers_meta(f.stem).exists() else []
        out += [("cache_stamp", {})] if cache_stamp(self.root).exists() else []
        for f in sorted((self.root / "model_judgment").glob("*.jsonl")):
            stem = f.stem
            if stem.endswith("_pair_games"):
                out.append(("mtbench_judgments", {"judge": stem[:-len("_pair_games")], "mode": "games"}))
                continue
            kind = "mtbench_errors" if stem.endswith("_errors") else "mtbench_judgments"
            judge, _, mode = stem.removesuffix("_errors").rpartition("_")
            out.append((kind, {"judge": judge, "mode": mode}))
        return out

    def path(self, kind: str, **where: str) -> Path:
        if kind == "mtbench_judgments" and where.get("mode") == "games":
            return self.games(where["judge"])
        if kind == "cache_stamp":                    # the answers' stamp, or the folder's (stage scratch)
            return self.answers_meta(where["answerer"]) if "answerer" in where else cache_stamp(self.root)
        return {"mtbench_summary": lambda: self.summary, "mtbench_questions": lambda: self.questions,
                "mtbench_answers": lambda: self.answers(where["answerer"]),
                "mtbench_judgments": lambda: self.judgments(where["judge"], where["mode"]),
                "mtbench_errors": lambda: self.errors(where["judge"], where["mode"])}[kind]()


class ModelFiles:
    """One model's results: reports/<experiment>/<model>/, or the --out DIR of
    `evalkit leaderboard` and `evalkit contamination`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    leaderboard_samples_dir = "leaderboard_samples"   # recorded in leaderboard.json as samples_dir

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.json"

    def leaderboard_samples(self, task: str, samples_dir: str | None = None) -> Path:
        """lm-eval's per-sample rows of one task (samples_dir: as a leaderboard.json records it)."""
        return self.root / (samples_dir or self.leaderboard_samples_dir) / f"{task}.jsonl"

    @property
    def lm_eval_tasks(self) -> Path:           # the task YAMLs lm-eval is given (scratch)
        return self.root / "lm_eval_tasks"

    @property
    def suite(self) -> Path:                   # the suite those YAMLs came from
        return suite_file(self.lm_eval_tasks)

    @property
    def lm_eval_cache(self) -> Path:           # lm-eval's request cache, one key at a time (caches.Slot)
        return self.root / "lm_eval_cache"

    @property
    def contamination(self) -> Path:
        return self.root / "contamination.json"

    def contamination_examples(self, benchmark: str) -> Path:
        return self.root / f"contamination_{benchmark}.jsonl"

    @property
    def mtbench(self) -> MTBenchFiles:
        return MTBenchFiles(self.root / "mtbench")

    def has_results(self) -> bool:
        return self.leaderboard.exists() or self.contamination.exists() or self.mtbench.root.is_dir()

    def records(self) -> list[tuple[str, dict[str, str]]]:
        out = [(k, {}) for k, p in (("leaderboard", self.leaderboard), ("contamination", self.contamination),
                                    ("suite", self.suite)) if p.exists()]
        out += [("leaderboard_samples", {"task": f.stem})
                for f in sorted((self.root / self.leaderboard_samples_dir).glob("*.jsonl"))]
        out += [("contamination_examples", {"benchmark": f.stem[len("contamination_"):]})
                for f in sorted(self.root.glob("contamination_*.jsonl"))]
        out += [("cache_stamp", {"cache": d.name}) for d in (self.lm_eval_tasks, self.lm_eval_cache)
                if cache_stamp(d).exists()]
        return out + [(k, {"mtbench": True, **w}) for k, w in self.mtbench.records()]

    def path(self, kind: str, **where: str) -> Path:
        if kind.startswith("mtbench") or where.pop("mtbench", False):
            return self.mtbench.path(kind, **where)
        if kind == "cache_stamp":                    # a scratch or request-cache folder's stamp
            return cache_stamp({"lm_eval_tasks": self.lm_eval_tasks, "lm_eval_cache": self.lm_eval_cache}[where["cache"]])
        return {"leaderboard": lambda: self.leaderboard, "contamination": lambda: self.contamination,
                "suite": lambda: self.suite, "leaderboard_samples": lambda: self.leaderboard_samples(where["task"]),
                "contamination_examples": lambda: self.contamination_examples(where["benchmark"])}[kind]()


class CheckpointFiles:
    """evalkit's records inside a checkpoint folder (beside save_pretrained()'s files)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def metadata(self) -> Path:                # kind evalkit
        return self.root / "evalkit.json"

    @property
    def metrics(self) -> Path:                 # kind train_metrics
        return self.root / "train_metrics.jsonl"

    @property
    def tiny_spec(self) -> Path:               # a tiny model's spec and builder hash
        return self.root / "tiny_spec.json"

    @property
    def model_card(self) -> Path:
        return self.root / "README.md"

    def onpolicy_round(self, bc: bool) -> Path:   # an on-policy round's training rows (kind onpolicy_round)
        return self.root / ("onpolicy_bc.json" if bc else "onpolicy_pairs.json")

    def onpolicy_samples(self, round: int | str) -> Path:   # the samples each round drew from
        return self.root / "onpolicy_samples" / f"round{round}.json"

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        out = [(k, {}) for k, p in (("evalkit", self.metadata), ("train_metrics", self.metrics),
                                    ("tiny_spec", self.tiny_spec)) if p.exists()]
        out += [("onpolicy_round", {"bc": bc}) for bc in (False, True) if self.onpolicy_round(bc).exists()]
        out += [("onpolicy_samples", {"round": f.stem[len("round"):]})
                for f in sorted((self.root / "onpolicy_samples").glob("round*.json"))]
        return out

    def path(self, kind: str, **where: Any) -> Path:
        return {"evalkit": lambda: self.metadata, "train_metrics": lambda: self.metrics,
                "tiny_spec": lambda: self.tiny_spec, "onpolicy_round": lambda: self.onpolicy_round(where["bc"]),
                "onpolicy_samples": lambda: self.onpolicy_samples(where["round"])}[kind]()


class ReportFiles:
    """An experiment's reports folder: reports/<experiment>/ (what `evalkit report` and
    `evalkit board` are given)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def ngram_overlap(self) -> Path:
        return self.root / "ngram_overlap.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    @property
    def lock(self) -> Path:                    # held by the one `evalkit run` at work on the experiment
        return self.root / ".evalkit.lock"

    def model(self, model: str) -> ModelFiles:
        return ModelFiles(self.root / model)

    def models(self) -> list[str]:
        """The model folders that hold results."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and ModelFiles(p).has_results())

    def generated_data(self, dataset: str) -> Path:
        """Preference pairs the project generates for a dataset entry (`generate:`)."""
        return self.root / "data" / f"{check_name(dataset, 'dataset name')}.jsonl"

    def sample_data(self, kind: str) -> Path:
        """Small synthetic benchmark data the project generates for this run (hub schema)."""
        return self.root / "sample_data" / kind

    def sample_key(self, kind: str) -> Path:
        return sample_key_file(self.sample_data(kind))

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        out = [(k, {}) for k, p in (("manifest", self.manifest), ("ngram_overlap", self.ngram_overlap)) if p.exists()]
        for f in sorted((self.root / "data").glob("*.jsonl")):
            out += [("pairs", {"dataset": f.stem})]
            out += [("cache_stamp", {"dataset": f.stem})] if cache_stamp(f, file=True).exists() else []
        for d in sorted((self.root / "sample_data").glob("*")):
            out += [("cache_stamp", {"sample": d.name})] if self.sample_key(d.name).exists() else []
            out += [("benchmark_rows", {"sample": d.name, "file": str(f.relative_to(d))})
                    for f in sorted(d.rglob("*.jsonl"))]
        for m in self.models():
            out += [(k, {"model": m, **w}) for k, w in self.model(m).records()]
        return out

    def path(self, kind: str, **where: Any) -> Path:
        if "model" in where:
            return self.model(where.pop("model")).path(kind, **where)
        if kind == "cache_stamp":                    # generated pairs' stamp, or sample data's
            return cache_stamp(self.generated_data(where["dataset"]), file=True) if "dataset" in where \
                else self.sample_key(where["sample"])
        return {"manifest": lambda: self.manifest, "ngram_overlap": lambda: self.ngram_overlap,
                "pairs": lambda: self.generated_data(where["dataset"]),
                "benchmark_rows": lambda: self.sample_data(where["sample"]) / where["file"]}[kind]()


def split_file(folder: str | os.PathLike, split: str) -> Path:
    """A split's rows in the --data-dir layout (DATA_DIR/<dataset_path>/<dataset_name|default>/<split>.jsonl)."""
    return Path(folder) / f"{split}.jsonl"


# ---------------------------------------------------------------- one experiment

class RunDir:
    """Paths and records of one experiment. `root` holds reports/ and checkpoints/ (default: cwd)."""

    def __init__(self, experiment: str, root: str | os.PathLike = ".",
                 reports: str | os.PathLike | None = None,
                 checkpoints: str | os.PathLike | None = None):
        self.experiment = check_name(experiment, "experiment name")
        root = Path(root)
        self.reports = Path(reports) if reports else root / "reports" / experiment
        self.checkpoints = Path(checkpoints) if checkpoints else root / "checkpoints" / experiment
        self.files = ReportFiles(self.reports)

    # checkpoints
    def checkpoint(self, variant: str) -> Path:
        return self.checkpoints / check_name(variant, "variant name")

    def checkpoint_files(self, variant: str) -> CheckpointFiles:
        return CheckpointFiles(self.checkpoint(variant))

    def base_checkpoint(self) -> Path:
        return self.checkpoints / "base"

    def train_metadata(self, variant: str) -> Path:
        return self.checkpoint_files(variant).metadata

    def train_metrics(self, variant: str) -> Path:
        return self.checkpoint_files(variant).metrics

    def reference_cache(self) -> Path:
        return self.checkpoints / "_reference_cache"

    def onpolicy_samples(self) -> Path:
        """On-policy samples, keyed by the policy's weights and the whole sampling request."""
        return self.checkpoints / "_onpolicy_samples"

    def generated_data(self, dataset: str) -> Path:
        """Preference pairs the project generates for a dataset entry (`generate:`)."""
        return self.files.generated_data(dataset)

    # reports
    @property
    def manifest_path(self) -> Path:
        return self.files.manifest

    def model_dir(self, model: str) -> Path:
        return self.reports / check_name(model, "model label")

    def model_files(self, model: str) -> ModelFiles:
        return ModelFiles(self.model_dir(model))

    def leaderboard(self, model: str) -> Path:
        return self.model_files(model).leaderboard

    def sample_data(self, kind: str) -> Path:
        """Small synthetic benchmark data the project generates for this run."""
        return self.files.sample_data(kind)

    def mtbench_dir(self, model: str) -> Path:
        return self.model_files(model).mtbench.root

    def mtbench_files(self, model: str) -> MTBenchFiles:
        return self.model_files(model).mtbench

    def contamination(self, model: str) -> Path:
        return self.model_files(model).contamination

    def ngram_overlap(self) -> Path:
        return self.files.ngram_overlap

    def report_html(self) -> Path:
        return self.files.report_html

    def log_file(self) -> Path:
        return self.files.log_file

    # typed records
    def path(self, kind: str, **where: Any) -> Path:
        """Where the record of `kind` lives: where names the model (results), the variant
        (checkpoints), the task / benchmark / answerer / judge and mode, the dataset or sample,
        or the on-policy cache key, as the kind needs."""
        if "variant" in where:
            return self.checkpoint_files(where.pop("variant")).path(kind, **where)
        if kind == "onpolicy_samples" and "key" in where:
            return onpolicy_samples_file(self.onpolicy_samples(), where["key"])
        if "model" in where:
            check_name(where["model"], "model label")
        return self.files.path(kind, **where)

    def read(self, kind: str, **where: Any) -> Any:
        """The record of `kind` at `where`, checked through evalkit.schema."""
        return read(kind, self.path(kind, **where))

    def write(self, kind: str, record: Any, **where: Any) -> None:
        write(kind, self.path(kind, **where), record)

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, where) of every record file of the experiment on disk, for read(kind, **where)."""
        out = self.files.records()
        for d in sorted(self.checkpoints.glob("*")) if self.checkpoints.is_dir() else []:
            if d.is_dir() and not name_problem(d.name):
                out += [(k, {"variant": d.name, **w}) for k, w in CheckpointFiles(d).records()]
        out += [("onpolicy_samples", {"key": f.stem}) for f in sorted(self.onpolicy_samples().glob("*.json"))]
        return out

    # manifest
    def load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return read("manifest", self.manifest_path)
        return {}

    def write_manifest(self, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Create or refresh the manifest, keeping recorded stage status."""
        old = self.load_manifest()
        manifest = {
            "schema_version": schema.version("manifest"),
            "experiment": self.experiment,
            "created": old.get("created", _now()),
            "updated": _now(),
            "config": config,
            **environment(),
            "stages": old.get("stages", {}),
            **({"last_run": old["last_run"]} if "last_run" in old else {}),   # a run with nothing to do keeps it
            **extra,
        }
        write("manifest", self.manifest_path, manifest)
        return manifest

    def record_run(self, record: dict[str, Any]) -> None:
        """The latest run with work to do: wall time, stages, peak memory."""
        manifest = self.load_manifest()
        manifest["last_run"] = record
        write("manifest", self.manifest_path, manifest)

    def set_stage(self, stage: str, status: str, **fields: Any) -> None:
        manifest = self.load_manifest() or {"schema_version": schema.version("manifest"),
                                            "experiment": self.experiment, "stages": {}}
        entry = manifest.setdefault("stages", {}).setdefault(stage, {})
        entry.update({"status": status, "updated": _now(), **fields})
        manifest["updated"] = _now()
        write("manifest", self.manifest_path, manifest)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
