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
    min_df : int
        Keep hashed terms that occur in at least this many training prompts (all
        terms when fewer than two pass).
    max_terms : int or None
        Keep at most this many hashed terms, the most frequent ones.
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
                 ngram_range: tuple[int, int] = (1, 2), min_df: int = 2,
                 max_terms: int | None = 20000, random_state: int = 0):
        self.dim_param = dim
        self.min_df = min_df
        self.max_terms = max_terms
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
        H = self._hasher().transform(texts).tocsc()
        # only hashed columns that occur in training carry information: fit and store
        # IDF and the SVD basis on those columns (a few thousand, not 2**18)
        df = np.diff(H.indptr)
        cols = np.flatnonzero(df >= self.min_df).astype(np.int64)
        if len(cols) < 2:  # tiny corpora: keep every term that occurs
            cols = np.flatnonzero(df > 0).astype(np.int64)
        if self.max_terms and len(cols) > self.max_terms:  # the most frequent terms
            keep = np.argsort(-df[cols], kind="stable")[:self.max_terms]
            cols = np.sort(cols[keep])
        H = H[:, cols].tocsr()
        tf = TfidfTransformer(sublinear_tf=True).fit(H)
        T = tf.transform(H)
        k = int(min(self.dim_param, T.shape[0] - 1, max(len(cols) - 1, 1)))
        svd = TruncatedSVD(n_components=max(k, 1), random_state=self.random_state,
                           algorithm="randomized", n_iter=5).fit(T)
        self.columns_ = cols
        self.idf_ = tf.idf_.astype(np.float32)
        self.components_ = svd.components_.astype(np.float32)
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "components_")

    @property
    def dim(self) -> int:
        return self.components_.shape[0] if self.is_fitted else self.dim_param

    def _select_columns(self, H):
        """``H[:, columns_]`` of a CSR matrix in O(nnz) through a column map (the same
        matrix as ``H.tocsc()[:, columns_].tocsr()``, which costs O(n_features): about
        1.5 ms per call, more than the rest of a one-prompt encode)."""
        import scipy.sparse as sp
        cmap = getattr(self, "_colmap", None)
        if cmap is None or cmap[1] is not self.columns_:
            m = np.full(self.n_features, -1, dtype=np.int64)
            m[self.columns_] = np.arange(len(self.columns_))
            cmap = self._colmap = (m, self.columns_)
        H.sort_indices()
        new = cmap[0][H.indices]
        keep = new >= 0
        indptr = np.concatenate(([0], np.cumsum(keep)))[H.indptr]
        return sp.csr_matrix((H.data[keep], new[keep], indptr),
                             shape=(H.shape[0], len(self.columns_)))

    def _encode(self, texts, show_progress):
        from sklearn.preprocessing import normalize
        H = self._select_columns(self._hasher().transform(texts))
        H = H.astype(np.float32)
        H.data = 1.0 + np.log(H.data)  # sublinear tf, as in fit
        H.data *= self.idf_[H.indices]  # = H.multiply(idf) without the broadcast matrix
        T = normalize(H)
        Z = np.asarray(T @ self.components_.T, dtype=np.float32)
        n = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.maximum(n, 1e-12)

    def get_config(self) -> dict:
        return {"type": self.type, "dim": self.dim_param, "n_features": self.n_features,
                "ngram_range": list(self.ngram_range), "min_df": self.min_df, "max_terms": self.max_terms,
                "random_state": self.random_state}

    def get_arrays(self) -> dict:
        if not self.is_fitted:
            return {}
        return {"columns": self.columns_, "idf": self.idf_, "components": self.components_}

    @classmethod
    def from_state(cls, config, arrays):
        enc = cls(dim=config["dim"], n_features=config["n_features"],
                  ngram_range=tuple(config["ngram_range"]),
                  min_df=config.get("min_df", 2), max_terms=config.get("max_terms"),
                  random_state=config.get("random_state", 0))
        if "components" in arrays:
            cols = np.asarray(arrays.get("columns", []), dtype=np.int64)
            if (arrays["idf"].shape[0] != len(cols) or arrays["components"].shape[1] != len(cols)
                    or (len(cols) and (cols.min() < 0 or cols.max() >= enc.n_features))):
                raise ModelFormatError("TfidfEncoder arrays do not match each other or its "
                                       "n_features; the saved encoder is corrupt")
            enc.columns_ = cols
            enc.idf_ = arrays["idf"].astype(np.float32)
            enc.components_ = arrays["components"].astype(np.float32)
        return enc
