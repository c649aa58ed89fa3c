"""The reference-based contamination check (Shi 2023, as the Smaug paper used it).

Per benchmark example text x (question + " " + correct answer):
  1. L_t(x): mean token NLL of x under the TARGET model;
  2. neighbours: the first ceil(ratio_gen * n_words) words of x as a prefix, and
     n_neighbours continuations SAMPLED from the REFERENCE model (at most n_words - prefix
     words new tokens, at least 1), decoded with the prefix;
  3. L_t(z_i) for each neighbour, truncated at max_tokens (150) tokens;
  4. s(x) = share of neighbours with L_t(z_i) < L_t(x): a memorised x has an unusually low
     loss, so s(x) is near 0;
  5. result = share of examples with s(x) < threshold (0.1). Near 1 reads "seen in training".

Unlike the original script, sampling is seeded, neighbours for many examples come from one
batched generate call, all texts are scored in large length-sorted padded batches, and
every result carries a control (the same test with a clean model as the target) and a
bootstrap interval. More per-example signals: perplexity, target-minus-reference
log-perplexity, lower-case ratio, zlib ratio, Min-K% Prob and Min-K%++.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..backends.scoring import TextScores, score_groups_shared, score_texts
from ..config import ContaminationSection, default_of
from ..errors import UserError
from ..progress import bar as progress_bar
from .benchmark_texts import Example  # noqa: F401  (one benchmark example: id and text; used here and re-exported)

log = logging.getLogger("evalkit")


_SEC = ContaminationSection


@dataclass
class Params:
    """The check's parameters. Those an experiment file or `evalkit contamination` sets take
    their defaults from config.ContaminationSection (written there once); params_from()
    builds them from a section."""
    ratio_gen: float = default_of(_SEC, "ratio_gen")
    n_neighbours: int = default_of(_SEC, "n_neighbours")
    n_examples: int = default_of(_SEC, "n_examples")
    threshold: float = default_of(_SEC, "threshold")
    max_tokens: int = default_of(_SEC, "max_tokens")      # neighbour scoring truncation, as in the original
    seed: int = default_of(_SEC, "seed")                  # the example shuffle (random.seed(0) in the original), sampling
    method: str = default_of(_SEC, "method")              # shi2023: the original's selection, padding side and batches
    dtype: str = default_of(_SEC, "dtype")                # fp32 as in the original ("auto": the checkpoint's dtype)
    generation: dict[str, float] = field(default_factory=dict)  # overrides of the reference's generation_config
    twins: str = default_of(_SEC, "twins")                # the calibrated verdict's unseen twins: "numbers" or a JSONL
    margin: float = default_of(_SEC, "margin")            # nats: a smaller membership effect reads "not seen"
    alpha: float = default_of(_SEC, "alpha")              # the permutation p-value a "seen" needs
    # not set from a section
    k: float = 0.2                 # Min-K% and Min-K%++
    score_batch_tokens: int = 16384
    generate_batch: int = 800      # sequences per generate call (examples x neighbours)
    bootstrap: int = 1000


def params_from(sec: ContaminationSection) -> Params:
    """The check's parameters from a contamination section (an experiment's or the CLI's)."""
    return Params(**{f.name: getattr(sec, f.name) for f in fields(Params)
                     if f.name in type(sec).model_fields and f.name != "generation"},
                  generation=dict(sec.generation))


def min_k(values: list[float], k: float) -> float:
    """Mean of the lowest k share of values (at least one): Min-K% Prob / Min-K%++."""
    if not values:
        return math.nan
    n = max(1, int(len(values) * k))
    return sum(sorted(values)[:n]) / n


# ---------------------------------------------------------------- neighbours

def prefix_of(text: str, ratio: float) -> tuple[str, int]:
    """(prefix, new-token budget): the first ceil(ratio*n_words) words, and the words left."""
    words = text.split()
    n_prefix = math.ceil(len(words) * ratio)
    prefix = " ".join(words[:n_prefix]) if n_prefix > 0 else "<|startoftext|> "
    return prefix, len(words) - n_prefix


def generate_neighbours(model, tok, examples: list[Example], p: Params, progress: bool = False,
                        backend: str = "hf") -> list[list[str]]:
    """n_neighbours sampled continuations per example from `model` (the reference), decoded
    with their prefix. Each example gets at most its own budget (n_words - prefix words new
    tokens, at least 1), as a per-example call with max_new_tokens=budget would produce;
    examples with similar budgets share a batch. `model` is a loaded model (hf) or, for
    backend vllm, the reference's path."""
    from ..backends.generate import GenOptions, Sampling, generator
    sampling = sampling_of(model if backend == "hf" else None, p.generation)
    prefixes, params = [], []
    for ex in examples:
        prefix, budget = prefix_of(ex.text, p.ratio_gen)
        if budget < 1:
            raise UserError(f"example {ex.id}: text too short for a prefix ({len(ex.text.split())} words; "
                            f"need at least {math.ceil(1 / (1 - p.ratio_gen))})")
        prefixes.append(prefix)
        # the original's sampling: do_sample with the reference's generation_config, >= 1 new token
        params.append(Sampling(max_new_tokens=budget, n=p.n_neighbours, min_new_tokens=1, **sampling))
    opt = GenOptions(backend=backend, seed=p.seed, batch_rows=p.generate_batch)
    gen = generator(model, opt, tokenizer=tok)
    return gen.complete(prefixes, params, add_special_tokens=True, include_prompt=True, desc="neighbours",
                        progress=progress)


def sampling_of(model, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """temperature, top_k, top_p as the original samples: `do_sample=True` on top of the
    reference's own generation_config (transformers' defaults where it sets none: 1.0, 50,
    1.0), then `overrides`."""
    gc = getattr(model, "generation_config", None)
    out = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}
    for key in out:
        v = getattr(gc, key, None)
        if v is not None:
            out[key] = type(out[key])(v)
    for key, v in (overrides or {}).items():
        if key not in out:
            raise UserError(f"contamination generation: unknown setting {key!r} (use temperature, top_k, top_p)")
        out[key] = type(out[key])(v)
    return out


# ---------------------------------------------------------------- the test

@dataclass
class Run:
    """Per-example results of one target model against shared neighbours."""
    example_nll: list[float]
    neighbour_nll: list[list[float]]
    scores: list[float] = field(default_factory=list)


def neighbour_scores(example_nll: list[float], neighbour_nll: list[list[float]]) -> list[float]:
    """s(x): the share of neighbours whose loss is below the example's."""
    return [sum(1 for z in zs if z < x) / len(zs) for x, zs in zip(example_nll, neighbour_nll)]


def result_of(scores: list[float], threshold: float) -> float:
    return sum(1 for s in scores if s < threshold) / len(scores)


def bootstrap_ci(scores: list[float], threshold: float, n: int, seed: int) -> list[float]:
    """95% percentile interval of the result over n resamples of the examples (numpy, seeded)."""
    import numpy as np

    from ..report.stats import percentile_interval, resample_means
    below = (np.asarray(scores, dtype=np.float64) < threshold).astype(np.float64)
    return list(percentile_interval(resample_means(below, n, np.random.default_rng(seed))))


def score_target(model, tok, examples: list[Example], neighbours: list[list[str]], p: Params,
                 progress: bool = False, details: bool = True) -> tuple[Run, TextScores]:
    """Example and neighbour losses under one target model (neighbours shared across targets).
    shi2023 pads on the tokenizer's side; on the left, examples are scored alone and each
    example's neighbours in batches of 32 in order, as the original does."""
    side, sizes = layout(tok, p)
    ex_scores = score_texts(model, tok, [e.text for e in examples], None, details=details,
                            batch_tokens=p.score_batch_tokens, padding_side=side, batch_size=sizes[0])
    if side == "left":
        per = [score_texts(model, tok, zs, p.max_tokens, padding_side=side, batch_size=sizes[1]).mean_nll
               for zs in progress_bar(neighbours, desc="score neighbours", enabled=progress)]
    else:
        per = score_groups_shared(model, tok, neighbours, p.max_tokens, p.score_batch_tokens, progress,
                                  "score neighbours")
    if per is None:      # the model's cache cannot be reused: every text scored whole
        flat = [z for zs in neighbours for z in zs]
        nb = score_texts(model, tok, flat, p.max_tokens, batch_tokens=p.score_batch_tokens, progress=progress,
                         desc="score neighbours").mean_nll
        per = [nb[i * p.n_neighbours:(i + 1) * p.n_neighbours] for i in range(len(examples))]
    run = Run(ex_scores.mean_nll, per)
    run.scores = neighbour_scores(run.example_nll, per)
    return run, ex_scores


def layout(tok, p: Params) -> tuple[str, tuple[int | None, int | None]]:
    """(padding side, (example batch size, neighbour batch size)) for scoring. Right padding
    gives the same losses in any batch, so texts are length-sorted; left padding does not."""
    if p.method == "shi2023" and getattr(tok, "padding_side", "right") == "left":
        return "left", (1, 32)
    return "right", (None, None)


def signals(text: str, nll: float, ref_nll: float, lower_nll: float, token_logps: list[float],
            minkpp_z: list[float], k: float) -> dict[str, float]:
    """The per-example signals the original reports, plus Min-K% and Min-K%++."""
    return {
        "ppl": math.exp(nll),
        "log_ppl_minus_ref": nll - ref_nll,                  # "ppl/Ref_ppl" in the original
        "lowercase_ratio": -(lower_nll / nll) if nll else math.nan,   # "ppl/lowercase_ppl"
        "zlib_ratio": nll / len(zlib.compress(text.encode("utf-8"))),  # "ppl/zlib"
        "min_k_prob": min_k(token_logps, k),                 # higher = more likely seen
        "min_k_plus_plus": min_k(minkpp_z, k),
    }


def params_dict(p: Params) -> dict[str, Any]:
    return asdict(p)
