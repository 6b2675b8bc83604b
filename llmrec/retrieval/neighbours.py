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


class ExactNeighbours:
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

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions (n_queries, min(k, n_rows)) of the best inner products."""
        k = min(_check_k(k), self.rows.shape[0])
        Q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if Q.shape[0] == 0:
            return np.zeros((0, k), dtype=np.int64)
        if self._index is None:
            return self._numpy(Q, k)
        kk = min(k + 1, self.rows.shape[0])
        out = np.empty((Q.shape[0], k), dtype=np.int64)
        block = 16384  # results are small; the block only bounds faiss's scratch
        for s in range(0, Q.shape[0], block):
            q = Q[s:s + block]
            D, I = self._index.search(q, kk)
            gaps = -np.diff(D, axis=1) if kk > 1 else np.full((len(q), 1), np.inf)
            close = (gaps <= self.tie_tol).any(axis=1) | (I < 0).any(axis=1)
            res = I[:, :k].astype(np.int64)
            if close.any():  # an ambiguous order: rank those queries like numpy does
                res[close] = self._numpy(q[close], k)
            out[s:s + block] = res
        return out
