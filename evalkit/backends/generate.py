"""Generation: a model continues prompts or chats (hf | vllm | api).

`generator(model, opt)` returns a `Generator`: batched sampling with per-row token budgets,
stop strings and a seed; MT-Bench answers, contamination neighbours and on-policy sampling
use it. `Sampling` says how one prompt is continued, `GenOptions` which backend and how.

vLLM is an optional extra (`pip install 'evalkit[vllm]'`, CUDA machines), imported only when
asked for; `require_vllm()` is the one place that says so when it is missing.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..progress import bar as progress_bar
from .client import ChatClient, ClientOptions
from .models import load_model

log = logging.getLogger("evalkit")

BACKENDS = ("hf", "vllm", "api")


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise UserError("backend vllm is not installed: pip install 'evalkit[vllm]' (CUDA machines only)")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")


@dataclass(frozen=True)
class Sampling:
    """How one prompt is continued. temperature 0 is greedy; top_k 0 means no top-k cut."""
    max_new_tokens: int
    n: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()


@dataclass
class GenOptions:
    backend: str = "hf"
    dtype: str = "auto"
    seed: int = 0
    batch_rows: int = 64           # hf: sequences per generate call (prompts x n)
    base_url: str | None = None    # api
    api_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    api_server: str = "openai"     # api: which sampling fields the server takes (api_sampling_fields)
    extra: dict[str, Any] = field(default_factory=dict)


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


class Generator:
    """Continue prompts. `complete` takes raw text; `chat` applies the model's chat template
    (add_generation_prompt) first. Both return, per prompt, its n continuations."""

    def complete(self, prompts: list[str], params: list[Sampling], *, add_special_tokens: bool = True,
                 include_prompt: bool = False, desc: str = "generate", progress: bool = True) -> list[list[str]]:
        raise NotImplementedError

    def chat(self, conversations: list[list[dict]], params: list[Sampling], *, desc: str = "generate",
             progress: bool = True) -> list[list[str]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HFGenerator(Generator):
    """In-process transformers. Rows are sorted by budget so a batch runs to about its own
    rows' budgets; each row is cut at its own budget and stop strings; the RNG is reseeded
    per batch from one seeded stream, so results do not depend on what ran before."""

    def __init__(self, model_or_path, tokenizer=None, opt: GenOptions | None = None):
        self.opt = opt or GenOptions()
        if isinstance(model_or_path, str):
            self.model, self.tok = load_model(model_or_path, dtype=self.opt.dtype)
            self.name = model_or_path
        else:
            self.model, self.tok, self.name = model_or_path, tokenizer, getattr(model_or_path, "name_or_path", "model")
        self.device = next(self.model.parameters()).device

    def chat(self, conversations, params, *, desc="generate", progress=True):
        if not getattr(self.tok, "chat_template", None):
            raise UserError(f"{self.name}: the tokenizer has no chat template; chat generation needs one")
        prompts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        return self.complete(prompts, params, add_special_tokens=False, desc=desc, progress=progress)

    def complete(self, prompts, params, *, add_special_tokens=True, include_prompt=False, desc="generate",
                 progress=True):
        import torch
        from transformers import GenerationConfig

        tok = self.tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        # stop where the model's own generation_config says (it may list several ids)
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = eos if eos is not None else tok.eos_token_id
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
        ids = [tok(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        out: list[list[str]] = [[] for _ in prompts]
        gen = torch.Generator(device="cpu").manual_seed(self.opt.seed)
        # 1. rows that sample alike, ordered by budget then length (neighbours share a batch)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault((p.n, p.temperature, p.top_k, p.top_p, p.min_new_tokens), []).append(i)
        batches = []
        for (n, temp, top_k, top_p, min_new), rows in groups.items():
            rows.sort(key=lambda i: (params[i].max_new_tokens, len(ids[i])))
            per_call = max(1, self.opt.batch_rows // n)
            chunk: list[int] = []
            for i in rows:
                # a call runs every row to its largest budget: with many samples a prompt (a full
                # batch on their own) a new budget starts a new call, so no row runs past its own
                if chunk and (len(chunk) == per_call or (n >= 16 and params[i].max_new_tokens
                                                         != params[chunk[-1]].max_new_tokens)):
                    batches.append((chunk, n, temp, top_k, top_p, min_new))
                    chunk = []
                chunk.append(i)
            if chunk:
                batches.append((chunk, n, temp, top_k, top_p, min_new))
        bar = progress_bar(total=len(prompts), desc=desc, enabled=progress)
        for chunk, n, temp, top_k, top_p, min_new in batches:
            width = max(len(ids[i]) for i in chunk)
            budget = max(params[i].max_new_tokens for i in chunk)
            x = torch.full((len(chunk), width), pad, dtype=torch.long)
            m = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):  # left padding for generation
                x[r, width - len(ids[i]):] = torch.tensor(ids[i])
                m[r, width - len(ids[i]):] = 1
            # 2. generate() samples with torch's global RNG: seed it from our stream
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            sample = temp > 1e-4
            cfg = GenerationConfig(do_sample=sample, max_new_tokens=budget, min_new_tokens=min_new or None,
                                   num_return_sequences=n, pad_token_id=pad, eos_token_id=eos,
                                   **({"temperature": temp, "top_k": top_k, "top_p": top_p} if sample else {}))
            with torch.no_grad():
                prefix = self._shared_prefix(x, m, n) if n > 1 else None
                if prefix is None:
                    seqs = self.model.generate(input_ids=x.to(self.device), attention_mask=m.to(self.device),
                                               generation_config=cfg)
                else:   # n samples of a prompt continue one prefill of it
                    cfg.num_return_sequences = 1
                    seqs = self.model.generate(input_ids=x.repeat_interleave(n, 0).to(self.device),
                                               attention_mask=m.repeat_interleave(n, 0).to(self.device),
                                               generation_config=cfg, **prefix)
            new = seqs[:, width:].cpu()
            # 3. each row to its own budget, EOS and stop strings
            for r, i in enumerate(chunk):
                for row in new[r * n:(r + 1) * n, :params[i].max_new_tokens].tolist():
                    cut = next((j for j, t in enumerate(row) if t in eos_ids), None)
                    if cut is not None and not include_prompt:
                        row = row[:cut]
                    text = tok.decode((ids[i] if include_prompt else []) + row, skip_special_tokens=True)
                    out[i].append(_cut_at_stop(text, params[i].stop) if params[i].stop else text)
            bar.update(len(chunk))
        bar.close()
        return out

    def _shared_prefix(self, x, m, n):
        """The KV cache of every prompt but its last token, computed once per prompt and
        repeated for its n samples: the prompt's forward pass is not redone n times (with
        100 samples of a 40%-of-the-text prefix that is close to half of the work). None
        where the model's cache cannot be repeated per row (then generate() prefills each
        sample itself) or the prompt is one token."""
        from ..prefix import cache_argument, prefill, repeated
        name = cache_argument(self.model)
        if x.shape[1] < 2 or name is None:
            return None
        x, m = x[:, :-1].to(self.device), m[:, :-1].to(self.device)
        pos = (m.long().cumsum(-1) - 1).clamp(min=0)   # left padding: positions start at each row's first token
        _, cache = prefill(self.model, x, m, pos, last_logits_only=True)
        return None if cache is None else {name: repeated(cache, n)}


class VLLMGenerator(Generator):
    def __init__(self, model: str, opt: GenOptions):
        require_vllm()
        from vllm import LLM
        self.opt = opt
        self.llm = LLM(model=model, dtype=opt.dtype, seed=opt.seed, **opt.extra)

    def _params(self, params: list[Sampling]):
        from vllm import SamplingParams
        return [SamplingParams(n=p.n, temperature=p.temperature, top_k=p.top_k if p.top_k > 0 else -1, top_p=p.top_p,
                               max_tokens=p.max_new_tokens, min_tokens=p.min_new_tokens, stop=list(p.stop) or None,
                               seed=self.opt.seed + i) for i, p in enumerate(params)]

    def complete(self, prompts, params, *, add_special_tokens=True, include_prompt=False, desc="generate",
                 progress=True):
        from vllm.inputs import TokensPrompt
        tok = self.llm.get_tokenizer()
        inputs = [TokensPrompt(prompt_token_ids=tok(p, add_special_tokens=add_special_tokens)["input_ids"])
                  for p in prompts]
        outs = self.llm.generate(inputs, self._params(params), use_tqdm=progress)
        return [[(p if include_prompt else "") + c.text for c in o.outputs] for p, o in zip(prompts, outs)]

    def chat(self, conversations, params, *, desc="generate", progress=True):
        outs = self.llm.chat(conversations, self._params(params), use_tqdm=progress)
        return [[c.text for c in o.outputs] for o in outs]


API_SERVERS = ("openai", "vllm", "transformers")


def api_sampling_fields(p: Sampling, seed: int, server: str) -> dict[str, Any]:
    """The request fields, besides temperature and max_tokens, that carry `p` and `seed` to
    an OpenAI-compatible server of kind `server`; a setting it cannot honour is a UserError
    before any call, never dropped.

      openai        top_p, seed (OpenAI's own parameters); top_k > 0 or min_new_tokens > 0
                    cannot be sent
      vllm          + top_k (-1: no cut) and min_tokens, vLLM's extra sampling fields
      transformers  + generation_config, a JSON of {do_sample, top_k, min_new_tokens}:
                    `transformers serve` refuses unknown fields and reads its generation
                    settings there (without do_sample it samples only where the model's own
                    generation_config says so, whatever the temperature)
    """
    if server not in API_SERVERS:
        raise UserError(f"unknown api server kind {server!r} (use {', '.join(API_SERVERS)})")
    fields: dict[str, Any] = {"top_p": p.top_p, "seed": seed}
    if server == "vllm":
        fields.update(top_k=p.top_k if p.top_k > 0 else -1, min_tokens=p.min_new_tokens)
    elif server == "transformers":
        fields["generation_config"] = json.dumps({"do_sample": p.temperature > 1e-4, "top_k": p.top_k,
                                                  "min_new_tokens": p.min_new_tokens or None})
    else:
        unsent = [f"{k} {v}" for k, v in (("top_k", p.top_k), ("min_new_tokens", p.min_new_tokens)) if v > 0]
        if unsent:
            raise UserError(f"backend api: {' and '.join(unsent)} cannot be sent to an OpenAI endpoint (OpenAI has "
                            f"no such parameter); use backend hf or vllm")
    return fields


class APIGenerator(Generator):
    """An OpenAI-compatible server (`vllm serve`, `transformers serve`, a hosted API). Each of
    a prompt's n samples is its own request, with its own seed (opt.seed + the request's
    number, in prompt order): reruns ask for the same samples."""

    def __init__(self, model: str, opt: GenOptions):
        if not opt.base_url:
            raise UserError("backend api needs a base_url (an OpenAI-compatible server, e.g. `vllm serve`)")
        self.opt = opt
        self.client_opt = ClientOptions(model=opt.api_model or model, base_url=opt.base_url,
                                        api_key_env=opt.api_key_env, concurrency=opt.concurrency)

    def chat(self, conversations, params, *, desc="generate", progress=True):
        starts = [0]
        for p in params:
            starts.append(starts[-1] + p.n)
        fields = [[api_sampling_fields(p, self.opt.seed + starts[i] + j, self.opt.api_server) for j in range(p.n)]
                  for i, p in enumerate(params)]      # every setting checked before the first call

        async def go():
            client = ChatClient(self.client_opt)
            bar = progress_bar(total=len(conversations), desc=desc, enabled=progress)

            async def one(conv, p, extra):
                texts = []
                for body in extra:
                    reply = await client.chat(conv, temperature=p.temperature, max_tokens=p.max_new_tokens,
                                              logprobs=False, body_extra=body)
                    texts.append(_cut_at_stop(reply.text, p.stop) if p.stop else reply.text)
                bar.update(1)
                return texts
            try:
                return await asyncio.gather(*(one(c, p, f) for c, p, f in zip(conversations, params, fields)))
            finally:
                bar.close()
                await client.close()
        return [list(x) for x in asyncio.run(go())]

    def complete(self, prompts, params, *, add_special_tokens=True, include_prompt=False, desc="generate",
                 progress=True):
        raise UserError("backend api generates chat turns only here; use hf or vllm for raw-text continuations")


def generator(model, opt: GenOptions, tokenizer=None) -> Generator:
    """A Generator for `model`: a hub id or a local directory (any backend), or, for hf, a
    model already loaded with its `tokenizer`."""
    check_backend(opt.backend)
    if opt.backend == "hf":
        return HFGenerator(model, tokenizer, opt)
    if opt.backend == "vllm":
        return VLLMGenerator(model, opt)
    return APIGenerator(model, opt)
