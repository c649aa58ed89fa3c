"""The one rule for caches (evalkit.caches): a slot keeps work only for its key, a store reads
an entry only under its own key; a killed build leaves the old content or none."""
import json
import os

import pytest

from evalkit.caches import KINDS, STAMP, Slot, Store


def test_a_slot_keeps_work_for_its_key_and_clears_any_other(tmp_path):
    slot = Slot("stage-scratch", tmp_path / "scratch")
    assert slot.claim("k1") is False and slot.path.is_dir()
    (slot.path / "partial.jsonl").write_text("{}\n")
    assert slot.claim("k1") is True and (slot.path / "partial.jsonl").exists()      # resumes
    assert slot.claim("k1", clear=True) is False and not (slot.path / "partial.jsonl").exists()   # forced
    (slot.path / "partial.jsonl").write_text("{}\n")
    assert slot.claim("k2") is False and not (slot.path / "partial.jsonl").exists()  # other inputs
    (slot.path / STAMP).unlink()                                                      # no key: not trusted
    (slot.path / "partial.jsonl").write_text("{}\n")
    assert slot.claim("k2") is False and not (slot.path / "partial.jsonl").exists()


def test_a_file_slot_keeps_its_key_beside_it(tmp_path):
    answers = tmp_path / "model_answer" / "m.jsonl"
    slot = Slot("answers", answers, file=True, stamp_path=answers.with_suffix(".meta.json"))
    assert slot.claim("a", identity={"model": "x"}) is False
    answers.write_text('{"question_id": 1}\n')
    assert json.loads(answers.with_suffix(".meta.json").read_text())["identity"] == {"model": "x"}
    assert slot.claim("a") is True and answers.exists()
    assert slot.claim("b") is False and not answers.exists()


def test_a_killed_fill_leaves_the_old_content_and_a_finished_one_the_new(tmp_path):
    slot = Slot("sample-data", tmp_path / "sample", stamp_path=tmp_path / "sample" / "sample_key.json")

    def build(text):
        return lambda tmp: (tmp / "data.txt").write_text(text)
    assert slot.fill("k1", build("one")) is False and (slot.path / "data.txt").read_text() == "one"
    assert slot.fill("k1", build("never")) is True and (slot.path / "data.txt").read_text() == "one"

    def killed(tmp):
        (tmp / "data.txt").write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        slot.fill("k2", killed)
    assert (slot.path / "data.txt").read_text() == "one" and slot.stored_key() == "k1"
    assert [p.name for p in tmp_path.iterdir()] == ["sample"], "no temp folder left behind"
    assert slot.fill("k2", build("two")) is False and (slot.path / "data.txt").read_text() == "two"
    file_slot = Slot("generated-data", tmp_path / "rows.jsonl", file=True)
    assert file_slot.fill("g1", lambda tmp: tmp.write_text("row\n")) is False
    assert file_slot.fill("g1", lambda tmp: tmp.write_text("other\n")) is True
    assert file_slot.path.read_text() == "row\n"


def test_a_store_reads_an_entry_only_under_its_key_and_remakes_a_damaged_one(tmp_path):
    store = Store("onpolicy-samples", tmp_path / "samples")
    load = lambda p: json.loads(p.read_text())  # noqa: E731
    assert store.get("k", load) is None
    store.put("k", lambda tmp: tmp.write_text(json.dumps({"samples": [1]})))
    assert store.get("k", load) == {"samples": [1]} and store.get("other", load) is None
    assert store.get("k", load, valid=lambda r: len(r["samples"]) == 2) is None
    store.path("k").write_text("{torn")
    assert store.get("k", load) is None
    assert not [p for p in os.listdir(store.folder) if p.endswith(".tmp")]


def test_every_cache_is_registered_with_its_key():
    with pytest.raises(ValueError):
        Slot("my-cache", "x")
    with pytest.raises(ValueError):
        Store("stage-scratch", "x")          # a slot kind is not a store
    # every kind registered is opened somewhere in evalkit (the tiny and known models name their
    # store folders by key themselves), and every kind opened is registered
    import re
    from pathlib import Path

    import evalkit
    source = "\n".join(p.read_text() for p in Path(evalkit.__file__).parent.rglob("*.py"))
    opened = set(re.findall(r'(?:Slot|Store)\(\s*"([\w-]+)"', source))
    assert opened <= set(KINDS) and set(KINDS) - opened == {"tiny-model", "known-model"}, opened
