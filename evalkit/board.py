"""`evalkit board DIR... --out FILE`: one leaderboard across every model of every experiment.

1. Each DIR is an experiment's result directory (it has manifest.json or <model>/leaderboard.json)
   or a folder of them (`reports/`: every reports/*/ is read).
2. One row per (experiment, model) with a leaderboard.json: its suite, every entry x100, the
   average, MT-Bench's overall score when judged, and a link to the experiment's report.
3. The published reference rows each experiment's report names (`report: {published: ...}`)
   join once each, marked "published, not measured here".
4. `--format html` writes a self-contained sortable page; csv, parquet and json go through
   pandas (the same table, one column per field).
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from .errors import UserError
from .rundir import ModelFiles, ReportFiles, atomic_write_text, naming

FORMATS = ("html", "csv", "parquet", "json")
FIXED = ["kind", "experiment", "model", "suite", "protocol", "average", "mtbench", "mtbench_judge", "comparable",
         "report"]


def experiment_dirs(dirs: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise UserError(f"board: {d}: no such directory")
        if _is_experiment(d):
            out.append(d)
        else:
            out += sorted(p for p in d.iterdir() if p.is_dir() and _is_experiment(p))
    if not out:
        raise UserError(f"board: no experiment results under {', '.join(map(str, dirs))} "
                        f"(looked for {ReportFiles('.').manifest.name} or <model>/{ModelFiles('.').leaderboard.name})")
    return list(dict.fromkeys(p.resolve() for p in out))


def _is_experiment(d: Path) -> bool:
    return ReportFiles(d).manifest.exists() or any(ModelFiles(p).leaderboard.exists() for p in d.iterdir() if p.is_dir())


def collect(dirs: list[str | Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """(benchmark columns, rows); values x100, None where a model has no number."""
    from .report.data import load_experiment_dir
    from .report.published import published_tables
    entries: list[str] = []
    rows: list[dict[str, Any]] = []
    published: dict[str, dict] = {}
    for d in experiment_dirs(dirs):
        exp = load_experiment_dir(d)
        report = ReportFiles(d).report_html
        for model in exp.models:
            rec = exp.leaderboard.get(model)
            mt = (exp.mtbench.get(model) or {}).get("summary") or {}
            if rec is None and not mt:
                continue
            row = {"kind": "measured", "experiment": exp.name, "model": model,
                   "suite": rec.get("suite") if rec else None, "protocol": rec.get("protocol") if rec else None,
                   "average": _pct(rec.get("average")) if rec else None,
                   "mtbench": mt.get("overall") if mt.get("mode", "single") == "single" else None,
                   "mtbench_judge": mt.get("judge") if mt.get("mode", "single") == "single" else None,
                   "comparable": bool(rec.get("comparable", True)) if rec else None,
                   "report": str(report) if report.exists() else None, "scores": {}}
            key = "normalised" if rec and rec.get("normalised") else "value"
            for e, t in (rec or {}).get("tasks", {}).items():
                entries.append(e) if e not in entries else None
                row["scores"][e] = _pct(t.get(key))
            rows.append(row)
        name = ((exp.manifest.get("config") or {}).get("report") or {}).get("published")
        if name and name not in published:
            published[name] = {t["kind"]: t for t in published_tables(name)}
    for name, tables in published.items():
        table, mt = tables.get("leaderboard"), tables.get("mtbench")
        # a published MT-Bench score joins its model's row, with the judge the source names
        mt_scores = {r[0]: dict(zip(mt["columns"], r)) for r in mt["rows"]} if mt else {}
        for values in table["rows"] if table else []:
            r = dict(zip(table["columns"], values))
            overall = (mt_scores.get(r["model"]) or {}).get(next((lbl for lbl, k in (mt.get("entries") or {}).items()
                                                                  if k == "overall"), "overall")) if mt else None
            rows.append({"kind": "published", "experiment": f"published: {name}", "model": r["model"],
                         "suite": table.get("suite"), "protocol": table.get("protocol"),
                         "average": r.get("average"), "mtbench": overall,
                         "mtbench_judge": (mt.get("judge") or "judge not stated") if overall is not None else None,
                         "comparable": None, "report": None, "source": table.get("source"),
                         "scores": {e: r.get(label) for label, e in (table.get("entries") or {}).items()}})
            for e in (table.get("entries") or {}).values():
                entries.append(e) if e not in entries else None
    rows.sort(key=lambda r: (r["average"] is None, -(r["average"] or 0)))
    return entries, rows


def _pct(x):
    return None if x is None else round(100.0 * x, 4)


def frame(entries: list[str], rows: list[dict[str, Any]]):
    import pandas as pd
    flat = [{**{k: r.get(k) for k in FIXED}, **{e: r["scores"].get(e) for e in entries}} for r in rows]
    return pd.DataFrame(flat, columns=FIXED + entries)


def write(dirs: list[str | Path], out: str | Path, fmt: str | None = None) -> Path:
    out = Path(out)
    suffix = out.suffix.lstrip(".").lower()
    if fmt and suffix in FORMATS and suffix != fmt:
        raise UserError(f"board --format {fmt} --out {out}: the file's suffix says {suffix}; "
                        f"name it .{fmt} or drop --format")
    fmt = fmt or (suffix if suffix in FORMATS else "html")
    if fmt not in FORMATS:
        raise UserError(f"board --format {fmt}: use one of {', '.join(FORMATS)}")
    entries, rows = collect(dirs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        atomic_write_text(out, render_html(entries, rows, out))
        return out
    df = frame(entries, rows)
    tmp = out.with_name(f".{out.name}.tmp")
    with naming(out):
        if out.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(out))
        try:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            elif fmt == "parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_json(tmp, orient="records", indent=1)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _num(x, d: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def render_html(entries: list[str], rows: list[dict[str, Any]], out: Path) -> str:
    from .report.page import SORT_CSS, SORT_SCRIPT, csp
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in ["model", "experiment", "suite", "average", *entries, "MT-Bench"])
    body = []
    for r in rows:
        pub = r["kind"] == "published"
        if r["report"]:
            href = os.path.relpath(r["report"], out.resolve().parent)
            exp_cell = f'<a href="{e(href)}">{e(r["experiment"])}</a>'
        else:
            exp_cell = e(r["experiment"])
        note = (' <span class="tag">published, not measured here</span>' if pub else
                ' <span class="tag">not comparable</span>' if r["comparable"] is False else "")
        cells = [f"<td>{e(r['model'])}{note}</td>", f"<td>{exp_cell}</td>",
                 f"<td title=\"{e(r['protocol'] or '')}\">{e(r['suite'] or 'n/a')}</td>",
                 f"<td>{_num(r['average'])}</td>", *(f"<td>{_num(r['scores'].get(x))}</td>" for x in entries),
                 f"<td title=\"judge: {e(r.get('mtbench_judge') or 'n/a')}\">{_num(r['mtbench'])}"
                 + (f' <span class="tag">({e(r["mtbench_judge"])})</span>' if pub and r.get("mtbench_judge") else "")
                 + "</td>"]
        body.append(f'<tr class="{"published" if pub else "measured"}">{"".join(cells)}</tr>')
    n_exp = len({r["experiment"] for r in rows if r["kind"] == "measured"})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp()}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>evalkit leaderboard</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1300px;padding:1rem 1.5rem;color:#222}}
table{{border-collapse:collapse;font-variant-numeric:tabular-nums}}
th,td{{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}}th{{background:#f5f5f5}}
th:nth-child(-n+3),td:nth-child(-n+3){{text-align:left}}
tr.published{{background:#f6f8fa;font-style:italic}}.tag{{font-size:.8em;color:#777;font-style:normal}}
.muted{{color:#777}}{SORT_CSS}
</style></head><body>
<h1>Leaderboard</h1>
<p class="muted">{len(rows)} rows: every model of {n_exp} experiment(s), and the published reference rows their
reports cite (shaded, not measured here). Benchmark columns and the average: values &times;100. MT-Bench:
the mean judge rating on its 1&ndash;10 scale, with the judge named (scores by different judges are not
comparable). "n/a" where a model has no number. Click a header to sort; an experiment's name links to its
report. Rows of different suites or protocols (hover the suite) are not directly comparable.</p>
<table class="sortable board"><thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
