"""The only code that knows where outputs live, and how they are written.

Layout (the README's "Files" section documents every file; evalkit.schema types them):
    checkpoints/<experiment>/<variant>/        trained weights + evalkit.json + train_metrics.jsonl
    reports/<experiment>/manifest.json         resolved config, versions, git sha, stage status
    reports/<experiment>/<model>/...           per-model results

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

SCHEMA_VERSION = 1
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


def atomic_write_json(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Write `obj` as JSON atomically; adds schema_version when missing."""
    if isinstance(obj, dict) and "schema_version" not in obj:
        obj = {"schema_version": SCHEMA_VERSION, **obj}
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record and fsync. A crash mid-write leaves at most a torn last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "schema_version" not in record:
        record = {"schema_version": SCHEMA_VERSION, **record}
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
    """All complete records. A torn last line (no newline, or invalid JSON) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # The text after the last "\n" is either "" or a torn line: drop it.
    for lineno, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON line ({e.msg})") from None
    return out


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


# ---------------------------------------------------------------- paths

class RunDir:
    """Paths of one experiment. `root` holds reports/ and checkpoints/ (default: cwd)."""

    def __init__(self, experiment: str, root: str | os.PathLike = ".",
                 reports: str | os.PathLike | None = None,
                 checkpoints: str | os.PathLike | None = None):
        self.experiment = check_name(experiment, "experiment name")
        root = Path(root)
        self.reports = Path(reports) if reports else root / "reports" / experiment
        self.checkpoints = Path(checkpoints) if checkpoints else root / "checkpoints" / experiment

    # checkpoints
    def checkpoint(self, variant: str) -> Path:
        return self.checkpoints / check_name(variant, "variant name")

    def base_checkpoint(self) -> Path:
        return self.checkpoints / "base"

    def train_metadata(self, variant: str) -> Path:
        return self.checkpoint(variant) / "evalkit.json"

    def train_metrics(self, variant: str) -> Path:
        return self.checkpoint(variant) / "train_metrics.jsonl"

    def reference_cache(self) -> Path:
        return self.checkpoints / "_reference_cache"

    def onpolicy_samples(self) -> Path:
        """On-policy samples, keyed by the policy's weights and the whole sampling request."""
        return self.checkpoints / "_onpolicy_samples"

    def generated_data(self, dataset: str) -> Path:
        """Preference pairs the project generates for a dataset entry (`generate:`)."""
        return self.reports / "data" / f"{check_name(dataset, 'dataset name')}.jsonl"

    # reports
    @property
    def manifest_path(self) -> Path:
        return self.reports / "manifest.json"

    def model_dir(self, model: str) -> Path:
        return self.reports / check_name(model, "model label")

    def leaderboard(self, model: str) -> Path:
        return self.model_dir(model) / "leaderboard.json"

    def sample_data(self, kind: str) -> Path:
        """Small synthetic benchmark data the project generates for this run."""
        return self.reports / "sample_data" / kind

    def mtbench_dir(self, model: str) -> Path:
        return self.model_dir(model) / "mtbench"

    def contamination(self, model: str) -> Path:
        return self.model_dir(model) / "contamination.json"

    def ngram_overlap(self) -> Path:
        return self.reports / "ngram_overlap.json"

    def report_html(self) -> Path:
        return self.reports / "report.html"

    def log_file(self) -> Path:
        return self.reports / "run.log"

    # manifest
    def load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            from .schema import read
            return read(self.manifest_path, "manifest")
        return {}

    def write_manifest(self, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Create or refresh the manifest, keeping recorded stage status."""
        old = self.load_manifest()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "experiment": self.experiment,
            "created": old.get("created", _now()),
            "updated": _now(),
            "config": config,
            **environment(),
            "stages": old.get("stages", {}),
            **({"last_run": old["last_run"]} if "last_run" in old else {}),   # a run with nothing to do keeps it
            **extra,
        }
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def record_run(self, record: dict[str, Any]) -> None:
        """The latest run with work to do: wall time, stages, peak memory."""
        manifest = self.load_manifest()
        manifest["last_run"] = record
        atomic_write_json(self.manifest_path, manifest)

    def set_stage(self, stage: str, status: str, **fields: Any) -> None:
        manifest = self.load_manifest() or {"schema_version": SCHEMA_VERSION,
                                            "experiment": self.experiment, "stages": {}}
        entry = manifest.setdefault("stages", {}).setdefault(stage, {})
        entry.update({"status": status, "updated": _now(), **fields})
        manifest["updated"] = _now()
        atomic_write_json(self.manifest_path, manifest)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
