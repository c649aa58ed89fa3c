"""On-policy preference pairs with verifiable rewards (after Tajwar et al., arXiv 2404.14367).

Each round: sample K completions per prompt from the CURRENT policy, score them with a
reward (an exact-match verifier for "#### n" answers, or a choice verifier for multiple
choice), pair the best against the worst, drop pairs whose reward gap is below min_gap,
optionally mix in offline pairs, and train a few steps with the base as the reference. The
round's checkpoint becomes the next round's policy. Rewards are logged per round.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

from ..config import Variant
from ..errors import UserError
from ..rundir import atomic_write_json, read_json
from .data import Row, tokenize_rows
from .reference import ReferenceCache
from .trainer import TrainResult, train_variant, variant_config_hash

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
    """Offline pairs to add to n_onpolicy on-policy pairs so that they are mixing_ratio of
    the round's data: k / (k + n) = r  =>  k = r n / (1 - r), rounded to the nearest pair
    (exact whenever r n / (1 - r) is a whole number). No on-policy pairs: nothing to mix."""
    if not mixing_ratio or n_onpolicy <= 0:
        return 0
    return round(mixing_ratio * n_onpolicy / (1 - mixing_ratio))


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
    import asyncio

    from ..eval import judge as J
    from ..eval.mtbench import load_data
    from ..backends import judge_endpoint
    template = load_data("sample").prompts["single-v1"]
    with judge_endpoint(judge.serve, judge.base_url) as url:
        opt = J.ClientOptions(model=judge.serve or judge.model, base_url=url, api_key_env=judge.api_key_env,
                              concurrency=judge.concurrency, timeout=judge.timeout, max_retries=judge.max_retries)

        async def go():
            client = J.ChatClient(opt)
            try:
                async def rate(p, o):
                    msgs = [{"role": "system", "content": template["system_prompt"]},
                            {"role": "user", "content": template["prompt_template"].format(question=p, answer=o)}]
                    try:
                        r = J.parse_rating((await client.chat(msgs, temperature=0.0, max_tokens=judge.max_tokens)).text)
                    except J.CallFailed:
                        return 0.0
                    return r / 10 if r != -1 else 0.0
                return await asyncio.gather(*(asyncio.gather(*(rate(p, o) for o in outs))
                                              for p, outs in zip(prompts, samples)))
            finally:
                await client.close()

        return [list(x) for x in asyncio.run(go())]


def build_pairs(prompts: list[str], references: list[str], samples: list[list[str]], reward: str,
                min_gap: float, rewards: list[list[float]] | None = None) -> tuple[list[dict], list[float], int]:
    """Best vs worst completion per prompt; returns (pairs, all rewards, dropped). `rewards`
    gives precomputed scores (the judge's) instead of a verifier."""
    pairs, all_rewards, dropped = [], [], 0
    for i, (prompt, ref, outs) in enumerate(zip(prompts, references, samples)):
        if rewards is not None:
            scored = list(zip(rewards[i], outs))
        else:
            scored = [(REWARDS[reward](o, ref), o) for o in outs]
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


def sample_completions(model_path: str, prompts: list[str], k: int, max_new_tokens: int, temperature: float,
                       seed: int, backend: str = "hf") -> list[list[str]]:
    """k completions per prompt from the policy at model_path (chat template when it has one)."""
    from ..backends import GenOptions, Sampling, generator
    gen = generator(model_path, GenOptions(backend=backend, seed=seed, batch_rows=8 * k))
    params = [Sampling(max_new_tokens=max_new_tokens, n=k, temperature=temperature, top_k=0, top_p=1.0)] * len(prompts)
    try:
        if getattr(getattr(gen, "tok", None), "chat_template", None) or backend != "hf":
            return gen.chat([[{"role": "user", "content": q}] for q in prompts], params, desc="on-policy samples")
        return gen.complete(prompts, params, desc="on-policy samples")
    finally:
        gen.close()


def train_onpolicy(variant: Variant, base_model: str, rows: list[Row], out_dir: str | Path, cache: ReferenceCache,
                   *, seed: int = 0, tokenizer=None, progress: bool = True, data_info: dict | None = None) -> TrainResult:
    spec = variant.onpolicy
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    offline = [r.data for r in rows]
    items = [(r["prompt"], r["chosen"]) for r in offline if isinstance(r.get("prompt"), str)
             and isinstance(r.get("chosen"), str)]
    if not items:
        raise UserError(f"variant {variant.name}: on-policy training needs rows with string prompt and chosen "
                        f"(the reference answer the verifier checks)")
    per_round = variant.model_copy(update={"onpolicy": None, "max_steps": spec.steps_per_round})
    policy, rounds, result = base_model, [], None
    for r in range(1, spec.rounds + 1):
        batch = rng.sample(items, min(spec.prompts or len(items), len(items)))
        prompts, refs = [p for p, _ in batch], [c for _, c in batch]
        samples = sample_completions(policy, prompts, spec.samples, spec.max_new_tokens, spec.temperature,
                                     seed + r, backend=spec.backend)
        judged = judge_rewards(spec.judge, prompts, samples) if spec.reward == "judge" else None
        pairs, rewards, dropped = build_pairs(prompts, refs, samples, spec.reward, spec.min_gap, judged)
        # offline pairs make up exactly mixing_ratio of the round's data. A round whose policy
        # found no pairs at all trains on offline pairs alone (as many as mixing_ratio of its
        # prompts would give), recorded as such, so a weak start still moves
        n_off = offline_count(len(pairs) or len(prompts), spec.mixing_ratio)
        mixed = rng.sample(offline, min(n_off, len(offline)))
        if not pairs and mixed:
            log.warning("on-policy round %d: no on-policy pairs; training on %d offline pairs only", r, len(mixed))
        info = {"round": r, "policy": policy, "mean_reward": sum(rewards) / len(rewards), "n_prompts": len(prompts),
                "n_pairs": len(pairs), "dropped": dropped, "offline_mixed": len(mixed),
                "offline_share": len(mixed) / (len(mixed) + len(pairs)) if (pairs or mixed) else 0.0}
        log.info("on-policy round %d: mean reward %.3f, %d pairs (%d dropped below the gap), %d offline mixed",
                 r, info["mean_reward"], len(pairs), dropped, len(mixed))
        rounds.append(info)
        if not pairs and not mixed:
            log.warning("on-policy round %d produced no pairs; keeping the current policy", r)
            continue
        data = tokenize_rows(tokenizer, [Row({k: p[k] for k in ("prompt", "chosen", "rejected")}, f"round{r}#{i}")
                                         for i, p in enumerate(pairs + mixed)],
                             variant.max_length, variant.max_prompt_length, skip_invalid=True,
                             source=f"on-policy round {r}")
        round_dir = out_dir.with_name(f"{out_dir.name}.round{r}")
        result = train_variant(per_round, policy, data, round_dir, cache, seed=seed + r, tokenizer=tokenizer,
                               progress=progress, reference_model=base_model, data_info=data_info)
        atomic_write_json(round_dir / "onpolicy_pairs.json", {"round": r, "pairs": pairs})
        policy = str(round_dir)
    if result is None:
        raise UserError(f"variant {variant.name}: no on-policy round produced pairs (lower min_gap, raise samples)")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(policy, tmp)
    meta: dict[str, Any] = read_json(tmp / "evalkit.json")
    meta.update({"base_model": base_model, "reference_model": base_model, "onpolicy": spec.model_dump(),
                 "rounds": rounds, "hyperparameters": variant.model_dump(mode="json", by_alias=True),
                 "config_hash": variant_config_hash(variant, "onpolicy:" + base_model, str(len(rows)))})
    atomic_write_json(tmp / "evalkit.json", meta)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return TrainResult(out_dir, meta, result.metrics)
