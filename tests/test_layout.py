"""The package's shape: no import cycle between evalkit's modules, imports inside
functions included (tests/test_wheel.py checks that nothing reads the source tree)."""
import ast
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
