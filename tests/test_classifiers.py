"""RouterEval's classifier routers: conformance plus semantics checks."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.datasets import make_synthetic
from llmrec.errors import ConfigError, ModelFormatError
from llmrec.routers import load_router, make_router
from llmrec.routers.classifiers import routereval95_labels, validation_mu

from .router_conformance import RouterConformance, small_encoder


SMALL = {"encoder": small_encoder()}


class TestKnn(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("knn")


class TestLinear(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("linear")


class TestMLP(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("mlp", hidden_layer_sizes=(16,), max_epochs=5)


class TestCluster(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("cluster", n_clusters=4, n_init=2)


class TestMLC(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("mlc", label_rule="routereval95")


# ------------------------------------------------------------------ helpers
def _records(scores, n_llms=None, texts=None):
    scores = np.asarray(scores, dtype=np.float32)
    n, m = scores.shape
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)],
                            "text": texts or [f"text {i}" for i in range(n)]})
    llms = pd.DataFrame({"name": [f"m{j}" for j in range(m)]})
    return PerformanceRecords(scores, prompts, llms)


def _tiny():
    """8 training prompts with hand-made 2-D features and 3 LLMs (one NaN cell)."""
    rng = np.random.default_rng(1)
    angles = np.sort(rng.uniform(0, np.pi / 2, 8))
    X = np.c_[np.cos(angles), np.sin(angles)].astype(np.float32) * rng.uniform(0.5, 2, (8, 1))
    Y = rng.random((8, 3)).astype(np.float32)
    Y[2, 1] = np.nan
    return X.astype(np.float32), Y


def _fit_on_features(router, X, Y):
    """Run a router's ``_fit`` on hand-made features (no encoder in the way)."""
    rec = _records(Y)
    router.llms_ = rec.llms.copy()
    router.featurizer_ = None
    router._fit(rec, X, None, None)
    return router


# --------------------------------------------------------------------- kNN
def test_knn_equals_brute_force():
    X, Y = _tiny()
    r = _fit_on_features(make_router("knn", k=3), X, Y)
    q = np.array([[1.0, 0.3], [0.2, 1.0]], dtype=np.float32)
    got = r._score(q, None, 2)
    # brute force: cosine distance, 3 nearest, nan-mean of their scores
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dist = 1 - qn @ Xn.T
    want = np.stack([np.nanmean(Y[np.argsort(d)[:3]], axis=0) for d in dist])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert (np.argmax(got, 1) == np.argmax(want, 1)).all()


def test_knn_routereval_semantics(synth_split):
    """Default k=5, cosine neighbours, mean of their scores, argmax pick."""
    train, test = synth_split
    r = make_router("knn").fit(train, encoder=small_encoder())
    assert r.k_ == 5
    Xtr, Xte = r.features(train), r.features(test)
    sim = (Xte / np.linalg.norm(Xte, axis=1, keepdims=True)) @ \
        (Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)).T
    nb = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    want = train.dense()[nb].mean(axis=1)
    S = r.score(test)
    np.testing.assert_allclose(S, want, rtol=1e-5, atol=1e-6)
    names, _ = r.recommend(test, k=1)
    # ties (frequent with k = 5 and 0/1 scores) go to the higher training mean
    from llmrec.retrieval import tie_break_argmax, tie_ranks
    rank = tie_ranks(np.nanmean(train.dense(), axis=0), train.llm_names)
    assert (names[:, 0] == np.asarray(train.llm_names)[tie_break_argmax(want, rank)]).all()


def test_knn_all_neighbours_unobserved_falls_back_to_llm_mean():
    Y = np.array([[1.0, np.nan], [0.0, np.nan], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    X = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float32)
    r = _fit_on_features(make_router("knn", k=2), X, Y)
    S = r._score(np.array([[1.0, 0.0]], dtype=np.float32), None, 1)
    np.testing.assert_allclose(S, [[0.5, 0.5]])  # LLM 1: its mean over prompts 2, 3


def test_knn_k_larger_than_train_and_bad_k(synth):
    four = synth.select_prompts(range(4))
    S = make_router("knn", k=50).fit(four, encoder=small_encoder()).score(["x"])
    np.testing.assert_allclose(S[0], four.dense().mean(axis=0), rtol=1e-5)
    with pytest.raises(ConfigError, match="k must be"):
        make_router("knn", k=0).fit(four, encoder=small_encoder())


def test_knn_k_grid_picks_best_on_validation(synth_split):
    train, test = synth_split
    val = test.select_prompts(range(40))
    r = make_router("knn", k_grid=[1, 5, 25]).fit(train, encoder=small_encoder(), val_records=val)
    assert set(r.val_mu_) == {1, 5, 25}
    assert r.k_ == max(r.val_mu_, key=lambda k: (r.val_mu_[k], -k))
    for kk, mu in r.val_mu_.items():
        rk = make_router("knn", k=kk).fit(train, encoder=small_encoder())
        assert mu == pytest.approx(validation_mu(rk.score(val), val.dense(), rk.tie_rank_))
    with pytest.raises(ConfigError, match="val_records"):
        make_router("knn", k_grid=[1, 5]).fit(train, encoder=small_encoder())


# ------------------------------------------------------------------ cluster
def test_cluster_picks_per_cluster_best():
    # two well-separated groups; LLM 0 wins group A, LLM 1 group B, LLM 2 never
    rng = np.random.default_rng(0)
    XA = np.c_[rng.normal(5, 0.1, 20), rng.normal(0, 0.1, 20)]
    XB = np.c_[rng.normal(0, 0.1, 20), rng.normal(5, 0.1, 20)]
    X = np.vstack([XA, XB]).astype(np.float32)
    Y = np.zeros((40, 3), np.float32)
    Y[:20, 0] = 1.0
    Y[20:, 1] = rng.random(20) * 0.5 + 0.5
    Y[:20, 2] = 0.5
    Y[5, 0] = np.nan  # unobserved cell is not read as 0
    r = _fit_on_features(make_router("cluster", n_clusters=2, n_init=2), X, Y)
    q = np.array([[5, 0], [0, 5]], dtype=np.float32)
    S = r._score(q, None, 2)
    assert np.argmax(S[0]) == 0 and np.argmax(S[1]) == 1
    lab = r._assign(X, r.cluster_centers_)
    for c in range(2):
        np.testing.assert_allclose(r.cluster_scores_[c], np.nanmean(Y[lab == c], axis=0),
                                   rtol=1e-5)
    np.testing.assert_allclose(S[0], r.cluster_scores_[lab[0]])


def test_cluster_errors_and_grid(synth_split):
    train, test = synth_split
    with pytest.raises(ConfigError, match="exceeds"):
        make_router("cluster", n_clusters=10_000).fit(train, encoder=small_encoder())
    r = make_router("cluster", n_clusters_grid=[2, 4], n_init=1).fit(
        train, encoder=small_encoder(), val_records=test.select_prompts(range(40)))
    assert r.n_clusters_ in (2, 4) and r.cluster_centers_.shape[0] == r.n_clusters_
    assert r.predict_cluster(["solve the equation"]).shape == (1,)


# ---------------------------------------------------------------------- MLC
def test_routereval95_labels():
    d = np.array([[0.50, 0.476, 0.474, np.nan],
                  [0.0, 0.0, 0.0, 0.0],
                  [1.0, 0.0, 1.0, np.nan]], dtype=np.float32)
    want = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(routereval95_labels(d), want)


def test_mlc_routereval95_continuous(synth):
    cont = make_synthetic(300, 5, n_topics=3, seed=2, binary=False)
    r = make_router("mlc", label_rule="routereval95").fit(cont, encoder=small_encoder())
    y, obs = r.labels(cont)
    np.testing.assert_array_equal(y, routereval95_labels(cont.dense()))
    assert y.any(axis=1).all()  # every prompt has its best LLM as a positive
    S = r.score(cont)
    assert ((S > 0) & (S < 1)).all()
    # heads learn something: the positive rate ranks LLMs like the mean probability
    rate = y.mean(0)
    assert np.corrcoef(rate, S.mean(0))[0, 1] > 0.9


@pytest.mark.parametrize("solver", ["per-head", "joint"])
def test_mlc_threshold_and_constant_head(solver):
    Y = np.array([[1, 0], [1, 1], [1, 0], [1, 1]], dtype=np.float32)
    X = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]], dtype=np.float32)
    r = _fit_on_features(make_router("mlc", label_rule="threshold", threshold=0.5,
                                     solver=solver), X, Y)
    S = r._score(X, None, 4)
    np.testing.assert_allclose(S[:, 0], 1 / (1 + 0.5 / 4.5), rtol=1e-5)  # all-positive head
    assert S[1, 1] > S[0, 1]
    with pytest.raises(ConfigError, match="label_rule"):
        make_router("mlc", label_rule="top1").labels(_records(Y))


@pytest.mark.parametrize("rule", ["relative", "routereval95"])
def test_mlc_joint_solver_reaches_the_per_head_optimum(rule):
    """One L-BFGS over every head minimises the same objectives as the per-LLM
    scikit-learn solves: an objective no worse, the same top-1 choices."""
    rec = make_synthetic(600, 70, n_topics=5, seed=3)
    tr, te = rec.select_prompts(range(450)), rec.select_prompts(range(450, 600))
    enc = small_encoder()
    fits = {s: make_router("mlc", solver=s, label_rule=rule).fit(tr, encoder=enc)
            for s in ("per-head", "joint")}
    X = fits["joint"].features(tr.texts)
    y, obs, w = fits["joint"]._labels_weights(tr)
    S = np.where(obs, 1.0 if w is None else w, 0.0)

    def objective(r):
        c, b = r.coef_.astype(np.float64), np.nan_to_num(r.intercept_.astype(np.float64))
        L = X @ c.T + b
        return 0.5 * np.sum(c * c) + np.sum(S * (np.logaddexp(0, L) - y * L))

    assert objective(fits["joint"]) <= objective(fits["per-head"]) * (1 + 1e-5)
    np.testing.assert_allclose(fits["joint"].score(te.texts), fits["per-head"].score(te.texts),
                               atol=0.03)
    agree = (fits["joint"].score(te.texts).argmax(1)
             == fits["per-head"].score(te.texts).argmax(1)).mean()
    assert agree >= 0.97
    assert make_router("mlc").fit(tr, encoder=enc).score(te.texts).shape == (150, 70)  # auto
    with pytest.raises(ConfigError, match="solver"):
        make_router("mlc", solver="newton").fit(tr, encoder=enc)


# ------------------------------------------------------------ linear / MLP
def test_linear_matches_ridge_per_llm_with_mask():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    Y = (X @ rng.normal(size=(4, 3)) + 0.1 * rng.normal(size=(30, 3))).astype(np.float32)
    Y[::3, 2] = np.nan
    r = _fit_on_features(make_router("linear", alpha=0.5), X, Y)
    for j in range(3):
        ok = ~np.isnan(Y[:, j])
        want = Ridge(alpha=0.5).fit(X[ok], Y[ok, j]).predict(X)
        np.testing.assert_allclose(r._score(X, None, 30)[:, j], want, rtol=1e-4, atol=1e-4)


def test_llm_without_records_scores_minus_inf():
    X = np.eye(4, dtype=np.float32)
    Y = np.array([[1, np.nan], [0, np.nan], [1, np.nan], [0, np.nan]], dtype=np.float32)
    for name in ("knn", "linear", "mlp", "cluster", "mlc"):
        params = {"cluster": {"n_clusters": 2, "n_init": 1}, "knn": {"k": 2},
                  "mlp": {"hidden_layer_sizes": (4,), "max_epochs": 2}}.get(name, {})
        r = _fit_on_features(make_router(name, **params), X, Y)
        S = r._score(X, None, 4)
        assert np.isneginf(S[:, 1]).all(), name
        assert np.isfinite(S[:, 0]).all(), name


def test_linear_add_llm(synth_split):
    train, test = synth_split
    r = make_router("linear").fit(train.select_llms(train.llm_names[:-1]), encoder=small_encoder())
    new = train.llm_names[-1]
    r.add_llm(new, test)
    assert r.llm_names_[-1] == new and r.score(["x"]).shape == (1, train.n_llms)


def test_mlp_masked_and_continuous_with_early_stopping():
    cont = make_synthetic(300, 5, n_topics=3, seed=3, binary=False, density=0.7)
    train, val = cont.select_prompts(range(240)), cont.select_prompts(range(240, 300))
    r = make_router("mlp", hidden_layer_sizes=(16,), max_epochs=30, patience=3,
                    learning_rate=1e-2).fit(train, encoder=small_encoder(), val_records=val)
    assert 1 <= r.best_epoch_ <= r.n_epochs_ <= 30
    assert r.val_mu_[r.best_epoch_] == max(r.val_mu_.values())
    assert validation_mu(r.score(val), val.dense(), r.tie_rank_) == pytest.approx(
        r.val_mu_[r.best_epoch_], abs=1e-6)
    with pytest.raises(ConfigError, match="max_epochs"):
        make_router("mlp", max_epochs=0).fit(train, encoder=small_encoder())


def test_tuning_grids_need_validation(synth):
    for name, grid in (("linear", "alpha_grid"), ("cluster", "n_clusters_grid"),
                       ("mlc", "C_grid")):
        with pytest.raises(ConfigError, match="val_records"):
            make_router(name, **{grid: [1, 2]}).fit(synth, encoder=small_encoder())
        with pytest.raises(ConfigError, match="empty"):
            make_router(name, **{grid: []}).fit(synth, encoder=small_encoder(), val_records=synth)


def test_linear_and_mlc_grids(synth_split):
    train, test = synth_split
    val = test.select_prompts(range(40))
    r = make_router("linear", alpha_grid=[0.01, 10.0]).fit(train, encoder=small_encoder(),
                                                          val_records=val)
    assert r.alpha_ in (0.01, 10.0) and len(r.val_mu_) == 2
    m = make_router("mlc", C_grid=[0.1, 10.0]).fit(train, encoder=small_encoder(), val_records=val)
    assert m.C_ in (0.1, 10.0)


# -------------------------------------------------------------- persistence
@pytest.mark.parametrize("name,params", [
    ("knn", {"k_grid": [1, 3]}), ("linear", {}), ("mlp", {"max_epochs": 2}),
    ("cluster", {"n_clusters": 3, "n_init": 1}), ("mlc", {"label_rule": "routereval95"})])
def test_persistence_without_pickle(synth_split, tmp_path, name, params):
    train, test = synth_split
    kw = {"val_records": test.select_prompts(range(30))} if "k_grid" in params else {}
    r = make_router(name, **params).fit(train, encoder=small_encoder(), **kw)
    r.save(tmp_path / name)
    with np.load(tmp_path / name / "router.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    with zipfile.ZipFile(tmp_path / name / "router.npz") as zf:
        for f in zf.namelist():
            assert b"pickle" not in zf.read(f)[:256]
    loaded = load_router(tmp_path / name)
    np.testing.assert_array_equal(loaded.score(test), r.score(test))
    man = json.loads((tmp_path / name / "manifest.json").read_text())
    assert man["router"] == name
    if name == "knn":
        assert loaded.k_ == r.k_ and loaded.val_mu_ == r.val_mu_


def test_corrupt_state_is_a_model_format_error(synth, tmp_path):
    r = make_router("cluster", n_clusters=2, n_init=1).fit(synth, encoder=small_encoder())
    r.save(tmp_path / "c")
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    np.savez(tmp_path / "c" / "router.npz", centers=np.zeros((2, 3), np.float32))
    from llmrec.routers import base as router_base
    from llmrec.routers.base import _sha256
    man["files"]["router.npz"] = _sha256(tmp_path / "c" / "router.npz")
    man["checksum"] = router_base.manifest_checksum(man)
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelFormatError, match="cluster_scores"):
        load_router(tmp_path / "c")


def test_mlp_leaves_global_torch_rng_alone(synth):
    import torch
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    make_router("mlp", hidden_layer_sizes=(4,), max_epochs=1).fit(synth, encoder=small_encoder())
    np.testing.assert_array_equal(torch.rand(3).numpy(), a.numpy())


@pytest.mark.parametrize("name,params", [
    ("knn", {"k": 10}), ("linear", {}), ("mlp", {"max_epochs": 20}),
    ("cluster", {"n_clusters": 4, "n_init": 2}), ("mlc", {"label_rule": "routereval95"})])
def test_continuous_scores_route_better_than_random(name, params):
    cont = make_synthetic(500, 6, n_topics=4, seed=4, binary=False, density=0.8)
    train, test = cont.select_prompts(range(400)), cont.select_prompts(range(400, 500))
    S = make_router(name, **params).fit(train, encoder=small_encoder()).score(test)
    truth = test.dense()
    random_mu = np.nanmean(np.nanmean(truth, axis=0))
    assert validation_mu(S, truth) > random_mu + 0.05, name


def test_mlp_bounds_its_record_visits(synth_split):
    train, _ = synth_split
    kw = dict(hidden_layer_sizes=(8,), max_epochs=20)
    r = make_router("mlp", **kw).fit(train, encoder=small_encoder())
    assert r.n_epochs_ == 20  # no validation: every epoch the budget allows
    r = make_router("mlp", max_updates=3 * train.n_observed, **kw).fit(
        train, encoder=small_encoder())
    assert r.n_epochs_ == 3
    r = make_router("mlp", max_updates=1, **kw).fit(train, encoder=small_encoder())
    assert r.n_epochs_ == 1
    with pytest.raises(ConfigError, match="max_updates"):
        make_router("mlp", max_updates=0, **kw).fit(train, encoder=small_encoder())


def test_mlc_joint_solver_bounds_iterations_and_ignores_threads(synth_split, monkeypatch):
    import llmrec.routers.classifiers as cl
    train, test = synth_split
    kw = dict(solver="joint", C=1e4)  # weak penalty: many iterations to converge
    full = make_router("mlc", max_updates=None, **kw).fit(train, encoder=small_encoder())
    assert full.n_iter_ > 20
    capped = make_router("mlc", max_updates=train.n_observed, **kw).fit(
        train, encoder=small_encoder())
    assert capped.n_iter_ == 20  # at least 20 iterations whatever the budget
    with pytest.raises(ConfigError, match="max_updates"):
        make_router("mlc", max_updates=0, **kw).fit(train, encoder=small_encoder())
    # row blocks on one thread or two: the same objective, summed in block order
    monkeypatch.setattr(cl, "_cpu_threads", lambda: 1)
    real = cl._logistic_heads_joint
    monkeypatch.setattr(cl, "_logistic_heads_joint",
                        lambda *a, **k: real(*a, **{**k, "block": 16}))
    one = make_router("mlc", max_updates=None, **kw).fit(train, encoder=small_encoder())
    monkeypatch.setattr(cl, "_cpu_threads", lambda: 2)
    two = make_router("mlc", max_updates=None, **kw).fit(train, encoder=small_encoder())
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.score(test), two.score(test))


def test_mlc_joint_solver_shows_its_iterations(synth_split, capsys):
    train, _ = synth_split
    make_router("mlc", solver="joint").fit(train, encoder=small_encoder(), show_progress=True)
    err = capsys.readouterr().err
    assert "mlc joint L-BFGS" in err
