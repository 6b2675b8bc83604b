"""Append-only JSONL logs (feedback, decisions) with crash-safe group commit.

:class:`AppendLog` is the one writer of every append-only log the service keeps
(the feedback log here; the decision log reuses it). Its guarantees:

* **durable when acknowledged**: ``append`` returns only after the records' bytes
  were written and ``fsync``-ed; a crash after that never loses them;
* **group commit**: concurrent appends (threads) share one write and one fsync,
  so a burst of requests costs about one fsync, not one each;
* **torn tail repaired on open**: a crash (or a full disk) in the middle of a write
  can leave a last line without its newline; on open that tail is moved aside to
  ``<log>.torn-<time>-<pid>`` and the log truncated to its last complete line, so
  the next record never lands on a torn line. A failed write in a running process is
  cut off the same way before the next one;
* **at-least-once, deduplicated**: every record carries an id (``record_id``, or
  the id field given); a record whose id is already in the log is not written again,
  so a client that retries an unacknowledged request (same ids) gets each record in
  the log once. A crash after the write but before the acknowledgement can keep
  records the client never saw acknowledged: retry them with the same ids;
* **size limits**: a record larger than ``max_record_bytes`` is refused; values must
  be finite JSON numbers and valid Unicode (no lone surrogates).

Several processes may share a log (each commit holds an ``flock`` and first reads
the ids the others appended); the ids seen are kept in memory.

Feedback lines are ``{"record_id", "prompt_id", "text", "llm", "score", "time"}``
(plus ``decision_id`` when the outcome answers a logged decision); ``prompt_id`` is
a hash of the text, so the log is a long table that :func:`read_feedback_log` (and
``llmrec fit --data <log>``) turns into :class:`~llmrec.data.PerformanceRecords`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import uuid
import warnings

try:  # POSIX file locks: several processes may share one log
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .._failpoints import failpoint, hit as _fp_hit, kill as _fp_kill
from ..data.records import PerformanceRecords
from ..errors import DataFormatError
from ._json import orjson as _orjson

FEEDBACK_FIELDS = ("prompt_id", "text", "llm", "score", "time")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def prompt_hash(text: str) -> str:
    """Stable prompt id of a prompt text: ``"fb-"`` + 16 hex digits of its SHA-256.

    Examples
    --------
    >>> prompt_hash("What is 2+2?")
    'fb-52cb6b5e4a038af1'
    """
    return "fb-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class AppendResult:
    """What one :meth:`AppendLog.append` did: records written, ids already present."""

    written: int = 0
    duplicates: list = field(default_factory=list)
    ids: list = field(default_factory=list)


@dataclass
class _Request:
    items: list                       # (record id, encoded line)
    done: bool = False
    result: AppendResult | None = None
    error: BaseException | None = None


class AppendLog:
    """Crash-safe, append-only JSONL log with group commit and record-id dedupe.

    Parameters
    ----------
    path : str or Path
        The log file; repaired when opened, created (with its folder) by the first
        append.
    id_field : str
        Field holding each record's id; a missing id is set to a fresh uuid4 hex.
    max_record_bytes : int
        Largest encoded record (one line); larger ones raise
        :class:`~llmrec.errors.DataFormatError` and nothing of that call is written.

    Attributes
    ----------
    repaired : Path or None
        Where a torn tail found on open was moved (None: the log was whole).

    Examples
    --------
    >>> import tempfile, os
    >>> log = AppendLog(os.path.join(tempfile.mkdtemp(), "log.jsonl"))
    >>> r = log.append([{"record_id": "a1", "x": 1}, {"x": 2}])
    >>> r.written, log.append([{"record_id": "a1", "x": 1}]).duplicates
    (2, ['a1'])
    """

    def __init__(self, path, id_field: str = "record_id", max_record_bytes: int = 1 << 20):
        self.path = Path(path)
        self.id_field = id_field
        self.max_record_bytes = int(max_record_bytes)
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._writing = False
        self._needs_repair = False
        self.commits = 0  # fsyncs done (group commits), for tests and metrics
        self.repaired = repair_tail(self.path)
        self._ids = self._scan_ids()
        self._fd: int | None = None  # opened (and the file created) by the first append
        self._size = 0
        self._closed = False

    def _ensure_open(self) -> int:
        """The open file; reopened when the path now names another file (rotated or
        removed), so an acknowledged record is always in the file at ``path``."""
        if self._closed:
            raise ValueError(f"{self.path}: the log is closed")
        if self._fd is not None:
            try:
                st = os.stat(self.path)
                same = os.path.samestat(st, os.fstat(self._fd))
            except FileNotFoundError:
                same = False
            if same:
                return self._fd
            os.close(self._fd)
            self._fd = None
            self._needs_repair = False  # that file is no longer the log
            repair_tail(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        return self._fd

    def _scan_ids(self) -> set:
        ids = set()
        if not self.path.is_file():
            return ids
        key = f'"{self.id_field}"'.encode()
        with open(self.path, "rb") as f:
            for line in f:
                if key not in line:
                    continue
                try:
                    v = json.loads(line).get(self.id_field)
                except (ValueError, AttributeError):
                    continue
                if v is not None:
                    ids.add(str(v))
        return ids

    def close(self) -> None:
        """Close the file (appends after this raise)."""
        with self._cond:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            if getattr(self, "_fd", None) is not None:
                os.close(self._fd)
        except OSError:
            pass

    def encode(self, records: Iterable[Mapping], trusted: bool = False
               ) -> list[tuple[str, bytes]]:
        """Check and encode records (ids assigned); raises DataFormatError, writes nothing.

        ``trusted`` records (the service's own decisions) are encoded with orjson when
        it is installed, about 15x faster; a non-finite number there is written as
        null instead of being refused.
        """
        out = []
        if trusted and _orjson is not None:
            records = list(records)
            for r in records:
                r = dict(r)
                rid = r.get(self.id_field)
                if rid is None:
                    rid = r[self.id_field] = uuid.uuid4().hex
                elif not isinstance(rid, str) or not 0 < len(rid) <= 200:
                    break  # the checked path below gives the precise error
                try:
                    line = _orjson.dumps(r, option=_orjson.OPT_SERIALIZE_NUMPY)
                except TypeError:  # orjson.JSONEncodeError: let the checked path explain
                    break
                if len(line) + 1 > self.max_record_bytes:
                    break
                out.append((rid, line + b"\n"))
            else:
                return out
            out = []
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise DataFormatError(f"record {i}: must be an object, got {type(r).__name__}")
            r = dict(r)
            rid = r.get(self.id_field)
            if rid is None:
                rid = uuid.uuid4().hex
            elif not isinstance(rid, str) or not 0 < len(rid) <= 200:
                raise DataFormatError(f"record {i}: '{self.id_field}' must be a string of "
                                      "1 to 200 characters")
            r[self.id_field] = rid
            try:
                line = json.dumps(r, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except ValueError as e:  # NaN/inf (allow_nan) or a lone surrogate (utf-8)
                what = "text is not valid Unicode (lone surrogate)" \
                    if isinstance(e, UnicodeError) else "numbers must be finite"
                raise DataFormatError(f"record {i}: {what}") from None
            except TypeError as e:
                raise DataFormatError(f"record {i}: not JSON-serialisable ({e})") from None
            if len(line) + 1 > self.max_record_bytes:
                raise DataFormatError(f"record {i}: {len(line) + 1} bytes; the limit is "
                                      f"{self.max_record_bytes}")
            out.append((rid, line + b"\n"))
        return out

    def append(self, records: Iterable[Mapping], trusted: bool = False) -> AppendResult:
        """Append records durably (written and fsynced when this returns).

        Records whose id is already in the log (or earlier in this call) are skipped
        and listed in ``duplicates``. Raises :class:`~llmrec.errors.DataFormatError`
        for a bad record (nothing written) and ``OSError`` when the write or fsync
        failed (nothing of this call is acknowledged; the log is cut back to its last
        complete record).
        """
        items = self.encode(records, trusted)
        if not items:
            return AppendResult()
        req = _Request(items)
        with self._cond:
            self._queue.append(req)
            while not req.done:
                if self._writing:  # another thread is committing: it may take ours next
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if req.error is not None:
            raise req.error
        return req.result

    def _commit(self, batch: list[_Request]) -> None:
        """Write every request of the batch with one write + one fsync (leader only).

        The file is flock-ed for the write, so several processes (``serve --workers``)
        can share a log: each first reads the ids the others appended since its last
        write, and cuts a failed write back to the size it found under the lock."""
        locked = False
        try:
            if any(req.items for req in batch):
                self._ensure_open()
                locked = self._lock_and_catch_up()
            new_ids, chunks, results = set(), [], []
            for req in batch:
                res = AppendResult()
                for rid, line in req.items:
                    res.ids.append(rid)
                    if rid in self._ids or rid in new_ids:
                        res.duplicates.append(rid)
                        continue
                    new_ids.add(rid)
                    chunks.append(line)
                    res.written += 1
                results.append(res)
            data = b"".join(chunks)
            if data:
                if self._needs_repair:  # an earlier failed write could not be cut off
                    os.ftruncate(self._fd, self._size)
                    os.fsync(self._fd)
                    self._needs_repair = False
                try:
                    view = memoryview(data)
                    if _fp_hit("log:mid-write"):  # half a write, then a kill -9
                        os.write(self._fd, view[:max(1, len(view) // 2)])
                        _fp_kill()
                    while view:
                        n = os.write(self._fd, view)
                        view = view[n:]
                    failpoint("log:written")
                    os.fsync(self._fd)
                    failpoint("log:fsynced")
                except BaseException:
                    try:  # cut the failed write off: the log ends on a complete record
                        os.ftruncate(self._fd, self._size)
                        os.fsync(self._fd)
                    except OSError:
                        self._needs_repair = True
                    raise
                self._size += len(data)
                self._ids |= new_ids
                self.commits += 1
            for req, res in zip(batch, results):
                req.result, req.done = res, True
        except BaseException as e:  # every request of the batch fails, none is acknowledged
            for req in batch:
                req.error, req.done = e, True
        finally:
            if locked:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                except (OSError, TypeError):
                    pass

    def _lock_and_catch_up(self) -> bool:
        """flock the log; read ids other writers appended since our last write."""
        if fcntl is None:  # pragma: no cover - not on Linux
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:  # no flock on this file system: one writer only
            return False
        size = os.fstat(self._fd).st_size
        if size > self._size and not self._needs_repair:
            key = f'"{self.id_field}"'.encode()
            with open(self.path, "rb") as f:
                f.seek(self._size)
                for line in f.read(size - self._size).split(b"\n"):
                    if key in line:
                        try:
                            v = json.loads(line).get(self.id_field)
                        except (ValueError, AttributeError):
                            continue
                        if v is not None:
                            self._ids.add(str(v))
        if not self._needs_repair:
            self._size = size
        return True


def repair_tail(path) -> Path | None:
    r"""Move a torn last line of a JSONL log aside; returns where it went (or None).

    A crash or a full disk in the middle of an append can leave a last line without
    its newline. Its bytes are copied to ``<log>.torn-<UTC time>-<pid>`` (fsynced),
    then the log is truncated to its last complete line, so the next append starts on
    a fresh line. A log that ends with a newline is left alone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
    >>> _ = p.write_bytes(b'{"a": 1}\n{"a": 2')
    >>> aside = repair_tail(p)
    >>> p.read_bytes(), aside.read_bytes()
    (b'{"a": 1}\n', b'{"a": 2')
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(p, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        pos, cut, block = size, 0, 1 << 16
        while pos > 0:  # find the last newline, reading backwards
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        f.seek(cut)
        tail = f.read()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = p.with_name(f"{p.name}.torn-{stamp}-{os.getpid()}")
        with open(aside, "wb") as g:
            g.write(tail)
            g.flush()
            os.fsync(g.fileno())
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    try:
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return aside


def check_feedback_record(i: int, r: Mapping) -> tuple[str, str, float]:
    """Validate one feedback record's text, LLM and score; returns them (score float).

    Examples
    --------
    >>> check_feedback_record(0, {"text": "hi", "llm": "m", "score": 1})
    ('hi', 'm', 1.0)
    """
    text, llm, score = r.get("text"), r.get("llm"), r.get("score")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(f"feedback record {i}: 'text' must be a non-blank string")
    if not isinstance(llm, str) or not llm:
        raise DataFormatError(f"feedback record {i}: 'llm' must be a non-empty string")
    if isinstance(score, bool):
        score = float(score)
    try:
        score = float(score)
    except (TypeError, ValueError, OverflowError):
        raise DataFormatError(f"feedback record {i}: 'score' {score!r} is not a number") \
            from None
    if not math.isfinite(score) or abs(score) > _FLOAT32_MAX:
        raise DataFormatError(f"feedback record {i}: 'score' must be a finite number that "
                              "float32 can hold")
    return text, llm, score


class FeedbackLog(AppendLog):
    """Append-only JSONL log of observed outcomes, safe for concurrent appends.

    An :class:`AppendLog` whose records are checked feedback (``text``, ``llm``,
    ``score``, optional ``record_id`` and ``decision_id``).

    Parameters
    ----------
    path : str or Path
        The log file; created (with its folder) when the log is opened.
    max_record_bytes : int
        Largest record (one JSON line).

    Examples
    --------
    >>> import tempfile, os
    >>> log = FeedbackLog(os.path.join(tempfile.mkdtemp(), "fb.jsonl"))
    >>> log.append([{"text": "hi", "llm": "m1", "score": 1.0}])
    1
    >>> read_feedback_log(log.path).n_observed
    1
    """

    def __init__(self, path, max_record_bytes: int = 1 << 20):
        super().__init__(path, id_field="record_id", max_record_bytes=max_record_bytes)

    def feedback_lines(self, records: Iterable[Mapping]) -> list[dict]:
        """Checked feedback records as log objects (raises DataFormatError)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = []
        for i, r in enumerate(records):
            text, llm, score = check_feedback_record(i, r)
            obj = {"prompt_id": prompt_hash(text) if _is_unicode(text) else None,
                   "text": text, "llm": llm, "score": score, "time": now}
            if obj["prompt_id"] is None:
                raise DataFormatError(f"feedback record {i}: 'text' is not valid Unicode "
                                      "(lone surrogate)")
            for extra in ("record_id", "decision_id"):
                if r.get(extra) is not None:
                    obj[extra] = r[extra]
            out.append(obj)
        return out

    def append_feedback(self, records: Iterable[Mapping]) -> AppendResult:
        """Check and append feedback records; see :meth:`AppendLog.append`."""
        return AppendLog.append(self, self.feedback_lines(records))

    def append(self, records: Iterable[Mapping]) -> int:  # type: ignore[override]
        """Append feedback records (``text``, ``llm``, ``score``); returns how many were
        written (records whose ``record_id`` is already logged are skipped)."""
        return self.append_feedback(records).written

    def append_json(self, objects: Iterable[Mapping]) -> int:
        """Append arbitrary JSON objects, one line each, through the same crash-safe
        group commit (used by :class:`~llmrec.service.decisions.DecisionLog`); each gets
        a ``record_id`` when it has none; returns how many were written.

        Examples
        --------
        >>> import tempfile, os
        >>> FeedbackLog(os.path.join(tempfile.mkdtemp(), "d.jsonl")).append_json([{"a": 1}])
        1
        """
        return AppendLog.append(self, list(objects), trusted=True).written


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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

    A torn last line (a crash while writing) is skipped; a record id seen before (a
    retried write) counts once; a score that is not a finite float32 number is skipped
    with a warning naming its line; any other bad line raises
    :class:`~llmrec.errors.DataFormatError` naming the line.

    Examples
    --------
    >>> import tempfile, os
    >>> log = FeedbackLog(os.path.join(tempfile.mkdtemp(), "fb.jsonl"))
    >>> _ = log.append([{"text": "q", "llm": "a", "score": 1},
    ...                 {"text": "q", "llm": "a", "score": 0}])
    >>> float(read_feedback_log(log.path).dense()[0, 0])
    0.5
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(f"{p}: feedback log not found")
    rows, seen, bad_scores = [], set(), []
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
        try:
            sc = float(obj["score"])
        except (TypeError, ValueError):
            sc = float("nan")
        if not math.isfinite(sc) or abs(sc) > _FLOAT32_MAX:
            bad_scores.append(i + 1)  # an old writer let these in; they cannot be stored
            continue
        rid = obj.get("record_id")
        if rid is not None:  # at-least-once writes: a retried record counts once
            if rid in seen:
                continue
            seen.add(rid)
        rows.append(obj)
    if bad_scores:
        warnings.warn(f"{p}: skipped {len(bad_scores)} record(s) whose score is not a finite "
                      f"float32 number (line(s) {bad_scores[:10]})", UserWarning, stacklevel=2)
    if not rows:
        raise DataFormatError(f"{p}: the feedback log holds no records")
    df = pd.DataFrame(rows)
    prompts = df[["prompt_id", "text"]].drop_duplicates("prompt_id").reset_index(drop=True)
    prompts["benchmark"] = "feedback"
    return PerformanceRecords.from_long(df, prompts=prompts, on_duplicate=on_duplicate,
                                        cost_col=None, name=p.stem, source=str(p))
