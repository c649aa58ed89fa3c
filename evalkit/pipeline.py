"""Stages in order. Each stage records its status in the manifest."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from .config import Experiment, TinyBase, load_experiment
from .rundir import RunDir

log = logging.getLogger("evalkit")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_EXPERIMENT = REPO_ROOT / "tasks" / "experiments" / "demo.yaml"


def rundir_for(exp: Experiment, reports: str | Path | None = None) -> RunDir:
    return RunDir(exp.name, reports=reports)


def resolve_base_model(exp: Experiment, rd: RunDir) -> str:
    """The base model's hub id or local dir; builds the tiny model when the config asks."""
    if isinstance(exp.base_model, TinyBase):
        from .models import build_tiny_model
        t0 = time.time()
        path = build_tiny_model(rd.base_checkpoint(), exp.base_model.tiny.model_dump())
        log.info("tiny base model ready at %s (%.1fs)", path, time.time() - t0)
        return str(path)
    return exp.base_model


def run_demo(out: str | Path = "reports/demo") -> RunDir:
    exp = load_experiment(DEMO_EXPERIMENT)
    rd = rundir_for(exp, reports=out)
    t0 = time.time()
    rd.write_manifest(exp.model_dump(mode="json", by_alias=True))
    rd.set_stage("base_model", "running")
    base = resolve_base_model(exp, rd)
    rd.set_stage("base_model", "done", path=base)
    print(f"demo finished in {time.time() - t0:.1f}s")
    print(f"  base model : {base}")
    print(f"  manifest   : {rd.manifest_path}")
    return rd
