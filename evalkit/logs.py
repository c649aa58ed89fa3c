"""Where log lines go: evalkit's own on the console, every library's in run.log.

A run prints one line per stage that has work to do, evalkit's warnings, and (on a terminal)
progress bars; evalkit's other lines (up-to-date stages, per-stage results), lm-eval's "Task: ..."
lines, datasets' "Generating ... split" bars, transformers' and lm-eval's warnings and Python
warnings are written to the experiment's run.log (the runner attaches a file handler to the root
logger) and not to the console. `--verbose` shows them on the console as well.

The libraries install their own stderr handlers (datasets at import, lm-eval in
setup_logging, transformers on first use) and some switch propagation off; `route()` takes
those handlers away and lets the records propagate to the root logger, where our handlers
decide. It is cheap and is called again after a library is imported.
"""
from __future__ import annotations

import logging
import os
import sys

LIBRARIES = ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "evaluate", "huggingface_hub",
             "sentence_transformers", "py.warnings")
_CONSOLE = "_evalkit_console"
_verbose = False


class _Console(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        who = "evalkit" if record.name.startswith("evalkit") else record.name
        return f"{who}: {record.getMessage()}" + (f"\n{self.formatException(record.exc_info)}"
                                                  if record.exc_info else "")


def _ours(record: logging.LogRecord) -> bool:
    """The console, unless --verbose: evalkit's warnings and errors, and the lines marked for it
    (`extra=CONSOLE`: a stage starting). Every other line is in run.log only."""
    if _verbose:
        return True
    return record.name.startswith("evalkit") and (record.levelno >= logging.WARNING
                                                  or getattr(record, "console", False))


CONSOLE = {"console": True}    # log.info(..., extra=CONSOLE): this line goes to the console too


def setup(verbose: bool = False, debug: bool = False) -> None:
    """The console handler (evalkit's records only, unless verbose) and the libraries' routing."""
    global _verbose
    _verbose = verbose
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _CONSOLE, False)]:
        root.removeHandler(h)              # main() called again in one process
    if not root.handlers:                  # as logging.basicConfig: a host (pytest) that set up logging keeps it
        root.setLevel(logging.DEBUG if debug else logging.INFO)
        console = logging.StreamHandler(sys.stderr)
        setattr(console, _CONSOLE, True)
        console.setFormatter(_Console())
        console.addFilter(_ours)
        root.addHandler(console)
    logging.captureWarnings(True)          # warnings.warn -> the "py.warnings" logger -> run.log
    if not verbose:
        # the libraries' own progress bars (datasets' "Generating ... split", hub downloads)
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    route()


def route() -> None:
    """Take the libraries' own stderr handlers away; their records propagate to ours."""
    for name in LIBRARIES:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler and getattr(h, "stream", None) in (sys.stderr, sys.stdout,
                                                                                    sys.__stderr__):
                lg.removeHandler(h)
        lg.propagate = True
        if name in ("transformers", "datasets", "accelerate"):
            lg.setLevel(logging.WARNING)   # their INFO is per-file loading noise, even for run.log
    try:   # transformers adds its handler lazily, once: configure it now, then take it away
        from transformers.utils import logging as hf_logging
        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.set_verbosity_warning()
        if not _verbose:
            hf_logging.disable_progress_bar()
    except ImportError:
        pass
