"""Prompt features = encoder output [+ documented side features].

Side features, appended after the encoder's columns in this order when enabled:

* ``benchmark``: one-hot of the prompt's benchmark, over the benchmarks seen in
  training (sorted); an unseen or missing benchmark is all zeros.
* ``category``: the same for the ``category`` column.
* ``length``: ``log1p(number of characters) / 10``.

:func:`as_prompt_frame` is the one place where the inputs that routers accept are
normalised: a list of texts, a single text, a DataFrame with a ``text`` column, or a
:class:`~llmrec.data.PerformanceRecords` (its prompt table).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..errors import ConfigError, DataFormatError
from .base import Encoder, check_dim

SIDE_FEATURES = ("benchmark", "category", "length")


def as_prompt_frame(prompts) -> pd.DataFrame:
    """Normalise prompt input to a DataFrame with ``prompt_id, text, benchmark, category``."""
    if isinstance(prompts, PerformanceRecords):
        df = prompts.prompts.copy()
        df["text"] = prompts.texts
    elif isinstance(prompts, pd.DataFrame):
        if "text" not in prompts.columns:
            raise DataFormatError(f"prompt table has no 'text' column (columns: "
                                  f"{list(prompts.columns)})")
        df = prompts.reset_index(drop=True).copy()
    elif isinstance(prompts, str):
        df = pd.DataFrame({"text": [prompts]})
    else:
        try:
            texts = list(prompts)
        except TypeError:
            raise DataFormatError(f"prompts must be texts, a DataFrame with 'text' or "
                                  f"PerformanceRecords, got {type(prompts).__name__}") from None
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataFormatError(f"prompt {i} is a {type(t).__name__}, expected text")
        df = pd.DataFrame({"text": texts})
    for col in ("prompt_id", "benchmark", "category"):
        if col not in df.columns:
            df[col] = None
    df["text"] = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
                  for t in df["text"]]
    return df


def _plain_texts(prompts) -> list[str] | None:
    """``prompts`` as a list when it is a text or a list/tuple of texts, else None.

    Such input needs none of :func:`as_prompt_frame`'s work (it has no prompt ids,
    benchmarks or categories); building the DataFrame costs about 0.5 ms per call,
    as much as scoring one prompt.
    """
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)) and all(type(t) is str for t in prompts):
        return list(prompts)
    return None


class PromptFeaturizer:
    """Encoder plus optional side features; fitted on the training prompts.

    Parameters
    ----------
    encoder : Encoder
    side_features : sequence of {"benchmark", "category", "length"}

    Examples
    --------
    >>> from llmrec.encoders import TfidfEncoder, PromptFeaturizer
    >>> f = PromptFeaturizer(TfidfEncoder(dim=4), side_features=("length",))
    >>> X = f.fit(["a cat", "a dog", "the sum of two numbers"]).transform(["a cat"])
    >>> X.shape == (1, f.dim)
    True
    """

    def __init__(self, encoder: Encoder, side_features: Sequence[str] = ()):
        self.encoder = encoder
        self.side_features = tuple(side_features)

    def _check(self):
        bad = [s for s in self.side_features if s not in SIDE_FEATURES]
        if bad:
            raise ConfigError(f"unknown side feature(s) {bad}; choose from {SIDE_FEATURES}")

    def fit(self, prompts) -> "PromptFeaturizer":
        self._check()
        df = as_prompt_frame(prompts)
        if self.encoder.requires_fit:
            self.encoder.fit(list(df["text"]))
        self.levels_ = {}
        for col in ("benchmark", "category"):
            if col in self.side_features:
                vals = df[col].dropna().astype(str)
                self.levels_[col] = sorted(set(vals[vals != ""]))
        return self

    @property
    def dim(self) -> int:
        d = self.encoder.dim
        for col in ("benchmark", "category"):
            if col in self.side_features:
                d += len(self.levels_[col])
        return d + (1 if "length" in self.side_features else 0)

    def transform(self, prompts, show_progress: bool | None = None) -> np.ndarray:
        """Features of the prompts; a 2-D numeric array is taken as precomputed features."""
        if isinstance(prompts, np.ndarray) and prompts.dtype.kind in "fiu":
            return check_dim(prompts, self.dim, "precomputed features")
        texts = _plain_texts(prompts)
        if texts is not None and not self.side_features:  # the serving path: no frame
            return self.encoder.encode(texts, show_progress=show_progress)
        df = as_prompt_frame(prompts)
        X = self.encoder.encode(list(df["text"]), show_progress=show_progress)
        return np.hstack([X] + self._side(df)).astype(np.float32) if self.side_features else X

    def _side(self, df: pd.DataFrame) -> list[np.ndarray]:
        out = []
        for col in ("benchmark", "category"):
            if col in self.side_features:
                levels = self.levels_[col]
                idx = pd.Index(levels).get_indexer(df[col].astype(str))
                oh = np.zeros((len(df), len(levels)), dtype=np.float32)
                ok = idx >= 0
                oh[np.flatnonzero(ok), idx[ok]] = 1.0
                out.append(oh)
        if "length" in self.side_features:
            n_chars = np.fromiter((len(t) for t in df["text"]), dtype=np.float32,
                                  count=len(df))
            out.append((np.log1p(n_chars) / 10.0)[:, None].astype(np.float32))
        return out

    def get_config(self) -> dict:
        return {"encoder": self.encoder.get_config(), "side_features": list(self.side_features),
                "levels": getattr(self, "levels_", {}),
                "encoder_fingerprint": self.encoder.fingerprint}

    @classmethod
    def from_state(cls, config: dict, arrays: dict) -> "PromptFeaturizer":
        from .base import encoder_from_state
        f = cls(encoder_from_state(config["encoder"], arrays), config["side_features"])
        f.levels_ = {k: list(v) for k, v in config.get("levels", {}).items()}
        return f
