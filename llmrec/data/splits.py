"""Splits of :class:`~llmrec.data.PerformanceRecords` for the three protocols.

* :func:`cold_prompt_split`: train / val / test by prompt, stratified by benchmark or
  category, seeded. No prompt is in two parts, so every validation and test prompt is
  a cold-start user, as at serving time.
* :func:`routereval_split`: an 80/10/10 split by prompt (a seeded, plain
  permutation; llmrec's protocol mode, see ``docs/splits_and_pools.md``), and
  :func:`split_from_indices` to rebuild a split whose indices are given (e.g. the
  ``split_index`` of a RouterEval pickle).
* :func:`cold_llm_split`: hold out some LLMs (new items); the training part never
  sees them, a few probe prompts reveal them for fold-in, and the test prompts carry
  every LLM so that the added ones can be evaluated.

All positions are row positions (``int64``) in the records that were split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, UnknownIdError
from .records import PerformanceRecords

__all__ = ["Split", "ColdLLMSplit", "cold_prompt_split", "routereval_split",
           "split_from_indices", "cold_llm_split", "stratified_order"]

_STRATIFY = ("benchmark", "category", None)


@dataclass(frozen=True)
class Split:
    """Three disjoint prompt sets of one :class:`PerformanceRecords`.

    Attributes
    ----------
    train, val, test : PerformanceRecords
        The records of each part (all LLMs, prompts of that part, in index order).
    train_idx, val_idx, test_idx : numpy.ndarray of int64
        Row positions of each part in the records that were split.
    """

    train: PerformanceRecords
    val: PerformanceRecords
    test: PerformanceRecords
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    def __iter__(self):  # ``train, val, test = split``
        return iter((self.train, self.val, self.test))

    def __repr__(self) -> str:
        return (f"Split(train={len(self.train_idx)}, val={len(self.val_idx)}, "
                f"test={len(self.test_idx)} prompts)")


@dataclass(frozen=True)
class ColdLLMSplit:
    """A cold-LLM (new item) split; see :func:`cold_llm_split`.

    Attributes
    ----------
    train : PerformanceRecords
        Training prompts x kept LLMs. Never contains a held-out LLM.
    probe : PerformanceRecords
        ``n_probe`` training prompts x held-out LLMs: the records of the new LLMs that
        a router may see to fold them in.
    test : PerformanceRecords
        Test prompts x all LLMs (original column order), to evaluate old and new LLMs.
    held_out, kept : list of str
        Names of the held-out (new) and kept LLMs, in the records' column order.
    train_idx, probe_idx, test_idx : numpy.ndarray of int64
        Row positions in the records that were split; ``probe_idx`` is a subset of
        ``train_idx``, and ``test_idx`` is disjoint from ``train_idx``.
    """

    train: PerformanceRecords
    probe: PerformanceRecords
    test: PerformanceRecords
    held_out: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    train_idx: np.ndarray = None
    probe_idx: np.ndarray = None
    test_idx: np.ndarray = None

    def __repr__(self) -> str:
        return (f"ColdLLMSplit(train={len(self.train_idx)} prompts x {len(self.kept)} LLMs, "
                f"probe={len(self.probe_idx)} prompts x {len(self.held_out)} held-out LLMs, "
                f"test={len(self.test_idx)} prompts x all LLMs)")


# --------------------------------------------------------------------- helpers
def _check_fraction(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"{what} must be in [0, 1), got {value!r}")
    return v


def _strata(records: PerformanceRecords, stratify) -> np.ndarray:
    """One integer label per prompt (all zeros when ``stratify`` is None)."""
    if stratify not in _STRATIFY:
        raise ConfigError(f"stratify must be 'benchmark', 'category' or None, got {stratify!r}")
    if stratify is None:
        return np.zeros(records.n_prompts, dtype=np.int64)
    col = records.prompts[stratify]
    labels = col.astype(object).where(col.notna(), "").astype(str).to_numpy()
    codes, _ = pd.factorize(labels, sort=True)
    return codes.astype(np.int64)


def stratified_order(strata: np.ndarray, seed: int = 42) -> np.ndarray:
    """A seeded permutation of positions whose every prefix is (nearly) stratified.

    Each stratum is shuffled; the prompt of within-stratum rank ``r`` in a stratum of
    size ``n_s`` gets the key ``(r + u_s) / n_s`` with one random offset ``u_s`` in
    [0, 1) per stratum, and positions are ordered by key. Any prefix of length ``k``
    then holds ``k * n_s / n`` prompts of stratum ``s``, give or take one, and the
    totals are exact.

    Parameters
    ----------
    strata : array of int, shape (n,)
        Stratum label per position.
    seed : int

    Returns
    -------
    numpy.ndarray of int64, shape (n,)

    Examples
    --------
    >>> order = stratified_order(np.array([0, 0, 0, 0, 1, 1, 1, 1]), seed=0)
    >>> sorted(order.tolist())
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[order[:4]].tolist())
    [0, 0, 1, 1]
    """
    strata = np.asarray(strata, dtype=np.int64)
    n = len(strata)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    s = strata[perm]
    by_stratum = perm[np.argsort(s, kind="stable")]   # shuffled within each stratum
    s_sorted = strata[by_stratum]
    if n == 0:
        return by_stratum
    n_strata = int(s_sorted.max()) + 1
    sizes = np.bincount(s_sorted, minlength=n_strata)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - starts[s_sorted]
    offset = rng.random(n_strata)
    key = (rank + offset[s_sorted]) / sizes[s_sorted]
    return by_stratum[np.argsort(key, kind="stable")]


def split_from_indices(records: PerformanceRecords, train_idx, val_idx, test_idx) -> Split:
    """Build a :class:`Split` from given row positions (checked to be disjoint).

    Examples
    --------
    >>> from llmrec.data.synthetic import make_synthetic
    >>> rec = make_synthetic(10, 3, seed=0)
    >>> s = split_from_indices(rec, [0, 1, 2, 3, 4, 5, 6, 7], [8], [9])
    >>> s
    Split(train=8, val=1, test=1 prompts)
    """
    parts = []
    for name, idx in (("train_idx", train_idx), ("val_idx", val_idx), ("test_idx", test_idx)):
        arr = np.asarray(idx if idx is not None else [], dtype=np.int64).ravel()
        if arr.size and (arr.min() < 0 or arr.max() >= records.n_prompts):
            raise UnknownIdError(f"{name}: position out of range 0..{records.n_prompts - 1}")
        if len(np.unique(arr)) != len(arr):
            raise ConfigError(f"{name}: a prompt position appears twice")
        parts.append(arr)
    all_idx = np.concatenate(parts)
    if len(np.unique(all_idx)) != len(all_idx):
        raise ConfigError("train/val/test positions overlap; a prompt may be in one part only")
    tr, va, te = parts
    return Split(records.select_prompts(tr), records.select_prompts(va),
                 records.select_prompts(te), tr, va, te)


# ----------------------------------------------------------------- the splits
def cold_prompt_split(records: PerformanceRecords, val: float = 0.1, test: float = 0.1,
                      seed: int = 42, stratify: str | None = "benchmark") -> Split:
    """Split records by prompt into train / val / test, stratified and seeded.

    Every prompt lands in exactly one part, so no validation or test prompt is seen
    in training (they are cold-start users). Part sizes are ``round(n * test)`` and
    ``round(n * val)``; within each part, every stratum (benchmark or category value;
    an empty value is a stratum too) has its share of prompts, give or take one (see
    :func:`stratified_order`). Indices in each part are sorted.

    Parameters
    ----------
    records : PerformanceRecords
    val, test : float in [0, 1)
        Shares of prompts for validation and test; ``val + test`` must be < 1.
    seed : int
    stratify : {"benchmark", "category", None}
        Prompt-table column to stratify on.

    Returns
    -------
    Split

    Examples
    --------
    >>> from llmrec.data.synthetic import make_synthetic
    >>> rec = make_synthetic(200, 4, n_topics=3, seed=0)
    >>> s = cold_prompt_split(rec, val=0.1, test=0.2, seed=1)
    >>> len(s.train_idx), len(s.val_idx), len(s.test_idx)
    (140, 20, 40)
    >>> set(s.train.prompt_ids) & set(s.test.prompt_ids)
    set()
    """
    val = _check_fraction(val, "val")
    test = _check_fraction(test, "test")
    if val + test >= 1.0:
        raise ConfigError(f"val + test must be < 1 so that training keeps prompts, got "
                          f"{val} + {test}")
    n = records.n_prompts
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    if n_test + n_val >= n and n > 0:
        raise ConfigError(f"{n} prompts are too few for val={val}, test={test}: no prompt "
                          "would be left for training")
    order = stratified_order(_strata(records, stratify), seed)
    te = np.sort(order[:n_test])
    va = np.sort(order[n_test:n_test + n_val])
    tr = np.sort(order[n_test + n_val:])
    return split_from_indices(records, tr, va, te)


def routereval_split(records: PerformanceRecords, seed: int = 42) -> Split:
    """RouterEval's split: 80 / 10 / 10 by prompt from one seeded permutation.

    The permutation is ``numpy.random.RandomState(seed).permutation(n)``; its first
    ``int(0.8 n)`` positions are train, the next ``int(0.9 n) - int(0.8 n)`` val, the
    rest test (not stratified). This is llmrec's split; RouterEval's own (a legacy
    ``np.random.seed(42)`` shuffle per sub-scenario, in its ``get_router_dataset.py``)
    is :func:`llmrec.evaluation.routereval_exact.routereval_exact_split`, and a
    RouterEval pickle's ``split_index`` goes through :func:`split_from_indices`.

    Examples
    --------
    >>> from llmrec.data.synthetic import make_synthetic
    >>> s = routereval_split(make_synthetic(50, 3, seed=0), seed=0)
    >>> len(s.train_idx), len(s.val_idx), len(s.test_idx)
    (40, 5, 5)
    """
    n = records.n_prompts
    perm = np.random.RandomState(seed).permutation(n).astype(np.int64)
    a, b = int(0.8 * n), int(0.9 * n)
    return split_from_indices(records, np.sort(perm[:a]), np.sort(perm[a:b]),
                              np.sort(perm[b:]))


def _resolve_held_out(records: PerformanceRecords, held_out, rng) -> np.ndarray:
    m = records.n_llms
    if isinstance(held_out, str):
        held_out = [held_out]
    if isinstance(held_out, (bool, np.bool_)):
        raise ConfigError("held_out must be LLM names, a count or a fraction, not a bool")
    if isinstance(held_out, (int, np.integer)):
        k = int(held_out)
    elif isinstance(held_out, (float, np.floating)):
        if not 0.0 < held_out < 1.0:
            raise ConfigError(f"held_out as a fraction must be in (0, 1), got {held_out}")
        k = max(1, int(round(held_out * m)))
    else:
        cols = records.llm_index(list(held_out))
        if len(np.unique(cols)) != len(cols):
            raise ConfigError("held_out names an LLM twice")
        k = len(cols)
        if 0 < k < m:
            return np.sort(cols)
    if not 0 < k < m:
        raise ConfigError(f"held_out must leave at least one LLM on each side: {k} of {m} "
                          "LLMs held out")
    return np.sort(rng.choice(m, size=k, replace=False)).astype(np.int64)


def cold_llm_split(records: PerformanceRecords, held_out: Sequence[str] | int | float = 0.2,
                   n_probe: int = 50, seed: int = 42, test: float = 0.2,
                   stratify: str | None = "benchmark") -> ColdLLMSplit:
    """Hold out LLMs as new items: train without them, fold in from probes, test on all.

    Steps (all draws from ``numpy.random.default_rng(seed)`` and :func:`stratified_order`):

    1. Held-out LLMs: the given names, or ``held_out`` LLMs drawn at random (an
       int), or ``round(held_out * n_llms)`` of them (a float in (0, 1)).
    2. Prompts split into training and test prompts by :func:`cold_prompt_split`
       (``test`` share, stratified, no validation part).
    3. ``train`` = training prompts x kept LLMs.
    4. ``probe`` = ``n_probe`` training prompts, drawn among those where at least one
       held-out LLM is observed, x held-out LLMs: the only records of the new LLMs a
       router may use to add them. Their kept-LLM records are in ``train``.
    5. ``test`` = test prompts x all LLMs (original column order).

    Parameters
    ----------
    records : PerformanceRecords
    held_out : list of str, int or float
    n_probe : int
        Probe prompts (>= 0); an error if fewer training prompts observe a held-out LLM.
    seed : int
    test : float in (0, 1)
        Share of test prompts.
    stratify : {"benchmark", "category", None}

    Returns
    -------
    ColdLLMSplit

    Examples
    --------
    >>> from llmrec.data.synthetic import make_synthetic
    >>> rec = make_synthetic(100, 6, seed=0)
    >>> s = cold_llm_split(rec, held_out=["llm-05"], n_probe=10, seed=0)
    >>> s.held_out, s.train.n_llms, s.probe.shape, s.test.n_llms
    (['llm-05'], 5, (10, 1), 6)
    """
    test = _check_fraction(test, "test")
    if test <= 0:
        raise ConfigError("test must be > 0 for a cold-LLM split")
    if int(n_probe) != n_probe or n_probe < 0:
        raise ConfigError(f"n_probe must be a non-negative integer, got {n_probe!r}")
    n_probe = int(n_probe)
    rng = np.random.default_rng(seed)
    out_cols = _resolve_held_out(records, held_out, rng)
    keep_mask = np.ones(records.n_llms, dtype=bool)
    keep_mask[out_cols] = False
    kept_cols = np.flatnonzero(keep_mask)

    base = cold_prompt_split(records, val=0.0, test=test, seed=seed, stratify=stratify)
    tr, te = base.train_idx, base.test_idx

    obs_out = records.observed[tr][:, out_cols]
    candidates = tr[np.asarray(obs_out.sum(axis=1)).ravel() > 0]
    if n_probe > len(candidates):
        raise ConfigError(f"n_probe={n_probe} but only {len(candidates)} training prompts "
                          "observe a held-out LLM; lower n_probe or hold out other LLMs")
    probe_idx = np.sort(rng.choice(candidates, size=n_probe, replace=False)).astype(np.int64)

    names = np.asarray(records.llm_names, dtype=object)
    train = records.select_prompts(tr).select_llms(kept_cols)
    probe = records.select_prompts(probe_idx).select_llms(out_cols)
    test_rec = records.select_prompts(te)
    return ColdLLMSplit(train=train, probe=probe, test=test_rec,
                        held_out=[str(x) for x in names[out_cols]],
                        kept=[str(x) for x in names[kept_cols]],
                        train_idx=tr, probe_idx=probe_idx, test_idx=te)
