"""Baseline routers: random, best single LLM, oracle and RouterEval's r_o(p)."""

from __future__ import annotations

import numpy as np

from ..data.records import PerformanceRecords
from ..errors import ConfigError
from .base import Router, register_router


def _truth_aligned(router: Router, records: PerformanceRecords) -> tuple[np.ndarray, np.ndarray]:
    """Truth (NaN where unobserved) with the router's LLM columns, and the observed mask."""
    rec = router._align_llms(records, router.llm_names_, "truth records")
    return rec.dense(), rec.observed_dense()


@register_router
class RandomRouter(Router):
    """Scores every LLM with seeded uniform noise: a random pick per prompt.

    The draws depend only on ``random_state``, the LLM's name and the number of
    prompts scored, so repeated calls give the same answer, and reordering the LLM
    columns reorders the noise with them (the pick never depends on column order).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(50, 4, seed=0)
    >>> RandomRouter(random_state=0).fit(rec).score(["any prompt"]).shape
    (1, 4)
    """

    name = "random"
    needs_text = False

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def _fit(self, records, X, val, X_val):
        pass

    def _score(self, X, prompts, n):
        import zlib
        out = np.empty((n, self.n_llms_))
        for j, name in enumerate(self.llm_names_):
            key = zlib.crc32(str(name).encode("utf-8"))
            out[:, j] = np.random.default_rng([int(self.random_state), key]).random(n)
        return out

    def _get_state(self):
        return {}, {}

    def _set_state(self, state, arrays):
        pass


@register_router
class BestSingleRouter(Router):
    """The popularity recommender: always the LLM with the best mean training score.

    Every prompt gets the same scores, the per-LLM mean over its observed training
    records; LLMs with no record score -inf.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(50, 4, seed=0)
    >>> r = BestSingleRouter().fit(rec)
    >>> r.recommend(["a prompt"], k=1)[0].shape
    (1, 1)
    """

    name = "best-single"
    needs_text = False
    supports_new_llms = True

    def __init__(self):
        pass

    def _fit(self, records, X, val, X_val):
        m = records.llm_summary()["mean_score"].to_numpy(dtype=np.float32)
        self.mean_scores_ = np.where(np.isnan(m), -np.inf, m).astype(np.float32)

    def _score(self, X, prompts, n):
        return np.broadcast_to(self.mean_scores_, (n, self.n_llms_)).copy()

    def recommend_ids(self, prompts, k: int = 1, candidates=None, cost_weight: float = 0.0,
                      max_cost: float | None = None, show_progress: bool | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        # every prompt gets the same ranking: rank one row, repeat it (O(m) not O(n m))
        self._check_fitted()
        n = self._n_prompts(prompts)
        ids, vals = super().recommend_ids(np.zeros((1, 1), np.float32), k, candidates,
                                          cost_weight, max_cost, show_progress)
        return np.repeat(ids, n, axis=0), np.repeat(vals, n, axis=0)

    def _add_llm(self, name, X, y, metadata):
        self.mean_scores_ = np.append(self.mean_scores_, np.float32(np.mean(y)))

    def _get_state(self):
        return {}, {"mean_scores": self.mean_scores_}

    def _set_state(self, state, arrays):
        self.mean_scores_ = arrays["mean_scores"].astype(np.float32)


@register_router
class OracleRouter(Router):
    """Reads the true scores of the prompts it is asked about: an upper bound only.

    ``score(records)`` returns the records' own scores (unobserved cells -inf), so
    the top-1 is the best LLM for each prompt. Texts or features are refused.
    """

    name = "oracle"
    needs_text = False
    needs_truth = True
    supports_cold_prompts = True

    def __init__(self):
        pass

    def _fit(self, records, X, val, X_val):
        pass

    def _score(self, X, prompts, n):
        truth, obs = _truth_aligned(self, prompts)
        return np.where(obs, truth, -np.inf)

    def _get_state(self):
        return {}, {}

    def _set_state(self, state, arrays):
        pass


@register_router
class OracleMixRouter(Router):
    """RouterEval's r_o(p): the oracle's pick with probability ``p``, else a random LLM.

    ``score`` returns the *expected* per-LLM selection probability mixture
    ``p * onehot(oracle) + (1 - p) / m``, which is exactly the distribution RouterEval
    uses for its entropy; :meth:`sample_picks` draws concrete picks (RouterEval
    averages mu over 1,000 such draws; ``llmrec.evaluation`` does that).
    """

    name = "oracle-mix"
    needs_text = False
    needs_truth = True

    def __init__(self, p: float = 0.5, random_state: int = 0):
        self.p = p
        self.random_state = random_state

    def _fit(self, records, X, val, X_val):
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {self.p}")

    def _score(self, X, prompts, n):
        truth, obs = _truth_aligned(self, prompts)
        m = self.n_llms_
        best = self.argmax(np.where(obs, truth, -np.inf))
        out = np.full((n, m), (1.0 - self.p) / m, dtype=np.float64)
        out[np.arange(n), best] += self.p
        return out

    def sample_picks(self, records: PerformanceRecords, n_draws: int = 1000) -> np.ndarray:
        """(n_draws, n_prompts) LLM positions: oracle with probability p, else uniform."""
        truth, obs = _truth_aligned(self, records)
        best = self.argmax(np.where(obs, truth, -np.inf))
        rng = np.random.default_rng(self.random_state)
        n = len(best)
        use_oracle = rng.random((n_draws, n)) < self.p
        rand = rng.integers(0, self.n_llms_, size=(n_draws, n))
        return np.where(use_oracle, best[None, :], rand)

    def _get_state(self):
        return {}, {}

    def _set_state(self, state, arrays):
        pass
