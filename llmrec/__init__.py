"""llmrec: route prompts to LLMs as a recommendation problem.

Prompts are users, LLMs are items, per-prompt evaluation records are interactions.
Importing llmrec does no I/O and loads no model.
"""

from ._version import __version__
from .data.records import PerformanceRecords
from .errors import (CapabilityError, ConfigError, DataFormatError, LLMRecError,
                     ModelFormatError, NotFittedError, UnknownIdError)

__all__ = [
    "__version__",
    "PerformanceRecords",
    "LLMRecError",
    "DataFormatError",
    "UnknownIdError",
    "NotFittedError",
    "CapabilityError",
    "ModelFormatError",
    "ConfigError",
]
