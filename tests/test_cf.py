"""ALS and BPR routers (implicit) and the cold-prompt feature maps."""

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from llmrec.data import PerformanceRecords
from llmrec.datasets import make_synthetic
from llmrec.encoders import TfidfEncoder
from llmrec.errors import ConfigError, NotFittedError
from llmrec.routers import available_routers, load_router, make_router
from llmrec.routers.coldstart import FeatureToFactorMap

from .router_conformance import RouterConformance, small_encoder

SMALL = {"encoder": small_encoder()}


class TestALS(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("als", factors=8, iterations=5)


class TestALSKnnMap(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("als", factors=8, iterations=5, user_map="knn", map_k=5)


class TestBPR(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("bpr", factors=8, iterations=20)


def _mu(router, test):
    truth = test.select_llms(router.llm_names_).dense()
    pick = router.score(test.texts).argmax(axis=1)
    return float(np.nanmean(truth[np.arange(len(truth)), pick]))


def test_registered():
    assert {"als", "bpr", "lightfm"} <= set(available_routers())


@pytest.mark.parametrize("user_map", ["ridge", "mlp", "knn"])
def test_cold_prompt_maps_beat_best_single(synth_split, user_map):
    train, test = synth_split
    r = make_router("als", factors=8, iterations=10, user_map=user_map, map_k=10)
    r.fit(train, encoder=small_encoder())
    best = float(np.nanmean(test.dense(), axis=0).max())
    assert _mu(r, test) >= best - 0.02, user_map


def test_bpr_beats_best_single(synth_split):
    train, test = synth_split
    r = make_router("bpr", factors=8, iterations=50).fit(train, encoder=small_encoder())
    assert _mu(r, test) > float(np.nanmean(test.dense(), axis=0).max())
    # the bias column of the prompt vectors is the constant 1 implicit uses
    Q, V, b = r._vectors(r.features(test.texts[:3]))
    assert np.all(Q[:, -1] == 1.0) and b is None


def test_als_confidences_encode_failures_as_negatives():
    r = make_router("als", alpha=2.0, neg_alpha=4.0)
    s = np.array([1.0, 0.0, 0.8, 0.2], np.float32)
    ok = s >= 0.5  # threshold feedback: the weight is the score, or 1 - score for failures
    c = r._confidences(np.where(ok, s, 1.0 - s), ok)
    np.testing.assert_allclose(c, [3.0, -5.0, 2.6, -4.2], rtol=1e-6)
    assert make_router("als", alpha=2.0)._neg_alpha == 2.0  # None -> alpha


def test_als_observed_failures_weigh_more_than_unknowns():
    # A fails on every topic-0 prompt, B is unobserved there; elsewhere both succeed.
    base = make_synthetic(300, 1, n_topics=3, seed=1)
    topic = base.prompts["benchmark"].to_numpy()
    t0 = topic == topic[0]
    S = np.ones((len(topic), 3), np.float32)
    S[t0, 0] = 0.0
    S[t0, 1] = np.nan
    S[:, 2] = np.arange(len(topic)) % 2
    rec = PerformanceRecords(S, base.prompts, pd.DataFrame({"name": ["A", "B", "C"]}))
    gaps = []
    for neg_alpha in (0.0, 10.0):
        r = make_router("als", factors=4, iterations=10, neg_alpha=neg_alpha, user_map="knn")
        P = r.fit(rec, encoder=TfidfEncoder(dim=16, n_features=2 ** 12)).score(rec.texts)
        gaps.append(float((P[t0, 1] - P[t0, 0]).mean()))
    # with neg_alpha=0 a failure is exactly an unknown cell; weighting it pushes A lower
    assert abs(gaps[0]) < 1e-3
    assert gaps[1] > gaps[0] + 3e-3


def test_als_add_llm(synth_split, tmp_path):
    train, test = synth_split
    new = ["llm-05", "llm-06"]
    old = [n for n in train.llm_names if n not in new]
    r = make_router("als", factors=8, iterations=10).fit(train.select_llms(old),
                                                         encoder=small_encoder())
    mu_before = _mu(r, test)
    probe = train.select_prompts(np.arange(80))
    for n in new:
        r.add_llm(n, probe)
    assert r.llm_names_ == old + new
    truth = test.select_llms(r.llm_names_).dense()
    S = r.score(test.texts)
    for j in (-2, -1):
        assert roc_auc_score(truth[:, j], S[:, j]) > 0.6
    assert _mu(r, test) >= mu_before - 1e-9
    # recommend goes through the index with the new vectors; save/load keeps them
    ids, vals = r.recommend_ids(test.texts, k=1)
    np.testing.assert_allclose(vals[:, 0], S.max(axis=1), rtol=1e-4, atol=1e-5)
    r.save(tmp_path / "m")
    np.testing.assert_array_equal(load_router(tmp_path / "m").score(test.texts), S)


def test_bad_params(synth_split):
    train, _ = synth_split
    with pytest.raises(ConfigError, match="user_map"):
        make_router("als", user_map="svd").fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="factors"):
        make_router("bpr", factors=0).fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="neg_alpha"):
        make_router("als", neg_alpha=-1.0).fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="success"):
        make_router("als", success_threshold=2.0).fit(train, encoder=small_encoder())


def test_feature_map_roundtrip_and_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    U = np.tanh(X @ rng.normal(size=(5, 3))).astype(np.float32)
    for kind in ("ridge", "mlp", "knn"):
        params = dict(kind=kind, alpha=1e-3, k=3, hidden=8, max_iter=50)
        m = FeatureToFactorMap(**params).fit(X, U)
        P = m.predict(X)
        assert P.shape == (60, 3)
        again = FeatureToFactorMap(**params).set_arrays(m.get_arrays("m_"), "m_")
        np.testing.assert_allclose(again.predict(X), P, rtol=1e-5, atol=1e-6)
    with pytest.raises(NotFittedError):
        FeatureToFactorMap().predict(X)
    with pytest.raises(ConfigError, match="expected"):
        FeatureToFactorMap().fit(X, U).predict(X[:, :2])
    with pytest.raises(ConfigError, match="one feature row"):
        FeatureToFactorMap().fit(X, U[:5])


def test_lightfm_missing_gives_install_hint(synth_split, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightfm", None)  # import lightfm -> ImportError
    r = make_router("lightfm", no_components=4, epochs=1)
    with pytest.raises(ConfigError, match=r"pip install 'llmrec\[lightfm\]'"):
        r.fit(synth_split[0], encoder=small_encoder())


def test_als_bpr_on_mmlu_pro_subset(shared_data):
    """Real records with empty cells: fit, score cold prompts, add a held-out LLM."""
    from llmrec.data.splits import cold_prompt_split
    from llmrec.datasets import load
    rec = load("mmlu-pro", data_dir=shared_data)
    rec = rec.select_prompts(np.random.default_rng(0).permutation(rec.n_prompts)[:3000])
    split = cold_prompt_split(rec, val=0.1, test=0.1, seed=42)
    held = "Meta-Llama-3_1-70B-Instruct"
    known = [n for n in rec.llm_names if n != held]
    train = split.train.select_llms(known)
    truth = split.test.select_llms(known).dense()
    best = float(np.nanmax(np.nanmean(truth, axis=0)))
    for name, params in (("als", dict(factors=8, alpha=0.0, neg_alpha=0.0, map_alpha=10.0)),
                         ("bpr", dict(factors=8, iterations=50))):
        r = make_router(name, **params).fit(train, encoder=small_encoder())
        S = r.score(split.test.texts)
        assert np.isfinite(S).all()
        mu = float(np.nanmean(truth[np.arange(len(truth)), S.argmax(axis=1)]))
        assert mu >= best - 0.05, (name, mu, best)
        if name == "als":
            r.add_llm(held, split.train.select_prompts(np.arange(300)))
            y = split.test.select_llms([held]).dense()[:, 0]
            s = r.score(split.test.texts)[:, -1]
            ok = ~np.isnan(y)
            assert roc_auc_score(y[ok], s[ok]) > 0.55


def test_bpr_bounds_its_sgd_updates(synth_split):
    train, _ = synth_split
    n_pos = None
    r = make_router("bpr", factors=4, iterations=50, max_updates=None).fit(
        train, encoder=small_encoder())
    assert r.iterations_ == 50
    from llmrec.routers.signal import implicit_feedback
    n_pos = int(implicit_feedback(train).positive.sum())
    r = make_router("bpr", factors=4, iterations=50, max_updates=3 * n_pos).fit(
        train, encoder=small_encoder())
    assert r.iterations_ == 3
    r = make_router("bpr", factors=4, iterations=50, max_updates=1).fit(
        train, encoder=small_encoder())
    assert r.iterations_ == 1  # at least one epoch
    with pytest.raises(ConfigError, match="max_updates"):
        make_router("bpr", max_updates=0).fit(train, encoder=small_encoder())


def test_auto_map_penalty_is_ridgecv_choice():
    """map_alpha="auto": the penalty leave-one-out picks, and the map is that ridge."""
    from sklearn.linear_model import Ridge, RidgeCV
    from llmrec.routers.coldstart import MAP_ALPHAS
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 40)).astype(np.float32)
    # signal in two features, the rest noise: leave-one-out wants a real penalty
    U = (X[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(scale=3.0, size=(200, 3))
         ).astype(np.float32)
    m = FeatureToFactorMap("ridge", alpha="auto").fit(X, U)
    want = RidgeCV(alphas=MAP_ALPHAS).fit(X, U).alpha_
    assert m.alpha_ == want and m.alpha_ >= 10.0
    np.testing.assert_allclose(m.predict(X), Ridge(alpha=want).fit(X, U).predict(X),
                               rtol=1e-4, atol=1e-4)
    # a noiseless linear map: the smallest penalty
    exact = FeatureToFactorMap("ridge", alpha="auto").fit(X, X[:, :3] * 2.0)
    assert exact.alpha_ == min(MAP_ALPHAS)
    # a fixed penalty is used as given; the MLP's "auto" is its fixed default
    assert FeatureToFactorMap("ridge", alpha=3.0).fit(X, U).alpha_ == 3.0
    assert FeatureToFactorMap("mlp", alpha="auto", max_iter=5).fit(X, U).alpha_ == 1.0
    assert FeatureToFactorMap("knn", alpha="auto").fit(X, U).alpha_ is None
    with pytest.raises(ConfigError, match="alpha must be 'auto' or a number"):
        FeatureToFactorMap("ridge", alpha=-1.0).fit(X, U)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_routers_choose_map_penalty_and_keep_it(synth_split, tmp_path, name):
    train, test = synth_split
    r = make_router(name, factors=8, iterations=10).fit(train, encoder=small_encoder())
    from llmrec.routers.coldstart import MAP_ALPHAS
    assert r.map_alpha == "auto" and r.map_alpha_ in MAP_ALPHAS
    r.save(tmp_path / "m")
    back = load_router(tmp_path / "m")
    assert back.map_alpha_ == r.map_alpha_
    np.testing.assert_array_equal(back.score(test.texts), r.score(test.texts))
    fixed = make_router(name, factors=8, iterations=10, map_alpha=2.5).fit(
        train, encoder=small_encoder())
    assert fixed.map_alpha_ == 2.5


@pytest.mark.parametrize("bad", ["big", -1.0, float("nan"), None])
def test_bad_map_alpha_names_the_setting(synth_split, bad):
    with pytest.raises(ConfigError, match="map_alpha must be 'auto' or a number"):
        make_router("als", factors=4, iterations=2, map_alpha=bad).fit(
            synth_split[0], encoder=small_encoder())
