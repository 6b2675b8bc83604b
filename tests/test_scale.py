"""Scale work: memory of records, fast paths that must give the same answers, dry run."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec.data import PerformanceRecords
from llmrec.data.records import _column_sums
from llmrec.datasets import make_synthetic
from llmrec.retrieval import ExactNeighbours, topk_scores
from llmrec.retrieval.index import _topk_order
from llmrec.routers import make_router
from llmrec.routers.base import Router


# ----------------------------------------------------------------- records
def test_records_hold_only_the_csr():
    rec = make_synthetic(300, 40, seed=0, density=0.7)
    obs = rec.observed
    assert obs.dtype == bool and obs.nnz == rec.n_observed
    # the mask is a view of the scores' structure, not a copy of it
    assert np.shares_memory(obs.indices, rec.scores.indices)
    assert np.shares_memory(obs.indptr, rec.scores.indptr)
    assert "observed" not in vars(rec)
    big = [k for k, v in vars(rec).items()
           if sp.issparse(v) or (isinstance(v, np.ndarray) and v.size >= rec.n_observed)]
    assert big == ["scores"]


def test_canonical_float32_csr_is_shared_not_copied():
    rec = make_synthetic(50, 6, seed=1)
    again = PerformanceRecords(rec.scores, rec.prompts, rec.llms, observed=rec.observed)
    assert np.shares_memory(again.scores.data, rec.scores.data)
    assert again.equals(rec)


def test_dense_views_match_a_naive_fill(monkeypatch):
    import llmrec.data.records as records_module
    monkeypatch.setattr(records_module, "_DENSE_BLOCK_CELLS", 97)  # several blocks
    rec = make_synthetic(257, 33, seed=2, density=0.6, binary=False)
    coo = rec.scores.tocoo()
    want = np.full(rec.shape, np.nan, np.float32)
    want[coo.row, coo.col] = coo.data
    np.testing.assert_array_equal(rec.dense(), want)
    np.testing.assert_array_equal(rec.observed_dense(), ~np.isnan(want))
    packed = rec.observed_packed()
    assert packed.shape == (257, 5) and packed.dtype == np.uint8
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1, count=33).astype(bool),
                                  ~np.isnan(want))


def test_chunked_column_sums_equal_bincount():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 17, 1000).astype(np.int32)
    w = rng.random(1000).astype(np.float32)
    np.testing.assert_allclose(_column_sums(idx, w, 17, chunk=64),
                               np.bincount(idx, weights=w, minlength=17))
    np.testing.assert_array_equal(_column_sums(idx, None, 17, chunk=7),
                                  np.bincount(idx, minlength=17))


def test_align_llms_is_linear_in_the_pool():
    rec = make_synthetic(3, 8500, seed=0)
    names = rec.llm_names
    t0 = time.perf_counter()
    out = Router._align_llms(rec, names[::-1], "x")
    assert time.perf_counter() - t0 < 5.0  # was 189 s at this size (a set per name)
    assert out.llm_names == names[::-1]
    assert Router._align_llms(rec, names, "x") is rec  # aligned already: no copy


# ------------------------------------------------------------------ top-k
@pytest.mark.parametrize("kk", [1, 3, 8, 12])
def test_topk_order_equals_a_stable_sort_with_ties(kk):
    rng = np.random.default_rng(kk)
    for _ in range(50):
        n, m = int(rng.integers(1, 40)), int(rng.integers(kk * 4 + 1, 300))
        key = rng.integers(-2, 3, (n, m)).astype(np.float32) * 0.5
        key[rng.random((n, m)) < 0.3] = -np.inf
        key[rng.random((n, m)) < 0.05] = -0.0
        if n > 1:
            key[0] = -np.inf  # a row with no finite key
        want = np.argsort(-key, axis=1, kind="stable")[:, :kk]
        np.testing.assert_array_equal(_topk_order(key.copy(), kk), want)


def test_topk_scores_nan_last_and_candidates():
    S = np.array([[np.nan, 1.0, 1.0, 0.0, 2.0] + [0.0] * 20], dtype=np.float32)
    ids, vals = topk_scores(S, 3)
    assert ids.tolist() == [[4, 1, 2]]
    ids, _ = topk_scores(S, 2, candidates=[0, 2, 3])
    assert ids.tolist() == [[2, 3]]


# -------------------------------------------------------------------- kNN
def _features(n, d=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[5] = X[3]  # exact duplicates: tied neighbours
    X[6] = X[3]
    return X


def test_exact_neighbours_faiss_equals_numpy():
    X = _features(600)
    Q = np.vstack([_features(80, seed=1), X[:20]])
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    R = X / np.linalg.norm(X, axis=1, keepdims=True)
    a = ExactNeighbours(R, backend="faiss").search(Q, 7)
    b = ExactNeighbours(R, backend="numpy").search(Q, 7)
    np.testing.assert_array_equal(a, b)
    assert ExactNeighbours(R).search(Q[:0], 3).shape == (0, 3)


def test_knn_choices_identical_to_the_numpy_search():
    from llmrec.encoders import PrecomputedEncoder
    rec = make_synthetic(1500, 12, n_topics=4, seed=3)
    X = _features(1500, seed=3)
    train = rec.select_prompts(np.arange(1200))
    routers = []
    for backend in ("auto", "numpy"):
        r = make_router("knn")
        r._nn_backend = backend
        routers.append(r.fit(train, encoder=PrecomputedEncoder(X[:1200], texts=train.texts)))
    Xq = np.vstack([X[1200:], X[:50]])  # held-out prompts and training prompts
    a, b = (r.recommend_ids(Xq, k=3)[0] for r in routers)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(routers[0].score(Xq), routers[1].score(Xq))
    assert routers[0].nn_.backend == "faiss" and routers[1].nn_.backend == "numpy"


def test_ivf_neighbours_tuned_recall_full_scan_exact_and_deterministic():
    from llmrec.retrieval import IVFNeighbours
    X = _features(3000, seed=5)
    R = X / np.linalg.norm(X, axis=1, keepdims=True)
    Q = _features(300, seed=6)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    exact = ExactNeighbours(R).search(Q, 5)
    nn = IVFNeighbours(R, k=5, min_recall=0.95)
    assert nn.recall_ >= 0.95 and nn.nprobe == min(nn.tuning_, key=lambda p: (
        nn.tuning_[p] < 0.95, p))
    assert 1 <= nn.nprobe < nn.nlist  # it scans a fraction of the cells
    got = nn.search(Q, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, exact)])
    assert recall >= 0.9  # fresh queries: close to the tuned recall
    # deterministic: a second build gives the same index and answers
    again = IVFNeighbours(R, k=5, min_recall=0.95)
    assert again.nprobe == nn.nprobe
    np.testing.assert_array_equal(again.search(Q, 5), got)
    # scanning every cell re-ranks every row exactly: the exact answer, ties included
    full = IVFNeighbours(R, k=5, nprobe=10 ** 6)
    assert full.nprobe == full.nlist and full.recall_ is None
    np.testing.assert_array_equal(full.search(Q, 5), exact)
    Rt = np.repeat(R[:40], 3, axis=0)  # exact ties: rows repeated
    np.testing.assert_array_equal(IVFNeighbours(Rt, k=4, nprobe=10 ** 6).search(Rt[:10], 4),
                                  ExactNeighbours(Rt).search(Rt[:10], 4))
    assert nn.search(Q[:0], 3).shape == (0, 3)


def test_knn_switches_to_the_ivf_index_on_large_training_sets(tmp_path, monkeypatch):
    from llmrec.encoders import PrecomputedEncoder
    from llmrec.errors import ConfigError
    from llmrec.routers import load_router
    rec = make_synthetic(3000, 12, n_topics=4, seed=3)
    X = _features(3000, seed=3)
    train = rec.select_prompts(np.arange(2500))
    enc = PrecomputedEncoder(X[:2500], texts=train.texts)
    Xq = X[2500:]
    exact = make_router("knn").fit(train, encoder=enc)
    assert exact.search_ == "exact" and exact.nprobe_ is None
    monkeypatch.setattr(type(exact), "ivf_min_rows", 2000)
    ivf = make_router("knn").fit(train, encoder=enc)
    assert ivf.search_ == "ivf" and ivf.search_recall_ >= ivf.ivf_recall
    assert make_router("knn", search="exact").fit(train, encoder=enc).search_ == "exact"
    a, b = exact.recommend_ids(Xq, k=1)[0], ivf.recommend_ids(Xq, k=1)[0]
    assert (a == b).mean() >= 0.9  # approximate neighbours, nearly the same choices
    # saved and loaded: the tuned nprobe comes back, the answers are the same
    ivf.save(tmp_path / "m")
    back = load_router(tmp_path / "m")
    assert back.search_ == "ivf" and back.nprobe_ == ivf.nprobe_
    np.testing.assert_array_equal(back.recommend_ids(Xq, k=3)[0], ivf.recommend_ids(Xq, k=3)[0])
    with pytest.raises(ConfigError, match="search must be"):
        make_router("knn", search="hnsw").fit(train, encoder=enc)


def test_topk_with_a_tie_rank_equals_a_sort_by_score_then_rank():
    """The packed-key path (no column gather) against a plain Python sort: ties, NaN,
    -inf, repeated tie ranks, rows with fewer finite scores than k, several blocks."""
    import llmrec.retrieval.index as index
    rng = np.random.default_rng(7)
    for trial in range(40):
        n, m = int(rng.integers(1, 40)), int(rng.integers(2, 30))
        S = (rng.integers(0, 4, (n, m)) / 3).astype(np.float32)  # many ties
        if trial % 2:
            S[rng.random((n, m)) < 0.2] = np.nan
            S[rng.random((n, m)) < 0.2] = -np.inf
            S[rng.random((n, m)) < 0.1] = -0.0
        rank = rng.permutation(m) if trial % 3 else rng.integers(0, 4, m)
        for k in (1, 3, min(8, m)):
            old = index._BLOCK_CELLS
            index._BLOCK_CELLS = 3 * m  # blocks of 3 rows: the buffers are reused
            try:
                ids, vals = topk_scores(S, k, tie_rank=rank)
            finally:
                index._BLOCK_CELLS = old
            for i in range(n):
                key = [(-np.inf if np.isnan(v) else float(v)) for v in S[i]]
                want = sorted(range(m), key=lambda c: (-key[c], rank[c], c))[:k]
                assert ids[i].tolist() == want, (trial, k, i)
                np.testing.assert_array_equal(vals[i], S[i, want])


@pytest.mark.parametrize("name", ["knn", "linear", "cluster", "mlc", "mlp"])
def test_blocked_recommend_equals_ranking_the_whole_score_matrix(name):
    """Routers scoring rows independently rank blocks of rows in recommend: the same
    ids and scores as ranking score() in one piece, with candidates too."""
    from llmrec.encoders import PrecomputedEncoder
    rec = make_synthetic(400, 9, n_topics=3, seed=2, binary=False)
    X = _features(400, seed=2)
    train = rec.select_prompts(np.arange(300))
    r = make_router(name).fit(train, encoder=PrecomputedEncoder(X[:300], texts=train.texts))
    assert r._rows_independent
    Xq = X[300:]
    for cand in (None, [8, 1, 4]):
        want = topk_scores(r.score(Xq), 3, r.candidate_positions(cand), r.tie_rank_)
        r._recommend_block_cells = 7 * r.n_llms_  # blocks of 7 rows, a short last one
        got = r.recommend_ids(Xq, k=3, candidates=cand)
        del r._recommend_block_cells
        np.testing.assert_array_equal(got[0], want[0])
        if name in ("knn", "cluster"):  # no matrix product: bit for bit
            np.testing.assert_array_equal(got[1], want[1])
        else:  # BLAS rounds a product of 7 rows and of 100 rows differently (last bit)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
        one = r.recommend_ids(Xq, k=3, candidates=cand)
        np.testing.assert_array_equal(one[0], want[0])
    assert r.recommend_ids(Xq[:0], k=2)[0].shape == (0, 2)


def test_best_single_recommend_equals_ranking_its_scores():
    rec = make_synthetic(200, 30, seed=4)
    r = make_router("best-single").fit(rec)
    ids, vals = r.recommend_ids(rec, k=4, candidates=list(range(0, 30, 2)))
    want = topk_scores(r.score(rec), 4, candidates=list(range(0, 30, 2)))
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(vals, want[1])


# ---------------------------------------------------------------- dry run
def test_dry_run_estimate_within_2x_of_a_real_fit():
    from llmrec.encoders import TfidfEncoder
    from llmrec.routers.cost import _malloc_returns_memory, _PeakRSS, estimate_fit_cost
    rec = make_synthetic(12000, 40, seed=0)
    enc = TfidfEncoder(dim=32, n_features=2 ** 12)
    est = estimate_fit_cost(make_router("linear"), rec, encoder=enc, min_seconds=0.2,
                            start_records=10_000)
    assert not est.exact and len(est.samples) >= 2
    _malloc_returns_memory()
    c0 = time.process_time()
    with _PeakRSS() as mem:
        make_router("linear").fit(rec, encoder=enc)
    cpu = time.process_time() - c0
    assert 0.5 <= est.seconds / cpu <= 2.0, (est.seconds, cpu, est.samples)
    # the printed figure: peak resident memory of the process (held before + growth)
    real_peak = mem.base + mem.peak
    assert 0.5 <= est.peak_bytes / real_peak <= 2.0, (est.peak_bytes, real_peak, est.samples)
    assert "estimated fit time" in est.summary()


def test_dry_run_scales_an_update_budget_to_the_sample():
    # the budget binds on the whole data (4 epochs of 30): a sample with the budget
    # unscaled would run 30 epochs on its fewer records and predict ~7x too much
    from llmrec.encoders import TfidfEncoder
    from llmrec.routers.cost import estimate_fit_cost
    rec = make_synthetic(40000, 40, seed=0)
    enc = TfidfEncoder(dim=32, n_features=2 ** 12)
    kw = dict(hidden_layer_sizes=(16,), max_epochs=30, max_updates=4 * rec.n_observed)
    # samples of 6 % and 12.5 % of the records: below the share (4 / 30) where the
    # budget starts to bind, so only a scaled budget makes them run 4 epochs
    est = estimate_fit_cost(make_router("mlp", **kw), rec, encoder=enc, min_seconds=0.3,
                            start_records=100_000, max_fraction=0.125)
    assert not est.exact
    c0 = time.process_time()
    r = make_router("mlp", **kw).fit(rec, encoder=enc)
    cpu = time.process_time() - c0
    assert r.n_epochs_ == 4
    assert 0.5 <= est.seconds / cpu <= 2.0, (est.seconds, cpu, est.samples)


def test_cli_fit_dry_run_writes_nothing(tmp_path, monkeypatch, capsys):
    from llmrec import cli
    monkeypatch.chdir(tmp_path)

    def call(*args):
        with pytest.raises(SystemExit) as e:
            cli.main(list(args))
        return e.value.code

    assert call("fit", "--data", "synthetic", "--router", "best-single", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "estimated fit time" in out and "estimated peak memory" in out
    assert call("fit", "--data", "synthetic", "--router", "best-single") == 2
    assert "error: --out is required" in capsys.readouterr().err
    assert call("fit", "--data", "synthetic", "--router", "linear", "--max-minutes", "0.0001",
                "--out", "m") == 2
    assert "above --max-minutes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_lightfm_refuses_an_hour_long_fit_up_front():
    pytest.importorskip("lightfm")
    from llmrec.encoders import TfidfEncoder
    from llmrec.errors import CapabilityError
    rec = make_synthetic(100, 5, seed=0)
    r = make_router("lightfm", max_fit_minutes=1e-6)
    t0 = time.perf_counter()
    with pytest.raises(CapabilityError, match="CPU hours.*twotower"):
        r.fit(rec, encoder=TfidfEncoder(dim=8, n_features=2 ** 10))
    assert time.perf_counter() - t0 < 10
    # RouterEval's scale with 384-d features: about 120 CPU hours, so refused by default
    assert make_router("lightfm").estimated_fit_seconds(38_000 * 8_500, 384) > 100 * 3600
