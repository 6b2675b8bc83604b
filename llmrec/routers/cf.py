"""Collaborative-filtering routers through ``implicit``: ALS and BPR.

Prompts are users and LLMs are items. The matrix factorisation is learned on the
training prompts only; a new prompt (every prompt at serving time) gets its user
vector from a learned map from prompt features to user factors
(:mod:`llmrec.routers.coldstart`: ridge, MLP or kNN fold-in). Scores are
``q . v`` (the implicit-feedback "preference"), and ``recommend`` searches the LLM
vectors with a FAISS inner-product index.

Successes and failures come from :mod:`llmrec.routers.signal`, read from the
records' score kind: by default (``feedback="relative"``) a record is a success
when the LLM did better than the prompt's mean over its observed LLMs, a failure
when it did worse, with the normalised margin ``w`` as weight; an explicit
``success_threshold`` (or ``feedback="threshold"``) gives the absolute rule, with
``w`` the rescaled score for successes and one minus it for failures.

How observed failures are used:

* ALS (Hu, Koren & Volinsky 2008, as implemented by ``implicit``): a success has
  preference 1 with confidence ``1 + alpha * w``. A failure is an *observed
  failure*: preference 0 with confidence ``1 + neg_alpha * w``, passed to implicit as a
  negative value (implicit reads a negative entry ``-c`` as preference 0 with
  confidence ``c``). Records with no signal (weight 0) are left out. Unobserved cells keep implicit's default, preference 0 with
  confidence 1, so an observed failure weighs more than an unknown cell whenever
  ``neg_alpha > 0``; ``neg_alpha=0`` makes failures indistinguishable from unknowns.
* BPR (Rendle et al. 2009): positives are the successes; implicit samples the
  negative of each triple uniformly from all LLMs the prompt did *not* succeed on
  (``verify_negative_samples=True``), i.e. from its observed failures and its
  unobserved cells alike. BPR cannot tell the two apart; on the dense benchmark
  matrices we route with, almost every non-success is an observed failure.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ConfigError, ModelFormatError
from .base import Router, register_router
from .coldstart import FeatureToFactorMap


def _fit_quietly(make_model, matrix, desc: str = "implicit fit", show=None):
    """Build and fit an implicit model with BLAS limited to one thread.

    implicit checks the BLAS thread count when the model is constructed and warns
    when it is above one, so construction happens inside the limit too. Progress:
    implicit's own bar on a terminal, a line per stage in a log, nothing with -q.
    """
    from threadpoolctl import threadpool_limits
    from .._progress import _mode, stage
    mode = _mode(show)
    with threadpool_limits(1, "blas"), stage(desc, show=show if mode == "lines" else False):
        model = make_model()
        model.fit(matrix, show_progress=mode == "bar")
    return model


def _to_numpy(a) -> np.ndarray:
    return np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float32)


class _ImplicitMFRouter(Router):
    """Shared parts of the implicit-based routers (not registered)."""

    factorized = True
    supports_cold_prompts = True
    needs_text = True
    #: user factor columns that are constants (BPR's bias column), set after mapping
    _const_user_cols: dict[int, float] = {}

    def _make_map(self) -> FeatureToFactorMap:
        return FeatureToFactorMap(self.user_map, alpha=self.map_alpha, k=self.map_k,
                                  random_state=self.random_state)

    def _check_common(self):
        if int(self.factors) < 1:
            raise ConfigError(f"factors must be >= 1, got {self.factors}")
        if int(self.iterations) < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        from .coldstart import _check_alpha, _check_kind
        _check_kind(self.user_map)
        _check_alpha(self.map_alpha, "map_alpha")

    def _success(self, records) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, weights, is_success) of every observed record, in the records'
        CSR order (see :mod:`llmrec.routers.signal`)."""
        from .signal import implicit_feedback, resolve_feedback
        mode = resolve_feedback(getattr(self, "feedback", None), self.success_threshold)
        fb = implicit_feedback(records, mode, self.success_threshold)
        if not fb.positive.any():
            why = ("no LLM beats its prompt's mean" if mode == "relative"
                   else f"score >= success_threshold={fb.threshold}")
            raise ConfigError(f"{type(self).__name__}: no training record is a success "
                              f"({why}); give records where LLMs differ, or lower "
                              "success_threshold")
        self.feedback_ = {"mode": mode, "threshold": fb.threshold}
        return fb.rows, fb.cols, fb.weight, fb.positive

    def _fit_map(self, X: np.ndarray, U: np.ndarray, keep: np.ndarray | None = None):
        keep = np.ones(len(U), bool) if keep is None else keep
        if not keep.any():
            raise ConfigError(f"{type(self).__name__}: no training prompt has both a success "
                              "and a failure, so no prompt factor was learned; give records "
                              "where LLMs differ")
        self.user_map_ = self._make_map().fit(X[keep], U[keep])
        # the penalty the map used ("auto": the leave-one-out choice); None for knn
        self.map_alpha_ = self.user_map_.alpha_

    def _user_vectors(self, X: np.ndarray) -> np.ndarray:
        Q = self.user_map_.predict(X)
        for col, val in self._const_user_cols.items():
            Q[:, col] = val
        return Q

    def _vectors(self, X):
        return self._user_vectors(X), self.item_factors_, None

    def _score(self, X, prompts, n):
        Q, V, _ = self._vectors(X)
        return Q @ V.T

    canonical_llm_order = True  # random item factors per column position

    def _llm_axes(self, arrays):
        return {"item_factors": 0}

    def _get_state(self):
        return ({"feedback": getattr(self, "feedback_", None),
                 "score_mean": getattr(self, "score_mean_", None),
                 "map_alpha": getattr(self, "map_alpha_", None)},
                {"item_factors": self.item_factors_, **self.user_map_.get_arrays("map_")})

    def _set_state(self, state, arrays):
        if state.get("feedback") is not None:
            self.feedback_ = dict(state["feedback"])
        if state.get("score_mean") is not None:
            self.score_mean_ = float(state["score_mean"])
        self.map_alpha_ = state.get("map_alpha")  # None in models saved before it existed
        if "item_factors" not in arrays:
            raise ModelFormatError("saved router lacks item_factors; save it again")
        self.item_factors_ = arrays["item_factors"].astype(np.float32)
        self.user_map_ = self._make_map().set_arrays(arrays, "map_")


@register_router
class ALSRouter(_ImplicitMFRouter):
    """Implicit-feedback ALS (``implicit``) with a feature map for cold prompts.

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 penalty of the ALS solves.
    alpha : float
        Confidence boost of a success: confidence ``1 + alpha * w``.
    neg_alpha : float or None
        Confidence boost of an observed failure: confidence
        ``1 + neg_alpha * w`` at preference 0 (unknown cells have
        confidence 1). ``None`` means the same as ``alpha``.
    iterations : int
        ALS sweeps.
    success_threshold : float, optional
        An explicit threshold: a score at or above it is a success (preference 1).
        None (default) derives successes from the score kind (``feedback``).
    feedback : {"relative", "threshold"}, optional
        See :mod:`llmrec.routers.signal`; default "relative" unless
        ``success_threshold`` is given.
    user_map : {"ridge", "mlp", "knn"}
        Map from prompt features to user factors for new prompts.
    map_alpha : float or "auto"
        L2 penalty of the ridge / MLP map. ``"auto"`` (default): the ridge map
        picks it from 0.1, 1, 10, 100, 1000 by leave-one-out error on the training
        prompts (``map_alpha_`` after fitting; the MLP map uses 1.0).
    map_k : int
        Neighbours of the kNN fold-in.
    new_llm_prior : float
        Strength of the pull of an added LLM's vector toward the mean LLM vector,
        relative to its probe data (0: the plain item step).
    random_state : int
    backend : {"auto", "implicit", "dense", "spark"}
        Training engine (:func:`als_backend`): ``implicit`` (its CPU solver, a loop
        over the records), ``dense`` (the same conjugate-gradient iteration on dense
        blocks with BLAS, :mod:`llmrec.routers.als_dense`: the same factors up to
        float rounding, 3-4x faster on a fully observed matrix, ``8 n m`` bytes of
        dense confidences), ``auto`` (default: ``dense`` from 20M cells when at
        least half of them are observed, else ``implicit``), or ``spark``
        (pyspark.ml ALS; :mod:`llmrec.routers.spark_als`) for logs beyond one
        machine. The saved model is the same either way and needs no Spark.
    spark_master : str
        Spark master URL for ``backend="spark"`` (``local[2]``, ``spark://host:7077``,
        ``yarn``, ``k8s://...``).
    spark_partitions : int or None
        Partitions (and ALS blocks) of the Spark job; None: Spark's defaults.

    Notes
    -----
    Cost (dense records): each of ``iterations`` sweeps solves every prompt and
    every LLM by three conjugate-gradient steps, ``O(nnz * factors)`` plus
    ``O((n + m) * factors^2)``; memory: the CSR confidences (8 bytes per record)
    plus the factors, and with the ``dense`` solver two dense float32 copies of
    the confidences (``8 n m`` bytes). The feature map adds a ridge fit, ``O(n d^2)``.

    New LLMs (:meth:`add_llm`): the probe prompts are placed in factor space by the
    feature map, and the new LLM's vector is the ALS item step restricted to them,
    shrunk toward the mean LLM vector ``v_bar``:
    ``v = (Q^T C Q + lam I)^{-1} (Q^T C p + lam v_bar)`` with the probe outcomes' own
    preferences ``p`` and confidences ``C``, and
    ``lam = new_llm_prior * trace(Q^T C Q) / factors + regularization``; every other
    vector stays frozen.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(200, 5, n_topics=3, seed=0)
    >>> enc = TfidfEncoder(dim=16, n_features=2 ** 12)
    >>> r = ALSRouter(factors=4, iterations=3).fit(rec, encoder=enc)
    >>> r.score(["solve the quadratic equation"]).shape
    (1, 5)
    """

    name = "als"
    supports_new_llms = True

    def __init__(self, factors: int = 32, regularization: float = 0.1, alpha: float = 2.0,
                 neg_alpha: float | None = None, iterations: int = 15,
                 success_threshold: float | None = None, user_map: str = "ridge",
                 map_alpha: float | str = "auto", map_k: int = 20, new_llm_prior: float = 0.1,
                 random_state: int = 0, backend: str = "auto",
                 spark_master: str = "local[2]", spark_partitions: int | None = None,
                 feedback: str | None = None):
        self.feedback = feedback
        self.backend = backend
        self.spark_master = spark_master
        self.spark_partitions = spark_partitions
        self.new_llm_prior = new_llm_prior
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.neg_alpha = neg_alpha
        self.iterations = iterations
        self.success_threshold = success_threshold
        self.user_map = user_map
        self.map_alpha = map_alpha
        self.map_k = map_k
        self.random_state = random_state

    @property
    def _neg_alpha(self) -> float:
        return float(self.alpha if self.neg_alpha is None else self.neg_alpha)

    def _confidences(self, w: np.ndarray, success: np.ndarray) -> np.ndarray:
        """Signed confidences: +c for successes, -c for observed failures."""
        pos = 1.0 + float(self.alpha) * w
        neg = 1.0 + self._neg_alpha * w
        return np.where(success, pos, -neg).astype(np.float32)

    def _check_als(self):
        self._check_common()
        if self.alpha < 0 or self._neg_alpha < 0:
            raise ConfigError(f"alpha and neg_alpha must be >= 0, got {self.alpha}, "
                              f"{self.neg_alpha}")
        als_backend(self.backend)

    def _fit(self, records, X, val, X_val):
        self._check_als()
        U, V, seen = als_backend(self.backend)(self, records)
        self.item_factors_ = V
        self._fit_map(X, U, keep=seen)

    def fit_parquet(self, path, prompts: pd.DataFrame, llms: pd.DataFrame | None = None,
                    encoder=None, side_features=(), prompt_col: str = "prompt_id",
                    llm_col: str = "llm", score_col: str = "score") -> "ALSRouter":
        """Fit from a parquet outcome log with Spark (``backend="spark"``).

        The log (a file or a partitioned directory) stays where it is: Spark reads
        it, factorises it and returns only the factors; the prompt-side feature
        map is fitted here on the prompts table. The result saves, loads and
        recommends like any fitted ALS router.

        Parameters
        ----------
        path : str or path
            Parquet with columns ``prompt_col``, ``llm_col``, ``score_col``.
        prompts : pandas.DataFrame
            ``prompt_id`` and ``text`` (and ``benchmark``/``category`` for side
            features) of the prompts to learn from.
        llms : pandas.DataFrame, optional
            The LLM table (``name`` plus metadata/prices); default: the LLMs of the
            log, sorted by name.
        """
        from . import spark_als
        if self.backend != "spark":
            raise ConfigError("fit_parquet trains with Spark: set backend='spark'")
        self._check_als()
        from ..data.records import PerformanceRecords
        from ..encoders import make_encoder
        from ..encoders.features import PromptFeaturizer
        spark = spark_als.get_spark(self.spark_master, self.spark_partitions)
        log = spark_als.read_log(spark, str(path), prompt_col, llm_col, score_col)
        if llms is None:
            names = sorted(r[0] for r in log.select("llm").distinct().collect())
            llms = pd.DataFrame({"name": names})
        table = PerformanceRecords._check_table(llms, "name", "llms")
        ptab = PerformanceRecords._check_table(prompts, "prompt_id", "prompts")
        U, V, seen = spark_als.als_factors(spark, log, ptab["prompt_id"].tolist(),
                                           table["name"].tolist(),
                                           **spark_als._als_kwargs(self))
        t0 = time.perf_counter()
        self.llms_ = table
        from .base import llm_costs
        self.llm_costs_ = llm_costs(PerformanceRecords(  # prices from the LLM table
            sp.csr_matrix((len(ptab), len(table)), dtype=np.float32), ptab, table))
        self.train_summary_ = {"n_prompts": int(len(ptab)), "n_llms": int(len(table)),
                               "n_observed": None, "name": str(path), "backend": "spark"}
        self.featurizer_ = PromptFeaturizer(make_encoder(encoder if encoder is not None
                                                         else "tfidf"), side_features)
        self.featurizer_.fit(ptab)
        X = self.featurizer_.transform(ptab)
        self.item_factors_ = V
        self._fit_map(X, U, keep=seen)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _add_llm(self, name, X, y, metadata):
        Q = self._user_vectors(X).astype(np.float64)
        y = np.asarray(y, dtype=np.float32)
        fb = getattr(self, "feedback_", {"mode": "threshold", "threshold": 0.5})
        if fb.get("mode") == "threshold" and fb.get("threshold") is not None:
            ok = y >= float(fb["threshold"])
            w = np.where(ok, y, 1.0 - y)
        else:  # relative: the probe prompts' other LLMs are unknown; compare with the
            # mean training score
            m = y - float(getattr(self, "score_mean_", 0.5))
            ok = m > 0
            w = np.abs(m) / max(float(np.abs(m).mean()), 1e-6)
        conf = np.abs(self._confidences(w, ok)).astype(np.float64)
        if self.new_llm_prior < 0:
            raise ConfigError(f"new_llm_prior must be >= 0, got {self.new_llm_prior}")
        # shrink toward the mean LLM vector: the probe prompts' vectors come from the
        # feature map (ridge-shrunk), so an unshrunk fit runs hotter than the LLMs
        # fitted against the true factors
        vbar = self.item_factors_.mean(axis=0).astype(np.float64)
        G = Q.T @ (conf[:, None] * Q)
        lam = float(self.new_llm_prior) * np.trace(G) / Q.shape[1] + float(self.regularization)
        A = G + lam * np.eye(Q.shape[1])
        b = Q.T @ (conf * ok) + lam * vbar
        v = np.linalg.solve(A, b).astype(np.float32)
        self.item_factors_ = np.vstack([self.item_factors_, v[None, :]])


def _signed_confidences(router, records):
    """The signed confidence CSR both single-machine solvers read."""
    # successes / failures and weights from the score kind (llmrec.routers.signal);
    # raises when nothing is a success
    from .signal import feedback_csr
    r, c, w, ok = router._success(records)
    keep = w > 0  # records at the prompt mean carry no signal
    # the confidences on the records' own CSR structure: no COO copy of 340M records
    conf = feedback_csr(records, router._confidences(w, ok), keep)
    del r, c, w, ok, keep
    # the probe rule of add_llm: relative to the mean training score
    router.score_mean_ = float(records.scores.data.mean())
    return conf


def _dense_als(router, records):
    """implicit's iteration on dense blocks (:mod:`llmrec.routers.als_dense`)."""
    from .._progress import progress
    from .als_dense import dense_als
    conf = _signed_confidences(router, records)
    with progress(total=int(router.iterations), desc="als (dense blocks)", unit="it",
                  show=getattr(router, "_show_progress", None)) as bar:
        U, V = dense_als(conf, int(router.factors), float(router.regularization),
                         int(router.iterations), random_state=router.random_state,
                         progress=lambda i: bar.update(1))
    return U, V, np.ones(len(U), dtype=bool)


def _implicit_als(router, records):
    """The single-machine backend: implicit's CPU ALS on the CSR confidences."""
    from implicit.cpu.als import AlternatingLeastSquares
    conf = _signed_confidences(router, records)
    model = _fit_quietly(lambda: AlternatingLeastSquares(
        factors=int(router.factors), regularization=float(router.regularization), alpha=1.0,
        # every core: each half-step solves the users (items) independently, so the
        # result does not depend on the thread count (BPR's Hogwild SGD would)
        iterations=int(router.iterations), num_threads=0,
        random_state=router.random_state), conf,
        f"als {int(router.iterations)} iterations", getattr(router, "_show_progress", None))
    U = _to_numpy(model.user_factors)
    return U, _to_numpy(model.item_factors), np.ones(len(U), dtype=bool)


def _spark_als(router, records):
    from .spark_als import fit_records
    return fit_records(router, records)


def _auto_als(router, records):
    """``dense`` on large, mostly observed records, else ``implicit``."""
    from .als_dense import DENSE_MIN_CELLS, DENSE_MIN_DENSITY
    cells = records.n_prompts * records.n_llms
    dense = cells >= DENSE_MIN_CELLS and records.n_observed >= DENSE_MIN_DENSITY * cells
    router.backend_ = "dense" if dense else "implicit"
    return (_dense_als if dense else _implicit_als)(router, records)


ALS_BACKENDS = {"auto": _auto_als, "implicit": _implicit_als, "dense": _dense_als,
                "spark": _spark_als}


def als_backend(name: str):
    """The ALS training engine by name, as implicit picks its CPU or GPU class.

    Each engine maps ``(router, records)`` to ``(prompt factors, LLM factors, seen)``;
    the router does the rest (feature map, saving) the same way for all of them.

    Examples
    --------
    >>> als_backend("implicit").__name__
    '_implicit_als'
    """
    if name not in ALS_BACKENDS:
        raise ConfigError(f"unknown ALS backend {name!r}; choose from {sorted(ALS_BACKENDS)}")
    return ALS_BACKENDS[name]


@register_router
class BPRRouter(_ImplicitMFRouter):
    """Bayesian personalised ranking (``implicit``) with a feature map for cold prompts.

    Positives are the successes (by default: the LLMs that beat the prompt's mean,
    see :mod:`llmrec.routers.signal`; or score >= ``success_threshold`` when one is
    given); negatives are sampled by implicit from the LLMs the prompt did not
    succeed on. implicit's BPR
    learns an item bias as the last factor column (users hold a constant 1 there),
    so ``score = q . v`` includes the bias. Training prompts with no success (or no
    failure) never enter a triple and are left out of the feature map's fit.

    Parameters
    ----------
    factors : int
        Latent dimension (implicit adds one bias column).
    learning_rate, regularization : float
        SGD step and L2 penalty.
    iterations : int
        Epochs (each samples as many triples as there are positives).
    max_updates : int or None
        A bound on the SGD updates: the epochs run are
        ``min(iterations, max(1, max_updates // positives))`` (``iterations_``
        after fitting). The default, 2e8, leaves every set of up to 2M positives at
        100 epochs (MMLU-Pro, RouterBench...) and keeps a dense 40,000 x 8,500
        matrix (about 170M positives) to one epoch, about a minute per 1e8
        updates on one thread. None: always ``iterations``.
    success_threshold : float, optional
        Explicit success threshold; None derives successes from the score kind.
    user_map : {"ridge", "mlp", "knn"}
    map_alpha : float or "auto"
        As in :class:`ALSRouter`.
    map_k : int
    random_state : int
    feedback : {"relative", "threshold"}, optional

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(200, 5, n_topics=3, seed=0)
    >>> enc = TfidfEncoder(dim=16, n_features=2 ** 12)
    >>> r = BPRRouter(factors=4, iterations=5).fit(rec, encoder=enc)
    >>> r.recommend(["solve the quadratic equation"], k=2)[0].shape
    (1, 2)
    """

    name = "bpr"
    supports_new_llms = False

    def __init__(self, factors: int = 32, learning_rate: float = 0.05,
                 regularization: float = 0.01, iterations: int = 100,
                 success_threshold: float | None = None, user_map: str = "ridge",
                 map_alpha: float | str = "auto", map_k: int = 20, random_state: int = 0,
                 feedback: str | None = None, max_updates: int | None = 200_000_000):
        self.feedback = feedback
        self.max_updates = max_updates
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.success_threshold = success_threshold
        self.user_map = user_map
        self.map_alpha = map_alpha
        self.map_k = map_k
        self.random_state = random_state

    @property
    def _const_user_cols(self):
        return {int(self.factors): 1.0}

    def _fit(self, records, X, val, X_val):
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        self._check_common()
        from .signal import feedback_csr
        r, c, _, ok = self._success(records)
        pos = feedback_csr(records, np.ones(len(ok), np.float32), ok)
        from .cost import budgeted_passes
        epochs = self.iterations_ = budgeted_passes(self.iterations, self.max_updates,
                                                    pos.nnz)
        model = _fit_quietly(lambda: BayesianPersonalizedRanking(factors=int(self.factors),
                                            learning_rate=float(self.learning_rate),
                                            regularization=float(self.regularization),
                                            iterations=epochs, num_threads=1,
                                            verify_negative_samples=True,
                                            random_state=self.random_state), pos,
                             f"bpr {epochs} iterations over {pos.nnz:,} positives",
                             getattr(self, "_show_progress", None))
        U = _to_numpy(model.user_factors)
        self.item_factors_ = _to_numpy(model.item_factors)
        n_pos = np.diff(pos.indptr)
        # prompts with no success, or no failure, never enter a BPR triple: their
        # factors stay at their random start, so the feature map ignores them
        self._fit_map(X, U, keep=(n_pos > 0) & (n_pos < records.n_llms))
