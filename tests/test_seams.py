"""Sequences of commands a user runs, with a change in between: the results must follow
the change, and nothing finished may be redone or deleted."""
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.rundir import RunDir, read_json


def write_experiment(tmp_path: Path, base: Path, data: Path) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: seams
        base_model: {base}
        datasets:
          pairs: {{path: {data}}}
        variants:
          - &dpo {{name: dpo, data: pairs, loss: dpo, beta: 0.3, learning_rate: 3.0e-4, max_steps: 2,
                  batch_size: 4, max_length: 160, max_prompt_length: 96, logging_steps: 1}}
          - {{<<: *dpo, name: dpop, loss: dpop, lambda: 50}}
          - {{<<: *dpo, name: onpolicy, loss: dpop, lambda: 50, max_length: 200,
              onpolicy: {{rounds: 1, samples: 2, prompts: 4, min_gap: 0.5, max_new_tokens: 16,
                          steps_per_round: 2, mixing_ratio: 0.5}}}}
        report: {{enabled: false}}
        """))
    return p


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(f.relative_to(folder)): (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
            for f in sorted(folder.rglob("*")) if f.is_file()}


def plan(capsys, exp: Path) -> dict[str, tuple[str, str]]:
    capsys.readouterr()
    assert main(["run", str(exp), "--dry-run"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        name, what, *why = line.split()
        rows[name] = (what, " ".join(why[:2]))
    return rows


@pytest.mark.slow
def test_train_then_run_keeps_every_checkpoint_and_data_edits_retrain(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from evalkit.train.builders import metamath_synthetic_pairs
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(8, 1)))
    exp = write_experiment(tmp_path, tiny_model_dir, data)
    rd = RunDir("seams")

    # 1. `evalkit train`, then `evalkit run`: nothing retrains, no checkpoint file is touched
    assert main(["train", str(exp)]) == 0
    before = {v: snapshot(rd.checkpoint(v)) for v in ("dpo", "dpop", "onpolicy")}
    assert all(before.values())
    rows = plan(capsys, exp)
    assert {n: w for n, (w, _) in rows.items()} == {"base": "skip", "data:pairs": "skip", "train:dpo": "skip",
                                                   "train:dpop": "skip", "train:onpolicy": "skip"}
    assert main(["run", str(exp)]) == 0
    assert "every stage is up to date" in capsys.readouterr().out
    assert {v: snapshot(rd.checkpoint(v)) for v in before} == before
    assert main(["train", str(exp), "--only", "dpop"]) == 0          # and train again: still nothing
    assert snapshot(rd.checkpoint("dpop")) == before["dpop"]

    # 2. the data file is rewritten in place (same path, more rows): data and every variant rerun
    data.write_text("".join(json.dumps(r) + "\n" for r in metamath_synthetic_pairs(19, 2)))
    rows = plan(capsys, exp)
    assert rows["base"][0] == "skip"
    for stage in ("data:pairs", "train:dpo", "train:dpop", "train:onpolicy"):
        assert rows[stage] == ("run", "inputs changed"), (stage, rows[stage])
    assert main(["train", str(exp), "--only", "dpo"]) == 0
    assert read_json(rd.train_metadata("dpo"))["data"]["n_pairs"] == 19
    assert snapshot(rd.checkpoint("dpop")) == before["dpop"], "--only dpo leaves dpop alone"
    rows = plan(capsys, exp)
    assert rows["train:dpo"][0] == "skip" and rows["train:dpop"] == ("run", "inputs changed")
