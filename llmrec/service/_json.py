"""JSON for the service's hot paths: orjson where installed (the ``serve`` extra), the
standard library otherwise and for what orjson refuses (e.g. integers beyond 64 bits).

orjson writes a non-finite float as ``null`` (the standard library would write the
invalid tokens ``NaN`` / ``Infinity``) and never escapes non-ASCII text.
"""

from __future__ import annotations

import json

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the serve extra
    orjson = None


def dumps(obj) -> bytes:
    """``obj`` as UTF-8 JSON bytes."""
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def loads(raw):
    """Parse JSON text or bytes; ValueError when it is not JSON."""
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except ValueError:
            pass
    return json.loads(raw)
