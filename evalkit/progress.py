"""Progress bars: tqdm on stderr on a terminal; none when stderr is a file or a pipe (a log or
CI gets no redraw lines; the stage lines say what runs).

TQDM_DISABLE=1 in the environment switches every bar off, as it does for tqdm itself
(an explicit `disable=` argument would otherwise win over tqdm's environment variables).
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


def bar(iterable=None, *, total=None, desc: str = "", enabled: bool = True, leave: bool = False):
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled or disabled_by_env() or not tty, leave=leave,
                mininterval=0.1, file=sys.stderr, dynamic_ncols=True)
