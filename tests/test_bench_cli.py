"""Every bench script answers --help, and refuses an --out inside the checkout (exit 2) before
it does any work. One interpreter runs them all (their imports are the cost)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = r"""
import runpy, sys, contextlib, io
for path, argv in CASES:
    sys.argv = [path] + argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    print(repr((path, argv[0], code, out.getvalue()[:2000], err.getvalue()[-300:])))
"""


def test_bench_scripts_help_and_out_checks():
    benches = sorted(p for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_"))
    assert len(benches) >= 4
    cases = [(str(p), a) for p in benches for a in (["--help"], ["--out", str(REPO / "bench-out")])]
    res = subprocess.run([sys.executable, "-c", f"CASES = {cases!r}\n" + SCRIPT], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [eval(line) for line in res.stdout.splitlines() if line.startswith("(")]
    assert len(rows) == len(cases)
    for path, first, code, out, err in rows:
        name = Path(path).name
        if first == "--help":
            assert code == 0 and "--out" in out, (name, code, err)
        else:
            assert code == 2 and "inside the checkout" in err, (name, code, err)
    assert not (REPO / "bench-out").exists()


def test_benches_time_the_original_and_need_three_reps(tmp_path):
    """The contamination bench times the original code itself (a checkout given with
    --original; nothing of it is in evalkit), and both comparison benches refuse fewer than 3
    repetitions."""
    cases = [(str(REPO / "bench" / "contamination_vs_reference.py"), ["--out", str(tmp_path / "c")]),
             (str(REPO / "bench" / "contamination_vs_reference.py"),
              ["--out", str(tmp_path / "c"), "--original", str(tmp_path), "--reps", "2"]),
             (str(REPO / "bench" / "contamination_vs_reference.py"), ["--out", str(tmp_path / "c"),
                                                                      "--original", str(tmp_path)]),
             (str(REPO / "bench" / "train_vs_trl.py"), ["--out", str(tmp_path / "t"), "--reps", "2"])]
    res = subprocess.run([sys.executable, "-c", f"CASES = {cases!r}\n" + SCRIPT], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [eval(line) for line in res.stdout.splitlines() if line.startswith("(")]
    assert [r[2] for r in rows[:2]] + [rows[3][2]] == [2, 2, 2]
    assert "--original DIR" in rows[0][4] and "at least 3" in rows[1][4] and "at least 3" in rows[3][4]
    assert "no src/run.py there" in str(rows[2][2])      # not a checkout of the original: said, nothing run
    assert not (REPO / "src").exists()
