"""evalkit's contamination check against the reference algorithm run the original's way.

Same tiny target and reference models, 40 examples, 100 neighbours each. The "original
style" runner below re-implements the public script's loop as it is written: one example
at a time, one generate call of 100 samples per example, the target re-tokenizing and
scoring the neighbours in batches of 32, the example scored alone. evalkit batches
generation across examples, scores every text once in large length-sorted batches, and
cuts each example's samples at its own budget. Prints wall times, the generation/scoring
split, and the ratio; both produce the same kind of numbers (seeded here).

    python bench/contamination_vs_reference.py
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from evalkit.eval import contamination as C  # noqa: E402
from evalkit.eval.benchmark_texts import load_examples  # noqa: E402
from evalkit.eval.contamination_run import select  # noqa: E402
from evalkit.eval.sample_data import write_open_llm_v1  # noqa: E402
from evalkit.models import build_tiny_model, load_model, spec_hash  # noqa: E402

N_EXAMPLES, N_NEIGHBOURS = 40, 100


# BENCH_MODEL=tiny: the 0.2M-parameter kit model; default: an 8.7M-parameter kit model, where
# compute rather than Python overhead dominates, as it does for real models.
SPECS = {"tiny": {}, "small": {"vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024, "num_layers": 8,
                               "num_heads": 8, "n_documents": 2000, "pretrain_steps": 60, "batch_size": 8,
                               "learning_rate": 1e-3}}


def tiny(seed: int) -> str:
    spec = {"seed": seed, **SPECS[os.environ.get("BENCH_MODEL", "small")]}
    return str(build_tiny_model(REPO / "checkpoints" / ".bench-cache" / f"tiny-{spec_hash(spec)}", spec,
                                progress=False))


@torch.no_grad()
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


def evalkit_style(target, t_tok, reference, r_tok, examples, seed):
    p = C.Params(n_neighbours=N_NEIGHBOURS, n_examples=N_EXAMPLES, seed=seed)
    t0 = time.time()
    neighbours = C.generate_neighbours(reference, r_tok, examples, p)
    t1 = time.time()
    run, _ = C.score_target(target, t_tok, examples, neighbours, p, details=False)
    t2 = time.time()
    return run.scores, t1 - t0, t2 - t1


def main():
    target, t_tok = load_model(tiny(1))
    reference, r_tok = load_model(tiny(0))
    with tempfile.TemporaryDirectory() as d:
        write_open_llm_v1(d, n_eval=N_EXAMPLES)
        _, examples = load_examples("arc_challenge", d)
    examples = select(examples, C.Params(n_examples=N_EXAMPLES))
    n_params = sum(p.numel() for p in target.parameters())
    print(f"models: {n_params / 1e6:.1f}M parameters; {len(examples)} examples x {N_NEIGHBOURS} neighbours; "
          f"{torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    rows = {}
    for name, fn in (("original style", original_style), ("evalkit", evalkit_style)):
        t = time.time()
        scores, gen, score = fn(target, t_tok, reference, r_tok, examples, seed=0)
        rows[name] = (time.time() - t, gen, score, C.result_of(scores, 0.1))
    print(f"{'runner':<16}{'wall s':>9}{'generate s':>12}{'score s':>10}{'result':>9}")
    for name, (wall, gen, score, result) in rows.items():
        print(f"{name:<16}{wall:>9.2f}{gen:>12.2f}{score:>10.2f}{result:>9.2f}")
    o, e = rows["original style"], rows["evalkit"]
    print(f"evalkit speed-up: {o[0] / e[0]:.2f}x overall (generation {o[1] / e[1]:.2f}x, scoring {o[2] / e[2]:.2f}x)")


if __name__ == "__main__":
    main()
