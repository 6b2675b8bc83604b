"""Retrieval: the FAISS and numpy paths of LLMIndex agree exactly, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import ConfigError, NotFittedError, UnknownIdError
from llmrec.retrieval import HAVE_FAISS, LLMIndex, topk_scores

needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed")


def reference(Q, V, k, cand=None, bias=None, normalize=False):
    """Brute force in float64: score desc, LLM index asc."""
    Q = np.asarray(Q, np.float64)
    V = np.asarray(V, np.float64)
    if normalize:
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    S = Q @ V.T + (0 if bias is None else np.asarray(bias, np.float64)[None, :])
    pool = np.arange(V.shape[0]) if cand is None else np.unique(cand)
    out = []
    for row in S[:, pool]:
        order = np.lexsort((pool, -row))
        out.append(pool[order[:min(k, len(pool))]])
    return np.array(out, dtype=np.int64).reshape(len(S), -1)


def both(V, bias=None, normalize=False, kind="flat"):
    return (LLMIndex(backend="faiss", kind=kind, normalize=normalize).add(V, bias=bias),
            LLMIndex(backend="numpy", kind=kind, normalize=normalize).add(V, bias=bias))


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == b[0].dtype == np.int64 and a[1].dtype == b[1].dtype == np.float32


@needs_faiss
@pytest.mark.parametrize("n_llms,d", [(1, 4), (7, 4), (29, 64), (300, 16)])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_faiss_and_numpy_agree_on_random_data(n_llms, d, k):
    rng = np.random.default_rng(n_llms * 100 + d + k)
    V = rng.normal(size=(n_llms, d)).astype(np.float32)
    Q = rng.normal(size=(64, d)).astype(np.float32)
    fa, nu = both(V)
    got = fa.search(Q, k)
    assert_same(got, nu.search(Q, k))
    np.testing.assert_array_equal(got[0], reference(Q, V, k))
    assert got[0].shape == (64, min(k, n_llms))
    assert (np.diff(got[1], axis=1) <= 0).all()


@needs_faiss
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidate_subsets_bias_and_normalisation(seed):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(40, 8)).astype(np.float32) * rng.uniform(0.1, 3, size=(40, 1))
    Q = rng.normal(size=(50, 8)).astype(np.float32)
    bias = rng.normal(size=40).astype(np.float32)
    cand = rng.choice(40, size=12, replace=False)
    cand_messy = np.concatenate([cand[::-1], cand[:3]])  # unsorted, with repeats
    for b in (None, bias):
        for norm in (False, True):
            fa, nu = both(V, bias=b, normalize=norm)
            for c in (None, cand, cand_messy, cand[:1]):
                for k in (1, 5, 12, 40):
                    got = fa.search(Q, k, candidates=c)
                    assert_same(got, nu.search(Q, k, candidates=c))
                    np.testing.assert_array_equal(got[0], reference(Q, V, k, c, b, norm))
                    if c is not None:
                        assert np.isin(got[0], c).all()


@needs_faiss
def test_scores_include_bias_and_match_search():
    rng = np.random.default_rng(3)
    V = rng.normal(size=(10, 4)).astype(np.float32)
    bias = np.linspace(-1, 1, 10).astype(np.float32)
    Q = rng.normal(size=(5, 4)).astype(np.float32)
    fa, nu = both(V, bias=bias)
    S = nu.scores(Q)
    np.testing.assert_allclose(S, Q @ V.T + bias, rtol=1e-5, atol=1e-6)
    ids, vals = fa.search(Q, 3)
    np.testing.assert_allclose(vals, np.take_along_axis(S, ids, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(ids, topk_scores(S, 3)[0])


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_plain_lists_with_bias(backend):
    idx = LLMIndex(backend=backend).add([[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 2.0])
    ids, vals = idx.search([[1.0, 0.0]], 2)
    assert ids.tolist() == [[1, 0]] and vals.tolist() == [[2.0, 1.0]]


@needs_faiss
def test_k_larger_than_pool_returns_the_whole_pool():
    V = np.eye(5, dtype=np.float32)
    fa, nu = both(V)
    for idx in (fa, nu):
        ids, vals = idx.search(np.ones((2, 5)), k=50)
        assert ids.shape == (2, 5) and sorted(ids[0]) == [0, 1, 2, 3, 4]
        ids, _ = idx.search(np.ones((2, 5)), k=50, candidates=[4, 1])
        assert ids.tolist() == [[1, 4], [1, 4]]


@pytest.mark.parametrize("k", [0, -1, 2.0, True, "3"])
def test_bad_k_is_an_error(k):
    idx = LLMIndex(backend="numpy").add(np.eye(3))
    with pytest.raises(ConfigError, match="k must be"):
        idx.search(np.ones((1, 3)), k)
    with pytest.raises(ConfigError, match="k must be"):
        topk_scores(np.ones((1, 3)), k)


@needs_faiss
@pytest.mark.parametrize("seed", range(4))
def test_ties_break_by_llm_index_on_both_paths(seed):
    """Integer-valued vectors give exact ties everywhere, including at the k-th place."""
    rng = np.random.default_rng(seed)
    V = rng.integers(-1, 2, size=(30, 3)).astype(np.float32)
    V[5] = V[17] = V[29] = V[2]  # duplicated LLMs: identical scores for every query
    Q = rng.integers(-2, 3, size=(200, 3)).astype(np.float32)
    Q[0] = 0  # all thirty LLMs tie
    bias = rng.integers(0, 2, size=30).astype(np.float32)
    cand = [29, 17, 5, 2, 11, 12, 13]
    for b in (None, bias):
        fa, nu = both(V, bias=b)
        for c in (None, cand):
            for k in (1, 2, 4, 7, 30):
                got = fa.search(Q, k, candidates=c)
                assert_same(got, nu.search(Q, k, candidates=c))
                np.testing.assert_array_equal(got[0], reference(Q, V, k, c, b))
    ids, _ = both(V)[0].search(Q[:1], 4)
    assert ids.tolist() == [[0, 1, 2, 3]]


def test_numpy_topk_scores_edges():
    S = np.array([[0.1, np.nan, 0.9, 0.9], [np.nan, np.nan, 0.0, -1.0]], np.float32)
    ids, vals = topk_scores(S, 4)
    assert ids.tolist() == [[2, 3, 0, 1], [2, 3, 0, 1]]  # NaN ranks last
    assert np.isnan(vals[0, 3])
    ids, _ = topk_scores(S, 2, candidates=np.array([3, 0]))
    assert ids.tolist() == [[3, 0], [3, 0]]  # row 2: -1.0 beats NaN
    ids, vals = topk_scores(np.zeros((0, 4)), 2)
    assert ids.shape == vals.shape == (0, 2)
    with pytest.raises(ConfigError, match="empty"):
        topk_scores(S, 1, candidates=[])
    with pytest.raises(UnknownIdError, match="out of range"):
        topk_scores(S, 1, candidates=[0, 4])
    with pytest.raises(ConfigError, match="integer"):
        topk_scores(S, 1, candidates=["a"])
    with pytest.raises(ConfigError, match="2-D"):
        topk_scores(np.ones(3), 1)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_index_input_errors(backend):
    idx = LLMIndex(backend=backend)
    with pytest.raises(NotFittedError, match="add"):
        idx.search(np.ones((1, 3)), 1)
    with pytest.raises(ConfigError, match="non-empty 2-D"):
        idx.add(np.zeros((0, 3)))
    idx.add(np.eye(3))
    with pytest.raises(ConfigError, match=r"expected \(n, 3\)"):
        idx.search(np.ones((1, 4)), 1)
    with pytest.raises(ConfigError, match="bias has 2 values"):
        LLMIndex(backend=backend).add(np.eye(3), bias=[1, 2])
    ids, vals = idx.search(np.zeros((0, 3)), 2)
    assert ids.shape == (0, 2)
    assert idx.search(np.array([0.0, 1.0, 0.0]), 1)[0].tolist() == [[1]]  # 1-D query
    with pytest.raises(ConfigError, match="kind"):
        LLMIndex(backend=backend, kind="ivf").add(np.eye(3))
    with pytest.raises(ConfigError, match="backend"):
        LLMIndex(backend="annoy").add(np.eye(3))


@needs_faiss
def test_hnsw_runs_and_is_exact_with_candidates():
    rng = np.random.default_rng(7)
    V = rng.normal(size=(500, 16)).astype(np.float32)
    Q = rng.normal(size=(100, 16)).astype(np.float32)
    hn = LLMIndex(backend="faiss", kind="hnsw", hnsw_m=16).add(V)
    ids, vals = hn.search(Q, 5)
    assert ids.shape == (100, 5) and ((ids >= 0) & (ids < 500)).all()
    exact = reference(Q, V, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, exact)])
    assert recall >= 0.9, recall
    np.testing.assert_allclose(vals, np.take_along_axis(Q @ V.T, ids, axis=1), rtol=1e-5,
                               atol=1e-5)
    cand = rng.choice(500, size=40, replace=False)
    assert_same(hn.search(Q, 5, candidates=cand),
                LLMIndex(backend="numpy").add(V).search(Q, 5, candidates=cand))
    # hnsw with bias and normalisation runs too
    hb = LLMIndex(backend="faiss", kind="hnsw", normalize=True).add(V, bias=np.ones(500))
    assert hb.search(Q[:3], 2)[0].shape == (3, 2)
