"""One progress mechanism for every long step: encoding, epochs, tuning grids, bench runs.

* On a terminal: a tqdm bar with an ETA.
* In a log (stderr is not a terminal), when line output is switched on (the ``llmrec``
  command does so): one line when a stage starts, one when it ends (with its time), and
  one at most every 30 s in between.
* Silent with :func:`set_quiet` (``llmrec -q``) or ``show=False``.

A leaf module: it imports nothing from llmrec, so every layer may use it.

Examples
--------
>>> from llmrec._progress import progress
>>> total = 0
>>> for i in progress(range(3), desc="epochs", show=False):
...     total += i
>>> total
3
>>> with progress(total=2, desc="grid", show=False) as bar:
...     bar.update(); bar.update()
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Optional

__all__ = ["progress", "stage", "set_quiet", "set_log_lines", "is_quiet"]

_STATE = {"quiet": False, "lines": False}
#: seconds between two intermediate lines in line mode
LINE_EVERY_S = 30.0


def set_quiet(quiet: bool = True) -> None:
    """Silence every progress display (``llmrec -q``)."""
    _STATE["quiet"] = bool(quiet)


def set_log_lines(on: bool = True) -> None:
    """Print a line per stage when stderr is not a terminal (the CLI turns this on)."""
    _STATE["lines"] = bool(on)


def is_quiet() -> bool:
    return _STATE["quiet"] or os.environ.get("LLMREC_QUIET", "") == "1"


def _isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _mode(show: Optional[bool]) -> str:
    """'bar', 'lines' or 'off' for a ``show_progress`` value (None: automatic)."""
    if show is False or is_quiet():
        return "off"
    if _isatty() or _in_notebook():
        return "bar"
    if show is True or _STATE["lines"]:
        return "lines"
    return "off"


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:  # noqa: BLE001 - any IPython oddity means "not a notebook"
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class _Off:
    """The silent display: counts steps, shows nothing."""

    def __init__(self, iterable=None, total=None):
        self.iterable = iterable
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def refresh(self, *args, **kwargs) -> None:
        pass

    def set_description(self, desc: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Lines(_Off):
    """The non-interactive display: a line at start, at end, and every 30 s between."""

    def __init__(self, iterable, total, desc, unit):
        self.iterable = iterable
        self.total = total if total is not None else (
            len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc = desc or "working"
        self.unit = unit
        self.n = 0
        self.t0 = self.last = time.monotonic()
        self.closed = False
        of = f" ({self.total} {unit})" if self.total else ""
        self._say(f"{self.desc}: started{of}")

    def _say(self, msg: str) -> None:
        print(f"[llmrec] {msg}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LINE_EVERY_S:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            eta = ""
            if self.total and self.n:
                eta = f", ETA {(now - self.t0) / self.n * (self.total - self.n):.0f} s"
            self._say(f"{self.desc}: {self.n}{of} {self.unit}{eta}")

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            of = f"/{self.total}" if self.total else ""
            self._say(f"{self.desc}: done {self.n}{of} {self.unit} in "
                      f"{time.monotonic() - self.t0:.1f} s")

    def __iter__(self) -> Iterator:
        try:
            for x in self.iterable:
                yield x
                self.update()
        finally:
            self.close()

    def __exit__(self, *exc):
        self.close()
        return False


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
             desc: str = "", show: Optional[bool] = None, unit: str = "it",
             leave: bool = False):
    """Wrap ``iterable`` (or count ``total`` steps by ``update()``) with a progress display.

    Parameters
    ----------
    iterable : iterable, optional
    total : int, optional
        Number of steps when not given by ``len(iterable)``.
    desc : str
        What runs: ``"mlp epochs"``, ``"encode minilm"``, ``"bench seed 3"``.
    show : bool or None
        ``False``: silent; ``True``: always (a bar on a terminal, lines elsewhere);
        ``None``: a bar on a terminal or notebook, lines in a log when the command line
        asked for them, silent otherwise. :func:`set_quiet` overrides all.
    unit : str
    leave : bool
        Keep the finished tqdm bar on screen.

    Returns
    -------
    An object usable as an iterator or a context manager, with ``update(n)``,
    ``set_postfix(**kw)`` and ``close()``.

    Examples
    --------
    >>> [x for x in progress([1, 2], desc="demo", show=False)]
    [1, 2]
    """
    mode = _mode(show)
    if mode == "off":
        return _Off(iterable, total)
    if mode == "lines":
        return _Lines(iterable, total, desc, unit)
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc or None, unit=unit, leave=leave,
                dynamic_ncols=True)


class stage:
    """A step without inner counts: one line at start and end in line mode.

    Examples
    --------
    >>> with stage("fit als", show=False):
    ...     pass
    """

    def __init__(self, desc: str, show: Optional[bool] = None):
        self.desc = desc
        self.mode = _mode(show)

    def __enter__(self):
        self.t0 = time.monotonic()
        if self.mode != "off":
            print(f"[llmrec] {self.desc} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, exc_type, *exc):
        if self.mode != "off" and exc_type is None:
            print(f"[llmrec] {self.desc}: done in {time.monotonic() - self.t0:.1f} s",
                  file=sys.stderr, flush=True)
        return False
