"""Experiment trackers (`report_to: [tensorboard, wandb, mlflow]` in an experiment file).

Training logs go through accelerate's trackers: the trainer asks `accelerator_kwargs()` for
`log_with`/`project_dir` and calls `start`/`log`/`finish` around its loop. The train stage
sets the destination for the variant it trains (`active(...)`), so stepwise and on-policy
training, which call the same trainer, log too. TensorBoard needs only the `tensorboard`
package and writes event files under reports/<experiment>/tracking/; wandb and mlflow use
their own configuration (WANDB_MODE=offline, MLFLOW_TRACKING_URI, ...). A tracker asked for
and not installed is one line, before anything runs.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


@dataclass
class Destination:
    report_to: list[str]
    project_dir: Path           # tensorboard event files go under project_dir/<run>
    project: str                # the experiment's name
    run: str                    # the variant's name


_current: contextvars.ContextVar[Destination | None] = contextvars.ContextVar("evalkit_trackers", default=None)


def check(report_to: list[str], where: str = "report_to") -> None:
    for name in report_to:
        if not any(importlib.util.find_spec(p) is not None for p in PACKAGES[name]):
            raise UserError(f"{where}: {name} is not installed (pip install {PACKAGES[name][0]}), "
                            f"or remove it from {where}")


@contextlib.contextmanager
def active(report_to: list[str], project_dir: Path, project: str, run: str):
    token = _current.set(Destination(list(report_to), Path(project_dir), project, run) if report_to else None)
    try:
        yield
    finally:
        _current.reset(token)


def accelerator_kwargs() -> dict[str, Any]:
    d = _current.get()
    if d is None:
        return {}
    return {"log_with": d.report_to, "project_dir": str(d.project_dir)}


def start(accelerator, config: dict[str, Any]) -> None:
    d = _current.get()
    if d is None:
        return
    flat = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
    init = {"wandb": {"name": d.run, "group": d.project}, "mlflow": {"run_name": d.run}}
    accelerator.init_trackers(d.run if "tensorboard" in d.report_to else d.project, config=flat,
                              init_kwargs={k: v for k, v in init.items() if k in d.report_to})


def log(accelerator, record: dict[str, Any], step: int) -> None:
    if _current.get() is not None:
        accelerator.log({f"train/{k}": v for k, v in record.items()
                         if k != "step" and isinstance(v, (int, float)) and v == v}, step=step)


def finish(accelerator) -> None:
    if _current.get() is not None:
        accelerator.end_training()
