"""Layer 1: the performance-records data layer (records, readers, splits, pools, synthetic)."""

from .records import FORMAT_VERSION, PerformanceRecords

__all__ = ["PerformanceRecords", "FORMAT_VERSION"]
