"""Router persistence (llmrec.routers.base): round trip, corruption, versions,
interrupted saves and encoder mismatches, seen from the user's side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.encoders import TfidfEncoder
from llmrec.errors import ModelFormatError
from llmrec.routers import load_router, make_router
from llmrec.routers import base as router_base


def small_encoder():
    return TfidfEncoder(dim=16, n_features=2 ** 12)


@pytest.fixture(scope="module")
def knn(synth):
    return make_router("knn", k=5).fit(synth, encoder=small_encoder())


@pytest.fixture()
def saved(tmp_path, knn):
    return knn.save(tmp_path / "model")


PROMPTS = ["area of a circle with radius two", "the court ruled on the contract",
           "python function returns a list"]


def test_round_trip_knn(saved, knn, synth):
    man = json.loads((saved / "manifest.json").read_text())
    assert man["format_version"] == router_base.MODEL_FORMAT_VERSION
    assert man["router"] == "knn" and man["params"]["k"] == 5
    assert set(man["files"]) == {"router.npz", "encoder.npz", "train_prompts.npz"}
    assert man["featurizer"]["encoder_fingerprint"] == knn.featurizer_.encoder.fingerprint
    r2 = load_router(saved)
    np.testing.assert_array_equal(r2.score(PROMPTS), knn.score(PROMPTS))
    n1, s1 = knn.recommend(PROMPTS, k=3)
    n2, s2 = r2.recommend(PROMPTS, k=3)
    assert (n1 == n2).all() and np.array_equal(s1, s2)
    assert r2.llm_names_ == synth.llm_names
    np.testing.assert_array_equal(r2.llm_costs_, knn.llm_costs_)


def test_round_trip_best_single(tmp_path, synth):
    r = make_router("best-single").fit(synth)
    r2 = load_router(r.save(tmp_path / "b"))
    assert r2.featurizer_ is None and not (tmp_path / "b" / "encoder.npz").exists()
    np.testing.assert_array_equal(r2.score(["x"]), r.score(["x"]))


def test_save_overwrites_a_model_but_not_other_folders(tmp_path, synth, knn):
    d = knn.save(tmp_path / "m")
    make_router("best-single").fit(synth).save(d)
    assert load_router(d).name == "best-single"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    with pytest.raises(Exception, match="not a saved llmrec model"):
        knn.save(other)
    assert (other / "a.txt").read_text() == "mine"


@pytest.mark.parametrize("fname", ["router.npz", "encoder.npz"])
def test_flipped_bytes_are_refused(saved, fname):
    p = saved / fname
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=f"{fname}.*checksum mismatch"):
        load_router(saved)


def test_missing_or_corrupt_files(saved, tmp_path):
    (saved / "router.npz").unlink()
    with pytest.raises(ModelFormatError, match="router.npz: missing"):
        load_router(saved)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="corrupt manifest"):
        load_router(saved)
    with pytest.raises(ModelFormatError, match="no manifest.json"):
        load_router(tmp_path / "nowhere")


def _edit_manifest(path: Path, **changes):
    man = json.loads((path / "manifest.json").read_text())
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            man[a][b] = v
        else:
            man[k] = v
    (path / "manifest.json").write_text(json.dumps(man))


def test_wrong_format_version(saved):
    _edit_manifest(saved, format_version=router_base.MODEL_FORMAT_VERSION + 1)
    with pytest.raises(ModelFormatError, match="format version .*refit"):
        load_router(saved)


def test_unknown_router_type_and_foreign_manifest(saved):
    _edit_manifest(saved, router="no-such-router")
    with pytest.raises(ModelFormatError, match="unknown router type"):
        load_router(saved)
    _edit_manifest(saved, format="something.else")
    with pytest.raises(ModelFormatError, match="not an llmrec router"):
        load_router(saved)


def test_interrupted_save_keeps_old_model(tmp_path, synth, knn, monkeypatch):
    d = knn.save(tmp_path / "m")
    before = knn.score(PROMPTS)
    new = make_router("best-single").fit(synth)
    real_savez = np.savez

    def boom(*a, **k):  # write the arrays, then die before the manifest exists
        real_savez(*a, **k)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(router_base.np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        new.save(d)
    monkeypatch.setattr(router_base.np, "savez", real_savez)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dir left
    r = load_router(d)
    assert r.name == "knn"
    np.testing.assert_array_equal(r.score(PROMPTS), before)


def test_interrupted_swap_keeps_old_model(tmp_path, synth, knn, monkeypatch):
    """An exception between moving the old directory away and moving the new one in."""
    d = knn.save(tmp_path / "m")
    new = make_router("best-single").fit(synth)
    real_rename = Path.rename

    def rename(self, target):
        if ".tmp" in self.name and Path(target).name == "m":
            raise OSError("disk full")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="disk full"):
        new.save(d)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert load_router(d).name == "knn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_half_written_directory_does_not_load(saved):
    (saved / "encoder.npz").unlink()  # a directory whose copy was cut short
    with pytest.raises(ModelFormatError, match="encoder.npz"):
        load_router(saved)


def test_refuses_mismatched_encoder(saved, knn, synth):
    other = small_encoder().fit(synth.texts[:100])
    assert other.fingerprint != knn.featurizer_.encoder.fingerprint
    with pytest.raises(ModelFormatError, match="does not match"):
        load_router(saved, encoder=other)
    unfitted = small_encoder()
    with pytest.raises(ModelFormatError, match="does not match"):
        load_router(saved, encoder=unfitted)
    same = TfidfEncoder.from_state(knn.featurizer_.encoder.get_config(),
                                   knn.featurizer_.encoder.get_arrays())
    r = load_router(saved, encoder=same)
    np.testing.assert_array_equal(r.score(PROMPTS), knn.score(PROMPTS))


def test_refuses_encoder_that_changed_since_saving(saved):
    """The stored encoder no longer has the fingerprint the router was fitted with
    (e.g. other weights installed under the same name): refuse, do not serve."""
    _edit_manifest(saved, **{"featurizer.encoder_fingerprint": "tfidf:0000000000000000"})
    with pytest.raises(ModelFormatError, match="fingerprint|does not match"):
        load_router(saved)
