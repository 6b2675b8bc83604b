"""RouterEval candidate pools: which ``m`` LLMs a router chooses among.

RouterEval (MilkThink-Lab/RouterEval, arXiv 2503.10657) evaluates routers on pools of
``m`` candidates (easy: 3, 5; hard: 10, 100, 1000) in three groups, chosen by
``select_candidates`` in its ``get_router_dataset.py``. This module is the rule of
llmrec's own protocol mode: RouterEval's idea, chosen on the records you pass (the
training prompts), with the choices below; ``docs/splits_and_pools.md`` lists how it
differs from RouterEval's code, which
:mod:`llmrec.evaluation.routereval_exact` reproduces exactly
(``mode="routereval-exact"``):

* Every LLM's mean score is taken over its observed prompts. *Valid* LLMs have a mean
  in ``[low, high]`` (default [0.1, 0.9]); the others are never candidates. Valid LLMs
  are sorted by mean, ascending (ties: column order for an array; for records the
  columns are first put in name order, so the pool never depends on column order).
* ``all_weak`` / ``all_strong``: the region is the lowest / highest
  ``max(m, ceil(region * n_valid))`` valid LLMs (so when 20 % of the valid LLMs is
  fewer than ``m``, the region widens to ``m``). Every window of ``m`` consecutive
  LLMs in the region is scored by its oracle score; the best window wins (ties: the
  window of weaker LLMs, i.e. the first in ascending order).
* ``strong_to_weak``: the sorted valid LLMs are cut into ``m`` contiguous strata of
  near-equal size (``numpy.array_split``); ``n_draws`` (1,000) times, one LLM is
  drawn uniformly from each stratum; the draw with the best oracle score wins (ties:
  the first draw).
* Oracle score of a set: the mean over prompts of the best score among the set's
  LLMs (unobserved cells skipped; prompts where no member is observed skipped).

Scores are those of the records you pass: pass the *training* part of a split to keep
test prompts out of the choice.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import maximum_filter1d

from ..errors import ConfigError, DataFormatError
from .records import PerformanceRecords

__all__ = ["GROUPS", "ROUTEREVAL_SIZES", "select_candidates", "candidate_pools",
           "oracle_score", "valid_llms", "routereval_levels"]

GROUPS = ("all_strong", "all_weak", "strong_to_weak")
ROUTEREVAL_SIZES = (3, 5, 10, 100, 1000)


def _matrix(scores) -> tuple[np.ndarray, list | None]:
    if isinstance(scores, PerformanceRecords):
        return scores.dense(), scores.llm_names
    try:
        x = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFormatError("scores must be PerformanceRecords or a numeric (prompts x "
                              "LLMs) matrix with NaN where unobserved") from None
    if x.ndim != 2:
        raise DataFormatError(f"scores must be a 2-D (prompts x LLMs) matrix, got shape "
                              f"{x.shape}")
    if np.isinf(x).any():
        raise DataFormatError("scores contain infinite values; use NaN for unobserved cells")
    return x, None


def _mean_scores(x: np.ndarray) -> np.ndarray:
    obs = ~np.isnan(x)
    counts = obs.sum(axis=0)
    sums = np.where(obs, x, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def oracle_score(scores, cols=None) -> float:
    """Mean over prompts of the best score among the LLMs ``cols`` (all when None).

    Unobserved cells are skipped; prompts where none of the LLMs is observed are left
    out of the mean (NaN when no prompt is left).

    Examples
    --------
    >>> oracle_score(np.array([[1., 0.], [0., 0.], [np.nan, 1.]]))
    0.6666666666666666
    """
    x, _ = _matrix(scores)
    sub = x if cols is None else x[:, np.asarray(cols, dtype=np.int64)]
    best = np.where(np.isnan(sub), -np.inf, sub).max(axis=1) if sub.shape[1] else \
        np.full(sub.shape[0], -np.inf)
    best = best[np.isfinite(best)]
    return float(best.mean()) if best.size else float("nan")


def _oracle_many(x: np.ndarray, col_sets: np.ndarray) -> np.ndarray:
    """Oracle score of each row of ``col_sets`` (n_sets x m column positions)."""
    xf = np.where(np.isnan(x), -np.inf, x)
    out = np.empty(len(col_sets))
    for i, cols in enumerate(col_sets):
        best = xf[:, cols].max(axis=1)
        best = best[np.isfinite(best)]
        out[i] = best.mean() if best.size else -np.inf
    return out


def valid_llms(scores, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """Column positions of the LLMs whose mean score is in ``[low, high]``, weakest first.

    Examples
    --------
    >>> valid_llms(np.array([[0.05, 0.5, 0.95, 0.3]]))
    array([3, 1])
    """
    x, _ = _matrix(scores)
    mean = _mean_scores(x)
    ok = np.flatnonzero(~np.isnan(mean) & (mean >= low) & (mean <= high))
    return ok[np.argsort(mean[ok], kind="stable")].astype(np.int64)


def select_candidates(scores, m: int, group: str, seed: int = 0, *, region: float = 0.2,
                      low: float = 0.1, high: float = 0.9, n_draws: int = 1000):
    """Choose a RouterEval candidate pool of ``m`` LLMs (see the module docstring).

    Parameters
    ----------
    scores : PerformanceRecords or array of shape (n_prompts, n_llms)
        Scores to choose on (NaN marks an unobserved cell in an array).
    m : int
        Pool size, 1 <= m <= number of valid LLMs.
    group : {"all_strong", "all_weak", "strong_to_weak"}
    seed : int
        Seed of the ``strong_to_weak`` draws (``numpy.random.default_rng``).
    region : float
        Share of valid LLMs in the strong / weak region.
    low, high : float
        Valid mean-score range (inclusive).
    n_draws : int
        Random draws for ``strong_to_weak``.

    Returns
    -------
    list
        LLM names (records) or column positions (array), in column order.

    Examples
    --------
    >>> x = np.array([[1, 0, 0, 1, 1, 1],
    ...               [0, 1, 0, 0, 1, 1],
    ...               [0, 0, 1, 0, 0, 1],
    ...               [0, 0, 0, 0, 0, 0]], dtype=float)
    >>> select_candidates(x, 2, "all_strong")
    [4, 5]
    """
    if group not in GROUPS:
        raise ConfigError(f"group must be one of {GROUPS}, got {group!r}")
    if isinstance(m, bool) or int(m) != m or m < 1:
        raise ConfigError(f"m must be a positive integer, got {m!r}")
    m = int(m)
    if not 0 < region <= 1:
        raise ConfigError(f"region must be in (0, 1], got {region}")
    if n_draws < 1:
        raise ConfigError(f"n_draws must be >= 1, got {n_draws}")
    x, names = _matrix(scores)
    canon = None
    if names is not None:  # work in name order: the pool never depends on column order
        canon = np.argsort(np.asarray(names, dtype=object), kind="stable")
        x = x[:, canon]
    order = valid_llms(x, low, high)
    n_valid = len(order)
    if m > n_valid:
        raise ConfigError(f"a pool of {m} needs {m} valid LLMs (mean score in [{low}, {high}])"
                          f", but only {n_valid} of {x.shape[1]} are valid; choose m <= "
                          f"{n_valid}")
    if group == "strong_to_weak":
        chosen = _strong_to_weak(x, order, m, seed, n_draws)
    else:
        k = min(n_valid, max(m, math.ceil(region * n_valid)))
        reg = order[:k] if group == "all_weak" else order[n_valid - k:]
        chosen = reg[_best_window(x, reg, m)]
    if canon is not None:
        chosen = canon[chosen]
    chosen = np.sort(chosen)
    if names is not None:
        return [names[j] for j in chosen]
    return [int(j) for j in chosen]


def _best_window(x: np.ndarray, reg: np.ndarray, m: int) -> np.ndarray:
    """Positions (in ``reg``) of the best window of ``m`` consecutive LLMs."""
    sub = np.where(np.isnan(x[:, reg]), -np.inf, x[:, reg])
    n_win = len(reg) - m + 1
    # maximum_filter1d centres a window of `size` at i - size//2 ... i - size//2 + size - 1,
    # so the window starting at s is read at column s + m//2.
    win_max = maximum_filter1d(sub, size=m, axis=1, mode="nearest")
    win_max = win_max[:, np.arange(n_win) + m // 2]
    finite = np.isfinite(win_max)
    counts = finite.sum(axis=0)
    sums = np.where(finite, win_max, 0.0).sum(axis=0)
    oracle = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    s = int(np.argmax(oracle))
    return np.arange(s, s + m)


def _strong_to_weak(x, order, m, seed, n_draws) -> np.ndarray:
    strata = np.array_split(order, m)
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.choice(st, size=n_draws) for st in strata], axis=1)
    oracle = _oracle_many(x, draws)
    return draws[int(np.argmax(oracle))]


def candidate_pools(records, sizes=ROUTEREVAL_SIZES, groups=GROUPS, seed: int = 0,
                    **kwargs) -> dict:
    """RouterEval pools for several sizes and groups.

    Sizes are capped at the number of valid LLMs (mean score in ``[low, high]``); the
    result is keyed by the capped size, so sizes that cap to the same value appear
    once. Extra keyword arguments go to :func:`select_candidates`.

    Returns
    -------
    dict
        ``{size: {group: [llm names]}}``, sizes ascending.

    Examples
    --------
    >>> from llmrec.data.synthetic import make_synthetic
    >>> pools = candidate_pools(make_synthetic(200, 8, seed=0), sizes=(3, 100), n_draws=50)
    >>> sorted(pools), sorted(pools[3])
    ([3, 8], ['all_strong', 'all_weak', 'strong_to_weak'])
    """
    for g in groups:
        if g not in GROUPS:
            raise ConfigError(f"group must be one of {GROUPS}, got {g!r}")
    x, names = _matrix(records)
    n_valid = len(valid_llms(x, kwargs.get("low", 0.1), kwargs.get("high", 0.9)))
    if n_valid == 0:
        raise ConfigError("no LLM has a mean score in the valid range; no pool can be built")
    capped = sorted({min(int(s), n_valid) for s in sizes})
    src = records if names is not None else x
    return {s: {g: select_candidates(src, s, g, seed=seed, **kwargs) for g in groups}
            for s in capped}


def routereval_levels(pools: dict, easy_max: int = 5) -> dict:
    """Nest ``{size: {group: names}}`` as RouterEval does: ``{"easy"|"hard": {size: ...}}``.

    Sizes up to ``easy_max`` (RouterEval: 3 and 5) are "easy", larger ones "hard". The
    result is the ``pools`` argument that
    :func:`llmrec.data.formats.routereval.write_routereval` accepts.

    Examples
    --------
    >>> routereval_levels({3: {"all_weak": ["a"]}, 10: {"all_weak": ["b"]}})
    {'easy': {3: {'all_weak': ['a']}}, 'hard': {10: {'all_weak': ['b']}}}
    """
    out: dict = {}
    for size in sorted(pools):
        level = "easy" if size <= easy_max else "hard"
        out.setdefault(level, {})[size] = pools[size]
    return out
