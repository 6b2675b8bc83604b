"""RouterEval's own baselines, as RouterEval's scripts compute them.

llmrec's ``knn`` / ``linear`` / ``mlp`` / ``cluster`` routers follow RouterEval's
ideas but are llmrec's own (masked losses, tuned on validation prompts, ridge for
the linear model). The routers here reproduce the scripts of RouterEval's
repository (MilkThink-Lab/RouterEval @ 2edf54d) so that its baselines can run on
any records, in either protocol mode:

* ``re-prknn`` (``router/PRKnn-knn/knn.py``): the mean training score of the ``k``
  nearest training prompts by cosine distance (scikit-learn ``NearestNeighbors``).
* ``re-cluster`` (``router/C-RoBERTa-cluster/cluster.py``): ``KMeans(n_clusters,
  random_state=seed)``; every cluster goes to the LLM with the best mean training
  score in it (first column on ties); a prompt goes to its nearest centre's LLM.
* ``re-linear`` / ``re-mlp`` (``router/MLPR_LinearR/train.py``): a linear layer or
  a 3-layer ReLU network trained with ``BCEWithLogitsLoss`` on the training scores,
  Adam, a cosine learning rate per step, mini-batches shuffled by a torch
  ``DataLoader``; defaults are those of ``router/MLPR_LinearR/script.txt``
  (LinearR: lr 0.1, 10 epochs, batch 1024; MLPR: lr 0.001, 100 epochs, hidden 400,
  batch 1024). RouterEval's ``train.py`` never seeds torch; here torch is seeded with
  ``seed`` inside a forked RNG state and the torch random stream is consumed in the
  same order as ``train.py`` consumes it, so that a run of ``train.py`` with
  ``torch.manual_seed(seed)`` gives the same network. Training runs on
  ``num_threads`` torch threads (default 1, as RouterEval's reference figures in
  ``tests/data/routereval_reference`` were produced): a float sum splits
  differently across threads, and over MLPR's 1,000 Adam steps that changes the
  network (MMLU-Pro m = 5 all_weak: mu 0.2708 on one thread, 0.2699 on two).

All four read an unobserved training cell as 0, as RouterEval's scripts see the
arrays they are given (they have no notion of a missing cell). Their validation
prompts are ignored, as in RouterEval ("this code does not use the validation set").

``routereval_entropy(X)`` gives each router's Ep exactly as its script computes it
(softmax of the scores for kNN / LinearR / MLPR; inverse distances to the cluster
centres, merged per chosen LLM, for the cluster router); the ``routereval-exact``
protocol mode uses it.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .base import Router, register_router
from .classifiers import _arr

__all__ = ["REPrknnRouter", "REClusterRouter", "RELinearRouter", "REMLPRouter",
           "softmax_entropy_routereval"]


def softmax_entropy_routereval(S: np.ndarray, floor: float = 1e-10) -> float:
    """RouterEval's Ep of a score matrix: mean over prompts of the entropy (bits) of
    the row softmax, terms with probability <= ``floor`` left out (``knn.py``).

    Examples
    --------
    >>> round(softmax_entropy_routereval(np.zeros((2, 4))), 6)
    2.0
    """
    S = np.asarray(S, dtype=np.float64)
    if S.shape[0] == 0:
        return float("nan")
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P = P / P.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(P > floor, P * np.log2(P), 0.0)
    return float(-terms.sum() / S.shape[0])


class _REBase(Router):
    supports_new_llms = False

    def _Y(self, records) -> np.ndarray:
        return records.dense(fill=0.0).astype(np.float64)

    def routereval_entropy(self, X: np.ndarray) -> float:
        """Ep as RouterEval's script for this baseline computes it (bits per prompt)."""
        return softmax_entropy_routereval(self._score(X, None, X.shape[0]))


@register_router
class REPrknnRouter(_REBase):
    """RouterEval's PRknn script (``knn.py``): mean score of the k nearest prompts.

    Parameters
    ----------
    k : int
        Neighbours (RouterEval's ``test_router.py``: 5).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 3, seed=0)
    >>> REPrknnRouter(k=3).fit(rec.select_prompts(range(50))).score(
    ...     rec.select_prompts(range(50, 52))).shape
    (2, 3)
    """

    name = "re-prknn"

    def __init__(self, k: int = 5):
        self.k = k

    def _fit(self, records, X, val, X_val):
        if int(self.k) < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        self.X_train_ = np.asarray(X, dtype=np.float32)
        self.Y_ = self._Y(records)

    def _score(self, X, prompts, n):
        from sklearn.neighbors import NearestNeighbors
        k = min(int(self.k), self.X_train_.shape[0])
        nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(self.X_train_)
        _, idx = nn.kneighbors(np.asarray(X, dtype=np.float32))
        return self.Y_[idx].mean(axis=1)

    def _get_state(self):
        return {}, {"X_train": self.X_train_, "Y": self.Y_}

    def _set_state(self, state, arrays):
        self.X_train_ = _arr(arrays, "X_train", self.name).astype(np.float32)
        self.Y_ = _arr(arrays, "Y", self.name).astype(np.float64)


@register_router
class REClusterRouter(_REBase):
    """RouterEval's C-RoBERTa-cluster script (``cluster.py``).

    Scores are one-hot: 1 for the LLM of the prompt's nearest centre.

    Parameters
    ----------
    n_clusters : int
        RouterEval: 3.
    seed : int
        ``KMeans(random_state=seed)``; RouterEval: 0.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 3, seed=0)
    >>> S = REClusterRouter().fit(rec).score(rec.select_prompts(range(4)))
    >>> S.sum(axis=1).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    name = "re-cluster"

    def __init__(self, n_clusters: int = 3, seed: int = 0):
        self.n_clusters = n_clusters
        self.seed = seed

    def _fit(self, records, X, val, X_val):
        from sklearn.cluster import KMeans
        K = int(self.n_clusters)
        if K < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {self.n_clusters}")
        X = np.asarray(X, dtype=np.float32)
        if K > X.shape[0]:
            raise ConfigError(f"n_clusters={K} exceeds the {X.shape[0]} training prompts")
        km = KMeans(n_clusters=K, random_state=int(self.seed))
        labels = km.fit_predict(X)
        Y = self._Y(records)
        best = np.full(K, -1, dtype=np.int64)
        for c in range(K):
            rows = np.flatnonzero(labels == c)
            if len(rows):
                best[c] = int(np.argmax(Y[rows].mean(axis=0)))
        self.centers_ = np.asarray(km.cluster_centers_, dtype=np.float32)
        self.best_ = best

    def _labels(self, X):
        X = np.asarray(X, dtype=np.float32)
        d = ((X[:, None, :] - self.centers_[None, :, :]) ** 2).sum(axis=2)
        return np.argmin(d, axis=1), np.sqrt(d)

    def _score(self, X, prompts, n):
        lab, _ = self._labels(X)
        S = np.zeros((len(lab), self.n_llms_), dtype=np.float32)
        b = self.best_[lab]
        ok = b >= 0  # a prompt whose cluster was empty in training is not routed
        S[np.flatnonzero(ok), b[ok]] = 1.0
        return S

    def routereval_entropy(self, X):
        """``cluster.py``'s Ep: inverse distances to the centres as probabilities,
        summed per distinct chosen LLM, terms <= 1e-4 left out."""
        _, dist = self._labels(X)
        if dist.shape[0] == 0:
            return float("nan")
        P = 1.0 / (dist + 1e-10)
        P = P / P.sum(axis=1, keepdims=True)
        prob_set = list(dict.fromkeys(int(b) for b in self.best_ if b >= 0))
        Q = np.zeros_like(P)
        for c in range(P.shape[1]):
            if self.best_[c] >= 0:
                Q[:, prob_set.index(int(self.best_[c]))] += P[:, c]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(Q > 1e-4, Q * np.log2(Q), 0.0)
        return float(-terms.sum() / Q.shape[0])

    def _get_state(self):
        return {}, {"centers": self.centers_, "best": self.best_}

    def _set_state(self, state, arrays):
        self.centers_ = _arr(arrays, "centers", self.name).astype(np.float32)
        self.best_ = _arr(arrays, "best", self.name).astype(np.int64)


class _RETorch(_REBase):
    """Shared training loop of ``train.py`` (see the module docstring)."""

    hidden_size = None

    def _build(self, d_in, m):
        raise NotImplementedError

    def _fit(self, records, X, val, X_val):
        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or not float(self.lr) > 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        threads = int(getattr(self, "num_threads", 1))
        if threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {threads}")
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        Yt = torch.from_numpy(self._Y(records))
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(threads)  # the sums' order, see the module docstring
        try:
            self._train(torch, nn, DataLoader, TensorDataset, Xt, Yt)
        finally:
            torch.set_num_threads(prev_threads)

    def _train(self, torch, nn, DataLoader, TensorDataset, Xt, Yt):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            model = self._build(Xt.shape[1], Yt.shape[1])
            crit = nn.BCEWithLogitsLoss()
            opt = torch.optim.Adam([{"params": list(model.parameters()), "weight_decay": 0.0}],
                                   lr=float(self.lr), betas=(0.9, 0.999), eps=1e-8)
            ds = TensorDataset(Xt, Yt)
            train_dl = DataLoader(ds, shuffle=True, batch_size=int(self.batch_size))
            # train.py iterates its test loader before training, after every epoch
            # and to predict; each iteration draws a base seed from torch's stream
            test_dl = DataLoader(TensorDataset(Xt[:1]), shuffle=False, batch_size=10000)
            iter(test_dl)
            total, it = len(train_dl) * int(self.epochs), 0
            for _ in range(int(self.epochs)):
                model.train()
                for xb, yb in train_dl:
                    lr = 0.5 * float(self.lr) * (math.cos(math.pi * it / total) + 1)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    loss = crit(model(xb.float()), yb.float())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    it += 1
                iter(test_dl)
        self.weights_ = [p.detach().numpy().astype(np.float32).copy()
                         for p in model.parameters()]

    def _score(self, X, prompts, n):
        h = np.asarray(X, dtype=np.float32)
        W = self.weights_
        for i in range(0, len(W), 2):
            h = h @ W[i].T + W[i + 1]
            if i + 2 < len(W):
                h = np.maximum(h, 0.0)
        return h

    # RouterEval draws the output layer per column position; in llmrec mode the LLMs
    # are put in name order for training (the exact mode turns this off, see
    # llmrec.evaluation.routereval_exact)
    canonical_llm_order = True

    def _llm_axes(self, arrays):
        n = len(self.weights_)
        return {f"w{n - 2}": 0, f"w{n - 1}": 0}

    def _get_state(self):
        return {"n_weights": len(self.weights_)}, {f"w{i}": w for i, w in
                                                    enumerate(self.weights_)}

    def _set_state(self, state, arrays):
        self.weights_ = [_arr(arrays, f"w{i}", self.name).astype(np.float32)
                         for i in range(int(state["n_weights"]))]


@register_router
class RELinearRouter(_RETorch):
    """RouterEval's LinearR (``train.py --model linear``, settings of its script.txt).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 3, seed=0)
    >>> RELinearRouter(epochs=2).fit(rec).score(rec.select_prompts(range(2))).shape
    (2, 3)
    """

    name = "re-linear"

    def __init__(self, lr: float = 0.1, epochs: int = 10, batch_size: int = 1024,
                 seed: int = 0, num_threads: int = 1):
        self.num_threads = num_threads
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed

    def _build(self, d_in, m):
        from torch import nn
        return nn.Sequential(nn.Linear(d_in, m))


@register_router
class REMLPRouter(_RETorch):
    """RouterEval's MLPR (``train.py --model FNN``, settings of its script.txt).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 3, seed=0)
    >>> REMLPRouter(epochs=2, hidden_size=8).fit(rec).score(rec.select_prompts(range(2))).shape
    (2, 3)
    """

    name = "re-mlp"

    def __init__(self, lr: float = 0.001, epochs: int = 100, hidden_size: int = 400,
                 batch_size: int = 1024, seed: int = 0, num_threads: int = 1):
        self.num_threads = num_threads
        self.lr = lr
        self.epochs = epochs
        self.hidden_size = hidden_size
        self.batch_size = batch_size
        self.seed = seed

    def _build(self, d_in, m):
        from torch import nn
        h = int(self.hidden_size)
        return nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                             nn.Linear(h, m))
