"""Preference data: load rows, check them, tokenize pairs, batch them.

Formats (as TRL names them):
  standard        {"prompt": str, "chosen": str, "rejected": str}
  conversational  {"prompt": [messages], "chosen": [messages], "rejected": [messages]}
                  (without "prompt", the shared leading messages are the prompt)
Sources: JSONL, JSON (a list of rows), Parquet, or a hub dataset (name, subset, split).

Token ids are TRL 1.16's on the same rows and template (see "tokenizing" below for how, and
for the two places evalkit differs on purpose). Chosen and rejected share one prompt.
Maximum-likelihood training (`loss: sft`) reads the same rows chosen-only: `rejected` may be
absent, is ignored when present, and a batch holds the chosen rows alone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import UserError
from ..rundir import read_text

log = logging.getLogger("evalkit")


@dataclass
class Row:
    data: dict[str, Any]
    where: str   # "file.jsonl:12", "file.parquet#3", "hub:org/name[train]#5"


@dataclass
class TokenizedPair:
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_prompt_len: int     # tokens of chosen_ids that belong to the prompt (masked)
    rejected_prompt_len: int
    edit_distance: int         # token edit distance between the two completions
    where: str

    @property
    def chosen_len(self) -> int:
        return len(self.chosen_ids) - self.chosen_prompt_len

    @property
    def rejected_len(self) -> int:
        return len(self.rejected_ids) - self.rejected_prompt_len

    @property
    def chosen_only(self) -> bool:
        """A maximum-likelihood example: no rejected completion (rejected_ids is empty)."""
        return not self.rejected_ids


class BadRow(ValueError):
    pass


# ---------------------------------------------------------------- loading

def read_rows(path: str | Path | None = None, hub: str | None = None, subset: str | None = None,
              split: str = "train") -> list[Row]:
    if hub:
        return _read_hub(hub, subset, split)
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object")
            rows.append(Row(obj, f"{path}:{lineno}"))
        return rows
    if suffix == ".json":
        try:
            obj = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list):
            raise UserError(f"{path}: expected a JSON list of rows")
        return [Row(r, f"{path}[{i}]") for i, r in enumerate(obj)]
    if suffix == ".parquet":
        return [Row(r, f"{path}#{i}") for i, r in enumerate(read_parquet(path))]
    raise UserError(f"{path}: unsupported data format {suffix!r} (use .jsonl, .json or .parquet)")


def read_parquet(path: str | Path) -> list[dict]:
    """A user's Parquet file as plain rows, or one line naming the file when it is not Parquet
    (a truncated or corrupt file makes pyarrow raise its own error types)."""
    import pandas as pd
    try:
        frame = pd.read_parquet(path)
    except OSError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable Parquet file ({first})") from None
    return [_plain(r) for r in frame.to_dict("records")]


def _plain(obj):
    """numpy arrays from parquet -> python lists, recursively."""
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _read_hub(name: str, subset: str | None, split: str) -> list[Row]:
    import datasets
    try:
        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # datasets raises many types for "not found / offline"
        raise UserError(f"hub dataset {name!r} ({subset or 'default'}, {split}): {str(e).splitlines()[0]}") from None
    return [Row(dict(r), f"hub:{name}[{split}]#{i}") for i, r in enumerate(ds)]


# ---------------------------------------------------------------- checking

def _messages(value: Any, field: str, default_role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        for m in value:
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise BadRow(f"{field}: each message needs string 'role' and 'content'")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise BadRow(f"{field}: expected a string or a list of messages")


def normalise_row(data: dict[str, Any], chosen_only: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected) as message lists; raises BadRow naming the field.
    chosen_only: the row's rejected completion is not read (rejected comes back [])."""
    if chosen_only:
        data = {k: v for k, v in data.items() if k != "rejected"}
        if "prompt" not in data and isinstance(data.get("chosen"), list):
            raise BadRow("prompt: missing key (a chosen-only row needs its prompt)")
    for key in ("chosen",) if chosen_only else ("chosen", "rejected"):
        if key not in data:
            raise BadRow(f"{key}: missing key")
        val = data[key]
        if val is None or (isinstance(val, str) and not val.strip()) or (isinstance(val, list) and not val):
            raise BadRow(f"{key}: empty completion")
        if not isinstance(val, (str, list)):
            raise BadRow(f"{key}: completion must be a string or a list of messages, got {type(val).__name__}")
    if "prompt" in data:
        if data["prompt"] is None or (isinstance(data["prompt"], str) and not data["prompt"].strip()):
            raise BadRow("prompt: empty prompt")
        prompt = _messages(data["prompt"], "prompt", "user")
        chosen = _messages(data["chosen"], "chosen", "assistant")
        if chosen_only:
            if not any(m["content"].strip() for m in chosen):
                raise BadRow("chosen: empty completion")
            return prompt, chosen, []
        rejected = _messages(data["rejected"], "rejected", "assistant")
    else:  # implicit prompt: the shared leading messages
        if isinstance(data["chosen"], str):
            raise BadRow("prompt: missing key")
        full_c = _messages(data["chosen"], "chosen", "assistant")
        full_r = _messages(data["rejected"], "rejected", "assistant")
        k = 0
        while k < min(len(full_c), len(full_r)) - 1 and full_c[k] == full_r[k]:
            k += 1
        if k == 0:
            raise BadRow("prompt: missing key (and chosen/rejected share no leading messages)")
        prompt, chosen, rejected = full_c[:k], full_c[k:], full_r[k:]
    for key, msgs in (("chosen", chosen), ("rejected", rejected)):
        if not any(m["content"].strip() for m in msgs):
            raise BadRow(f"{key}: empty completion")
    if chosen == rejected:
        raise BadRow("chosen: identical to rejected")
    return prompt, chosen, rejected


# ---------------------------------------------------------------- tokenizing
#
# The token ids are TRL 1.16's (DPOTrainer._prepare_dataset plus its collator), so that a
# pair scores the same here and there:
#   1. conversational: the chat template renders the prompt with the generation prompt and
#      each whole conversation, each tokenized without added special tokens (the template
#      writes BOS, the end-of-turn marks and whatever follows them; no EOS is appended);
#      no template: prompt + completion + EOS (as text, unless already there), tokenized with
#      the tokenizer's own special tokens (BOS for Llama-style tokenizers);
#   2. the prompt is the longest common token prefix of the tokenized prompt and BOTH
#      tokenized conversations, so chosen and rejected share it, and a token that straddles
#      the boundary (a merge across the last prompt character) belongs to the completion.
# Where evalkit differs on purpose: standard rows (strings) go through the chat template
# when the tokenizer has one (TRL concatenates the raw strings); and `max_prompt_length`
# keeps the END of a long prompt (the latest turns and the generation header, plus BOS),
# where TRL 1.16 has no prompt limit and cuts prompt+completion to max_length from the start.

@dataclass
class TokenizeCounts:
    """What tokenization did that a user should know about; warned once per dataset."""
    straddles: int = 0              # a token crossed the prompt/completion boundary
    prefix_fallbacks: int = 0       # the rendered prompt is not a prefix of the conversation
    truncated_prompts: int = 0      # prompts cut to max_prompt_length (the end kept)
    truncated_completions: int = 0  # completions cut to fit max_length

    def message(self, n_pairs: int, max_length: int, max_prompt_length: int) -> str | None:
        parts = []
        if self.straddles:
            parts.append(f"{self.straddles} with a token straddling the prompt/completion boundary "
                         f"(given to the completion, as TRL does)")
        if self.prefix_fallbacks:
            parts.append(f"{self.prefix_fallbacks} whose rendered prompt is not a prefix of the rendered "
                         f"conversation (the chat template renders the prompt differently alone; the "
                         f"prompt is their common token prefix, as TRL does)")
        if self.truncated_prompts:
            parts.append(f"{self.truncated_prompts} prompt(s) cut to max_prompt_length {max_prompt_length} "
                         f"(the end kept)")
        if self.truncated_completions:
            parts.append(f"{self.truncated_completions} completion(s) cut to fit max_length {max_length}")
        return f"of {n_pairs} pairs: " + "; ".join(parts) if parts else None


def _render(tok, prompt: list[dict], completions: list[list[dict]]) -> tuple[str, list[str], bool]:
    """(prompt_text, [full_text per completion], add_special_tokens) as TRL renders them."""
    if getattr(tok, "chat_template", None):
        import jinja2
        try:
            prompt_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            fulls = [tok.apply_chat_template(prompt + c, tokenize=False) for c in completions]
        except jinja2.TemplateError as e:   # the template's raise_exception: roles it does not take
            raise BadRow(f"chat template: {e}") from None
        return prompt_text, fulls, False
    # No template (a base model): plain concatenation plus EOS, as TRL does for standard rows.
    p = "\n".join(m["content"] for m in prompt)
    eos = tok.eos_token or ""
    fulls = []
    for completion in completions:
        c = "\n".join(m["content"] for m in completion)
        fulls.append(p + c + ("" if c.endswith(eos) else eos))
    return p, fulls, True


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _truncate(prompt: list[int], completion: list[int], max_length: int, max_prompt_length: int,
              bos: int | None) -> tuple[list[int], list[int]]:
    """Keep the END of the prompt (after its BOS) and the start of the completion."""
    if len(prompt) > max_prompt_length:
        head = prompt[:1] if bos is not None and prompt[:1] == [bos] and max_prompt_length > 1 else []
        prompt = head + prompt[len(prompt) - (max_prompt_length - len(head)):]
    return prompt, completion[: max(0, max_length - len(prompt))]


def edit_distance(a: list[int], b: list[int]) -> int:
    from rapidfuzz.distance import Levenshtein
    return Levenshtein.distance(a, b)


def tokenize_pair(tok, data: dict[str, Any], max_length: int, max_prompt_length: int, where: str,
                  counts: TokenizeCounts | None = None, chosen_only: bool = False) -> TokenizedPair:
    """chosen_only: the chosen completion alone, tokenized exactly as in a pair (a
    TokenizedPair with no rejected ids), for maximum-likelihood training."""
    counts = counts if counts is not None else TokenizeCounts()
    prompt, chosen, rejected = normalise_row(data, chosen_only)
    prompt_text, fulls, special = _render(tok, prompt, [chosen] if chosen_only else [chosen, rejected])
    prompt_ids = tok(prompt_text, add_special_tokens=special).input_ids
    full_ids = [tok(text, add_special_tokens=special).input_ids for text in fulls]
    n_prompt = min(common_prefix_length(prompt_ids, ids) for ids in full_ids)
    if n_prompt < len(prompt_ids):
        if all(text.startswith(prompt_text) for text in fulls):
            counts.straddles += 1
        else:
            counts.prefix_fallbacks += 1
    shared = prompt_ids[:n_prompt]
    out = {"rejected": ([], 0)}
    for key, ids in zip(("chosen", "rejected"), full_ids):
        p, c = _truncate(shared, ids[n_prompt:], max_length, max_prompt_length, tok.bos_token_id)
        if len(c) <= 0:
            raise BadRow(f"{key}: completion truncated to zero tokens (max_length {max_length}, "
                         f"prompt {len(p)} tokens)")
        if len(c) < len(ids) - n_prompt:
            counts.truncated_completions += 1
        out[key] = (p + c, len(p))
    if out["chosen"][1] < n_prompt:
        counts.truncated_prompts += 1
    (c_ids, c_p), (r_ids, r_p) = out["chosen"], out["rejected"]
    return TokenizedPair(c_ids, r_ids, c_p, r_p, 0 if chosen_only else edit_distance(c_ids[c_p:], r_ids[r_p:]), where)


class PreferenceData:
    """Tokenized pairs plus their fingerprint and edit-distance summary."""

    def __init__(self, pairs: list[TokenizedPair], n_skipped: int = 0, source: str = "",
                 counts: TokenizeCounts | None = None):
        self.pairs = pairs
        self.n_skipped = n_skipped
        self.source = source
        self.counts = counts or TokenizeCounts()

    def __len__(self) -> int:
        return len(self.pairs)

    def fingerprint(self) -> str:
        """Hash of the token ids and prompt boundaries: covers rows, tokenizer, template, lengths."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(json.dumps([p.chosen_ids, p.chosen_prompt_len, p.rejected_ids, p.rejected_prompt_len]).encode())
        return h.hexdigest()[:16]

    @property
    def chosen_only(self) -> bool:
        return bool(self.pairs) and self.pairs[0].chosen_only

    def edit_distance_summary(self) -> dict[str, float]:
        d = sorted(p.edit_distance for p in self.pairs if not p.chosen_only)
        if not d:
            return {}
        q = lambda f: d[min(len(d) - 1, int(f * len(d)))]  # noqa: E731
        return {"n": len(d), "mean": round(statistics.fmean(d), 3), "min": d[0], "p25": q(0.25),
                "median": q(0.5), "p75": q(0.75), "max": d[-1]}


def tokenize_rows(tok, rows: Iterable[Row], max_length: int, max_prompt_length: int,
                  skip_invalid: bool = False, source: str = "", chosen_only: bool = False) -> PreferenceData:
    pairs, skipped, counts = [], 0, TokenizeCounts()
    for row in rows:
        try:
            pairs.append(tokenize_pair(tok, row.data, max_length, max_prompt_length, row.where, counts, chosen_only))
        except BadRow as e:
            if not skip_invalid:
                raise UserError(f"{row.where}: {e}") from None
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d invalid row(s) (skip_invalid: true)", source or "data", skipped)
    if not pairs:
        raise UserError(f"{source or 'data'}: no valid {'examples' if chosen_only else 'preference pairs'}")
    message = counts.message(len(pairs), max_length, max_prompt_length)
    if message:  # once per dataset, with counts, not once per row
        log.warning("%s: %s", source or "data", message)
    return PreferenceData(pairs, skipped, source, counts)


# ---------------------------------------------------------------- batching

def collate(pairs: list[TokenizedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch of 2B rows, the B chosen then the B rejected, right-padded to the longest
    (B rows, the chosen alone, for chosen-only examples).

    loss_mask marks the completion tokens whose log-probs count (as next-token targets).
    """
    sides = [p for p in pairs if not p.chosen_only]
    seqs = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in sides]
    prompt_lens = [p.chosen_prompt_len for p in pairs] + [p.rejected_prompt_len for p in sides]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, n_p) in enumerate(zip(seqs, prompt_lens)):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
        loss_mask[i, n_p: len(s)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def shares_prompt(p: TokenizedPair) -> bool:
    """True when chosen and rejected start with the same prompt tokens (almost always)."""
    n = p.chosen_prompt_len
    return n == p.rejected_prompt_len and p.chosen_ids[:n] == p.rejected_ids[:n]


def collate_packed(pairs: list[TokenizedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """One row per pair, the prompt encoded once: [prompt | chosen | rejected].

    The rejected tokens attend to the prompt and to themselves but not to the chosen ones, and
    their positions restart after the prompt, so each completion sees exactly the context it
    would see alone. Needs a model that accepts a 4D attention mask and position_ids (HF
    eager/sdpa attention). Every pair must satisfy shares_prompt().

    Returns input_ids, position_ids, allowed (B, W, W) bool, and for each side the target
    token positions, the positions whose logits predict them, and a validity mask.
    """
    b = len(pairs)
    lengths = [p.chosen_prompt_len + p.chosen_len + p.rejected_len for p in pairs]
    width = max(lengths)
    c_max = max(p.chosen_len for p in pairs)
    r_max = max(p.rejected_len for p in pairs)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((b, width), dtype=torch.long)
    allowed = torch.zeros((b, width, width), dtype=torch.bool)
    out = {k: torch.zeros((b, n), dtype=torch.long) for k, n in
           (("chosen_target", c_max), ("chosen_pred", c_max), ("rejected_target", r_max), ("rejected_pred", r_max))}
    c_valid = torch.zeros((b, c_max), dtype=torch.bool)
    r_valid = torch.zeros((b, r_max), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for i, p in enumerate(pairs):
        n_p, n_c, n_r = p.chosen_prompt_len, p.chosen_len, p.rejected_len
        seq = p.chosen_ids + p.rejected_ids[n_p:]
        total = len(seq)
        input_ids[i, :total] = torch.tensor(seq)
        position_ids[i, :n_p + n_c] = torch.arange(n_p + n_c)
        position_ids[i, n_p + n_c:total] = torch.arange(n_p, n_p + n_r)
        allowed[i, :total, :total] = causal[:total, :total]
        allowed[i, n_p + n_c:total, n_p:n_p + n_c] = False   # rejected cannot see chosen
        pad = torch.arange(total, width)
        allowed[i, pad, pad] = True                          # padding rows attend to themselves only
        c_pos = torch.arange(n_p, n_p + n_c)
        r_pos = torch.arange(n_p + n_c, total)
        out["chosen_target"][i, :n_c] = c_pos
        out["chosen_pred"][i, :n_c] = c_pos - 1
        out["rejected_target"][i, :n_r] = r_pos
        r_pred = r_pos - 1
        r_pred[0] = n_p - 1                                  # the first rejected token follows the prompt
        out["rejected_pred"][i, :n_r] = r_pred
        c_valid[i, :n_c] = True
        r_valid[i, :n_r] = True
    return {"input_ids": input_ids, "position_ids": position_ids, "allowed": allowed,
            "chosen_valid": c_valid, "rejected_valid": r_valid,
            # the tokens a padded batch would hold, so throughput compares like for like
            "n_tokens": torch.tensor(sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)),
            "n_processed": torch.tensor(sum(lengths)), **out}


PACK_MAX_WIDTH = 2048  # the (B, W, W) mask grows with W^2: beyond this, pad instead


def make_batch(pairs: list[TokenizedPair], pad_id: int, pack: bool) -> dict[str, torch.Tensor]:
    """collate_packed() when asked and possible for every pair, else collate(). Chosen-only
    examples are never packed (one completion: no prompt to share)."""
    if any(p.chosen_only for p in pairs):
        if not all(p.chosen_only for p in pairs):
            raise ValueError("a batch mixes chosen-only examples and pairs")
        pack = False
    if pack and all(shares_prompt(p) for p in pairs) and \
            max(p.chosen_prompt_len + p.chosen_len + p.rejected_len for p in pairs) <= PACK_MAX_WIDTH:
        return collate_packed(pairs, pad_id)
    batch = collate(pairs, pad_id)
    batch["n_tokens"] = batch["n_processed"] = batch["attention_mask"].sum()
    return batch


def supports_packing(model) -> bool:
    """Packing needs attention that takes a 4D additive mask: HF's eager or sdpa."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("eager", "sdpa")
