"""On-policy training with verifiable rewards (after Tajwar et al., arXiv 2404.14367).

Each round: sample K completions per prompt from the CURRENT policy, score them with a
reward (an exact-match verifier for "#### n" answers, a choice verifier for multiple
choice, or an LLM judge), then train a few steps on what the objective keeps:
  contrastive  the best against the worst sample of each prompt as a preference pair (pairs
               whose reward gap is below min_gap dropped), with the base as the reference;
  filtered_bc  maximum likelihood (loss: sft) on the best sample(s) of each prompt whose
               reward reaches min_reward: filtered behaviour cloning, best-of-K.
Offline rows are mixed in so that they make up mixing_ratio of the RUN's data, to the nearest
row: after each round the offline total is r * N / (1 - r), rounded half up, for the N
on-policy rows so far, and the round draws the difference (so one round's share moves around
r; the run's total is the nearest whole row, exact when r * N / (1 - r) is whole). The round's checkpoint becomes
the next round's policy; every round's rewards, counts, steps, seconds and log-probs go into
evalkit.json (`rounds`), and the top-level record covers the whole run.

The two objectives sample the same way, and samples are cached by content (the policy's
weights, the prompts, K and every sampling setting, the seed), so two arms with the same
on-policy settings and seed train on byte-identical round-1 samples: the paper's comparison
of contrastive and maximum-likelihood objectives on the same on-policy data.
"""
from __future__ import annotations

import logging
import math
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..backends.fingerprint import model_fingerprint
from ..config import Variant
from ..errors import UserError
from ..rundir import CheckpointFiles, content_hash, is_main_process, read, swap_in, write
from .data import Row, tokenize_rows
from .reference import ReferenceCache
from .trainer import TrainResult, train_variant, variant_config_hash, wait_for_everyone

log = logging.getLogger("evalkit")

_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def numeric_answer(text: str) -> float | None:
    """The FINAL answer: the number after the last '####' (commas allowed), or None for a
    malformed completion. A completion that wanders on after an early '#### 13' and ends
    '#### 9' answered 9."""
    found = _ANSWER.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def offline_count(n_onpolicy: int, mixing_ratio: float) -> int:
    """Offline rows to add to n_onpolicy on-policy rows so that they are mixing_ratio of
    the whole: k / (k + n) = r  =>  k = r n / (1 - r), rounded half up to a whole row (exact
    whenever r n / (1 - r) is a whole number; 17 rows at 0.25: 5.67 -> 6, a share of 26.1%).
    No on-policy rows: nothing to mix."""
    if not mixing_ratio or n_onpolicy <= 0:
        return 0
    return math.floor(mixing_ratio * n_onpolicy / (1 - mixing_ratio) + 0.5)


def offline_for_round(n_used: int, n_prompts: int, run_onpolicy: int, run_offline: int, mixing_ratio: float) -> int:
    """Offline rows a round draws: what brings the run's offline total (run_offline, from
    rounds with on-policy rows) to offline_count(run's on-policy rows with this round's), so
    the run's share is mixing_ratio to the nearest row (17 + 17 pairs at 0.25: 6 then 5, 11 of
    45; drawing each round to its own nearest row gave 6 + 6, 12 of 46 = 26.1%). A round with
    no on-policy rows trains on offline rows alone, as many as mixing_ratio of its prompts
    would give (not counted in the run's share)."""
    if not n_used:
        return offline_count(n_prompts, mixing_ratio)
    return max(0, offline_count(run_onpolicy + n_used, mixing_ratio) - run_offline)


def exact_match_reward(completion: str, reference: str) -> float:
    """1 when the completion's '#### n' equals the reference's, else 0 (malformed: 0)."""
    want, got = numeric_answer(reference), numeric_answer(completion)
    return 1.0 if want is not None and got is not None and abs(want - got) < 1e-9 else 0.0


def choice_reward(completion: str, reference: str) -> float:
    """1 when the completion names the correct choice text first among its words."""
    norm = lambda s: re.sub(r"\s+", " ", s.strip().lower())  # noqa: E731
    c, r = norm(completion), norm(reference)
    return 1.0 if r and (c == r or c.startswith(r) or f" {r}" in f" {c[:len(r) + 40]}") else 0.0


REWARDS = {"exact_match": exact_match_reward, "choice": choice_reward}


def judge_rewards(judge, prompts: list[str], samples: list[list[str]]) -> list[list[float]]:
    """Rate every completion with the LLM judge (FastChat's single-v1 prompt): rating / 10,
    0 for a failed parse or a failed call."""
    from ..backends.client import judge_client
    from ..backends.serve import judge_endpoint
    from ..eval.judge import rate_answers
    with judge_endpoint(judge.serve, judge.base_url) as url:
        opt = judge_client(judge.model, judge.serve, url, api_key_env=judge.api_key_env,
                           concurrency=judge.concurrency, timeout=judge.timeout, max_retries=judge.max_retries)
        ratings = iter(rate_answers(opt, [(p, o) for p, outs in zip(prompts, samples) for o in outs], judge.max_tokens))
    return [[r / 10 if (r := next(ratings)) != -1 else 0.0 for _ in outs] for outs in samples]


def score_samples(references: list[str], samples: list[list[str]], reward: str,
                  judged: list[list[float]] | None = None) -> list[list[float]]:
    """The reward of every sample: the judge's ratings when given, else the verifier's."""
    if judged is not None:
        return judged
    return [[REWARDS[reward](o, ref) for o in outs] for ref, outs in zip(references, samples)]


def build_pairs(prompts: list[str], references: list[str], samples: list[list[str]], reward: str,
                min_gap: float, rewards: list[list[float]] | None = None) -> tuple[list[dict], list[float], int]:
    """Best vs worst completion per prompt; returns (pairs, all rewards, dropped). `rewards`
    gives precomputed scores (the judge's) instead of a verifier."""
    pairs, all_rewards, dropped = [], [], 0
    scores = score_samples(references, samples, reward, rewards)
    for prompt, outs, row in zip(prompts, samples, scores):
        scored = list(zip(row, outs))
        all_rewards += [s for s, _ in scored]
        best = max(scored, key=lambda x: x[0])
        worst = min(scored, key=lambda x: x[0])
        gap = best[0] - worst[0]
        if gap <= 0 or gap < min_gap or best[1].strip() == worst[1].strip() or not worst[1].strip():
            dropped += 1
            continue
        pairs.append({"prompt": prompt, "chosen": best[1], "rejected": worst[1],
                      "reward_chosen": best[0], "reward_rejected": worst[0]})
    return pairs, all_rewards, dropped


def select_bc(prompts: list[str], samples: list[list[str]], rewards: list[list[float]], min_reward: float,
              per_prompt: int = 1) -> tuple[list[dict], int]:
    """Filtered behaviour cloning (best-of-K): per prompt, its `per_prompt` highest-reward
    samples whose reward reaches `min_reward`, distinct and non-empty, best first (ties in
    sampling order). Returns (rows {prompt, chosen, reward, sample}, prompts with none kept)."""
    rows, empty = [], 0
    for prompt, outs, scores in zip(prompts, samples, rewards):
        kept: list[str] = []
        for j in sorted(range(len(outs)), key=lambda j: -scores[j]):     # stable: ties keep their order
            if scores[j] < min_reward or len(kept) == per_prompt:
                break
            if outs[j].strip() and outs[j].strip() not in kept:
                kept.append(outs[j].strip())
                rows.append({"prompt": prompt, "chosen": outs[j], "reward": scores[j], "sample": j})
        empty += not kept
    return rows, empty


def sample_completions(model_path: str, prompts: list[str], k: int, max_new_tokens: int, temperature: float,
                       seed: int, backend: str = "hf") -> list[list[str]]:
    """k completions per prompt from the policy at model_path (chat template when it has one)."""
    from ..backends.generate import generator
    opt, sampling = _sampling(k, max_new_tokens, temperature, seed, backend)
    gen = generator(model_path, opt)
    params = [sampling] * len(prompts)
    try:
        if getattr(getattr(gen, "tok", None), "chat_template", None) or backend != "hf":
            return gen.chat([[{"role": "user", "content": q}] for q in prompts], params, desc="on-policy samples")
        return gen.complete(prompts, params, desc="on-policy samples")
    finally:
        gen.close()


def _sampling(k: int, max_new_tokens: int, temperature: float, seed: int, backend: str):
    """(generator options, per-prompt sampling) of on-policy sampling: one source for what
    sample_completions() does and what its cache key records."""
    from ..backends.generate import GenOptions, Sampling
    return (GenOptions(backend=backend, seed=seed, batch_rows=8 * k),
            Sampling(max_new_tokens=max_new_tokens, n=k, temperature=temperature, top_k=0, top_p=1.0))


def sampling_request(policy: str, prompts: list[str], k: int, max_new_tokens: int, temperature: float, seed: int,
                     backend: str) -> dict[str, Any]:
    """Everything the samples depend on: the policy's weights, config and tokenizer (its
    template), the prompts, K, each sampling setting, the seed, the backend and device."""
    import torch
    opt, sampling = _sampling(k, max_new_tokens, temperature, seed, backend)
    return {"policy": model_fingerprint(policy), "prompts": prompts, "k": k, "max_new_tokens": max_new_tokens,
            "temperature": temperature, "top_k": sampling.top_k, "top_p": sampling.top_p, "seed": seed,
            "backend": backend, "batch_rows": opt.batch_rows, "device": "cuda" if torch.cuda.is_available() else "cpu"}


def cached_samples(folder: str | Path, policy: str, prompts: list[str], k: int, max_new_tokens: int,
                   temperature: float, seed: int, backend: str = "hf") -> tuple[list[list[str]], Path, bool]:
    """sample_completions() through a cache keyed by sampling_request(): (samples, the file
    holding them, whether it was reused). Sampling is seeded, so the file is what sampling
    would give again; a second arm reads the first arm's samples instead of redrawing them."""
    from ..caches import Store
    request = sampling_request(policy, prompts, k, max_new_tokens, temperature, seed, backend)
    key = content_hash(request, 20)
    store = Store("onpolicy-samples", Path(folder))
    rec = store.get(key, lambda p: read("onpolicy_samples", p), lambda r: isinstance(r, dict) and r.get("request") == request
                    and len(r.get("samples") or []) == len(prompts))
    if rec is not None:
        return rec["samples"], store.path(key), True
    samples = sample_completions(policy, prompts, k, max_new_tokens, temperature, seed, backend=backend)
    path = store.put(key, lambda tmp: write("onpolicy_samples", tmp, {"key": key, "request": request, "samples": samples}))
    return samples, path, False


def onpolicy_config_hash(variant: Variant, base_model: str, rows: list[Row]) -> str:
    """The variant's config, the base's weights and the rows' content (not where they were read)."""
    return variant_config_hash(variant, model_fingerprint(base_model), content_hash([r.data for r in rows]))


def train_onpolicy(variant: Variant, base_model: str, rows: list[Row], out_dir: str | Path, cache: ReferenceCache,
                   *, seed: int = 0, tokenizer=None, progress: bool = True, data_info: dict | None = None,
                   samples_dir: str | Path | None = None) -> TrainResult:
    spec = variant.onpolicy
    bc = spec.objective == "filtered_bc"
    out_dir = Path(out_dir)
    samples_dir = Path(samples_dir) if samples_dir is not None else out_dir.parent / "_onpolicy_samples"
    # prompts and offline rows from two streams: the prompts of every round depend on the
    # data and the seed alone, the same for both objectives
    prompt_rng, mix_rng = random.Random(seed), random.Random(f"{seed}:offline")
    offline = [r.data for r in rows]
    items = [(r["prompt"], r["chosen"]) for r in offline if isinstance(r.get("prompt"), str)
             and isinstance(r.get("chosen"), str)]
    if not items:
        raise UserError(f"variant {variant.name}: on-policy training needs rows with string prompt and chosen "
                        f"(the reference answer the verifier checks)")
    # a round trains on all of its fresh pairs (no held-out split of them)
    per_round = variant.model_copy(update={"onpolicy": None, "max_steps": spec.steps_per_round, "heldout_pairs": 0})
    policy, rounds, result, sample_files, round_meta = base_model, [], None, {}, {}
    n_onpolicy_run, n_offline_run, t_start = 0, 0, time.time()
    for r in range(1, spec.rounds + 1):
        batch = prompt_rng.sample(items, min(spec.prompts or len(items), len(items)))
        prompts, refs = [p for p, _ in batch], [c for _, c in batch]
        samples, sample_files[r], cached = cached_samples(samples_dir, policy, prompts, spec.samples,
                                                          spec.max_new_tokens, spec.temperature, seed + r,
                                                          spec.backend)
        judged = judge_rewards(spec.judge, prompts, samples) if spec.reward == "judge" else None
        rewards = score_samples(refs, samples, spec.reward, judged)
        flat = [x for row in rewards for x in row]
        if bc:
            used, dropped = select_bc(prompts, samples, rewards, spec.min_reward, spec.bc_per_prompt)
        else:
            used, _, dropped = build_pairs(prompts, refs, samples, spec.reward, spec.min_gap, rewards)
        # offline rows make up mixing_ratio of the run's rows to the nearest row: this round
        # draws what brings the run's offline total to offline_count(on-policy rows so far). A
        # round whose policy found nothing to train on trains on offline rows alone (as many as
        # mixing_ratio of its prompts would give), recorded as such and outside the run's share,
        # so a weak start still moves
        n_off = offline_for_round(len(used), len(prompts), n_onpolicy_run, n_offline_run, spec.mixing_ratio)
        mixed = mix_rng.sample(offline, min(n_off, len(offline)))
        if used:
            n_onpolicy_run += len(used)
            n_offline_run += len(mixed)
        what = "samples passed the filter" if bc else "pairs"
        if not used and mixed:
            log.warning("on-policy round %d: 0 %s; training on %d offline rows only", r, what, len(mixed))
        info = {"round": r, "objective": spec.objective, "policy": policy, "samples_key": sample_files[r].stem,
                "samples_cached": cached, "n_prompts": len(prompts), "n_samples": len(flat),
                "mean_reward": sum(flat) / len(flat), "min_reward": spec.min_reward,
                "share_correct": sum(x >= spec.min_reward for x in flat) / len(flat),
                "n_pairs": 0 if bc else len(used), "n_bc": len(used) if bc else 0, "dropped": dropped,
                "offline_mixed": len(mixed),
                "offline_share": len(mixed) / (len(mixed) + len(used)) if (used or mixed) else 0.0,
                "trained": bool(used or mixed)}
        log.info("on-policy round %d (%s): mean reward %.3f, %.0f%% of samples reach %.2f, %d %s (%d prompts "
                 "without), %d offline mixed", r, spec.objective, info["mean_reward"], 100 * info["share_correct"],
                 spec.min_reward, len(used), what, dropped, len(mixed))
        rounds.append(info)
        if not used and not mixed:
            log.warning("on-policy round %d: nothing to train on; keeping the current policy", r)
            continue
        keys = ("prompt", "chosen") if bc else ("prompt", "chosen", "rejected")
        data = tokenize_rows(tokenizer, [Row({k: p[k] for k in keys}, f"round{r}#{i}")
                                         for i, p in enumerate(used + mixed)],
                             variant.max_length, variant.max_prompt_length, skip_invalid=True,
                             source=f"on-policy round {r}", chosen_only=bc)
        round_dir = out_dir.with_name(f"{out_dir.name}.round{r}")
        result = train_variant(per_round, policy, data, round_dir, cache, seed=seed + r, tokenizer=tokenizer,
                               progress=progress, reference_model=base_model, data_info=data_info)
        m = result.metadata
        round_meta[r] = m
        info.update({"steps": m.get("steps"), "seconds": m.get("seconds"), "logps_summary": m.get("logps_summary"),
                     "data_fingerprint": (m.get("data") or {}).get("fingerprint"),
                     "train_tokens_per_second": m.get("train_tokens_per_second")})
        if is_main_process():
            write("onpolicy_round", CheckpointFiles(round_dir).onpolicy_round(bc),
                  {"round": r, "samples_key": info["samples_key"], "rewards": rewards,
                   "bc" if bc else "pairs": used, "offline": len(mixed)})
        policy = str(round_dir)
    if result is None:
        raise UserError(f"variant {variant.name}: no on-policy round had anything to train on (0 "
                        f"{'samples reached min_reward' if bc else 'pairs'} and no offline rows mixed: "
                        f"{'lower min_reward' if bc else 'lower min_gap'}, raise samples or set mixing_ratio)")
    meta: dict[str, Any] = read("evalkit", CheckpointFiles(policy).metadata)
    meta.update({"base_model": base_model, "reference_model": None if bc else base_model,
                 "onpolicy": spec.model_dump(), "rounds": rounds,
                 "hyperparameters": variant.model_dump(mode="json", by_alias=True),
                 "config_hash": onpolicy_config_hash(variant, base_model, rows)})
    meta.update(run_record(list(round_meta.values()), rounds, data_info, n_onpolicy_run, n_offline_run,
                           time.time() - t_start))
    if is_main_process():      # one process writes; the others wait below
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(policy, tmp)
        # every round's samples, byte for byte as cached: what each round drew from
        for r, f in sample_files.items():
            CheckpointFiles(tmp).onpolicy_samples(r).parent.mkdir(exist_ok=True)
            shutil.copyfile(f, CheckpointFiles(tmp).onpolicy_samples(r))
        write("evalkit", CheckpointFiles(tmp).metadata, meta)
        swap_in(tmp, out_dir)
    wait_for_everyone()
    return TrainResult(out_dir, meta, result.metrics)


def run_record(metas: list[dict], rounds: list[dict], data_info: dict | None, n_onpolicy: int, n_offline: int,
               seconds: float) -> dict[str, Any]:
    """The top-level fields of an on-policy evalkit.json, over every round that trained (the
    last round's own record would describe that round only): steps and micro-batches summed,
    the run's rows and offline share, log-probs per round (each round's own rows, start under
    the policy that sampled them; no whole-run number, the rounds train on different rows),
    seconds of the whole run (sampling included), warnings of every round. Throughput stays
    per round (rounds[].train_tokens_per_second)."""
    from ..schema import summary_by_part
    tokenization: dict[str, int] = {}
    for m in metas:
        for k, v in (m.get("tokenization") or {}).items():
            tokenization[k] = tokenization.get(k, 0) + v
    trained = [r for r in rounds if r.get("trained")]
    return {
        "steps": sum(m.get("steps") or 0 for m in metas),
        "micro_batches": sum(m.get("micro_batches") or 0 for m in metas),
        "data": {**(data_info or {}), "n_pairs": sum((m.get("data") or {}).get("n_pairs", 0) for m in metas),
                 "n_onpolicy": n_onpolicy, "n_offline": n_offline,
                 "offline_share": n_offline / (n_onpolicy + n_offline) if n_onpolicy + n_offline else 0.0,
                 "n_offline_only_rounds": sum(1 for r in trained if not (r["n_pairs"] or r["n_bc"])),
                 "n_heldout": 0, "n_skipped": sum((m.get("data") or {}).get("n_skipped", 0) for m in metas)
                 + (data_info or {}).get("n_skipped_building", 0),
                 "fingerprint": content_hash([(m.get("data") or {}).get("fingerprint") for m in metas], 16),
                 "per_round": [{"round": r["round"], "fingerprint": r.get("data_fingerprint"),
                                "n_pairs": r["n_pairs"] + r["n_bc"] + r["offline_mixed"]} for r in trained]},
        "tokenization": tokenization,
        "logps_summary": summary_by_part([r.get("logps_summary") for r in trained], "round",
                                         [r["round"] for r in trained]),
        "post_edit": {**(metas[-1].get("post_edit") or {}), "round": trained[-1]["round"]},
        "warnings": [w for m in metas for w in (m.get("warnings") or [])],
        "seconds": round(seconds, 2),
        "train_tokens_per_second": None, "train_processed_tokens_per_second": None,
    }
