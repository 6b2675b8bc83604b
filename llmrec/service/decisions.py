"""The decision log: every routing decision the service makes, one JSON line each.

Both faces that choose an LLM write here: ``POST /v1/recommend`` (one decision per
prompt) and the OpenAI-compatible proxy (one per routed chat completion). Each line
follows the schema agreed in ``INTERFACES.md``::

    {"decision_id": "<uuid4 hex>", "time": <unix float>, "prompt_id": "fb-...",
     "text_sha256": "<hex>", "text": "<prompt text, when texts are logged>",
     "candidates": [...], "chosen": "llm", "rank": 0, "score": 0.71,
     "scores": [<per candidate, same order>], "propensity": 1.0, "policy": "greedy",
     "router": "knn", "router_version": "<model fingerprint>", "source": "recommend"|"proxy"}

Proxy decisions add ``"answered"`` (the LLM whose answer was returned after any
fallback; null when none answered) and ``"attempts"`` (the LLMs tried, in order).
``prompt_id`` is :func:`~llmrec.service.feedback.prompt_hash` of the text (the id the
feedback log uses for the same text) unless the caller gives one.

Outcomes posted later to ``POST /v1/feedback`` as ``{"decision_id", "score"}`` are
written to the feedback log with the decision id, the decision's prompt id and text
and the LLM that answered, so a reader joins them (h15's ``llmrec.data.read_decisions``).

Lines are appended through :class:`~llmrec.service.feedback.FeedbackLog`'s writer
(locked, fsynced) by one background thread that commits everything queued at once
(group commit), so a request never waits for a disk sync; :meth:`DecisionLog.flush`
waits for the queue to reach the disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .feedback import FeedbackLog

log = logging.getLogger("llmrec.service")

_IDS = random.Random(os.urandom(32))  # seeded once per process; os.urandom per id is slow
_ID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_ID_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_decision_id() -> str:
    """A random version-4 UUID as 32 hex digits (from a per-process generator seeded by
    ``os.urandom``: about 20x cheaper than :func:`uuid.uuid4` on a busy machine).

    Examples
    --------
    >>> import uuid
    >>> uuid.UUID(new_decision_id()).version
    4
    """
    # the version (4) and variant (10) bits set as uuid.UUID(..., version=4) sets them
    r = (_IDS.getrandbits(128) & _ID_MASK) | _ID_BITS
    return "%032x" % r


DECISION_FIELDS = ("decision_id", "time", "prompt_id", "text_sha256", "candidates", "chosen",
                   "rank", "score", "scores", "propensity", "policy", "router",
                   "router_version", "source")


def model_fingerprint(model_dir) -> str:
    """The router version the service reports: 16 hex digits of the SHA-256 of the saved
    model's ``manifest.json`` (which holds the checksum of every array file).

    Examples
    --------
    >>> import tempfile, os
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> d = os.path.join(tempfile.mkdtemp(), "m")
    >>> _ = make_router("best-single").fit(make_synthetic(30, 3, seed=0)).save(d)
    >>> len(model_fingerprint(d))
    16
    """
    return hashlib.sha256((Path(model_dir) / "manifest.json").read_bytes()).hexdigest()[:16]


def policy_name(policy) -> str:
    """Name (with parameters) of a policy object; ``"greedy"`` for None."""
    if policy is None:
        return "greedy"
    return str(getattr(policy, "name", None) or type(policy).__name__)


def resolve_policy(policy):
    """None, a policy object (duck-typed ``choose``), or a spec string for
    ``llmrec.policies.make_policy`` (e.g. ``"epsilon-greedy:eps=0.1"``)."""
    if policy is None or not isinstance(policy, str):
        if policy is not None and not callable(getattr(policy, "choose", None)):
            raise ConfigError(f"policy {policy!r} has no choose(scores, mask, rng) method")
        return policy
    if policy == "greedy":
        return None
    try:
        from ..policies import make_policy
    except ImportError:
        raise ConfigError(f"policy {policy!r}: this llmrec has no llmrec.policies; only "
                          "'greedy' is available") from None
    return make_policy(policy)


def choose(ranked: Sequence[int], cand_scores: np.ndarray, policy, rng) -> tuple[int, float]:
    """The chosen candidate column and its propensity.

    ``ranked`` lists candidate columns best first (the router's order, ties already
    broken); ``cand_scores`` holds the router score of each candidate column. Greedy
    (``policy=None``) takes ``ranked[0]`` with propensity 1.0; a policy object's
    ``choose(scores[None, :], None, rng)`` decides otherwise.

    Examples
    --------
    >>> choose([2, 0, 1], np.array([0.5, 0.1, 0.9]), None, None)
    (2, 1.0)
    """
    if policy is None:
        return int(ranked[0]), 1.0
    idx, prop = policy.choose(np.asarray(cand_scores, dtype=np.float64)[None, :], None, rng)
    return int(np.asarray(idx).reshape(-1)[0]), float(np.asarray(prop).reshape(-1)[0])


def choose_many(ranked: np.ndarray, cand_scores: np.ndarray, policy, rng
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose` for many prompts at once: ``ranked`` (n, m) candidate columns best
    first, ``cand_scores`` (n, m) per candidate column; returns (chosen (n,), propensity
    (n,)). One policy call for the whole request.

    Examples
    --------
    >>> choose_many(np.array([[1, 0], [0, 1]]), np.array([[0.1, 0.9], [0.8, 0.2]]), None, None)
    (array([1, 0]), array([1., 1.]))
    """
    n = ranked.shape[0]
    if policy is None:
        return ranked[:, 0].astype(np.int64), np.ones(n)
    idx, prop = policy.choose(np.asarray(cand_scores, dtype=np.float64), None, rng)
    return np.asarray(idx, dtype=np.int64).reshape(n), np.asarray(prop, np.float64).reshape(n)


def new_decision(text: str, candidates: Sequence[str], cand_scores: Sequence[float],
                 ranked: Sequence[int], chosen: int, propensity: float, *, policy: str,
                 router: str, router_version: str, source: str, log_text: bool = True,
                 prompt_id: str | None = None) -> dict:
    """One decision record (the INTERFACES.md schema) with a fresh ``decision_id``.

    Examples
    --------
    >>> d = new_decision("hi", ["a", "b"], [0.2, 0.7], [1, 0], 1, 1.0, policy="greedy",
    ...                  router="knn", router_version="abc", source="recommend")
    >>> d["chosen"], d["rank"], d["prompt_id"]
    ('b', 0, 'fb-8f434346648f6b96')
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    rec = {"decision_id": new_decision_id(), "time": time.time(),
           "prompt_id": prompt_id or "fb-" + digest[:16],  # == prompt_hash(text)
           "text_sha256": digest}
    if log_text:
        rec["text"] = text
    scores = np.asarray(cand_scores, dtype=np.float64)
    rec.update({"candidates": candidates, "chosen": candidates[chosen],
                "rank": list(ranked).index(chosen), "score": float(scores[chosen]),
                "scores": scores.tolist(), "propensity": float(propensity),
                "policy": policy, "router": router, "router_version": router_version,
                "source": source})
    return rec


class DecisionLog:
    """Append-only JSONL log of decisions with an in-memory index for feedback joins.

    Parameters
    ----------
    path : str or Path
        The log file (``decisions.jsonl`` in the service's log directory).
    log_texts : bool
        Write prompt texts (default); off: only their SHA-256.
    index_size : int
        Most recent decisions kept in memory for ``get``; older ones are found by
        scanning the file (also how a worker finds another worker's decisions).
    commit_interval : float
        Seconds between two group commits (one write + fsync each): a decision
        reaches the disk within about this long, and a steady stream costs at most
        1 / commit_interval syncs per second.

    Examples
    --------
    >>> import tempfile, os
    >>> dl = DecisionLog(os.path.join(tempfile.mkdtemp(), "decisions.jsonl"))
    >>> d = new_decision("hi", ["a"], [0.5], [0], 0, 1.0, policy="greedy", router="r",
    ...                  router_version="v", source="recommend")
    >>> dl.record(d)
    >>> dl.flush()
    True
    >>> dl.get(d["decision_id"])["chosen"]
    'a'
    >>> dl.close()
    """

    def __init__(self, path, log_texts: bool = True, index_size: int = 100_000,
                 commit_interval: float = 0.05):
        if int(index_size) < 1:
            raise ConfigError(f"index_size must be >= 1, got {index_size}")
        if not commit_interval >= 0:
            raise ConfigError(f"commit_interval must be >= 0, got {commit_interval}")
        self.commit_interval = float(commit_interval)
        self._last_commit = 0.0
        self._flushing = 0
        self.path = Path(path)
        self.log_texts = bool(log_texts)
        self.index_size = int(index_size)
        self._writer = FeedbackLog(self.path)
        self._index: OrderedDict = OrderedDict()
        self._pending: list = []
        self._queued = 0          # records handed to record()
        self._done = 0            # records written (or dropped after an error)
        self.errors = 0           # records lost to write errors
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def _ensure_thread(self):
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="llmrec-decision-log",
                                            daemon=True)
            self._thread.start()

    def record(self, decision: dict) -> None:
        """Queue one decision for writing and index it (returns at once)."""
        self.record_many([decision])

    def record_many(self, decisions: list) -> None:
        """Queue several decisions (one lock, one wake-up of the writer)."""
        if not self.log_texts:
            for d in decisions:
                d.pop("text", None)
        with self._cond:
            for d in decisions:
                self._index[d["decision_id"]] = d
            while len(self._index) > self.index_size:
                self._index.popitem(last=False)
            self._pending.extend(decisions)
            self._queued += len(decisions)
            self._ensure_thread()
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                # group commit: at most one write + fsync per commit_interval, unless a
                # flush (or the shutdown) is waiting
                while not (self._stop or self._flushing):
                    left = self._last_commit + self.commit_interval - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
                if not batch and self._stop:
                    return
                self._last_commit = time.monotonic()
            try:
                self._writer.append_json(batch)
            except Exception:  # noqa: BLE001 - a full disk must not kill the service
                self.errors += len(batch)
                log.exception("decision log %s: %d decision(s) could not be written",
                              self.path, len(batch))
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every decision queued so far is on disk; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the writer thread."""
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def get(self, decision_id: str) -> dict | None:
        """The decision with this id (memory first, then the file), or None."""
        with self._cond:
            d = self._index.get(decision_id)
        if d is not None:
            return d
        self.flush()
        if not self.path.is_file():
            return None
        needle = f'"{decision_id}"'  # lines are compact (orjson) or spaced (json)
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if needle in line:
                    try:
                        d = json.loads(line)
                    except ValueError:  # a torn line
                        continue
                    if isinstance(d, dict) and d.get("decision_id") == decision_id:
                        return d
        return None

    @property
    def pending(self) -> int:
        """Decisions queued but not yet written."""
        with self._cond:
            return self._queued - self._done


def feedback_line(decision: dict, score: float) -> dict:
    """The feedback-log line for an outcome posted by decision id: the decision's
    prompt id and text (when logged), the LLM that answered it, the score.

    Examples
    --------
    >>> d = new_decision("hi", ["a"], [0.5], [0], 0, 1.0, policy="greedy", router="r",
    ...                  router_version="v", source="recommend")
    >>> sorted(feedback_line(d, 1.0))
    ['decision_id', 'llm', 'prompt_id', 'score', 'text', 'time']
    """
    llm = decision.get("answered") or decision["chosen"]
    out = {"prompt_id": decision["prompt_id"]}
    if decision.get("text") is not None:
        out["text"] = decision["text"]
    out.update({"llm": llm, "score": float(score),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "decision_id": decision["decision_id"]})
    return out
