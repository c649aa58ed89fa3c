"""Start a local OpenAI-compatible server for a model: `transformers serve MODEL` on loopback.

Used when an experiment asks for a judge it should serve itself (e.g. a local checkpoint as
the judge), and by the tests. On a GPU machine, `vllm serve` is the faster choice: start it
yourself and give its URL as the judge's base_url.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..rundir import serve_log
from .models import resolve_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when evalkit dies, however evalkit
    dies (kill -9 included), so no server outlives the run that started it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def transformers_serve(model: str | Path, timeout: float = 180.0, device: str = "auto"):
    """Yields the base URL (http://127.0.0.1:PORT/v1); stops the server on exit."""
    import httpx
    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        raise UserError("`transformers serve` is not available (pip install 'evalkit[serve]')")
    port = free_port()
    log_path = serve_log(port)
    log = open(log_path, "w")
    proc = subprocess.Popen([str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                             "--device", device, "--default-seed", "0"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, preexec_fn=_die_with_parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise UserError(f"transformers serve {model} exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise UserError(f"transformers serve {model} did not start in {timeout:.0f}s; see {log_path}")
            time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def check_endpoint(base_url: str, what: str = "base_url", timeout: float = 5.0) -> None:
    """Fail in one line, in seconds, when nothing answers at an OpenAI-compatible URL
    (before any model is loaded or any work is done)."""
    import httpx
    url = base_url.rstrip("/")
    try:
        httpx.get(url + "/models", timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout) as e:
        raise UserError(f"{what} {base_url}: nothing answers there ({type(e).__name__})") from None
    except (httpx.HTTPError, ValueError) as e:
        raise UserError(f"{what} {base_url}: not a usable URL ({e})") from None


@contextlib.contextmanager
def judge_endpoint(serve: str | None, base_url: str | None) -> Iterator[str | None]:
    """The judge's base URL: `serve` starts `transformers serve` on that local model for
    the duration (it dies with evalkit); otherwise `base_url` (None: OpenAI's)."""
    if serve:
        with transformers_serve(resolve_model(serve)) as url:
            yield url
    else:
        yield base_url
