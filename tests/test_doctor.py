"""``llmrec doctor``: reports and cleans what crashes leave behind (issue 13)."""

from __future__ import annotations

import json

import pytest

from llmrec import cli
from llmrec.routers import load_router, make_router


def call(*args):
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


def test_doctor_reports_then_cleans(tmp_path, synth, capsys):
    models = tmp_path / "models"
    make_router("best-single").fit(synth).save(models / "ok")
    make_router("best-single").fit(synth).save(models / "gone")
    (models / "gone").rename(models / ".gone.old")          # an interrupted swap
    (models / ".ok.tmpdead").mkdir()                          # a dead save
    make_router("random", random_state=0).fit(synth).save(models / "bad")
    man = json.loads((models / "bad" / "manifest.json").read_text())
    man["llms"] = man["llms"][:2]                             # a corrupt model
    (models / "bad" / "manifest.json").write_text(json.dumps(man))
    (tmp_path / "fb.jsonl").write_bytes(b'{"a": 1}\n{"a": 2')  # a torn log
    assert call("doctor", tmp_path) == 1
    out = capsys.readouterr().out
    for kind in ("interrupted-swap", "dead-save", "corrupt-model", "torn-log"):
        assert kind in out
    assert (models / ".gone.old").exists()  # reporting changes nothing
    assert call("doctor", "--clean", tmp_path) == 1  # the corrupt model stays reported
    assert load_router(models / "gone").name == "best-single"
    assert not (models / ".ok.tmpdead").exists()
    assert (tmp_path / "fb.jsonl").read_bytes() == b'{"a": 1}\n'
    capsys.readouterr()
    import shutil
    shutil.rmtree(models / "bad")
    assert call("doctor", tmp_path) == 0  # only the moved-aside tail is listed
    assert "torn-tail-file" in capsys.readouterr().out


def test_doctor_missing_path_is_a_user_error(tmp_path):
    assert call("doctor", tmp_path / "nope") == 2
