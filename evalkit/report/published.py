"""Published reference numbers as data (evalkit/data/published/<name>.yaml), and the tables that
set them beside evalkit's own results of the SAME protocol only.

A file holds `source` and `tables`; each table has `kind` (leaderboard | mtbench |
contamination), `title`, `source`, `quote` (the source's own words for the table, verbatim),
`protocol`, `columns` (the first is `model`), `rows`, `assumptions` (what the table states that
the source does not), and what ties it to evalkit's results: leaderboard `suite` + `entries`
(column -> entry); mtbench `mode`, `judge` (null: not stated by the source) + `entries` (column
-> summary key); contamination `method`, `parameters` (the settings the source states) and
`assumed_parameters` (settings assumed where it states none) + `entries` (column -> benchmark).
Every file is checked when read (`check_table`).
"""
from __future__ import annotations

import yaml

from ..data import path as packaged
from ..errors import UserError

PUBLISHED = packaged("published")
KINDS = {"leaderboard": ("suite", "entries"), "mtbench": ("mode", "judge", "entries"),
         "contamination": ("method", "parameters", "entries")}
TEXT_COLUMNS = ("model", "reference")     # every other column holds numbers


def _pct(x):
    return None if x is None else 100.0 * x


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def check_table(t: dict, where: str) -> dict:
    """One table, checked: its kind's keys, columns that exist, rows of numbers. UserError naming
    the file and key otherwise."""
    if not isinstance(t, dict):
        raise UserError(f"{where}: a table must be a mapping")
    kind = t.get("kind", "leaderboard")
    if kind not in KINDS:
        raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    for key in ("source", "quote", "protocol", "columns", "rows") + KINDS[kind]:
        if key not in t:
            raise UserError(f"{where}: {kind} table has no {key!r}")
    for key in ("quote", "assumptions"):
        v = t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v) or (key == "quote" and not v):
            raise UserError(f"{where}: {key} must be a list of {'source passages' if key == 'quote' else 'statements'}")
    cols = t["columns"]
    if not isinstance(cols, list) or not cols or cols[0] != "model" or len(set(cols)) != len(cols):
        raise UserError(f"{where}: columns must be a list of distinct names starting with 'model' (got {cols!r})")
    for col in t["entries"]:
        if col not in cols:
            raise UserError(f"{where}: entries: {col!r} is not a column ({', '.join(cols)})")
    for i, row in enumerate(t["rows"]):
        if not isinstance(row, list) or len(row) != len(cols):
            raise UserError(f"{where}: rows[{i}]: {len(row) if isinstance(row, list) else 'not a list of'} "
                            f"values for {len(cols)} columns")
        for col, v in zip(cols, row):
            text = col in TEXT_COLUMNS
            if text != isinstance(v, str) or (not text and (isinstance(v, bool) or not isinstance(v, (int, float)))):
                raise UserError(f"{where}: rows[{i}].{col}: {v!r} is not {'text' if text else 'a number'}")
    return {**t, "kind": kind}


def published_tables(name: str | None) -> list[dict]:
    """The checked tables of a packaged published file (published/<name>.yaml); a file without
    `tables` is one leaderboard table."""
    if not name:
        return []
    path = PUBLISHED / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.exists():
        known = ", ".join(sorted(p.stem for p in PUBLISHED.glob("*.yaml")))
        raise UserError(f"report.published: unknown published table {name!r} (packaged: {known})")
    doc = yaml.safe_load(path.read_text())
    tables = doc.get("tables") if isinstance(doc, dict) and "tables" in doc else [doc]
    if not isinstance(tables, list):
        raise UserError(f"{path}: tables must be a list")
    return [check_table(t, f"{path}: tables[{i}]") for i, t in enumerate(tables)]


def published_table(name: str | None) -> dict | None:
    """The file's leaderboard table (the one the cross-experiment board shows)."""
    return next((t for t in published_tables(name) if t["kind"] == "leaderboard"), None)


def published_section(published: dict | None, runs: list[tuple[str, dict]]) -> dict | None:
    """The published rows with their protocol, and beside them evalkit's leaderboard runs of the
    same protocol (the suite named in the published file); runs of another protocol are only
    named, never put beside numbers they cannot be compared with."""
    if not published:
        return None
    protocol, suite = published.get("protocol") or "not stated", published.get("suite")
    entries = published.get("entries") or {}
    rows = [{"cells": [c if isinstance(c, str) else _fmt(c) for c in r], "protocol": protocol, "measured": False}
            for r in published["rows"]]             # 78.70 stays 78.70 (YAML reads it as 78.7)
    others = []
    for label, rec in runs:
        if suite is None or rec.get("suite") != suite or not rec.get("protocol"):
            others.append(f"{label} ({rec.get('suite')}: {rec.get('protocol') or 'protocol not recorded'})")
            continue
        key = "normalised" if rec.get("normalised") else "value"
        cells = [label + (f" (limit {rec['limit']}, not comparable)" if rec.get("limit") else "")]
        for col in published["columns"][1:]:
            if col == "average":
                cells.append(_fmt(_pct(rec["average"])))
            else:
                t = rec["tasks"].get(entries.get(col, col))
                cells.append(_fmt(_pct(t[key])) if t else "")
        rows.append({"cells": cells, "protocol": rec["protocol"], "measured": True})
    return {**published, "rows": rows, "others": others,
            "others_note": f"Only runs of the {suite} suite follow the published protocol."}


def published_mtbench_section(published: dict, runs: list[tuple[str, dict]]) -> dict:
    """Published MT-Bench rows beside evalkit's MT-Bench results of the same grading mode, each
    with its judge named; a result with another judge is marked not comparable."""
    mode, judge = published.get("mode", "single"), published.get("judge")
    entries = published.get("entries") or {}
    rows = [{"cells": [c if isinstance(c, str) else _fmt(c) for c in r],
             "protocol": f"{published.get('protocol')}" + (f" (judge: {judge})" if judge else ""), "measured": False}
            for r in published["rows"]]
    others = []
    for label, summary in runs:
        if summary.get("mode", "single") != mode:
            others.append(f"{label} ({summary.get('mode')} mode)")
            continue
        if judge is None:              # the source names no judge: say so rather than assume one
            note = f" (judge {summary.get('judge')}; the published judge is not stated)"
        else:
            note = "" if summary.get("judge") == judge else f" (judge {summary.get('judge')}, not {judge}: not comparable)"
        cells = [label + note] + [_fmt(summary.get(entries.get(c, c))) for c in published["columns"][1:]]
        rows.append({"cells": cells, "measured": True,
                     "protocol": f"MT-Bench {mode} mode, judge: {summary.get('judge')}"
                                 + (f"; questions: {summary['questions']}" if summary.get("questions") else "")})
    return {**published, "rows": rows, "others": others,
            "others_note": f"Only {mode}-mode results are set beside the published {mode}-mode scores."}


def published_contamination_section(published: dict, runs: list[tuple[str, dict]]) -> dict:
    """Published contamination rows beside evalkit's contamination results of the same method;
    a result run with other settings than the published ones says which."""
    method, params = published.get("method"), published.get("parameters") or {}
    assumed = {k: v for k, v in (published.get("assumed_parameters") or {}).items() if k not in params}
    entries = published.get("entries") or {}
    rows = [{"cells": [c if isinstance(c, str) else _fmt(c) for c in r], "protocol": published.get("protocol"),
             "measured": False} for r in published["rows"]]
    others = []
    for label, rec in runs:
        mine = rec.get("parameters") or {}
        if mine.get("method") != method:
            others.append(f"{label} (method {mine.get('method') or rec.get('method')})")
            continue
        differ = [f"{k} {mine.get(k)} (published {v})" for k, v in params.items() if mine.get(k) != v] + \
            [f"{k} {mine.get(k)} (assumed for the published run: {v})" for k, v in assumed.items() if mine.get(k) != v]
        cells = [label + (f" (settings differ: {', '.join(differ)})" if differ else "")]
        for col in published["columns"][1:]:
            if col == "reference":
                cells.append(str(rec.get("reference", "")))
            else:
                b = rec.get("benchmarks", {}).get(entries.get(col, col))
                cells.append(_fmt(b["result"]) if b else "")
        rows.append({"cells": cells, "protocol": f"{rec.get('method')}; control {rec.get('control')}",
                     "measured": True})
    return {**published, "rows": rows, "others": others,
            "others_note": f"Only results of method {method} are set beside these."}
