import json

import pytest

from evalkit import rundir, schema
from evalkit.errors import UserError
from evalkit.rundir import RunDir, append_jsonl, atomic_write_json, read_json, read_jsonl


def test_atomic_write_survives_crash_mid_write(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"value": 1})

    # Simulate a crash after the new bytes are written but before the rename.
    def crash(fd):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(rundir.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"value": 2, "big": "x" * 100_000})
    monkeypatch.undo()
    assert read_json(target) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temp file left behind"


def test_typed_writes_stamp_the_kinds_version_and_reads_check_it(tmp_path):
    rundir.write("cache_stamp", tmp_path / "a.json", {"kind": "sample-data", "key": "k"})
    assert json.loads((tmp_path / "a.json").read_text())["schema_version"] == schema.version("cache_stamp")
    assert rundir.read("cache_stamp", tmp_path / "a.json")["key"] == "k"
    rundir.append("train_metrics", tmp_path / "m.jsonl", {"step": 1})
    assert rundir.read("train_metrics", tmp_path / "m.jsonl") == [{"schema_version": schema.version("train_metrics"),
                                                                   "step": 1}]
    atomic_write_json(tmp_path / "a.json", {"schema_version": 99, "key": "k"})
    with pytest.raises(UserError, match="schema_version 99"):
        rundir.read("cache_stamp", tmp_path / "a.json")
    # another program's format is written as it is, and read without a version
    rundir.write("mtbench_questions", tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["hi"]}])
    assert json.loads((tmp_path / "q.jsonl").read_text()) == {"question_id": 1, "turns": ["hi"]}
    assert rundir.read("mtbench_questions", tmp_path / "q.jsonl")[0]["question_id"] == 1


def test_torn_jsonl_tail_is_ignored_and_repaired(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"i": 0})
    append_jsonl(path, {"i": 1})
    with open(path, "a") as f:
        f.write('{"i": 2, "text": "half a reco')  # a crash mid-append
    assert [r["i"] for r in read_jsonl(path)] == [0, 1]
    append_jsonl(path, {"i": 3})
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 3]
    assert path.read_text().count("\n") == 3


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        read_jsonl(path)


def test_manifest_keeps_stage_status(tmp_path):
    rd = RunDir("exp", reports=tmp_path / "r", checkpoints=tmp_path / "c")
    rd.write_manifest({"name": "exp"})
    rd.set_stage("train:dpo", "done", seconds=1.5)
    m = rd.write_manifest({"name": "exp", "changed": True})
    assert m["stages"]["train:dpo"]["status"] == "done"
    for key in ("schema_version", "config", "versions", "git_sha", "hardware"):
        assert key in m
    assert m["versions"]["torch"]


def test_hub_model_fingerprint_is_its_commit_before_and_after_download(tmp_path, monkeypatch):
    """A hub id is fingerprinted by the commit it resolves to: the cached snapshot's folder
    name, so the key does not change when the files arrive, and another commit (a new upload)
    is another fingerprint. Offline with nothing cached: the id alone."""
    import hashlib

    from huggingface_hub import constants

    from evalkit.backends.fingerprint import model_fingerprint
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "some-org/some-model"
    bare = model_fingerprint(name)
    assert bare == "hub:" + hashlib.sha256(name.encode()).hexdigest()[:16]
    repo = tmp_path / "hub" / "models--some-org--some-model"
    for commit in ("a" * 40, "b" * 40):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        fp = model_fingerprint(name)
        assert fp == "hub:" + hashlib.sha256(f"{name}@{commit}".encode()).hexdigest()[:16], fp
    assert fp != bare
