"""evalkit's DPO trainer against TRL 1.16's DPOTrainer (sigmoid loss), same models and pairs.

Two models, both built locally (nothing downloaded):
  llama10m   the tiny kit's ~10M-parameter Llama (4k vocabulary, evalkit's template), briefly
             pretrained;
  chatml32k  a randomly initialised Qwen2 with a 32,768-row LM head and Qwen2's ChatML
             template (the tokenizer is the tiny kit's with ChatML's special tokens).
For each: per-pair chosen/rejected reference log-probs from both trainers (must agree within
1e-4), then evalkit vs TRL default (reference model in memory) vs TRL with precomputed
reference log-probs, gradient checkpointing the same on both sides (TRL 1.16 turns it on by
default; --gradient-checkpointing sets both), fp32 on CPU (bf16 autocast on a GPU), one
torch thread. Each run is its own subprocess (peak RSS is its own); runs are interleaved,
--reps times (at least 3) in an order that changes every rep, and the table gives min and
median with the machine's load average before each run (a speed-up measured under load is
only as good as the load says).

    python bench/train_vs_trl.py [--out DIR] [--reps 3] [--pairs 128] [--gradient-checkpointing on|off]

Needs `pip install 'trl==1.16.*'` (the `bench` extra). Everything is written under --out
(default: a new temp dir), never inside the checkout.
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
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))     # tests/chat_templates.py: the real ChatML template
from bench._common import out_dir  # noqa: E402

BATCH, MAX_LEN, MAX_PROMPT, BETA, LR = 8, 160, 96, 0.1, 1e-5
LLAMA_SPEC = {"seed": 0, "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 1024,
              "num_layers": 8, "num_heads": 8, "max_length": 256, "n_documents": 2000,
              "pretrain_steps": 20, "batch_size": 8, "learning_rate": 1e-3}
CHATML_VOCAB = 32768
MODELS = ("llama10m", "chatml32k")
MODES = ("trl", "trl-precompute", "evalkit")


# ---------------------------------------------------------------- models and data

def llama_dir(out: Path) -> Path:
    from evalkit.backends.tiny import build_tiny_model, spec_hash
    return build_tiny_model(out / "models" / f"llama10m-{spec_hash(LLAMA_SPEC)}", LLAMA_SPEC, progress=False)


def chatml_dir(out: Path) -> Path:
    """Qwen2, 32k-row LM head, ChatML template; random init (seeded), saved once under out."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from chat_templates import template_tokenizer
    path = out / "models" / "chatml32k"
    if (path / "config.json").exists():
        return path
    tok = template_tokenizer(llama_dir(out), "qwen2")
    config = Qwen2Config(vocab_size=CHATML_VOCAB, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    tmp = Path(tempfile.mkdtemp(dir=out / "models"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(path)
    return path


def model_dir(name: str, out: Path) -> Path:
    return llama_dir(out) if name == "llama10m" else chatml_dir(out)


def rows(n: int) -> list[dict]:
    from evalkit.train.builders import metamath_synthetic_pairs
    return [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]}
            for r in metamath_synthetic_pairs(n, seed=7)]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec,
    so a child would report its parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trl_args(out: Path, n_pairs: int, gc: bool, **kw):
    import torch
    from trl import DPOConfig
    return DPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=BATCH, max_steps=n_pairs // BATCH,
                     learning_rate=LR, lr_scheduler_type="constant", beta=BETA, loss_type=["sigmoid"],
                     max_length=MAX_LEN, logging_steps=n_pairs // BATCH, save_strategy="no", report_to=[],
                     use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), seed=0,
                     dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=gc, **kw)


# ---------------------------------------------------------------- one configuration per process

def run_evalkit(name: str, out: Path, n_pairs: int, gc: bool) -> dict:
    from evalkit.backends.models import load_tokenizer
    from evalkit.config import Variant
    from evalkit.train.data import Row, tokenize_rows
    from evalkit.train.reference import ReferenceCache
    from evalkit.train.trainer import train_variant

    base = str(model_dir(name, out))
    t0 = time.time()
    tok = load_tokenizer(base)
    data = tokenize_rows(tok, [Row(r, f"pair{i}") for i, r in enumerate(rows(n_pairs))], MAX_LEN, MAX_PROMPT)
    v = Variant(name="dpo", data="d", loss="dpo", beta=BETA, learning_rate=LR, max_steps=n_pairs // BATCH,
                batch_size=BATCH, max_length=MAX_LEN, max_prompt_length=MAX_PROMPT, logging_steps=n_pairs // BATCH,
                gradient_checkpointing=gc)
    res = train_variant(v, base, data, out / "ckpt", ReferenceCache(out / "cache"), tokenizer=tok, progress=False)
    wall = time.time() - t0
    tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in data.pairs)
    return {"wall": wall, "tokens": tokens, "loop_tokens_per_s": res.metadata["train_tokens_per_second"],
            "rss_mb": peak_rss_mb(), "packed": res.metadata["packed_prompt"],
            "chunked_lm_head": res.metadata["chunked_lm_head"]}


def run_trl(name: str, out: Path, n_pairs: int, gc: bool, precompute: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    base = str(model_dir(name, out))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ref = None if precompute else AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    trainer = DPOTrainer(model=model, ref_model=ref, args=trl_args(out, n_pairs, gc, precompute_ref_log_probs=precompute),
                         train_dataset=Dataset.from_list(rows(n_pairs)), processing_class=tok)
    t_train = time.time()
    trainer.train()
    end = time.time()
    tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
    return {"wall": end - t0, "tokens": tokens, "loop_tokens_per_s": tokens / (end - t_train), "rss_mb": peak_rss_mb()}


def agreement(name: str, out: Path, n_pairs: int) -> dict:
    """Per-pair reference log-probs of the untrained model from both, fp32 without autocast."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from evalkit.train.data import Row, tokenize_rows
    from evalkit.train.logps import install_completion_head
    from evalkit.train.reference import compute_reference_logps

    base = str(model_dir(name, out))
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    data = tokenize_rows(tok, [Row(r, f"pair{i}") for i, r in enumerate(rows(n_pairs))], MAX_LEN, MAX_PROMPT)
    args = DPOConfig(output_dir=str(out / "agree"), per_device_train_batch_size=BATCH, max_length=MAX_LEN,
                     report_to=[], use_cpu=not torch.cuda.is_available(), precompute_ref_log_probs=True,
                     disable_tqdm=True, bf16=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows(n_pairs)), processing_class=tok)
    theirs = {s: torch.tensor(trainer.train_dataset[f"ref_{s}_logps"], dtype=torch.float64) for s in ("chosen", "rejected")}
    fresh = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    install_completion_head(fresh)          # the trainer's path: chunked LM head, packed prompt
    ours = compute_reference_logps(fresh, data, batch_size=BATCH, progress=False)
    return {f"max_abs_diff_{s}": (ours[f"{s}_logps"] - theirs[s]).abs().max().item() for s in ("chosen", "rejected")}


def child(mode: str, name: str, out: Path, n_pairs: int, gc: bool) -> None:
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=out) as d:
        os.environ["HF_HOME"] = os.environ["HF_DATASETS_CACHE"] = d + "/hf"
        work = Path(d)
        # models live in `out` (built once by the parent); runs write only into `work`
        os.symlink(out / "models", work / "models")
        if mode == "evalkit":
            r = run_evalkit(name, work, n_pairs, gc)
        elif mode in ("trl", "trl-precompute"):
            r = run_trl(name, work, n_pairs, gc, precompute=mode == "trl-precompute")
        elif mode == "agreement":
            r = agreement(name, work, n_pairs)
        else:
            raise SystemExit(f"unknown mode {mode}")
    print("RESULT " + json.dumps(r))


def spawn(mode: str, name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--model", name, "--out", str(args.out),
           "--pairs", str(args.pairs), "--gradient-checkpointing", args.gradient_checkpointing]
    res = subprocess.run(cmd, capture_output=True, text=True)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(res.stderr[-4000:])
    raise SystemExit(f"{mode} on {name} failed")


def print_model(name: str, res: dict) -> None:
    """Per model: agreement, then per configuration the best (min wall time) and median
    tokens/s end to end, the training loop's tokens/s, and min / median peak RSS."""
    agree, runs = res["agreement"], res["runs"]
    size = f"{res['n_parameters'] / 1e6:.1f}M parameters; " if res.get("n_parameters") else ""
    print(f"\n{name}: {size}reference log-prob agreement with TRL: max |diff| "
          f"chosen {agree['max_abs_diff_chosen']:.1e}, rejected {agree['max_abs_diff_rejected']:.1e} "
          f"({'OK' if max(agree.values()) <= 1e-4 else 'MISMATCH'})")
    tps = {m: [r["tokens"] / r["wall"] for r in runs[m]] for m in MODES}
    rss = {m: [r["rss_mb"] for r in runs[m]] for m in MODES}
    print(f"{'config':<16}{'tok/s best':>11}{'median':>8}{'vs TRL':>8}{'best vs':>8}{'loop tok/s':>11}"
          f"{'RSS MB min':>11}{'median':>8}{'vs TRL':>8}  load before each run")
    for m in MODES:
        med, base_med = statistics.median(tps[m]), statistics.median(tps["trl"])
        loop = statistics.median(r["loop_tokens_per_s"] for r in runs[m])
        loads = " ".join(f"{r['load_before']:.1f}" for r in runs[m] if "load_before" in r)
        print(f"{m:<16}{max(tps[m]):>11.0f}{med:>8.0f}{med / base_med:>7.2f}x{max(tps[m]) / max(tps['trl']):>7.2f}x"
              f"{loop:>11.0f}{min(rss[m]):>11.0f}{statistics.median(rss[m]):>8.0f}"
              f"{statistics.median(rss[m]) / statistics.median(rss['trl']):>7.2f}x  {loads}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="where models, runs and results.json go (default: a new temp dir)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each configuration (default 3)")
    p.add_argument("--pairs", type=int, default=128, help=f"pairs per run, one epoch at batch {BATCH} (default 128)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    p.add_argument("--gradient-checkpointing", choices=("on", "off"), default="on",
                   help="the same on both sides (default on, TRL 1.16's default)")
    p.add_argument("--show", type=Path, help="print the tables of an earlier run's results.json and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reps < 3 and not args.child:
        p.error("--reps must be at least 3 (min and median of interleaved, order-changing runs)")
    gc = args.gradient_checkpointing == "on"
    if args.child:
        return child(args.child, args.model, args.out, args.pairs, gc)
    if args.show:
        results = json.loads(args.show.read_text())
        print(json.dumps(results["settings"]))
        for name, res in results["models"].items():
            print_model(name, res)
        return
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="evalkit-bench-train-"))).resolve()
    args.out = out_dir(p, str(args.out))
    import torch
    names = [n for n in args.models.split(",") if n]
    for name in names:
        model_dir(name, args.out)        # build once, before the children start
    print(f"{args.pairs} pairs, batch {BATCH}, max_length {MAX_LEN}, {args.pairs // BATCH} steps, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, 1 torch thread, "
          f"gradient checkpointing {args.gradient_checkpointing} on both sides, {args.reps} interleaved reps; out {args.out}")
    results: dict = {"settings": {"pairs": args.pairs, "batch": BATCH, "max_length": MAX_LEN, "reps": args.reps,
                                  "gradient_checkpointing": gc, "threads": 1, "cpus": os.cpu_count()}, "models": {}}
    for name in names:
        agree = spawn("agreement", name, args)
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for rep in range(args.reps):
            # the order rotates each rep (and reverses on odd ones), so no configuration always
            # runs first or after the same neighbour; the 1-minute load average is kept per run
            order = list(MODES[rep % len(MODES):] + MODES[:rep % len(MODES)])
            for position, mode in enumerate(order[::-1] if rep % 2 else order):
                load = os.getloadavg()[0]
                runs[mode].append({**spawn(mode, name, args), "rep": rep, "position": position, "load_before": load})
        n_params = sum(v.numel() for v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
            str(model_dir(name, args.out) / "model.safetensors")).values())
        results["models"][name] = {"agreement": agree, "runs": runs, "n_parameters": n_params}
        print_model(name, results["models"][name])
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
