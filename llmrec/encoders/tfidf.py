"""A light text encoder with no torch: hashed TF-IDF of word n-grams + truncated SVD."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFormatError
from .base import Encoder, register_encoder


@register_encoder
class TfidfEncoder(Encoder):
    """Hashed word/bigram TF-IDF, reduced by truncated SVD, L2-normalised.

    Fitted on the training prompts (IDF weights and SVD basis); stateless hashing
    means the vocabulary never has to be stored. Persisted as two arrays.

    Parameters
    ----------
    dim : int
        Output dimension (SVD components); capped by the number of training prompts.
    n_features : int
        Hashing space size.
    ngram_range : tuple of int
    random_state : int

    Examples
    --------
    >>> enc = TfidfEncoder(dim=2).fit(["add two numbers", "capital of France", "sum of 3 and 4"])
    >>> enc.encode(["what is 2 plus 2"]).shape
    (1, 2)
    """

    type = "tfidf"
    requires_fit = True

    def __init__(self, dim: int = 256, n_features: int = 2 ** 18,
                 ngram_range: tuple[int, int] = (1, 2), random_state: int = 0):
        self.dim_param = dim
        self.n_features = n_features
        self.ngram_range = tuple(ngram_range)
        self.random_state = random_state

    def _hasher(self):
        from sklearn.feature_extraction.text import HashingVectorizer
        return HashingVectorizer(n_features=self.n_features, ngram_range=self.ngram_range,
                                 alternate_sign=False, norm=None, lowercase=True)

    def fit(self, texts) -> "TfidfEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfTransformer
        from .base import _check_texts
        texts = _check_texts(texts)
        if self.dim_param < 1:
            raise ConfigError(f"dim must be >= 1, got {self.dim_param}")
        if len(texts) < 2:
            raise ConfigError("TfidfEncoder needs at least 2 training prompts")
        H = self._hasher().transform(texts)
        tf = TfidfTransformer(sublinear_tf=True).fit(H)
        T = tf.transform(H)
        k = int(min(self.dim_param, T.shape[0] - 1, max(T.getnnz(axis=0).astype(bool).sum() - 1, 1)))
        svd = TruncatedSVD(n_components=max(k, 1), random_state=self.random_state,
                           algorithm="randomized", n_iter=5).fit(T)
        self.idf_ = tf.idf_.astype(np.float32)
        self.components_ = svd.components_.astype(np.float32)
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "components_")

    @property
    def dim(self) -> int:
        return self.components_.shape[0] if self.is_fitted else self.dim_param

    def _encode(self, texts, show_progress):
        from sklearn.preprocessing import normalize
        H = self._hasher().transform(texts).astype(np.float32)
        H.data = 1.0 + np.log(H.data)  # sublinear tf, as in fit
        T = normalize(H.multiply(self.idf_[None, :]).tocsr())
        Z = np.asarray(T @ self.components_.T, dtype=np.float32)
        n = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.maximum(n, 1e-12)

    def get_config(self) -> dict:
        return {"type": self.type, "dim": self.dim_param, "n_features": self.n_features,
                "ngram_range": list(self.ngram_range), "random_state": self.random_state}

    def get_arrays(self) -> dict:
        if not self.is_fitted:
            return {}
        return {"idf": self.idf_, "components": self.components_}

    @classmethod
    def from_state(cls, config, arrays):
        enc = cls(dim=config["dim"], n_features=config["n_features"],
                  ngram_range=tuple(config["ngram_range"]),
                  random_state=config.get("random_state", 0))
        if "components" in arrays:
            if arrays["idf"].shape[0] != enc.n_features or \
                    arrays["components"].shape[1] != enc.n_features:
                raise ModelFormatError("TfidfEncoder arrays do not match its n_features")
            enc.idf_ = arrays["idf"].astype(np.float32)
            enc.components_ = arrays["components"].astype(np.float32)
        return enc
