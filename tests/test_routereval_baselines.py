"""RouterEval's baselines as llmrec routers: conformance and their scripts' rules."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data.records import PerformanceRecords
from llmrec.errors import ConfigError
from llmrec.routers import make_router
from llmrec.routers.routereval_baselines import softmax_entropy_routereval

from .router_conformance import RouterConformance, small_encoder

SMALL = {"encoder": small_encoder()}


class TestREPrknn(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("re-prknn")


class TestRECluster(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("re-cluster")


class TestRELinear(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("re-linear", epochs=3)


class TestREMLP(RouterConformance):
    fit_kwargs = SMALL

    def make(self):
        return make_router("re-mlp", epochs=3, hidden_size=16)


def _records(Y):
    n, m = Y.shape
    return PerformanceRecords(Y, pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)]}),
                              pd.DataFrame({"name": [f"l{j}" for j in range(m)]}))


def test_prknn_is_the_plain_mean_of_k_neighbours_missing_as_zero():
    X = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    Y = np.array([[1, np.nan], [1, 1], [0, 1], [0, 0]], dtype=np.float64)
    r = make_router("re-prknn", k=2)
    r._fit(_records(Y), X, None, None)  # the fitted state from given features
    S = r._score(np.array([[1, 0.05]], dtype=np.float32), None, 1)
    # neighbours 0 and 1; the unobserved cell reads 0, as in RouterEval's arrays
    assert S.tolist() == [[1.0, 0.5]]


def test_routereval_entropy_matches_knn_py():
    S = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    want = -(P * np.log2(P)).sum() / 2
    assert softmax_entropy_routereval(S) == pytest.approx(want)


def test_linear_and_mlp_do_not_touch_the_global_torch_stream(synth_split):
    torch = pytest.importorskip("torch")
    train, _ = synth_split
    torch.manual_seed(7)
    before = torch.rand(1).item()
    torch.manual_seed(7)
    make_router("re-linear", epochs=1).fit(train, encoder=small_encoder())
    assert torch.rand(1).item() == before


def test_torch_baselines_train_on_their_own_thread_count(synth_split):
    torch = pytest.importorskip("torch")
    train, test = synth_split
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = make_router("re-mlp", epochs=2, hidden_size=16).fit(train, encoder=small_encoder())
        assert torch.get_num_threads() == 2  # the caller's setting comes back
        torch.set_num_threads(1)
        b = make_router("re-mlp", epochs=2, hidden_size=16).fit(train, encoder=small_encoder())
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(a.score(test), b.score(test))
    with pytest.raises(ConfigError, match="num_threads"):
        make_router("re-linear", epochs=1, num_threads=0).fit(train, encoder=small_encoder())
