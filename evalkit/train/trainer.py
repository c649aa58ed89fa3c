"""Preference training on accelerate: one loop for every loss in LOSSES.

accelerate supplies the engine (device placement, bf16 autocast, gradient accumulation,
and DDP / FSDP / DeepSpeed under `accelerate launch`); this file supplies the recipe:
  1. tokenize the pairs; 2. reference log-probs from the shared cache (no reference model
  in memory while training); 3. one forward over chosen+rejected rows per micro-batch;
  4. the loss from LOSSES; 5. metrics per logging step; 6. a checkpoint that loads with
  AutoModelForCausalLM and lm-eval unchanged, written into a temp folder and renamed.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from .. import trackers
from ..progress import bar as progress_bar

from ..config import Variant
from ..rundir import SCHEMA_VERSION, append_jsonl, atomic_write_json, content_hash, environment
from .data import PreferenceData, make_batch, supports_packing
from .logps import batch_logps, reduce_logps
from .losses import LOSSES, add_sft
from .reference import ReferenceCache, model_fingerprint

log = logging.getLogger("evalkit")

MAX_GRAD_NORM = 1.0


@dataclass
class TrainResult:
    path: Path
    metadata: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)


def variant_config_hash(variant: Variant, base_fingerprint: str, data_fingerprint: str) -> str:
    return content_hash({"variant": variant.model_dump(mode="json", by_alias=True),
                         "base": base_fingerprint, "data": data_fingerprint})


def train_variant(variant: Variant, base_model: str, data: PreferenceData, out_dir: str | Path,
                  cache: ReferenceCache, *, seed: int = 0, data_info: dict[str, Any] | None = None,
                  tokenizer=None, progress: bool = True, reference_model: str | None = None) -> TrainResult:
    """Train `variant` from `base_model` on `data`; write the checkpoint to out_dir.

    `reference_model` defaults to the base (stepwise training passes the previous step).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, get_scheduler

    from ..models import load_tokenizer, resolve_dtype

    t_start = time.time()
    out_dir = Path(out_dir)
    seed = variant.seed if variant.seed is not None else seed
    set_seed(seed)
    use_cuda = torch.cuda.is_available()
    want = variant.dtype if variant.dtype != "auto" else ("bfloat16" if use_cuda and torch.cuda.is_bf16_supported() else "float32")
    mixed = {"bfloat16": "bf16", "float16": "fp16"}.get(want, "no") if use_cuda else "no"
    accelerator = Accelerator(gradient_accumulation_steps=variant.grad_accum, mixed_precision=mixed,
                              **trackers.accelerator_kwargs())   # report_to: the experiment's trackers
    device = accelerator.device
    tok = tokenizer or load_tokenizer(base_model)
    reference_model = reference_model or base_model

    # 1. the policy, in fp32 master weights (bf16 comes from autocast)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    pack = supports_packing(model) if variant.pack_prompt == "auto" else bool(variant.pack_prompt)

    # 2. reference log-probs: computed once by the main process, shared through the cache.
    # When the reference is the base, the untrained policy IS the reference: no second load.
    ref_fp = model_fingerprint(reference_model)

    def load_reference():
        if reference_model == base_model:
            return model.to(device)
        m = AutoModelForCausalLM.from_pretrained(reference_model, dtype=resolve_dtype(want, str(device)))
        return m.to(device)

    with accelerator.main_process_first():
        # no gradients here, so larger batches than training
        ref, cache_key = cache.get_or_compute(ref_fp, data, load_reference, batch_size=2 * variant.batch_size,
                                              device=str(device), progress=progress and accelerator.is_main_process,
                                              pack=pack)
    if variant.gradient_checkpointing:
        # transformers 5 renamed it; older releases only have the gradient_ name
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    if variant.lora is not None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            from ..errors import UserError
            raise UserError("variant uses lora but peft is not installed (pip install 'evalkit[lora]')") from None
        model = get_peft_model(model, LoraConfig(
            r=variant.lora.r, lora_alpha=variant.lora.alpha, lora_dropout=variant.lora.dropout,
            target_modules=variant.lora.target_modules, task_type="CAUSAL_LM"))
    model.train()

    # 3. batches: indices into the data, shuffled by seed, similar lengths together
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    sampler = LengthGroupedBatches(data, variant.batch_size, seed)
    loader = torch.utils.data.DataLoader(
        list(range(len(data))), batch_sampler=sampler,
        collate_fn=lambda idx: {**make_batch([data.pairs[i] for i in idx], pad_id, pack), "index": torch.tensor(idx)})
    batches_per_epoch = len(sampler)
    total_steps = variant.max_steps or max(1, math.ceil(variant.epochs * batches_per_epoch / variant.grad_accum))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=variant.learning_rate, weight_decay=variant.weight_decay)
    scheduler = get_scheduler(variant.lr_scheduler, optimizer, num_warmup_steps=variant.warmup_steps,
                              num_training_steps=total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    loss_fn = LOSSES[variant.loss]
    loss_kwargs = dict(beta=variant.beta, dpop_lambda=variant.dpop_lambda, beta_chosen=variant.beta_chosen,
                       beta_rejected=variant.beta_rejected, label_smoothing=variant.label_smoothing)
    reduction = variant.logp_reduction

    # 4. the loop
    partial = out_dir.with_name(out_dir.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    metrics_path = partial / "train_metrics.jsonl"
    window: dict[str, list[float]] = {}
    history: list[dict[str, Any]] = []
    warnings: list[str] = []
    step, tokens, processed, micro = 0, 0, 0, 0
    grad_norm = float("nan")
    trackers.start(accelerator, variant.model_dump(mode="json", by_alias=True))
    bar = progress_bar(total=total_steps, desc=f"train {variant.name}", enabled=progress and accelerator.is_main_process)
    t_loop = time.time()
    while step < total_steps:
        for batch in loader:
            with accelerator.accumulate(model):
                idx = batch.pop("index").cpu()
                n_tokens = int(batch.pop("n_tokens"))
                n_processed = int(batch.pop("n_processed"))
                b = len(idx)
                sums, lengths = batch_logps(model, batch)
                pol_c, pol_r = reduce_logps(sums[:b], lengths[:b], reduction), reduce_logps(sums[b:], lengths[b:], reduction)
                ref_c = reduce_logps(ref["chosen_logps"][idx], ref["chosen_lengths"][idx], reduction).to(pol_c)
                ref_r = reduce_logps(ref["rejected_logps"][idx], ref["rejected_lengths"][idx], reduction).to(pol_c)
                out = loss_fn(pol_c, pol_r, ref_c, ref_r, **loss_kwargs)
                out = add_sft(out, sums[:b], lengths[:b].to(sums), variant.sft_weight)
                loss = out.losses.mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            tokens += n_tokens
            processed += n_processed
            _accumulate(window, accelerator, loss=out.losses, logps_chosen=pol_c, logps_rejected=pol_r,
                        rewards_chosen=out.chosen_rewards, rewards_rejected=out.rejected_rewards,
                        reward_margin=out.chosen_rewards - out.rejected_rewards,
                        reward_accuracy=(out.chosen_rewards > out.rejected_rewards).float(),
                        chosen_vs_reference=pol_c - ref_c,
                        penalty_active=out.penalty_active.float() if out.penalty_active is not None else None)
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % variant.logging_steps == 0 or step == total_steps:
                record = {"step": step, **{k: _mean(v) for k, v in window.items()},
                          "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                          "epoch": round(micro / batches_per_epoch, 4)}
                record.setdefault("penalty_active", None)
                window.clear()
                history.append(record)
                if accelerator.is_main_process:
                    append_jsonl(metrics_path, record)
                trackers.log(accelerator, record, step)
                bar.set_postfix(loss=f"{record['loss']:.4f}", chosen=f"{record['logps_chosen']:.2f}",
                                refresh=False)   # drawn with the bar's next update, not on its own
                drop = -record["chosen_vs_reference"]
                if drop > variant.chosen_drop_warning and not warnings:
                    msg = (f"variant {variant.name}: mean log pi(y_w) fell {drop:.2f} nats below its starting "
                           f"value by step {step} (threshold {variant.chosen_drop_warning}); the chosen "
                           f"completions are losing likelihood, the DPO failure mode on low-edit-distance "
                           f"pairs. Consider loss: dpop (lambda 50).")
                    warnings.append(msg)
                    log.warning(msg)
            if step >= total_steps:
                break
    bar.close()
    trackers.finish(accelerator)
    loop_seconds = time.time() - t_loop

    # 5. where the chosen log-prob ended, against where it started (the reference)
    unwrapped = accelerator.unwrap_model(model)
    end = _final_logps(unwrapped, data, pad_id, device, 2 * variant.batch_size, pack)
    n_eval = len(end["chosen_logps"])
    start_c = ref["chosen_logps"][:n_eval].mean().item()
    start_r = ref["rejected_logps"][:n_eval].mean().item()

    # 6. save: weights + tokenizer + evalkit.json into .partial, then rename into place
    accelerator.wait_for_everyone()
    meta: dict[str, Any] = {}
    if accelerator.is_main_process:
        to_save = unwrapped.merge_and_unload() if variant.lora is not None else unwrapped
        to_save.save_pretrained(partial)
        tok.save_pretrained(partial)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "variant": variant.name,
            "base_model": base_model,
            "reference_model": reference_model,
            "loss": variant.loss,
            "hyperparameters": variant.model_dump(mode="json", by_alias=True),
            "seed": seed,
            "data": {**(data_info or {}), "fingerprint": data.fingerprint(), "n_pairs": len(data),
                     "n_skipped": data.n_skipped, "edit_distance": data.edit_distance_summary()},
            "reference": {"fingerprint": ref_fp, "cache_key": cache_key},
            "steps": step,
            "micro_batches": micro,
            "logps_summary": {"n_pairs": n_eval, "chosen_start": start_c, "chosen_end": end["chosen_logps"].mean().item(),
                              "rejected_start": start_r, "rejected_end": end["rejected_logps"].mean().item(),
                              "reduction": "sum"},
            "warnings": warnings,
            "seconds": round(time.time() - t_start, 2),
            # pair tokens (prompt counted for both sides, as padded batches hold them) and the
            # tokens actually run through the model (the prompt once when packed)
            "train_tokens_per_second": round(tokens / max(loop_seconds, 1e-9), 1),
            "train_processed_tokens_per_second": round(processed / max(loop_seconds, 1e-9), 1),
            "packed_prompt": pack,
            "device": str(device), "mixed_precision": mixed,
            "config_hash": variant_config_hash(variant, model_fingerprint(base_model), data.fingerprint()),
            **environment(),
        }
        atomic_write_json(partial / "evalkit.json", meta)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        partial.rename(out_dir)
    accelerator.wait_for_everyone()
    return TrainResult(out_dir, meta, history)


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Seeded shuffled batches of similar-length pairs: less padding, same data per epoch.

    Shuffle all indices, cut them into windows of 16 batches, sort each window by length,
    cut it into batches, and shuffle the batch order. A new order every epoch.
    """

    def __init__(self, data: PreferenceData, batch_size: int, seed: int, window: int = 16):
        self.lengths = [max(len(p.chosen_ids), len(p.rejected_ids)) for p in data.pairs]
        self.batch_size, self.seed, self.window, self.epoch = batch_size, seed, window, 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        span = self.batch_size * self.window
        batches = []
        for s in range(0, len(order), span):
            chunk = sorted(order[s:s + span], key=lambda i: self.lengths[i])
            batches += [chunk[b:b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
        for j in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[j]


def _accumulate(window: dict[str, list[float]], accelerator, **values) -> None:
    for k, v in values.items():
        if v is None:
            continue
        v = accelerator.gather_for_metrics(v.detach().float())
        window.setdefault(k, []).extend(v.cpu().tolist())


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


@torch.no_grad()
def _final_logps(model, data: PreferenceData, pad_id: int, device, batch_size: int, pack: bool,
                 max_pairs: int = 64):
    """Summed log-probs of the first `max_pairs` pairs under the trained model."""
    was = model.training
    model.eval()
    chosen, rejected = [], []
    pairs = data.pairs[:max_pairs]
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        batch = {k: v.to(device) for k, v in make_batch(chunk, pad_id, pack).items()
                 if k not in ("n_tokens", "n_processed")}
        sums, _ = batch_logps(model, batch)
        chosen.append(sums[:len(chunk)].double().cpu())
        rejected.append(sums[len(chunk):].double().cpu())
    model.train(was)
    return {"chosen_logps": torch.cat(chosen), "rejected_logps": torch.cat(rejected)}
