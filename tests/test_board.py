"""`evalkit board`: one leaderboard over two experiments, as HTML and through pandas."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from evalkit.cli import main
from report_fixtures import XSS
from report_fixtures import build as build_fixture


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory) -> Path:
    """reports/fx (the report fixture, with its report.html) and reports/fx2: the same results
    under another name, one model's average changed."""
    root = tmp_path_factory.mktemp("board")
    fx = build_fixture(root)
    assert main(["report", str(fx), "--out", str(fx / "report.html")]) == 0
    fx2 = fx.with_name("fx2")
    shutil.copytree(fx, fx2)
    (fx2 / "report.html").unlink()
    m = json.loads((fx2 / "manifest.json").read_text())
    m["experiment"] = "fx2"
    (fx2 / "manifest.json").write_text(json.dumps(m))
    lb = json.loads((fx2 / "dpo" / "leaderboard.json").read_text())
    lb["tasks"]["arc_challenge"]["value"], lb["average"] = 0.9, 0.77
    (fx2 / "dpo" / "leaderboard.json").write_text(json.dumps(lb))
    return root / "reports"


def test_board_rows_across_experiments_and_published_marked(two_experiments, tmp_path):
    from evalkit.board import collect
    entries, rows = collect([two_experiments])
    measured = [(r["experiment"], r["model"]) for r in rows if r["kind"] == "measured"]
    assert sorted(measured) == sorted((e, m) for e in ("fx", "fx2") for m in ("base", "dpo", "dpop"))
    published = [r for r in rows if r["kind"] == "published"]
    assert [r["model"] for r in published] == ["Smaug-72B", "Smaug-34B"]     # once, though both cite it
    assert published[0]["average"] == 80.48 and published[0]["scores"]["arc_challenge"] == 76.02
    # the published MT-Bench score joins its model's row, with the judge as the source gives it
    assert (published[0]["mtbench"], published[0]["mtbench_judge"]) == (7.76, "judge not stated")
    assert (published[1]["mtbench"], published[1]["mtbench_judge"]) == (None, None)
    top = [r for r in rows if r["kind"] == "measured"][0]
    assert (top["experiment"], top["model"], top["average"]) == ("fx2", "dpo", 77.0)
    assert top["scores"]["arc_challenge"] == 90.0
    assert {"arc_challenge", "mmlu", "gsm8k", "hellaswag"} <= set(entries)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_exports_hold_the_same_table(two_experiments, tmp_path, fmt):
    from evalkit.board import collect, frame
    out = tmp_path / f"board.{fmt}"
    assert main(["board", str(two_experiments), "--out", str(out), "--format", fmt]) == 0
    df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](out)
    want = frame(*collect([two_experiments]))
    assert list(df.columns) == list(want.columns) and len(df) == len(want) == 8
    assert df["average"].round(4).tolist() == want["average"].round(4).tolist()
    assert df["kind"].tolist().count("published") == 2


def test_html_board_links_reports_and_escapes(two_experiments, tmp_path):
    out = tmp_path / "site" / "board.html"
    assert main(["board", str(two_experiments / "fx"), str(two_experiments / "fx2"), "--out", str(out)]) == 0
    page = out.read_text()
    import re
    hrefs = re.findall(r'<a href="([^"]+)">fx</a>', page)
    assert hrefs and all((out.parent / h).resolve() == (two_experiments / "fx" / "report.html").resolve() for h in hrefs)
    assert '<a href' not in page.split(">fx2<")[0].rsplit("<td", 1)[-1], "fx2 has no report: no link"
    assert "published, not measured here" in page and 'class="sortable board"' in page
    assert "7.76 <span class=\"tag\">(judge not stated)</span>" in page
    assert "MT-Bench:\nthe mean judge rating on its 1&ndash;10 scale" in page   # not under "values x100"
    assert "Content-Security-Policy" in page and "'sha256-" in page
    assert XSS not in page and "<script>window" not in page


def test_board_with_no_results_is_one_line(tmp_path, capsys):
    assert main(["board", str(tmp_path), "--out", str(tmp_path / "b.html")]) == 2
    assert "no experiment results" in capsys.readouterr().err
