"""Maps from prompt features to learned user (prompt) factors, for cold prompts.

Collaborative-filtering routers (ALS, BPR) learn one factor vector per *training*
prompt. At serving time every prompt is new, so these routers learn a second,
small model from the training prompts' features to their factors and use it to
place a new prompt in the factor space:

* ``"ridge"``: multi-output ridge regression (scikit-learn :class:`~sklearn.linear_model.Ridge`);
  with ``alpha="auto"`` its penalty is picked from :data:`MAP_ALPHAS` by efficient
  leave-one-out cross-validation on the training prompts
  (:class:`~sklearn.linear_model.RidgeCV`, one penalty for all factors).
* ``"mlp"``: a small multi-layer perceptron (scikit-learn
  :class:`~sklearn.neural_network.MLPRegressor`, ReLU hidden layer).
* ``"knn"``: fold-in by neighbours: the mean factor vector of the ``k`` training
  prompts nearest by cosine similarity (scikit-learn
  :class:`~sklearn.neighbors.NearestNeighbors`, brute force).

The fitted map is stored as plain arrays (no pickle) and predicts with numpy, so a
saved router reloads without scikit-learn estimators in its files.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFormatError, NotFittedError

USER_MAPS = ("ridge", "mlp", "knn")
#: penalties ``alpha="auto"`` chooses from (ridge map)
MAP_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: the MLP's penalty under ``alpha="auto"`` (no search: one MLP fit per point is dear)
MLP_AUTO_ALPHA = 1.0


def _check_alpha(alpha, name: str = "alpha") -> float | str:
    """``"auto"`` or a float >= 0, else a ConfigError naming the setting ``name``."""
    bad = ConfigError(f"{name} must be 'auto' or a number >= 0, got {alpha!r}")
    if isinstance(alpha, str):
        if alpha == "auto":
            return alpha
        raise bad
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise bad from None
    if not np.isfinite(a) or a < 0:
        raise bad
    return a


def _check_kind(kind: str) -> str:
    if kind not in USER_MAPS:
        raise ConfigError(f"user_map must be one of {USER_MAPS}, got {kind!r}")
    return kind


class FeatureToFactorMap:
    """Learned map from prompt features ``X`` (n, d) to factors ``U`` (n, f).

    Parameters
    ----------
    kind : {"ridge", "mlp", "knn"}
    alpha : float or "auto"
        L2 penalty (ridge and mlp). ``"auto"``: the ridge map picks it from
        :data:`MAP_ALPHAS` by leave-one-out error on the training prompts (``alpha_``
        after fitting; 1.0 below three prompts); the MLP uses :data:`MLP_AUTO_ALPHA`.
    k : int
        Neighbours averaged by ``knn``.
    hidden : int
        Hidden units of ``mlp``.
    max_iter : int
        Training epochs of ``mlp``.
    random_state : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 4)).astype("float32")
    >>> U = X @ rng.normal(size=(4, 2))
    >>> m = FeatureToFactorMap("ridge", alpha=1e-3).fit(X, U)
    >>> bool(np.abs(m.predict(X) - U).max() < 0.05)
    True
    >>> FeatureToFactorMap("knn", k=1).fit(X, U).predict(X[:2]).shape
    (2, 2)
    >>> FeatureToFactorMap("ridge", alpha="auto").fit(X, U).alpha_
    0.1
    """

    def __init__(self, kind: str = "ridge", alpha: float = 1.0, k: int = 10, hidden: int = 64,
                 max_iter: int = 200, random_state: int = 0):
        self.kind = kind
        self.alpha = alpha
        self.k = k
        self.hidden = hidden
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, U: np.ndarray) -> "FeatureToFactorMap":
        """Fit the map on training features ``X`` and their factors ``U``."""
        _check_kind(self.kind)
        X = np.asarray(X, dtype=np.float32)
        U = np.asarray(U, dtype=np.float32)
        if X.ndim != 2 or U.ndim != 2 or X.shape[0] != U.shape[0] or X.shape[0] == 0:
            raise ConfigError(f"cannot fit a feature map from X {X.shape} to factors {U.shape}; "
                              "need one feature row per factor row")
        alpha = _check_alpha(self.alpha)
        self.n_features_in_ = X.shape[1]
        self.alpha_ = None
        if self.kind == "ridge":
            from sklearn.linear_model import Ridge, RidgeCV
            if alpha == "auto" and X.shape[0] >= 3:
                # efficient leave-one-out (generalised CV) over the grid, one penalty
                # for every factor: scikit-learn solves all of it from one SVD of X
                r = RidgeCV(alphas=MAP_ALPHAS).fit(X, U)
                self.alpha_ = float(r.alpha_)
            else:
                self.alpha_ = 1.0 if alpha == "auto" else alpha
                r = Ridge(alpha=self.alpha_).fit(X, U)
            self.weights_ = [np.asarray(r.coef_, np.float32).T.reshape(X.shape[1], -1)]
            self.biases_ = [np.asarray(r.intercept_, np.float32).reshape(-1)]
        elif self.kind == "mlp":
            from sklearn.neural_network import MLPRegressor
            if self.hidden < 1:
                raise ConfigError(f"hidden must be >= 1, got {self.hidden}")
            # standardise targets so the MLP's default learning rate suits any factor scale
            self.u_mean_ = U.mean(axis=0)
            self.u_std_ = np.maximum(U.std(axis=0), 1e-6)
            self.alpha_ = MLP_AUTO_ALPHA if alpha == "auto" else alpha
            mlp = MLPRegressor(hidden_layer_sizes=(int(self.hidden),), alpha=self.alpha_,
                               max_iter=int(self.max_iter), early_stopping=X.shape[0] >= 50,
                               random_state=self.random_state)
            import warnings
            from sklearn.exceptions import ConvergenceWarning
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                mlp.fit(X, (U - self.u_mean_) / self.u_std_)
            self.weights_ = [np.asarray(w, np.float32) for w in mlp.coefs_]
            self.biases_ = [np.asarray(b, np.float32) for b in mlp.intercepts_]
            # fold the target scaling into the output layer
            self.weights_[-1] = self.weights_[-1] * self.u_std_[None, :]
            self.biases_[-1] = self.biases_[-1] * self.u_std_ + self.u_mean_
        else:
            if int(self.k) < 1:
                raise ConfigError(f"k must be >= 1, got {self.k}")
            self.train_X_ = _unit(X)
            self.train_U_ = U
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Factors (n, f) for features ``X`` (n, d)."""
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError("FeatureToFactorMap is not fitted; call fit(X, U) first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(f"features have shape {X.shape}, expected (n, "
                              f"{self.n_features_in_})")
        if self.kind == "knn":
            if X.shape[0] == 0:
                return np.zeros((0, self.train_U_.shape[1]), np.float32)
            from sklearn.neighbors import NearestNeighbors
            k = min(int(self.k), self.train_X_.shape[0])
            nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine")
            idx = nn.fit(self.train_X_).kneighbors(_unit(X), return_distance=False)
            return self.train_U_[idx].mean(axis=1).astype(np.float32)
        H = X
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            H = H @ W + b
            if i < len(self.weights_) - 1:
                H = np.maximum(H, 0.0)  # ReLU, MLPRegressor's default activation
        return H.astype(np.float32)

    # ------------------------------------------------------------ persistence
    def get_arrays(self, prefix: str = "map_") -> dict[str, np.ndarray]:
        """Fitted arrays, keys prefixed with ``prefix`` (for a router's npz)."""
        if self.kind == "knn":
            return {f"{prefix}X": self.train_X_, f"{prefix}U": self.train_U_}
        out = {}
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            out[f"{prefix}W{i}"] = W
            out[f"{prefix}b{i}"] = b
        return out

    def set_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "map_"
                   ) -> "FeatureToFactorMap":
        """Restore from :meth:`get_arrays` output."""
        _check_kind(self.kind)
        try:
            if self.kind == "knn":
                self.train_X_ = arrays[f"{prefix}X"].astype(np.float32)
                self.train_U_ = arrays[f"{prefix}U"].astype(np.float32)
                self.n_features_in_ = self.train_X_.shape[1]
            else:
                n = sum(1 for key in arrays if key.startswith(f"{prefix}W"))
                if n == 0:
                    raise KeyError(f"{prefix}W0")
                self.weights_ = [arrays[f"{prefix}W{i}"].astype(np.float32) for i in range(n)]
                self.biases_ = [arrays[f"{prefix}b{i}"].astype(np.float32) for i in range(n)]
                self.n_features_in_ = self.weights_[0].shape[0]
        except KeyError as e:
            raise ModelFormatError(f"saved feature map lacks array {e}; save the router "
                                   "again") from None
        return self


def _unit(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.maximum(n, 1e-12)).astype(np.float32)
