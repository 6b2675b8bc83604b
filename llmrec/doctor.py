"""``llmrec doctor``: find (and with ``clean=True`` repair) what crashes leave behind.

Looks under the given folders for:

* leftovers of interrupted saves (see :mod:`llmrec._atomic`): temporary
  ``.<name>.tmp*`` folders of dead saves, ``.<name>.old`` copies (a finished swap's
  old copy, or, when ``<name>`` is missing, the only copy of an interrupted swap);
* append-only logs (``*.jsonl``) whose last line is torn (no final newline), and
  ``*.torn-*`` files a repair moved aside (reported, never deleted: they hold the
  bytes of a write that was not acknowledged);
* saved models (folders with ``manifest.json``) that fail the integrity check.

Cleaning restores an interrupted swap, removes dead temporary folders and stale
``.old`` copies, and moves torn log tails aside; it never touches a save in progress
(its temporary folder is locked) and never rewrites a model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import _atomic

_TMP = re.compile(r"^\.(?P<name>.+?)\.tmp[^/]*$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old$")


@dataclass
class Finding:
    """One thing found: its path, what it is, and what cleaning did (if anything)."""

    path: Path
    kind: str      # "dead-save" | "interrupted-swap" | "stale-old" | "torn-log" |
    #                "torn-tail-file" | "corrupt-model" | "save-in-progress"
    detail: str
    fixed: str = ""

    @property
    def fixable(self) -> bool:
        return self.kind in ("dead-save", "interrupted-swap", "stale-old", "torn-log")


def diagnose(paths, clean: bool = False) -> list[Finding]:
    """Findings under ``paths`` (folders, searched recursively); repair them if ``clean``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "fb.jsonl").write_bytes(b'{"a": 1}\\n{"a"')
    >>> [f.kind for f in diagnose([d])]
    ['torn-log']
    >>> [f.fixed for f in diagnose([d], clean=True)][0].startswith("moved the torn tail")
    True
    >>> [f.kind for f in diagnose([d])]  # the moved-aside bytes are kept for you
    ['torn-tail-file']
    """
    from .routers.base import check_model_files
    from .errors import LLMRecError
    from .service.feedback import repair_tail

    out: list[Finding] = []
    for top in paths:
        top = Path(top)
        if not top.exists():
            raise FileNotFoundError(f"{top} does not exist")
        walk = [(str(top.parent), [top.name], [])] if top.is_dir() else []
        if top.is_file():
            walk = [(str(top.parent), [], [top.name])]
        stack = list(walk)
        while stack:
            dirpath, dirs, files = stack.pop()
            d = Path(dirpath)
            for name in sorted(dirs):
                p = d / name
                m_tmp, m_old = _TMP.match(name), _OLD.match(name)
                if m_tmp:
                    if _atomic._is_dead_tmp(p):
                        out.append(Finding(p, "dead-save", "temporary folder of a save that "
                                           "did not finish"))
                    else:
                        out.append(Finding(p, "save-in-progress", "a live save holds it"))
                    continue
                if m_old:
                    target = d / m_old.group("name")
                    if target.exists():
                        out.append(Finding(p, "stale-old", f"old copy of {target.name} left "
                                           "by a finished swap"))
                    else:
                        out.append(Finding(p, "interrupted-swap", f"the only copy of "
                                           f"{target.name}: a save stopped between its renames"))
                    continue
                if (p / "manifest.json").is_file():
                    try:
                        check_model_files(p)
                    except LLMRecError as e:
                        out.append(Finding(p, "corrupt-model", str(e)))
                if not p.is_symlink():
                    try:
                        entries = list(os.scandir(p))
                    except OSError:
                        continue
                    stack.append((str(p), [e.name for e in entries if e.is_dir()],
                                  [e.name for e in entries if e.is_file()]))
            for name in sorted(files):
                p = d / name
                if ".torn-" in name:
                    out.append(Finding(p, "torn-tail-file", "bytes of an unacknowledged write "
                                       "that a repair moved aside; inspect, then delete"))
                elif name.endswith((".jsonl", ".ndjson")):
                    try:
                        with open(p, "rb") as f:
                            f.seek(0, os.SEEK_END)
                            size = f.tell()
                            if size:
                                f.seek(size - 1)
                                if f.read(1) != b"\n":
                                    out.append(Finding(p, "torn-log", "last line has no "
                                                       "newline (a write was cut short)"))
                    except OSError:
                        continue
    if clean:
        for f in out:
            if f.kind in ("dead-save", "interrupted-swap", "stale-old"):
                m = _TMP.match(f.path.name) or _OLD.match(f.path.name)
                done = _atomic.recover(f.path.parent / m.group("name"))
                f.fixed = "; ".join(done) or "already handled"
            elif f.kind == "torn-log":
                aside = repair_tail(f.path)
                f.fixed = f"moved the torn tail to {aside}" if aside else "already whole"
    return out
