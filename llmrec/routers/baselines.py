"""Baseline routers: random, best single LLM, best LLM per group, oracle and r_o(p)."""

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

    The draws depend only on ``random_state``, the LLM names and the number of
    prompts scored, so repeated calls give the same answer, and reordering the LLM
    columns reorders the noise with them (the pick never depends on column order):
    one float32 stream fills the LLMs in name order.

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
        order = np.argsort(np.asarray(self.llm_names_, dtype=object), kind="stable")
        draws = np.random.default_rng(int(self.random_state)).random(
            (n, len(order)), dtype=np.float32)
        if np.array_equal(order, np.arange(len(order))):  # already in name order
            return draws
        out = np.empty_like(draws)
        out[:, order] = draws
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


def _group_values(prompts, column: str, n: int) -> np.ndarray | None:
    """The ``column`` value of each prompt as strings (None where absent/unknown)."""
    if isinstance(prompts, np.ndarray) or prompts is None:
        return None
    from ..encoders.features import as_prompt_frame
    df = as_prompt_frame(prompts)
    if column not in df.columns:
        return None
    vals = df[column].to_numpy(dtype=object)
    return np.asarray([None if v is None or (isinstance(v, float) and np.isnan(v)) or v == ""
                       else str(v) for v in vals], dtype=object)


def group_means(records: PerformanceRecords, column: str, shrinkage: float = 0.0
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(group values, per-(group, LLM) mean scores, per-LLM means) of the records.

    Each group mean is shrunk toward the LLM's overall mean by ``shrinkage``
    pseudo-records: ``(sum + shrinkage * mean) / (count + shrinkage)``; a (group,
    LLM) pair with no record takes the LLM's overall mean.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> groups, table, overall = group_means(make_synthetic(60, 3, n_topics=2, seed=0),
    ...                                      "category")
    >>> groups, table.shape
    (['algebra', 'geometry'], (2, 3))
    """
    if column not in records.prompts.columns:
        raise ConfigError(f"the records' prompt table has no column {column!r} to group by "
                          f"(columns: {list(records.prompts.columns)})")
    g = _group_values(records, column, records.n_prompts)
    known = np.asarray([v is not None for v in g])
    groups = sorted({v for v in g if v is not None})
    code = {v: i for i, v in enumerate(groups)}
    dense, obs = records.dense(fill=0.0).astype(np.float64), records.observed_dense()
    cnt_all, tot_all = obs.sum(axis=0), dense.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(cnt_all > 0, tot_all / np.maximum(cnt_all, 1), np.nan)
    onehot = np.zeros((records.n_prompts, len(groups)))
    rows = np.flatnonzero(known)
    onehot[rows, [code[g[i]] for i in rows]] = 1.0
    cnt = onehot.T @ obs
    tot = onehot.T @ dense
    s = float(shrinkage)
    prior = np.nan_to_num(overall)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(cnt + s > 0, (tot + s * prior) / np.maximum(cnt + s, 1e-12),
                         overall[None, :])
    table = np.where(cnt > 0, table, overall[None, :])
    return groups, table, overall


@register_router
class BestPerGroupRouter(Router):
    """The best LLM per value of a prompt metadata column (category, benchmark, ...).

    A lookup table with no learning from text: each prompt goes to the LLM with the
    best mean training score among the training prompts that share its ``column``
    value (e.g. the best LLM per MMLU-Pro category). A prompt whose value is
    missing or unseen in training gets the best single LLM's scores. Prompt input
    must carry the column (a DataFrame or PerformanceRecords); plain texts get the
    best single LLM.

    Parameters
    ----------
    column : str
        Prompt-table column to group by.
    shrinkage : float
        Pseudo-records pulling each group mean toward the LLM's overall mean
        (0: the plain group mean).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(200, 4, n_topics=3, seed=0)
    >>> r = BestPerGroupRouter("category").fit(rec)
    >>> r.recommend(rec.select_prompts([0, 1]))[0].shape
    (2, 1)
    """

    name = "best-per-group"
    needs_text = False

    def __init__(self, column: str = "category", shrinkage: float = 0.0):
        self.column = column
        self.shrinkage = shrinkage

    def _fit(self, records, X, val, X_val):
        if float(self.shrinkage) < 0:
            raise ConfigError(f"shrinkage must be >= 0, got {self.shrinkage}")
        groups, table, overall = group_means(records, self.column, self.shrinkage)
        if not groups:
            raise ConfigError(f"column {self.column!r} has no value in the training prompts; "
                              "pick a column that groups them (e.g. category or benchmark)")
        self.groups_ = groups
        self.group_scores_ = np.where(np.isnan(table), -np.inf, table).astype(np.float32)
        self.mean_scores_ = np.where(np.isnan(overall), -np.inf, overall).astype(np.float32)

    def _score(self, X, prompts, n):
        out = np.broadcast_to(self.mean_scores_, (n, self.n_llms_)).copy()
        g = _group_values(prompts, self.column, n)
        if g is not None:
            code = {v: i for i, v in enumerate(self.groups_)}
            idx = np.asarray([code.get(v, -1) for v in g])
            hit = idx >= 0
            out[hit] = self.group_scores_[idx[hit]]
        return out

    def _get_state(self):
        return ({"groups": list(self.groups_)},
                {"group_scores": self.group_scores_, "mean_scores": self.mean_scores_})

    def _set_state(self, state, arrays):
        self.groups_ = [str(g) for g in state["groups"]]
        self.group_scores_ = arrays["group_scores"].astype(np.float32)
        self.mean_scores_ = arrays["mean_scores"].astype(np.float32)
