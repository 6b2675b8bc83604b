"""A per-LLM Bayesian linear router: scores with an uncertainty, for bandit policies.

:class:`BayesLinearRouter` (``"linear-bayes"``) is the linear router with a Gaussian
posterior per LLM: for the features ``x`` with an intercept appended, LLM ``j`` has
``A_j = alpha I + sum_i w_i x_i x_i^T`` and mean ``A_j^{-1} sum_i w_i (y_i - m) x_i``
around the global mean score ``m``; the predictive standard deviation of a prompt is
``sigma sqrt(x^T A_j^{-1} x)`` (``sigma``: the residual standard deviation). The
score is the posterior mean; :meth:`BayesLinearRouter.score_std` gives the standard
deviation that LinUCB (:class:`~llmrec.policies.UCBPolicy`) and Thompson sampling
(:class:`~llmrec.policies.ThompsonPolicy`) read. With little data an LLM's score
stays near the global mean and its uncertainty stays high, which is what a bandit
needs to keep trying it. Accepts ``sample_weight`` (inverse propensities).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFormatError
from .base import Router, register_router

__all__ = ["BayesLinearRouter"]


@register_router
class BayesLinearRouter(Router):
    """Per-LLM Bayesian ridge regression of the score on prompt features.

    Parameters
    ----------
    alpha : float
        Prior precision (ridge penalty) of the feature weights and the intercept.
    n_components : int, optional
        Project the prompt features onto their first ``n_components`` principal
        components (PCA fitted on the training prompts' features, no labels) before
        the regression. The posterior of a linear bandit narrows in proportion to the
        feature dimension, so on few logged decisions a low-dimensional model stops
        exploring sooner (``bench_bandits.py``, docs/bandits.md). None: all features.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(80, 3, seed=0)
    >>> r = BayesLinearRouter(alpha=1.0).fit(rec)
    >>> r.score(["hi"]).shape, r.score_std(["hi"]).shape
    ((1, 3), (1, 3))
    """

    name = "linear-bayes"
    supports_sample_weight = True

    def __init__(self, alpha: float = 1.0, n_components: int | None = None):
        self.alpha = alpha
        self.n_components = n_components

    def _fit(self, records, X, val, X_val):
        self._fit_weighted(records, X, val, X_val, records.observed_dense().astype(float))

    def _fit_weighted(self, records, X, val, X_val, weight):
        a = float(self.alpha)
        if not a > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        dense = records.dense(fill=0.0).astype(np.float64)
        W = np.asarray(weight, dtype=np.float64)
        X = np.asarray(X, np.float64)
        self.proj_mean_ = self.proj_ = None
        if self.n_components is not None:
            k = int(self.n_components)
            if k < 1:
                raise ConfigError(f"n_components must be >= 1 or None, got "
                                  f"{self.n_components}")
            from sklearn.decomposition import PCA
            seen = X[(W > 0).any(axis=1)]
            k = min(k, X.shape[1], max(1, seen.shape[0] - 1))
            if seen.shape[0] > 1:
                pca = PCA(n_components=k, random_state=0).fit(seen)
                self.proj_mean_ = pca.mean_.astype(np.float32)
                self.proj_ = pca.components_.T.astype(np.float32)
            X = self._project(X).astype(np.float64)
        Xb = np.hstack([X, np.ones((X.shape[0], 1))])
        d = Xb.shape[1]
        m = dense.shape[1]
        total = W.sum()
        self.mean_ = float((W * dense).sum() / total) if total > 0 else 0.0
        coef = np.zeros((m, d))
        ainv = np.zeros((m, d, d))
        sq, n_eff = 0.0, 0.0
        for j in range(m):
            w = W[:, j]
            rows = np.flatnonzero(w > 0)
            Xj, wj = Xb[rows], w[rows]
            yj = dense[rows, j] - self.mean_
            A = a * np.eye(d) + (Xj * wj[:, None]).T @ Xj
            Ai = np.linalg.inv(A)
            coef[j] = Ai @ (Xj.T @ (wj * yj))
            ainv[j] = Ai
            if len(rows):
                res = yj - Xj @ coef[j]
                sq += float(np.sum(wj * res * res))
                n_eff += float(wj.sum())
        self.coef_ = coef.astype(np.float32)
        self.ainv_ = ainv.astype(np.float32)
        self.sigma_ = float(np.sqrt(sq / n_eff)) if n_eff > 0 else 1.0
        self.n_weight_ = W.sum(axis=0).astype(np.float32)

    def _project(self, X):
        if getattr(self, "proj_", None) is None:
            return X
        return (np.asarray(X, np.float32) - self.proj_mean_) @ self.proj_

    def _aug(self, X):
        X = self._project(X)
        return np.hstack([np.asarray(X, np.float32), np.ones((X.shape[0], 1), np.float32)])

    def _score(self, X, prompts, n):
        return self._aug(X) @ self.coef_.T + self.mean_

    def score_std(self, prompts, show_progress=None) -> np.ndarray:
        """Predictive standard deviation of each score, shape (n_prompts, n_llms)."""
        self._check_fitted()
        X = self.features(prompts, show_progress)
        Xb = self._aug(X)
        out = np.empty((Xb.shape[0], self.coef_.shape[0]), dtype=np.float32)
        for j in range(self.coef_.shape[0]):
            out[:, j] = np.einsum("nd,nd->n", Xb @ self.ainv_[j], Xb)
        return self.sigma_ * np.sqrt(np.maximum(out, 0.0))

    def _get_state(self):
        arrays = {"coef": self.coef_, "ainv": self.ainv_, "n_weight": self.n_weight_}
        if getattr(self, "proj_", None) is not None:
            arrays.update(proj=self.proj_, proj_mean=self.proj_mean_)
        return {"mean": self.mean_, "sigma": self.sigma_}, arrays

    def _set_state(self, state, arrays):
        for k in ("coef", "ainv", "n_weight"):
            if k not in arrays:
                raise ModelFormatError(f"linear-bayes: router.npz lacks array {k!r}")
        self.coef_ = arrays["coef"].astype(np.float32)
        self.ainv_ = arrays["ainv"].astype(np.float32)
        self.n_weight_ = arrays["n_weight"].astype(np.float32)
        self.mean_ = float(state["mean"])
        self.sigma_ = float(state["sigma"])
        self.proj_ = arrays["proj"].astype(np.float32) if "proj" in arrays else None
        self.proj_mean_ = arrays["proj_mean"].astype(np.float32) if "proj" in arrays else None
