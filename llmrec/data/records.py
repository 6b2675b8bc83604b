"""The one in-memory shape of llmrec: :class:`PerformanceRecords`.

Prompts are users, LLMs are items, and every evaluation record (prompt, LLM, score)
is an interaction. A score of 0 is a real observation (the LLM failed); a cell with
no record is *unknown*. The two are kept apart by storing every observed cell
explicitly in a CSR matrix (explicit zeros included); the observed mask *is* that
structure. Never read a missing cell as 0: use :meth:`dense` (NaN where unobserved)
or the ``observed`` mask.

Memory: the records hold the float32 CSR scores (8 bytes per observed record:
value + int32 column) and nothing else of that size. ``observed`` is a boolean CSR
view built on demand that shares the scores' index arrays (1 byte per record while
it lives); dense views (:meth:`dense`, :meth:`observed_dense`,
:meth:`observed_packed`) are filled block by block, so building one never needs
more than the result plus a few MiB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._atomic import atomic_directory
from ..errors import DataFormatError, UnknownIdError

FORMAT_VERSION = 1
_DENSE_BLOCK_CELLS = 1 << 22  # cells per block when dense views are filled
_PROMPT_BASE_COLUMNS = ("prompt_id", "text", "benchmark", "category")
#: What a score means (see :func:`infer_score_kind`).
SCORE_KINDS = ("binary", "graded", "judge", "preference")


def infer_score_kind(scores, score_range: tuple[float, float] | None = None) -> str:
    """The default meaning of a set of scores.

    ``"binary"`` when every score is 0 or 1; ``"graded"`` when all lie in [0, 1]
    (a declared ``score_range`` of (0, 1) counts too); ``"judge"`` otherwise (an
    unbounded or 1-10 style judge score). A ``"preference"`` (a win rate against a
    reference LLM) cannot be told from the numbers: declare it.

    Examples
    --------
    >>> infer_score_kind([0.0, 1.0, 1.0]), infer_score_kind([0.2, 0.9]), infer_score_kind([3, 9])
    ('binary', 'graded', 'judge')
    """
    d = np.asarray(scores.data if sp.issparse(scores) else scores, dtype=np.float32).ravel()
    d = d[np.isfinite(d)]
    if d.size and bool(((d == 0) | (d == 1)).all()):
        return "binary"
    if score_range is not None and (score_range[0] < 0 or score_range[1] > 1):
        return "judge"
    if not d.size or (d.min() >= 0 and d.max() <= 1):
        return "graded"
    return "judge"


def _where(df, row: int) -> str:
    """Position of 0-based table row ``row`` for a message: the file's 1-based line when
    the reader recorded where the data starts (``df.attrs["first_line"]``: 2 for a CSV
    with a header, 1 for JSONL), else the 1-based row."""
    first = getattr(df, "attrs", {}).get("first_line") if df is not None else None
    return f"line {row + first}" if first else f"row {row + 1}"


def _plain(value) -> str:
    """A cell value as the file shows it: 'high', 3.5, (empty) -- never np.float64(nan)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(empty)"
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and np.isnan(value):
            return "(empty)"
    if isinstance(value, str):
        return repr(value) if value.strip() else "(empty)"
    return str(value)


def _as_str_ids(values: Iterable, what: str, df=None) -> np.ndarray:
    arr = pd.Series(list(values) if not isinstance(values, pd.Series) else values)
    if arr.isna().any():
        row = int(np.flatnonzero(arr.isna().to_numpy())[0])
        raise DataFormatError(f"{what}: empty id at {_where(df, row)}; every row needs an id")
    return arr.astype(str).to_numpy(dtype=object)


class PerformanceRecords:
    """Per-prompt evaluation records of a set of LLMs.

    Parameters
    ----------
    scores : scipy.sparse matrix or array-like, shape (n_prompts, n_llms)
        Observed scores. When sparse, every stored entry (explicit zeros included)
        is an observation unless ``observed`` says otherwise. When dense, NaN marks
        an unobserved cell.
    prompts : pandas.DataFrame
        One row per prompt, with at least ``prompt_id``; ``text``, ``benchmark``
        and ``category`` are added (empty) when absent. Other columns are kept.
    llms : pandas.DataFrame
        One row per LLM, with at least ``name``. Optional known columns:
        ``params_b`` (size, billions), ``price_input`` / ``price_output`` (USD per
        1M tokens), ``provider``.
    observed : scipy.sparse matrix or array-like of bool, optional
        Observed mask; defaults to the structure of ``scores``.
    cost : scipy.sparse matrix or array-like, optional
        Per-record cost (USD), same structure as ``scores``.
    score_range : tuple of float, optional
        Declared (low, high) range; scores outside it raise :class:`DataFormatError`.
    name : str, optional
        A short name for the source (used in summaries).
    score_kind : {"binary", "graded", "judge", "preference"}, optional
        What a score means: 0/1 correctness, a bounded graded score in [0, 1], an
        unbounded judge score (e.g. 1-10), or a preference (win rate) against
        ``reference_llm``. Default: inferred from the scores
        (:func:`infer_score_kind`). Routers derive their training signal from it.
    reference_llm : str, optional
        The LLM that preference scores are measured against (it usually scores a
        constant 0.5); only with ``score_kind="preference"``.

    Examples
    --------
    >>> import pandas as pd
    >>> from llmrec.data import PerformanceRecords
    >>> df = pd.DataFrame({"prompt_id": ["p1", "p1", "p2"],
    ...                    "llm": ["a", "b", "a"], "score": [1.0, 0.0, 1.0]})
    >>> rec = PerformanceRecords.from_long(df)
    >>> rec.n_prompts, rec.n_llms, rec.n_observed
    (2, 2, 3)
    >>> rec.dense()
    array([[ 1.,  0.],
           [ 1., nan]], dtype=float32)
    """

    def __init__(self, scores, prompts: pd.DataFrame, llms: pd.DataFrame, observed=None,
                 cost=None, score_range: tuple[float, float] | None = None,
                 name: str | None = None, score_kind: str | None = None,
                 reference_llm: str | None = None):
        prompts = self._check_table(prompts, "prompt_id", "prompts")
        llms = self._check_table(llms, "name", "llms")
        for col in _PROMPT_BASE_COLUMNS[1:]:
            if col not in prompts.columns:
                prompts[col] = "" if col == "text" else None
        n, m = len(prompts), len(llms)

        scores_m, mask = self._to_csr(scores, observed, (n, m), "scores")
        self.scores = scores_m
        self.cost = None
        if cost is not None:
            cost_m, _ = self._to_csr(cost, mask, (n, m), "cost")
            self.cost = cost_m
        self.prompts = prompts
        self.llms = llms
        self.score_range = tuple(score_range) if score_range is not None else None
        self.name = name
        self._check_values()
        self._prompt_pos: dict[str, int] | None = None
        self._llm_pos: dict[str, int] | None = None
        self._set_kind(score_kind, reference_llm)

    def _set_kind(self, score_kind, reference_llm) -> None:
        if score_kind is None:
            score_kind = "preference" if reference_llm is not None else \
                infer_score_kind(self.scores, self.score_range)
        if score_kind not in SCORE_KINDS:
            raise DataFormatError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
        if reference_llm is not None:
            if score_kind != "preference":
                raise DataFormatError(f"reference_llm={reference_llm!r} only makes sense with "
                                      f"score_kind='preference', not {score_kind!r}")
            reference_llm = str(reference_llm)
            if reference_llm not in set(self.llm_names):
                raise UnknownIdError(f"reference_llm {reference_llm!r} is not one of the "
                                     f"records' {self.n_llms} LLMs")
        self.score_kind = score_kind
        self.reference_llm = reference_llm

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_table(table, key: str, what: str) -> pd.DataFrame:
        if table is None:
            raise DataFormatError(f"{what} table is required")
        if not isinstance(table, pd.DataFrame):
            table = pd.DataFrame(table)
        if key not in table.columns:
            raise DataFormatError(
                f"{what} table has no column '{key}' (columns: {list(table.columns)}); "
                f"rename the id column to '{key}'")
        attrs = dict(table.attrs)
        table = table.reset_index(drop=True).copy()
        table.attrs.update(attrs)
        table[key] = _as_str_ids(table[key], f"{what} column '{key}'", table)
        dup = table[key].duplicated()
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise DataFormatError(
                f"{what} table: duplicate {key} '{table[key].iloc[row]}' at "
                f"{_where(table, row)}; "
                f"ids must be unique")
        return table

    @staticmethod
    def _to_csr(values, observed, shape, what: str):
        if sp.issparse(values):
            # a canonical float32 CSR is shared, not copied (records never modify it;
            # at RouterEval scale a copy is 2.7 GiB); anything else is converted
            share = (sp.isspmatrix_csr(values) and values.dtype == np.float32
                     and values.has_canonical_format)
            mat = sp.csr_matrix(values, dtype=np.float32, copy=not share)
            if mat.shape != shape:
                raise DataFormatError(f"{what} has shape {mat.shape}, expected {shape} "
                                      "(prompts x LLMs)")
            mat.sum_duplicates()
            mat.sort_indices()
            if observed is not None and sp.isspmatrix_csr(observed) and \
                    observed.nnz == mat.nnz and observed.shape == mat.shape and \
                    _same_buffer(observed.indices, mat.indices) and \
                    _same_buffer(observed.indptr, mat.indptr) and \
                    bool(np.all(observed.data)):
                observed = None  # the mask of these very scores (rec.observed): nothing to do
            if observed is not None:
                obs = sp.csr_matrix(observed, dtype=bool)
                obs.eliminate_zeros()
                obs.sort_indices()
                same = (obs.nnz == mat.nnz and np.array_equal(obs.indptr, mat.indptr)
                        and np.array_equal(obs.indices, mat.indices))
                if not same:
                    r, c = obs.nonzero()
                    vals = np.asarray(mat[r, c]).ravel() if len(r) else np.zeros(0)
                    mat = sp.csr_matrix((vals.astype(np.float32), (r, c)), shape=shape)
            mat.sort_indices()
        else:
            arr = np.asarray(values, dtype=np.float32)
            if arr.shape != shape:
                raise DataFormatError(f"{what} has shape {arr.shape}, expected {shape} "
                                      "(prompts x LLMs)")
            if observed is None:
                obs_arr = ~np.isnan(arr)
            else:
                obs_arr = (observed.toarray() if sp.issparse(observed)
                           else np.asarray(observed)).astype(bool)
            r, c = np.nonzero(obs_arr)
            mat = sp.csr_matrix((arr[r, c], (r, c)), shape=shape, dtype=np.float32)
            mat.sort_indices()
        return mat, _structure(mat)

    def _check_values(self):
        data = self.scores.data
        bad = ~np.isfinite(data)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            r, c = self._cell_of(i)
            raise DataFormatError(
                f"score is NaN or infinite for prompt '{self.prompts.prompt_id.iloc[r]}', "
                f"LLM '{self.llms.name.iloc[c]}'; drop the record or give a number")
        if self.score_range is not None and data.size:
            lo, hi = self.score_range
            out = (data < lo) | (data > hi)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                r, c = self._cell_of(i)
                raise DataFormatError(
                    f"score {data[i]:g} for prompt '{self.prompts.prompt_id.iloc[r]}', LLM "
                    f"'{self.llms.name.iloc[c]}' is outside the declared range [{lo}, {hi}]; "
                    "rescale the scores or declare another score_range")

    def _cell_of(self, i: int) -> tuple[int, int]:
        r = int(np.searchsorted(self.scores.indptr, i, side="right") - 1)
        return r, int(self.scores.indices[i])

    # --------------------------------------------------------------- basic info
    @property
    def n_prompts(self) -> int:
        return self.scores.shape[0]

    @property
    def n_llms(self) -> int:
        return self.scores.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape

    @property
    def observed(self) -> sp.csr_matrix:
        """Boolean CSR mask of observed cells: the structure of ``scores``.

        Built on demand and sharing the index arrays of ``scores`` (no copy of them);
        only its ``data`` (1 byte per record) is allocated, and freed with it.
        """
        return _structure(self.scores)

    def observed_packed(self) -> np.ndarray:
        """The observed mask as a dense bit-packed array (``np.packbits`` along LLMs).

        Shape ``(n_prompts, ceil(n_llms / 8))``, uint8: one bit per cell, 42 MB for
        40,000 x 8,500. ``np.unpackbits(a, axis=1, count=n_llms).astype(bool)``
        restores :meth:`observed_dense`.

        Examples
        --------
        >>> import numpy as np
        >>> from llmrec.datasets import make_synthetic
        >>> rec = make_synthetic(3, 10, seed=0)
        >>> rec.observed_packed().shape
        (3, 2)
        >>> np.unpackbits(rec.observed_packed(), axis=1, count=10).all()
        np.True_
        """
        out = np.zeros((self.n_prompts, (self.n_llms + 7) // 8), dtype=np.uint8)
        for a, b, r, c in self._coord_blocks():
            blk = np.zeros((b - a, self.n_llms), dtype=bool)
            blk[r, c] = True
            out[a:b] = np.packbits(blk, axis=1)
        return out

    @property
    def n_observed(self) -> int:
        return int(self.scores.nnz)

    @property
    def density(self) -> float:
        n = self.n_prompts * self.n_llms
        return self.n_observed / n if n else 0.0

    @property
    def prompt_ids(self) -> np.ndarray:
        return self.prompts["prompt_id"].to_numpy()

    @property
    def llm_names(self) -> list[str]:
        return list(self.llms["name"])

    @property
    def texts(self) -> list[str]:
        return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
                for t in self.prompts["text"]]

    @property
    def has_text(self) -> bool:
        return any(t for t in self.texts)

    def __len__(self) -> int:
        return self.n_prompts

    def __repr__(self) -> str:
        nm = f" '{self.name}'" if self.name else ""
        return (f"<PerformanceRecords{nm}: {self.n_prompts} prompts x {self.n_llms} LLMs, "
                f"{self.density:.1%} observed>")

    # ------------------------------------------------------------------ id maps
    def prompt_index(self, ids: Sequence[str] | str) -> np.ndarray:
        """Row positions of prompt ids; raises :class:`UnknownIdError` naming the first unknown."""
        if self._prompt_pos is None:
            self._prompt_pos = {p: i for i, p in enumerate(self.prompt_ids)}
        ids = [ids] if isinstance(ids, str) else list(ids)
        out = np.empty(len(ids), dtype=np.int64)
        for j, p in enumerate(ids):
            try:
                out[j] = self._prompt_pos[str(p)]
            except KeyError:
                raise UnknownIdError(f"prompt id '{p}' is not in the records "
                                     f"({self.n_prompts} prompts)") from None
        return out

    def llm_index(self, names: Sequence[str] | str) -> np.ndarray:
        """Column positions of LLM names; raises :class:`UnknownIdError` naming the unknown."""
        if self._llm_pos is None:
            self._llm_pos = {n: i for i, n in enumerate(self.llm_names)}
        names = [names] if isinstance(names, str) else list(names)
        out = np.empty(len(names), dtype=np.int64)
        for j, n in enumerate(names):
            try:
                out[j] = self._llm_pos[str(n)]
            except KeyError:
                raise UnknownIdError(f"LLM '{n}' is not in the records; known LLMs: "
                                     f"{', '.join(self.llm_names[:20])}"
                                     f"{' ...' if self.n_llms > 20 else ''}") from None
        return out

    # ------------------------------------------------------------ dense views
    def dense(self, fill: float = np.nan) -> np.ndarray:
        """Scores as a dense float32 array with ``fill`` (default NaN) where unobserved."""
        return self._fill_dense(self.scores.data, fill, np.float32)

    def observed_dense(self) -> np.ndarray:
        """The observed mask as a dense boolean array."""
        return self._fill_dense(None, False, bool)

    def cost_dense(self, fill: float = np.nan) -> np.ndarray | None:
        """Per-record costs as a dense array (``None`` when the records carry no cost)."""
        if self.cost is None:
            return None
        return self._fill_dense(self.cost.data, fill, np.float32)

    def _fill_dense(self, data, fill, dtype) -> np.ndarray:
        out = np.full(self.shape, fill, dtype=dtype)
        for a, b, r, c in self._coord_blocks():
            blk = out[a:b]
            blk[r, c] = True if data is None else data[self.scores.indptr[a]:
                                                       self.scores.indptr[b]]
        return out

    def _coord_blocks(self):
        """(row start, row stop, local rows, columns) of the records, about
        ``_DENSE_BLOCK_CELLS`` cells at a time, so index temporaries stay a few MiB
        whatever the size of the matrix."""
        cells = _DENSE_BLOCK_CELLS
        indptr = self.scores.indptr
        n = self.n_prompts
        step = max(1, cells // max(self.n_llms, 1))
        for a in range(0, n, step):
            b = min(n, a + step)
            lo, hi = int(indptr[a]), int(indptr[b])
            r = np.repeat(np.arange(b - a, dtype=np.int32), np.diff(indptr[a:b + 1]))
            yield a, b, r, self.scores.indices[lo:hi]

    def _coords(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.repeat(np.arange(self.n_prompts), np.diff(self.scores.indptr))
        return rows, self.scores.indices

    # --------------------------------------------------------------- selecting
    def _resolve_rows(self, sel) -> np.ndarray:
        if isinstance(sel, slice):
            return np.arange(self.n_prompts)[sel]
        arr = np.asarray(sel)
        if arr.dtype == bool:
            if arr.shape != (self.n_prompts,):
                raise DataFormatError(f"boolean prompt mask has length {arr.size}, "
                                      f"expected {self.n_prompts}")
            return np.flatnonzero(arr)
        if arr.size and arr.dtype.kind in "iu":
            if arr.min() < -self.n_prompts or arr.max() >= self.n_prompts:
                raise UnknownIdError(f"prompt position out of range 0..{self.n_prompts - 1}")
            return arr.astype(np.int64) % max(self.n_prompts, 1)
        return self.prompt_index([str(x) for x in arr.ravel()])

    def _resolve_cols(self, sel) -> np.ndarray:
        arr = np.asarray(sel)
        if arr.dtype == bool:
            if arr.shape != (self.n_llms,):
                raise DataFormatError(f"boolean LLM mask has length {arr.size}, "
                                      f"expected {self.n_llms}")
            return np.flatnonzero(arr)
        if arr.size and arr.dtype.kind in "iu":
            if arr.min() < -self.n_llms or arr.max() >= self.n_llms:
                raise UnknownIdError(f"LLM position out of range 0..{self.n_llms - 1}")
            return arr.astype(np.int64) % max(self.n_llms, 1)
        return self.llm_index([str(x) for x in arr.ravel()])

    def select_prompts(self, sel) -> "PerformanceRecords":
        """Subset of prompts by positions, prompt ids or a boolean mask (order kept as given)."""
        rows = self._resolve_rows(sel)
        return self._subset(rows, np.arange(self.n_llms))

    def select_llms(self, sel) -> "PerformanceRecords":
        """Subset of LLMs by positions, names or a boolean mask (order kept as given)."""
        cols = self._resolve_cols(sel)
        return self._subset(np.arange(self.n_prompts), cols)

    def select_benchmarks(self, benchmarks: Sequence[str] | str) -> "PerformanceRecords":
        """Prompts whose ``benchmark`` is one of ``benchmarks``."""
        benchmarks = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
        known = set(self.prompts["benchmark"].dropna().astype(str))
        unknown = [b for b in benchmarks if b not in known]
        if unknown:
            raise UnknownIdError(f"benchmark(s) {unknown} not in the records; known: "
                                 f"{sorted(known)}")
        return self.select_prompts(self.prompts["benchmark"].astype(str).isin(benchmarks)
                                   .to_numpy())

    def _subset(self, rows: np.ndarray, cols: np.ndarray) -> "PerformanceRecords":
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if len(np.unique(cols)) != len(cols):
            raise DataFormatError("an LLM was selected twice; select each LLM once")
        colmap = np.full(self.n_llms, -1, dtype=np.int64)
        colmap[cols] = np.arange(len(cols))
        indptr = self.scores.indptr
        starts, ends = indptr[rows], indptr[rows + 1]
        lens = ends - starts
        take = (np.repeat(starts - np.cumsum(np.r_[0, lens[:-1]]), lens)
                + np.arange(lens.sum())) if len(rows) else np.zeros(0, np.int64)
        new_r = np.repeat(np.arange(len(rows)), lens)
        new_c = colmap[self.scores.indices[take]]
        keep = new_c >= 0
        take, new_r, new_c = take[keep], new_r[keep], new_c[keep]
        shape = (len(rows), len(cols))

        def build(values):
            return sp.csr_matrix((values[take], (new_r, new_c)), shape=shape, dtype=np.float32)

        obs = sp.csr_matrix((np.ones(len(take), bool), (new_r, new_c)), shape=shape)
        return PerformanceRecords(
            build(self.scores.data), self.prompts.iloc[rows].reset_index(drop=True),
            self.llms.iloc[cols].reset_index(drop=True), observed=obs,
            cost=build(self.cost.data) if self.cost is not None else None,
            score_range=self.score_range, name=self.name, score_kind=self.score_kind,
            reference_llm=(self.reference_llm
                           if self.reference_llm in set(self.llms.name.iloc[cols]) else None))

    def drop_empty(self) -> "PerformanceRecords":
        """Drop prompts and LLMs without any observed record."""
        rows = np.flatnonzero(np.diff(self.scores.indptr) > 0)
        cols = np.flatnonzero(np.bincount(self.scores.indices, minlength=self.n_llms) > 0)
        return self._subset(rows, cols)

    # ------------------------------------------------------------- summaries
    def llm_summary(self) -> pd.DataFrame:
        """Per-LLM count of observed prompts, mean score and (if known) mean cost."""
        counts = _column_sums(self.scores.indices, None, self.n_llms).astype(np.int64)
        sums = _column_sums(self.scores.indices, self.scores.data, self.n_llms)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        out = pd.DataFrame({"llm": self.llm_names, "n_observed": counts, "mean_score": mean})
        if self.cost is not None:
            csum = _column_sums(self.cost.indices, self.cost.data, self.n_llms)
            out["mean_cost"] = np.where(counts > 0, csum / np.maximum(counts, 1), np.nan)
        return out

    def prompt_summary(self) -> pd.DataFrame:
        """Per-prompt count of observed LLMs, mean and best score."""
        counts = np.diff(self.scores.indptr)
        mean = np.full(self.n_prompts, np.nan)
        best = np.full(self.n_prompts, np.nan)
        rows = np.flatnonzero(counts > 0)
        if len(rows):  # reduce each non-empty row's slice of the CSR data (no dense copy)
            starts = self.scores.indptr[rows]
            mean[rows] = np.add.reduceat(self.scores.data, starts, dtype=np.float64) / counts[rows]
            best[rows] = np.maximum.reduceat(self.scores.data, starts)
        return pd.DataFrame({"prompt_id": self.prompt_ids, "benchmark": self.prompts["benchmark"],
                             "n_observed": counts, "mean_score": mean,
                             "best_score": best})

    def summary(self) -> str:
        """A short human-readable description (what ``llmrec data info`` prints)."""
        lines = [repr(self),
                 f"observed records: {self.n_observed:,} of {self.n_prompts * self.n_llms:,} "
                 f"({self.density:.1%})"]
        if self.scores.nnz:
            d = self.scores.data
            binary = bool(np.isin(d, (0.0, 1.0)).all())
            lines.append(f"scores: min {d.min():.4g}, mean {d.mean():.4g}, max {d.max():.4g}"
                         f"{' (binary)' if binary else ''}; kind {self.score_kind}"
                         + (f" against {self.reference_llm}" if self.reference_llm else ""))
        bench = self.prompts["benchmark"].dropna().astype(str)
        bench = bench[bench != ""]
        if len(bench):
            vc = bench.value_counts()
            lines.append("benchmarks: " + ", ".join(f"{b} ({n})" for b, n in vc.items()))
        lines.append(f"prompt text: {'yes' if self.has_text else 'no'}; "
                     f"per-record cost: {'yes' if self.cost is not None else 'no'}")
        s = self.llm_summary().sort_values("mean_score", ascending=False)
        lines.append("per-LLM mean score:")
        w = max(len(str(x)) for x in s.llm) if len(s) else 4
        for row in s.itertuples():
            lines.append(f"  {str(row.llm):<{w}}  {row.mean_score:.4f}  (n={row.n_observed})")
        return "\n".join(lines)

    # -------------------------------------------------------------- long form
    @classmethod
    def from_long(cls, df: pd.DataFrame, prompts: pd.DataFrame | None = None,
                  llms: pd.DataFrame | None = None, *, prompt_col: str = "prompt_id",
                  llm_col: str = "llm", score_col: str = "score", cost_col: str | None = "cost",
                  score_range: tuple[float, float] | None = None, name: str | None = None,
                  source: str = "long table", on_duplicate: str = "error",
                  score_kind: str | None = None, reference_llm: str | None = None
                  ) -> "PerformanceRecords":
        """Build records from a long table with one row per (prompt, LLM) record.

        Parameters
        ----------
        df : pandas.DataFrame
            Columns ``prompt_col``, ``llm_col``, ``score_col`` and optionally ``cost_col``.
        prompts, llms : pandas.DataFrame, optional
            Prompt table (``prompt_id``, ``text``, ...) and LLM table (``name``, ...).
            Prompts / LLMs that appear only in these tables are kept (with no records);
            ids in ``df`` that are missing from a given table raise an error.
        on_duplicate : {"error", "mean", "first"}
            What to do with repeated (prompt, LLM) pairs whose scores differ.
            Identical repeats are always merged.
        score_kind, reference_llm : str, optional
            What the scores mean (see :class:`PerformanceRecords`); inferred when None.
        source : str
            Named in error messages (usually the file path).

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"q": ["x", "y"], "model": ["m", "m"], "acc": [0.5, 1.0]})
        >>> PerformanceRecords.from_long(df, prompt_col="q", llm_col="model", score_col="acc")
        <PerformanceRecords: 2 prompts x 1 LLMs, 100.0% observed>
        """
        if not isinstance(df, pd.DataFrame):
            raise DataFormatError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in (prompt_col, llm_col, score_col) if c not in df.columns]
        if missing:
            raise DataFormatError(
                f"{source}: missing column(s) {missing}; found {list(df.columns)}. "
                f"Rename them or pass prompt_col=/llm_col=/score_col=")
        if len(df) == 0:
            raise DataFormatError(f"{source}: no records (empty table)")
        attrs = dict(df.attrs)
        df = df.reset_index(drop=True)
        df.attrs.update(attrs)
        pid = _as_str_ids(df[prompt_col], f"{source}, column '{prompt_col}'", df)
        lid = _as_str_ids(df[llm_col], f"{source}, column '{llm_col}'", df)
        score = pd.to_numeric(df[score_col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(score)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{source}, {_where(df, row)}, column '{score_col}': score "
                f"{_plain(df[score_col].iloc[row])} is not a finite number; fix or drop that "
                "row")
        has_cost = cost_col is not None and cost_col in df.columns
        cost = None
        if has_cost:
            cost = pd.to_numeric(df[cost_col], errors="coerce").to_numpy(dtype=np.float64)
            badc = ~np.isfinite(cost)
            if badc.any():
                row = int(np.flatnonzero(badc)[0])
                raise DataFormatError(f"{source}, {_where(df, row)}, column '{cost_col}': cost "
                                      f"{_plain(df[cost_col].iloc[row])} is not a finite "
                                      "number")
        if score_range is not None:
            lo, hi = score_range
            out = (score < lo) | (score > hi)
            if out.any():
                row = int(np.flatnonzero(out)[0])
                raise DataFormatError(
                    f"{source}, {_where(df, row)}, column '{score_col}': score {score[row]:g} "
                    f"is outside the declared range [{lo}, {hi}]")

        # id maps: tables first (their order), then first appearance in the records
        if prompts is not None:
            prompts = cls._check_table(prompts, "prompt_id", f"{source} prompts")
            p_order = list(prompts["prompt_id"])
        else:
            p_order = list(pd.unique(pid))
        if llms is not None:
            llms = cls._check_table(llms, "name", f"{source} LLMs")
            l_order = list(llms["name"])
        else:
            l_order = list(pd.unique(lid))
        p_map = pd.Index(p_order)
        l_map = pd.Index(l_order)
        r = p_map.get_indexer(pid)
        c = l_map.get_indexer(lid)
        if (r < 0).any():
            row = int(np.flatnonzero(r < 0)[0])
            raise UnknownIdError(f"{source}, {_where(df, row)}: prompt id '{pid[row]}' is not "
                                 "in the prompts table; add it there or drop the record")
        if (c < 0).any():
            row = int(np.flatnonzero(c < 0)[0])
            raise UnknownIdError(f"{source}, {_where(df, row)}: LLM '{lid[row]}' is not in the "
                                 "LLM "
                                 "table; add it there or drop the record")

        # duplicates
        key = r.astype(np.int64) * len(l_order) + c
        order = np.argsort(key, kind="stable")
        ks = key[order]
        dup_next = ks[1:] == ks[:-1]
        if dup_next.any():
            ss = score[order]
            conflict = dup_next & (ss[1:] != ss[:-1])
            if conflict.any() and on_duplicate == "error":
                j = int(np.flatnonzero(conflict)[0])
                a, b = int(order[j]), int(order[j + 1])
                raise DataFormatError(
                    f"{source}: {_where(df, a).split()[0]}s {_where(df, a).split()[-1]} and "
                    f"{_where(df, b).split()[-1]} give prompt "
                    f"'{pid[a]}', LLM '{lid[a]}' "
                    f"conflicting scores {score[a]:g} and {score[b]:g}; remove one or pass "
                    "on_duplicate='mean' (llmrec: --on-duplicate mean)")
            if on_duplicate not in ("error", "mean", "first"):
                raise DataFormatError(f"on_duplicate must be 'error', 'mean' or 'first', "
                                      f"got {on_duplicate!r}")
            uniq, start = np.unique(ks, return_index=True)
            if on_duplicate == "first":
                sel = order[start]
                r, c, score = r[sel], c[sel], score[sel]
                cost = cost[sel] if cost is not None else None
            else:
                counts = np.diff(np.append(start, len(ks)))
                score = np.add.reduceat(score[order], start) / counts
                if cost is not None:
                    cost = np.add.reduceat(cost[order], start) / counts
                r = (uniq // len(l_order)).astype(np.int64)
                c = (uniq % len(l_order)).astype(np.int64)
        shape = (len(p_order), len(l_order))
        scores = sp.csr_matrix((score.astype(np.float32), (r, c)), shape=shape)
        cost_m = (sp.csr_matrix((cost.astype(np.float32), (r, c)), shape=shape)
                  if cost is not None else None)
        if prompts is None:
            prompts = pd.DataFrame({"prompt_id": p_order})
        if llms is None:
            llms = pd.DataFrame({"name": l_order})
        obs = sp.csr_matrix((np.ones(len(r), bool), (r, c)), shape=shape)
        return cls(scores, prompts, llms, observed=obs, cost=cost_m, score_range=score_range,
                   name=name, score_kind=score_kind, reference_llm=reference_llm)

    def to_long(self, with_text: bool = False) -> pd.DataFrame:
        """One row per observed record: ``prompt_id, llm, score[, cost][, text, benchmark]``."""
        r, c = self._coords()
        out = pd.DataFrame({"prompt_id": self.prompt_ids[r],
                            "llm": np.asarray(self.llm_names, dtype=object)[c],
                            "score": self.scores.data.astype(np.float32)})
        if self.cost is not None:
            out["cost"] = self.cost.data.astype(np.float32)
        if with_text:
            out["text"] = np.asarray(self.texts, dtype=object)[r]
            out["benchmark"] = self.prompts["benchmark"].to_numpy()[r]
        return out

    # ----------------------------------------------------------- concatenate
    @classmethod
    def concat(cls, parts: Sequence["PerformanceRecords"], name: str | None = None
               ) -> "PerformanceRecords":
        """Stack records of several sources: union of prompts and of LLMs.

        A cell that no part observed stays unobserved (never 0). A prompt id that
        appears in two parts is one prompt; a (prompt, LLM) pair observed twice with
        different scores is an error.
        """
        parts = list(parts)
        if not parts:
            raise DataFormatError("concat needs at least one PerformanceRecords")
        longs, ptabs, ltabs = [], [], []
        for p in parts:
            longs.append(p.to_long())
            ptabs.append(p.prompts)
            ltabs.append(p.llms)
        prompts = pd.concat(ptabs, ignore_index=True).drop_duplicates("prompt_id")
        llms = pd.concat(ltabs, ignore_index=True).drop_duplicates("name")
        long = pd.concat(longs, ignore_index=True)
        has_cost = all(p.cost is not None for p in parts)
        if not has_cost and "cost" in long.columns:
            long = long.drop(columns="cost")
        ranges = {p.score_range for p in parts}
        rng = ranges.pop() if len(ranges) == 1 else None
        kinds = {(p.score_kind, p.reference_llm) for p in parts}
        kind, ref = kinds.pop() if len(kinds) == 1 else (None, None)
        if kind is None and {k for k, _ in kinds} <= {"binary", "graded"}:
            kind = "graded"  # 0/1 and [0, 1] scores mix as graded scores
        return cls.from_long(long, prompts, llms, score_range=rng, name=name,
                             source="concatenated records", score_kind=kind, reference_llm=ref)

    # ------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the records to a directory of parquet files plus ``meta.json``.

        The write is atomic: files go to a temporary directory that is renamed into
        place, so an interrupted save never leaves a half-written directory.
        """
        path = Path(path)
        with atomic_directory(path) as tmp:
            self.to_long().to_parquet(tmp / "records.parquet", index=False)
            _table_for_parquet(self.prompts).to_parquet(tmp / "prompts.parquet", index=False)
            _table_for_parquet(self.llms).to_parquet(tmp / "llms.parquet", index=False)
            meta = {"format": "llmrec.PerformanceRecords", "format_version": FORMAT_VERSION,
                    "name": self.name, "score_range": self.score_range,
                    "n_prompts": self.n_prompts, "n_llms": self.n_llms,
                    "n_observed": self.n_observed, "has_cost": self.cost is not None,
                    "score_kind": self.score_kind, "reference_llm": self.reference_llm}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PerformanceRecords":
        """Read records written by :meth:`save`."""
        path = Path(path)
        meta_p = path / "meta.json"
        if not meta_p.is_file():
            raise DataFormatError(f"{path}: no meta.json; not a directory written by "
                                  "PerformanceRecords.save")
        try:
            meta = json.loads(meta_p.read_text())
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{meta_p}: corrupt JSON ({e})") from None
        if meta.get("format") != "llmrec.PerformanceRecords":
            raise DataFormatError(f"{meta_p}: not a PerformanceRecords directory")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(f"{meta_p}: format version {meta.get('format_version')} is not "
                                  f"supported (this llmrec reads version {FORMAT_VERSION})")
        try:
            long = pd.read_parquet(path / "records.parquet")
            prompts = pd.read_parquet(path / "prompts.parquet")
            llms = pd.read_parquet(path / "llms.parquet")
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataFormatError(f"{path}: cannot read parquet files ({e}); the directory is "
                                  "corrupt, save the records again") from None
        rng = tuple(meta["score_range"]) if meta.get("score_range") else None
        rec = cls.from_long(long, prompts, llms, score_range=rng, name=meta.get("name"),
                            source=str(path / "records.parquet"),
                            cost_col="cost" if meta.get("has_cost") else None,
                            score_kind=meta.get("score_kind"),
                            reference_llm=meta.get("reference_llm"))
        if rec.n_observed != meta.get("n_observed"):
            raise DataFormatError(f"{path}: holds {rec.n_observed} records, meta.json says "
                                  f"{meta.get('n_observed')}; the directory is corrupt")
        return rec

    def equals(self, other: "PerformanceRecords", check_tables: bool = True) -> bool:
        """True when scores, mask, costs (and, by default, prompt/LLM tables) are identical."""
        if self.shape != other.shape:
            return False
        if (self.scores != other.scores).nnz or (self.observed != other.observed).nnz:
            return False
        if (self.cost is None) != (other.cost is None):
            return False
        if self.cost is not None and (self.cost != other.cost).nnz:
            return False
        if list(self.prompt_ids) != list(other.prompt_ids) or self.llm_names != other.llm_names:
            return False
        if check_tables:
            try:
                pd.testing.assert_frame_equal(_missing_as_none(self.prompts),
                                              _missing_as_none(other.prompts),
                                              check_dtype=False)
                pd.testing.assert_frame_equal(_missing_as_none(self.llms),
                                              _missing_as_none(other.llms), check_dtype=False)
            except AssertionError:
                return False
        return True


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two arrays are views of the same memory with the same layout."""
    return (a.shape == b.shape and a.dtype == b.dtype and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _structure(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Boolean CSR with the structure of ``mat``, sharing its index arrays."""
    return sp.csr_matrix((np.ones(mat.nnz, dtype=bool), mat.indices, mat.indptr),
                         shape=mat.shape, copy=False)


def _column_sums(indices: np.ndarray, data: np.ndarray | None, n_cols: int,
                 chunk: int = 1 << 23) -> np.ndarray:
    """Per-column count (``data=None``) or float64 sum of CSR entries, in chunks.

    ``np.bincount`` turns its input into int64 / float64 arrays: on the whole of a
    340M-record matrix that is 5 GiB of temporaries; chunks keep it at 128 MiB.
    """
    out = np.zeros(n_cols, dtype=np.float64)
    for s in range(0, len(indices), chunk):
        w = None if data is None else data[s:s + chunk]
        out += np.bincount(indices[s:s + chunk], weights=w, minlength=n_cols)
    return out


def _missing_as_none(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as objects with None for every missing value (None, NaN, pd.NA), so
    that a table equals its parquet round trip (pandas 3 reads [str, None] as str/NaN)."""
    out = df.copy()
    for col in out.columns:
        kind = out[col].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
            vals = out[col].astype(object)
            out[col] = vals.where(vals.notna(), None)
    return out


def _table_for_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """Make object columns parquet-safe (mixed None/str columns become str or null)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            vals = out[col]
            if vals.map(lambda v: isinstance(v, (list, dict, tuple))).any():
                out[col] = vals.map(lambda v: json.dumps(v) if isinstance(v, (list, dict, tuple))
                                    else v)
    return out
