"""Exact inner-product nearest neighbours over many rows (kNN routers' training prompts).

:class:`ExactNeighbours` searches a FAISS ``IndexFlatIP`` (BLAS inner products and a
heap per query, no per-prompt Python loop) and returns exactly what the numpy path
(a blocked matrix product ranked by :func:`~llmrec.retrieval.topk_scores`) returns:
the k largest inner products, ordered by value descending and ties by row position
ascending. FAISS and numpy round inner products differently in the last bits, so
any query whose (k+1) best values hold two within ``tie_tol`` of each other is
re-ranked by the numpy path; every other query's order is unambiguous.

Cost: ``O(n_queries * n_rows * d)`` multiply-adds (the matrix product), memory
``n_rows * d`` floats for the index plus one block of results.
"""

from __future__ import annotations

import numpy as np

from .index import HAVE_FAISS, _check_k, faiss, topk_scores


class _Neighbours:
    """``search`` for both indexes: checks, then blocks of queries (the block only
    bounds the search's scratch memory) handed to ``_search_block``."""

    rows: np.ndarray

    def _search_block(self, q: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions (n_queries, min(k, n_rows)) of the best inner products."""
        k = min(_check_k(k), self.rows.shape[0])
        Q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if Q.shape[0] == 0:
            return np.zeros((0, k), dtype=np.int64)
        out = np.empty((Q.shape[0], k), dtype=np.int64)
        block = 16384
        for s in range(0, Q.shape[0], block):
            out[s:s + block] = self._search_block(Q[s:s + block], k)
        return out


class ExactNeighbours(_Neighbours):
    """k largest inner products of queries against stored rows, ties by row position.

    Parameters
    ----------
    rows : ndarray, shape (n_rows, d)
        The rows to search (for cosine, pass unit-normalised rows and queries).
    backend : {"auto", "faiss", "numpy"}
    tie_tol : float
        Queries with two of their k+1 best values closer than this are re-ranked
        by the numpy path, so both backends give the same answer.

    Examples
    --------
    >>> import numpy as np
    >>> nn = ExactNeighbours(np.eye(3, dtype=np.float32))
    >>> nn.search(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), 2).tolist()
    [[1, 2]]
    """

    def __init__(self, rows: np.ndarray, backend: str = "auto", tie_tol: float = 1e-4):
        self.rows = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
        self.backend = "faiss" if backend in ("auto", "faiss") and HAVE_FAISS else "numpy"
        self.tie_tol = float(tie_tol)
        self._index = None
        if self.backend == "faiss" and self.rows.shape[0]:
            self._index = faiss.IndexFlatIP(self.rows.shape[1])
            self._index.add(self.rows)

    def _numpy(self, Q: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
        out = np.empty((Q.shape[0], k), dtype=np.int64)
        for s in range(0, Q.shape[0], block):  # bounded memory: (block, n_rows)
            out[s:s + block] = topk_scores(Q[s:s + block] @ self.rows.T, k)[0]
        return out

    def _search_block(self, q: np.ndarray, k: int) -> np.ndarray:
        if self._index is None:
            return self._numpy(q, k)
        kk = min(k + 1, self.rows.shape[0])
        D, I = self._index.search(q, kk)
        gaps = -np.diff(D, axis=1) if kk > 1 else np.full((len(q), 1), np.inf)
        close = (gaps <= self.tie_tol).any(axis=1) | (I < 0).any(axis=1)
        res = I[:, :k].astype(np.int64)
        if close.any():  # an ambiguous order: rank those queries like numpy does
            res[close] = self._numpy(q[close], k)
        return res


class IVFNeighbours(_Neighbours):
    """Approximate k largest inner products: a FAISS inverted-file index, tuned for recall.

    The rows are split into ``nlist`` k-means cells (FAISS ``IndexIVFScalarQuantizer``,
    inner product, rows kept as float16 in the cells); a query scans the ``nprobe``
    cells whose centroids are closest, i.e. about ``nprobe / nlist`` of the rows,
    instead of all of them. ``nprobe`` is the
    smallest power of two whose recall@k against the exact search reaches
    ``min_recall`` on a sample of the rows used as queries (each query's own row left
    out of both answers); the measured recall is kept in ``recall_``. The ``2k + 1``
    best candidates by the float16 scores are re-ranked by exact float32 inner
    product, ties by row position, as in :class:`ExactNeighbours`; the answer differs
    from the exact one only where a true neighbour sits in a cell that was not
    scanned (or, rarely, falls out of the candidates by float16 rounding).

    Cost: building ``O(n d nlist)`` per k-means iteration (FAISS, 10 iterations), the
    tuning ``O(sample n d)``; a query ``O(nlist d + nprobe (n / nlist) d)``.
    Memory: the rows once more inside the index, as float16.

    Parameters
    ----------
    rows : ndarray, shape (n_rows, d)
    k : int
        The k the recall is tuned for.
    min_recall : float
        Target recall@k of the tuning sample.
    nlist : int, optional
        Number of cells (default ``round(sqrt(n_rows))``).
    nprobe : int, optional
        Cells scanned per query; given, no tuning is done (a saved router passes its
        tuned value back).
    sample : int
        Rows used as tuning queries.
    seed : int
        Seed of the k-means and of the tuning sample (the index is deterministic).

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    >>> nn = IVFNeighbours(rows, k=3)
    >>> nn.search(rows[:2], 3).shape, nn.recall_ >= 0.99
    ((2, 3), True)
    """

    def __init__(self, rows: np.ndarray, k: int = 5, min_recall: float = 0.99,
                 nlist: int | None = None, nprobe: int | None = None, sample: int = 1000,
                 seed: int = 0):
        if not HAVE_FAISS:  # pragma: no cover - faiss is a core dependency
            raise ImportError("IVFNeighbours needs faiss (pip install faiss-cpu)")
        self.rows = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
        n, d = self.rows.shape
        if n < 2:
            raise ValueError("IVFNeighbours needs at least 2 rows")
        self.k = _check_k(k)
        self.nlist = int(nlist) if nlist else max(1, int(round(np.sqrt(n))))
        self.nlist = min(self.nlist, n)
        quantizer = faiss.IndexFlatIP(d)
        # rows stored as float16 in their cells: half the memory and bytes scanned (the
        # scan is bandwidth-bound); candidates are re-ranked in float32 below
        self._index = faiss.IndexIVFScalarQuantizer(quantizer, d, self.nlist,
                                                    faiss.ScalarQuantizer.QT_fp16,
                                                    faiss.METRIC_INNER_PRODUCT)
        self._index.cp.seed = int(seed)
        self._index.train(self.rows)
        self._index.add(self.rows)
        self._quantizer = quantizer  # the index refers to it: keep it alive
        self.recall_: float | None = None
        self.tuning_: dict[int, float] = {}
        if nprobe is not None:
            self.nprobe = max(1, min(int(nprobe), self.nlist))
        else:
            self.nprobe = self._tune(float(min_recall), int(sample), int(seed))
        self._index.nprobe = self.nprobe

    def _tune(self, min_recall: float, sample: int, seed: int) -> int:
        n = self.rows.shape[0]
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, size=min(sample, n), replace=False))
        kk = min(self.k + 1, n)
        exact = ExactNeighbours(self.rows, backend="numpy")._numpy(self.rows[pick], kk)
        truth = [set(r[r != p][:kk - 1]) for r, p in zip(exact, pick)]
        probe = 1
        while True:
            self._index.nprobe = probe
            got = self._search_block(self.rows[pick], kk)
            hits = [len(t & set(g[g != p][:kk - 1])) / max(1, len(t))
                    for t, g, p in zip(truth, got, pick)]
            self.tuning_[probe] = float(np.mean(hits))
            if self.tuning_[probe] >= min_recall or probe >= self.nlist:
                self.recall_ = self.tuning_[probe]
                return probe
            # 1, 2, 3, 4, 6, 8, 12, 16, 24, ...: a power of two, then 1.5 times it
            pow2 = probe & (probe - 1) == 0
            probe = min(max(probe + 1, probe + probe // 2 if pow2 else probe * 4 // 3),
                        self.nlist)

    def _search_block(self, Q: np.ndarray, k: int) -> np.ndarray:
        """Top-k of the scanned cells, re-ranked by exact inner product, ties by row."""
        # 2k + 1 candidates by the float16 scores: spares for their rounding and for a
        # tie at the k-th
        kk = min(2 * k + 1, self.rows.shape[0])
        _, I = self._index.search(Q, kk)
        out = np.empty((Q.shape[0], k), dtype=np.int64)
        ok = (I >= 0).all(axis=1)
        if (~ok).any():  # a query whose cells hold fewer than kk rows: exact search
            out[~ok] = ExactNeighbours(self.rows, backend="numpy")._numpy(Q[~ok], k)
        if ok.any():
            Iok = I[ok].astype(np.int64)
            S = np.einsum("qd,qjd->qj", Q[ok], self.rows[Iok])
            order = np.lexsort((Iok, -S), axis=-1)
            out[ok] = np.take_along_axis(Iok, order, axis=1)[:, :k]
        return out
