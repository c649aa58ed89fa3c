"""The built wheel works on its own: nothing at run time reads the source tree."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_runs_from_an_empty_sys_path_entry_in_an_unrelated_directory(tmp_path):
    # 1. build the wheel from a copy of the sources (the checkout stays untouched)
    src = tmp_path / "src"
    shutil.copytree(REPO / "evalkit", src / "evalkit", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("evalkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in ("evalkit/data/suites/open_llm_v1.yaml", "evalkit/data/experiments/demo.yaml",
                     "evalkit/data/mtbench/sample_questions.jsonl", "evalkit/data/published/smaug.yaml"):
        assert packaged in names, f"{packaged} missing from the wheel"
    # 2. unpack it onto an empty sys.path entry; run from a directory that is not the checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)

    where = run("-c", "import evalkit; print(evalkit.__file__)")
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    show = run("-m", "evalkit.cli", "leaderboard", "--show")
    assert show.returncode == 0 and "open_llm_v1" in show.stdout and "gsm8k" in show.stdout, show.stderr
    demo = str(site / "evalkit" / "data" / "experiments" / "demo.yaml")
    validate = run("-m", "evalkit.cli", "validate", demo)
    assert validate.returncode == 0 and "name: demo" in validate.stdout, validate.stderr
    plan = run("-m", "evalkit.cli", "run", demo, "--dry-run")
    assert plan.returncode == 0 and "train:dpop" in plan.stdout, plan.stderr
    questions = run("-c", "from evalkit.eval.mtbench import load_data; d = load_data('sample'); "
                          "print(len(d.questions), sorted(d.prompts)[0])")
    assert questions.returncode == 0 and int(questions.stdout.split()[0]) >= 4, questions.stderr
    assert not (work / "checkpoints").exists() and not (work / "reports").exists()
