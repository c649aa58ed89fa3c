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
