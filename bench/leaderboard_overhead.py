"""Wall time of `evalkit leaderboard` against the raw `lm_eval` CLI on the same model and tasks.

Both run as fresh subprocesses on the tiny kit model and the project's sample data (ARC 25-shot,
two MMLU subjects 5-shot, TruthfulQA mc2, GSM8K 5-shot), with the same batch size and seeds;
the lm_eval CLI reads the very task YAML evalkit generates. No request cache is reused.

    python bench/leaderboard_overhead.py --out /tmp/bench-leaderboard [--reps 2]

Repetitions are interleaved, each side first every other time (lm_eval, evalkit, evalkit, lm_eval, ...); prints min and median of each
and their ratio, and writes the figures to --out/bench.json (the model is built there too).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import out_dir, write_figures  # noqa: E402
from evalkit.backends.tiny import build_tiny_model, spec_hash  # noqa: E402
from evalkit.eval.sample_data import write_open_llm_v1  # noqa: E402
from evalkit.eval.suites import load_suite, write_task_yamls  # noqa: E402

SUITE = """name: bench
entries:
  - {name: arc_challenge, shots: 25, metric: acc_norm, tasks: [{task: arc_challenge}]}
  - {name: mmlu, shots: 5, metric: acc, aggregate: unweighted_mean, tasks: [{task: mmlu_anatomy}, {task: mmlu_virology}]}
  - {name: truthfulqa_mc2, shots: 0, metric: acc, tasks: [{task: truthfulqa_mc2}]}
  - {name: gsm8k, shots: 5, metric: exact_match, filter: strict-match, tasks: [{task: gsm8k}]}
"""
TASKS = "arc_challenge,mmlu_anatomy,mmlu_virology,truthfulqa_mc2,gsm8k"


def timed(cmd: list[str]) -> float:
    t = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd[:3])}")
    return time.time() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the model and bench.json (outside the checkout)")
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions of each side")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    out = out_dir(ap, args.out)
    spec = {"seed": 0}
    model = str(build_tiny_model(out / "models" / f"tiny-{spec_hash(spec)}", spec, progress=False))
    bin_dir = Path(sys.executable).parent
    raw_t, ours_t = [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        data = write_open_llm_v1(d / "data", n_eval=40)
        (d / "bench.yaml").write_text(SUITE)
        write_task_yamls(load_suite(str(d / "bench.yaml")), d / "tasks", data)

        def command(side: str, r: int) -> list[str]:
            if side == "raw":
                return [str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args",
                        f"pretrained={model},dtype=auto", "--device", "cpu", "--tasks", TASKS,
                        "--include_path", str(d / "tasks"), "--batch_size", "16", "--seed", "1234",
                        "--output_path", str(d / f"raw{r}"), "--log_samples"]
            return [str(bin_dir / "evalkit"), "leaderboard", model, "--suite", str(d / "bench.yaml"),
                    "--data-dir", str(data), "--batch-size", "16", "--device", "cpu", "--out", str(d / f"ours{r}")]

        for r in range(args.reps):   # interleaved, and each side goes first every other rep
            sides = [("raw", raw_t), ("ours", ours_t)]
            for side, times in (sides if r % 2 == 0 else sides[::-1]):
                times.append(timed(command(side, r)))
    print(f"tasks: {TASKS} on sample data (40 docs each), tiny model, batch 16, {args.reps} interleaved reps")
    print(f"lm_eval CLI        : min {min(raw_t):7.2f} s, median {statistics.median(raw_t):7.2f} s")
    print(f"evalkit leaderboard: min {min(ours_t):7.2f} s, median {statistics.median(ours_t):7.2f} s")
    ratio = min(ours_t) / min(raw_t)
    print(f"ratio evalkit / lm_eval: {ratio:.2f}x min, {statistics.median(ours_t) / statistics.median(raw_t):.2f}x "
          f"median (target <= 1.10x)")
    write_figures(out, {"tasks": TASKS, "reps": args.reps, "lm_eval_cli": raw_t, "evalkit": ours_t,
                        "ratio_min": ratio})


if __name__ == "__main__":
    main()
