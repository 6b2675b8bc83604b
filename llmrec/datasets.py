"""Datasets: ``load(name_or_path)``, ``list_datasets()``, ``info(records)`` and the
synthetic default.

Examples
--------
>>> from llmrec import datasets
>>> rec = datasets.load("synthetic")
>>> print(datasets.info(rec).splitlines()[0])
<PerformanceRecords 'synthetic(seed=0)': 2000 prompts x 20 LLMs, 100.0% observed>
"""

from __future__ import annotations

from .data.records import PerformanceRecords
from .data.registry import data_home, download, get_spec, list_datasets, load, read_path
from .data.synthetic import make_synthetic


def info(records: PerformanceRecords) -> str:
    """A short description of records: shape, observed share, benchmarks, per-LLM mean
    (the same text as :meth:`PerformanceRecords.summary`)."""
    return records.summary()


__all__ = ["make_synthetic", "load", "list_datasets", "info", "read_path", "get_spec",
           "download", "data_home"]
