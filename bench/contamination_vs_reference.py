"""evalkit's contamination check timed against the ORIGINAL code, unchanged.

The original is swj0419/detect-pretrain-code-contamination (src/run.py). This bench imports
its functions from a checkout you give with --original (nothing of it is copied into evalkit):

    git clone https://github.com/swj0419/detect-pretrain-code-contamination /tmp/orig
    python bench/contamination_vs_reference.py --original /tmp/orig --out /tmp/bench-contamination

Per example the original's `inference` runs as written: target and lower-case perplexity
with its per-token loop, the reference's perplexity, 100 sampled neighbours from the
reference (`sample_generation`) and their target losses in DataLoader batches of 32
(`evaluate_model`). evalkit does the same work per benchmark: `generate_neighbours`,
`score_target` (with the per-token details its signals need), the lower-case and the
reference losses. Only `ipdb` (imported, unused) is stubbed when it is not installed.

Same tiny target and reference models (BENCH_MODEL=tiny: the 0.2M kit model; default an
8.7M one, where compute dominates as it does for real models). Repetitions alternate the
order (original first on even reps, evalkit first on odd ones); prints min and median wall
times and the load average around each run, and checks that on fixed neighbours (evalkit's)
the original's `evaluate_model` gives the same per-example s(x). Figures go to --out (never
inside the checkout).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench._common import out_dir  # noqa: E402
from evalkit.backends.models import load_model  # noqa: E402
from evalkit.backends.scoring import score_texts  # noqa: E402
from evalkit.backends.tiny import build_tiny_model, spec_hash  # noqa: E402
from evalkit.eval import contamination as C  # noqa: E402
from evalkit.eval.benchmark_texts import load_examples  # noqa: E402
from evalkit.eval.contamination_run import select  # noqa: E402
from evalkit.eval.sample_data import write_open_llm_v1  # noqa: E402

N_EXAMPLES, N_NEIGHBOURS = 40, 100      # the original samples 100 neighbours, always


# BENCH_MODEL=tiny: the 0.2M-parameter kit model; default: an 8.7M-parameter kit model, where
# compute rather than Python overhead dominates, as it does for real models.
SPECS = {"tiny": {}, "small": {"vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024, "num_layers": 8,
                               "num_heads": 8, "n_documents": 2000, "pretrain_steps": 60, "batch_size": 8,
                               "learning_rate": 1e-3}}


def tiny(seed: int, cache: Path) -> str:
    """The kit model of this seed, built once under --out (never inside the checkout)."""
    spec = {"seed": seed, **SPECS[os.environ.get("BENCH_MODEL", "small")]}
    return str(build_tiny_model(cache / f"tiny-{spec_hash(spec)}", spec, progress=False))


def import_original(checkout: Path):
    """src/run.py and src/utils.py of the original, imported as they are."""
    src = checkout / "src"
    if not (src / "run.py").exists() or not (src / "utils.py").exists():
        raise SystemExit(f"--original {checkout}: no src/run.py there (a checkout of "
                         f"swj0419/detect-pretrain-code-contamination)")
    if importlib.util.find_spec("ipdb") is None:      # run.py and eval.py import set_trace, never call it
        sys.modules["ipdb"] = types.SimpleNamespace(set_trace=lambda *a, **k: None)
    sys.path.insert(0, str(src))
    import run as original_run  # noqa: E402
    import utils as original_utils  # noqa: E402
    return original_run, original_utils


def original(orig, target, t_tok, reference, r_tok, examples, seed):
    """The original's `inference` on each example, unchanged (its sampling is unseeded: the
    bench seeds torch's global generator once per run)."""
    torch.manual_seed(seed)
    args = types.SimpleNamespace(ratio_gen=0.4)
    out = [orig.inference(target, reference, t_tok, r_tok, ex.text, {}, "target", "reference", args)
           for ex in examples]
    return [o["pred"]["minkprob_w/_ref"] for o in out]


def evalkit_side(target, t_tok, reference, r_tok, examples, seed, keep=None):
    """The same work through evalkit: neighbours, their and the examples' target losses with
    the per-token details, lower-case and reference losses."""
    p = C.Params(n_neighbours=N_NEIGHBOURS, n_examples=len(examples), seed=seed)
    neighbours = C.generate_neighbours(reference, r_tok, examples, p)
    run, _ = C.score_target(target, t_tok, examples, neighbours, p, details=True)
    t_side, (t_bs, _) = C.layout(t_tok, p)
    r_side, (r_bs, _) = C.layout(r_tok, p)
    score_texts(target, t_tok, [e.text.lower() for e in examples], padding_side=t_side, batch_size=t_bs)
    score_texts(reference, r_tok, [e.text for e in examples], padding_side=r_side, batch_size=r_bs)
    if keep is not None:
        keep.append((neighbours, run.scores))
    return run.scores


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for bench.json (outside the checkout)")
    ap.add_argument("--original", help="a checkout of swj0419/detect-pretrain-code-contamination (required)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each side, order alternating (>= 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--n-examples", type=int, default=N_EXAMPLES)
    args = ap.parse_args(argv)
    if args.reps < 3 or args.n_examples < 1 or args.threads < 1:
        ap.error("--reps must be at least 3; --threads and --n-examples at least 1")
    out = out_dir(ap, args.out)
    if not args.original:
        ap.error("--original DIR: a checkout of swj0419/detect-pretrain-code-contamination (git clone it there)")
    orig, orig_utils = import_original(Path(args.original).resolve())
    torch.set_num_threads(args.threads)
    target, t_tok = load_model(tiny(1, out / "models"), dtype="float32")
    reference, r_tok = load_model(tiny(0, out / "models"), dtype="float32")
    t_tok.pad_token, r_tok.pad_token = t_tok.eos_token, r_tok.eos_token   # as the original's load_model does
    with tempfile.TemporaryDirectory() as d:
        write_open_llm_v1(d, n_eval=args.n_examples)
        _, examples = load_examples("arc_challenge", d)
    examples = select(examples, C.Params(n_examples=args.n_examples))
    n_params = sum(p.numel() for p in target.parameters())
    print(f"models: {n_params / 1e6:.1f}M parameters; {len(examples)} examples x {N_NEIGHBOURS} neighbours "
          f"; {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}; {args.reps} reps, order alternating")
    runs = {"original": [], "evalkit": []}
    keep: list = []
    for rep in range(args.reps):
        order = ["original", "evalkit"] if rep % 2 == 0 else ["evalkit", "original"]
        for name in order:
            load_before = os.getloadavg()[0]
            t = time.perf_counter()
            if name == "original":
                original(orig, target, t_tok, reference, r_tok, examples, seed=rep)
            else:
                evalkit_side(target, t_tok, reference, r_tok, examples, seed=rep, keep=keep)
            runs[name].append({"rep": rep, "position": order.index(name), "wall": time.perf_counter() - t,
                               "load_before": load_before, "load_after": os.getloadavg()[0]})
    # the same per-example s(x) on fixed neighbours (evalkit's, last rep), through the original's evaluate_model
    neighbours, ours = keep[-1]
    theirs = []
    with torch.no_grad():
        for ex, nbs in zip(examples, neighbours):
            _, _, loss = orig.calculatePerplexity(ex.text, target, t_tok, gpu=target.device)
            losses = orig_utils.evaluate_model(target, t_tok, torch.utils.data.DataLoader(nbs, batch_size=32))
            theirs.append(torch.count_nonzero(losses < loss).item() / len(losses))
    identical = sum(a == b for a, b in zip(ours, theirs))
    report = {"n_parameters": n_params, "n_examples": len(examples), "n_neighbours": N_NEIGHBOURS,
              "threads": args.threads, "reps": args.reps, "cpus": os.cpu_count(),
              "identical_per_example": f"{identical}/{len(ours)}", "runs": runs}
    print(f"{'runner':<10}{'min s':>9}{'median s':>10}   load (1-min avg) before each run")
    for name, rows in runs.items():
        walls = [r["wall"] for r in rows]
        report[name] = {"min": min(walls), "median": statistics.median(walls)}
        print(f"{name:<10}{min(walls):>9.2f}{statistics.median(walls):>10.2f}   "
              + " ".join(f"{r['load_before']:.2f}" for r in rows))
    o, e = report["original"], report["evalkit"]
    report["speedup_min"], report["speedup_median"] = o["min"] / e["min"], o["median"] / e["median"]
    print(f"evalkit speed-up: {report['speedup_min']:.2f}x (min), {report['speedup_median']:.2f}x (median); "
          f"identical per-example s(x) on fixed neighbours: {identical}/{len(ours)}")
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    print(f"figures: {out / 'bench.json'}")


if __name__ == "__main__":
    main()
