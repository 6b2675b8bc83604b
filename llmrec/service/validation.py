"""Validation at the service's edge: text, scores against the model, safe JSON errors.

Every request is checked here before it reaches a router or a log, so a hostile
request gets a 4xx naming the field at fault and never harms another request.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def bad_unicode(text: str) -> bool:
    """True when ``text`` cannot be written as UTF-8 (a lone surrogate such as ``\\ud800``).

    Examples
    --------
    >>> bad_unicode("caf\\u00e9"), bad_unicode("\\ud800")
    (False, True)
    """
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def check_text(value: str, field: str, allow_blank: bool = False) -> str:
    """Return ``value``; raise ValueError naming ``field`` if it is not valid Unicode or blank.

    Examples
    --------
    >>> check_text("ok", "llm")
    'ok'
    """
    if bad_unicode(value):
        raise ValueError(f"{field} is not valid Unicode (lone surrogate); send UTF-8 text")
    if not allow_blank and not value.strip():
        raise ValueError(f"{field} is blank; send text")
    return value


def check_texts(values, field: str, allow_blank: bool = False) -> None:
    """Raise ValueError naming ``field[i]`` for a text that is not valid Unicode or blank.

    Examples
    --------
    >>> check_texts(["ok", "fine"], "prompts")
    >>> check_texts(["ok", "\\ud800"], "prompts")
    Traceback (most recent call last):
    ...
    ValueError: prompts[1] is not valid Unicode (lone surrogate); send UTF-8 text
    """
    for i, v in enumerate(values):
        if bad_unicode(v):
            raise ValueError(f"{field}[{i}] is not valid Unicode (lone surrogate); send UTF-8 "
                             "text")
        if not allow_blank and not v.strip():
            raise ValueError(f"{field}[{i}] is blank; send text")


def score_bounds(model) -> tuple[str | None, float | None, float | None]:
    """(score kind, lowest, highest) score a feedback record may carry for ``model``.

    The kind and range come from the model (``score_kind`` / ``score_range`` of the
    records it was trained on, when known); otherwise the range is the observed
    training minimum and maximum.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> r = make_router("best-single").fit(make_synthetic(50, 4, seed=0))
    >>> score_bounds(r)[1:]
    (0.0, 1.0)
    """
    ts = getattr(model, "train_summary_", None) or {}
    kind = (getattr(model, "score_kind_", None) or getattr(model, "score_kind", None)
            or ts.get("score_kind"))
    rng = getattr(model, "score_range_", None) or getattr(model, "score_range", None) \
        or ts.get("score_range")
    lo = hi = None
    if rng is not None:
        try:
            lo, hi = (float(rng[0]), float(rng[1]))
        except (TypeError, ValueError, IndexError):
            lo = hi = None
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = ts.get("score_min"), ts.get("score_max")
        lo = float(lo) if lo is not None else None
        hi = float(hi) if hi is not None else None
    return (str(kind) if kind else None), lo, hi


def score_problem(score: float, bounds) -> str | None:
    """Why ``score`` is not acceptable for a model with these ``bounds`` (None: fine).

    Examples
    --------
    >>> score_problem(0.5, ("binary", 0.0, 1.0))
    'must be 0 or 1 (binary scores)'
    >>> score_problem(1e300, (None, 0.0, 1.0))
    'must be a finite number in [0.0, 1.0] (the range of the scores the model was trained on)'
    >>> score_problem(0.7, (None, 0.0, 1.0)) is None
    True
    """
    kind, lo, hi = bounds
    if kind == "binary" and score not in (0.0, 1.0):
        return "must be 0 or 1 (binary scores)"
    finite = math.isfinite(score) and abs(score) <= _FLOAT32_MAX
    if lo is not None and hi is not None:
        if not finite or not lo <= score <= hi:
            return (f"must be a finite number in [{lo}, {hi}] (the range of the "
                    f"{kind + ' ' if kind else ''}scores the model was trained on)")
    elif not finite:
        return "must be a finite number that float32 can hold"
    return None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: strings with lone surrogates escaped, non-finite floats as text."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8") if bad_unicode(obj) \
            else obj
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(_clean(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return _clean(str(obj))


class SafeJSONResponse(JSONResponse):
    """A JSON response that never fails to encode: echoes of hostile input (lone
    surrogates, NaN) are escaped instead of raising a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
        except (ValueError, TypeError):
            return json.dumps(_clean(content), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")


def validation_detail(errors) -> list[dict]:
    """Pydantic errors without the echoed input: location, message and type only."""
    out = []
    for e in errors:
        out.append({"loc": [_clean(x) for x in e.get("loc", ())],
                    "msg": _clean(str(e.get("msg", ""))), "type": e.get("type")})
    return out


class BodyLimit:
    """ASGI middleware: refuse a request body larger than ``max_bytes`` with 413.

    The body is read (up to the limit) before the app sees it, so a request too large
    never reaches a handler, whether it says its length or streams in chunks.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = -1
                if n > self.max_bytes or n < 0:
                    return await self._refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_again():
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, receive_again, send)

    async def _refuse(self, scope, receive, send):
        resp = SafeJSONResponse(status_code=413, content={
            "detail": f"request body larger than {self.max_bytes} bytes; split the request"})
        await resp(scope, receive, send)
