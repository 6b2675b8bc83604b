"""Layer 3's top-k machinery: FAISS index over LLM vectors and the numpy path."""

from .index import HAVE_FAISS, LLMIndex, topk_scores
from .neighbours import ExactNeighbours

__all__ = ["LLMIndex", "topk_scores", "HAVE_FAISS", "ExactNeighbours"]
