"""Model cards: every trained checkpoint gets a README.md whose model-index equals the results."""
import json
from types import SimpleNamespace

import pytest
import yaml

from evalkit.modelcard import write_cards
from evalkit.rundir import RunDir
from report_fixtures import build as build_fixture


def test_cards_parse_and_model_index_equals_leaderboard_json(tmp_path):
    reports = build_fixture(tmp_path)
    rd = RunDir("fx", root=tmp_path)
    exp = SimpleNamespace(name="fx", base_model="org/base-7b", variants=[SimpleNamespace(name="dpo"),
                                                                        SimpleNamespace(name="dpop")])
    paths = write_cards(rd, exp)
    assert [p.parent.name for p in paths] == ["dpo", "dpop"]
    for p in paths:
        text = p.read_text()
        assert text.startswith("---\n")
        meta = yaml.safe_load(text.split("---\n")[1])
        assert meta["base_model"] == "org/base-7b" and "evalkit" in meta["tags"]
        results = meta["model-index"][0]["results"]
        lb = json.loads((reports / p.parent.name / "leaderboard.json").read_text())
        got = {r["task"]["name"]: r["metrics"][0]["value"] for r in results}
        want = {e: pytest.approx(100 * t["value"], abs=1e-4) for e, t in lb["tasks"].items()}
        mt = reports / p.parent.name / "mtbench" / "summary.json"
        if mt.exists():
            want["MT-Bench"] = pytest.approx(json.loads(mt.read_text())["overall"])
        assert got == want
        body = text.split("---\n", 2)[2]
        # the recipe, where the chosen log-prob went, and the contamination result beside its control
        assert "beta 0.3" in body and "lambda 50.0" in body
        start_end = {"dpo": "-30.00 (start, the reference) -> -45.50", "dpop": "-30.00 (start, the reference) -> -28.25"}
        assert start_end[p.parent.name] in body
        assert "| gsm8k |" in body and "0.05" in body
    # the huggingface_hub parser reads the same metadata back
    from huggingface_hub import ModelCard
    card = ModelCard.load(paths[0])
    assert card.data.eval_results[0].metric_value == pytest.approx(60.0)
