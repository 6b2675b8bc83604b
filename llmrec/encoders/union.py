"""A feature union: several encoders side by side, plus cheap text statistics.

``UnionEncoder(parts=("minilm", "tfidf"))`` concatenates each part's vector (each
row unit-normalised, times the part's weight) and, with ``stats=True``, eight text
statistics standardised on the training prompts: log characters, log words, share
of digits, of upper-case letters and of non-ASCII characters, and counts of code
marks (``{ } ; def return =``), math marks (``$ \\ ^``) and line breaks (log1p).
MiniLM carries meaning, TF-IDF carries the exact terms of a domain, and the
statistics carry length and format, which often decide which LLM is good enough.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..errors import ConfigError, ModelFormatError
from .base import Encoder, _check_texts, encoder_from_state, register_encoder

__all__ = ["UnionEncoder", "text_statistics"]

_CODE = re.compile(r"[{};=]|\bdef\b|\breturn\b")
_MATH = re.compile(r"[$\\^]")
N_STATS = 8


def text_statistics(texts: Sequence[str]) -> np.ndarray:
    """(n, 8) raw text statistics (see the module docstring).

    Examples
    --------
    >>> text_statistics(["def f(x): return x", "What is 2^3?"]).shape
    (2, 8)
    """
    out = np.zeros((len(texts), N_STATS), np.float32)
    for i, t in enumerate(texts):
        n = max(len(t), 1)
        out[i] = (np.log1p(len(t)), np.log1p(len(t.split())),
                  sum(c.isdigit() for c in t) / n, sum(c.isupper() for c in t) / n,
                  sum(ord(c) > 127 for c in t) / n, np.log1p(len(_CODE.findall(t))),
                  np.log1p(len(_MATH.findall(t))), np.log1p(t.count("\n")))
    return out


@register_encoder
class UnionEncoder(Encoder):
    """Concatenate encoders (and text statistics) into one feature vector.

    Parameters
    ----------
    parts : sequence of str or Encoder
        Encoders, as accepted by :func:`llmrec.encoders.make_encoder`
        (default MiniLM and TF-IDF).
    weights : sequence of float, optional
        Weight of each part's (unit-normalised) vector; default 1 each.
    stats : bool
        Append the standardised text statistics.
    stats_weight : float
        Weight of the statistics block.

    Examples
    --------
    >>> enc = UnionEncoder(parts=["tfidf"], stats=True).fit(
    ...     ["add two numbers", "capital of France", "sum of 3 and 4", "def f(): return 1"])
    >>> enc.encode(["what is 2 plus 2"]).shape[1] == enc.dim
    True
    """

    type = "union"

    def __init__(self, parts: Sequence = ("minilm", "tfidf"),
                 weights: Sequence[float] | None = None, stats: bool = True,
                 stats_weight: float = 0.5):
        from . import make_encoder
        if not parts:
            raise ConfigError("UnionEncoder needs at least one part")
        self.parts = [make_encoder(p) for p in parts]
        self.weights = [1.0] * len(self.parts) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.parts):
            raise ConfigError(f"{len(self.weights)} weights for {len(self.parts)} parts")
        self.stats = bool(stats)
        self.stats_weight = float(stats_weight)

    @property
    def requires_fit(self) -> bool:  # type: ignore[override]
        return self.stats or any(p.requires_fit for p in self.parts)

    @property
    def is_fitted(self) -> bool:
        return all(p.is_fitted for p in self.parts) and (not self.stats
                                                         or hasattr(self, "stats_mean_"))

    def fit(self, texts) -> "UnionEncoder":
        texts = _check_texts(texts)
        for p in self.parts:
            if p.requires_fit:
                p.fit(texts)
        if self.stats:
            S = text_statistics(texts)
            self.stats_mean_ = S.mean(axis=0).astype(np.float32)
            self.stats_std_ = np.maximum(S.std(axis=0), 1e-6).astype(np.float32)
        return self

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts) + (N_STATS if self.stats else 0)

    def _encode(self, texts, show_progress):
        blocks = []
        for p, w in zip(self.parts, self.weights):
            V = np.asarray(p.encode(texts, show_progress=show_progress), np.float32)
            V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
            blocks.append(w * V)
        if self.stats:
            S = (text_statistics(texts) - self.stats_mean_) / self.stats_std_
            blocks.append(self.stats_weight * S / np.sqrt(N_STATS))
        return np.hstack(blocks).astype(np.float32)

    @property
    def fingerprint(self) -> str:
        """Covers each part's fingerprint (MiniLM's weights), the weights and the
        statistics' standardisation."""
        import hashlib
        import json
        h = hashlib.sha256(json.dumps([[p.fingerprint for p in self.parts], self.weights,
                                       self.stats, self.stats_weight]).encode())
        if self.stats and hasattr(self, "stats_mean_"):
            h.update(self.stats_mean_.tobytes() + self.stats_std_.tobytes())
        return f"{self.type}:{h.hexdigest()[:16]}"

    def get_config(self) -> dict:
        return {"type": self.type, "parts": [p.get_config() for p in self.parts],
                "weights": self.weights, "stats": self.stats, "stats_weight": self.stats_weight}

    def get_arrays(self) -> dict:
        out = {}
        for i, p in enumerate(self.parts):
            out.update({f"p{i}_{k}": v for k, v in p.get_arrays().items()})
        if self.stats and hasattr(self, "stats_mean_"):
            out["stats_mean"], out["stats_std"] = self.stats_mean_, self.stats_std_
        return out

    @classmethod
    def from_state(cls, config, arrays):
        try:
            parts = [encoder_from_state(c, {k[len(f"p{i}_"):]: v for k, v in arrays.items()
                                            if k.startswith(f"p{i}_")})
                     for i, c in enumerate(config["parts"])]
            enc = cls(parts=parts, weights=config["weights"], stats=config["stats"],
                      stats_weight=config.get("stats_weight", 0.5))
        except (KeyError, TypeError) as e:
            raise ModelFormatError(f"saved union encoder is incomplete ({e!r})") from None
        if enc.stats and "stats_mean" in arrays:
            enc.stats_mean_ = arrays["stats_mean"].astype(np.float32)
            enc.stats_std_ = arrays["stats_std"].astype(np.float32)
        return enc
