"""A small scripted OpenAI-compatible chat server, for tests and benchmarks of the judge path.

It answers /v1/chat/completions with a judgment whose rating is a pure function of the
prompt (so reruns agree), after a configurable latency, and injects faults on a seeded
share of calls: 429 with Retry-After, 500, a hang past the client's timeout, garbage text,
truncated JSON, a judgment without a rating, and (when listed) an empty reply. `rating`
fixes every rating (e.g. 0 or 11, out of FastChat's range); `split_digits` sends logprobs
the way tokenizers that split digits do ("1", "0" for 10). GET /stats reports the calls;
`Script.bodies` keeps what each request asked for (every field but the messages).

    python -m evalkit.devserver --port 8011 --latency 0.2 --fault-rate 0.3
"""


import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field

FAULTS = ("429", "500", "hang", "garbage", "truncated", "no_rating")


@dataclass
class Script:
    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple = FAULTS
    hang_seconds: float = 30.0
    seed: int = 0
    calls: int = 0
    ok_calls: int = 0
    by_kind: dict = field(default_factory=dict)
    prompts: list = field(default_factory=list)
    bodies: list = field(default_factory=list)     # every request's fields but its messages
    rating: int | None = None
    split_digits: bool = False

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()


def rating_for(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10 + 1


def build_app(script: Script):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    app = FastAPI()

    @app.get("/stats")
    def stats():
        return {"calls": script.calls, "ok_calls": script.ok_calls, "by_kind": script.by_kind}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "scripted-judge", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        user = "\n".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
        with script.lock:
            script.calls += 1
            script.bodies.append({k: v for k, v in body.items() if k != "messages"})
            # a seeded share of calls is faulted; the faults take turns, so every kind occurs
            if script.rng.random() < script.fault_rate:
                kind = script.faults[sum(v for k, v in script.by_kind.items() if k != "ok") % len(script.faults)]
            else:
                kind = "ok"
            script.by_kind[kind] = script.by_kind.get(kind, 0) + 1
        await asyncio.sleep(script.latency)
        if kind == "429":
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429, headers={"Retry-After": "0.05"})
        if kind == "500":
            return JSONResponse({"error": {"message": "internal"}}, status_code=500)
        if kind == "hang":
            try:
                await asyncio.sleep(script.hang_seconds)
            except asyncio.CancelledError:  # the client gave up or the server is stopping
                return Response(status_code=499)
            return JSONResponse({"error": {"message": "too late"}}, status_code=504)
        if kind == "garbage":
            return PlainTextResponse("<html>bad gateway</html>", status_code=200)
        r = script.rating if script.rating is not None else rating_for(user)
        text = "Rating unclear, the judge rambled." if kind == "no_rating" else \
            f"The answer addresses the question. Rating: [[{r}]]"
        if kind == "empty":
            text = ""
        if "[[A]]" in json.dumps(body.get("messages", [])) and kind != "no_rating":
            text = f"Assistant A is better. [[{'A' if r % 2 else 'B'}]]"
        payload = {"id": f"chatcmpl-{script.calls}", "object": "chat.completion", "created": int(time.time()),
                   "model": body.get("model", "scripted-judge"),
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}],
                   "usage": {"prompt_tokens": len(user.split()), "completion_tokens": len(text.split()),
                             "total_tokens": len(user.split()) + len(text.split())}}
        if body.get("logprobs") and kind not in ("no_rating", "empty"):
            def tok(t, lp=0.0, top=()):
                return {"token": t, "logprob": lp, "bytes": None, "top_logprobs": list(top)}
            if script.split_digits:   # "10" is "1" then "0"; the digits 1-9 are single tokens
                first = str(r)[0]
                top = [tok(str(k), -abs(k - (1 if r == 10 else r)) - 0.1) for k in range(1, 10)]
                content = [tok("[["), tok(first, -0.1, top)]
                if r == 10:
                    content.append(tok("0", -0.05, [tok("0", -0.05), tok("]]", -3.0)]))
                content.append(tok("]]"))
            else:
                top = [tok(str(k), -abs(k - r) - 0.1) for k in range(1, 11)]
                content = [tok("[["), tok(str(r), -0.1, top), tok("]]")]
            payload["choices"][0]["logprobs"] = {"content": content}
        raw = json.dumps(payload)
        if kind == "truncated":
            return Response(raw[: len(raw) // 2], media_type="application/json")
        with script.lock:
            script.ok_calls += 1
            script.prompts.append(user)
        return Response(raw, media_type="application/json")

    return app


class ServerThread:
    """Run the scripted server on 127.0.0.1 in a background thread (tests, benchmarks)."""

    def __init__(self, script: Script, port: int = 0):
        import socket

        import uvicorn
        if port == 0:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.script = script
        self.server = uvicorn.Server(uvicorn.Config(build_app(script), host="127.0.0.1", port=port,
                                                    log_level="error", lifespan="off", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("scripted server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--hang-seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import uvicorn
    script = Script(latency=args.latency, fault_rate=args.fault_rate, hang_seconds=args.hang_seconds, seed=args.seed)
    uvicorn.run(build_app(script), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
