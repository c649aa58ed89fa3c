"""sDPO (Kim et al., arXiv 2403.19270): stepwise preference training with a stronger reference.

The steps are either T equal chunks of one dataset or, as in the paper, a list of datasets
taken in order (any sizes; `parts`). Step t initialises from M_{t-1} and uses M_{t-1} as the
reference (M_0 = the base), with reference log-probs through the same cache. evalkit.json's
top-level `reference_model` is the last step's reference (M_{T-1}); each step records its own. With
order=easy_to_hard, chunks are ordered by the base model's reference margin
log pi_ref(y_w) - log pi_ref(y_l), largest (easiest) first. Each step's checkpoint is kept as
<variant>.step<t>; the last one is the variant. evalkit.json lists the steps.
The held-out pairs of the dispersion diagnostic (`heldout_pairs`) are split once from all the
data before the chunks are cut: no step trains on them, every step measures them.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from ..backends.fingerprint import model_fingerprint
from ..backends.models import load_training_model
from ..config import Variant
from ..errors import UserError
from ..rundir import CheckpointFiles, is_main_process, read, swap_in, write
from .data import PreferenceData
from .diagnostics import split_heldout
from ..schema import summary_by_part
from .reference import ReferenceCache
from .trainer import TrainResult, train_variant, variant_config_hash, wait_for_everyone


def reference_margins(data: PreferenceData, cache: ReferenceCache, reference: str, load_reference,
                      batch_size: int) -> list[float]:
    ref, _ = cache.get_or_compute(model_fingerprint(reference), data, load_reference, batch_size=batch_size,
                                  progress=False)
    return (ref["chosen_logps"] - ref["rejected_logps"]).tolist()


def share_steps(max_steps: int | None, weights: list[int]) -> list[int | None]:
    """max_steps split over the steps in proportion to weights, summing to max_steps exactly
    (largest remainders), at least one step each; None (epochs) stays None."""
    if not max_steps:
        return [None] * len(weights)
    total = sum(weights)
    exact = [max_steps * w / total for w in weights]
    out = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - out[i], reverse=True)[:max_steps - sum(out)]:
        out[i] += 1
    return [max(1, n) for n in out]


def train_stepwise(variant: Variant, base_model: str, data: PreferenceData, out_dir: str | Path,
                   cache: ReferenceCache, *, seed: int = 0, data_info: dict | None = None, tokenizer=None,
                   progress: bool = True, parts: list[tuple[str, PreferenceData]] | None = None) -> TrainResult:
    """`parts`: (dataset name, data) a step, in order; without it, `data` in `chunks` equal parts."""
    spec = variant.stepwise
    out_dir = Path(out_dir)
    load = lambda path: (lambda: load_training_model(path))  # noqa: E731
    if parts:
        data = PreferenceData([p for _, d in parts for p in d.pairs], sum(d.n_skipped for _, d in parts),
                              source=" + ".join(d.source for _, d in parts))
    # the held-out pairs are split ONCE, from all the data (every dataset, in order), before
    # chunking: no step trains on them, and every step measures the same set, so the merged
    # curve follows one set of pairs from the base to the final model
    train_data, held = split_heldout(data, variant.heldout_pairs, seed)
    is_held = {id(p) for p in held}
    if parts:
        chunks = [[p for p in d.pairs if id(p) not in is_held] for _, d in parts]
        names = [name for name, _ in parts]
        empty = [name for name, c in zip(names, chunks) if not c]
        if empty:
            raise UserError(f"variant {variant.name}: every pair of dataset {empty[0]} was held out "
                            f"(heldout_pairs {variant.heldout_pairs}); lower heldout_pairs")
        sources = [f"{d.source} (dataset {name}, step {t}/{len(parts)})" for t, (name, d) in enumerate(parts, 1)]
        # max_steps is shared in proportion to the datasets' sizes (the pairs trained on)
        budget = share_steps(variant.max_steps, [len(c) for c in chunks])
    else:
        pairs = list(train_data.pairs)
        if spec.order == "easy_to_hard":
            margins = reference_margins(train_data, cache, base_model, load(base_model), 2 * variant.batch_size)
            pairs = [p for _, p in sorted(zip(margins, pairs), key=lambda mp: -mp[0])]
        size = math.ceil(len(pairs) / spec.chunks)
        chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]
        names = [None] * len(chunks)
        sources = [f"{data.source} chunk {t}/{len(chunks)}" for t in range(1, len(chunks) + 1)]
        budget = share_steps(variant.max_steps, [1] * len(chunks))
    previous = base_model
    steps: list[dict[str, Any]] = []
    result = None
    for t, chunk in enumerate(chunks, 1):
        per_step = variant.model_copy(update={"stepwise": None, "max_steps": budget[t - 1]})
        chunk_data = PreferenceData(chunk, source=sources[t - 1])
        step_dir = out_dir.with_name(f"{out_dir.name}.step{t}")
        margin = reference_margins(chunk_data, cache, previous, load(previous), 2 * variant.batch_size)
        base_margin = margin if previous == base_model else \
            reference_margins(chunk_data, cache, base_model, load(base_model), 2 * variant.batch_size)
        result = train_variant(per_step, previous, chunk_data, step_dir, cache, seed=seed + t - 1,
                               data_info=data_info, tokenizer=tokenizer, progress=progress, reference_model=previous,
                               heldout=held)
        steps.append({"index": t, "dataset": names[t - 1], "n_pairs": len(chunk), "reference_model": previous,
                      "reference_fingerprint": model_fingerprint(previous),
                      "reference_margin": sum(margin) / len(margin),
                      "base_margin": sum(base_margin) / len(base_margin),  # M_0 on the same chunk
                      "checkpoint": str(step_dir),
                      "logps_summary": result.metadata.get("logps_summary"), "steps": result.metadata.get("steps"),
                      "heldout": result.metadata.get("heldout"), "post_edit": result.metadata.get("post_edit")})
        previous = str(step_dir)
    # the last step is the variant: copy it, and describe the whole run in evalkit.json
    meta = read("evalkit", CheckpointFiles(previous).metadata)
    meta.update({"base_model": base_model, "hyperparameters": variant.model_dump(mode="json", by_alias=True),
                 "stepwise": spec.model_dump(), "steps": steps,
                 # the reference the final model was trained against (M_{T-1}); the base is base_model
                 "reference_model": steps[-1]["reference_model"],
                 "data": {**meta.get("data", {}), "fingerprint": data.fingerprint(), "n_pairs": len(data),
                          "n_heldout": len(held), "n_skipped": data.n_skipped,
                          "edit_distance": data.edit_distance_summary()},
                 "logps_summary": summary_by_part([st["logps_summary"] for st in steps], "step",
                                                  fixed=_overall_heldout(steps)),
                 "heldout": _overall_heldout(steps),
                 "config_hash": variant_config_hash(variant, model_fingerprint(base_model), data.fingerprint())})
    if is_main_process():      # one process writes; the others wait below
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(previous, tmp)
        # one curve across the steps: step numbers continue from one sDPO step to the next
        lines, offset = [], 0
        for st in steps:
            rows = read("train_metrics", CheckpointFiles(st["checkpoint"]).metrics)
            lines += [{**r, "step": r["step"] + offset, "sdpo_step": st["index"]} for r in rows]
            offset += st["steps"] or 0
        write("train_metrics", CheckpointFiles(tmp).metrics, lines)
        write("evalkit", CheckpointFiles(tmp).metadata, meta)
        swap_in(tmp, out_dir)
    wait_for_everyone()
    return TrainResult(out_dir, meta, result.metrics if result else [])


def _overall_heldout(steps: list[dict]) -> dict | None:
    """The one held-out set across the steps: start under the base (before step 1), end under
    the final model."""
    first, last = steps[0].get("heldout"), steps[-1].get("heldout")
    if not first or not last:
        return None
    return {**last, "start": first["start"],
            "note": "the same pairs at every step, never trained on: start under the base, end under the final model"}
