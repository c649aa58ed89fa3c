"""The package's shape: no import cycle between evalkit's modules, imports inside
functions included (tests/test_wheel.py checks that nothing reads the source tree)."""
import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "evalkit"


def import_graph() -> dict[str, set[str]]:
    mods = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = f
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {n for n in names if n in mods and n != m and n != "evalkit"}
    return graph


def test_no_import_cycles():
    graph, state, path, cycles = import_graph(), {}, [], []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                cycles.append(path[path.index(v):] + [v])
            elif v not in state:
                visit(v)
        path.pop()
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)



# The floors, top to bottom: a module imports modules on its own floor or below, never above
# (an arrow running back up ties a lower floor to the one that uses it). Imports inside
# functions count. A module on no floor fails the test: place it.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("evalkit.cli", "evalkit.devserver")),
    ("the plan", ("evalkit.runner",)),
    ("stages", ("evalkit.stages",)),
    ("the experiment and its work", ("evalkit.config", "evalkit.train", "evalkit.eval", "evalkit.report",
                                     "evalkit.board", "evalkit.modelcard", "evalkit.trackers")),
    ("backends: every way to a model", ("evalkit.backends",)),
    ("files: names, records, caches", ("evalkit.rundir", "evalkit.schema", "evalkit.caches")),
    ("ground", ("evalkit", "evalkit.errors", "evalkit.logs", "evalkit.progress", "evalkit.prefix", "evalkit.data",
                "evalkit.synth")),
]


def floor_of(module: str) -> int | None:
    """The floor of a module (0 = top): its own entry or the closest package listed (the
    package `evalkit` itself is only its __init__)."""
    best = None
    for i, (_, names) in enumerate(FLOORS):
        for name in names:
            if (module == name or (name != "evalkit" and module.startswith(name + "."))) and (best is None or len(name) > len(best[1])):
                best = (i, name)
    return best[0] if best else None


def test_arrows_only_run_down_the_floors():
    graph = import_graph()
    unplaced = sorted(m for m in graph if floor_of(m) is None)
    assert not unplaced, f"modules on no floor (add them to FLOORS): {', '.join(unplaced)}"
    up = sorted(f"{m} ({FLOORS[floor_of(m)][0]}) -> {t} ({FLOORS[floor_of(t)][0]})"
                for m, targets in graph.items() for t in targets if floor_of(t) < floor_of(m))
    assert not up, "arrows running back up a floor:\n  " + "\n  ".join(up)


# ---------------------------------------------------------------- output names live in rundir

NAME = re.compile(r"[\w.<>{}/\[\]-]*[\w>}\]-]\.(?:jsonl|json|html|log)(?!\.?\w)")
# (module, the name as written; '{}' for an f-string's value) -> why it is no output name of evalkit's
NOT_OUTPUT_NAMES = {
    ("backends/models.py", "config.json"): "input: a Hugging Face model folder's own file, read to recognise one",
    ("backends/fingerprint.py", "config.json"): "input: the same file, part of a model's fingerprint",
    ("runner.py", "config.json"): "the same: a folder the config names that is a model",
    ("backends/known_models.py", "config.json"): "the same: a materialised model's folder is complete",
    ("synth.py", "judge_prompts_single.jsonl"): "package data (evalkit/data/mtbench/)",
    ("eval/mtbench.py", "sample_questions.jsonl"): "package data",
    ("eval/mtbench.py", "sample_reference.jsonl"): "package data",
    ("eval/judge.py", "judge_prompts.jsonl"): "input: a FastChat llm_judge/data folder's file",
    ("eval/mtbench.py", "question.jsonl"): "input: the same folder's questions",
    ("eval/mtbench.py", "{}.jsonl"): "input: the same folder's reference answers (reference_answer/<judge>.jsonl)",
    ("cli.py", "ANSWERS.jsonl"): "a placeholder for the user's input file, in an error",
    ("cli.py", "run.log"): "help text: tells the reader where the libraries' logs go",
    ("eval/calibrated.py", "FILE.jsonl"): "a placeholder for the user's input file, in an error",
    ("eval/suites.py", "DIR/{}/{}/<split>.jsonl"): "input: the --data-dir layout, in an error",
    ("eval/benchmark_texts.py", "DIR/{}/{}/{}.jsonl"): "input: the --data-dir layout, in an error",
    **{("schema.py", name): "the README's map of the layout (test_schema_where_is_rundirs_layout checks it)"
       for name in ("reports/<experiment>/manifest.json", "reports/<experiment>/<model>/leaderboard.json",
                    "reports/<experiment>/<model>/mtbench/summary.json",
                    "reports/<experiment>/<model>/contamination.json",
                    "checkpoints/<experiment>/<variant>/evalkit.json", "train_metrics.jsonl",
                    "checkpoints/<experiment>/<variant>/train_metrics.jsonl")},
}


def string_constants(tree: ast.AST):
    """Every string constant that is not a docstring; an f-string as one string, '{}' for each value."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts |= {id(v) for v in node.values}
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and id(node) not in parts):
            yield node.lineno, node.value


def test_output_file_names_are_written_only_in_rundir():
    """A *.json / *.jsonl / *.html / *.log name outside rundir.py (docstrings aside) is either
    an input's (package data, a format's own file, a placeholder: listed above with the reason)
    or a second place naming an output, which the next layout change would miss. Suffix
    checks ('.jsonl') name no file and pass."""
    found, used = [], set()
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).as_posix()
        if rel == "rundir.py":
            continue
        for line, text in string_constants(ast.parse(f.read_text())):
            for name in NAME.findall(text):
                if (rel, name) in NOT_OUTPUT_NAMES:
                    used.add((rel, name))
                else:
                    found.append(f"evalkit/{rel}:{line}: {name!r} in {text[:80]!r}")
    assert not found, "output file names outside evalkit/rundir.py:\n" + "\n".join(found)
    assert used == set(NOT_OUTPUT_NAMES), f"allow-list entries no longer needed: {set(NOT_OUTPUT_NAMES) - used}"


def test_schema_where_is_rundirs_layout():
    """The README's map of result files (evalkit.schema.WHERE) is where RunDir puts them."""
    from evalkit import schema
    from evalkit.rundir import RunDir
    rd = RunDir("EXP", root="")
    for kind, where in schema.WHERE.items():
        at = {"variant": "VARIANT"} if where.startswith("checkpoints/") else \
            {"model": "MODEL"} if "<model>" in where else {}
        path = rd.path(kind, **at).as_posix()
        assert path == where.replace("<experiment>", "EXP").replace("<model>", "MODEL").replace("<variant>", "VARIANT")


def test_schema_imports_nothing_above_it():
    """evalkit.schema is the floor every reader and writer stands on: it imports only errors."""
    assert import_graph()["evalkit.schema"] <= {"evalkit.errors"}
