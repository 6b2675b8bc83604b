"""The tie rule: a router's choice never depends on the LLMs' column order.

Ties go to the LLM with the higher training mean, then to the smaller name
(``llmrec.retrieval.tie_ranks``), on both retrieval paths (numpy and FAISS) and in the
metrics. With 0/1 scores and kNN, most prompts have a tie at the top, so the column
order used to decide the pick.

* Every router: ``recommend`` equals the tie-rule argmax of its own scores, and its
  tie rank is a function of the LLMs (names, training means), not of their positions.
* Every router makes identical choices when fitted on the same records with the LLM
  columns shuffled. Routers whose training draws random values per column position
  (ALS / BPR / LightFM factors, network weights, sampled pairs) train on the LLMs in
  name order and put their LLM-indexed arrays back (``Router.canonical_llm_order``),
  so the fitted model is the same up to the permutation.
"""

import numpy as np
import pytest

from llmrec.datasets import make_synthetic
from llmrec.encoders import TfidfEncoder
from llmrec.retrieval import LLMIndex, tie_break_argmax, tie_ranks, topk_scores
from llmrec.routers import available_routers, make_router

FAST = {"lightfm": {"epochs": 2}, "textmf": {"epochs": 3}, "twotower": {"epochs": 3},
        "mlp": {"max_epochs": 5}, "re-mlp": {"epochs": 3, "hidden_size": 16},
        "re-linear": {"epochs": 3}, "als": {"iterations": 3}, "bpr": {"iterations": 20}}


def _enc():
    return TfidfEncoder(dim=16, n_features=2 ** 10)


@pytest.fixture(scope="module")
def data():
    rec = make_synthetic(260, 6, n_topics=3, seed=0)  # 0/1 scores: many ties
    perm = np.random.default_rng(1).permutation(rec.n_llms)
    tr, te = rec.select_prompts(range(200)), rec.select_prompts(range(200, 260))
    return tr, te, perm


def _inp(router, te):
    return te if router.needs_truth else te.texts


@pytest.mark.parametrize("name", available_routers())
def test_recommend_follows_the_tie_rule(name, data):
    tr, te, perm = data
    r = make_router(name, **FAST.get(name, {})).fit(tr, encoder=_enc())
    S = r.score(_inp(r, te))
    ids, _ = r.recommend_ids(_inp(r, te), k=1)
    assert ids[:, 0].tolist() == tie_break_argmax(S, r.tie_rank_).tolist()
    # the rank is a function of the LLMs, not of their positions
    means = np.nanmean(tr.dense(), axis=0)
    assert r.tie_rank_.tolist() == tie_ranks(means, tr.llm_names).tolist()
    names = np.asarray(tr.llm_names, dtype=object)
    assert tie_ranks(means[perm], names[perm]).tolist() == r.tie_rank_[perm].tolist()


@pytest.mark.parametrize("name", available_routers())
def test_choices_do_not_change_when_columns_are_shuffled(name, data):
    tr, te, perm = data
    a = make_router(name, **FAST.get(name, {})).fit(tr, encoder=_enc())
    b = make_router(name, **FAST.get(name, {})).fit(tr.select_llms(perm), encoder=_enc())
    S = a.score(_inp(a, te))
    # the same model up to the permutation, not just the same top choices
    np.testing.assert_allclose(b.score(_inp(b, te.select_llms(perm))), S[:, perm],
                               rtol=1e-5, atol=1e-6)
    top = np.sort(S, axis=1)
    if name in ("knn", "re-prknn", "oracle"):
        assert (top[:, -1] == top[:, -2]).mean() > 0.3  # the test exercises ties
    for k in (1, 3):
        na, _ = a.recommend(_inp(a, te), k=k)
        nb, _ = b.recommend(_inp(b, te.select_llms(perm)), k=k)
        assert (na == nb).all(), (name, k)


def test_faiss_and_numpy_paths_break_ties_alike():
    V = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    rank = np.array([2, 0, 3, 1])  # LLM 1 wins a tie, then LLM 3
    Q = np.array([[1.0, 0.0], [1.0, 0.1]], dtype=np.float32)
    want = [[1, 3, 0], [1, 3, 0]]
    for backend in ("numpy", "auto"):
        ids, _ = LLMIndex(backend=backend).add(V, tie_rank=rank).search(Q, 3)
        assert ids.tolist() == want, backend
    perm = np.array([3, 0, 2, 1])
    ids, _ = LLMIndex().add(V[perm], tie_rank=rank[perm]).search(Q, 1)
    assert perm[ids[:, 0]].tolist() == [1, 1]
    ids, _ = topk_scores(Q @ V.T, 2, candidates=[0, 3], tie_rank=rank)
    assert ids.tolist() == [[3, 0], [3, 0]]


def test_tie_ranks_order_by_mean_then_name():
    assert tie_ranks([0.5, np.nan, 0.5, 0.9], ["b", "z", "a", "c"]).tolist() == [2, 3, 1, 0]


def test_llmrec_mode_pools_and_figures_do_not_depend_on_column_order():
    from llmrec.evaluation.protocols import routereval_protocol
    rec = make_synthetic(300, 8, n_topics=3, seed=2)
    perm = np.random.default_rng(3).permutation(rec.n_llms)
    kw = dict(sizes=(3,), n_boot=0, encoder=_enc())
    a = routereval_protocol(rec, ["knn", "best-single", "oracle"], **kw)
    b = routereval_protocol(rec.select_llms(perm), ["knn", "best-single", "oracle"], **kw)
    for g, names in a.details["pools"][3].items():
        assert sorted(names) == sorted(b.details["pools"][3][g])
    cols = ["router", "m", "group", "mu", "vb"]
    assert a.tidy[cols].equals(b.tidy[cols])
