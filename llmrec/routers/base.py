"""The one small router interface.

A router scores (prompts x LLMs). ``recommend`` turns scores into a top-k through
:mod:`llmrec.retrieval`: factorised routers expose prompt vectors and LLM vectors
(``_vectors``) and are searched with a FAISS index; the others rank their score
matrix. Both paths give identical rankings (ties by LLM index).

Subclasses implement ``_fit(records, X, val, X_val)`` and ``_score(X, prompts)``,
``_get_state()`` / ``_set_state()`` for persistence, and optionally
``_vectors(X)`` and ``_add_llm(...)``. Capability flags say what a router can do and
the base class refuses the rest with :class:`~llmrec.errors.CapabilityError`.

Prompt input accepted everywhere (``score``, ``recommend``): a list of texts, one
text, a DataFrame with ``text`` (and optionally ``benchmark``/``category``), a
:class:`~llmrec.data.PerformanceRecords`, or a 2-D float array of precomputed
features (as produced by ``router.features(...)``). Prompt ids known to a dataset
are served by :class:`~llmrec.encoders.PrecomputedEncoder`, which resolves ids and
exact texts to stored vectors.

Tie rule: a choice never depends on the LLMs' column order. Equal scores go to the
LLM with the higher mean training score, then to the smaller name
(:func:`llmrec.retrieval.tie_ranks`); ``fit`` records each LLM's training mean
(``llm_train_mean_``, saved with the model, updated by ``add_llm``) and ``recommend``
passes the rank to both retrieval paths (FAISS and numpy). Subclasses that pick by
argmax themselves (e.g. validation tuning) use :meth:`Router.argmax`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._atomic import atomic_directory
from .._atomic import recover as _recover
from .._atomic import sha256_file as _sha256
from .._version import __version__
from ..data.records import PerformanceRecords
from ..encoders.features import PromptFeaturizer, as_prompt_frame
from ..errors import (CapabilityError, ConfigError, DataFormatError, ModelFormatError,
                      NotFittedError, UnknownIdError)
from ..retrieval import LLMIndex, tie_break_argmax, tie_ranks, topk_scores

MODEL_FORMAT_VERSION = 2  # 2: manifest checksum chain, confined file names
ROUTERS: dict[str, type] = {}


def register_router(cls):
    """Class decorator: make ``cls`` buildable by ``make_router(cls.name)``."""
    ROUTERS[cls.name] = cls
    return cls


def make_router(name: str, **params) -> "Router":
    """Build a router by registry name.

    Examples
    --------
    >>> from llmrec.routers import make_router
    >>> make_router("best-single")
    BestSingleRouter()
    """
    _import_all()
    if name not in ROUTERS:
        raise ConfigError(f"unknown router {name!r}; available: {', '.join(sorted(ROUTERS))}")
    cls = ROUTERS[name]
    try:
        return cls(**params)
    except TypeError as e:
        raise ConfigError(f"router {name!r}: {e}; see help(llmrec.routers.{cls.__name__})") \
            from None


def available_routers() -> list[str]:
    _import_all()
    return sorted(ROUTERS)


def _import_all():
    import importlib
    importlib.import_module("llmrec.routers")


def llm_costs(records: PerformanceRecords) -> np.ndarray | None:
    """Per-LLM cost used by cost-aware ranking, or None when unknown.

    Mean per-record cost when the records carry costs; otherwise the mean of
    ``price_input`` and ``price_output`` (USD per 1M tokens), or ``price``.
    """
    if records.cost is not None:
        s = records.llm_summary()
        if s["mean_cost"].notna().all():
            return s["mean_cost"].to_numpy(dtype=np.float32)
    t = records.llms
    if "price_input" in t and "price_output" in t:
        v = (pd.to_numeric(t["price_input"], errors="coerce")
             + pd.to_numeric(t["price_output"], errors="coerce")) / 2
        if v.notna().all():
            return v.to_numpy(dtype=np.float32)
    if "price" in t:
        v = pd.to_numeric(t["price"], errors="coerce")
        if v.notna().all():
            return v.to_numpy(dtype=np.float32)
    return None


class Router:
    """Base class of every router. See the module docstring for the contract."""

    name = "base"
    #: can score prompts never seen in training (from their features)
    supports_cold_prompts = True
    #: implements add_llm(name, probe_records)
    supports_new_llms = False
    #: needs prompt features (an encoder) to score
    needs_text = True
    #: reads the ground truth of the prompts it scores (oracle-style; bounds only)
    needs_truth = False
    #: has LLM vectors searchable with an inner-product index
    factorized = False
    #: fit accepts per-record weights (``sample_weight=``), e.g. inverse propensities
    supports_sample_weight = False

    # -------------------------------------------------------------- params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params) -> "Router":
        for k, v in params.items():
            if k not in self._param_names():
                raise ConfigError(f"{type(self).__name__} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {p: v.default for p, v in inspect.signature(type(self).__init__)
                    .parameters.items() if p != "self"}
        shown = {k: v for k, v in self.get_params().items() if defaults.get(k) != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # ----------------------------------------------------------------- fit
    def fit(self, train: PerformanceRecords, encoder=None, val_records=None,
            side_features: Sequence[str] = (), show_progress: bool | None = None,
            sample_weight=None) -> "Router":
        """Fit on training records.

        Parameters
        ----------
        train : PerformanceRecords
            Training prompts x LLMs; unobserved cells are ignored, never read as 0.
        encoder : Encoder or str, optional
            Prompt encoder (default: a TF-IDF encoder fitted on the training
            prompts). Strings go through :func:`llmrec.encoders.make_encoder`.
        val_records : PerformanceRecords, optional
            Validation prompts on the same LLMs, for routers that tune or stop early.
        side_features : sequence of {"benchmark", "category", "length"}
            Side features appended to the prompt embedding.
        sample_weight : array or sparse matrix, shape (n_prompts, n_llms), optional
            Weight of each observed record (e.g. clipped inverse propensities of
            logged decisions, see :mod:`llmrec.policies.learning`); only routers with
            ``supports_sample_weight`` accept it.
        """
        if not isinstance(train, PerformanceRecords):
            raise DataFormatError(f"fit expects PerformanceRecords, got {type(train).__name__}")
        if train.n_prompts == 0 or train.n_llms == 0 or train.n_observed == 0:
            raise DataFormatError(f"cannot fit on empty records {train!r}")
        if val_records is not None:
            val_records = self._align_llms(val_records, train.llm_names, "val_records")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(self, sample_weight, train)
        given, order = train, self._canonical_order(train)
        if order is not None:  # train in name order, then put the LLMs back (see below)
            train = train.select_llms(order)
            if val_records is not None:
                val_records = val_records.select_llms(order)
            if sample_weight is not None:
                sample_weight = sample_weight[:, order]
        t0 = time.perf_counter()
        self.llms_ = train.llms.reset_index(drop=True).copy()
        self.llm_costs_ = llm_costs(train)
        self.train_summary_ = {"n_prompts": train.n_prompts, "n_llms": train.n_llms,
                               "n_observed": train.n_observed, "name": train.name,
                               "score_min": float(train.scores.data.min()),
                               "score_max": float(train.scores.data.max()),
                               "score_kind": getattr(train, "score_kind", None),
                               "reference_llm": getattr(train, "reference_llm", None),
                               "score_range": getattr(train, "score_range", None)}
        from .signal import warn_constant_llms
        warn_constant_llms(train, f"{type(self).__name__}.fit")
        # per-LLM training mean (the tie rule), from the CSR: no dense copy of the matrix
        self.llm_train_mean_ = train.llm_summary()["mean_score"].to_numpy(np.float64)
        # which prompts the model has seen: `llmrec evaluate` warns about overlap
        ids_h, text_h = prompt_hashes(train)
        self.train_prompt_hashes_ = {"ids": np.unique(ids_h), "texts": np.unique(text_h)}
        self.train_summary_["prompt_fingerprint"] = hashlib.sha256(
            self.train_prompt_hashes_["ids"].tobytes()).hexdigest()[:16]
        X = X_val = None
        self.featurizer_ = None
        if self.needs_text:
            from ..encoders import make_encoder
            enc = make_encoder(encoder if encoder is not None else "tfidf")
            self.featurizer_ = PromptFeaturizer(enc, side_features).fit(train)
            X = self.featurizer_.transform(train, show_progress=show_progress)
            if val_records is not None:
                X_val = self.featurizer_.transform(val_records, show_progress=show_progress)
        self._show_progress = show_progress  # read by the epoch / grid loops of _fit
        if sample_weight is not None:
            self._fit_weighted(train, X, val_records, X_val, sample_weight)
        else:
            self._fit(train, X, val_records, X_val)
        if order is not None:
            self._restore_llm_order(given, order)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # ------------------------------------------------------ column order
    #: training draws random values per LLM *position* (factor or weight init, pair
    #: sampling), so the fitted model would depend on the records' column order; such
    #: routers train on the LLMs sorted by name and then permute their LLM-indexed
    #: arrays (``_llm_axes``) back to the given order: a fit on shuffled columns is the
    #: same model, bit for bit. An instance may set it False (RouterEval's exact mode
    #: reproduces RouterEval's own runs, which depend on its column order).
    canonical_llm_order = False

    def _llm_axes(self, arrays: dict[str, np.ndarray]) -> dict[str, int]:
        """The LLM axis of each LLM-indexed array of ``_get_state()`` (canonical routers)."""
        raise NotImplementedError

    def _canonical_order(self, train: PerformanceRecords) -> np.ndarray | None:
        if not self.canonical_llm_order:
            return None
        order = np.argsort(np.asarray(train.llm_names, dtype=object), kind="stable")
        return None if np.array_equal(order, np.arange(len(order))) else order

    def _restore_llm_order(self, given: PerformanceRecords, order: np.ndarray) -> None:
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        state, arrays = self._get_state()
        for key, axis in self._llm_axes(arrays).items():
            arrays[key] = np.take(arrays[key], inv, axis=axis)
        self.llms_ = given.llms.reset_index(drop=True).copy()
        if self.llm_costs_ is not None:
            self.llm_costs_ = self.llm_costs_[inv]
        self.llm_train_mean_ = self.llm_train_mean_[inv]
        self._set_state(state, arrays)

    def _fit(self, records: PerformanceRecords, X: np.ndarray | None,
             val: PerformanceRecords | None, X_val: np.ndarray | None) -> None:
        raise NotImplementedError

    def _fit_weighted(self, records, X, val, X_val, weight: np.ndarray) -> None:
        """``_fit`` with a dense (n_prompts, n_llms) weight per observed record."""
        raise NotImplementedError

    @staticmethod
    def _align_llms(records: PerformanceRecords, names: Sequence[str], what: str
                    ) -> PerformanceRecords:
        if not isinstance(records, PerformanceRecords):
            raise DataFormatError(f"{what} must be PerformanceRecords")
        names = list(names)
        have = records.llm_names
        if have == names:  # already aligned: no copy of the matrix
            return records
        known = set(have)  # built once: a set per name cost minutes at 8,500 LLMs
        missing = [n for n in names if n not in known]
        if missing:
            raise UnknownIdError(f"{what} lacks LLM(s) {missing[:5]} that the router knows")
        return records.select_llms(names)

    # ------------------------------------------------------------- fitted
    def _check_fitted(self):
        if not hasattr(self, "llms_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(records) first")

    @property
    def llms_(self) -> pd.DataFrame:
        """The fitted LLM table (name first, then metadata), in the router's order."""
        try:
            return self.__dict__["_llms"]
        except KeyError:
            raise AttributeError("llms_") from None

    @llms_.setter
    def llms_(self, table: pd.DataFrame) -> None:
        # the names are read on every recommend: keep them as a tuple, not a pandas column
        self.__dict__["_llms"] = table
        self.__dict__["_llm_names"] = tuple(str(n) for n in table["name"])

    @property
    def llm_names_(self) -> list[str]:
        self._check_fitted()
        return list(self.__dict__["_llm_names"])

    @property
    def n_llms_(self) -> int:
        self._check_fitted()
        return len(self.__dict__["_llm_names"])

    @property
    def tie_rank_(self) -> np.ndarray:
        """Rank of each LLM in the tie rule (0 wins a tie): training mean, then name."""
        self._check_fitted()
        means = getattr(self, "llm_train_mean_", None)
        if means is None or len(means) != self.n_llms_:  # models saved before the rule
            means = np.full(self.n_llms_, np.nan)
        return tie_ranks(means, self.llm_names_)

    def argmax(self, scores: np.ndarray) -> np.ndarray:
        """Best LLM position per row of ``scores`` under the tie rule (NaN ranks last).

        Examples
        --------
        >>> from llmrec.datasets import make_synthetic
        >>> r = make_router("best-single").fit(make_synthetic(40, 3, seed=0))
        >>> int(r.argmax(np.zeros((1, 3)))[0]) == int(np.argmax(r.llm_train_mean_))
        True
        """
        return tie_break_argmax(scores, self.tie_rank_)

    @property
    def feature_dim_(self) -> int | None:
        return self.featurizer_.dim if self.featurizer_ is not None else None

    def features(self, prompts, show_progress: bool | None = None) -> np.ndarray | None:
        """Prompt features as the router sees them (encoder + side features)."""
        self._check_fitted()
        if self.featurizer_ is None:
            return None
        return self.featurizer_.transform(prompts, show_progress=show_progress)

    def _n_prompts(self, prompts) -> int:
        if isinstance(prompts, PerformanceRecords):
            return prompts.n_prompts
        if isinstance(prompts, np.ndarray) and prompts.dtype.kind in "fiu":
            if prompts.ndim != 2:
                raise ConfigError(f"precomputed features must be 2-D, got shape {prompts.shape}")
            return prompts.shape[0]
        return len(as_prompt_frame(prompts))

    # --------------------------------------------------------------- score
    def score(self, prompts, show_progress: bool | None = None, cost_weight: float = 0.0
              ) -> np.ndarray:
        """Predicted scores, shape (n_prompts, n_llms), float32; higher is better.

        With ``cost_weight`` > 0 (the router must know LLM costs) the scores are
        predicted utilities: by default the score minus ``cost_weight`` x the LLM's
        cost (``llm_costs_``), what :meth:`recommend` ranks by. A router may trade
        differently (``auto`` applies its no-regret guard at that cost weight).
        """
        self._check_fitted()
        w = self._check_cost_weight(cost_weight)
        if self.needs_truth and not isinstance(prompts, PerformanceRecords):
            raise CapabilityError(f"{type(self).__name__} reads the truth: pass "
                                  "PerformanceRecords, not texts or features")
        if self.needs_text:  # the features give the count: the input is read once
            X = self.features(prompts, show_progress)
            n = X.shape[0]
        else:
            X = None
            n = self._n_prompts(prompts)
        if n == 0:
            return np.zeros((0, self.n_llms_), dtype=np.float32)
        S = self._score(X, prompts, n) if not w else self._score_at_cost(X, prompts, n, w)
        S = np.asarray(S, dtype=np.float32)
        if S.shape != (n, self.n_llms_):  # pragma: no cover - a subclass bug
            raise RuntimeError(f"{type(self).__name__}._score returned shape {S.shape}")
        return S

    def _check_cost_weight(self, cost_weight) -> float:
        """``cost_weight`` as a float >= 0; > 0 needs known LLM costs."""
        w = float(cost_weight)
        if not np.isfinite(w) or w < 0:
            raise ConfigError(f"cost_weight must be a finite number >= 0, got {cost_weight}")
        if w and self.llm_costs_ is None:
            raise CapabilityError("cost-aware scoring needs LLM prices or per-record costs in "
                                  "the training records; none are known")
        return w

    def _score(self, X: np.ndarray | None, prompts, n: int) -> np.ndarray:
        """Scores (n, n_llms) from features X (None for feature-free routers); ``prompts``
        is the raw input (PerformanceRecords for truth-reading routers)."""
        raise NotImplementedError

    def _score_at_cost(self, X: np.ndarray | None, prompts, n: int, cost_weight: float
                       ) -> np.ndarray:
        """Predicted utilities at ``cost_weight`` > 0: the scores minus the weighted cost.

        A router that trades quality for cost in its own way overrides this (and then
        ranks through :meth:`score`, never through the factorised or blocked paths)."""
        return np.asarray(self._score(X, prompts, n), dtype=np.float32) \
            - np.float32(cost_weight) * self.llm_costs_[None, :]

    def _vectors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(prompt vectors, LLM vectors, LLM bias) with score = q . v + b (factorised only)."""
        raise NotImplementedError

    # ----------------------------------------------------------- recommend
    def candidate_positions(self, candidates) -> np.ndarray | None:
        """Map candidate LLM names (or positions) to positions; unknown names raise."""
        if candidates is None:
            return None
        cand = [candidates] if isinstance(candidates, str) else list(candidates)
        if len(cand) == 0:
            raise ConfigError("candidates is empty; give at least one LLM or None for all")
        if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cand):
            pos = np.asarray(cand, dtype=np.int64)
            if pos.min() < 0 or pos.max() >= self.n_llms_:
                raise UnknownIdError(f"candidate position out of range 0..{self.n_llms_ - 1}")
            return pos
        index = {n: i for i, n in enumerate(self.llm_names_)}
        unknown = [str(c) for c in cand if str(c) not in index]
        if unknown:
            raise UnknownIdError(f"unknown candidate LLM(s): {', '.join(unknown)}; "
                                 f"the router knows {self.n_llms_} LLMs (see llm_names_)")
        return np.asarray([index[str(c)] for c in cand], dtype=np.int64)

    def recommend_ids(self, prompts, k: int = 1, candidates=None, cost_weight: float = 0.0,
                      max_cost: float | None = None, show_progress: bool | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`recommend` but returns integer LLM positions (batch-first, internal)."""
        self._check_fitted()
        cand = self.candidate_positions(candidates)
        bias = None
        w = self._check_cost_weight(cost_weight)
        own_trade = w > 0 and type(self)._score_at_cost is not Router._score_at_cost
        if w or max_cost is not None:
            if self.llm_costs_ is None:
                raise CapabilityError("cost-aware recommending needs LLM prices or per-record "
                                      "costs in the training records; none are known")
            bias = None if own_trade else -w * self.llm_costs_
            if max_cost is not None:
                ok = np.flatnonzero(self.llm_costs_ <= max_cost)
                cand = ok if cand is None else np.intersect1d(cand, ok)
                if len(cand) == 0:
                    raise ConfigError(f"no candidate LLM costs <= max_cost={max_cost}")
        if own_trade:  # the router's own cost trade (e.g. auto's guard per cost weight)
            return topk_scores(self.score(prompts, show_progress, cost_weight=w), k, cand,
                               self.tie_rank_)
        if self.factorized and self.needs_text and not self.needs_truth:
            X = self.features(prompts, show_progress)
            if X.shape[0] == 0:
                from ..retrieval.index import _check_k
                kk = min(_check_k(k), self.n_llms_ if cand is None else len(np.unique(cand)))
                return np.zeros((0, kk), np.int64), np.zeros((0, kk), np.float32)
            Q, V, b = self._vectors(X)
            if bias is not None:
                b = bias if b is None else b + bias
            index = LLMIndex().add(V, bias=b, tie_rank=self.tie_rank_)
            return index.search(Q, k, cand)
        if self._rows_independent and self.needs_text and not self.needs_truth:
            return self._recommend_blocks(self.features(prompts, show_progress), k, cand,
                                          bias)
        S = self.score(prompts, show_progress)
        if bias is not None:
            S = S + bias[None, :]
        return topk_scores(S, k, cand, self.tie_rank_)

    #: a router whose ``_score`` reads only the feature rows (no ``prompts``, no state
    #: shared between rows) sets this: ``recommend`` then scores and ranks blocks of
    #: rows, so a large batch never holds the whole (n_prompts, n_llms) matrix (40,000
    #: prompts x 8,500 LLMs would be 1.3 GiB, and its top-k another copy)
    _rows_independent = False
    #: cells per block of the blocked recommend (float32: 64 MiB; about 2,000 prompts at
    #: 8,500 LLMs). Smaller blocks were measured slower: BLAS is less efficient on short
    #: matrix products (linear at 8,500 LLMs: 0.169 s per 2,000 prompts in blocks of
    #: 246, 0.125 s in one)
    _recommend_block_cells = 1 << 24

    def _recommend_blocks(self, X: np.ndarray, k: int, cand, bias
                          ) -> tuple[np.ndarray, np.ndarray]:
        n = X.shape[0]
        step = max(1, self._recommend_block_cells // max(1, self.n_llms_))
        rank = self.tie_rank_  # a property: computed once, not per block
        if n <= step:  # one block: the plain path
            S = np.asarray(self._score(X, None, n), dtype=np.float32) if n else \
                np.zeros((0, self.n_llms_), dtype=np.float32)
            if bias is not None:
                S += bias[None, :]
            return topk_scores(S, k, cand, rank)
        ids, vals = [], []
        for s in range(0, n, step):
            Xb = X[s:s + step]
            S = np.asarray(self._score(Xb, None, Xb.shape[0]), dtype=np.float32)
            if bias is not None:
                S += bias[None, :]
            i, v = topk_scores(S, k, cand, rank)
            ids.append(i)
            vals.append(v)
        return np.concatenate(ids), np.concatenate(vals)

    def recommend(self, prompts, k: int = 1, candidates=None, cost_weight: float = 0.0,
                  max_cost: float | None = None, show_progress: bool | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k LLMs for each prompt.

        Parameters
        ----------
        prompts : texts, DataFrame, PerformanceRecords or 2-D feature array
        k : int
            Number of LLMs per prompt (k larger than the pool returns the pool).
        candidates : sequence of LLM names, optional
            Restrict the choice to these LLMs (a RouterEval pool, the LLMs available now).
        cost_weight : float
            Rank by predicted score minus ``cost_weight`` x the LLM's cost.
        max_cost : float, optional
            Budget: only LLMs whose cost is at most this.

        Returns
        -------
        llms : ndarray of str, shape (n_prompts, k)
        scores : ndarray of float32, shape (n_prompts, k)
            The ranking scores (cost-adjusted when ``cost_weight`` > 0).
        """
        ids, scores = self.recommend_ids(prompts, k, candidates, cost_weight, max_cost,
                                         show_progress)
        names = np.asarray(self.llm_names_, dtype=object)
        return names[ids], scores

    # -------------------------------------------------------------- new LLMs
    def add_llm(self, name: str, probe_records: PerformanceRecords,
                metadata: dict | None = None) -> "Router":
        """Add a new LLM from a handful of its evaluated probe prompts, rest frozen.

        ``probe_records`` holds the probe prompts (with text) and at least the new
        LLM's column named ``name``.
        """
        self._check_fitted()
        if not self.supports_new_llms:
            raise CapabilityError(f"{type(self).__name__} cannot add LLMs after fitting "
                                  "(supports_new_llms is False); refit instead")
        if name in self.llm_names_:
            raise ConfigError(f"LLM {name!r} is already known to the router")
        if not isinstance(probe_records, PerformanceRecords):
            raise DataFormatError("probe_records must be PerformanceRecords")
        col = probe_records.select_llms([name])
        col = col.select_prompts(np.flatnonzero(col.observed_dense()[:, 0]))
        if col.n_prompts == 0:
            raise DataFormatError(f"probe_records hold no observed record of LLM {name!r}")
        X = self.features(col) if self.needs_text else None
        y = col.dense()[:, 0]
        meta = dict(metadata or {})
        if name in probe_records.llm_names:
            row = probe_records.llms.iloc[int(probe_records.llm_index(name)[0])].to_dict()
            meta = {**{k: v for k, v in row.items() if k != "name"}, **meta}
        self._add_llm(name, X, y, meta)
        if getattr(self, "llm_train_mean_", None) is not None:
            self.llm_train_mean_ = np.append(self.llm_train_mean_, float(np.mean(y)))
        new_row = {c: meta.get(c) for c in self.llms_.columns if c != "name"}
        new_row["name"] = name
        self.llms_ = pd.concat([self.llms_, pd.DataFrame([new_row])], ignore_index=True)
        if self.llm_costs_ is not None:
            c = meta.get("cost")
            if c is None and meta.get("price_input") is not None:
                c = (float(meta["price_input"]) + float(meta.get("price_output", 0.0))) / 2
            self.llm_costs_ = np.append(self.llm_costs_, np.float32(np.nan if c is None else c))
        return self

    def _add_llm(self, name: str, X: np.ndarray | None, y: np.ndarray, metadata: dict) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able learned settings, arrays) of the fitted router."""
        raise NotImplementedError

    def _set_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted router to a directory (atomic, crash-safe; no pickle).

        Layout: ``manifest.json`` (router type and parameters, LLM table, encoder
        config and fingerprint, llmrec version, format version, training summary,
        SHA-256 of each array file, and a ``checksum`` over all of it) and
        ``router.npz`` / ``encoder.npz``; a non-packaged sentence-transformers
        encoder's weights are copied into ``encoder_model/``. One checksum chain
        covers everything a load reads; at every instant of a save either the old or
        the new model is at ``path`` (see :mod:`llmrec._atomic`).
        """
        self._check_fitted()
        path = Path(path)
        with atomic_directory(path, check_existing=_refuse_non_model) as tmp:
            state, arrays = self._get_state()
            np.savez(tmp / "router.npz", **arrays)
            files = {"router.npz": _sha256(tmp / "router.npz")}
            seen = getattr(self, "train_prompt_hashes_", None)
            if seen is not None:
                np.savez(tmp / "train_prompts.npz", **seen)
                files["train_prompts.npz"] = _sha256(tmp / "train_prompts.npz")
            feat = None
            extra = {}
            if self.featurizer_ is not None:
                feat = self.featurizer_.get_config()
                np.savez(tmp / "encoder.npz", **self.featurizer_.encoder.get_arrays())
                files["encoder.npz"] = _sha256(tmp / "encoder.npz")
                extra = _save_encoder_folder(self.featurizer_.encoder, feat, tmp)
            manifest = {
                "format": "llmrec.router", "format_version": MODEL_FORMAT_VERSION,
                "llmrec_version": __version__, "router": self.name,
                "params": _jsonable(self.get_params()), "state": _jsonable(state),
                "llms": json.loads(self.llms_.to_json(orient="records")),
                "llm_costs": None if self.llm_costs_ is None else self.llm_costs_.tolist(),
                "llm_train_mean": _means_json(getattr(self, "llm_train_mean_", None)),
                "featurizer": feat, "train_summary": _jsonable(self.train_summary_),
                "tuning": _jsonable(getattr(self, "tuning_", None)),
                "files": files, **extra,
            }
            manifest["checksum"] = manifest_checksum(manifest)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, encoder=None) -> "Router":
        """Load a router saved by :meth:`save`; checks version, checksums and encoder.

        Every byte read is inside ``path`` and covered by the manifest's checksum
        chain (manifest -> LLM table, settings, SHA-256 of each file); file names in
        the manifest must be plain names; a sentence-transformers encoder is taken
        from the packaged weights or from ``path/encoder_model`` only. Leftovers of an
        interrupted save of ``path`` are cleaned first (an interrupted swap is undone).

        ``encoder``, when given, must have the fingerprint the router was fitted with
        (a mismatched encoder would silently give wrong features); it replaces the
        stored one, e.g. to point a MiniLM encoder at another device.
        """
        path = Path(path)
        try:
            _recover(path)
        except OSError:  # read-only location: load what is there
            pass
        man = check_model_files(path)
        man_p = path / "manifest.json"
        _import_all()
        rname = man.get("router")
        if not isinstance(rname, str) or rname not in ROUTERS:
            raise ModelFormatError(f"{man_p}: unknown router type {rname!r}")
        rcls = ROUTERS[rname]
        if cls is not Router and not issubclass(rcls, cls):
            raise ModelFormatError(f"{path} holds a {rcls.__name__}, not a {cls.__name__}")
        try:
            if not isinstance(man["params"], dict):
                raise TypeError("'params' must be an object")
            router = rcls(**man["params"])
            arrays = _load_npz(path / "router.npz")
            router.llms_ = _llm_table(man["llms"])
            router.llm_costs_ = (None if man.get("llm_costs") is None
                                 else np.asarray(man["llm_costs"], dtype=np.float32))
            if router.llm_costs_ is not None and router.llm_costs_.shape != (len(router.llms_),):
                raise ValueError(f"llm_costs has {router.llm_costs_.size} values for "
                                 f"{len(router.llms_)} LLMs")
            router.train_summary_ = man.get("train_summary") or {}
            if not isinstance(router.train_summary_, dict):
                raise TypeError("'train_summary' must be an object")
            router.llm_train_mean_ = (None if man.get("llm_train_mean") is None else np.asarray(
                [np.nan if v is None else v for v in man["llm_train_mean"]], np.float64))
            if (router.llm_train_mean_ is not None
                    and router.llm_train_mean_.shape != (len(router.llms_),)):
                raise ValueError(f"llm_train_mean has {router.llm_train_mean_.size} values for "
                                 f"{len(router.llms_)} LLMs")
            if man.get("tuning"):
                router.tuning_ = man["tuning"]
            if "train_prompts.npz" in man["files"]:  # checked by check_model_files
                router.train_prompt_hashes_ = _load_npz(path / "train_prompts.npz")
            router.featurizer_ = None
            if man.get("featurizer") is not None:
                if not isinstance(man["featurizer"], dict):
                    raise TypeError("'featurizer' must be an object")
                enc_arrays = _load_npz(path / "encoder.npz")
                want = man["featurizer"].get("encoder_fingerprint")
                config = _confined_encoder_config(path, man, encoder is not None)
                router.featurizer_ = PromptFeaturizer.from_state(config, enc_arrays)
                if encoder is not None:
                    from ..encoders import make_encoder
                    enc = make_encoder(encoder)
                    if enc.fingerprint != want:
                        raise ModelFormatError(
                            f"encoder {enc.fingerprint} does not match the one {path} was "
                            f"fitted with ({want}); use that encoder or refit")
                    router.featurizer_.encoder = enc
                else:
                    _pin_copied_encoder(router.featurizer_.encoder, man, want)
                    if want is not None and router.featurizer_.encoder.fingerprint != want:
                        raise ModelFormatError(
                            f"{path}: the stored encoder now has fingerprint "
                            f"{router.featurizer_.encoder.fingerprint}, the router was fitted "
                            f"with {want} (other weights or settings installed?); restore "
                            "that encoder or refit")
            state = man.get("state") or {}
            if not isinstance(state, dict):
                raise TypeError("'state' must be an object")
            router._set_state(state, arrays)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            if isinstance(e, ModelFormatError):
                raise
            raise ModelFormatError(f"{path}: cannot restore {rname} ({e!r}); the files do "
                                   "not match this llmrec version") from None
        return router


def check_model_files(path: str | os.PathLike) -> dict:
    """Check a saved model's integrity without loading it; returns its manifest.

    The manifest must be a JSON object of this format version whose ``checksum``
    matches its content; every file it names must be a plain name inside ``path``
    (no links out) with the SHA-256 the manifest gives. Raises
    :class:`~llmrec.errors.ModelFormatError` naming the problem; changes nothing.

    Examples
    --------
    >>> import tempfile, os
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> d = make_router("best-single").fit(make_synthetic(50, 4, seed=0)).save(
    ...     os.path.join(tempfile.mkdtemp(), "m"))
    >>> check_model_files(d)["router"]
    'best-single'
    """
    path = Path(path)
    man_p = path / "manifest.json"
    if not man_p.is_file():
        raise ModelFormatError(f"{path}: no manifest.json; not a saved llmrec router")
    _confined(path, "manifest.json")
    try:
        man = json.loads(man_p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{man_p}: corrupt manifest ({e})") from None
    if not isinstance(man, dict):
        raise ModelFormatError(f"{man_p}: the manifest is a JSON {type(man).__name__}, "
                               "not an object; not an llmrec router manifest")
    if man.get("format") != "llmrec.router":
        raise ModelFormatError(f"{man_p}: not an llmrec router manifest")
    if man.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFormatError(f"{man_p}: model format version {man.get('format_version')}, "
                               f"this llmrec ({__version__}) reads version "
                               f"{MODEL_FORMAT_VERSION}; refit the router")
    if man.get("checksum") != manifest_checksum(man):
        raise ModelFormatError(f"{man_p}: manifest checksum mismatch (edited or corrupt "
                               "manifest); the model directory is corrupt, save it again")
    files = man.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ModelFormatError(f"{man_p}: 'files' must map file names to SHA-256 digests")
    for fname, digest in files.items():
        fp = _confined(path, fname)
        if not fp.is_file() or _sha256(fp) != digest:
            raise ModelFormatError(f"{fp}: missing or checksum mismatch; the model "
                                   "directory is corrupt, save it again")
    needed = ["router.npz"] + (["encoder.npz"] if man.get("featurizer") is not None else [])
    for fname in needed:
        if fname not in files:
            raise ModelFormatError(f"{man_p}: 'files' lacks {fname}; the model directory "
                                   "is corrupt, save it again")
    return man


def _check_sample_weight(router: "Router", sample_weight, train: PerformanceRecords
                         ) -> np.ndarray:
    if not router.supports_sample_weight:
        raise CapabilityError(f"{type(router).__name__} cannot weight records "
                              "(supports_sample_weight is False); use a router that does, "
                              "e.g. 'linear'")
    import scipy.sparse as sp
    W = sample_weight.toarray() if sp.issparse(sample_weight) else np.asarray(sample_weight)
    W = np.asarray(W, dtype=np.float64)
    if W.shape != train.shape:
        raise DataFormatError(f"sample_weight has shape {W.shape}, the records {train.shape}")
    obs = train.observed_dense()
    if not np.all(np.isfinite(W[obs])) or np.any(W[obs] < 0):
        raise DataFormatError("sample_weight must be finite and >= 0 on observed records")
    return np.where(obs, W, 0.0)


def load_router(path: str | os.PathLike, encoder=None) -> Router:
    """Load any saved router (see :meth:`Router.load`)."""
    return Router.load(path, encoder=encoder)


def _means_json(means) -> list | None:
    if means is None:
        return None
    return [float(v) if np.isfinite(v) else None for v in np.asarray(means, np.float64)]


def prompt_hashes(records: PerformanceRecords) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of each prompt's id and text (0 for an empty text).

    A saved router keeps the sorted hashes of its training prompts
    (``train_prompts.npz``), so that an evaluation can count test prompts it was
    trained on without storing the texts.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> ids, texts = prompt_hashes(make_synthetic(3, 2, seed=0))
    >>> ids.dtype.name, len(texts)
    ('uint64', 3)
    """
    def h(values, empty_zero):
        out = np.zeros(len(values), dtype=np.uint64)
        for i, v in enumerate(values):
            if empty_zero and not v:
                continue
            out[i] = int.from_bytes(hashlib.blake2b(str(v).encode("utf-8"),
                                                    digest_size=8).digest(), "little") or 1
        return out
    return h(list(records.prompt_ids), False), h(records.texts, True)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise ModelFormatError(f"{path}: cannot read arrays ({e})") from None


def _refuse_non_model(path: Path) -> None:
    if not (path / "manifest.json").exists() and any(path.iterdir()):
        raise ConfigError(f"{path} exists and is not a saved llmrec model; refusing to "
                          "overwrite it")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


# ------------------------------------------------------------------ integrity
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENCODER_FOLDER = "encoder_model"


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of a manifest without its ``checksum`` field (canonical JSON).

    The manifest holds the SHA-256 of every file of the model, so this one digest
    covers the settings, the LLM table and every array (one checksum chain).

    Examples
    --------
    >>> manifest_checksum({"a": 1, "checksum": "x"}) == manifest_checksum({"a": 1})
    True
    """
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _confined(root: Path, name) -> Path:
    """``root / name`` for a plain file name that stays inside ``root`` (no links out)."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", ".."):
        raise ModelFormatError(f"{root}: manifest names the file {name!r}; only plain file "
                               "names inside the model directory are allowed")
    fp = root / name
    if fp.is_symlink() or (fp.exists() and fp.resolve().parent != root.resolve()):
        raise ModelFormatError(f"{fp}: is a link or lies outside the model directory; "
                               "refusing to read it")
    return fp


def _llm_table(llms) -> pd.DataFrame:
    if not isinstance(llms, list) or not llms or not all(isinstance(x, dict) for x in llms):
        raise ValueError("'llms' must be a non-empty list of objects")
    t = pd.DataFrame(llms)
    if "name" not in t or t["name"].isna().any():
        raise ValueError("every LLM in 'llms' needs a name")
    t["name"] = t["name"].astype(str)
    if t["name"].duplicated().any():
        dup = sorted(set(t["name"][t["name"].duplicated()]))
        raise ValueError(f"duplicate LLM names in 'llms': {dup[:5]}")
    return t


def _is_sentence_config(cfg) -> bool:
    return isinstance(cfg, dict) and cfg.get("type") == "sentence"


def _save_encoder_folder(enc, feat: dict, tmp: Path) -> dict:
    """Copy a non-packaged sentence-transformers model into the model directory."""
    cfg = feat.get("encoder")
    if not _is_sentence_config(cfg) or getattr(enc, "is_default", True):
        return {}
    src = Path(enc.model_path)
    if not src.is_dir():
        try:  # a Hugging Face cache name: copy the cached snapshot (no network)
            from huggingface_hub import snapshot_download
            src = Path(snapshot_download(str(enc.model), local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached: cannot be saved with the model
            raise ConfigError(f"the encoder's model {enc.model!r} is neither a local folder "
                              "nor in the Hugging Face cache; cannot save its weights with "
                              "the router") from None
    dst = tmp / _ENCODER_FOLDER
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))
    digests = {}
    for p in sorted(dst.rglob("*")):
        if p.is_file():
            digests[p.relative_to(dst).as_posix()] = _sha256(p)
    feat["encoder"] = {**cfg, "model": _ENCODER_FOLDER, "model_source": str(cfg.get("model"))}
    return {"encoder_files": digests}


def _confined_encoder_config(path: Path, man: dict, override: bool) -> dict:
    """The featurizer config, with a sentence model folder resolved inside ``path``."""
    feat = man["featurizer"]
    cfg = feat.get("encoder")
    if not _is_sentence_config(cfg):
        return feat
    from ..encoders.sentence import _DEFAULT_ALIASES
    model = cfg.get("model")
    if model in _DEFAULT_ALIASES or override:
        return feat
    if model != _ENCODER_FOLDER:
        raise ModelFormatError(
            f"{path}: the manifest names the encoder model {model!r}, outside the model "
            "directory; an encoder is loaded only from the packaged weights or from "
            f"{_ENCODER_FOLDER}/ inside the model directory (pass encoder=... to load to "
            "use another one)")
    folder = path / _ENCODER_FOLDER
    if folder.is_symlink() or not folder.is_dir():
        raise ModelFormatError(f"{folder}: missing or a link; save the model again")
    digests = man.get("encoder_files")
    if not isinstance(digests, dict) or not digests:
        raise ModelFormatError(f"{path}: 'encoder_files' must list the encoder's files")
    root = folder.resolve()
    for rel, digest in digests.items():
        parts = rel.split("/") if isinstance(rel, str) else [None]
        for i in range(len(parts)):
            _confined(folder.joinpath(*parts[:i]) if i else folder, parts[i])
        fp = folder.joinpath(*parts)
        if root not in fp.resolve().parents or not fp.is_file() or _sha256(fp) != digest:
            raise ModelFormatError(f"{fp}: missing or checksum mismatch; save the model again")
    return {**feat, "encoder": {**cfg, "model": str(folder)}}


def _pin_copied_encoder(enc, man: dict, want) -> None:
    """A copied encoder folder keeps the fingerprint it was fitted with: its files were
    just checked against the checksum chain, only its location changed."""
    cfg = (man.get("featurizer") or {}).get("encoder")
    if (want is not None and _is_sentence_config(cfg) and cfg.get("model") == _ENCODER_FOLDER
            and hasattr(enc, "max_seq_length")):
        enc._fingerprint = ((enc.model, enc.normalize, enc.max_seq_length), want)
