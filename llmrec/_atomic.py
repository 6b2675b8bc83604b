"""Write a directory atomically: build it beside its target, then swap it into place.

Used by every writer of a saved directory (records, long tables, routers), so a crash
never leaves a half-written directory where a reader looks, and an existing one is
only replaced once the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def atomic_directory(path: str | os.PathLike,
                     check_existing: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it becomes ``path``.

    The temporary directory (``.<name>.tmp*`` beside ``path``) gets the permissions
    ``mkdir`` would give. On an exception it is removed and ``path`` is untouched.
    When ``path`` exists, ``check_existing(path)`` may refuse the overwrite by raising;
    the old directory is moved aside, the new one moved in, then the old one removed;
    if moving the new one in fails, the old one is put back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; a saved directory is shared
    try:
        yield tmp
        if path.exists():
            if check_existing is not None:
                check_existing(path)
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:  # put the old directory back: never leave `path` missing
                old.rename(path)
                raise
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
