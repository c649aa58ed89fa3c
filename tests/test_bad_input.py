"""Bad input, verb by verb: exit code 2, exactly one line on stderr naming the file, line,
key or value, no traceback, and every file that existed before is byte-identical after."""
import errno
import hashlib
import json
import os
import textwrap
from pathlib import Path


from evalkit.backends.serve import free_port
from evalkit.cli import main
from evalkit.devserver import Script, ServerThread
from report_fixtures import build as build_report_fixture

NOT_UTF8 = b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'


def experiment(root: Path, data: str = "pairs.jsonl", extra: str = "") -> Path:
    p = root / "exp.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: bad
        base_model: some-org/some-model
        datasets:
          pairs: {{path: {root / data}}}
        variants:
          - name: dpo
            data: pairs
        """) + extra)
    return p


def setup_files(root: Path) -> dict[str, list[str]]:
    """The inputs each case uses; returns argv per case (paths inside root)."""
    (root / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (root / "latin1.jsonl").write_bytes(NOT_UTF8)
    (root / "answers_latin1.jsonl").write_bytes(b'{"question_id": 1, "choices": [{"turns": ["\xff"]}]}\n')
    (root / "suite_latin1.yaml").write_bytes(b"name: s\nentries: []  # \xff\n")
    (root / "bench_latin1.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n')
    (root / "bench_bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    (root / "no_question.jsonl").write_text('{"choices": ["a", "b"], "answer": 0}\n')
    (root / "empty.jsonl").write_text("")
    (root / "q.jsonl").write_text('{"question_id": 1, "category": "writing", "turns": ["hi"]}\n')
    (root / "a.jsonl").write_text('{"question_id": 1, "model_id": "m", "choices": [{"index": 0, "turns": ["yo"]}]}\n')
    (root / "outdir").mkdir()
    (root / "outdir" / "keep.txt").write_text("a result that must survive")
    for name, files in {"empty_report": {}, "list_manifest": {"manifest.json": [1, 2]},
                        "no_tasks": {"base/leaderboard.json": {"schema_version": 2, "suite": "s", "average": 0.5}},
                        "newer": {"base/leaderboard.json": {"schema_version": 99, "suite": "s", "tasks": {}, "average": 0}}}.items():
        (root / name).mkdir()
        for rel, obj in files.items():
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / rel).write_text(json.dumps(obj))
    experiment(root / "outdir")   # a good experiment file next to the results
    (root / "typo_suite.yaml").write_text("name: typo\nentries:\n  - {name: a, shots: 0, metric: acc, "
                                          "tasks: [{task: arc_challange}]}\n")
    (root / "typo").mkdir()
    (root / "typo" / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    experiment(root / "typo", extra=f"eval:\n  leaderboard: {{suite: {root / 'typo_suite.yaml'}}}\n")
    bomb = "a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)) + "name: bomb\nbase_model: x\n"
    (root / "bomb.yaml").write_text(bomb)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    e = str(root / "outdir" / "exp.yaml")
    # issue 23's reproductions
    (root / "bench5.jsonl").write_text("".join(json.dumps({"text": f"item {i} has a few words in it"}) + "\n"
                                               for i in range(5)))
    (root / "short.jsonl").write_text("".join(json.dumps({"text": "one"}) + "\n" for _ in range(5)))
    (root / "twins1.jsonl").write_text('{"text": "a twin with some words"}\n')
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    (root / "dup.yaml").write_text("name: dup\nbase_model: m\nseed: 1\nseed: 2\n")
    os.mkfifo(root / "fifo.yaml")
    (root / "escape").mkdir()
    (root / "escape" / "exp.yaml").write_text(textwrap.dedent("""\
        name: esc
        base_model: some-org/some-model
        datasets:
          ../../../escape: {generate: metamath_synthetic, n: 2}
        variants:
          - {name: dpo, data: ../../../escape}
        """))

    (root / "pq").mkdir()
    pq = experiment(root / "pq", "../corrupt.parquet")
    pq.write_text(pq.read_text().replace("name: bad", "name: pq"))   # its own run folder

    fx = build_report_fixture(root / "fxroot")    # a good result folder

    def with_eval(name: str, section: str) -> str:
        (root / name).mkdir()
        (root / name / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
        return str(experiment(root / name, extra=f"eval:\n  {section}\n"))
    return {
        "train: preference JSONL not UTF-8": ["train", str(experiment(root, "latin1.jsonl"))],
        "mtbench: answers not UTF-8": ["mtbench", str(root / "answers_latin1.jsonl"), "--judge", "j", "--questions", str(root / "q.jsonl")],
        "leaderboard: suite file not UTF-8": ["leaderboard", "x", "--suite", str(root / "suite_latin1.yaml")],
        "contamination: custom benchmark not UTF-8": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench_latin1.jsonl")],
        "contamination: custom benchmark invalid JSON": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench_bad.jsonl")],
        "pairs arc: rows without question": ["pairs", "arc", "--path", str(root / "no_question.jsonl"), "--out", str(root / "p.jsonl")],
        "pairs metamath: --n -5": ["pairs", "metamath", "--n", "-5", "--out", str(root / "p.jsonl")],
        "pairs: --out is a directory": ["pairs", "metamath", "--n", "2", "--out", str(root / "outdir")],
        "pairs: --out under /proc": ["pairs", "metamath", "--n", "2", "--out", "/proc/evalkit-test/p.jsonl"],
        "contamination: --n-neighbours 0": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k", "--n-neighbours", "0"],
        "contamination: --n-neighbours -1": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k", "--n-neighbours", "-1"],
        "contamination: --n-examples 0": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k", "--n-examples", "0"],
        "contamination: --ratio-gen 1.0": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k", "--ratio-gen", "1.0"],
        "contamination: --alpha 1.5": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k", "--alpha", "1.5"],
        "leaderboard: --batch-size many": ["leaderboard", "x", "--batch-size", "many"],
        "leaderboard: api backend, nothing at the URL": ["leaderboard", "x", "--backend", "api", "--base-url", dead],
        "mtbench: dead judge URL": ["mtbench", str(root / "a.jsonl"), "--judge", "j", "--questions", str(root / "q.jsonl"), "--judge-base-url", dead],
        "mtbench: empty answers file": ["mtbench", str(root / "empty.jsonl"), "--judge", "j", "--questions", str(root / "q.jsonl"), "--judge-base-url", "SERVER"],
        "report: empty folder": ["report", str(root / "empty_report"), "--out", str(root / "r.html")],
        "report: manifest is a list": ["report", str(root / "list_manifest"), "--out", str(root / "r.html")],
        "report: leaderboard.json without tasks": ["report", str(root / "no_tasks"), "--out", str(root / "r.html")],
        "report: a newer schema_version": ["report", str(root / "newer"), "--out", str(root / "r.html")],
        "run: --force nosuch": ["run", e, "--force", "nosuch"],
        "run: a misspelt lm-eval task, before any training": ["run", str(root / "typo" / "exp.yaml")],
        "run: --set with broken YAML": ["run", e, "--set", "a.b=[1,2"],
        "validate: YAML alias bomb": ["validate", str(root / "bomb.yaml")],
        "validate: data names a missing dataset": ["validate", e, "--set", "variants.dpo.data=nope"],
        "train: a dataset key that climbs out of the run folder": ["train", str(root / "escape" / "exp.yaml")],
        "validate: learning_rate .inf": ["validate", e, "--set", "variants.dpo.learning_rate=.inf"],
        "validate: a duplicate YAML key": ["validate", str(root / "dup.yaml")],
        "validate: the experiment file is a FIFO": ["validate", str(root / "fifo.yaml")],
        "contamination: --n-examples above the benchmark's size": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench5.jsonl"), "--n-examples", "500"],
        "board: --format parquet --out b.html": ["board", str(root / "outdir"), "--format", "parquet", "--out", str(root / "b.html")],
        "contamination: empty --twins file": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench5.jsonl"), "--n-examples", "2", "--twins", str(root / "empty.jsonl")],
        "contamination: fewer twins than examples": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench5.jsonl"), "--n-examples", "3", "--twins", str(root / "twins1.jsonl")],
        "validate: unknown contamination benchmark": ["validate", with_eval("ct_bench", "contamination: {benchmarks: [gsm8kk]}")],
        "run --dry-run: unknown contamination dtype": ["run", "--dry-run", with_eval("ct_dtype", "contamination: {benchmarks: [gsm8k], dtype: fp8}")],
        "run --dry-run: missing twins file": ["run", "--dry-run", with_eval("ct_twins", f"contamination: {{benchmarks: [gsm8k], twins: {root / 'none.jsonl'}}}")],
        "run --dry-run: missing leaderboard data_dir": ["run", "--dry-run", with_eval("lb_dir", f"leaderboard: {{data_dir: {root / 'no_data'}}}")],
        "pairs: disk full": ["pairs", "metamath", "--n", "2", "--out", str(root / "full.jsonl")],
        "train: corrupt parquet data file": ["train", str(pq)],
        "leaderboard: --limit 0": ["leaderboard", "x", "--limit", "0"],
        "leaderboard: --limit -3": ["leaderboard", "x", "--limit", "-3"],
        "leaderboard: hub data offline, no --data-dir": ["leaderboard", "x", "--limit", "1"],
        "contamination: hub benchmark offline, no --data-dir": ["contamination", "x", "--reference", "y", "--benchmark", "gsm8k"],
        "mtbench: --concurrency 0": ["mtbench", str(root / "a.jsonl"), "--judge", "j", "--questions", str(root / "q.jsonl"), "--concurrency", "0"],
        "contamination: second benchmark too short for a prefix": ["contamination", "x", "--reference", "y", "--benchmark", str(root / "bench5.jsonl"), "--benchmark", str(root / "short.jsonl"), "--n-examples", "2", "--out", str(root / "ct_out")],
        "pairs: --out in a read-only folder": ["pairs", "metamath", "--n", "2", "--out", "/sys/evalkit-p.jsonl"],
        "train: WORLD_SIZE=2 but accelerate connects one process": ["train", e],
        "report: --out is a directory": ["report", str(fx), "--out", str(root / "outdir")],
    }


def _disk_full(monkeypatch) -> None:
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", fsync)


def _fifo_writer(monkeypatch) -> None:
    """A writer that closes the FIFO at once if anything opens it for reading (so a reader
    that blocks on it sees an empty file instead of hanging the test)."""
    import threading
    import time
    fifo, stop = Path("fifo.yaml").resolve(), threading.Event()

    def feed():
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:            # ENXIO: no reader yet
                time.sleep(0.01)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    _STOPS.append(stop)                # set after the case


_STOPS: list = []


PATCH = {  # what a case changes around it (undone after the case)
    "validate: the experiment file is a FIFO": _fifo_writer,
    "pairs: disk full": _disk_full,
    "train: WORLD_SIZE=2 but accelerate connects one process": lambda mp: mp.setenv("WORLD_SIZE", "2"),
}


EXPECT = {  # a word of the one line each case must print
    "train: preference JSONL not UTF-8": "not UTF-8", "mtbench: answers not UTF-8": "not UTF-8",
    "leaderboard: suite file not UTF-8": "not UTF-8", "contamination: custom benchmark not UTF-8": "not UTF-8",
    "contamination: custom benchmark invalid JSON": "bench_bad.jsonl:2: invalid JSON",
    "pairs arc: rows without question": "missing question", "pairs metamath: --n -5": "--n -5",
    "pairs: --out is a directory": "is a directory", "pairs: --out under /proc": "/proc/evalkit-test",
    "contamination: --n-neighbours 0": "--n-neighbours 0", "contamination: --n-neighbours -1": "--n-neighbours -1",
    "contamination: --n-examples 0": "--n-examples 0", "contamination: --ratio-gen 1.0": "--ratio-gen 1.0",
    "contamination: --alpha 1.5": "--alpha 1.5: must be below 1", "leaderboard: --batch-size many": "--batch-size many",
    "leaderboard: api backend, nothing at the URL": "nothing answers there",
    "mtbench: dead judge URL": "nothing answers there", "mtbench: empty answers file": "no answers",
    "report: empty folder": "no results to report", "report: manifest is a list": "not a manifest record",
    "report: leaderboard.json without tasks": "missing tasks", "report: a newer schema_version": "schema_version 99",
    "run: --force nosuch": "--force nosuch",
    "run: a misspelt lm-eval task, before any training": "unknown lm-eval task 'arc_challange'", "run: --set with broken YAML": "not a YAML value",
    "validate: YAML alias bomb": "alias", "validate: data names a missing dataset": "exp.yaml:7: variants[0].data",
    "train: a dataset key that climbs out of the run folder": "exp.yaml:3: datasets: '../../../escape' cannot name",
    "validate: learning_rate .inf": "variants[0].learning_rate: Input should be a finite number",
    "validate: a duplicate YAML key": "dup.yaml:4: seed: duplicate key (first at line 3)",
    "validate: the experiment file is a FIFO": "fifo.yaml: not a regular file",
    "contamination: --n-examples above the benchmark's size": "--n-examples 500: benchmark",
    "board: --format parquet --out b.html": "suffix says html",
    "contamination: empty --twins file": "empty.jsonl: no twins",
    "contamination: fewer twins than examples": "twins1.jsonl: 1 twins, fewer than the 3 examples",
    "validate: unknown contamination benchmark": "exp.yaml:9: eval.contamination.benchmarks: unknown benchmark 'gsm8kk'",
    "run --dry-run: unknown contamination dtype": "eval.contamination.dtype",
    "run --dry-run: missing twins file": "none.jsonl: use 'numbers' or an existing JSONL",
    "run --dry-run: missing leaderboard data_dir": "eval.leaderboard.data_dir: ",
    "pairs: disk full": "full.jsonl: No space left on device",
    "train: corrupt parquet data file": "corrupt.parquet: not a readable Parquet file",
    "leaderboard: --limit 0": "--limit 0: must be at least 1", "leaderboard: --limit -3": "--limit -3",
    "leaderboard: hub data offline, no --data-dir": "is not in the local cache and the hub is offline",
    "contamination: hub benchmark offline, no --data-dir": "give --data-dir",
    "mtbench: --concurrency 0": "--concurrency 0: must be at least 1",
    "contamination: second benchmark too short for a prefix": "short.jsonl: example 0: text too short",
    "pairs: --out in a read-only folder": "error: /sys/evalkit-p.jsonl: ",
    "train: WORLD_SIZE=2 but accelerate connects one process": "WORLD_SIZE=2",
    "report: --out is a directory": "outdir: Is a directory",
}


def snapshot(root: Path) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in root.rglob("*") if f.is_file()}  # no FIFOs


def written_outside(root: Path, before: dict[str, str]) -> list[str]:
    """New files other than a run's own outputs (reports/, checkpoints/ under the cwd)."""
    own = (root / "reports", root / "checkpoints")
    return [f for f in snapshot(root) if f not in before and not any(Path(f).is_relative_to(o) for o in own)]


def test_every_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = setup_files(tmp_path)
    assert set(cases) == set(EXPECT)
    failures = []
    with ServerThread(Script()) as srv:
        for name, argv in cases.items():
            argv = [srv.base_url if a == "SERVER" else a for a in argv]
            before = snapshot(tmp_path)
            capsys.readouterr()
            with monkeypatch.context() as mp:
                if name in PATCH:
                    PATCH[name](mp)
                code = main(argv)
            while _STOPS:
                _STOPS.pop().set()
            err = capsys.readouterr().err
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            problems = []
            if code != 2:
                problems.append(f"exit {code}")
            if len(lines) != 1:
                problems.append(f"{len(lines)} stderr lines: {lines[:3]}")
            elif EXPECT[name] not in lines[0] or not lines[0].startswith("evalkit: error: "):
                problems.append(f"line {lines[0]!r} lacks {EXPECT[name]!r}")
            if "Traceback" in err:
                problems.append("traceback")
            after = snapshot(tmp_path)
            changed = [f for f in before if after.get(f) != before[f]]
            if changed:
                problems.append(f"changed {changed}")
            outside = written_outside(tmp_path, before) + \
                [str(f) for f in tmp_path.parent.glob("escape*")]   # a name that climbed out of tmp_path
            if outside:
                problems.append(f"wrote {outside}")
            if problems:
                failures.append(f"{name}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
