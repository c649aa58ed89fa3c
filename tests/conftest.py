"""Offline, hermetic tests: no hub, no network beyond loopback, a temporary HF_HOME."""
from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="evalkit-hfhome-")
os.environ.setdefault("TQDM_DISABLE", "1")
# One torch thread, here and in every subprocess a test starts: tiny models gain little from a
# second thread, and two-thread processes on a shared two-core machine stall each other
# (the cold tiny-model build: 26 s on one thread, 55-140 s on two under load; same weights).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
# Tiny models are cached by spec under checkpoints/.test-cache (git-ignored) so reruns are fast.
TEST_CACHE = REPO / "checkpoints" / ".test-cache"
# real models materialised by evalkit.backends.known_models (tests/test_real_model.py) go there too, never to ~/.cache
os.environ["EVALKIT_CACHE"] = str(TEST_CACHE / "evalkit-cache")

# ---------------------------------------------------------------- the socket guard

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkBlocked(RuntimeError):
    pass


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to open a non-loopback socket to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to open a non-loopback socket to {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


# ---------------------------------------------------------------- tiny models

SMALL_SPEC = {"seed": 0, "n_documents": 1500, "pretrain_steps": 150}


# the same small model with MT-Bench judge chats in its corpus: it answers "Rating: [[N]]"
JUDGE_SPEC = {**SMALL_SPEC, "judge_documents": 300}


@pytest.fixture(scope="session")
def tiny_judge_dir() -> Path:
    from evalkit.backends.tiny import build_tiny_model, spec_hash
    return build_tiny_model(TEST_CACHE / f"tiny-{spec_hash(JUDGE_SPEC)}", JUDGE_SPEC, progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A small pretrained tiny Llama shared by the session (built once, cached by spec)."""
    from evalkit.backends.tiny import build_tiny_model, spec_hash
    return build_tiny_model(TEST_CACHE / f"tiny-{spec_hash(SMALL_SPEC)}", SMALL_SPEC, progress=False)


@pytest.fixture(scope="session")
def tiny_model_served(tiny_model_dir) -> str:
    """`transformers serve` on the tiny model (its base URL), started once for the tests that
    need a real OpenAI-compatible server in front of it."""
    from evalkit.backends.serve import transformers_serve
    with transformers_serve(tiny_model_dir) as url:
        yield url
