"""160 judge calls against the scripted server with 200 ms latency at concurrency 16.

Prints the wall time against the ideal (160 x 0.2 / 16 = 2.0 s) and the calls an immediate
rerun makes (0: every finished key is skipped).

    python bench/judge_concurrency.py --out /tmp/bench-judge

Writes the figures to --out/bench.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench._common import out_dir, write_figures  # noqa: E402
import subprocess  # noqa: E402

from evalkit.backends.client import ClientOptions  # noqa: E402
from evalkit.backends.serve import free_port  # noqa: E402
from evalkit.eval import mtbench  # noqa: E402

N_QUESTIONS, LATENCY, CONCURRENCY = 80, 0.2, 16   # 80 questions x 2 turns = 160 calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for bench.json (outside the checkout)")
    out = out_dir(ap, ap.parse_args(argv).out)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "q.jsonl").write_text("".join(json.dumps({"question_id": i, "category": "writing",
                                                       "turns": [f"Question {i}?", f"Follow-up {i}?"]}) + "\n"
                                           for i in range(N_QUESTIONS)))
        answers = [{"question_id": i, "answer_id": str(i), "model_id": "m", "tstamp": 0,
                    "choices": [{"index": 0, "turns": [f"Answer {i}.", f"Second {i}."]}]} for i in range(N_QUESTIONS)]
        data = mtbench.load_data(str(d / "q.jsonl"))
        # the server in its own process, as a real endpoint would be (not sharing our GIL)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "evalkit.devserver", "--port", str(port),
                                   "--latency", str(LATENCY)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(f"{base}/stats", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            opt = mtbench.JudgeOptions(ClientOptions(model="scripted", base_url=f"{base}/v1",
                                                       concurrency=CONCURRENCY, timeout=10))
            import openai  # noqa: F401  the SDK's import (~1.8 s here) is process start-up, not judging
            t = time.time()
            s = mtbench.judge_answers(data, answers, d / "out", opt, progress=False)
            wall = time.time() - t
            calls = httpx.get(f"{base}/stats").json()["calls"]
            t = time.time()
            s2 = mtbench.judge_answers(data, answers, d / "out", opt, progress=False)
            rerun_wall = time.time() - t
            rerun_calls = httpx.get(f"{base}/stats").json()["calls"] - calls
        finally:
            server.terminate()
            server.wait(10)
    ideal = 2 * N_QUESTIONS * LATENCY / CONCURRENCY
    print(f"{2 * N_QUESTIONS} judge calls, latency {LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY}: "
          f"{calls} calls made, {s['n_judged']} judged")
    print(f"wall {wall:.2f} s vs ideal {ideal:.2f} s: {wall / ideal:.2f}x (target <= 1.5x)")
    print(f"immediate rerun: {rerun_calls} calls, {rerun_wall:.2f} s (target 0 calls); "
          f"summary calls_this_run={s2['calls_this_run']}")
    write_figures(out, {"calls": calls, "judged": s["n_judged"], "wall": wall, "ideal": ideal,
                        "ratio_to_ideal": wall / ideal, "rerun_calls": rerun_calls, "rerun_wall": rerun_wall})


if __name__ == "__main__":
    main()
