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
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary directories a killed writer of ``path`` left behind.

    A temporary directory is named ``.<name>.tmp-<pid>-<random>``; it is stale when
    that process no longer runs (a writer killed mid-save). Returns what was removed.

    Examples
    --------
    >>> import tempfile, os
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / ".model.tmp-999999999-x").mkdir()
    >>> [p.name for p in remove_stale_temporaries(d / "model")]
    ['.model.tmp-999999999-x']
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}.tmp-"
    for p in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    import glob
    return glob.escape(name)
