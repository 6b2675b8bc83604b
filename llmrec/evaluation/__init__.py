"""Layer 4: evaluation. Metrics are plain functions of arrays; protocols drive routers.

Protocols, plots, the bench runner and the demo are imported lazily (they pull in
routers and matplotlib): ``from llmrec.evaluation.protocols import ...``.
"""

from .metrics import (REFERENCE_SCORES, aiq, apgr, bootstrap_ci, cascade_metrics,
                      entropy_bits, hit_at_k, hits_per_prompt, mrr, ndcg_at_k, oracle_mix_metrics,
                      paired_test, picked_scores, quality_cost_curve, recall_at_k, route_picks,
                      routereval_metrics, selection_entropy_bits, selection_share,
                      softmax_entropy_bits, success_matrix)

__all__ = ["REFERENCE_SCORES", "aiq", "apgr", "bootstrap_ci", "cascade_metrics",
           "entropy_bits", "hit_at_k", "hits_per_prompt", "mrr", "ndcg_at_k", "oracle_mix_metrics",
           "paired_test", "picked_scores", "quality_cost_curve", "recall_at_k", "route_picks",
           "routereval_metrics", "selection_entropy_bits", "selection_share",
           "softmax_entropy_bits", "success_matrix"]

_LAZY = {"run_bench": "bench", "run_demo": "demo", "routereval_protocol": "protocols",
         "cold_prompt_protocol": "protocols", "cold_llm_protocol": "protocols",
         "scaling_curve": "protocols", "ProtocolResult": "protocols"}
__all__ += list(_LAZY)


def __getattr__(name):  # PEP 562: protocols / bench / demo import routers and matplotlib
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
