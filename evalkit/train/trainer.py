"""Preference training on accelerate: one loop for every loss in LOSSES.

accelerate supplies the engine (device placement, bf16 autocast, and DDP / FSDP under
`accelerate launch`); this file supplies the recipe:
  1. tokenize the pairs; 2. reference log-probs from the shared cache, computed under the
  policy's precision (no reference model in memory while training); 3. one forward over
  chosen+rejected rows per micro-batch; 4. the loss from LOSSES; 5. metrics per logging
  step (a non-finite gradient norm stops the run in one line); 6. a checkpoint that loads with
  AutoModelForCausalLM and lm-eval unchanged, written into a temp folder by the main process
  and swapped in (rundir.swap_in).

Batches, accumulation and the schedule are explicit here rather than left to accelerate,
so that N processes train exactly what one process does with an N-times larger batch:
every process draws the same GLOBAL batches (batch_size x processes pairs) and takes its
slice; a window of grad_accum global batches is one optimizer step, and each pair's loss is
weighted 1/(pairs in the window), so a short last window or an uneven slice counts by its
real size; the LR schedule steps once per optimizer step over the steps really taken.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from .. import trackers
from ..backends.fingerprint import model_fingerprint
from ..backends.models import load_training_model
from ..progress import bar as progress_bar

from ..config import Variant
from .. import schema
from ..rundir import CheckpointFiles, append, content_hash, environment, naming, swap_in, write
from .data import PreferenceData, TokenizedPair, make_batch, supports_packing
from .diagnostics import HeldOut, PostEdit, pair_logps, split_heldout
from .logps import batch_logps, install_completion_head, reduce_logps
from .losses import LOSSES, REFERENCE_FREE, add_sft, loss_options
from .reference import ReferenceCache, compute_reference_logps

log = logging.getLogger("evalkit")

MAX_GRAD_NORM = 1.0


@dataclass
class TrainResult:
    path: Path
    metadata: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)


def loss_kwargs_for(variant: Variant) -> dict[str, Any]:
    """The variant's values for exactly the options its loss declares."""
    return {name: getattr(variant, name) for name in loss_options(variant.loss)}


def variant_config_hash(variant: Variant, base_fingerprint: str, data_fingerprint: str) -> str:
    return content_hash({"variant": variant.model_dump(mode="json", by_alias=True),
                         "base": base_fingerprint, "data": data_fingerprint})


def train_variant(variant: Variant, base_model: str, data: PreferenceData, out_dir: str | Path,
                  cache: ReferenceCache, *, seed: int = 0, data_info: dict[str, Any] | None = None,
                  tokenizer=None, progress: bool = True, reference_model: str | None = None,
                  heldout: list[TokenizedPair] | None = None) -> TrainResult:
    """Train `variant` from `base_model` on `data`; write the checkpoint to out_dir.

    `reference_model` defaults to the base (stepwise training passes the previous step).
    `heldout`: the held-out pairs to measure, none of them in `data` (sDPO splits them once
    and measures the same set at every step); by default `variant.heldout_pairs` pairs are
    split off `data` here.

    The steps, each a function below: _setup (accelerator, policy, held-out split),
    _reference (cached log-probs, or a pass of another reference), _prepare (LoRA, optimizer,
    schedule, accelerate), _starts (the policy as its own reference; the diagnostics' starting
    values), _loop, _summary (where the log-probs ended) and _save.
    """
    t_start = time.time()
    run = _setup(variant, base_model, data, Path(out_dir), seed, tokenizer, reference_model, heldout, progress)
    _reference(run, cache)
    _prepare(run)
    _starts(run, cache)
    loop = _loop(run)
    end, summary = _summary(run, loop)
    meta = _metadata(run, loop, end, summary, data_info, time.time() - t_start)
    _save(run, meta)
    return TrainResult(run.out_dir, meta, loop.history)


@dataclass
class _Run:
    """One training run's state, passed from step to step of train_variant."""
    variant: Variant
    base_model: str
    reference_model: str
    out_dir: Path
    seed: int
    progress: bool
    accelerator: Any
    mixed: str
    autocast_dtype: Any
    tok: Any
    data: PreferenceData             # the pairs trained on
    given: PreferenceData            # what this run was handed, held-out pairs included
    heldout_pairs: list[TokenizedPair]
    model: Any
    pack: bool
    chunked_head: bool
    attn: str | None
    pad_id: int
    reference_free: bool
    policy_is_reference: bool
    ref_fp: str | None = None
    ref: dict | None = None
    cache_key: str | None = None
    optimizer: Any = None
    scheduler: Any = None
    sampler: Any = None
    total_steps: int = 0
    post_edit: PostEdit | None = None
    heldout: HeldOut | None = None
    start: dict | None = None        # reference-free: the untrained policy's log-probs

    @property
    def device(self):
        return self.accelerator.device

    @property
    def partial(self) -> Path:
        return self.out_dir.with_name(self.out_dir.name + ".partial")

    def diag_args(self) -> tuple:
        return (self.pad_id, self.device, 2 * self.variant.batch_size, self.autocast_dtype, self.attn)


@dataclass
class _Loop:
    """What the training loop leaves: metrics history, warnings and counts."""
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    step: int = 0
    micro: int = 0
    tokens: int = 0
    processed: int = 0
    seconds: float = 0.0


def _setup(variant: Variant, base_model: str, data: PreferenceData, out_dir: Path, seed: int, tokenizer,
           reference_model: str | None, heldout: list[TokenizedPair] | None, progress: bool) -> _Run:
    """The accelerator (precision, processes), the tokenizer, the held-out split and the
    policy in fp32 master weights (bf16 comes from autocast)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

    from ..backends.models import load_tokenizer

    seed = variant.seed if variant.seed is not None else seed
    set_seed(seed)
    use_cuda = torch.cuda.is_available()
    want = variant.dtype if variant.dtype != "auto" else ("bfloat16" if use_cuda and torch.cuda.is_bf16_supported() else "float32")
    mixed = {"bfloat16": "bf16", "float16": "fp16"}.get(want, "no") if use_cuda else "no"
    accelerator = Accelerator(mixed_precision=mixed, **trackers.accelerator_kwargs())   # report_to: the experiment's trackers
    check_world_size(accelerator.num_processes)
    if accelerator.distributed_type == DistributedType.DEEPSPEED and variant.grad_accum > 1:
        from ..errors import UserError
        raise UserError(f"variant {variant.name}: grad_accum {variant.grad_accum} under DeepSpeed is not supported "
                        f"(DeepSpeed counts its own accumulation); use grad_accum: 1 and a larger batch_size")
    tok = tokenizer or load_tokenizer(base_model)
    reference_model = reference_model or base_model
    # held-out pairs for the dispersion diagnostic (train/diagnostics.py) never enter training
    if heldout is None:
        given = data
        data, heldout_pairs = split_heldout(given, 0 if given.chosen_only else variant.heldout_pairs, seed)
    else:   # given: what this run was handed, held-out pairs included (n_pairs, fingerprint)
        given = PreferenceData(data.pairs + heldout, data.n_skipped, data.source, data.counts)
        heldout_pairs = list(heldout)
    # a reference-free loss (sft: maximum likelihood on y_w) needs no reference: no cache, no pass
    reference_free = variant.loss in REFERENCE_FREE
    if reference_free != data.chosen_only:
        raise ValueError(f"variant {variant.name}: loss {variant.loss} on "
                         f"{'chosen-only examples' if data.chosen_only else 'preference pairs'}")
    model = load_training_model(base_model)
    pack = choose_packing(model, variant.pack_prompt, variant.name)
    # completion log-probs through the LM head in chunks: no (rows, tokens, vocab) logits
    chunked_head = install_completion_head(model)
    return _Run(variant=variant, base_model=base_model, reference_model=reference_model, out_dir=out_dir, seed=seed,
                progress=progress, accelerator=accelerator, mixed=mixed,
                # the reference and the final log-probs run under the same autocast as the policy
                autocast_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed),
                tok=tok, data=data, given=given, heldout_pairs=heldout_pairs, model=model, pack=pack,
                chunked_head=chunked_head, attn=getattr(model.config, "_attn_implementation", None),
                pad_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                reference_free=reference_free, policy_is_reference=reference_model == base_model)


def _reference(run: _Run, cache: ReferenceCache) -> None:
    """Reference log-probs, shared through the cache, in fp32 weights under the policy's
    autocast. When the reference is the base, the untrained policy IS the reference: it is
    scored after accelerator.prepare, through the (possibly sharded) model on every process
    (_starts). Another reference (a previous sDPO step) is scored here, by the main process
    first."""
    if run.reference_free:
        return
    acc, device = run.accelerator, run.device
    run.ref_fp = model_fingerprint(run.reference_model)
    setting = {"device": device.type}
    run.ref, run.cache_key = cache.lookup(run.ref_fp, run.data, run.autocast_dtype, setting)
    if acc.num_processes > 1 and run.policy_is_reference:
        # one decision for all: the scoring pass in _starts is collective
        missing = acc.reduce(torch.tensor([int(run.ref is None)], device=device), "sum").item()
        run.ref = None if missing else run.ref
    if run.ref is None and not run.policy_is_reference:
        def load_reference():
            m = load_training_model(run.reference_model)
            install_completion_head(m)
            return m.to(device)

        with acc.main_process_first():
            # no gradients here, so larger batches than training
            run.ref, run.cache_key = cache.get_or_compute(
                run.ref_fp, run.data, load_reference, batch_size=2 * run.variant.batch_size, device=str(device),
                progress=run.progress and acc.is_main_process, pack=run.pack, autocast_dtype=run.autocast_dtype,
                setting=setting)


def _prepare(run: _Run) -> None:
    """Gradient checkpointing, LoRA, the batches (every process draws the same global batches,
    seeded, similar lengths together, and takes its slice), the optimizer and the schedule
    over the optimizer steps really taken; accelerate wraps the model and optimizer."""
    from transformers import get_scheduler
    variant, model = run.variant, run.model
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
    run.sampler = LengthGroupedBatches(run.data, variant.batch_size * run.accelerator.num_processes, run.seed)
    run.total_steps = training_steps(variant, len(run.sampler))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=variant.learning_rate, weight_decay=variant.weight_decay)
    run.scheduler = get_scheduler(variant.lr_scheduler, optimizer, num_warmup_steps=variant.warmup_steps,
                                  num_training_steps=run.total_steps)
    # the scheduler is not prepared: accelerate would step it once per process per step
    run.model, run.optimizer = run.accelerator.prepare(model, optimizer)


def _starts(run: _Run, cache: ReferenceCache) -> None:
    """Where the policy starts, under the untrained policy (no gradients): the reference pass
    when the policy is the reference (stored in the cache), the reference-free start, and the
    diagnostics' starting values (held-out pairs, post-edit tails)."""
    acc, data, variant = run.accelerator, run.data, run.variant
    run.post_edit = post_edit = PostEdit([] if data.chosen_only else data.pairs)
    if run.reference_free:   # where log pi(y_w) starts, for the summary (no reference: the policy before training)
        run.start = _final_logps(run.model, data, run.pad_id, run.device, 2 * variant.batch_size, run.pack,
                                 run.autocast_dtype, run.attn, post_edit)
        post_edit.start = run.start["post_edit"]
    elif run.ref is None:   # the policy is the reference: score it now, sharded like training
        run.ref = compute_reference_logps(run.model, data, 2 * variant.batch_size, str(run.device),
                                          run.progress and acc.is_main_process, run.pack, run.autocast_dtype,
                                          accelerator=acc, pad_id=run.pad_id, attn_implementation=run.attn)
        if acc.is_main_process:
            cache.store(run.cache_key, run.ref)
        acc.wait_for_everyone()
    run.heldout = HeldOut(run.heldout_pairs, variant.logp_reduction) if run.heldout_pairs else None
    if run.heldout is not None:
        run.heldout.start = run.heldout.measure(run.model, *run.diag_args())
    if run.policy_is_reference and not run.reference_free and "chosen_tail_logps" in run.ref:
        # the reference pass (now or cached) scored the untrained policy's post-edit tails
        post_edit.start = post_edit.values(run.ref, list(range(len(data))))
    elif not run.reference_free:   # another reference, or a cache file without tails: the selected pairs alone
        post_edit.start = post_edit.measure(run.model, run.pad_id, run.device, 2 * variant.batch_size, run.pack,
                                            run.autocast_dtype, run.attn)


def _loop(run: _Run) -> _Loop:
    """The optimizer steps: windows of grad_accum global batches, one forward over chosen and
    rejected rows per micro-batch, metrics every logging_steps (train_metrics.jsonl in the
    .partial folder), a non-finite gradient norm stops the run."""
    acc, data, variant, model, device = run.accelerator, run.data, run.variant, run.model, run.device
    n_proc, rank = acc.num_processes, acc.process_index
    batches_per_epoch = len(run.sampler)
    partial = run.partial
    if acc.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    metrics_path = CheckpointFiles(partial).metrics
    metrics = Metrics()
    loop = _Loop()
    grad_norm = float("nan")
    loss_fn = LOSSES[variant.loss]
    loss_kwargs = loss_kwargs_for(variant)
    reduction = variant.logp_reduction
    ref, heldout = run.ref, run.heldout
    trackers.start(acc, variant.model_dump(mode="json", by_alias=True))
    bar = progress_bar(total=run.total_steps, desc=f"train {variant.name}", enabled=run.progress and acc.is_main_process)
    t_loop = time.time()
    while loop.step < run.total_steps:
        batches = list(run.sampler)                   # one epoch of global batches
        for w in range(0, len(batches), variant.grad_accum):
            group = batches[w:w + variant.grad_accum]
            window_pairs = sum(len(g) for g in group)  # the window's real size, all processes
            for j, global_batch in enumerate(group):
                idx, weight = shard(global_batch, rank, n_proc)
                # gradients are all-reduced once per window, on its last micro-batch
                sync = contextlib.nullcontext() if j == len(group) - 1 else acc.no_sync(model)
                with sync:
                    batch = {k: v.to(device) for k, v in make_batch([data.pairs[i] for i in idx], run.pad_id,
                                                                     run.pack).items()}
                    n_tokens, n_processed = int(batch.pop("n_tokens")), int(batch.pop("n_processed"))
                    b = len(idx)
                    sums, lengths = batch_logps(model, batch, run.attn)
                    pol_c = reduce_logps(sums[:b], lengths[:b], reduction)
                    if run.reference_free:     # sft: NLL(y_w) from the chosen rows alone
                        pol_r = ref_c = None
                        out = loss_fn(sums[:b], lengths[:b].to(sums), **loss_kwargs)
                    else:
                        pol_r = reduce_logps(sums[b:], lengths[b:], reduction)
                        out, ref_c = _preference_loss(loss_fn, loss_kwargs, variant, ref, idx, reduction, pol_c, pol_r,
                                                      sums[:b], lengths[:b].to(sums),
                                                      loop.step == 0 and run.policy_is_reference)
                    # the mean over the window's pairs: processes' gradients are averaged (x n_proc)
                    loss = out.losses.sum() * (weight * n_proc / window_pairs)
                    acc.backward(loss)
                loop.micro += 1
                if weight:
                    loop.tokens += n_tokens
                    loop.processed += n_processed
                    pairwise = out.chosen_rewards is not None   # None for sft: no rewards, no reference
                    metrics.add(loss=out.losses, logps_chosen=pol_c, logps_rejected=pol_r,
                               rewards_chosen=out.chosen_rewards, rewards_rejected=out.rejected_rewards,
                               reward_margin=out.chosen_rewards - out.rejected_rewards if pairwise else None,
                               reward_accuracy=(out.chosen_rewards > out.rejected_rewards).float() if pairwise else None,
                               chosen_vs_reference=pol_c - ref_c if ref_c is not None else None,
                               penalty_active=out.penalty_active.float() if out.penalty_active is not None else None)
            norm = acc.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            grad_norm = float(norm) if norm is not None else float("nan")   # DeepSpeed clips inside
            # the norm of the all-reduced gradients: every process sees the same value, so
            # all of them stop together, before a non-finite update reaches the weights
            if norm is not None and not math.isfinite(grad_norm):
                _stop_non_finite(variant, f"gradient norm {grad_norm} at step {loop.step + 1}", partial, acc, bar)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            loop.step += 1
            bar.update(1)
            if loop.step % variant.logging_steps == 0 or loop.step == run.total_steps:
                record = {"step": loop.step, **metrics.means(acc),
                          "lr": run.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                          "epoch": round(loop.micro / batches_per_epoch, 4)}
                record.setdefault("penalty_active", None)
                if heldout is not None:
                    record.update(heldout.measure(model, *run.diag_args()))
                loop.history.append(record)
                if acc.is_main_process:
                    append("train_metrics", metrics_path, record)
                trackers.log(acc, record, loop.step)
                bar.set_postfix(loss=f"{record['loss']:.4f}", chosen=f"{record['logps_chosen']:.2f}",
                                refresh=False)   # drawn with the bar's next update, not on its own
                _warn_chosen_drop(variant, record, loop)
            if loop.step >= run.total_steps:
                break
    bar.close()
    trackers.finish(acc)
    loop.seconds = time.time() - t_loop
    return loop


def _warn_chosen_drop(variant: Variant, record: dict[str, Any], loop: _Loop) -> None:
    """Once per run: the chosen completions fell further below the reference than allowed."""
    drop = -record.get("chosen_vs_reference", 0.0)
    if drop > variant.chosen_drop_warning and not loop.warnings:
        msg = (f"variant {variant.name}: mean log pi(y_w) fell {drop:.2f} nats below its starting "
               f"value by step {loop.step} (threshold {variant.chosen_drop_warning}); the chosen "
               f"completions are losing likelihood, the DPO failure mode on low-edit-distance "
               f"pairs. Consider loss: dpop (lambda 50).")
        loop.warnings.append(msg)
        log.warning(msg)


def _summary(run: _Run, loop: _Loop) -> tuple[dict[str, Any], dict[str, Any]]:
    """Where the chosen (and rejected) log-probs ended, against where they started (the
    reference), through the prepared model on every process (under FSDP / ZeRO-3 the
    unwrapped one is sharded); the post-edit diagnostic comes from the same forwards."""
    end = _final_logps(run.model, run.data, run.pad_id, run.device, 2 * run.variant.batch_size, run.pack,
                       run.autocast_dtype, run.attn, run.post_edit)
    if not torch.isfinite(end["chosen_logps"]).all():     # the same pairs on every process
        _stop_non_finite(run.variant, f"log-probs after step {loop.step}", run.partial, run.accelerator, None)
    n_eval = len(end["chosen_logps"])
    if run.reference_free:
        summary = {"n_pairs": n_eval, "chosen_start": run.start["chosen_logps"].mean().item(),
                   "chosen_end": end["chosen_logps"].mean().item(), "reduction": "sum"}
    else:
        summary = {"n_pairs": n_eval, "chosen_start": run.ref["chosen_logps"][:n_eval].mean().item(),
                   "chosen_end": end["chosen_logps"].mean().item(),
                   "rejected_start": run.ref["rejected_logps"][:n_eval].mean().item(),
                   "rejected_end": end["rejected_logps"].mean().item(), "reduction": "sum"}
    return end, summary


def _metadata(run: _Run, loop: _Loop, end: dict[str, Any], summary: dict[str, Any],
              data_info: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    """evalkit.json: the same record on every process (the launcher prints it there)."""
    acc, variant, given = run.accelerator, run.variant, run.given
    run.accelerator.wait_for_everyone()
    tokens, processed = loop.tokens, loop.processed
    if acc.num_processes > 1:   # throughput of all processes together
        tokens, processed = acc.reduce(torch.tensor([tokens, processed], device=run.device), "sum").tolist()
    return {
        "schema_version": schema.version("evalkit"),
        "variant": variant.name,
        "base_model": run.base_model,
        "reference_model": None if run.reference_free else run.reference_model,
        "loss": variant.loss,
        "hyperparameters": variant.model_dump(mode="json", by_alias=True),
        "seed": run.seed,
        "data": {**(data_info or {}), "fingerprint": given.fingerprint(), "n_pairs": len(given),
                 "n_heldout": len(run.heldout_pairs), "n_skipped": given.n_skipped,
                 "edit_distance": given.edit_distance_summary()},
        "reference": None if run.reference_free else {"fingerprint": run.ref_fp, "cache_key": run.cache_key},
        "steps": loop.step,
        "micro_batches": loop.micro,
        "processes": acc.num_processes,
        "global_batch_pairs": variant.batch_size * acc.num_processes * variant.grad_accum,
        "tokenization": dataclasses.asdict(run.data.counts),
        "logps_summary": summary,
        "heldout": run.heldout.summary(loop.history[-1]) if run.heldout is not None else None,
        "post_edit": run.post_edit.summary(end["post_edit"]),
        "warnings": loop.warnings,
        "seconds": round(seconds, 2),
        # pair tokens (prompt counted for both sides, as padded batches hold them) and the
        # tokens actually run through the model (the prompt once when packed)
        "train_tokens_per_second": round(tokens / max(loop.seconds, 1e-9), 1),
        "train_processed_tokens_per_second": round(processed / max(loop.seconds, 1e-9), 1),
        "packed_prompt": run.pack,
        "chunked_lm_head": run.chunked_head,
        "device": str(run.device), "mixed_precision": run.mixed,
        "config_hash": variant_config_hash(variant, model_fingerprint(run.base_model), given.fingerprint()),
        **environment(),
    }


def _save(run: _Run, meta: dict[str, Any]) -> None:
    """Weights, tokenizer and evalkit.json into the .partial folder, then swapped in (the main
    process writes; the full weights are gathered on every process under FSDP / ZeRO-3)."""
    acc, partial = run.accelerator, run.partial
    unwrapped = acc.unwrap_model(run.model)
    state_dict = acc.get_state_dict(run.model) if run.variant.lora is None else None
    if acc.is_main_process:
        with naming(partial):           # a full disk names the checkpoint being written
            if run.variant.lora is not None:
                unwrapped.merge_and_unload().save_pretrained(partial)
            else:
                unwrapped.save_pretrained(partial, state_dict=state_dict)
            run.tok.save_pretrained(partial)
            write("evalkit", CheckpointFiles(partial).metadata, meta)
        swap_in(partial, run.out_dir)
    acc.wait_for_everyone()


def _stop_non_finite(variant: Variant, what: str, partial: Path, accelerator, bar) -> None:
    """A non-finite loss or gradient: stop the stage in one line; the unfinished folder goes,
    the checkpoint of an earlier run stays where it is."""
    from ..errors import UserError
    if bar is not None:
        bar.close()
    trackers.finish(accelerator)
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    raise UserError(f"variant {variant.name}: non-finite {what} (learning_rate {variant.learning_rate}); "
                    f"training stopped, any previous checkpoint is kept")


def check_world_size(num_processes: int | None = None) -> None:
    """Refuse a launcher whose WORLD_SIZE is not the number of processes accelerate connects
    (`accelerate launch --multi_gpu` on a machine without GPUs and without
    ACCELERATE_USE_CPU=true starts separate one-process trainings into one folder)."""
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return
    if num_processes is None:       # the process state Accelerator() would set up (a shared singleton)
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env
        num_processes = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes
    if not world.strip().isdigit() or int(world) != num_processes:
        from ..errors import UserError
        raise UserError(f"WORLD_SIZE={world} but accelerate connects {num_processes} process(es): the processes "
                        f"would train separately into one folder. On a CPU: ACCELERATE_USE_CPU=true accelerate "
                        f"launch --multi_gpu --num_processes N ...")


def wait_for_everyone() -> None:
    """accelerate's barrier across the processes of `accelerate launch` (a no-op alone)."""
    from accelerate import PartialState
    PartialState().wait_for_everyone()


def _preference_loss(loss_fn, loss_kwargs, variant: Variant, ref, idx, reduction, pol_c, pol_r, chosen_sums,
                     chosen_lengths, policy_is_reference_now: bool):
    """A preference loss on one micro-batch against the cached reference log-probs (+ sft_weight)."""
    it = torch.tensor(idx)
    ref_c = reduce_logps(ref["chosen_logps"][it], ref["chosen_lengths"][it], reduction).to(pol_c)
    ref_r = reduce_logps(ref["rejected_logps"][it], ref["rejected_lengths"][it], reduction).to(pol_c)
    if policy_is_reference_now:
        # before the first update the policy IS the reference: use its own
        # numbers, so h_w = 0 exactly, not the ~1e-7 (fp32) or ~1e-2 (bf16)
        # that another batch shape gives, which would switch DPOP's penalty
        # (and its (1 + lambda) gradient) on at random
        ref_c, ref_r = pol_c.detach(), pol_r.detach()
    out = loss_fn(pol_c, pol_r, ref_c, ref_r, **loss_kwargs)
    return add_sft(out, chosen_sums, chosen_lengths, variant.sft_weight, variant.nll_reduction), ref_c


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


def training_steps(variant: Variant, global_batches_per_epoch: int) -> int:
    """Optimizer steps: max_steps, or the epochs over windows of grad_accum global batches."""
    if variant.max_steps:
        return variant.max_steps
    return max(1, math.ceil(variant.epochs * global_batches_per_epoch / variant.grad_accum))


def shard(global_batch: list[int], rank: int, n_proc: int) -> tuple[list[int], float]:
    """This process's contiguous slice of a global batch, sizes differing by at most one, and
    its weight: 0 for a stand-in pair when the batch has fewer pairs than processes (every
    process must run a forward and backward for the gradient all-reduce)."""
    base, extra = divmod(len(global_batch), n_proc)
    start = rank * base + min(rank, extra)
    part = global_batch[start:start + base + (rank < extra)]
    return (part, 1.0) if part else (global_batch[:1], 0.0)


def choose_packing(model, pack_prompt, variant_name: str = "") -> bool:
    """pack_prompt auto: pack when the attention takes the 4D mask. Asked for with an attention
    that cannot take it (flash-attention-2, ...): padded batches, with a one-line notice."""
    able = supports_packing(model)
    if pack_prompt == "auto":
        return able
    if pack_prompt and not able:
        impl = getattr(model.config, "_attn_implementation", None)
        log.warning("variant %s: pack_prompt needs eager or sdpa attention, the model uses %s; "
                    "training on padded batches", variant_name, impl)
        return False
    return bool(pack_prompt)


class Metrics:
    """Per-process sums and counts of each metric since the last log; means across processes."""
    NAMES = ("loss", "logps_chosen", "logps_rejected", "rewards_chosen", "rewards_rejected", "reward_margin",
             "reward_accuracy", "chosen_vs_reference", "penalty_active")

    def __init__(self):
        self.sums = torch.zeros(len(self.NAMES), dtype=torch.float64)
        self.counts = torch.zeros(len(self.NAMES), dtype=torch.float64)

    def add(self, **values) -> None:
        for k, v in values.items():
            if v is not None:
                i = self.NAMES.index(k)
                self.sums[i] += v.detach().double().sum().cpu()
                self.counts[i] += v.numel()

    def means(self, accelerator) -> dict[str, float]:
        both = torch.cat([self.sums, self.counts]).to(accelerator.device)
        if accelerator.num_processes > 1:
            both = accelerator.reduce(both, reduction="sum")
        sums, counts = both.cpu().chunk(2)
        self.sums.zero_()
        self.counts.zero_()
        return {k: (s / c).item() for k, s, c in zip(self.NAMES, sums, counts) if c > 0}


def _final_logps(model, data: PreferenceData, pad_id: int, device, batch_size: int, pack: bool,
                 autocast_dtype=None, attn: str | None = None, post_edit: PostEdit | None = None,
                 max_pairs: int = 64) -> dict[str, Any]:
    """Summed log-probs of the first `max_pairs` pairs (chosen_logps; rejected_logps, None for
    chosen-only examples) and post_edit's values (post_edit; None without one) from the same
    forwards: post_edit's pairs beyond the first `max_pairs` are scored along, after them.
    `post_edit` must have been built on data.pairs."""
    first = list(range(min(max_pairs, len(data))))
    order = first + ([i for i in post_edit.index if i >= max_pairs] if post_edit is not None else [])
    skip = post_edit.skip_for(order) if post_edit is not None else None
    scores = pair_logps(model, [data.pairs[i] for i in order], pad_id, device, batch_size, pack, autocast_dtype,
                        attn, skip)
    n = len(first)
    return {"chosen_logps": scores["chosen_logps"][:n],
            "rejected_logps": None if data.chosen_only else scores["rejected_logps"][:n],
            "post_edit": post_edit.values(scores, order) if post_edit is not None else None}
