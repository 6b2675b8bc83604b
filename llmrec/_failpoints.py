"""Fail points: kill this process at a named step, for fault-injection tests.

``LLMREC_FAULT_POINT=name`` (or ``name:N`` for the N-th time the step is reached; step
names hold one colon, as ``save:renamed``) makes
:func:`failpoint` send SIGKILL to the process itself at that step, exactly as
``kill -9`` would at that instant. Unset (the normal case) it costs one comparison.
The steps are named where they are called (``save:*`` in :mod:`llmrec._atomic`,
``log:*`` in :mod:`llmrec.service.feedback`).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("LLMREC_FAULT_POINT") or None
_hits: dict[str, int] = {}


def hit(name: str) -> bool:
    """Count a pass through step ``name``; True when this pass is the one to kill at."""
    if _SPEC is None:
        return False
    want, _, count = _SPEC.rpartition(":") if _SPEC.count(":") > 1 else (_SPEC, "", "")
    if not count.isdigit():
        want, count = _SPEC, "1"
    if want != name:
        return False
    _hits[name] = _hits.get(name, 0) + 1
    return _hits[name] == int(count)


def kill() -> None:
    """SIGKILL this process now."""
    os.kill(os.getpid(), signal.SIGKILL)


def failpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is the configured fail point (and hit count)."""
    if hit(name):
        kill()
