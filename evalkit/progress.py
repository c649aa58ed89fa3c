"""Progress bars: tqdm on stderr, lively on a terminal, sparse in logs and CI."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(iterable=None, *, total=None, desc: str = "", enabled: bool = True, leave: bool = False):
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave,
                mininterval=0.1 if tty else 30.0, file=sys.stderr, dynamic_ncols=True)
