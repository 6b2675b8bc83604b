"""implicit's ALS conjugate-gradient solver, run on dense blocks with BLAS.

For a (nearly) fully observed matrix, the sparse per-record loop of implicit's CPU
solver visits every cell one by one: at RouterEval's scale (40,000 prompts x 8,500
LLMs, 340M records) fifteen iterations take over ten minutes on two cores. The
same iteration written with dense blocks is a handful of matrix products per block
of rows, which BLAS runs at full speed.

The objective and the algorithm are implicit's (``implicit.cpu.als``,
``use_cg=True``): a signed confidence matrix, where an entry ``c > 0`` is
preference 1 with confidence ``c``, an entry ``-c`` preference 0 with confidence
``c``, and a cell with no entry preference 0 with confidence 1; each half-step
updates every row's factors with ``cg_steps`` conjugate-gradient steps started from
the current factors, against ``Y^T Y + regularization I`` plus the confidence
terms; a row with no entry gets zero factors; the factors start at
``random_state.random(...) * 0.01`` (users, then items), as implicit draws them.
So the factors equal implicit's up to float rounding (``tests/test_als_dense.py``).

Memory: the signed confidences as two dense float32 copies (rows and columns,
``8 * n * m`` bytes: 2.7 GB at 40,000 x 8,500) plus a few row blocks. Rows are
independent within a half-step, so blocks run on ``num_threads`` threads (BLAS
limited to one thread each) and the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._parallel import map_blocks

__all__ = ["dense_als", "DENSE_MIN_DENSITY"]

#: ``backend="auto"`` uses the dense solver from this share of observed cells on
DENSE_MIN_DENSITY = 0.5
#: ...and from this many cells (below it implicit's loop is fast enough)
DENSE_MIN_CELLS = 20_000_000
_BLOCK_BYTES = 16 << 20  # one row block of the dense confidences (fits in cache)


def _signed_dense(C: sp.csr_matrix, dtype=np.float32) -> np.ndarray:
    """Dense signed confidences; a cell with no entry reads -1 (preference 0,
    confidence 1: no term in the solve, as implicit treats it)."""
    D = np.full(C.shape, -1.0, dtype=dtype)
    rows = np.repeat(np.arange(C.shape[0], dtype=np.int64), np.diff(C.indptr))
    D[rows, C.indices] = C.data
    return D


def _half_step(D: np.ndarray, empty: np.ndarray, X: np.ndarray, Y: np.ndarray,
               regularization: float, cg_steps: int, num_threads: int | None) -> None:
    """Update every row of ``X`` (in place) against the fixed ``Y``."""
    f, dt = X.shape[1], X.dtype
    YtY = (Y.T @ Y + dt.type(regularization) * np.eye(f, dtype=dt)).astype(dt)
    Yt = np.ascontiguousarray(Y.T)
    block = max(16, _BLOCK_BYTES // max(1, D.itemsize * D.shape[1]))

    def run(s: int) -> None:
        e = min(s + block, D.shape[0])
        Db = D[s:e]
        A = np.abs(Db)
        A -= 1.0  # confidence - 1 (0 where no entry)
        x = X[s:e].copy()
        T = x @ Yt
        T *= A
        r = np.maximum(Db, 0.0) @ Y  # sum of confidence * preference * y
        r -= x @ YtY
        r -= T @ Y
        p = r.copy()
        rsold = np.einsum("ij,ij->i", r, r)
        active = rsold >= 1e-20
        for _ in range(int(cg_steps)):
            if not active.any():
                break
            T = p @ Yt
            T *= A
            Ap = p @ YtY
            Ap += T @ Y
            pAp = np.einsum("ij,ij->i", p, Ap)
            alpha = np.zeros_like(rsold)
            np.divide(rsold, pAp, out=alpha, where=active)
            x += alpha[:, None] * p
            r -= alpha[:, None] * Ap
            rsnew = np.einsum("ij,ij->i", r, r)
            active &= rsnew >= 1e-20
            beta = np.zeros_like(rsold)
            np.divide(rsnew, rsold, out=beta, where=active)
            p = r + beta[:, None] * p
            rsold = np.where(active, rsnew, rsold)
        X[s:e] = x

    map_blocks(run, range(0, D.shape[0], block), num_threads)
    X[empty] = 0.0


def dense_als(C: sp.csr_matrix, factors: int, regularization: float, iterations: int,
              random_state=None, cg_steps: int = 3, num_threads: int = 0,
              progress=None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Fit implicit's ALS on the signed confidence matrix ``C`` (users x items).

    Returns ``(user_factors, item_factors)`` (float32), as
    ``implicit.cpu.als.AlternatingLeastSquares(factors, regularization, alpha=1.0,
    iterations, random_state).fit(C)`` would, computed on dense blocks.
    ``progress(i)`` is called after each iteration; ``dtype`` is that of the
    factors and the dense confidences (implicit's ``dtype``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> C = sp.csr_matrix(np.array([[3.0, -2.0], [-2.0, 3.0], [3.0, -2.0]], np.float32))
    >>> U, V = dense_als(C, factors=2, regularization=0.01, iterations=10, random_state=0)
    >>> (U @ V.T).argmax(axis=1).tolist()
    [0, 1, 0]
    """
    from implicit.utils import check_random_state
    dt = np.dtype(dtype)
    C = sp.csr_matrix(C, dtype=np.float32)  # implicit reads the confidences as float32
    n, m = C.shape
    rng = check_random_state(random_state)
    U = rng.random((n, int(factors)), dtype=dt) * dt.type(0.01)
    V = rng.random((m, int(factors)), dtype=dt) * dt.type(0.01)
    D = _signed_dense(C, dt)
    DT = np.ascontiguousarray(D.T)
    empty_u = np.diff(C.indptr) == 0
    empty_i = np.bincount(C.indices, minlength=m) == 0
    for i in range(int(iterations)):
        _half_step(D, empty_u, U, V, regularization, cg_steps, num_threads)
        _half_step(DT, empty_i, V, U, regularization, cg_steps, num_threads)
        if progress is not None:
            progress(i)
    return U, V
