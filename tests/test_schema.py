"""Typed result files: versions checked on read, older versions upgraded, the README's
file section in step with the definitions, and real files matching their types."""
import json
import re
from pathlib import Path

import pytest

from evalkit import schema
from evalkit.errors import UserError

REPO = Path(__file__).resolve().parent.parent

FILES = {"leaderboard.json": "leaderboard", "contamination.json": "contamination", "evalkit.json": "evalkit",
         "manifest.json": "manifest", "summary.json": "mtbench_summary"}


def assert_matches_schema(root: Path) -> int:
    """Every result file under root has only documented keys and a version we read."""
    n = 0
    for f in root.rglob("*.json"):
        kind = FILES.get(f.name)
        if kind is None or "lm_eval" in str(f):
            continue
        rec = schema.read(f, kind)
        extra = set(rec) - schema.fields(kind)
        assert not extra, f"{f}: undocumented keys {sorted(extra)} (add them to evalkit.schema)"
        if kind == "leaderboard":
            for t in rec["tasks"].values():
                assert "," not in t["metric"] and t["filter"], t
        n += 1
    return n


# save_pretrained()'s own files in a checkpoint: the model's format, not records of evalkit's
HF_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "chat_template.json", "added_tokens.json", "vocab.json"}


def assert_reads_back(rd, *roots: Path) -> set[str]:
    """RunDir.records() finds every JSON / JSONL file under `roots` (save_pretrained's own files
    aside) and RunDir.read reads each through its schema (typed kinds: documented keys only).
    Returns the kinds read."""
    read_paths, kinds = set(), set()
    for kind, where in rd.records():
        rec = rd.read(kind, **where)
        assert rec or kind in schema.JSONL_KINDS, (kind, where)
        if kind in schema.SCHEMAS or kind in schema.BESIDE:
            assert set(rec) <= schema.fields(kind), (kind, where, sorted(set(rec) - schema.fields(kind)))
        read_paths.add(rd.path(kind, **where).resolve())
        kinds.add(kind)
    on_disk = {f.resolve() for root in roots for pattern in ("*.json", "*.jsonl") for f in root.rglob(pattern)
               if f.name not in HF_FILES}
    assert on_disk - read_paths == set(), "files RunDir does not read"
    return kinds


def test_newer_or_unknown_versions_are_one_line_errors(tmp_path):
    f = tmp_path / "leaderboard.json"
    f.write_text(json.dumps({"schema_version": 99, "tasks": {}}))
    with pytest.raises(UserError, match=r"leaderboard.json: schema_version 99 is not one this evalkit reads"):
        schema.read(f, "leaderboard")
    f.write_text(json.dumps([1, 2]))
    with pytest.raises(UserError, match="not a leaderboard record"):
        schema.read(f, "leaderboard")
    f.write_text(json.dumps({"suite": "s", "average": 0, "tasks": {}}))
    with pytest.raises(UserError, match="schema_version missing"):
        schema.read(f, "leaderboard")
    f.write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        schema.read(f, "leaderboard")


def test_version_1_leaderboard_files_are_read_with_metric_and_filter_apart(tmp_path):
    f = tmp_path / "leaderboard.json"
    f.write_text(json.dumps({"schema_version": 1, "suite": "s", "average": 0.4, "tasks": {
        "gsm8k": {"metric": "exact_match,strict-match", "value": 0.5},
        "arc": {"metric": "acc_norm", "value": 0.25}}}))
    rec = schema.read(f, "leaderboard")
    assert rec["tasks"]["gsm8k"]["metric"] == "exact_match" and rec["tasks"]["gsm8k"]["filter"] == "strict-match"
    assert rec["tasks"]["arc"]["filter"] == "none"


def test_readme_files_section_is_generated_from_the_definitions():
    """The README's "Files" section is exactly `python -m evalkit.schema`'s output, and it
    names every field of every file."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Files\n.*?(?=^## )", text, re.S | re.M)
    assert m, "README has no '## Files' section"
    assert m.group(0).strip() == schema.markdown().strip(), "regenerate it: python -m evalkit.schema"
    for kind in schema.SCHEMAS:
        for k in schema.fields(kind):
            assert f"`{k}`" in m.group(0)
