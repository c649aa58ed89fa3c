"""report_to: training metrics in TensorBoard event files (offline), one line for a missing tracker."""
import importlib.util
import textwrap

import pytest

from evalkit.cli import main
from evalkit.config import load_experiment
from evalkit.rundir import RunDir, read_jsonl
from evalkit.runner import train_experiment


def write(tmp_path, base, report_to):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: tr
        base_model: {base}
        report_to: {report_to}
        datasets:
          math: {{generate: metamath_synthetic, n: 16, seed: 1}}
        variants:
          - {{name: dpop, data: math, loss: dpop, beta: 0.3, learning_rate: 3.0e-4, max_steps: 4, batch_size: 4,
             max_length: 160, max_prompt_length: 96, logging_steps: 2}}
        """))
    return p


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_events_hold_the_training_metrics(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    exp = load_experiment(write(tmp_path, tiny_model_dir, "[tensorboard]"))
    rd = RunDir("tr", reports=tmp_path / "reports", checkpoints=tmp_path / "checkpoints")
    train_experiment(exp, rd=rd, progress=False)
    runs = [p for p in (rd.reports / "tracking").rglob("events.out.tfevents.*")]
    assert runs, list((rd.reports / "tracking").rglob("*"))
    acc = EventAccumulator(str(runs[0].parent))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    logged = read_jsonl(rd.train_metrics("dpop"))
    assert [s for s, _ in loss] == [r["step"] for r in logged] == [2, 4]
    assert [v for _, v in loss] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert "train/logps_chosen" in acc.Tags()["scalars"]


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_missing_tracker_is_one_line_before_any_work(tmp_path, tiny_model_dir, capsys, monkeypatch, tracker):
    monkeypatch.chdir(tmp_path)
    if importlib.util.find_spec(tracker) is not None:
        pytest.skip(f"{tracker} is installed")
    p = write(tmp_path, tiny_model_dir, f"[{tracker}]")
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"evalkit: error: report_to: {tracker} is not installed (pip install {tracker}), "
                   "or remove it from report_to")
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_tracker_names_the_key(tmp_path, tiny_model_dir, capsys):
    assert main(["validate", str(write(tmp_path, tiny_model_dir, "[comet]"))]) == 2
    assert "report_to" in capsys.readouterr().err
