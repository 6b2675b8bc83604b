"""The linear-bayes router passes the conformance mixin."""

from llmrec.routers import make_router

from .router_conformance import RouterConformance, small_encoder


class TestLinearBayes(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("linear-bayes", alpha=10.0)


class TestLinearBayesPCA(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("linear-bayes", alpha=10.0, n_components=4)


def test_n_components_is_ridge_on_the_principal_components(tmp_path):
    """n_components=k equals the plain router fitted on the features' PCA scores."""
    import numpy as np
    import pytest
    from sklearn.decomposition import PCA

    from llmrec.datasets import make_synthetic
    from llmrec.errors import ConfigError
    from llmrec.routers import load_router

    rec = make_synthetic(300, 4, seed=1)
    train, test = rec.select_prompts(range(240)), rec.select_prompts(range(240, 300))
    r = make_router("linear-bayes", alpha=3.0, n_components=5).fit(train,
                                                                   encoder=small_encoder())
    X, Xt = r.features(train), r.features(test)
    pca = PCA(n_components=5, random_state=0).fit(X)
    from llmrec.encoders import PrecomputedEncoder
    enc = PrecomputedEncoder.from_records_embeddings(  # equal texts: equal features
        train, pca.transform(X).astype(np.float32), key="text")
    ref = make_router("linear-bayes", alpha=3.0).fit(train, encoder=enc)
    assert r.proj_.shape == (X.shape[1], 5)
    np.testing.assert_allclose(r.score(test), ref.score(pca.transform(Xt).astype(np.float32)), atol=1e-4)
    np.testing.assert_allclose(r.score_std(test), ref.score_std(pca.transform(Xt).astype(np.float32)),
                               atol=1e-4)
    back = load_router(r.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score(test), r.score(test))
    np.testing.assert_array_equal(back.score_std(test), r.score_std(test))
    # more components than features or prompts: as many as there are
    small = make_router("linear-bayes", n_components=10_000).fit(train,
                                                                  encoder=small_encoder())
    assert small.proj_.shape[1] == X.shape[1]
    with pytest.raises(ConfigError, match="n_components"):
        make_router("linear-bayes", n_components=0).fit(train, encoder=small_encoder())
