"""Contrastive fine-tuning of MiniLM on records (issue 12, item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.datasets import make_synthetic
from llmrec.encoders import make_encoder
from llmrec.encoders.finetune import (FINETUNE_INFO, contrastive_targets,
                                      finetune_sentence_encoder)
from llmrec.errors import ConfigError, DataFormatError


def test_targets_are_relative_to_the_prompt_mean():
    S = np.array([[1.0, 0.0, 1.0],        # binary: correct vs wrong
                  [1.0, 1.0, 1.0],        # every LLM equal: no signal, skipped
                  [0.2, np.nan, 0.8],     # unobserved cells are neither
                  [0.5, 0.9, 0.1],        # a reference at a constant 0.5 is not "good"
                  [np.nan, np.nan, 0.3]])  # one observed LLM: skipped
    rows, pos, neg = contrastive_targets(S)
    assert rows.tolist() == [0, 2, 3]
    assert pos.astype(int).tolist() == [[1, 0, 1], [0, 0, 1], [0, 1, 0]]
    assert neg.astype(int).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    # judge scores on another scale give the same targets as their affine images
    r2, p2, n2 = contrastive_targets(S * 9 + 1)
    assert r2.tolist() == rows.tolist() and (p2 == pos).all() and (n2 == neg).all()


def test_bad_settings_and_records_are_clear_errors(tmp_path):
    rec = make_synthetic(60, 3, seed=0)
    for kw in ({"layers": 0}, {"max_seconds": 0}, {"epochs": -1}, {"batch_size": 1},
               {"temperature": 0}, {"max_seq_length": 2}, {"lr": "fast"}):
        with pytest.raises(ConfigError, match="finetune"):
            finetune_sentence_encoder(rec, tmp_path / "m", **kw)
    with pytest.raises(DataFormatError, match="at least two"):
        finetune_sentence_encoder(rec.select_llms([0]), tmp_path / "m")
    from llmrec.data.records import PerformanceRecords
    flat = PerformanceRecords(np.ones((rec.n_prompts, rec.n_llms)), rec.prompts, rec.llms)
    with pytest.raises(DataFormatError, match="too little contrast"):
        finetune_sentence_encoder(flat, tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    rec = make_synthetic(96, 4, n_topics=3, seed=1)
    out = tmp_path_factory.mktemp("ft") / "model"
    enc = finetune_sentence_encoder(rec, out, epochs=2, batch_size=16, max_seconds=120,
                                    show_progress=False)
    return rec, out, enc


@pytest.mark.embed
def test_finetune_writes_a_fingerprinted_model(tuned):
    rec, out, enc = tuned
    info = json.loads((out / FINETUNE_INFO).read_text())
    assert info["format"] == "llmrec.finetune" and info["base"] == "all-MiniLM-L6-v2"
    assert info["stopped_by"] == "epochs" and info["epochs_done"] >= 2
    assert info["n_prompts_used"] <= rec.n_prompts and info["llms"] == list(rec.llm_names)
    assert np.isfinite(info["loss_first"]) and np.isfinite(info["loss_last"])
    assert set(info["weights_sha256"]) == {"model.safetensors"}
    base = make_encoder("minilm", show_progress=False)
    assert enc.fingerprint != base.fingerprint
    texts = list(rec.texts[:5])
    a, b = enc.encode(texts), base.encode(texts)
    assert a.shape == b.shape == (5, 384)
    assert np.abs(a - b).max() > 1e-3  # the weights moved
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


@pytest.mark.embed
def test_finetune_budget_stops_training(tuned, tmp_path):
    rec = tuned[0]
    enc = finetune_sentence_encoder(rec, tmp_path / "m", epochs=50, batch_size=16,
                                    max_seconds=1.0, show_progress=False)
    info = enc.finetune_info_
    assert info["stopped_by"] == "max_seconds" and info["epochs_done"] < 50
    assert info["seconds"] < 30


@pytest.mark.embed
def test_router_on_a_finetuned_encoder_saves_and_reloads(tuned, tmp_path):
    from llmrec.routers import Router, make_router
    rec, out, enc = tuned
    r = make_router("linear").fit(rec, encoder=enc)
    d = r.save(tmp_path / "router")
    assert (d / "encoder_model" / FINETUNE_INFO).is_file()  # the weights travel with it
    back = Router.load(d)
    texts = list(rec.texts[:4])
    np.testing.assert_allclose(back.score(texts), r.score(texts), atol=1e-5)
    assert back.featurizer_.encoder.fingerprint == r.featurizer_.encoder.fingerprint


@pytest.mark.embed
def test_finetune_refuses_to_overwrite_other_folders(tuned, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a fine-tuned encoder folder"):
        finetune_sentence_encoder(tuned[0], tmp_path / "data", max_seconds=1)
    assert (tmp_path / "data" / "keep.txt").read_text() == "x"
