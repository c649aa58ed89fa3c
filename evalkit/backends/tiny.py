"""The offline tiny-model kit: a small Llama, its tokenizer and its corpus, built in-process.

From a seed and nothing else it makes:
  1. a corpus the project generates (evalkit.synth): worked arithmetic, multiple choice,
     instructions, half of it in chat form, and (judge_documents > 0) MT-Bench judge chats
     that end in "Rating: [[N]]", so the model can serve as the demo's judge;
  2. a byte-level BPE tokenizer trained on it, with a chat template;
  3. a small Llama (~0.2M parameters by default), briefly pretrained on the corpus so its
     distributions are text-like rather than uniform.
The result is a normal Hugging Face directory: AutoModelForCausalLM, AutoTokenizer and
lm-eval's `hf` backend load it unchanged. `TinySpec` is its validated spec (the experiment
file's `base_model: {tiny: {...}}`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError
from ..rundir import CheckpointFiles, content_hash, read, write

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]

# One template renders a whole conversation; the prompt (add_generation_prompt) is always a
# prefix of the full text, and each assistant turn ends in EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>\n{{ m['content'] }}{{ eos_token }}"
    "{% else %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)



class TinySpec(BaseModel):
    """The offline tiny Llama built in-process (build_tiny_model)."""
    # as config.Strict: unknown keys and inf/nan are errors
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    seed: int = 0
    vocab_size: int = Field(1024, ge=300, le=32000)
    hidden_size: int = Field(64, ge=8)
    intermediate_size: int = Field(256, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    max_length: int = Field(256, ge=32, description="pretraining window")
    max_position_embeddings: int = Field(2048, ge=32, description="context the model accepts (RoPE)")
    n_documents: int = Field(3000, ge=10)
    judge_documents: int = Field(0, ge=0, description="extra chats teaching the MT-Bench judge format "
                                                      "(\"Rating: [[N]]\"); changes every number the model gives")
    pretrain_steps: int = Field(300, ge=0)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-3, gt=0)


def spec_hash(spec: dict[str, Any]) -> str:
    return content_hash(spec)


def tiny_corpus(seed: int, n_documents: int, judge_documents: int = 0) -> list[str]:
    """Raw documents plus chat-formatted ones, deterministic in `seed`; `judge_documents`
    more chats in which the assistant rates an answer as an MT-Bench judge does."""
    from .. import synth
    rng = random.Random(seed)
    n_plain = n_documents // 2
    docs = synth.plain_documents(rng, n_plain)
    for user, assistant in synth.chat_pairs(rng, n_documents - n_plain):
        docs.append(render_chat_text([{"role": "user", "content": user},
                                      {"role": "assistant", "content": assistant}]))
    if judge_documents:      # drawn from their own stream: the other documents stay as they were
        judge_rng = random.Random(f"judge-{seed}")
        for system, user, assistant in synth.judge_conversations(judge_rng, judge_documents):
            docs.append(render_chat_text([{"role": "system", "content": system}, {"role": "user", "content": user},
                                          {"role": "assistant", "content": assistant}]))
    rng.shuffle(docs)
    return docs


def render_chat_text(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The chat template rendered without a tokenizer (same text as apply_chat_template)."""
    import jinja2
    env = jinja2.Environment()
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages, bos_token=BOS, eos_token=EOS, add_generation_prompt=add_generation_prompt)


def train_tokenizer(corpus: list[str], vocab_size: int, model_max_length: int):
    """Byte-level BPE trained on `corpus`; BOS is added on encode, as Llama does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, PAD] + ROLE_TOKENS
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD, model_max_length=model_max_length)
    fast.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, spec: dict[str, Any] | None = None,
                     progress: bool = True) -> Path:
    """Build (or reuse) the tiny model at out_dir. Deterministic in spec['seed'].

    Reuse: when out_dir/tiny_spec.json records the same spec and the same builder code
    (`tiny_builder_hash`), nothing is rebuilt. The build
    happens in a temp folder that is renamed into place, so an interrupted build leaves
    nothing behind.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = TinySpec(**(spec or {})).model_dump()
    out_dir = Path(out_dir)
    marker = CheckpointFiles(out_dir).tiny_spec
    if marker.exists():
        try:
            recorded = read("tiny_spec", marker)
            if recorded.get("spec") == spec and recorded.get("builder") == tiny_builder_hash():
                return out_dir
        except UserError:
            pass
    t0 = time.time()
    # 1. corpus and tokenizer
    corpus = tiny_corpus(spec["seed"], spec["n_documents"], spec["judge_documents"])
    tok = train_tokenizer(corpus, spec["vocab_size"], spec["max_position_embeddings"])
    # 2. model, seeded
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"], num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"], num_key_value_heads=spec["num_heads"],
        max_position_embeddings=spec["max_position_embeddings"], tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, rms_norm_eps=1e-5)
    torch.manual_seed(spec["seed"])
    model = LlamaForCausalLM(config)
    # 3. short pretraining on the packed corpus
    _pretrain(model, tok, corpus, spec, progress)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, max_new_tokens=128)
    # 4. save atomically: temp dir, then rename
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        write("tiny_spec", CheckpointFiles(tmp).tiny_spec, {
            "spec": spec, "builder": tiny_builder_hash(), "n_parameters": n_params,
            "build_seconds": round(time.time() - t0, 2)})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def tiny_is_built(out_dir: str | Path, spec: dict[str, Any]) -> bool:
    """out_dir holds the tiny model of `spec` made by today's builder code (what
    build_tiny_model checks before rebuilding), read without importing torch."""
    try:
        recorded = read("tiny_spec", CheckpointFiles(out_dir).tiny_spec)
    except UserError:
        return False
    return recorded.get("spec") == TinySpec(**spec).model_dump() and recorded.get("builder") == tiny_builder_hash()


def tiny_builder_hash() -> str:
    """The tiny model's builder code by content (the functions that make its corpus,
    tokenizer and weights, the chat template, and the corpus generator module): an edit to
    them rebuilds cached tiny models; an edit elsewhere in this module does not."""
    import inspect

    from .. import synth
    h = hashlib.sha256(Path(synth.__file__).read_bytes())
    for fn in (tiny_corpus, render_chat_text, train_tokenizer, build_tiny_model, _pretrain):
        h.update(inspect.getsource(fn).encode())
    h.update(json.dumps([CHAT_TEMPLATE, BOS, EOS, PAD]).encode())
    return h.hexdigest()[:16]


def _pretrain(model, tok, corpus: list[str], spec: dict[str, Any], progress: bool) -> None:
    import torch

    from ..progress import bar as progress_bar

    steps, seq, bs = spec["pretrain_steps"], spec["max_length"], spec["batch_size"]
    if steps == 0:
        return
    ids: list[int] = []
    for enc in tok(corpus, add_special_tokens=False)["input_ids"]:
        ids.extend([tok.bos_token_id] + enc + [tok.eos_token_id])
    stream = torch.tensor(ids, dtype=torch.long)
    n_windows = max(1, len(stream) - seq - 1)
    gen = torch.Generator().manual_seed(spec["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=spec["learning_rate"], weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    bar = progress_bar(range(steps), desc="pretrain tiny model", enabled=progress)
    for _ in bar:
        starts = torch.randint(0, n_windows, (bs,), generator=gen)
        batch = torch.stack([stream[s:s + seq] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # drawn with the bar, not per step
    model.eval()
