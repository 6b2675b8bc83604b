"""Layer 3's top-k machinery: FAISS index over LLM vectors and the numpy path."""

from .index import HAVE_FAISS, LLMIndex, tie_break_argmax, tie_ranks, topk_scores
from .neighbours import ExactNeighbours, IVFNeighbours

__all__ = ["LLMIndex", "topk_scores", "tie_ranks", "tie_break_argmax", "HAVE_FAISS",
           "ExactNeighbours", "IVFNeighbours"]
