"""The experiment file: pydantic models, YAML loading with line numbers, --set overrides.

Unknown keys at any level are errors naming the key path (`variants[1].betta: unknown key`),
and every error is reported as one line: `FILE:LINE: PATH: message`.
"""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

from .backends.tiny import TinySpec
from .errors import UserError
from .rundir import NAME_RE, name_problem


class Strict(BaseModel):
    # allow_inf_nan: a number like `learning_rate: .inf` or `.nan` is an error, not a NaN run
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _existing_dir(value: Optional[str]) -> Optional[str]:
    """A data_dir: 'sample' or a folder that exists (checked by `validate` and `run --dry-run`,
    not found only after training)."""
    if value is not None and value != "sample" and not Path(value).expanduser().is_dir():
        raise ValueError(f"{value}: no such directory ('sample' for the project's sample data)")
    return value


# ---------------------------------------------------------------- models

class TinyBase(Strict):
    tiny: TinySpec


class DataSource(Strict):
    """Preference pairs: a local file, a hub dataset, or pairs the project generates."""
    path: Optional[str] = None
    hub: Optional[str] = None
    subset: Optional[str] = None
    split: str = "train"
    generate: Optional[Literal["metamath_synthetic", "metamath_carried", "metamath_pairs", "arc_pairs",
                               "solutions"]] = Field(
        None, description="metamath_synthetic: Smaug's MetaMath-DPOP pairs on generated problems (one intermediate "
                          "result changed, nothing else); metamath_carried: the first result changed and carried "
                          "through to the answer; metamath_pairs: Smaug's construction on the worked-solution rows "
                          "(GSM8K question/answer, MetaMathQA query/response) of `hub` or `path`; arc_pairs: "
                          "ARC/HellaSwag-style pairs built from the multiple-choice rows of `hub` or `path`; solutions: "
                          "chosen-only rows (prompt, chosen) from the worked-solution rows of `hub` or `path`, for "
                          "loss: sft")
    n: Optional[int] = Field(None, ge=1, description="generate only: pairs to make (metamath_synthetic/"
                                                     "_carried: default 200); from rows (metamath_pairs, "
                                                     "arc_pairs, solutions): at most n, from the first rows")
    fewshot: int = Field(0, ge=0, description="arc_pairs: solved examples before each question, in the style of "
                                              "Smaug's *_DPO_FewShot sets (0: the bare question)")
    seed: int = 0
    skip_invalid: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        sources = [k for k in ("path", "hub") if getattr(self, k)]
        if self.generate in ("arc_pairs", "metamath_pairs", "solutions"):
            if len(sources) != 1:
                raise ValueError(f"{self.generate} builds from one source: give path or hub")
        elif len(sources) + bool(self.generate) != 1:
            raise ValueError("give exactly one of path, hub, generate")
        if self.n is not None and not self.generate:
            raise ValueError("n: applies to generate only (a path or hub dataset is read whole)")
        if self.fewshot and self.generate != "arc_pairs":
            raise ValueError("fewshot applies to generate: arc_pairs only")
        return self


class LoraSpec(Strict):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = ["q_proj", "v_proj"]


class StepwiseSpec(Strict):
    """sDPO (Kim et al. 2024): T steps; step t trains from M_{t-1} with M_{t-1} as the reference.

    The steps are either `chunks` equal parts of the variant's dataset, or the named
    `datasets` in order (the paper's recipe: one dataset a step, of any sizes)."""
    chunks: int = Field(2, ge=2, description="equal parts of the variant's data (not with datasets)")
    order: Literal["as_given", "easy_to_hard"] = "as_given"
    datasets: Optional[list[str]] = Field(None, min_length=2, description="one dataset a step, in this order; "
                                          "the first is the variant's data")

    @model_validator(mode="after")
    def _order_is_for_chunks(self):
        if self.datasets and self.order != "as_given":
            raise ValueError("order: easy_to_hard orders the chunks of one dataset; with datasets the steps "
                             "follow the list")
        if self.datasets and self.chunks != 2:    # 2, the default, is what a printed resolved config holds
            raise ValueError("chunks: cuts one dataset into equal steps; with datasets each dataset is a step "
                             "(give one or the other)")
        return self


class OnPolicySpec(Strict):
    """On-policy data from the current policy, scored by a verifier (evalkit.train.onpolicy).

    objective contrastive: best vs worst sample per prompt as a preference pair (the variant's
    dpo/dpop/ipo/hinge loss); filtered_bc: the best sample(s) whose reward reaches min_reward,
    trained by maximum likelihood (the variant's loss must be sft). Both sample the same way,
    so two arms with the same settings and seed share their round-1 samples."""
    objective: Literal["contrastive", "filtered_bc"] = "contrastive"
    rounds: int = Field(2, ge=1)
    samples: int = Field(4, ge=2, description="completions sampled per prompt (K)")
    prompts: Optional[int] = Field(None, ge=1, description="prompts per round (default: all)")
    reward: Literal["exact_match", "choice", "judge"] = "exact_match"
    judge: Optional["JudgeSection"] = Field(None, description="reward: judge — the LLM judge rating each completion")
    min_gap: float = Field(0.5, ge=0, description="contrastive: least reward gap of a pair")
    min_reward: float = Field(1.0, ge=0, le=1, description="the reward a sample needs to count as correct (the "
                                                          "share reported per round); filtered_bc clones only those")
    bc_per_prompt: int = Field(1, ge=1, description="filtered_bc: the best passing samples kept per prompt")
    mixing_ratio: float = Field(0.0, ge=0, lt=1, description="share of offline pairs in each round's data")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(128, ge=1)
    steps_per_round: int = Field(10, ge=1)
    backend: Literal["hf", "vllm"] = Field("hf", description="how the policy samples (vllm: a GPU extra)")

    @model_validator(mode="after")
    def _judge_when_needed(self):
        if self.reward == "judge" and self.judge is None:
            raise ValueError("reward: judge needs a judge: {model, base_url} (or serve)")
        fields = type(self).model_fields
        if self.objective == "filtered_bc" and self.min_gap != fields["min_gap"].default:
            raise ValueError("min_gap: applies to objective contrastive (pairs); filtered_bc filters by min_reward")
        if self.objective == "contrastive" and self.bc_per_prompt != fields["bc_per_prompt"].default:
            raise ValueError("bc_per_prompt: applies to objective filtered_bc")
        if self.bc_per_prompt > self.samples:
            raise ValueError(f"bc_per_prompt: {self.bc_per_prompt} is more than the {self.samples} samples per prompt")
        return self


class Variant(Strict):
    """One trained checkpoint: a loss with its hyperparameters, on a dataset."""
    name: str = Field(pattern=NAME_RE)
    data: str
    loss: Literal["dpo", "dpop", "ipo", "hinge", "sft"] = "dpo"
    beta: float = Field(0.1, gt=0)
    dpop_lambda: float = Field(50.0, ge=0, alias="lambda")
    beta_chosen: Optional[float] = Field(None, gt=0)
    beta_rejected: Optional[float] = Field(None, gt=0)
    sft_weight: float = Field(0.0, ge=0, description="+ sft_weight * NLL(y_w) on a preference loss")
    nll_reduction: Literal["token_mean", "sum"] = Field(
        "token_mean", description="NLL(y_w) of loss sft and of sft_weight: per-token mean, or summed like the "
                                  "preference losses' log-probs")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    logp_reduction: Literal["sum", "length_average"] = "sum"
    learning_rate: float = Field(5e-7, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)
    max_prompt_length: int = Field(256, ge=1)
    gradient_checkpointing: bool = False
    pack_prompt: Union[bool, Literal["auto"]] = Field(
        "auto", description="encode each pair's prompt once ([prompt|chosen|rejected] with a 4D mask); "
                            "auto: when the model's attention is eager or sdpa")
    lora: Optional[LoraSpec] = None
    stepwise: Optional[StepwiseSpec] = None
    onpolicy: Optional[OnPolicySpec] = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    seed: Optional[int] = None
    logging_steps: int = Field(5, ge=1)
    heldout_pairs: int = Field(
        0, ge=0, description="pairs (whole prompts, drawn with the seed) kept out of training; their chosen, "
                             "rejected and other prompts' responses are scored at every logging step (the "
                             "dispersion diagnostic); at most a quarter of the data; 0 (the default): none, "
                             "every pair is trained on")
    chosen_drop_warning: float = Field(
        1.0, ge=0, description="warn when mean log pi(y_w) falls this many nats below its start")

    @model_validator(mode="after")
    def _betas_paired(self):
        if (self.beta_chosen is None) != (self.beta_rejected is None):
            raise ValueError("give both beta_chosen and beta_rejected, or neither")
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be below max_length")
        return self

    @model_validator(mode="after")
    def _options_of_the_loss(self):
        # each loss declares its options in its signature (train/losses.py); a value given
        # here that the chosen loss does not take would otherwise be ignored without a word.
        # The default value is let through so a printed resolved config validates again.
        from .train.losses import loss_options
        takes = loss_options(self.loss)
        fields = type(self).model_fields
        for name in ("beta", "dpop_lambda", "beta_chosen", "beta_rejected", "label_smoothing"):
            default = fields[name].default
            if name not in takes and getattr(self, name) != default:
                key = fields[name].alias or name
                raise ValueError(f"{key}: loss {self.loss!r} does not take this option "
                                 f"(it takes: {', '.join(takes) or 'none'})")
        if self.loss == "sft":
            # maximum likelihood: no second NLL term, and its one reduction is nll_reduction
            for name in ("sft_weight", "logp_reduction"):
                if getattr(self, name) != fields[name].default:
                    raise ValueError(f"{name}: loss 'sft' does not take this option (its NLL is reduced by "
                                     f"nll_reduction)")
        elif self.nll_reduction != fields["nll_reduction"].default and not self.sft_weight:
            raise ValueError(f"nll_reduction: applies to loss sft or sft_weight > 0 (loss {self.loss!r}, "
                             f"sft_weight 0)")
        if self.onpolicy is not None:
            want = "filtered_bc" if self.loss == "sft" else "contrastive"
            if self.onpolicy.objective != want:
                raise ValueError(f"onpolicy.objective: {self.onpolicy.objective} trains "
                                 f"{'loss sft' if want == 'contrastive' else 'pairs'}, the variant has loss "
                                 f"{self.loss!r} (filtered_bc goes with loss: sft; contrastive with "
                                 f"dpo/dpop/ipo/hinge)")
        if self.loss == "sft" and self.stepwise is not None:
            raise ValueError("stepwise: sDPO steps the reference model; loss 'sft' has none")
        if self.heldout_pairs and (self.loss == "sft" or self.onpolicy is not None):
            why = ("loss sft trains on chosen responses only (no rejected side to hold out)" if self.loss == "sft"
                   else "on-policy rounds train on all their fresh pairs")
            raise ValueError(f"heldout_pairs: {why}; set heldout_pairs: 0")
        return self

    def datasets_read(self) -> list[str]:
        """The datasets this variant trains on: its data, or sDPO's datasets in step order."""
        if self.stepwise is not None and self.stepwise.datasets:
            return list(self.stepwise.datasets)
        return [self.data]


class ChatSettings(Strict):
    """How one model is prompted on the leaderboard (v2 scored chat models this way)."""
    apply_chat_template: Optional[bool] = None
    fewshot_as_multiturn: Optional[bool] = None
    system_instruction: Optional[str] = None


class LeaderboardSection(Strict):
    """Open LLM Leaderboard-style scoring through lm-eval (evalkit.eval.leaderboard)."""
    enabled: bool = True
    suite: str = "open_llm_v1"
    entries: Optional[list[str]] = Field(None, min_length=1, description="only these entries (columns) of the "
                                                                         "suite, e.g. [gsm8k]; default: all")
    backend: Literal["hf", "vllm", "api"] = "hf"
    data_dir: Optional[str] = Field(
        None, description="local data in hub schema; 'sample' generates the project's small sample data")
    limit: Optional[int] = Field(None, ge=1)

    @field_validator("data_dir")
    @classmethod
    def _data_dir_exists(cls, v):
        return _existing_dir(v)

    batch_size: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    apply_chat_template: Optional[bool] = Field(None, description="default: the suite's setting, else off")
    fewshot_as_multiturn: Optional[bool] = Field(None, description="default: the suite's setting (chat runs)")
    system_instruction: Optional[str] = Field(None, description="system prompt of chat-template runs")
    models: Optional[list[str]] = Field(None, description="the models to score (base and/or variant names); "
                                                           "default: all")
    per_model: dict[str, ChatSettings] = Field(
        {}, description="chat settings of one model (base or a variant's name), over the ones above")
    model_args: dict[str, Any] = Field(
        {}, description="extra lm-eval model arguments (as lm-eval's --model_args), over the suite's own")
    seed: int = 1234
    base_url: Optional[str] = None
    api_model: Optional[str] = None
    num_concurrent: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)


class JudgeSection(Strict):
    """An LLM judge behind any OpenAI-compatible endpoint. The key is read from api_key_env."""
    model: Optional[str] = Field(None, description="the judge model name (default: the served model)")
    base_url: Optional[str] = None
    serve: Optional[str] = Field(None, description="a local model to serve with `transformers serve` as the judge")
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)
    logprobs: bool = False
    max_tokens: int = Field(2048, ge=1)
    price_per_million: Optional[dict[str, float]] = None

    @model_validator(mode="after")
    def _model_or_serve(self):
        if not self.model and not self.serve:
            raise ValueError("give the judge's model (and base_url), or serve: a local model")
        return self


class MTBenchSection(Strict):
    """MT-Bench answers and LLM judgments (evalkit.eval.mtbench)."""
    enabled: bool = True
    questions: Optional[str] = Field(None, description="None: the 80 MT-Bench questions; 'sample'; or a JSONL")
    question_ids: Optional[list[int]] = Field(None, min_length=1, description="a fixed subset of the questions, "
                                                                             "by question_id (default: all)")
    models: Optional[list[str]] = Field(None, description="the models to score (base and/or variant names); "
                                                           "default: all")

    data_dir: Optional[str] = Field(None, description="a FastChat llm_judge/data directory")
    reference_answers: Literal["gpt-4", "gpt-4-0125-preview"] = "gpt-4"
    backend: Literal["hf", "vllm", "api"] = "hf"
    base_url: Optional[str] = None
    max_new_tokens: int = Field(1024, ge=1)
    system_prompt: Optional[str] = None
    batch_size: int = Field(8, ge=1)
    mode: Literal["single", "pairwise"] = "single"
    baseline: Optional[str] = Field(None, description="pairwise: the model label to compare against (e.g. base)")
    judge: Optional[JudgeSection] = None


class ContaminationSection(Strict):
    """The reference-based contamination check and the n-gram overlap check."""
    enabled: bool = True
    benchmarks: list[str] = ["arc_challenge", "truthfulqa", "gsm8k"]
    models: Optional[list[str]] = Field(None, description="the models to score (base and/or variant names); "
                                                           "default: every variant")
    reference: Optional[str] = Field(None, description="reference model (default: the base model)")
    control: Optional[str] = Field(None, description="clean control target (default: the reference itself)")
    data_dir: Optional[str] = Field(None, description="local data; 'sample' uses the project's sample data")
    n_examples: int = Field(100, ge=1)
    n_neighbours: int = Field(100, ge=1)
    ratio_gen: float = Field(0.4, gt=0, lt=1)
    threshold: float = Field(0.1, gt=0, le=1)
    max_tokens: int = Field(150, ge=8)
    seed: int = 0
    ngram: int = Field(13, ge=1, description="n for the training-set overlap check")
    backend: Literal["hf", "vllm"] = Field("hf", description="how the reference samples neighbours")
    method: Literal["shi2023"] = Field("shi2023", description="the original's selection, padding side, batches")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="model dtype for the check (the original scores in fp32; 'auto')")
    generation: dict[str, float] = Field(default_factory=dict,
                                         description="overrides of the reference's generation_config: "
                                                     "temperature, top_k, top_p")
    twins: str = Field("numbers", description="calibrated verdict's unseen twins: an unseen JSONL of the same kind "
                       "(needed for a verdict), or 'numbers' (always 'undecided')")
    margin: float = Field(0.05, ge=0, description="nats: a smaller membership effect reads 'not seen'")
    alpha: float = Field(0.01, gt=0, lt=1, description="permutation p-value a 'seen' verdict needs")

    @field_validator("data_dir")
    @classmethod
    def _data_dir_exists(cls, v):
        return _existing_dir(v)

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, v: list[str]):
        from .eval.benchmark_texts import benchmark_problem
        for name in v:
            problem = benchmark_problem(name)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("twins")
    @classmethod
    def _twins_readable(cls, v: str, info):
        from .eval.calibrated import twins_problem
        problem = twins_problem(v, info.data.get("n_examples", 1))   # n_examples is validated before twins
        if problem:
            raise ValueError(problem)
        return v


class EvalSection(Strict):
    leaderboard: Optional[LeaderboardSection] = None
    mtbench: Optional[MTBenchSection] = None
    contamination: Optional[ContaminationSection] = None


class ReportSection(Strict):
    enabled: bool = True
    title: Optional[str] = None
    published: Optional[str] = Field(None, description="a reference table of published numbers, e.g. smaug "
                                                      "(packaged published/<name>.yaml), shown as not measured here")

    @field_validator("published")
    @classmethod
    def _known_published(cls, v: Optional[str]):
        from .data import path as packaged
        known = sorted(p.stem for p in packaged("published").glob("*.yaml"))
        if v is not None and v not in known:
            raise ValueError(f"unknown published table {v!r} (packaged: {', '.join(known) or 'none'})")
        return v


# A hub id / local directory, or {tiny: {...}} for the offline tiny model. The discriminator
# keeps errors to the branch the user meant.
BaseModelRef = Annotated[
    Union[Annotated[str, Tag("<hub id or path>")], Annotated[TinyBase, Tag("<tiny spec>")]],
    Discriminator(lambda v: "<tiny spec>" if isinstance(v, (dict, TinyBase)) else "<hub id or path>"),
]


class Experiment(Strict):
    name: str = Field(pattern=NAME_RE)
    base_model: BaseModelRef
    seed: int = 0
    datasets: dict[str, DataSource] = {}

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, v: dict[str, DataSource]):
        for key in v:          # a dataset's name becomes a file name (generated pairs)
            problem = name_problem(key)
            if problem:
                raise ValueError(f"datasets: {problem}")
        return v
    variants: list[Variant] = []
    eval: EvalSection = EvalSection()
    report: ReportSection = ReportSection()
    # training metrics also go to these experiment trackers (through accelerate); tensorboard
    # writes event files under reports/<experiment>/tracking/
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = []

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, v: list[Variant]):
        seen = set()
        for i, x in enumerate(v):
            if x.name in seen or x.name == "base":
                raise ValueError(f"variants[{i}].name: variant name {x.name!r} is reserved or repeated")
            seen.add(x.name)
        return v

    @model_validator(mode="after")
    def _data_refs(self):
        for i, v in enumerate(self.variants):
            if v.data not in self.datasets:
                known = ", ".join(sorted(self.datasets)) or "none defined"
                raise ValueError(f"variants[{i}].data: unknown dataset {v.data!r} (datasets: {known})")
            steps = v.stepwise.datasets if v.stepwise is not None and v.stepwise.datasets else None
            if steps:
                if steps[0] != v.data:
                    raise ValueError(f"variants[{i}].stepwise.datasets: the first step's dataset is the variant's "
                                     f"data ({v.data!r}), got {steps[0]!r}")
                for d in steps:
                    if d not in self.datasets:
                        known = ", ".join(sorted(self.datasets))
                        raise ValueError(f"variants[{i}].stepwise.datasets: unknown dataset {d!r} (datasets: {known})")
        lb = self.eval.leaderboard
        labels = {"base"} | {v.name for v in self.variants}
        for name in (lb.per_model if lb is not None else {}):
            if name not in labels:
                raise ValueError(f"eval.leaderboard.per_model.{name}: no model named {name!r} "
                                 f"(base, {', '.join(sorted(labels - {'base'})) or 'no variants'})")
        for key in ("leaderboard", "mtbench", "contamination"):
            sec = getattr(self.eval, key)
            known = labels - {"base"} if key == "contamination" else labels   # a target is checked against the base
            for i, name in enumerate((sec.models if sec is not None else None) or []):
                if name not in known:
                    raise ValueError(f"eval.{key}.models[{i}]: no model named {name!r} "
                                     f"({', '.join(sorted(known)) or 'no variants'})")
        return self

    @model_validator(mode="after")
    def _known_models_installed(self):
        """A known real model (evalkit.backends.known_models) needs its package: say so before any work."""
        from .backends import known_models
        ct, mt = self.eval.contamination, self.eval.mtbench
        refs = {"base_model": self.base_model, "eval.contamination.reference": ct.reference if ct else None,
                "eval.contamination.control": ct.control if ct else None,
                "eval.mtbench.judge.serve": mt.judge.serve if mt and mt.judge else None}
        import difflib
        for key, ref in refs.items():
            if not isinstance(ref, str) or Path(ref).expanduser().exists():
                continue
            if known_models.is_known(ref):
                try:
                    known_models.check(ref)
                except UserError as e:
                    raise ValueError(f"{key}: {e}") from None
            elif "/" not in ref and (close := difflib.get_close_matches(ref, list(known_models.KNOWN), n=1,
                                                                         cutoff=0.75)):
                # a bare name that is no folder and close to a known model's: a typo, not a hub id
                raise ValueError(f"{key}: {ref!r} is neither a local folder nor a known model; did you mean "
                                 f"{close[0]!r}? (`evalkit models` lists them)")
        return self

    def scored(self, section: str) -> list[str]:
        """The model labels an eval section scores, in plan order (base first)."""
        sec = getattr(self.eval, section)
        labels = (["base"] if section != "contamination" else []) + [v.name for v in self.variants]
        return [m for m in labels if sec.models is None or m in sec.models]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise UserError(f"no variant named {name!r} (have: {', '.join(v.name for v in self.variants) or 'none'})")


# ---------------------------------------------------------------- loading

class _LineLoader(yaml.SafeLoader):
    pass


MAX_NODES = 100_000     # an experiment file has hundreds; aliases must not expand past this


def _expanded_size(root) -> int:
    """Nodes the document has once every alias is expanded (memoised per node, so an
    alias bomb is measured in linear time instead of being expanded)."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1  # a cycle counts once
            if isinstance(node, yaml.MappingNode):
                sizes[id(node)] = 1 + sum(size(k) + size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                sizes[id(node)] = 1 + sum(size(v) for v in node.value)
            sizes[id(node)] = min(sizes[id(node)], MAX_NODES + 1)
        return sizes[id(node)]
    return size(root)


def _line_map(text: str, source: str = "") -> dict[tuple, int]:
    """Map each key path (tuple of str/int) to the 1-based line of its node."""
    out: dict[tuple, int] = {}
    root = yaml.compose(text, Loader=_LineLoader)
    if root is not None and _expanded_size(root) > MAX_NODES:
        raise UserError(f"{source}: more than {MAX_NODES} values once YAML aliases are expanded; "
                        f"not an experiment file (an alias bomb?)")

    def walk(node, path):
        out[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for k, v in node.value:
                key = k.value
                if key in first and isinstance(k, yaml.ScalarNode):   # PyYAML would keep the last one silently
                    raise UserError(f"{source}:{k.start_mark.line + 1}: {format_loc(path + (key,))}: duplicate key "
                                    f"(first at line {first[key]})")
                first[key] = k.start_mark.line + 1
                walk(v, path + (key,))
                out[path + (key,)] = k.start_mark.line + 1   # the key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return out


def format_loc(loc: tuple) -> str:
    s = ""
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s or "(top level)"


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts union-branch names into loc ("str", "TinyBase", "function-after[...]")
    return tuple(p for p in loc if not (isinstance(p, str) and (
        p.startswith("<") or p.startswith("function-"))))


def _describe(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key missing"
    msg = err["msg"]
    msg = re.sub(r"^Value error, ", "", msg)
    return msg


_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "above"),
           "less_than": ("lt", "below"), "less_than_equal": ("le", "at most")}


def default_of(model: type[BaseModel], name: str) -> Any:
    """A section field's default: code that mirrors a section (a CLI verb's options, an eval
    module's parameters) takes its defaults from here instead of writing them again."""
    return model.model_fields[name].get_default(call_default_factory=True)


def section_from_options(model: type[BaseModel], options: dict[str, Any], verb: str,
                         flags: dict[str, str] | None = None) -> Any:
    """A config section from a CLI verb's options (None: not given, the section's default), so
    a verb and an experiment file share one set of defaults and checks. A bad value is one
    line naming its option: `contamination --ratio-gen 1.0: must be below 1`."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return model.model_validate(given)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        value = given.get(name)
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        bound = _BOUNDS.get(err["type"])
        desc = f"must be {bound[1]} {err['ctx'][bound[0]]}" if bound else _describe(err)
        raise UserError(f"{verb} {flag} {shown}: {desc}") from None


def validation_message(e: ValidationError, source: str, lines: dict[tuple, int]) -> str:
    parts = []
    seen = set()
    for err in e.errors():
        loc = _clean_loc(tuple(err["loc"]))
        key = (loc, _describe(err))
        if key in seen:
            continue
        seen.add(key)
        desc = _describe(err)
        # a check across fields names its own key path ("variants[1].data: ..."): point there
        m = re.match(r"^((?:\w+|\[\d+\])(?:\.\w+|\[\d+\])*): (.*)$", desc)
        if m and (not loc or m.group(1).startswith(format_loc(loc))):
            loc = tuple(int(x[1:-1]) if x.startswith("[") else x for x in re.findall(r"\w+|\[\d+\]", m.group(1)))
            desc = m.group(2)
        line = None
        probe = loc
        while probe not in lines and probe:
            probe = probe[:-1]
        line = lines.get(probe)
        where = f"{source}:{line}" if line else source
        parts.append(f"{where}: {format_loc(loc)}: {desc}")
    return "; ".join(parts)


def parse_override(item: str) -> tuple[list[str | int], str]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE")
    key, value = item.split("=", 1)
    path: list[str | int] = []
    for part in re.split(r"\.(?![^\[]*\])", key.strip()):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise UserError(f"--set {item!r}: cannot parse key path {key!r}")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return path, value


def _field_annotation(path: list) -> Any:
    """The annotation of the field at `path` in Experiment, or None if unknown."""
    model: Any = Experiment
    ann: Any = None
    for part in path:
        if isinstance(part, int) or (ann is not None and _is_list_or_dict(ann)):
            # this part selects an item: a list index, a list item's name, or a mapping key
            ann = _inner(ann)
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            continue
        if model is None:
            return None
        fields = model.model_fields
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return None
        ann = field.annotation
        inner = _unwrap_optional(ann)
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return ann


def _unwrap_optional(ann):
    if typing.get_origin(ann) is Union:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _is_list_or_dict(ann) -> bool:
    return typing.get_origin(_unwrap_optional(ann)) in (list, dict)


def _inner(ann):
    args = typing.get_args(_unwrap_optional(ann))
    return args[-1] if args else None


def apply_override(raw: dict, path: list, value: str) -> None:
    """Set raw[path] = value, typed: YAML scalars unless the field is a string."""
    ann = _unwrap_optional(_field_annotation(path))
    try:
        typed: Any = value if ann is str else yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise UserError(f"--set {format_loc(tuple(path))}={value}: not a YAML value "
                        f"({getattr(e, 'problem', None) or 'parse error'})") from None
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if isinstance(part, str):  # address a list item by its name: variants.dpop.beta
                match = [x for x in node if isinstance(x, dict) and x.get("name") == part]
                if not match:
                    raise UserError(f"--set: no item named {part!r} under {format_loc(tuple(path[:i]))}")
                node = match[0]
                continue
            if part >= len(node):
                raise UserError(f"--set: index {part} out of range at {format_loc(tuple(path[:i + 1]))}")
            node = node[part]
        else:
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise UserError(f"--set: bad list index {last!r} at {format_loc(tuple(path))}")
    node[last] = typed


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override and validate an experiment file. Raises UserError with one line."""
    from .rundir import read_text
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an experiment file")
    text = read_text(path)           # one line for a missing file, a FIFO, or bytes that are not UTF-8
    try:
        lines = _line_map(text, str(path))      # first: it refuses alias bombs before they expand
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    for item in overrides or []:
        key_path, value = parse_override(item)
        apply_override(raw, key_path, value)
    raw = _packaged_paths(raw, (), str(path), lines)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as e:
        raise UserError(validation_message(e, str(path), lines)) from None


PACKAGED = "packaged:"


def _packaged_paths(node: Any, loc: tuple, source: str, lines: dict[tuple, int]) -> Any:
    """`packaged:gsm8k/unseen.jsonl` -> that file of evalkit's package data (evalkit/data/),
    so a shipped experiment names shipped data wherever evalkit is installed."""
    if isinstance(node, dict):
        return {k: _packaged_paths(v, loc + (k,), source, lines) for k, v in node.items()}
    if isinstance(node, list):
        return [_packaged_paths(v, loc + (i,), source, lines) for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(PACKAGED):
        from .data import path as packaged
        rel = node[len(PACKAGED):]
        target = packaged(*Path(rel).parts) if rel and ".." not in Path(rel).parts else None
        if target is None or Path(rel).is_absolute() or not target.exists():
            where = _where(source, lines, loc)
            raise UserError(f"{where}: {format_loc(loc)}: {node!r}: no such file in evalkit's package data")
        return str(target)
    return node


def _where(source: str, lines: dict[tuple, int], loc: tuple) -> str:
    while loc and loc not in lines:
        loc = loc[:-1]
    return f"{source}:{lines[loc]}" if loc in lines else source


def dump_resolved(exp: Experiment) -> str:
    return yaml.safe_dump(exp.model_dump(mode="json", by_alias=True), sort_keys=False)


OnPolicySpec.model_rebuild()
Variant.model_rebuild()
Experiment.model_rebuild()
