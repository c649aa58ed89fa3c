"""What every bench shares: its --out folder (outside the checkout) and the JSON it writes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def out_dir(ap: argparse.ArgumentParser, value: str) -> Path:
    """--out resolved and created; inside the checkout is an error (benches never write there)."""
    out = Path(value).resolve()
    if out == REPO or REPO in out.parents:
        ap.error(f"--out {value}: inside the checkout; use a directory outside it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_figures(out: Path, figures: dict, name: str = "bench.json") -> Path:
    path = out / name
    path.write_text(json.dumps(figures, indent=1))
    print(f"figures: {path}")
    return path
