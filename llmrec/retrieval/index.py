"""Top-k retrieval of LLMs: a FAISS index over LLM vectors, and the numpy path.

Every router's ``recommend`` goes through this module. Factorised routers (ALS,
LightFM, text-MF, two-tower) put their LLM vectors in an :class:`LLMIndex` and
search it with prompt vectors; other routers rank their score matrix with
:func:`topk_scores`. Both paths rank by score, descending, and break ties by a
*tie rank* (lower wins; routers pass :func:`tie_ranks` of their LLMs' training
means, so a choice never depends on the LLMs' column order), or by LLM index,
ascending, when no tie rank is given, so that FAISS and numpy give the same answer.

An additive item bias ``b_j`` (score = q . v_j + b_j) is folded into the index by
appending ``b_j`` as an extra dimension of the LLM vectors and a constant 1 to the
queries; cost-aware ranking (score - lambda * price) uses the same mechanism.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError, NotFittedError, UnknownIdError

try:  # faiss is a core dependency, but keep the numpy path usable without it
    import faiss  # type: ignore
    HAVE_FAISS = True
except ImportError:  # pragma: no cover - exercised only where faiss is absent
    faiss = None
    HAVE_FAISS = False


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if k <= 0:
        raise ConfigError(f"k must be >= 1, got {k}")
    return int(k)


def _candidate_positions(candidates, n_items: int) -> np.ndarray | None:
    if candidates is None:
        return None
    cand = np.asarray(candidates)
    if cand.size == 0:
        raise ConfigError("candidates is empty; give at least one LLM or None for all")
    if cand.dtype.kind not in "iu":
        raise ConfigError("candidates must be integer LLM positions here "
                          "(routers map names to positions)")
    cand = np.unique(cand.astype(np.int64))
    if cand.min() < 0 or cand.max() >= n_items:
        raise UnknownIdError(f"candidate position out of range 0..{n_items - 1}")
    return cand


def tie_ranks(means, names) -> np.ndarray:
    """The tie rule of every router: rank of each LLM, 0 = wins a tie.

    LLMs are ordered by training mean score, descending (NaN last), then by name;
    a tie between equal scores goes to the LLM with the lower rank. The rank depends
    on the LLMs, not on their column order.

    Examples
    --------
    >>> tie_ranks([0.2, 0.5, 0.5], ["c", "b", "a"]).tolist()
    [2, 1, 0]
    """
    mu = np.asarray(means, dtype=np.float64).reshape(-1)
    nm = np.asarray([str(n) for n in names], dtype=object)
    if mu.shape[0] != nm.shape[0]:
        raise ConfigError(f"{mu.shape[0]} means for {nm.shape[0]} LLM names")
    key = np.where(np.isnan(mu), np.inf, -mu)
    order = np.lexsort((nm, key)) if len(nm) else np.zeros(0, np.int64)
    rank = np.empty(len(nm), dtype=np.int64)
    rank[order] = np.arange(len(nm))
    return rank


def _check_tie_rank(tie_rank, m: int) -> np.ndarray | None:
    if tie_rank is None:
        return None
    r = np.asarray(tie_rank, dtype=np.int64).reshape(-1)
    if r.shape[0] != m:
        raise ConfigError(f"tie_rank has {r.shape[0]} entries for {m} LLMs")
    return r


def tie_break_argmax(scores: np.ndarray, tie_rank=None) -> np.ndarray:
    """Column of the best score of each row; ties to the lowest ``tie_rank``
    (lowest column without one). NaN ranks last.

    Examples
    --------
    >>> import numpy as np
    >>> tie_break_argmax(np.array([[1.0, 2.0, 2.0]]), tie_rank=[0, 2, 1]).tolist()
    [2]
    """
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim != 2:
        raise ConfigError(f"scores must be 2-D (prompts x LLMs), got shape {S.shape}")
    if S.shape[1] == 0:
        return np.zeros(S.shape[0], np.int64)
    S = np.where(np.isnan(S), -np.inf, S)
    r = _check_tie_rank(tie_rank, S.shape[1])
    if r is None:
        return np.argmax(S, axis=1).astype(np.int64)
    perm = np.argsort(r, kind="stable")
    return perm[np.argmax(S[:, perm], axis=1)].astype(np.int64)


def topk_scores(scores: np.ndarray, k: int, candidates=None,
                tie_rank=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of a (n_prompts, n_llms) score matrix.

    Returns ``(ids, values)``, each ``(n_prompts, min(k, pool))``, ordered by score
    descending, ties by ``tie_rank`` ascending (see :func:`tie_ranks`), or by LLM
    index ascending without one. NaN scores rank last.

    Examples
    --------
    >>> import numpy as np
    >>> topk_scores(np.array([[0.1, 0.9, 0.9]]), k=2)
    (array([[1, 2]]), array([[0.9, 0.9]], dtype=float32))
    >>> topk_scores(np.array([[0.1, 0.9, 0.9]]), k=1, tie_rank=[0, 2, 1])[0]
    array([[2]])
    """
    k = _check_k(k)
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ConfigError(f"scores must be 2-D (prompts x LLMs), got shape {scores.shape}")
    n, m = scores.shape
    cand = _candidate_positions(candidates, m)
    pool = np.arange(m) if cand is None else cand
    rank = _check_tie_rank(tie_rank, m)
    if rank is not None:  # positions in the pool follow the tie rank
        pool = pool[np.argsort(rank[pool], kind="stable")]
    kk = min(k, len(pool))
    if n == 0:
        return np.zeros((0, kk), np.int64), np.zeros((0, kk), np.float32)
    ids = np.empty((n, kk), np.int64)
    vals = np.empty((n, kk), np.float32)
    # blocks of rows small enough to stay in cache: the gather, the NaN pass and the
    # kk argmax passes then read each block from cache, not the whole matrix from RAM
    step = max(1, _BLOCK_CELLS // len(pool))
    tail = None
    if cand is None and rank is not None and kk <= 8:  # larger tail = lower tie rank
        tail = (np.iinfo(np.uint32).max - np.argsort(np.argsort(rank, kind="stable"),
                                                     kind="stable")).astype(np.uint64)
        b = min(step, n)
        bufs = (np.empty((b, m), np.float32), np.empty((b, m), np.uint64),
                np.empty((b, m), np.uint32))
    for s in range(0, n, step):
        blk = scores[s:s + step]
        if tail is not None:
            # columns in their own order, the tie rank packed into the keys: no gather
            # of the block, one argmax per pick whatever the ties
            b = len(blk)
            key = np.fmax(blk, np.float32(-np.inf), out=bufs[0][:b])
            order = _topk_packed_argmax(key, kk, tail, bufs[1][:b], bufs[2][:b])
            ids[s:s + step] = order
            vals[s:s + step] = np.take_along_axis(blk, order, axis=1)
            continue
        # the pool is reordered when a tie rank is given: then index the columns too
        gathered = cand is not None or rank is not None
        sub = blk[:, pool] if gathered else blk
        # _topk_order writes to its keys: a gathered block is already a copy; NaN ->
        # -inf in the same pass (fmax ignores a NaN)
        key = np.fmax(sub, np.float32(-np.inf), out=sub if gathered else None)
        order = _topk_order(key, kk)
        ids[s:s + step] = pool[order]
        # the scores themselves (NaN stays NaN), not the keys
        vals[s:s + step] = np.take_along_axis(blk, pool[order], axis=1)
    return ids, vals


#: cells per block of rows in :func:`topk_scores` (float32: 1 MiB)
_BLOCK_CELLS = 1 << 18


def _topk_order(key: np.ndarray, kk: int) -> np.ndarray:
    """Column order of the kk largest keys per row, ties by column index ascending.

    Each float32 key and its column are packed into one uint64 that orders exactly
    as (key descending, column ascending) and has no ties, so a single
    ``argpartition`` finds the kk best even in rows full of ties (binary scores,
    kNN votes), and only those kk are sorted: O(m) per row whatever the ties.
    Rows are done in blocks to bound the uint64 temporary. A full sort is used when
    kk is a large share of the row.
    """
    n, m = key.shape
    if kk * 4 >= m:
        return np.argsort(-key, axis=1, kind="stable")[:, :kk]
    if kk <= 8:
        return _topk_by_argmax(key, kk)
    out = np.empty((n, kk), dtype=np.int64)
    tail = np.uint64(m - 1) - np.arange(m, dtype=np.uint64)  # larger for lower columns
    step = max(1, (1 << 21) // m)
    for s in range(0, n, step):
        packed = _packed_keys(key[s:s + step], tail)
        part = np.argpartition(packed, m - kk, axis=1)[:, m - kk:]
        vals = np.take_along_axis(packed, part, axis=1)
        order = np.argsort(vals, axis=1)[:, ::-1]
        out[s:s + step] = np.take_along_axis(part, order, axis=1)
    return out


def _topk_by_argmax(key: np.ndarray, kk: int) -> np.ndarray:
    """kk passes of ``argmax`` (first maximum: the lowest column wins a tie), each
    pick then set to -inf; a vectorised pass over the row is far cheaper than a
    partition for small kk. A row with fewer than kk finite keys (a pick at -inf could
    repeat an earlier one) keeps its finite picks and is filled with its lowest unpicked
    columns, as a stable sort would order its -inf keys. Modifies ``key``."""
    n = key.shape[0]
    rows = np.arange(n)
    out = np.empty((n, kk), dtype=np.int64)
    n_finite = np.full(n, kk, dtype=np.int64)  # picks made before a row ran out
    for j in range(kk):
        a = np.argmax(key, axis=1)
        out[:, j] = a
        out_now = (key[rows, a] == -np.inf) & (n_finite == kk)
        n_finite[out_now] = j
        key[rows, a] = -np.inf
    for i in np.flatnonzero(n_finite < kk):  # fewer than kk finite keys (rare)
        # its finite keys were all picked, best first; the rest are -inf, which a
        # stable sort orders by column
        f = int(n_finite[i])
        taken = set(out[i, :f].tolist())
        rest = [c for c in range(key.shape[1]) if c not in taken][:kk - f]
        out[i, f:] = rest
    return out


def _topk_packed_argmax(key: np.ndarray, kk: int, tail: np.ndarray, pk: np.ndarray,
                        tmp: np.ndarray) -> np.ndarray:
    """kk argmax passes over packed uint64 keys (as :func:`_packed_keys`): each orders
    exactly as (key descending, tail descending) with no two equal, so every pick is
    one argmax whatever the ties, on columns in their own order (no gather of the
    block), and keys at -inf are picked in tail order as a stable sort would.

    ``key`` (float32, NaN already -inf) is overwritten; ``pk`` (uint64) and ``tmp``
    (uint32) are caller-owned buffers of the same shape, reused across blocks: fresh
    multi-MiB temporaries per block cost a page fault per 4 KiB."""
    np.add(key, np.float32(0.0), out=key)  # -0.0 -> +0.0
    bits = key.view(np.uint32)
    np.right_shift(bits, np.uint32(31), out=tmp)  # sign: flip all bits, else the top one
    np.multiply(tmp, np.uint32(0x7FFFFFFF), out=tmp)
    np.add(tmp, np.uint32(0x80000000), out=tmp)
    np.bitwise_xor(bits, tmp, out=tmp)
    np.copyto(pk, tmp)
    np.left_shift(pk, np.uint64(32), out=pk)
    np.bitwise_or(pk, tail[None, :], out=pk)
    rows = np.arange(key.shape[0])
    out = np.empty((key.shape[0], kk), dtype=np.int64)
    for j in range(kk):
        a = np.argmax(pk, axis=1)
        out[:, j] = a
        pk[rows, a] = 0  # below every packed key (NaN was mapped to -inf before)
    return out


def _packed_keys(key: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as (float32 key, then ``tail``): sign-flipped IEEE bits high."""
    k32 = np.ascontiguousarray(key, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    bits = k32.view(np.uint32)
    flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return ((bits ^ flip).astype(np.uint64) << np.uint64(32)) | tail[None, :]


class LLMIndex:
    """Inner-product index over LLM vectors with optional bias and candidate subsets.

    Parameters
    ----------
    backend : {"auto", "faiss", "numpy"}
        ``auto`` uses faiss when installed.
    kind : {"flat", "hnsw"}
        ``flat`` (exact ``IndexFlatIP``, the default) or ``hnsw`` (approximate, for
        very large pools). Candidate restriction with ``hnsw`` re-ranks the
        candidates exactly, so it stays exact.
    normalize : bool
        L2-normalise LLM vectors and queries (cosine similarity).
    hnsw_m : int
        HNSW graph degree.

    Examples
    --------
    >>> import numpy as np
    >>> idx = LLMIndex().add(np.eye(3, dtype=np.float32), bias=[0.0, 0.5, 0.0])
    >>> ids, scores = idx.search(np.array([[1.0, 0.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.round(2).tolist()
    ([[0, 1]], [[1.0, 0.5]])
    """

    def __init__(self, backend: str = "auto", kind: str = "flat", normalize: bool = False,
                 hnsw_m: int = 32):
        self.backend = backend
        self.kind = kind
        self.normalize = normalize
        self.hnsw_m = hnsw_m

    @property
    def backend_(self) -> str:
        if self.backend not in ("auto", "faiss", "numpy"):
            raise ConfigError(f"backend must be 'auto', 'faiss' or 'numpy', got {self.backend!r}")
        if self.backend == "faiss" and not HAVE_FAISS:
            raise ConfigError("backend='faiss' but faiss is not installed; pip install faiss-cpu")
        return "faiss" if self.backend in ("auto", "faiss") and HAVE_FAISS else "numpy"

    def add(self, vectors, bias=None, tie_rank=None) -> "LLMIndex":
        """Set the LLM vectors (n_llms, d), optional additive bias (n_llms,) and the
        tie rank (n_llms,) that settles equal scores (see :func:`tie_ranks`)."""
        if self.kind not in ("flat", "hnsw"):
            raise ConfigError(f"kind must be 'flat' or 'hnsw', got {self.kind!r}")
        V = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if V.ndim != 2 or V.shape[0] == 0:
            raise ConfigError(f"LLM vectors must be a non-empty 2-D array, got shape {V.shape}")
        if self.normalize:
            V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        self.dim_ = V.shape[1]  # before the bias column (vectors may be a plain list)
        self.has_bias_ = bias is not None
        if bias is not None:
            b = np.asarray(bias, dtype=np.float32).reshape(-1)
            if b.shape[0] != V.shape[0]:
                raise ConfigError(f"bias has {b.shape[0]} values for {V.shape[0]} LLMs")
            V = np.hstack([V, b[:, None]])
        self.vectors_ = np.ascontiguousarray(V)
        self.tie_rank_ = _check_tie_rank(tie_rank, V.shape[0])
        self.index_ = None
        if self.backend_ == "faiss":
            if self.kind == "flat":
                self.index_ = faiss.IndexFlatIP(self.vectors_.shape[1])
            else:
                self.index_ = faiss.IndexHNSWFlat(self.vectors_.shape[1], self.hnsw_m,
                                                  faiss.METRIC_INNER_PRODUCT)
            self.index_.add(self.vectors_)
        return self

    @property
    def ntotal(self) -> int:
        return 0 if not hasattr(self, "vectors_") else self.vectors_.shape[0]

    def _queries(self, queries) -> np.ndarray:
        if not hasattr(self, "vectors_"):
            raise NotFittedError("LLMIndex is empty; call add(vectors) first")
        Q = np.asarray(queries, dtype=np.float32)
        if Q.ndim == 1:
            Q = Q[None, :]
        if Q.ndim != 2 or Q.shape[1] != self.dim_:
            raise ConfigError(f"queries have shape {Q.shape}, expected (n, {self.dim_})")
        if self.normalize:
            Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        if self.has_bias_:
            Q = np.hstack([Q, np.ones((Q.shape[0], 1), np.float32)])
        return np.ascontiguousarray(Q)

    def scores(self, queries) -> np.ndarray:
        """All inner products (n_queries, n_llms), bias included (numpy)."""
        return self._queries(queries) @ self.vectors_.T

    def search(self, queries, k: int, candidates: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k LLM positions and scores for each query.

        ``k`` larger than the pool returns the whole pool; ``k <= 0`` is an error.
        ``candidates`` restricts the search to those LLM positions (exactly).
        """
        k = _check_k(k)
        Q = self._queries(queries)
        n_items = self.vectors_.shape[0]
        cand = _candidate_positions(candidates, n_items)
        pool_size = n_items if cand is None else len(cand)
        kk = min(k, pool_size)
        if Q.shape[0] == 0:
            return np.zeros((0, kk), np.int64), np.zeros((0, kk), np.float32)
        if self.backend_ == "numpy" or self.kind == "hnsw" and cand is not None:
            ids, _ = topk_scores(Q @ self.vectors_.T, kk, cand, self.tie_rank_)
            return ids, self._values(Q, ids)
        kq = min(kk + 1, pool_size)  # one extra result reveals a tie at the k-th place
        params = None if cand is None else faiss.SearchParameters(
            sel=faiss.IDSelectorBatch(cand))
        # a few queries do not pay for OpenMP's thread start-up (and suffer badly
        # from it on a busy machine): search them on one thread
        few = Q.shape[0] <= 16
        threads = faiss.omp_get_max_threads()
        if few:
            faiss.omp_set_num_threads(1)
        try:
            _, I = self.index_.search(Q, kq, params=params)
        finally:
            if few:
                faiss.omp_set_num_threads(threads)
        return self._finish(Q, I.astype(np.int64), kk, cand)

    def _finish(self, Q, I, kk, cand):
        """Make faiss's answer deterministic and identical to the numpy path.

        faiss orders equal scores arbitrarily and sums in another order than BLAS.
        The scores of the returned LLMs are recomputed exactly, rows are sorted by
        (score desc, tie rank or LLM index asc), and any row whose k-th and (k+1)-th scores are
        within float tolerance (a tie at the cut) or that came back short is answered
        by the exact numpy path instead.
        """
        bad = (I < 0).any(axis=1)
        Ic = np.where(I < 0, 0, I)
        got = self._values(Q, Ic)
        tie = Ic if self.tie_rank_ is None else self.tie_rank_[Ic]
        order = np.lexsort((tie, -got), axis=1) if got.shape[1] > 1 else np.zeros_like(Ic)
        Ic = np.take_along_axis(Ic, order, axis=1)
        got = np.take_along_axis(got, order, axis=1)
        if got.shape[1] > kk:
            scale = np.maximum(np.abs(got[:, kk - 1]), 1.0)
            bad |= (got[:, kk - 1] - got[:, kk]) <= 1e-5 * scale
        if kk > 1:  # near-ties inside the top-k: let numpy settle their order too
            d = np.diff(got[:, :kk], axis=1)
            bad |= (np.abs(d) <= 1e-5 * np.maximum(np.abs(got[:, :kk - 1]), 1.0)).any(axis=1)
        ids, vals = Ic[:, :kk].copy(), got[:, :kk].copy()
        if bad.any():
            rid, _ = topk_scores(Q[bad] @ self.vectors_.T, kk, cand, self.tie_rank_)
            ids[bad], vals[bad] = rid, self._values(Q[bad], rid)
        return ids, vals

    def _values(self, Q, ids):
        """Scores of the given LLMs, computed the same way on both paths."""
        return np.einsum("nd,nkd->nk", Q, self.vectors_[ids]).astype(np.float32)

