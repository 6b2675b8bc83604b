"""LightFM hybrid router."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from llmrec.errors import ConfigError
from llmrec.routers import load_router, make_router

from .router_conformance import RouterConformance, small_encoder

pytest.importorskip("lightfm")

SMALL = {"encoder": small_encoder()}


class TestLightFMLogistic(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("lightfm", no_components=8, epochs=5)


class TestLightFMWarp(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("lightfm", no_components=8, epochs=5, loss="warp",
                           use_metadata=False)


def _mu(router, test):
    truth = test.select_llms(router.llm_names_).dense()
    pick = router.score(test.texts).argmax(axis=1)
    return float(np.nanmean(truth[np.arange(len(truth)), pick]))


@pytest.fixture(scope="module")
def fitted(synth_split):
    train, _ = synth_split
    return make_router("lightfm", no_components=8, epochs=10).fit(train, encoder=small_encoder())


def test_beats_best_single_on_cold_prompts(fitted, synth_split):
    _, test = synth_split
    assert _mu(fitted, test) > float(np.nanmean(test.dense(), axis=0).max())


def test_vectors_match_lightfm_representations(fitted, synth_split):
    """Our numpy user representation is LightFM's get_user_representations."""
    import scipy.sparse as sp
    from lightfm import LightFM
    _, test = synth_split
    X = fitted.features(test.texts[:5])
    F = sp.csr_matrix(fitted._user_features(X))
    m = LightFM(no_components=8)
    m._initialize(8, 1, F.shape[1])  # allocate, then put the learned user parameters in
    m.user_embeddings[:], m.user_biases[:] = fitted.user_embeddings_, fitted.user_biases_
    b, e = m.get_user_representations(F)
    Q, V, bias = fitted._vectors(X)
    np.testing.assert_allclose(Q[:, :-1], e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Q[:, -1], b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V[:, -1], 1.0)
    assert fitted.meta_spec_["numeric"] == ["params_b", "price_input", "price_output"]
    assert len(fitted.meta_spec_["providers"]) == 5


def test_add_llm(synth_split, tmp_path):
    train, test = synth_split
    new = ["llm-05", "llm-06"]
    old = [n for n in train.llm_names if n not in new]
    r = make_router("lightfm", no_components=8, epochs=10)
    r.fit(train.select_llms(old), encoder=small_encoder())
    mu_before = _mu(r, test)
    probe = train.select_prompts(np.arange(80))
    for n in new:
        r.add_llm(n, probe)  # metadata comes from probe.llms (params_b, prices, provider)
    truth = test.select_llms(r.llm_names_).dense()
    S = r.score(test.texts)
    for j in (-2, -1):
        assert roc_auc_score(truth[:, j], S[:, j]) > 0.6
    assert _mu(r, test) >= mu_before - 1e-9
    ids, vals = r.recommend_ids(test.texts, k=1)
    np.testing.assert_allclose(vals[:, 0], S.max(axis=1), rtol=1e-4, atol=1e-5)
    r.save(tmp_path / "m")
    np.testing.assert_array_equal(load_router(tmp_path / "m").score(test.texts), S)


def test_add_llm_without_metadata(synth_split):
    train, test = synth_split
    old = train.llm_names[:6]
    # threshold feedback learns absolute success: the new column predicts it
    r = make_router("lightfm", no_components=8, epochs=10, use_metadata=False,
                    success_threshold=0.5)
    r.fit(train.select_llms(old), encoder=small_encoder())
    r.add_llm("llm-06", train.select_prompts(np.arange(80)))
    truth = test.select_llms(["llm-06"]).dense()[:, 0]
    assert roc_auc_score(truth, r.score(test.texts)[:, -1]) > 0.6
    # the default relative feedback learns which LLM beats the prompt's mean: the new
    # column, against the other columns' mean, predicts that
    r = make_router("lightfm", no_components=8, epochs=10, use_metadata=False)
    r.fit(train.select_llms(old), encoder=small_encoder())
    r.add_llm("llm-06", train.select_prompts(np.arange(80)))
    d = test.dense()
    beats = d[:, 6] > d.mean(axis=1)
    S = r.score(test.texts)
    assert roc_auc_score(beats, S[:, -1] - S[:, :-1].mean(axis=1)) > 0.6


def test_bad_loss(synth_split):
    with pytest.raises(ConfigError, match="loss"):
        make_router("lightfm", loss="bpr-ish").fit(synth_split[0], encoder=small_encoder())


def test_lightfm_on_mmlu_pro_subset(shared_data):
    """Real records with empty cells: fit, score cold prompts, add a held-out LLM."""
    from llmrec.data.splits import cold_prompt_split
    from llmrec.datasets import load
    rec = load("mmlu-pro", data_dir=shared_data)
    rec = rec.select_prompts(np.random.default_rng(0).permutation(rec.n_prompts)[:3000])
    split = cold_prompt_split(rec, val=0.1, test=0.1, seed=42)
    held = "Meta-Llama-3_1-70B-Instruct"
    known = [n for n in rec.llm_names if n != held]
    truth = split.test.select_llms(known).dense()
    r = make_router("lightfm", no_components=8, epochs=5)
    r.fit(split.train.select_llms(known), encoder=small_encoder())
    S = r.score(split.test.texts)
    mu = float(np.nanmean(truth[np.arange(len(truth)), S.argmax(axis=1)]))
    assert mu >= float(np.nanmax(np.nanmean(truth, axis=0))) - 0.05
    r.add_llm(held, split.train.select_prompts(np.arange(300)))
    y = split.test.select_llms([held]).dense()[:, 0]
    ok = ~np.isnan(y)
    assert roc_auc_score(y[ok], r.score(split.test.texts)[ok, -1]) > 0.55
