"""Layer 4: evaluation. Metrics are plain functions of arrays; protocols drive routers.

Protocols, plots, the bench runner and the demo are imported lazily (they pull in
routers and matplotlib): ``from llmrec.evaluation.protocols import ...``.
"""

from .metrics import (REFERENCE_SCORES, aiq, apgr, bootstrap_ci, cascade_metrics,
                      entropy_bits, hit_at_k, mrr, ndcg_at_k, oracle_mix_metrics,
                      paired_test, picked_scores, quality_cost_curve, recall_at_k,
                      routereval_metrics, selection_entropy_bits, selection_share,
                      softmax_entropy_bits, success_matrix)

__all__ = ["REFERENCE_SCORES", "aiq", "apgr", "bootstrap_ci", "cascade_metrics",
           "entropy_bits", "hit_at_k", "mrr", "ndcg_at_k", "oracle_mix_metrics",
           "paired_test", "picked_scores", "quality_cost_curve", "recall_at_k",
           "routereval_metrics", "selection_entropy_bits", "selection_share",
           "softmax_entropy_bits", "success_matrix"]
