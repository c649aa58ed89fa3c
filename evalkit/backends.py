"""Every way evalkit makes a model write text, in one place.

- `Generator` (hf | vllm | api): batched sampling with per-row token budgets, stop strings
  and a seed; used by MT-Bench answers, contamination neighbours and on-policy sampling.
- `lm_eval_model(...)`: the lm-eval model name and arguments of each backend (leaderboard).
- `judge_endpoint(...)`: a judge at a URL, or a local model served for the run's duration.

vLLM is an optional extra (`pip install 'evalkit[vllm]'`, CUDA machines), imported only when
asked for; `require_vllm()` is the one place that says so when it is missing.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import UserError
from .progress import bar as progress_bar

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
        from .models import load_model
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
        from .prefix import cache_argument, prefill, repeated
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


class APIGenerator(Generator):
    """An OpenAI-compatible server (`vllm serve`, `transformers serve`, a hosted API)."""

    def __init__(self, model: str, opt: GenOptions):
        from .eval.judge import ClientOptions
        if not opt.base_url:
            raise UserError("backend api needs a base_url (an OpenAI-compatible server, e.g. `vllm serve`)")
        self.opt = opt
        self.client_opt = ClientOptions(model=opt.api_model or model, base_url=opt.base_url,
                                        api_key_env=opt.api_key_env, concurrency=opt.concurrency)

    def chat(self, conversations, params, *, desc="generate", progress=True):
        from .eval.judge import ChatClient

        async def go():
            client = ChatClient(self.client_opt)
            bar = progress_bar(total=len(conversations), desc=desc, enabled=progress)

            async def one(conv, p):
                texts = []
                for _ in range(p.n):
                    reply = await client.chat(conv, temperature=p.temperature, max_tokens=p.max_new_tokens,
                                              logprobs=False)
                    texts.append(_cut_at_stop(reply.text, p.stop) if p.stop else reply.text)
                bar.update(1)
                return texts
            try:
                return await asyncio.gather(*(one(c, p) for c, p in zip(conversations, params)))
            finally:
                bar.close()
                await client.close()
        return [list(x) for x in asyncio.run(go())]

    def complete(self, prompts, params, *, add_special_tokens=True, include_prompt=False, desc="generate",
                 progress=True):
        raise UserError("backend api generates chat turns only here; use hf or vllm for raw-text continuations")


def generator(model: str, opt: GenOptions) -> Generator:
    check_backend(opt.backend)
    if opt.backend == "hf":
        return HFGenerator(model, opt=opt)
    if opt.backend == "vllm":
        return VLLMGenerator(model, opt)
    return APIGenerator(model, opt)


# ---------------------------------------------------------------- lm-eval

def lm_eval_model(backend: str, model: str, *, dtype: str = "auto", device: str | None = None,
                  tensor_parallel_size: int = 1, data_parallel_size: int = 1, base_url: str | None = None,
                  api_model: str | None = None, tokenizer: str | None = None, num_concurrent: int = 1,
                  chat: bool = False, extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(lm-eval model name, model_args) for a backend."""
    check_backend(backend)
    from .models import check_model_ref, resolve_device, resolve_model
    if backend in ("hf", "vllm"):
        model = resolve_model(model)
    if backend == "hf":
        check_model_ref(model)
        return "hf", {"pretrained": model, "dtype": dtype, "device": resolve_device(device), **(extra or {})}
    if backend == "vllm":
        require_vllm()
        check_model_ref(model)
        return "vllm", {"pretrained": model, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size,
                        "data_parallel_size": data_parallel_size, **(extra or {})}
    if not base_url:
        raise UserError("backend api needs --base-url (an OpenAI-compatible server, e.g. `vllm serve`)")
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    name, url = ("local-chat-completions", f"{base}/chat/completions") if chat else \
        ("local-completions", f"{base}/completions")
    args = {"model": api_model or model, "base_url": url, "num_concurrent": num_concurrent, "max_retries": 3,
            "tokenized_requests": False}
    if tokenizer or not chat:
        args["tokenizer"] = tokenizer or model
        args["tokenizer_backend"] = "huggingface"
    return name, {**args, **(extra or {})}


# ---------------------------------------------------------------- judges

def check_endpoint(base_url: str, what: str = "base_url", timeout: float = 5.0) -> None:
    """Fail in one line, in seconds, when nothing answers at an OpenAI-compatible URL
    (before any model is loaded or any work is done)."""
    import httpx
    url = base_url.rstrip("/")
    try:
        httpx.get(url + "/models", timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout) as e:
        raise UserError(f"{what} {base_url}: nothing answers there ({type(e).__name__})") from None
    except (httpx.HTTPError, ValueError) as e:
        raise UserError(f"{what} {base_url}: not a usable URL ({e})") from None


@contextlib.contextmanager
def judge_endpoint(serve: str | None, base_url: str | None) -> Iterator[str | None]:
    """The judge's base URL: `serve` starts `transformers serve` on that local model for
    the duration (it dies with evalkit); otherwise `base_url` (None: OpenAI's)."""
    if serve:
        from .eval.serve import transformers_serve
        from .models import resolve_model
        with transformers_serve(resolve_model(serve)) as url:
            yield url
    else:
        yield base_url
