"""Dataset registry: ``load(name_or_path)`` and the synthetic default.

(Readers for the real sources are registered in ``llmrec.data.registry``.)
"""

from __future__ import annotations

from .data.synthetic import make_synthetic

__all__ = ["make_synthetic"]
