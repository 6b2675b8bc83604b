"""A conformance mixin that every router's test class runs.

Usage (a three-line test file per router)::

    class TestKnn(RouterConformance):
        def make(self):
            return make_router("knn", k=5)

It checks: fit/score shapes, unknown (cold) prompts, candidate subsets, determinism
under a seed, save/load gives identical scores, empty input, mismatched feature
width, recommend == top-k of score, capability refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.encoders import TfidfEncoder
from llmrec.errors import CapabilityError, ConfigError, NotFittedError, UnknownIdError
from llmrec.routers import Router, load_router

def small_encoder() -> TfidfEncoder:
    """A light TF-IDF encoder (small hashing space and SVD) that keeps router tests fast."""
    return TfidfEncoder(dim=32, n_features=2 ** 12)


NEW_PROMPTS = ["solve the quadratic equation for the variable root",
               "which court ruling on contract liability applies",
               "a completely unrelated sentence about nothing at all"]


class RouterConformance:
    #: fit kwargs for every test (e.g. {"encoder": ...})
    fit_kwargs: dict = {}

    def make(self) -> Router:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, synth_split):
        train, test = synth_split
        return cls().make().fit(train, **cls.fit_kwargs), train, test

    def _input(self, router, test):
        return test if router.needs_truth else test.texts

    def test_not_fitted(self):
        with pytest.raises(NotFittedError):
            self.make().score(["x"])

    def test_score_shape_and_cold_prompts(self, fitted):
        router, train, test = fitted
        S = router.score(self._input(router, test))
        assert S.shape == (test.n_prompts, train.n_llms)
        assert S.dtype == np.float32
        assert np.isfinite(S).any()
        if router.supports_cold_prompts and not router.needs_truth:
            S2 = router.score(NEW_PROMPTS)
            assert S2.shape == (3, train.n_llms)

    def test_recommend_matches_score(self, fitted):
        router, train, test = fitted
        x = self._input(router, test)
        S = router.score(x)
        ids, vals = router.recommend_ids(x, k=3)
        assert ids.shape == (test.n_prompts, 3)
        np.testing.assert_allclose(vals, np.take_along_axis(S, ids, 1), rtol=1e-4, atol=1e-5)
        # each row's top-1 is a maximiser of the score row
        best = S.max(axis=1)
        np.testing.assert_allclose(vals[:, 0], best, rtol=1e-4, atol=1e-5)
        names, _ = router.recommend(x, k=2)
        assert set(names.ravel()) <= set(train.llm_names)

    def test_candidates(self, fitted):
        router, train, test = fitted
        cand = train.llm_names[1:4]
        names, _ = router.recommend(self._input(router, test), k=10, candidates=cand)
        assert names.shape == (test.n_prompts, 3)
        assert set(names.ravel()) <= set(cand)
        with pytest.raises(UnknownIdError, match="no-such-llm"):
            router.recommend(self._input(router, test), candidates=["no-such-llm"])
        with pytest.raises(ConfigError):
            router.recommend(self._input(router, test), k=0)

    def test_determinism(self, fitted, synth_split):
        router, train, test = fitted
        again = self.make().fit(train, **self.fit_kwargs)
        x = self._input(router, test)
        np.testing.assert_allclose(router.score(x), again.score(x), rtol=1e-5, atol=1e-6)

    def test_save_load_identical(self, fitted, tmp_path):
        router, train, test = fitted
        router.save(tmp_path / "m")
        loaded = load_router(tmp_path / "m")
        assert type(loaded) is type(router)
        x = self._input(router, test)
        np.testing.assert_array_equal(router.score(x), loaded.score(x))
        assert loaded.llm_names_ == router.llm_names_

    def test_empty_input(self, fitted):
        router, train, test = fitted
        x = test.select_prompts([]) if router.needs_truth else []
        assert router.score(x).shape == (0, train.n_llms)
        ids, vals = router.recommend_ids(x, k=2)
        assert ids.shape[0] == 0

    def test_mismatched_feature_width(self, fitted):
        router, train, test = fitted
        if not router.needs_text:
            pytest.skip("router uses no prompt features")
        with pytest.raises(ConfigError, match="shape"):
            router.score(np.zeros((2, router.feature_dim_ + 3), dtype=np.float32))
        X = router.features(test.texts[:4])
        np.testing.assert_allclose(router.score(X), router.score(test.texts[:4]), rtol=1e-5,
                                   atol=1e-6)

    def test_add_llm_capability(self, fitted, synth):
        router, train, test = fitted
        if router.supports_new_llms:
            pytest.skip("covered by the router's own add_llm test")
        with pytest.raises(CapabilityError):
            router.add_llm("new", synth)
