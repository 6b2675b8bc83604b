"""RouterEval's classifier routers: kNN, linear, MLP, cluster and multi-label.

These are the baselines of RouterEval (arXiv 2503.10657): each learns a map from
prompt features to per-LLM scores (or success probabilities) and routes each prompt
to the argmax. Unobserved (prompt, LLM) cells are never read as 0: every router
masks them out of its loss or its averages.

* :class:`KnnRouter` (``"knn"``, RouterEval's PRknn): mean score of the k nearest
  training prompts by cosine distance.
* :class:`LinearRouter` (``"linear"``, LinearR): per-LLM ridge regression.
* :class:`MLPRouter` (``"mlp"``, MLPR): one multi-output MLP regressor, masked loss.
* :class:`ClusterRouter` (``"cluster"``, C-RoBERTa's idea): k-means on prompt
  features, per-(cluster, LLM) mean score.
* :class:`MLCRouter` (``"mlc"``, RoBERTa-MLC's idea): one logistic head per LLM
  predicting success.

Routers with something to tune take a grid (``k_grid``, ``alpha_grid``,
``n_clusters_grid``, ``C_grid``) and pick the value with the best validation mu
(mean true score of the routed LLM) on ``val_records`` passed to ``fit``; the test
split is never looked at. Learned arrays are stored in ``router.npz``; scikit-learn
models are persisted as their arrays and rebuilt, never pickled. LLMs with no
training record score ``-inf``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._parallel import cpu_threads as _cpu_threads, map_blocks
from .._progress import progress
from ..data.records import PerformanceRecords
from ..errors import ConfigError, ModelFormatError
from .base import Router, register_router

__all__ = ["KnnRouter", "LinearRouter", "MLPRouter", "ClusterRouter", "MLCRouter",
           "validation_mu", "routereval95_labels"]


# ------------------------------------------------------------------ helpers
def validation_mu(scores: np.ndarray, truth: np.ndarray, tie_rank=None) -> float:
    """Mean true score of the argmax LLM of each row (RouterEval's mu).

    Parameters
    ----------
    scores : ndarray, shape (n, m)
        Predicted scores; ties go to the lowest ``tie_rank`` (the router's tie rule,
        as in ``recommend``), or to the lowest LLM index without one.
    truth : ndarray, shape (n, m)
        True scores, NaN where unobserved. Prompts whose routed LLM has no record
        are left out of the mean.

    Examples
    --------
    >>> import numpy as np
    >>> validation_mu(np.array([[0.2, 0.9], [0.8, 0.1]]), np.array([[0.0, 1.0], [0.0, 1.0]]))
    0.5
    """
    if scores.shape[0] == 0:
        return float("nan")
    from ..retrieval import tie_break_argmax
    pick = tie_break_argmax(scores, tie_rank)
    got = np.asarray(truth, dtype=np.float64)[np.arange(len(pick)), pick]
    return float(np.nanmean(got)) if np.isfinite(got).any() else float("nan")


def routereval95_labels(dense: np.ndarray, ratio: float = 0.95) -> np.ndarray:
    """RouterEval's success labels: an LLM is positive on a prompt when its score is
    at least ``ratio`` times the prompt's best observed score.

    A prompt whose best score is <= 0 (every LLM failed) has no positive. Unobserved
    cells (NaN) are labelled False; mask them yourself.

    Examples
    --------
    >>> import numpy as np
    >>> routereval95_labels(np.array([[0.5, 0.48, 0.4], [0.0, 0.0, np.nan]]))
    array([[ True,  True, False],
           [False, False, False]])
    """
    with np.errstate(invalid="ignore"):
        obs = ~np.isnan(dense)
        best = np.max(np.where(obs, dense, -np.inf), axis=1, initial=-np.inf)
        pos = obs & (dense >= ratio * best[:, None]) & (best[:, None] > 0)
    return pos


def _column_means(dense: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Per-LLM mean of observed scores; NaN for an LLM with no record."""
    cnt = obs.sum(axis=0)
    s = np.where(obs, dense, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)


def _grid_progress(router, grid, what: str):
    """The values of a validation grid, with a progress display (llmrec._progress)."""
    return progress(list(grid), desc=f"{router.name} {what} grid",
                    show=getattr(router, "_show_progress", None), unit="values")


def _check_grid(grid, name: str, val, cast=float) -> list | None:
    if grid is None:
        return None
    try:
        values = [cast(v) for v in grid]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of numbers, got {grid!r}") from None
    if not values:
        raise ConfigError(f"{name} is empty; give at least one value or None")
    if val is None:
        raise ConfigError(f"{name} is set, so fit needs val_records to pick the best value "
                          "on validation mu; pass val_records=... or set it to None")
    return values


def _pick_best(results: dict) -> object:
    """Grid value with the best validation mu (first one on ties; NaN counts as worst)."""
    best, best_mu = None, -np.inf
    for v, mu in results.items():
        mu = -np.inf if mu is None or np.isnan(mu) else mu
        if best is None or mu > best_mu:
            best, best_mu = v, mu
    return best


def _finite_or_neg_inf(S: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(S), -np.inf, S)


def _arr(arrays: dict, key: str, router: str) -> np.ndarray:
    if key not in arrays:
        raise ModelFormatError(f"{router}: router.npz lacks array {key!r}; save the router "
                               "again with this llmrec version")
    return arrays[key]


class _TunedRouter(Router):
    """Shared bookkeeping of the validation search."""

    def _tuning_state(self) -> dict:
        return {"val_mu": {str(k): v for k, v in getattr(self, "val_mu_", {}).items()}}

    def _set_tuning_state(self, state: dict, cast) -> None:
        self.val_mu_ = {cast(k): v for k, v in state.get("val_mu", {}).items()}


# ---------------------------------------------------------------------- kNN
@register_router
class KnnRouter(_TunedRouter):
    """RouterEval's PRknn: the mean score of the k nearest training prompts.

    The k training prompts closest to a new prompt by cosine distance vote: each
    LLM's score is the mean of its observed scores on those neighbours (unobserved
    cells are skipped; when no neighbour has a record of the LLM, its mean training
    score is used). The prompt goes to the argmax. Up to ``ivf_min_rows`` training
    prompts (20,000) neighbours are exact: a FAISS inner-product search over the
    unit-normalised training features (:class:`~llmrec.retrieval.ExactNeighbours`;
    ties by training position, as the numpy path), equal to scikit-learn's
    brute-force cosine neighbours up to ties. Above it, ``search="auto"`` switches to
    an inverted-file index (:class:`~llmrec.retrieval.IVFNeighbours`) whose number of
    scanned cells is tuned at fit until the recall@k of the neighbours reaches
    ``ivf_recall`` (0.95) on a sample of training prompts; the tuned ``nprobe_`` and
    recall (``search_recall_``) are saved with the model. Pass
    ``search="exact"`` to keep exact neighbours at any size.

    Cost: fit ``O(n d + n m)`` (stores the features, the dense scores and mask; the
    IVF index adds a k-means over the features); scoring ``O(q n d)`` for the exact
    search (about ``nprobe / sqrt(n)`` of that with IVF) plus ``O(q k m)`` for the
    vote, for ``q`` prompts, ``n`` training prompts, ``m`` LLMs, ``d`` feature
    dimensions; memory ``n d`` floats (twice with IVF) plus ``n m`` scores (4 bytes)
    and mask (1 byte).

    Parameters
    ----------
    k : int
        Number of neighbours (RouterEval: 5). Capped by the number of training prompts.
    k_grid : sequence of int, optional
        Values of k to try; the one with the best validation mu on ``val_records``
        is kept in ``k_`` (and the whole search in ``val_mu_``).
    search : {"auto", "exact", "ivf"}
        Neighbour search: exact, an IVF index tuned for recall, or ``auto`` (IVF from
        ``ivf_min_rows`` training prompts on).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 4, seed=0)
    >>> r = KnnRouter(k=5).fit(rec.select_prompts(range(50)))
    >>> r.score(rec.select_prompts(range(50, 60))).shape
    (10, 4)
    """

    name = "knn"
    _rows_independent = True  # _score reads feature rows only
    #: exact neighbour search backend ("auto": FAISS when installed; "numpy": blocked matmul)
    _nn_backend = "auto"
    #: from this many training prompts on, ``search="auto"`` uses the IVF index
    ivf_min_rows = 20_000
    #: recall@k of the neighbours the IVF index is tuned to reach
    ivf_recall = 0.95

    def __init__(self, k: int = 5, k_grid: Sequence[int] | None = None,
                 search: str = "auto"):
        self.k = k
        self.k_grid = k_grid
        self.search = search

    def _nn(self, k: int | None = None):
        """Search over the unit-normalised training features (cosine = dot)."""
        from ..retrieval import ExactNeighbours, IVFNeighbours
        rows = _unit_rows(self.X_train_)
        if self.search_ == "ivf":
            nn = IVFNeighbours(rows, k=k or self.k_, min_recall=self.ivf_recall,
                               nprobe=getattr(self, "nprobe_", None))
            self.nprobe_, self.nlist_ = nn.nprobe, nn.nlist
            if nn.recall_ is not None:
                self.search_recall_ = nn.recall_
            return nn
        return ExactNeighbours(rows, backend=self._nn_backend)

    def _resolve_search(self, n_rows: int) -> str:
        from ..retrieval import HAVE_FAISS
        if self.search not in ("auto", "exact", "ivf"):
            raise ConfigError(f"search must be 'auto', 'exact' or 'ivf', got {self.search!r}")
        if self.search == "ivf" or (self.search == "auto" and n_rows >= self.ivf_min_rows):
            if not HAVE_FAISS or n_rows < 2:
                if self.search == "ivf":
                    raise ConfigError("search='ivf' needs faiss and at least 2 training prompts")
                return "exact"
            return "ivf"
        return "exact"

    def _fit(self, records, X, val, X_val):
        if int(self.k) < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        grid = _check_grid(self.k_grid, "k_grid", val, int)
        if grid is not None and min(grid) < 1:
            raise ConfigError(f"k_grid values must be >= 1, got {grid}")
        self.X_train_ = np.asarray(X, dtype=np.float32)
        self.obs_ = records.observed_dense()
        self.full_ = bool(self.obs_.all())
        self.Y_ = records.dense(fill=0.0)
        self.int_scores_ = _small_integers(records.scores.data)
        # per-LLM training mean from the CSR records (no dense temporaries)
        self.llm_mean_ = records.llm_summary()["mean_score"].to_numpy(np.float32)
        self.search_ = self._resolve_search(self.X_train_.shape[0])
        self.nprobe_ = self.search_recall_ = None
        self.nn_ = self._nn(max(grid) if grid is not None else int(self.k))
        self.k_ = int(self.k)
        self.val_mu_ = {}
        if grid is not None:
            idx = self._neighbours(X_val, max(grid))
            truth = val.dense()
            for kk in _grid_progress(self, grid, "k"):
                self.val_mu_[kk] = validation_mu(self._aggregate(idx[:, :kk]), truth,
                                                   self.tie_rank_)
            self.k_ = int(_pick_best(self.val_mu_))

    def _neighbours(self, X, k):
        """Exact k nearest training prompts by cosine, ties by training position.

        One FAISS inner-product search for the whole batch (BLAS, no per-prompt
        loop) with the unit-normalised training features; queries whose order is
        within rounding of a tie are ranked by the numpy path (a blocked dot product
        and the retrieval layer's top-k), so both give the same neighbours.
        """
        Q = _unit_rows(np.asarray(X, dtype=np.float32))
        return self.nn_.search(Q, int(k))

    def _aggregate(self, idx: np.ndarray) -> np.ndarray:
        """Mean observed score of each LLM over each prompt's neighbours (rows of idx).

        Neighbour rows are added one at a time into a small block (row gathers are
        contiguous; no (block, k, m) temporary). The sums are exact: in float64, or in
        float32 where every score is a small integer (binary records), so the means
        equal a float64 computation bit for bit and the choices never depend on the
        path.
        """
        n, m = idx.shape[0], self.Y_.shape[1]
        k = idx.shape[1]
        out = np.empty((n, m), dtype=np.float32)
        if n == 0:
            return out
        full = getattr(self, "full_", False)
        dt = np.float32 if getattr(self, "int_scores_", False) else np.float64
        step = max(1, min(n, (1 << 19) // max(1, m)))  # a block of ~4 MiB per float64
        tot = np.empty((step, m), dtype=dt)
        cnt = None if full else np.empty((step, m), dtype=np.int32)
        for s in range(0, n, step):
            b = idx[s:s + step]
            t = tot[:len(b)]
            np.copyto(t, self.Y_[b[:, 0]])
            for j in range(1, k):
                t += self.Y_[b[:, j]]
            if full:
                t /= k
            else:
                c = cnt[:len(b)]
                np.copyto(c, self.obs_[b[:, 0]])
                for j in range(1, k):
                    c += self.obs_[b[:, j]]
                none = c == 0
                with np.errstate(invalid="ignore", divide="ignore"):
                    t /= c
                np.copyto(t, np.broadcast_to(self.llm_mean_[None, :], t.shape), where=none)
            out[s:s + len(b)] = t
        if not full and np.isnan(self.llm_mean_).any():  # an LLM without any record
            return _finite_or_neg_inf(out)
        return out

    def neighbours(self, prompts, k: int | None = None) -> np.ndarray:
        """Positions (in the training records) of each prompt's nearest training prompts.

        Examples
        --------
        >>> from llmrec.datasets import make_synthetic
        >>> rec = make_synthetic(30, 3, seed=0)
        >>> KnnRouter(k=3).fit(rec).neighbours(rec.select_prompts([0])).shape
        (1, 3)
        """
        X = self.features(prompts)
        if X.shape[0] == 0:
            return np.zeros((0, min(k or self.k_, self.X_train_.shape[0])), np.int64)
        return self._neighbours(X, k or self.k_)

    def _score(self, X, prompts, n):
        return self._aggregate(self._neighbours(X, self.k_))

    def _get_state(self):
        return ({"k": self.k_, "search": self.search_, "nprobe": self.nprobe_,
                 "search_recall": self.search_recall_, **self._tuning_state()},
                {"X_train": self.X_train_, "Y": self.Y_, "observed": self.obs_,
                 "llm_mean": self.llm_mean_})

    def _set_state(self, state, arrays):
        self.X_train_ = _arr(arrays, "X_train", self.name).astype(np.float32)
        self.Y_ = _arr(arrays, "Y", self.name).astype(np.float32)
        self.obs_ = _arr(arrays, "observed", self.name).astype(bool)
        self.llm_mean_ = _arr(arrays, "llm_mean", self.name).astype(np.float32)
        if self.Y_.shape != self.obs_.shape or self.Y_.shape[0] != self.X_train_.shape[0]:
            raise ModelFormatError("knn: stored arrays have inconsistent shapes "
                                   f"{self.X_train_.shape}, {self.Y_.shape}, {self.obs_.shape}")
        self.k_ = int(state["k"])
        self._set_tuning_state(state, int)
        self.full_ = bool(self.obs_.all())
        self.int_scores_ = _small_integers(self.Y_)  # unobserved cells hold 0
        # models saved before the IVF option searched exactly
        self.search_ = state.get("search") or "exact"
        self.nprobe_ = state.get("nprobe")
        self.search_recall_ = state.get("search_recall")
        self.nn_ = self._nn()


def _small_integers(values: np.ndarray) -> bool:
    """True when every value is an integer of magnitude < 2**16: float32 sums of a
    few of them are exact (binary correctness, small counts)."""
    v = np.asarray(values).reshape(-1)
    step = 1 << 22  # blocks: no temporaries the size of a dense score matrix
    for s in range(0, v.size, step):
        b = v[s:s + step]
        if not (np.all(np.abs(b) < 65536) and np.array_equal(b, np.round(b))):
            return False
    return True


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------- linear
def _ridge_masked(X, dense, obs, alpha, fit_intercept=True, weight=None):
    """Per-LLM ridge on each LLM's observed rows; one multi-output fit when dense.

    ``weight`` (n, m), optional: per-record sample weights (0 drops a record)."""
    from sklearn.linear_model import Ridge
    m, d = dense.shape[1], X.shape[1]
    coef = np.zeros((m, d), dtype=np.float32)
    intercept = np.full(m, np.nan, dtype=np.float32)
    if weight is not None:
        obs = obs & (weight > 0)
    full = obs.all(axis=0) if weight is None else np.zeros(m, bool)
    if full.any():
        model = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(X, dense[:, full])
        coef[full] = np.atleast_2d(model.coef_)
        intercept[full] = model.intercept_ if fit_intercept else 0.0
    for j in np.flatnonzero(~full):
        rows = obs[:, j]
        if rows.sum() == 0:
            continue  # no record: scores -inf
        model = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(
            X[rows], dense[rows, j], sample_weight=None if weight is None else weight[rows, j])
        coef[j] = model.coef_
        intercept[j] = model.intercept_ if fit_intercept else 0.0
    return coef, intercept


@register_router
class LinearRouter(_TunedRouter):
    """RouterEval's LinearR: one linear regression of each LLM's score on the features.

    Each LLM gets a ridge regression (:class:`sklearn.linear_model.Ridge`) fitted on
    the training prompts where it has a record; LLMs observed on every prompt share
    one multi-output fit (the same solution, faster). Scores are the predictions;
    an LLM with no training record scores ``-inf``. RouterEval's own LinearR (a
    linear layer trained with BCE, ``router/MLPR_LinearR/train.py``) is the
    ``re-linear`` router; here a small ridge penalty replaces plain least squares,
    which is unstable when features outnumber prompts (``alpha=0`` gives least
    squares).

    Parameters
    ----------
    alpha : float
        Ridge penalty.
    alpha_grid : sequence of float, optional
        Penalties to try; the best on validation mu is kept in ``alpha_``.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 4, seed=0)
    >>> LinearRouter(alpha=1.0).fit(rec).coef_.shape[0]
    4
    """

    name = "linear"
    _rows_independent = True  # _score reads feature rows only
    supports_new_llms = True
    supports_sample_weight = True

    def __init__(self, alpha: float = 1.0, alpha_grid: Sequence[float] | None = None):
        self.alpha = alpha
        self.alpha_grid = alpha_grid

    def _fit(self, records, X, val, X_val):
        self._fit_weighted(records, X, val, X_val, None)

    def _fit_weighted(self, records, X, val, X_val, weight):
        if float(self.alpha) < 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}")
        grid = _check_grid(self.alpha_grid, "alpha_grid", val, float)
        dense, obs = records.dense(fill=0.0), records.observed_dense()
        self.val_mu_ = {}
        self.alpha_ = float(self.alpha)
        if grid is not None:
            truth = val.dense()
            for a in _grid_progress(self, grid, "alpha"):
                coef, b = _ridge_masked(X, dense, obs, a, weight=weight)
                self.val_mu_[a] = validation_mu(_finite_or_neg_inf(X_val @ coef.T + b), truth,
                                                   self.tie_rank_)
            self.alpha_ = float(_pick_best(self.val_mu_))
        self.coef_, self.intercept_ = _ridge_masked(X, dense, obs, self.alpha_, weight=weight)

    def _score(self, X, prompts, n):
        # in place, and NaN only where an LLM's own weights are (no record): at
        # 8,500 LLMs each extra pass over the (n, m) matrix costs as much as the ranking
        S = np.asarray(X, dtype=np.float32) @ self.coef_.T
        S += self.intercept_[None, :]
        bad = ~(np.isfinite(self.intercept_) & np.isfinite(self.coef_).all(axis=1))
        if bad.any():
            S[:, bad] = -np.inf
        return S

    def _add_llm(self, name, X, y, metadata):
        coef, b = _ridge_masked(X, y[:, None], np.ones((len(y), 1), bool), self.alpha_)
        self.coef_ = np.vstack([self.coef_, coef])
        self.intercept_ = np.append(self.intercept_, b)

    def _get_state(self):
        return ({"alpha": self.alpha_, **self._tuning_state()},
                {"coef": self.coef_, "intercept": self.intercept_})

    def _set_state(self, state, arrays):
        self.coef_ = _arr(arrays, "coef", self.name).astype(np.float32)
        self.intercept_ = _arr(arrays, "intercept", self.name).astype(np.float32)
        self.alpha_ = float(state["alpha"])
        self._set_tuning_state(state, float)


# ---------------------------------------------------------------------- MLP
@register_router
class MLPRouter(Router):
    """RouterEval's MLPR: one MLP regressing all LLMs' scores from the features.

    A small torch MLP (ReLU hidden layers, one linear output per LLM) trained with
    Adam on the mean squared error over *observed* cells only (unobserved cells are
    masked out of the loss, not filled). Training is seeded and runs on CPU, so a
    refit gives the same weights. With ``val_records`` the epoch with the best
    validation mu is kept (early stopping with ``patience``). Scoring is a NumPy
    forward pass over the stored weights, so a loaded router needs no torch.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int
    alpha : float
        L2 weight decay.
    learning_rate : float
    max_epochs : int
    max_updates : int or None
        A bound on the record visits (one squared error per observed record and
        epoch): the epochs run are at most ``max(1, max_updates // records)``. The
        default, 1e10, leaves every set of up to 100M records at ``max_epochs=100``
        and gives a dense 38,000 x 8,500 matrix (323M records) 30 epochs, about
        six seconds each on two cores. None: ``max_epochs``.
    batch_size : int
    patience : int
        Epochs without a better validation mu before stopping (with ``val_records``).
    random_state : int
    center : bool or None
        Per-prompt baseline removal: regress each score minus its prompt's mean over
        the observed LLMs (the user-bias term of rating models; only the order of
        LLMs within a prompt matters for routing). ``None`` (default): with
        ``val_records`` both are trained and the better validation mu is kept
        (``center_``, ``center_val_mu_``); without, no centring. (For ``linear`` and
        ``knn`` centring cannot change the ranking on fully observed records: a
        ridge fit and a neighbour mean are linear in the targets and the prompt mean
        shifts every LLM alike, so they do not offer it.)

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 4, seed=0)
    >>> MLPRouter(hidden_layer_sizes=(8,), max_epochs=2).fit(rec).score(["x"]).shape
    (1, 4)
    """

    name = "mlp"
    _rows_independent = True  # _score reads feature rows only

    def __init__(self, hidden_layer_sizes: Sequence[int] = (128,), alpha: float = 1e-4,
                 learning_rate: float = 1e-3, max_epochs: int = 100, batch_size: int = 256,
                 patience: int = 10, random_state: int = 0, center: bool | None = None,
                 max_updates: int | None = 10_000_000_000):
        self.max_updates = max_updates
        self.center = center
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.random_state = random_state

    def _check_params(self):
        hs = [int(h) for h in self.hidden_layer_sizes]
        if any(h < 1 for h in hs):
            raise ConfigError(f"hidden_layer_sizes must be positive, got {self.hidden_layer_sizes}")
        for p in ("max_epochs", "batch_size", "patience"):
            if int(getattr(self, p)) < 1:
                raise ConfigError(f"{p} must be >= 1, got {getattr(self, p)}")
        if float(self.learning_rate) <= 0 or float(self.alpha) < 0:
            raise ConfigError("learning_rate must be > 0 and alpha >= 0")
        return hs

    def _fit(self, records, X, val, X_val):
        # per-prompt baseline removal: learn score - prompt mean (only the order of
        # LLMs within a prompt matters); None = try both, keep the better on val
        modes = [bool(self.center)] if self.center is not None or val is None \
            else [False, True]
        keep, self.center_val_mu_ = None, {}
        for c in modes:
            self._fit_once(records, X, val, X_val, c)
            mu = max(self.val_mu_.values()) if self.val_mu_ else -np.inf
            self.center_val_mu_[str(c)] = float(mu)
            if keep is None or mu > keep[0]:
                keep = (mu, c, self.weights_, self.biases_, self.llm_mean_, self.n_epochs_,
                        self.best_epoch_, self.val_mu_)
        (_, self.center_, self.weights_, self.biases_, self.llm_mean_, self.n_epochs_,
         self.best_epoch_, self.val_mu_) = keep

    def _fit_once(self, records, X, val, X_val, center: bool):
        import torch
        hs = self._check_params()
        # minibatches are read from the CSR records: no dense copy of the matrix
        raw_mean = records.llm_summary()["mean_score"].to_numpy()
        train_scores = records.scores
        mean = raw_mean
        if center:  # the same CSR structure holding score - prompt mean
            from types import SimpleNamespace
            from .signal import prompt_means
            pm = np.nan_to_num(prompt_means(records))
            rows = np.repeat(np.arange(records.n_prompts), np.diff(records.scores.indptr))
            train_scores = records.scores.copy()
            train_scores.data = (train_scores.data - pm[rows]).astype(np.float32)
            cnt = np.bincount(train_scores.indices, minlength=records.n_llms)
            tot = np.bincount(train_scores.indices, weights=train_scores.data,
                              minlength=records.n_llms)
            mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
            records = SimpleNamespace(scores=train_scores, n_llms=records.n_llms)
        g = torch.Generator().manual_seed(int(self.random_state))
        sizes = [X.shape[1], *hs, records.n_llms]
        layers = []
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
            torch.manual_seed(int(self.random_state))
            for i in range(len(sizes) - 1):
                layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
                if i < len(sizes) - 2:
                    layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        with torch.no_grad():  # start from each LLM's mean score
            net[-1].bias.copy_(torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32))
        opt = torch.optim.Adam(net.parameters(), lr=float(self.learning_rate),
                               weight_decay=float(self.alpha))
        Xt = torch.as_tensor(X, dtype=torch.float32)
        n, bs = Xt.shape[0], int(self.batch_size)
        threads = torch.get_num_threads()
        # small ops: threads only wait on each other; a wide output layer (thousands
        # of LLMs) is worth every core
        torch.set_num_threads(threads if sizes[-2] * sizes[-1] * bs >= 10_000_000 else 1)
        try:
            self._train_epochs(torch, net, opt, g, Xt, records, n, bs, raw_mean, val, X_val)
        finally:
            torch.set_num_threads(threads)

    def _train_epochs(self, torch, net, opt, g, Xt, records, n, bs, mean, val, X_val):
        truth = val.dense() if val is not None else None
        best_mu, best_state, stale = -np.inf, None, 0
        self.val_mu_ = {}
        self.n_epochs_ = 0
        from .cost import budgeted_passes
        epochs = budgeted_passes(self.max_epochs, self.max_updates, records.scores.nnz)
        for epoch in progress(range(epochs), desc=f"{self.name} epochs",
                              show=getattr(self, "_show_progress", None), unit="epochs"):
            net.train()
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, bs):
                b = perm[s:s + bs]
                y, m = _csr_rows(torch, records.scores, b.numpy())
                loss = (((net(Xt[b]) - y) ** 2) * m).sum() / m.sum().clamp_min(1.0)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.n_epochs_ = epoch + 1
            if truth is not None:
                self._store(net, mean)
                mu = validation_mu(self._score(X_val, None, X_val.shape[0]), truth,
                                                   self.tie_rank_)
                self.val_mu_[epoch + 1] = mu
                if mu > best_mu:
                    best_mu, stale = mu, 0
                    best_state = ([w.copy() for w in self.weights_],
                                  [b.copy() for b in self.biases_])
                else:
                    stale += 1
                    if stale >= int(self.patience):
                        break
        self._store(net, mean)
        if best_state is not None:
            self.weights_, self.biases_ = best_state
            self.best_epoch_ = int(max(self.val_mu_, key=lambda e: (self.val_mu_[e], -e)))
        else:
            self.best_epoch_ = self.n_epochs_

    def _store(self, net, mean):
        lin = [m for m in net if hasattr(m, "weight")]
        self.weights_ = [m.weight.detach().numpy().T.astype(np.float32).copy() for m in lin]
        self.biases_ = [m.bias.detach().numpy().astype(np.float32).copy() for m in lin]
        self.llm_mean_ = np.asarray(mean, dtype=np.float32)

    def _score(self, X, prompts, n):
        H = np.asarray(X, dtype=np.float32)
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            H = H @ W
            H += b  # in place: at thousands of LLMs each pass over (n, m) counts
            if i < len(self.weights_) - 1:
                np.maximum(H, 0.0, out=H)
        bad = np.isnan(self.llm_mean_)  # LLMs with no training record
        if bad.any():
            H[:, bad] = -np.inf
        return H

    canonical_llm_order = True  # output-layer weights drawn per column position

    def _llm_axes(self, arrays):
        last = len(self.weights_) - 1
        return {"llm_mean": 0, f"W{last}": 1, f"b{last}": 0}

    def _get_state(self):
        arrays = {"llm_mean": self.llm_mean_}
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        return ({"n_layers": len(self.weights_), "n_epochs": self.n_epochs_,
                 "best_epoch": self.best_epoch_, "center": bool(self.center_),
                 "center_val_mu": self.center_val_mu_,
                 "val_mu": {str(k): v for k, v in self.val_mu_.items()}}, arrays)

    def _set_state(self, state, arrays):
        L = int(state["n_layers"])
        self.weights_ = [_arr(arrays, f"W{i}", self.name).astype(np.float32) for i in range(L)]
        self.biases_ = [_arr(arrays, f"b{i}", self.name).astype(np.float32) for i in range(L)]
        self.llm_mean_ = _arr(arrays, "llm_mean", self.name).astype(np.float32)
        self.n_epochs_ = int(state.get("n_epochs", 0))
        self.best_epoch_ = int(state.get("best_epoch", self.n_epochs_))
        self.val_mu_ = {int(k): v for k, v in state.get("val_mu", {}).items()}
        self.center_ = bool(state.get("center", False))
        self.center_val_mu_ = state.get("center_val_mu", {})


def _csr_rows(torch, scores, rows: np.ndarray):
    """(scores, observed mask) of some rows as dense float32 tensors (0 where unobserved)."""
    sub = scores[rows]
    Y = torch.from_numpy(sub.toarray().astype(np.float32, copy=False))
    mask = sub.copy()
    mask.data = np.ones_like(mask.data)
    return Y, torch.from_numpy(mask.toarray().astype(np.float32, copy=False))


# ------------------------------------------------------------------ cluster
@register_router
class ClusterRouter(_TunedRouter):
    """C-RoBERTa's idea on our encoder: k-means clusters, best LLM per cluster.

    Training prompts are clustered with :class:`sklearn.cluster.KMeans` (seeded);
    each (cluster, LLM) gets the mean of the LLM's observed scores on the cluster's
    prompts (an LLM with no record in a cluster falls back to its overall mean). A
    new prompt joins its nearest centre and takes that cluster's per-LLM means as
    scores, so it is routed to the cluster's best LLM.

    Parameters
    ----------
    n_clusters : int
    n_clusters_grid : sequence of int, optional
        Cluster counts to try; the best on validation mu is kept in ``n_clusters_``.
    random_state : int
    n_init : int
        K-means restarts.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 4, seed=0)
    >>> ClusterRouter(n_clusters=3).fit(rec).cluster_scores_.shape
    (3, 4)
    """

    name = "cluster"
    _rows_independent = True  # _score reads feature rows only

    def __init__(self, n_clusters: int = 8, n_clusters_grid: Sequence[int] | None = None,
                 random_state: int = 0, n_init: int = 10):
        self.n_clusters = n_clusters
        self.n_clusters_grid = n_clusters_grid
        self.random_state = random_state
        self.n_init = n_init

    def _fit_one(self, X, dense, obs, n_clusters):
        from sklearn.cluster import KMeans
        if n_clusters < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {n_clusters}")
        if n_clusters > X.shape[0]:
            raise ConfigError(f"n_clusters={n_clusters} exceeds the {X.shape[0]} training "
                              "prompts; lower n_clusters")
        km = KMeans(n_clusters=n_clusters, random_state=int(self.random_state),
                    n_init=int(self.n_init)).fit(X)
        lab = km.labels_
        onehot = np.zeros((X.shape[0], n_clusters), dtype=np.float64)
        onehot[np.arange(X.shape[0]), lab] = 1.0
        cnt = onehot.T @ obs.astype(np.float64)
        tot = onehot.T @ np.where(obs, dense, 0.0)
        glob = _column_means(dense, obs)
        with np.errstate(invalid="ignore", divide="ignore"):
            cs = np.where(cnt > 0, tot / np.maximum(cnt, 1), glob[None, :])
        return km.cluster_centers_.astype(np.float32), _finite_or_neg_inf(cs).astype(np.float32)

    def _fit(self, records, X, val, X_val):
        grid = _check_grid(self.n_clusters_grid, "n_clusters_grid", val, int)
        dense, obs = records.dense(fill=0.0), records.observed_dense()
        self.val_mu_ = {}
        self.n_clusters_ = int(self.n_clusters)
        if grid is not None:
            truth = val.dense()
            for c in _grid_progress(self, grid, "n_clusters"):
                centres, cs = self._fit_one(X, dense, obs, c)
                self.val_mu_[c] = validation_mu(cs[self._assign(X_val, centres)], truth,
                                                   self.tie_rank_)
            self.n_clusters_ = int(_pick_best(self.val_mu_))
        self.cluster_centers_, self.cluster_scores_ = self._fit_one(X, dense, obs,
                                                                    self.n_clusters_)

    @staticmethod
    def _assign(X, centres):
        from sklearn.metrics import pairwise_distances_argmin
        return pairwise_distances_argmin(np.asarray(X, dtype=np.float32), centres)

    def predict_cluster(self, prompts) -> np.ndarray:
        """Cluster index of each prompt (nearest centre, Euclidean as in k-means).

        Examples
        --------
        >>> from llmrec.datasets import make_synthetic
        >>> rec = make_synthetic(60, 4, seed=0)
        >>> ClusterRouter(n_clusters=3).fit(rec).predict_cluster(["x"]).shape
        (1,)
        """
        X = self.features(prompts)
        if X.shape[0] == 0:
            return np.zeros(0, np.int64)
        return self._assign(X, self.cluster_centers_)

    def _score(self, X, prompts, n):
        return self.cluster_scores_[self._assign(X, self.cluster_centers_)]

    def _get_state(self):
        return ({"n_clusters": self.n_clusters_, **self._tuning_state()},
                {"centers": self.cluster_centers_, "cluster_scores": self.cluster_scores_})

    def _set_state(self, state, arrays):
        self.cluster_centers_ = _arr(arrays, "centers", self.name).astype(np.float32)
        self.cluster_scores_ = _arr(arrays, "cluster_scores", self.name).astype(np.float32)
        if self.cluster_centers_.shape[0] != self.cluster_scores_.shape[0]:
            raise ModelFormatError("cluster: centres and cluster scores disagree in length")
        self.n_clusters_ = int(state["n_clusters"])
        self._set_tuning_state(state, int)


# ---------------------------------------------------------------------- MLC
@register_router
class MLCRouter(_TunedRouter):
    """Multi-label classifier: one logistic-regression head per LLM predicting success.

    Labels come from the scores: ``label_rule="relative"`` (the default) marks a
    record positive when the LLM beat the prompt's mean over its observed LLMs and
    weights each record by the margin (:mod:`llmrec.routers.signal`; records at the
    mean are left out), which suits every score kind; ``label_rule="threshold"``
    marks a record positive when its score is ``>= threshold`` (``threshold=None``:
    the score kind's default); ``label_rule="routereval95"`` uses RouterEval's
    rule (an LLM is positive on a prompt when its score is at least 95% of the
    prompt's best observed score; a prompt nobody solved has no positive), which
    also suits continuous scores. Each head is a
    :class:`sklearn.linear_model.LogisticRegression` fitted on the prompts where
    the LLM has a record; the score is the predicted probability. A head whose
    training labels are all one class predicts a constant,
    ``sigmoid(log((pos + 0.5) / (neg + 0.5)))``.

    Parameters
    ----------
    label_rule : {"relative", "threshold", "routereval95"}
    threshold : float, optional
        Success threshold of ``label_rule="threshold"`` (None: the score kind's
        default, see :func:`llmrec.routers.signal.default_threshold`).
    C : float
        Inverse L2 strength of the logistic heads.
    C_grid : sequence of float, optional
        Values of C to try; the best on validation mu is kept in ``C_``.
    max_iter : int
    max_updates : int or None
        Joint solver only: a bound on its record evaluations, L-BFGS iterations at
        most ``max(20, max_updates // records)``. The default, 1e10, leaves every
        set of up to 10M records at ``max_iter`` and stops a dense 38,000 x 8,500
        matrix (323M records) after 30 iterations (``n_iter_``), about 15 s each on
        two cores. None: ``max_iter``.
    solver : {"auto", "per-head", "joint"}
        ``per-head``: one scikit-learn ``LogisticRegression`` (lbfgs) per LLM.
        ``joint``: every head at once, one L-BFGS on the sum of the heads' objectives
        (the same objectives, so the same optimum), in whitened feature coordinates
        and row blocks: its cost is a few matrix products per iteration, where the
        per-head solver pays one Python-level solve per LLM (hours at 8,500 LLMs).
        ``auto``: ``joint`` from 64 LLMs on.

    Notes
    -----
    Cost: per-head O(m x iterations x n d) with m solver calls; joint O(iterations
    x n d m) in BLAS, memory O(n m) for the labels and weights (float32 / bool).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(60, 4, seed=0)
    >>> S = MLCRouter(label_rule="routereval95").fit(rec).score(["x"])
    >>> bool(((S >= 0) & (S <= 1)).all())
    True
    """

    name = "mlc"
    _rows_independent = True  # _score reads feature rows only
    LABEL_RULES = ("relative", "threshold", "routereval95")

    def __init__(self, label_rule: str = "relative", threshold: float | None = None,
                 C: float = 1.0,
                 C_grid: Sequence[float] | None = None, max_iter: int = 1000,
                 solver: str = "auto", max_updates: int | None = 10_000_000_000):
        self.max_updates = max_updates
        self.label_rule = label_rule
        self.threshold = threshold
        self.C = C
        self.C_grid = C_grid
        self.max_iter = max_iter
        self.solver = solver

    def labels(self, records: PerformanceRecords) -> tuple[np.ndarray, np.ndarray]:
        """(labels, observed mask) that the heads are trained on.

        Examples
        --------
        >>> from llmrec.datasets import make_synthetic
        >>> y, obs = MLCRouter().labels(make_synthetic(10, 3, seed=0))
        >>> y.shape, y.dtype
        ((10, 3), dtype('bool'))
        """
        y, obs, _ = self._labels_weights(records)
        return y, obs

    def _labels_weights(self, records):
        """(labels, mask of records used, per-record weight or None)."""
        if self.label_rule not in self.LABEL_RULES:
            raise ConfigError(f"label_rule must be one of {self.LABEL_RULES}, got "
                              f"{self.label_rule!r}")
        obs = records.observed_dense()
        if self.label_rule == "routereval95":
            return routereval95_labels(records.dense()), obs, None
        from .signal import implicit_feedback
        fb = implicit_feedback(records, self.label_rule, self.threshold)
        y = np.zeros(records.shape, bool)
        y[fb.rows, fb.cols] = fb.positive
        if self.label_rule == "threshold":
            return y, obs, None
        w = np.zeros(records.shape, np.float32)
        w[fb.rows, fb.cols] = fb.weight
        return y, obs & (w > 0), w

    SOLVERS = ("auto", "per-head", "joint")

    def _fit_heads(self, X, y, obs, C, w=None):
        from sklearn.linear_model import LogisticRegression
        if C <= 0:
            raise ConfigError(f"C must be > 0, got {C}")
        if self.solver not in self.SOLVERS:
            raise ConfigError(f"solver must be one of {self.SOLVERS}, got {self.solver!r}")
        if self.solver == "joint" or (self.solver == "auto" and y.shape[1] >= 64):
            from .cost import budgeted_passes
            it = budgeted_passes(self.max_iter, self.max_updates, int(obs.sum()), floor=20)
            coef, b, self.n_iter_ = _logistic_heads_joint(
                X, y, obs, float(C), w, it, show=getattr(self, "_show_progress", None))
            return coef, b
        from threadpoolctl import threadpool_limits
        m, d = y.shape[1], X.shape[1]
        coef = np.zeros((m, d), dtype=np.float32)
        intercept = np.full(m, np.nan, dtype=np.float32)
        with threadpool_limits(1):  # one small solve per LLM: BLAS threads only contend
            self._fit_each(X, y, obs, C, coef, intercept, LogisticRegression, w)
        return coef, intercept

    def _fit_each(self, X, y, obs, C, coef, intercept, LogisticRegression, w=None):
        for j in range(y.shape[1]):
            rows = obs[:, j]
            if not rows.any():
                continue
            yj = y[rows, j]
            pos = int(yj.sum())
            if pos == 0 or pos == len(yj):
                intercept[j] = np.log((pos + 0.5) / (len(yj) - pos + 0.5))
                continue
            clf = LogisticRegression(C=C, max_iter=int(self.max_iter)).fit(
                X[rows], yj, sample_weight=None if w is None else w[rows, j])
            coef[j] = clf.coef_[0]
            intercept[j] = clf.intercept_[0]

    @staticmethod
    def _proba(X, coef, intercept):
        # in place: at thousands of LLMs each pass over (n, m) costs as much as the rank;
        # 1 / (1 + exp(-z)) with numpy's vectorised float32 exp is ~5x faster than
        # scipy's expit (within 1 ulp of it)
        S = np.asarray(X, dtype=np.float32) @ coef.T
        S += intercept[None, :]
        np.negative(S, out=S)
        with np.errstate(over="ignore"):  # exp(large) = inf -> probability 0
            np.exp(S, out=S)
        S += 1.0
        np.reciprocal(S, out=S)
        bad = ~(np.isfinite(intercept) & np.isfinite(coef).all(axis=1))  # no head
        if bad.any():
            S[:, bad] = -np.inf
        return S

    def _fit(self, records, X, val, X_val):
        grid = _check_grid(self.C_grid, "C_grid", val, float)
        y, obs, w = self._labels_weights(records)
        self.val_mu_ = {}
        self.C_ = float(self.C)
        if grid is not None:
            truth = val.dense()
            for c in _grid_progress(self, grid, "C"):
                coef, b = self._fit_heads(X, y, obs, c, w)
                self.val_mu_[c] = validation_mu(self._proba(X_val, coef, b), truth,
                                                   self.tie_rank_)
            self.C_ = float(_pick_best(self.val_mu_))
        self.coef_, self.intercept_ = self._fit_heads(X, y, obs, self.C_, w)
        # an LLM observed only at its prompts' means (no signal either way): neutral
        seen = np.bincount(records.scores.indices, minlength=records.n_llms) > 0
        self.intercept_[np.isnan(self.intercept_) & seen] = 0.0

    def _score(self, X, prompts, n):
        return self._proba(X, self.coef_, self.intercept_)

    def _get_state(self):
        return ({"C": self.C_, **self._tuning_state()},
                {"coef": self.coef_, "intercept": self.intercept_})

    def _set_state(self, state, arrays):
        self.coef_ = _arr(arrays, "coef", self.name).astype(np.float32)
        self.intercept_ = _arr(arrays, "intercept", self.name).astype(np.float32)
        self.C_ = float(state["C"])
        self._set_tuning_state(state, float)


def _logistic_heads_joint(X, y, obs, C: float, w, max_iter: int, block: int = 2048,
                          show=None):
    """Every LLM's L2 logistic regression at once (see ``MLCRouter(solver="joint")``).

    Head j minimises ``0.5 |coef_j|^2 + C sum_i s_ij logloss(y_ij, x_i coef_j + b_j)``
    (scikit-learn's objective; the intercept is not penalised), with s_ij the record
    weight (1, or the margin of the relative rule) on the records used and 0
    elsewhere. The heads do not interact, so one L-BFGS on the sum reaches each
    head's optimum. Features are centred and whitened (``Z = (X - mean) P`` with
    ``P = E diag(1 / sqrt(eigenvalues))``), which makes the data term well
    conditioned; the penalty becomes ``0.5 sum_k V_k^2 / lambda_k`` there. Heads
    whose labels are all one class get the per-head solver's constant.
    """
    from scipy.optimize import minimize
    from scipy.special import expit
    n, d = X.shape
    m = y.shape[1]
    S_all = (np.asarray(w, np.float32) if w is not None else None)
    used = obs if S_all is None else obs & (S_all > 0)
    cnt = used.sum(axis=0)
    pos = (used & y).sum(axis=0)
    coef = np.zeros((m, d), dtype=np.float32)
    intercept = np.full(m, np.nan, dtype=np.float32)
    const = (cnt > 0) & ((pos == 0) | (pos == cnt))
    intercept[const] = np.log((pos[const] + 0.5) / (cnt[const] - pos[const] + 0.5))
    act = np.flatnonzero((cnt > 0) & ~const)
    if len(act) == 0:
        return coef, intercept, 0
    X64 = np.asarray(X, dtype=np.float64)
    mu = X64.mean(axis=0)
    Xc = X64 - mu
    cov = Xc.T @ Xc / n
    lam, E = np.linalg.eigh(cov)
    lam = np.maximum(lam, 1e-8 * max(float(lam.max()), 1e-12))
    P = E / np.sqrt(lam)[None, :]
    Zb = np.hstack([Xc @ P, np.ones((n, 1))]).astype(np.float32)  # whitened + intercept
    del Xc
    inv_lam = 1.0 / lam
    ma = len(act)
    blocks = [slice(s0, min(s0 + block, n)) for s0 in range(0, n, block)]

    # the record weights of the active heads (0 where a record is not used) and
    # their labels, once: the objective reads them at every evaluation
    all_act = len(act) == m
    Sw = np.empty((n, ma), dtype=np.float32)
    Yw = np.empty((n, ma), dtype=np.float32)
    for b in blocks:
        ub = used[b] if all_act else used[b][:, act]
        if S_all is None:
            Sw[b] = ub
        else:
            np.multiply(S_all[b] if all_act else S_all[b][:, act], ub, out=Sw[b])
        Yw[b] = y[b] if all_act else y[b][:, act]
    threads = _cpu_threads()

    def part(b, T):
        """One row block: (loss, gradient) of its records, every step on the block."""
        L = Zb[b] @ T
        Yb, Sb = Yw[b], Sw[b]
        loss = float(np.sum(Sb * (np.logaddexp(np.float32(0), L) - Yb * L),
                            dtype=np.float64))
        R = expit(L)
        R -= Yb
        R *= Sb
        return loss, Zb[b].T @ R

    def f(theta):
        T = theta.reshape(d + 1, ma).astype(np.float32)
        # blocks on every core with one BLAS thread each (the element-wise loss is
        # as costly as the products); summed in block order, so the result does not
        # depend on the thread count
        parts = map_blocks(lambda b: part(b, T), blocks, threads)
        loss, G = 0.0, np.zeros((d + 1, ma), dtype=np.float64)
        for lb, gb in parts:
            loss += lb
            G += gb
        V = theta.reshape(d + 1, ma)[:d]
        loss = C * loss + 0.5 * float(np.sum(V * V * inv_lam[:, None]))
        G *= C
        G[:d] += V * inv_lam[:, None]
        return loss, G.ravel()

    with progress(total=int(max_iter), desc=f"mlc joint L-BFGS ({ma} heads)", unit="it",
                  show=show) as bar:  # an ETA against the iteration cap
        res = minimize(f, np.zeros((d + 1) * ma), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "maxcor": 20},
                       callback=lambda *_: bar.update(1))
    T = res.x.reshape(d + 1, ma)
    W = P @ T[:d]                                   # (d, ma) in the original coordinates
    coef[act] = W.T.astype(np.float32)
    intercept[act] = (T[d] - mu @ W).astype(np.float32)
    return coef, intercept, int(res.nit)
