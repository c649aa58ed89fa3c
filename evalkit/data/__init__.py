"""Files evalkit ships inside the package (read with importlib.resources, never from a
source checkout): leaderboard suites, sample MT-Bench questions, published numbers, the
demo experiment."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(*parts: str) -> Path:
    """A packaged file or folder as a real path (the package is installed unzipped)."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
