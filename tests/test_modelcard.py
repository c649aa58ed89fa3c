"""Model cards: every trained checkpoint gets a README.md whose model-index equals the results."""
import json

import pytest
import yaml

from evalkit.modelcard import write_cards
from evalkit.rundir import RunDir
from report_fixtures import build as build_fixture


def test_cards_parse_and_model_index_equals_leaderboard_json(tmp_path):
    reports = build_fixture(tmp_path)
    rd = RunDir("fx", root=tmp_path)
    from evalkit.config import Experiment
    exp = Experiment.model_validate({
        "name": "fx", "base_model": "org/base-7b", "datasets": {"d": {"generate": "metamath_synthetic"}},
        "variants": [{"name": "dpo", "data": "d"}, {"name": "dpop", "data": "d", "loss": "dpop"}],
        "eval": {"leaderboard": {}, "mtbench": {}, "contamination": {}}})
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


def test_a_result_of_a_model_the_section_no_longer_scores_is_not_shown(tmp_path):
    """models: [base] in the leaderboard section: dpo's old leaderboard.json (maybe of weights
    retrained since) stays on disk but leaves its card, the report and the board."""
    from evalkit.config import Experiment
    from evalkit.report.data import load_experiment_dir
    reports = build_fixture(tmp_path)
    rd = RunDir("fx", root=tmp_path)
    exp = Experiment.model_validate({
        "name": "fx", "base_model": "org/base-7b", "datasets": {"d": {"generate": "metamath_synthetic"}},
        "variants": [{"name": "dpo", "data": "d"}, {"name": "dpop", "data": "d", "loss": "dpop"}],
        "eval": {"leaderboard": {"models": ["base", "dpop"]}, "contamination": {}}})
    dpo_card = write_cards(rd, exp)[0].read_text()
    assert "model-index" not in dpo_card and "Leaderboard suite" not in dpo_card
    assert (reports / "dpo" / "leaderboard.json").exists()
    man = json.loads((reports / "manifest.json").read_text())
    man["config"]["eval"] = {"leaderboard": {"models": ["base", "dpop"]}}
    (reports / "manifest.json").write_text(json.dumps(man))
    assert set(load_experiment_dir(reports).leaderboard) == {"base", "dpop"}
