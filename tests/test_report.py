import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evalkit.report.render import build, render
from evalkit.report.stats import paired_bootstrap
from report_fixtures import build as build_fixture

GOLDEN = Path(__file__).parent / "golden" / "report_structure.json"


@pytest.fixture
def report(tmp_path):
    reports = build_fixture(tmp_path)
    out = render([reports], tmp_path / "report.html")
    return reports, out, out.read_text()


class Structure(HTMLParser):
    """Section headings and, per table class, its column headers."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self._in, self._table, self._text = [], {}, None, None, ""

    def handle_starttag(self, tag, attrs):
        if tag == "br" and self._in:
            self._text += " "
        if tag in ("h2", "th") or (tag == "table"):
            if tag == "table":
                self._table = dict(attrs).get("class", "")
                self.tables.setdefault(self._table, [])
            else:
                self._in, self._text = tag, ""

    def handle_endtag(self, tag):
        if tag == self._in:
            text = re.sub(r"\s+", " ", self._text).strip()
            if tag == "h2":
                self.headings.append(text)
            elif self._table is not None and self._table != "summary":
                self.tables[self._table].append(text)
            self._in = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in:
            self._text += data


def structure(html: str) -> dict:
    p = Structure()
    p.feed(html)
    return {"headings": p.headings, "tables": {k: v for k, v in p.tables.items() if k != "summary"}}


def test_every_section_with_the_fixture_numbers(report):
    reports, out, html = report
    for heading in ("Summary", "Leaderboard", "MT-Bench", "Contamination", "Training",
                    "Published numbers (not measured here)"):
        assert f">{heading}</h2>" in html, heading
    data = build([reports])["experiments"][0]
    lb = {r["model"]: r for r in data["leaderboard"]["rows"]}
    assert lb["base"]["cells"][0]["value"] == pytest.approx(30.0) and lb["dpo"]["cells"][0]["value"] == pytest.approx(60.0)
    assert lb["dpo"]["cells"][0]["delta"] == pytest.approx(30.0)
    assert "60.00" in html and "+30.00" in html and "30.00" in html
    assert "not comparable with published numbers: limit: 100 documents per task" in html
    assert "0.12" in html and "0.34" in html and "[0.07, 0.17]" in html    # contamination result and CI
    assert "3 / 40" in html                                                # n-gram overlap
    assert "5.50" in html and "4.25" in html and "0.0123" in html          # MT-Bench turns and cost
    assert "-30.00 &rarr; -45.50" in html and "-30.00 &rarr; -28.25" in html  # training summary
    assert "80.48" in html and "not measured here" in html                 # the published table
    # its protocol is stated; the fixture's runs used another one, so they are named, not put beside it
    assert "Open LLM Leaderboard v1 (assumed: lm-evaluation-harness b281b09, batch size 1)" in html
    assert "protocol: Open LLM Leaderboard v1 tasks, shots and metrics on lm-eval&#39;s built-in tasks" in html
    assert "Not shown beside these (another protocol): base (open_llm_v1_lmeval" in html
    assert "MT-Bench judgments could not be parsed" in html and "chosen fell" in html
    assert html.count("<svg") >= 4                                          # inline plots, no <img src=http>
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_model_text_is_escaped(report):
    _, _, html = report
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html


def test_paired_bootstrap_covers_a_known_difference():
    base = [1.0] * 30 + [0.0] * 70
    variant = [1.0] * 30 + [1.0] * 20 + [0.0] * 50      # the same docs, 20 more right: +0.2
    t = paired_bootstrap([(base, variant)], n=2000, seed=1)
    assert t["delta"] == pytest.approx(0.2)
    assert t["lo"] <= 0.2 <= t["hi"] and t["significant"]
    same = paired_bootstrap([(base, list(base))], n=500)
    assert same["delta"] == 0 and same["lo"] <= 0 <= same["hi"] and not same["significant"]
    # two subtasks, unweighted: (+0.2 + 0.0) / 2 = 0.1
    two = paired_bootstrap([(base, variant), (base[:10], base[:10])], how="unweighted_mean", n=500)
    assert two["delta"] == pytest.approx(0.1)


def test_structure_matches_the_golden_file(report):
    """Re-record with: EVALKIT_RECORD_GOLDEN=1 pytest tests/test_report.py -k golden"""
    got = structure(report[2])
    if os.environ.get("EVALKIT_RECORD_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_report_cli_and_missing_dir(report, tmp_path, capsys):
    from evalkit.cli import main
    reports, _, _ = report
    assert main(["report", str(reports), str(reports), "--out", str(tmp_path / "two.html")]) == 0
    html = (tmp_path / "two.html").read_text()
    assert "Experiment fx" in html and "fx/dpo" in html
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no such result directory" in capsys.readouterr().err


def test_vectorised_bootstrap_equals_the_loop_on_the_same_draws_and_is_seeded():
    """The numpy bootstrap is the textbook loop (resample each subtask's documents, take the
    entry's aggregate, 2.5/97.5% order statistics), written without Python loops: the same
    index draws give the same interval, and a fixed seed gives it on every run."""
    import numpy as np
    rng0 = np.random.default_rng(3)
    groups = [(rng0.random(40).round().tolist(), rng0.random(40).round().tolist()),
              (rng0.random(7).tolist(), rng0.random(7).tolist())]
    for how in ("unweighted_mean", "weighted_mean"):
        got = paired_bootstrap(groups, how=how, n=300, seed=11)
        assert got == paired_bootstrap(groups, how=how, n=300, seed=11)
        rng = np.random.default_rng(11)
        draws = [rng.integers(0, len(a), size=(300, len(a))) for a, _ in groups]
        stats = []
        for r in range(300):
            means = [sum(b[i] - a[i] for i in draws[g][r]) / len(a) for g, (a, b) in enumerate(groups)]
            sizes = [len(a) for a, _ in groups]
            stats.append(sum(m * s for m, s in zip(means, sizes)) / sum(sizes) if how == "weighted_mean"
                         else sum(means) / len(means))
        stats.sort()
        assert got["lo"] == pytest.approx(stats[int(0.025 * 299)], abs=1e-12)
        assert got["hi"] == pytest.approx(stats[int(0.975 * 299)], abs=1e-12)


def test_dollar_signs_in_names_are_plain_text_not_mathtext():
    """Model, benchmark and category names are user text: "$" stays a dollar sign."""
    from evalkit.report import plots
    name = "v$^{bad$"
    rows = [{"step": s, "loss": 0.7 - s / 100, "logps_chosen": -30.0, "logps_rejected": -31.0 - s,
             "reward_margin": s / 10, "penalty_active": 0.0} for s in (1, 2, 3)]
    svg = plots.training_curves({name: rows})
    assert svg and "v$^{bad$" in svg


def test_published_rows_sit_beside_runs_of_the_same_protocol():
    from evalkit.report.render import published_section, published_table
    smaug = published_table("smaug")
    archived = {"suite": "open_llm_v1", "protocol": "lm-evaluation-harness b281b09 (Open LLM Leaderboard v1)",
                "average": 0.5, "limit": None,
                "tasks": {"arc_challenge": {"value": 0.25}, "hellaswag": {"value": 0.5}, "mmlu": {"value": 0.75},
                          "truthfulqa_mc2": {"value": 0.125}, "winogrande": {"value": 0.5}, "gsm8k": {"value": 0.0}}}
    lmeval = {**archived, "suite": "open_llm_v1_lmeval", "protocol": "lm-eval built-in tasks"}
    old = {k: v for k, v in archived.items() if k != "protocol"}  # a record from before protocols were recorded
    sec = published_section(smaug, [("mine", archived), ("current", lmeval), ("older", old)])
    measured = [r for r in sec["rows"] if r["measured"]]
    assert [r["cells"] for r in measured] == [["mine", "50.00", "25.00", "50.00", "75.00", "12.50", "50.00", "0.00"]]
    assert all(r["protocol"].startswith("Open LLM Leaderboard v1") for r in sec["rows"] if not r["measured"])
    assert sec["others"] == ["current (open_llm_v1_lmeval: lm-eval built-in tasks)",
                             "older (open_llm_v1: protocol not recorded)"]


def test_published_data_files_are_valid_and_tied_to_evalkit_results():
    """Every packaged published file: each table's kind keys, columns that exist, numbers that
    parse; and what ties a table to evalkit's results names something evalkit produces."""
    from evalkit.data import path as packaged
    from evalkit.eval.benchmark_texts import BENCHMARKS
    from evalkit.report.published import published_tables
    from evalkit.schema import MTBenchSummary
    files = sorted(packaged("published").glob("*.yaml"))
    assert files
    for f in files:
        tables = published_tables(f.stem)
        assert tables, f
        for t in tables:
            assert all(len(r) == len(t["columns"]) for r in t["rows"])
            if t["kind"] == "leaderboard":
                assert (packaged("suites") / f"{t['suite']}.yaml").exists()
            if t["kind"] == "mtbench":
                assert set(t["entries"].values()) <= set(MTBenchSummary.__annotations__)
            if t["kind"] == "contamination":
                assert set(t["entries"].values()) <= set(BENCHMARKS)
    smaug = {t["kind"]: t for t in published_tables("smaug")}
    assert set(smaug) == {"leaderboard", "mtbench", "contamination"}
    assert smaug["mtbench"]["rows"] == [["Smaug-72B", 8.18, 7.34, 7.76]]
    # only what the Smaug README says: it names no judge and no contamination settings, and its
    # reference is "Llama7B" (not necessarily Llama-2-7B); every number sits in a quoted passage
    assert smaug["mtbench"]["judge"] is None and smaug["contamination"]["parameters"] == {}
    assert {r[1] for r in smaug["contamination"]["rows"]} == {"jondurbin/bagel-34b-v0.2", "Llama7B"}
    for t in smaug.values():
        quoted = "\n".join(t["quote"])
        assert t["assumptions"] and all(f"{v:.2f}" in quoted for r in t["rows"] for v in r if not isinstance(v, str))
        assert all(v in quoted for r in t["rows"] for v in r[1:] if isinstance(v, str))
    rows = {r[0]: r[2:] for r in smaug["contamination"]["rows"]}
    assert rows == {"Smaug-34B": [0.08, 0.38, 0.88], "Smaug-72B": [0.20, 0.45, 1.00],
                    "MoMo-72B-lora-1.8.7-DPO": [0.20, 0.39, 1.00], "Llama-2-70B": [0.22, 0.51, 0.89]}


@pytest.mark.parametrize("change, message", [
    ({"kind": "bleu"}, "kind 'bleu' is not one of"),
    ({"judge": None}, None),
    ({"entries": {"turn 3": "turn_2"}}, "entries: 'turn 3' is not a column"),
    ({"rows": [["Smaug-72B", 8.18, "7.34", 7.76]]}, "rows[0].turn 2: '7.34' is not a number"),
    ({"rows": [["Smaug-72B", 8.18, 7.34]]}, "rows[0]: 3 values for 4 columns"),
])
def test_a_bad_published_table_is_one_line_naming_the_key(change, message):
    from evalkit.errors import UserError
    from evalkit.report.published import check_table, published_tables
    table = {**next(t for t in published_tables("smaug") if t["kind"] == "mtbench"), **change}
    if message is None:                 # a key the kind needs, missing
        del table["judge"]
        message = "mtbench table has no 'judge'"
    with pytest.raises(UserError) as e:
        check_table(table, "smaug.yaml: tables[1]")
    assert str(e.value).startswith("smaug.yaml: tables[1]: ") and message in str(e.value)


def test_published_mtbench_and_contamination_rows_sit_beside_the_same_protocol_only(report):
    _, _, html = report
    pub = {t["kind"]: t for t in build([report[0]])["published"]}
    mt = pub["mtbench"]["rows"]
    assert [r["cells"] for r in mt if not r["measured"]] == [["Smaug-72B", "8.18", "7.34", "7.76"]]
    # the fixture's single-mode results, each with its judge named and marked not comparable
    assert [r["cells"] for r in mt if r["measured"]] == [
        ["base (judge judge; the published judge is not stated)", "5.50", "4.25", "4.88"],
        ["dpo (judge judge; the published judge is not stated)", "6.00", "5.00", "5.50"]]
    ct = [r["cells"] for r in pub["contamination"]["rows"] if r["measured"]]
    # method shi2023, GSM8K only, run with 4 examples: its settings are named
    assert ct[0][0] == "dpo (settings differ: n_examples 4 (assumed for the published run: 100))"
    assert ct[0][1:] == ["org/base-7b", "", "", "0.12"]
    assert "Assumed, not stated by the source" in html and "Llama7B" in html
    assert "published, not measured here" in html and ">7.76<" in html and ">0.45<" in html


def test_dispersion_and_post_edit_rows_in_the_training_section(report):
    _, _, html = report
    rows = {r["variant"]: r for r in build([report[0]])["experiments"][0]["training"]["diagnostics"]}
    assert rows["dpo"]["post_edit"]["chosen"] == (-0.412, -0.875) and rows["dpop"]["post_edit"]["chosen"] == (-0.412, -0.321)
    assert rows["dpo"]["heldout"]["unseen"] == (-70.0, -66.5) and rows["dpo"]["n_heldout"] == 8
    assert "-0.412 &rarr; -0.875" in html and "-0.412 &rarr; -0.321" in html and "-70.00 &rarr; -66.50" in html
    assert "log pi(y_w), held-out pairs" in html and "responses (held-out)" in html   # the plot's panels


def test_a_benchmark_every_model_scores_at_the_floor_is_flagged(tmp_path):
    """Every model at 0.00 (or 100.00) on one benchmark: the page says the data cannot tell them
    apart, instead of showing a column of equal numbers unexplained; other columns are not flagged."""
    reports = build_fixture(tmp_path)
    for f in reports.glob("*/leaderboard.json"):
        rec = json.loads(f.read_text())
        first = next(iter(rec["tasks"]))
        rec["tasks"][first].update(value=0.0, stderr=0.0)
        f.write_text(json.dumps(rec))
    lb = build([reports])["experiments"][0]["leaderboard"]
    assert len(lb["cannot_discriminate"]) == 1
    assert lb["cannot_discriminate"][0].startswith(f"{first}: every model scores 0.00")
    assert "cannot tell the models apart" in render([reports], tmp_path / "r.html").read_text()
