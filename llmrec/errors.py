"""One exception family for llmrec.

Every error that llmrec raises on purpose derives from :class:`LLMRecError`, so a
caller can catch them all at once, and the CLI can turn them into one clear line.
Each subclass also derives from the closest built-in exception, so existing
``except ValueError`` / ``except KeyError`` code keeps working.

Messages name the file, row, column or field at fault and say what to do.
"""

from __future__ import annotations


class LLMRecError(Exception):
    """Base class of every error llmrec raises on purpose."""


class DataFormatError(LLMRecError, ValueError):
    """Input data is malformed: missing columns, bad values, corrupt files."""


class UnknownIdError(LLMRecError, LookupError):
    """A prompt id or LLM name is not known to the records or the model."""

    def __str__(self) -> str:  # LookupError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(LLMRecError, RuntimeError):
    """A method that needs a fitted estimator was called before ``fit``."""


class CapabilityError(LLMRecError, NotImplementedError):
    """A router was asked to do something its capability flags say it cannot."""


class ModelFormatError(LLMRecError, ValueError):
    """A saved model or cache entry is corrupt, of a wrong version or mismatched."""


class ConfigError(LLMRecError, ValueError):
    """An invalid parameter or option value."""


class DatasetNotFoundError(LLMRecError, FileNotFoundError):
    """A named dataset is neither cached, nor local, nor downloadable."""


__all__ = [
    "LLMRecError",
    "DataFormatError",
    "UnknownIdError",
    "NotFittedError",
    "CapabilityError",
    "ModelFormatError",
    "ConfigError",
    "DatasetNotFoundError",
]
