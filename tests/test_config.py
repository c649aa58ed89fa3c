import subprocess
import sys
import textwrap

import pytest

from evalkit.cli import main
from evalkit.config import load_experiment
from evalkit.errors import UserError

GOOD = textwrap.dedent("""\
    name: exp1
    base_model: some-org/some-model
    datasets:
      pairs: {path: data/pairs.jsonl}
    variants:
      - name: dpo
        data: pairs
        loss: dpo
      - name: dpop
        data: pairs
        loss: dpop
        beta: 0.3
    """)


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_good_file_validates_and_prints_resolved(tmp_path, capsys):
    code, out, err = run_cli(capsys, "validate", str(write(tmp_path, GOOD)))
    assert code == 0, err
    assert "name: exp1" in out and "lambda: 50.0" in out


def test_unknown_key_names_path_and_line(tmp_path, capsys):
    text = GOOD.replace("beta: 0.3", "betta: 0.3")
    code, out, err = run_cli(capsys, "validate", str(write(tmp_path, text)))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "exp.yaml:12: variants[1].betta: unknown key" in lines[0]


def test_wrong_type(tmp_path, capsys):
    text = GOOD.replace("beta: 0.3", "beta: lots")
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, text)))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "variants[1].beta" in err and "exp.yaml:12" in err


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err.strip() == f"evalkit: error: {tmp_path / 'nope.yaml'}: no such file"


def test_invalid_yaml_names_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, "name: x\nbase_model: [a, b\nseed: 1\n")))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "invalid YAML" in err and "exp.yaml:" in err


def test_missing_required_key(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, "name: x\n")))
    assert code == 2
    assert "base_model: required key missing" in err


def test_unknown_dataset_reference(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'other'"):
        load_experiment(write(tmp_path, GOOD.replace("data: pairs\n    loss: dpop", "data: other\n    loss: dpop")))


def test_set_overrides_are_typed(tmp_path):
    p = write(tmp_path, GOOD)
    exp = load_experiment(p, ["variants[1].beta=0.5", "variants.dpo.max_steps=7", "seed=3",
                              "name=123", "variants.dpop.lambda=5"])
    assert exp.variants[1].beta == 0.5 and isinstance(exp.variants[1].beta, float)
    assert exp.variants[0].max_steps == 7
    assert exp.seed == 3
    assert exp.name == "123"  # a string field keeps the text as given
    assert exp.variants[1].dpop_lambda == 5.0


def test_set_by_item_name_and_mapping_key_is_typed_like_by_index(tmp_path):
    """A list item addressed by its name, or a mapping entry by its key, gets the field's
    type exactly as the same item addressed by index does (a string stays a string)."""
    p = write(tmp_path, GOOD.replace("  pairs: {path: data/pairs.jsonl}", "  pairs: {path: data/pairs.jsonl}\n  '2024': {path: b.jsonl}"))
    exp = load_experiment(p, ["variants.dpop.data=2024", "datasets.pairs.path=123", "datasets.pairs.split=7"])
    assert exp.variants[1].data == "2024"
    assert exp.datasets["pairs"].path == "123" and exp.datasets["pairs"].split == "7"
    by_index = load_experiment(p, ["variants[1].data=2024"])
    assert by_index.variants[1].data == exp.variants[1].data
    assert load_experiment(p, ["variants.dpop.beta=0.25"]).variants[1].beta == 0.25


def test_set_override_bad_value_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, GOOD)), "--set", "variants[0].beta=high")
    assert code == 2 and "variants[0].beta" in err and len(err.strip().splitlines()) == 1


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    p = write(tmp_path, GOOD.replace("loss: dpo\n", "loss: dpo\n    colour: red\n", 1))
    res = subprocess.run([sys.executable, "-m", "evalkit.cli", "validate", str(p)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("variants[0].colour: unknown key")


@pytest.mark.parametrize("loss, extra, key", [("ipo", "label_smoothing: 0.4", "label_smoothing"),
                                              ("dpo", "lambda: 5", "lambda"),
                                              ("hinge", "{beta_chosen: 0.1, beta_rejected: 0.2}", "beta_chosen")])
def test_option_the_loss_does_not_take_is_one_line(tmp_path, capsys, loss, extra, key):
    if extra.startswith("{"):
        text = GOOD.replace("loss: dpop\n    beta: 0.3", f"loss: {loss}\n    beta_chosen: 0.1\n    beta_rejected: 0.2")
    else:
        text = GOOD.replace("loss: dpop\n    beta: 0.3", f"loss: {loss}\n    {extra}")
    code, out, err = run_cli(capsys, "validate", str(write(tmp_path, text)))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"{key}: loss '{loss}' does not take this option" in err and "variants[1]" in err
    # the printed resolved config (every key, defaults included) validates again
    code, out, _ = run_cli(capsys, "validate", str(write(tmp_path, GOOD)))
    code2, _, err2 = run_cli(capsys, "validate", str(write(tmp_path, out, "resolved.yaml")))
    assert code2 == 0, err2


def test_leaderboard_chat_settings_per_model(tmp_path):
    """v2-style chat runs per model: the section's settings, one model's own over them, and
    only that model's leaderboard stage changes with them."""
    from evalkit.runner import Runner
    from evalkit.rundir import RunDir
    from evalkit.stages import chat_settings
    text = GOOD + ("eval:\n  leaderboard:\n    suite: open_llm_v2\n    system_instruction: Be brief.\n"
                   "    per_model:\n      dpop: {apply_chat_template: true, fewshot_as_multiturn: true}\n")
    exp = load_experiment(write(tmp_path, text))
    lb = exp.eval.leaderboard
    assert chat_settings(lb, "dpop") == {"apply_chat_template": True, "fewshot_as_multiturn": True,
                                         "system_instruction": "Be brief."}
    assert chat_settings(lb, "dpo") == {"apply_chat_template": None, "fewshot_as_multiturn": None,
                                        "system_instruction": "Be brief."}
    rd = RunDir("exp1", root=tmp_path)
    a = Runner(exp, rd).hashes
    exp2 = load_experiment(write(tmp_path, text.replace("fewshot_as_multiturn: true", "fewshot_as_multiturn: false")))
    b = Runner(exp2, rd).hashes
    assert a["leaderboard:dpop"] != b["leaderboard:dpop"]
    assert a["leaderboard:dpo"] == b["leaderboard:dpo"] and a["leaderboard:base"] == b["leaderboard:base"]
    with pytest.raises(UserError, match="per_model.nobody: no model named 'nobody'"):
        load_experiment(write(tmp_path, text.replace("      dpop:", "      nobody:")))


@pytest.mark.parametrize("name", ["smaugg", "../experiments/demo"])
def test_unknown_published_table_is_one_line(tmp_path, capsys, name):
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, GOOD + f"report: {{published: {name!r}}}\n")))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "exp.yaml:13: report.published" in err and "unknown published table" in err and "smaug" in err


@pytest.mark.parametrize("variant", ["loss: sft", "loss: dpo\n    onpolicy: {rounds: 1}"])
def test_heldout_pairs_where_it_cannot_apply_is_one_line(tmp_path, capsys, variant):
    text = GOOD.replace("    loss: dpo\n", f"    {variant}\n    heldout_pairs: 8\n")
    assert "heldout_pairs" in text
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, text)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "heldout_pairs" in err, err


def test_stepwise_chunks_with_datasets_is_one_line(tmp_path, capsys):
    text = GOOD.replace("  pairs: {path: data/pairs.jsonl}", "  pairs: {path: data/pairs.jsonl}\n  more: {path: data/more.jsonl}")
    text = text.replace("    beta: 0.3", "    beta: 0.3\n    stepwise: {datasets: [pairs, more], chunks: 3}")
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, text)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "chunks" in err, err


def test_a_packaged_suite_edit_reruns_its_leaderboard_stages(tmp_path, monkeypatch):
    """A packaged suite is named, not given as a file; its bytes (say open_llm_v1's
    add_bos_token) still decide whether a finished leaderboard stage is up to date."""
    import shutil

    from evalkit.eval import suites
    from evalkit.runner import Runner
    from evalkit.rundir import RunDir
    exp = load_experiment(write(tmp_path, GOOD + "eval:\n  leaderboard: {suite: open_llm_v1}\n"))
    rd = RunDir("exp1", root=tmp_path)
    before = Runner(exp, rd).hashes
    copy = tmp_path / "suites"
    shutil.copytree(suites.SUITES_DIR, copy)
    text = (copy / "open_llm_v1.yaml").read_text()
    (copy / "open_llm_v1.yaml").write_text(text.replace("model_args: {add_bos_token: false}", "model_args: {}"))
    monkeypatch.setattr(suites, "SUITES_DIR", copy)
    after = Runner(exp, rd).hashes
    assert all(before[k] != after[k] for k in before if k.startswith("leaderboard:"))
    assert all(before[k] == after[k] for k in before if k.startswith("train:"))
