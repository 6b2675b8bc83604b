"""The fast paths the service relies on give exactly what the general paths give."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmrec.datasets import make_synthetic
from llmrec.encoders import PromptFeaturizer, TfidfEncoder
from llmrec.routers import make_router
from llmrec.service.routerinfo import router_info


def test_tfidf_column_map_matches_the_csc_selection(synth):
    from sklearn.preprocessing import normalize
    enc = TfidfEncoder(dim=16).fit(list(synth.texts))
    texts = list(make_synthetic(60, 4, seed=5).texts) + ["", "zzz qqq", "a"]

    def reference(ts):  # the former implementation, column selection through CSC
        H = enc._hasher().transform(ts).tocsc()[:, enc.columns_].tocsr().astype(np.float32)
        H.data = 1.0 + np.log(H.data)
        Z = np.asarray(normalize(H.multiply(enc.idf_[None, :]).tocsr()) @ enc.components_.T,
                       dtype=np.float32)
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    assert np.array_equal(enc.encode(texts), reference(texts))
    for t in texts[:5]:
        assert np.array_equal(enc.encode([t]), reference([t]))


def test_plain_texts_skip_the_frame_with_the_same_features(synth):
    f = PromptFeaturizer(TfidfEncoder(dim=8)).fit(synth)
    texts = list(synth.texts[:7])
    framed = f.transform(pd.DataFrame({"text": texts}))
    assert np.array_equal(f.transform(texts), framed)
    assert np.array_equal(f.transform(tuple(texts)), framed)
    assert np.array_equal(f.transform(texts[0]), framed[:1])
    side = PromptFeaturizer(TfidfEncoder(dim=8), ("length",)).fit(synth)
    assert side.transform(texts).shape == (7, side.dim)  # side features: the frame path


def test_router_info_is_cached_and_follows_add_llm(synth):
    r = make_router("best-single").fit(synth)
    info = router_info(r)
    assert router_info(r) is info and info.names == r.llm_names_
    assert info.index == {n: i for i, n in enumerate(r.llm_names_)}
    r.llms_ = r.llms_.iloc[:-1].reset_index(drop=True)  # a new table: a new entry
    assert router_info(r).names == r.llm_names_ and router_info(r) is not info


def test_a_model_with_precomputed_vectors_passes_the_load_probe(synth, tmp_path):
    """The load probe sends prompts the encoder knows: an arbitrary text has no
    precomputed vector, and a model that answers every real request must load."""
    from llmrec.encoders import PrecomputedEncoder
    from llmrec.service.app import load_and_probe
    X = np.random.default_rng(0).standard_normal((synth.n_prompts, 8)).astype(np.float32)
    for key in ("text", "auto"):
        enc = PrecomputedEncoder(X, ids=list(synth.prompt_ids), texts=list(synth.texts),
                                 key=key)
        make_router("linear").fit(synth, encoder=enc).save(tmp_path / key)
        assert load_and_probe(tmp_path / key).name == "linear"
