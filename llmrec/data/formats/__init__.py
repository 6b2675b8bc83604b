"""Readers and writers of every records format llmrec meets, one small module each.

Every reader returns :class:`~llmrec.data.PerformanceRecords` with a prompt table
(``prompt_id, text, benchmark, category`` + extras) and an LLM table (``name`` +
``params_b, price_input, price_output, provider`` where known). Bad input raises
:class:`~llmrec.errors.DataFormatError` naming the file and the row / column / field.
"""

from .embedllm import read_embedllm
from .llmrouter import read_llm_table, read_llmrouter
from .long import read_long, write_long
from .mmlu_pro import read_mmlu_pro, read_mmlu_pro_zips
from .routellm import read_mt_bench, read_routellm_csv
from .routerbench import read_routerbench
from .routerdc import read_routerdc
from .routereval import (RestrictedUnpickler, load_pickle_safely, read_routereval,
                         routereval_pools, write_routereval)

__all__ = ["read_long", "write_long", "read_mmlu_pro", "read_mmlu_pro_zips",
           "read_routereval", "write_routereval", "routereval_pools", "load_pickle_safely",
           "RestrictedUnpickler", "read_routerbench", "read_routerdc", "read_llmrouter",
           "read_llm_table", "read_routellm_csv", "read_mt_bench", "read_embedllm"]
