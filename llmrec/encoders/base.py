"""The encoder protocol: prompt text in, float32 features out.

Every encoder follows the estimator convention: ``__init__`` stores settings only
(no model is loaded there), ``fit(texts)`` returns self (a no-op for pretrained
encoders), ``encode(texts)`` returns a ``(n, dim)`` float32 array. Encoders persist
without pickle through ``get_config()`` (JSON-able dict with a ``type`` key) and
``get_arrays()`` (dict of numpy arrays), restored by :func:`encoder_from_state`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np

from ..errors import ConfigError, ModelFormatError, NotFittedError

ENCODER_TYPES: dict[str, type] = {}


def register_encoder(cls):
    """Class decorator: make ``cls`` restorable by its ``type`` name."""
    ENCODER_TYPES[cls.type] = cls
    return cls


class Encoder:
    """Base class of prompt encoders.

    Subclasses set ``type`` (a short registry name) and implement ``_encode``;
    encoders that learn from the training prompts override ``fit``.
    """

    type = "base"
    #: whether encode() needs fit() first
    requires_fit = False

    def fit(self, texts: Sequence[str]) -> "Encoder":
        return self

    def encode(self, texts: Sequence[str], show_progress: bool | None = None) -> np.ndarray:
        texts = _check_texts(texts)
        if self.requires_fit and not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} must be fitted on the training prompts "
                                 "before encode(); call fit(texts)")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode(texts, show_progress), dtype=np.float32)
        return out

    def _encode(self, texts: list[str], show_progress: bool | None) -> np.ndarray:
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def get_config(self) -> dict:
        """JSON-able settings, with ``type``; enough with :meth:`get_arrays` to rebuild."""
        return {"type": self.type}

    def get_arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays (empty for pretrained encoders)."""
        return {}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "Encoder":
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Stable identity of (encoder type, settings, learned arrays, weights version)."""
        h = hashlib.sha256(json.dumps(self.get_config(), sort_keys=True, default=str).encode())
        arrays = self.get_arrays()  # may build the arrays (e.g. precomputed texts): once
        for k in sorted(arrays):
            a = np.ascontiguousarray(arrays[k])
            h.update(k.encode())
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
        return f"{self.type}:{h.hexdigest()[:16]}"

    @property
    def name(self) -> str:
        return self.type

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k != "type"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


def _check_texts(texts) -> list[str]:
    from ..errors import DataFormatError
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for i, t in enumerate(texts):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            raise DataFormatError(f"prompt {i}: text is missing; every prompt needs text "
                                  "for this encoder")
        out.append(str(t))
    return out


def encoder_from_state(config: dict, arrays: dict[str, np.ndarray] | None = None) -> Encoder:
    """Rebuild an encoder saved with ``get_config()`` / ``get_arrays()``."""
    import importlib
    importlib.import_module("llmrec.encoders")  # registers the built-in encoders
    t = config.get("type")
    if t not in ENCODER_TYPES:
        raise ModelFormatError(f"unknown encoder type {t!r} in saved state; known: "
                               f"{sorted(ENCODER_TYPES)}")
    return ENCODER_TYPES[t].from_state(config, arrays or {})


def check_dim(X: np.ndarray, dim: int, what: str = "features") -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != dim:
        raise ConfigError(f"{what} have shape {X.shape}, expected (n, {dim}); precomputed "
                          "features must come from the encoder the router was fitted with")
    return X
