"""Layer 1: the performance-records data layer (records, readers, splits, pools, synthetic)."""

from .records import FORMAT_VERSION, SCORE_KINDS, PerformanceRecords, infer_score_kind

__all__ = ["PerformanceRecords", "FORMAT_VERSION", "SCORE_KINDS", "infer_score_kind"]

from .pools import (GROUPS, candidate_pools, oracle_score, routereval_levels,  # noqa: E402
                    select_candidates)
from .splits import (ColdLLMSplit, Split, cold_llm_split, cold_prompt_split,  # noqa: E402
                     routereval_split, split_from_indices)

__all__ += ["Split", "ColdLLMSplit", "cold_prompt_split", "routereval_split",
            "split_from_indices", "cold_llm_split", "select_candidates", "candidate_pools",
            "oracle_score", "routereval_levels", "GROUPS"]

from .decisions import read_decisions  # noqa: E402

__all__ += ["read_decisions"]
