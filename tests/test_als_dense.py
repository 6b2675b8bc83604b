"""The dense-block ALS solver against implicit's own CPU solver."""

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec.routers import make_router
from llmrec.routers.als_dense import dense_als

from .router_conformance import RouterConformance, small_encoder


def _signed(n=120, m=15, seed=0):
    rng = np.random.default_rng(seed)
    W = 1 + 2 * rng.random((n, m))
    D = np.where(rng.random((n, m)) < 0.4, W, -W)
    D[rng.random((n, m)) < 0.1] = 0  # unobserved cells
    D[3] = 0  # a prompt with no record
    D[:, 4] = 0  # an LLM with no record
    C = sp.csr_matrix(D.astype(np.float32))
    C.eliminate_zeros()
    return C


@pytest.mark.parametrize("iterations", [1, 6])
def test_same_factors_as_implicit(iterations):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    C = _signed()
    with threadpool_limits(1, "blas"):
        ref = AlternatingLeastSquares(factors=6, regularization=0.1, alpha=1.0,
                                      iterations=iterations, random_state=3, num_threads=1,
                                      dtype=np.float64)
        ref.fit(C, show_progress=False)
    U, V = dense_als(C, 6, 0.1, iterations, random_state=3, dtype=np.float64)
    # float64 on both sides: equal up to rounding (the confidences are float32 in both)
    np.testing.assert_allclose(U, ref.user_factors, atol=1e-6)
    np.testing.assert_allclose(V, ref.item_factors, atol=1e-6)
    assert not U[3].any() and not V[4].any()  # no record: zero factors, as implicit


def test_thread_count_does_not_change_the_factors():
    C = _signed(n=3000, m=40, seed=1)  # several row blocks per half-step
    import llmrec.routers.als_dense as ad
    block = ad._BLOCK_BYTES
    ad._BLOCK_BYTES = 4 * 40 * 100  # 100-row blocks
    try:
        a = dense_als(C, 4, 0.1, 3, random_state=0, num_threads=1)
        b = dense_als(C, 4, 0.1, 3, random_state=0, num_threads=2)
    finally:
        ad._BLOCK_BYTES = block
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


class TestALSDense(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("als", factors=8, iterations=5, backend="dense")


def test_auto_picks_the_solver_by_size_and_density(synth_split, monkeypatch):
    import llmrec.routers.als_dense as ad
    train, test = synth_split
    small = make_router("als", factors=8, iterations=5).fit(train, encoder=small_encoder())
    assert small.backend_ == "implicit"  # below DENSE_MIN_CELLS
    monkeypatch.setattr(ad, "DENSE_MIN_CELLS", 1)
    big = make_router("als", factors=8, iterations=5).fit(train, encoder=small_encoder())
    assert big.backend_ == "dense"
    # the same model up to float32 rounding: the same choices on almost every prompt
    agree = (small.score(test).argmax(1) == big.score(test).argmax(1)).mean()
    assert agree >= 0.95
