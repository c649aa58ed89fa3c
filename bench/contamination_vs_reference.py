"""evalkit's contamination check against the reference algorithm run the original's way.

Same tiny target and reference models, 40 examples, 100 neighbours each. The "original
style" runner below re-implements the public script's loop as it is written: one example
at a time, one generate call of 100 samples per example, the target re-tokenizing and
scoring the neighbours in batches of 32, the example scored alone. evalkit batches
generation across examples, scores every text once in large length-sorted batches, and
cuts each example's samples at its own budget. Repetitions are interleaved (original,
evalkit, original, ...); prints min and median wall times, the generation/scoring split and
the ratios, and checks that on fixed neighbours (evalkit's) both give identical per-example
s(x). Writes its figures as JSON under --out (never inside the checkout).

    python bench/contamination_vs_reference.py --out /tmp/bench-contamination [--reps 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench._common import out_dir  # noqa: E402
from evalkit.eval import contamination as C  # noqa: E402
from evalkit.eval.benchmark_texts import load_examples  # noqa: E402
from evalkit.eval.contamination_run import select  # noqa: E402
from evalkit.eval.sample_data import write_open_llm_v1  # noqa: E402
from evalkit.models import build_tiny_model, load_model, spec_hash  # noqa: E402

N_EXAMPLES, N_NEIGHBOURS = 100, 100


# BENCH_MODEL=tiny: the 0.2M-parameter kit model; default: an 8.7M-parameter kit model, where
# compute rather than Python overhead dominates, as it does for real models.
SPECS = {"tiny": {}, "small": {"vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024, "num_layers": 8,
                               "num_heads": 8, "n_documents": 2000, "pretrain_steps": 60, "batch_size": 8,
                               "learning_rate": 1e-3}}


def tiny(seed: int, cache: Path) -> str:
    """The kit model of this seed, built once under --out (never inside the checkout)."""
    spec = {"seed": seed, **SPECS[os.environ.get("BENCH_MODEL", "small")]}
    return str(build_tiny_model(cache / f"tiny-{spec_hash(spec)}", spec, progress=False))


@torch.no_grad()
def original_scores_on(target, t_tok, examples, neighbours):
    """The original's scoring arithmetic on given neighbours (per example, batches of 32)."""
    out = []
    for ex, nbs in zip(examples, neighbours):
        ids = torch.tensor([t_tok.encode(ex.text)])
        x = target(ids, labels=ids).loss.item()
        losses = []
        for s in range(0, len(nbs), 32):
            b = t_tok(nbs[s:s + 32], padding=True, return_tensors="pt", truncation=True, max_length=150)
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            logits = target(b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = torch.nn.CrossEntropyLoss(reduction="none")(logits[..., :-1, :].transpose(1, 2), labels[..., 1:])
            losses.append(loss.sum(1) / (labels[..., 1:] != -100).sum(1))
        out.append(torch.count_nonzero(torch.cat(losses) < x).item() / len(nbs))
    return out


def original_style(target, t_tok, reference, r_tok, examples, seed):
    """The public script's loop, one example at a time."""
    torch.manual_seed(seed)
    t_tok.pad_token = t_tok.eos_token
    t_gen = t_score = 0.0
    scores = []
    for ex in examples:
        t0 = time.time()
        ids = torch.tensor([t_tok.encode(ex.text)])
        target_loss = target(ids, labels=ids).loss.item()
        words = ex.text.split()
        n_prefix = math.ceil(len(words) * 0.4)
        prefix_ids = torch.tensor([r_tok.encode(" ".join(words[:n_prefix]))])
        t1 = time.time()
        out = reference.generate(prefix_ids, max_new_tokens=len(words) - n_prefix, min_new_tokens=1,
                                 num_return_sequences=N_NEIGHBOURS, pad_token_id=r_tok.eos_token_id, do_sample=True)
        neighbours = r_tok.batch_decode(out, skip_special_tokens=True)
        t2 = time.time()
        losses = []
        for s in range(0, len(neighbours), 32):
            b = t_tok(neighbours[s:s + 32], padding=True, return_tensors="pt", truncation=True, max_length=150)
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            logits = target(b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = torch.nn.CrossEntropyLoss(reduction="none")(logits[..., :-1, :].transpose(1, 2), labels[..., 1:])
            losses.append(loss.sum(1) / (labels[..., 1:] != -100).sum(1))
        losses = torch.cat(losses)
        scores.append(torch.count_nonzero(losses < target_loss).item() / len(losses))
        t3 = time.time()
        t_gen += t2 - t1
        t_score += (t1 - t0) + (t3 - t2)
    return scores, t_gen, t_score


def evalkit_style(target, t_tok, reference, r_tok, examples, seed, keep=None):
    p = C.Params(n_neighbours=N_NEIGHBOURS, n_examples=len(examples), seed=seed)
    t0 = time.time()
    neighbours = C.generate_neighbours(reference, r_tok, examples, p)
    t1 = time.time()
    run, _ = C.score_target(target, t_tok, examples, neighbours, p, details=False)
    t2 = time.time()
    if keep is not None:
        keep.append((neighbours, run.scores))
    return run.scores, t1 - t0, t2 - t1


def main(argv=None):
    global N_NEIGHBOURS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for bench.json (outside the checkout)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--n-examples", type=int, default=N_EXAMPLES)
    ap.add_argument("--n-neighbours", type=int, default=N_NEIGHBOURS)
    args = ap.parse_args(argv)
    if args.reps < 1 or args.n_examples < 1 or args.n_neighbours < 1 or args.threads < 1:
        ap.error("--reps, --threads, --n-examples and --n-neighbours must be at least 1")
    out = out_dir(ap, args.out)
    N_NEIGHBOURS = args.n_neighbours
    torch.set_num_threads(args.threads)
    target, t_tok = load_model(tiny(1, out / "models"), dtype="float32")
    reference, r_tok = load_model(tiny(0, out / "models"), dtype="float32")
    with tempfile.TemporaryDirectory() as d:
        write_open_llm_v1(d, n_eval=args.n_examples)
        _, examples = load_examples("arc_challenge", d)
    examples = select(examples, C.Params(n_examples=args.n_examples))
    n_params = sum(p.numel() for p in target.parameters())
    print(f"models: {n_params / 1e6:.1f}M parameters; {len(examples)} examples x {N_NEIGHBOURS} neighbours; "
          f"{torch.get_num_threads()} threads, device {'cuda' if torch.cuda.is_available() else 'cpu'}; "
          f"{args.reps} interleaved reps")
    times = {"original style": [], "evalkit": []}
    keep: list = []
    for rep in range(args.reps):
        for name, fn in (("original style", original_style), ("evalkit", evalkit_style)):
            t = time.time()
            if name == "evalkit":
                scores, gen, score = fn(target, t_tok, reference, r_tok, examples, seed=rep, keep=keep)
            else:
                scores, gen, score = fn(target, t_tok, reference, r_tok, examples, seed=rep)
            times[name].append((time.time() - t, gen, score))
    # identical per-example results on fixed neighbours (evalkit's from the last rep)
    neighbours, ours = keep[-1]
    with torch.no_grad():
        theirs = original_scores_on(target, t_tok, examples, neighbours)
    identical = sum(a == b for a, b in zip(ours, theirs))
    report = {"n_parameters": n_params, "n_examples": len(examples), "n_neighbours": N_NEIGHBOURS,
              "threads": args.threads, "reps": args.reps, "identical_per_example": f"{identical}/{len(ours)}"}
    print(f"{'runner':<16}{'min s':>9}{'median s':>10}{'gen med':>9}{'score med':>10}")
    for name, rows in times.items():
        walls = [r[0] for r in rows]
        report[name] = {"wall": walls, "generate": [r[1] for r in rows], "score": [r[2] for r in rows]}
        print(f"{name:<16}{min(walls):>9.2f}{statistics.median(walls):>10.2f}"
              f"{statistics.median(r[1] for r in rows):>9.2f}{statistics.median(r[2] for r in rows):>10.2f}")
    o, e = report["original style"], report["evalkit"]
    report["speedup_min"] = min(o["wall"]) / min(e["wall"])
    report["speedup_median"] = statistics.median(o["wall"]) / statistics.median(e["wall"])
    print(f"evalkit speed-up: {report['speedup_min']:.2f}x (min), {report['speedup_median']:.2f}x (median); "
          f"generation {statistics.median(o['generate']) / statistics.median(e['generate']):.2f}x, scoring "
          f"{statistics.median(o['score']) / statistics.median(e['score']):.2f}x; identical per-example s(x) on "
          f"fixed neighbours: {identical}/{len(ours)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    print(f"figures: {out / 'bench.json'}")


if __name__ == "__main__":
    main()
