"""Bad input, verb by verb: exit code 2, exactly one line on stderr naming the file, line,
key or value, no traceback, and every file that existed before is byte-identical after."""
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.devserver import Script, ServerThread
from evalkit.eval.serve import free_port

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
    }


EXPECT = {  # a word of the one line each case must print
    "train: preference JSONL not UTF-8": "not UTF-8", "mtbench: answers not UTF-8": "not UTF-8",
    "leaderboard: suite file not UTF-8": "not UTF-8", "contamination: custom benchmark not UTF-8": "not UTF-8",
    "contamination: custom benchmark invalid JSON": "bench_bad.jsonl:2: invalid JSON",
    "pairs arc: rows without question": "missing question", "pairs metamath: --n -5": "--n -5",
    "pairs: --out is a directory": "is a directory", "pairs: --out under /proc": "/proc/evalkit-test",
    "contamination: --n-neighbours 0": "--n-neighbours 0", "contamination: --n-neighbours -1": "--n-neighbours -1",
    "contamination: --n-examples 0": "--n-examples 0", "contamination: --ratio-gen 1.0": "--ratio-gen 1.0",
    "leaderboard: api backend, nothing at the URL": "nothing answers there",
    "mtbench: dead judge URL": "nothing answers there", "mtbench: empty answers file": "no answers",
    "report: empty folder": "no results to report", "report: manifest is a list": "not a manifest record",
    "report: leaderboard.json without tasks": "missing tasks", "report: a newer schema_version": "schema_version 99",
    "run: --force nosuch": "--force nosuch",
    "run: a misspelt lm-eval task, before any training": "unknown lm-eval task 'arc_challange'", "run: --set with broken YAML": "not a YAML value",
    "validate: YAML alias bomb": "alias", "validate: data names a missing dataset": "exp.yaml:7: variants[0].data",
}


def snapshot(root: Path) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in root.rglob("*") if f.is_file()}


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
            code = main(argv)
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
            if problems:
                failures.append(f"{name}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
