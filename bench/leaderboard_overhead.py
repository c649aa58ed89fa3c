"""Wall time of `evalkit leaderboard` against the raw `lm_eval` CLI on the same model and tasks.

Both run as fresh subprocesses on the tiny kit model and the project's sample data (ARC 25-shot,
two MMLU subjects 5-shot, TruthfulQA mc2, GSM8K 5-shot), with the same batch size and seeds;
the lm_eval CLI reads the very task YAML evalkit generates. No request cache is reused.

    python bench/leaderboard_overhead.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evalkit.eval.sample_data import write_open_llm_v1  # noqa: E402
from evalkit.eval.suites import load_suite, write_task_yamls  # noqa: E402
from evalkit.models import build_tiny_model, spec_hash  # noqa: E402

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


def main():
    spec = {"seed": 0}
    model = str(build_tiny_model(REPO / "checkpoints" / ".bench-cache" / f"tiny-{spec_hash(spec)}", spec,
                                 progress=False))
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        data = write_open_llm_v1(d / "data", n_eval=40)
        (d / "bench.yaml").write_text(SUITE)
        write_task_yamls(load_suite(str(d / "bench.yaml")), d / "tasks", data)
        rounds = []
        for r in range(2):
            raw = timed([str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args",
                         f"pretrained={model},dtype=auto", "--device", "cpu", "--tasks", TASKS,
                         "--include_path", str(d / "tasks"), "--batch_size", "16", "--seed", "1234",
                         "--output_path", str(d / f"raw{r}"), "--log_samples"])
            ours = timed([str(bin_dir / "evalkit"), "leaderboard", model, "--suite", str(d / "bench.yaml"),
                          "--data-dir", str(data), "--batch-size", "16", "--device", "cpu",
                          "--out", str(d / f"ours{r}")])
            rounds.append((raw, ours))
    raw, ours = min(r[0] for r in rounds), min(r[1] for r in rounds)
    print(f"tasks: {TASKS} on sample data (40 docs each), tiny model, batch 16, best of {len(rounds)}")
    print(f"lm_eval CLI      : {raw:7.2f} s")
    print(f"evalkit leaderboard: {ours:7.2f} s")
    print(f"ratio evalkit / lm_eval: {ours / raw:.2f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
