"""Append-only feedback log: observed outcomes (prompt text, LLM, score) as JSONL.

Each line is one record ``{"prompt_id", "text", "llm", "score", "time"}``;
``prompt_id`` is a hash of the text, so the log is a long table that
:func:`read_feedback_log` (and ``llmrec fit --data <log>``) turns into
:class:`~llmrec.data.PerformanceRecords`. Every append is flushed and fsynced
before it returns, so an acknowledged feedback survives a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..errors import DataFormatError

FEEDBACK_FIELDS = ("prompt_id", "text", "llm", "score", "time")


def prompt_hash(text: str) -> str:
    """Stable prompt id of a prompt text: ``"fb-"`` + 16 hex digits of its SHA-256.

    Examples
    --------
    >>> prompt_hash("What is 2+2?")
    'fb-52cb6b5e4a038af1'
    """
    return "fb-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FeedbackLog:
    """Append-only JSONL log of observed outcomes, safe for concurrent appends.

    Parameters
    ----------
    path : str or Path
        The log file; created (with its folder) on the first append.

    Examples
    --------
    >>> import tempfile, os
    >>> log = FeedbackLog(os.path.join(tempfile.mkdtemp(), "fb.jsonl"))
    >>> log.append([{"text": "hi", "llm": "m1", "score": 1.0}])
    1
    >>> read_feedback_log(log.path).n_observed
    1
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, records: Iterable[Mapping]) -> int:
        """Append records (``text``, ``llm``, ``score``); returns how many were written."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for i, r in enumerate(records):
            text, llm, score = r.get("text"), r.get("llm"), r.get("score")
            if not isinstance(text, str) or not text:
                raise DataFormatError(f"feedback record {i}: 'text' must be a non-empty string")
            if not isinstance(llm, str) or not llm:
                raise DataFormatError(f"feedback record {i}: 'llm' must be a non-empty string")
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise DataFormatError(f"feedback record {i}: 'score' {score!r} is not a number") \
                    from None
            if not np.isfinite(score):
                raise DataFormatError(f"feedback record {i}: 'score' must be finite")
            lines.append(json.dumps({"prompt_id": prompt_hash(text), "text": text, "llm": llm,
                                     "score": score, "time": now}, ensure_ascii=False))
        return self._write_lines(lines)

    def append_json(self, objects: Iterable[Mapping]) -> int:
        """Append arbitrary JSON objects, one line each, through the same locked, fsynced
        write (used by :class:`~llmrec.service.decisions.DecisionLog`); returns the count.

        Examples
        --------
        >>> import tempfile, os
        >>> FeedbackLog(os.path.join(tempfile.mkdtemp(), "d.jsonl")).append_json([{"a": 1}])
        1
        """
        return self._write_lines([json.dumps(o, ensure_ascii=False) for o in objects])

    def _write_lines(self, lines: list) -> int:
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(lines)


def is_feedback_log(path) -> bool:
    """True when ``path`` is a JSONL file whose first line has the feedback fields."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".jsonl", ".ndjson"):
        return False
    try:
        with open(p, encoding="utf-8") as f:
            first = f.readline()
        return set(FEEDBACK_FIELDS) <= set(json.loads(first))
    except (OSError, ValueError, TypeError):
        return False


def read_feedback_log(path, on_duplicate: str = "mean") -> PerformanceRecords:
    """Read a feedback log as records (prompts with their text; repeats averaged).

    A torn last line (a crash while writing) is skipped; any other bad line raises
    :class:`~llmrec.errors.DataFormatError` naming the line.

    Examples
    --------
    >>> import tempfile, os
    >>> log = FeedbackLog(os.path.join(tempfile.mkdtemp(), "fb.jsonl"))
    >>> _ = log.append([{"text": "q", "llm": "a", "score": 1}, {"text": "q", "llm": "a", "score": 0}])
    >>> float(read_feedback_log(log.path).dense()[0, 0])
    0.5
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(f"{p}: feedback log not found")
    rows = []
    with open(p, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # torn final line without newline
                continue
            raise DataFormatError(f"{p}, line {i + 1}: not valid JSON; fix or delete that "
                                  "line") from None
        missing = [k for k in ("prompt_id", "text", "llm", "score") if k not in obj]
        if missing:
            raise DataFormatError(f"{p}, line {i + 1}: missing field(s) {missing}")
        rows.append(obj)
    if not rows:
        raise DataFormatError(f"{p}: the feedback log holds no records")
    df = pd.DataFrame(rows)
    prompts = df[["prompt_id", "text"]].drop_duplicates("prompt_id").reset_index(drop=True)
    prompts["benchmark"] = "feedback"
    return PerformanceRecords.from_long(df, prompts=prompts, on_duplicate=on_duplicate,
                                        cost_col=None, name=p.stem, source=str(p))
