"""Write a directory atomically: build it beside its target, then swap it into place.

Used by every writer of a saved directory (records, long tables, routers), so a crash
never leaves a half-written directory where a reader looks, and an existing one is
only replaced once the new one is complete.

Crash safety at every instant (a ``kill -9`` anywhere in a save):

* the new directory is written under ``.<name>.tmp*`` beside the target, its files and
  folders are fsynced, and the saving process holds an ``flock`` on it, so a dead
  save's temporary directory is recognisable (nobody holds its lock);
* on Linux the complete new directory and the old one are swapped with one
  ``renameat2(RENAME_EXCHANGE)`` call: there is no instant at which the target is
  missing. Where that call is not available (another OS, a file system without it) the
  old directory is renamed to ``.<name>.old`` and the new one moved in; a crash between
  those two renames leaves ``.<name>.old`` and no target, which :func:`recover`
  (called by the next save and by ``Router.load``) renames back;
* leftovers of interrupted saves (dead temporary directories, an ``.old`` copy whose
  swap completed) are removed by the next save or load of the same target, and
  ``llmrec doctor`` reports or removes them anywhere.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ._failpoints import failpoint

try:  # POSIX advisory locks; absent on Windows (then no lock, same logic)
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

#: use the atomic exchange rename where the OS offers it (tests switch it off to
#: exercise the two-rename fallback)
USE_RENAME_EXCHANGE = os.environ.get("LLMREC_NO_RENAME_EXCHANGE", "") in ("", "0")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries; False when the OS cannot."""
    global _renameat2
    if not USE_RENAME_EXCHANGE:
        return False
    if _renameat2 is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    import ctypes
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _fsync_path(p: Path, directory: bool = False) -> None:
    try:
        fd = os.open(p, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            _fsync_path(Path(dirpath) / f)
        _fsync_path(Path(dirpath), directory=True)


@contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (a directory); yields False when busy."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # cannot open the folder for a lock (odd file system): go on unlocked
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:  # no flock on this file system (some network mounts): unlocked
            pass
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _is_old(p: Path, seconds: float = 3600.0) -> bool:
    import time
    try:
        return time.time() - p.stat().st_mtime > seconds
    except OSError:
        return False


def _is_dead_tmp(p: Path) -> bool:
    """True when ``p`` is a temporary save directory no live process holds."""
    if fcntl is None:  # pragma: no cover - no locks: only clean what is old
        return _is_old(p)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # pragma: no cover - no flock on this file system
        return _is_old(p)
    finally:
        os.close(fd)


def leftovers(path: str | os.PathLike) -> list[Path]:
    """Leftovers of interrupted saves of the directory ``path`` (nothing is changed).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".m.old").mkdir()
    >>> [p.name for p in leftovers(d / "m")]
    ['.m.old']
    """
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    tmp_prefix, old = f".{path.name}.tmp", f".{path.name}.old"
    return sorted(path.parent / n for n in names if n.startswith(tmp_prefix) or n == old)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _recover_locked(path: Path) -> list[str]:
    actions = []
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists() and not path.is_symlink():
        old.rename(path)  # a crash between the two renames of a swap: restore
        _fsync_path(path.parent, directory=True)
        actions.append(f"restored {path} from {old.name}")
    elif old.exists():
        _remove(old)
        actions.append(f"removed {old}")
    for p in leftovers(path):
        if p.name.startswith(f".{path.name}.tmp") and _is_dead_tmp(p):
            _remove(p)
            actions.append(f"removed {p}")
    return actions


def recover(path: str | os.PathLike) -> list[str]:
    """Finish or undo an interrupted save of ``path``; returns what was done.

    Restores ``.<name>.old`` when the target is missing (a crash between the two
    renames of a fallback swap), removes an ``.old`` copy whose swap completed and
    temporary directories of dead saves. Saves in progress are left alone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".m.old").mkdir()
    >>> len(recover(d / "m")), (d / "m").is_dir()
    (1, True)
    """
    path = Path(path)
    if not leftovers(path):
        return []
    with _locked(path.parent) as got:
        if not got:  # pragma: no cover - blocking lock
            return []
        return _recover_locked(path)


@contextmanager
def atomic_directory(path: str | os.PathLike,
                     check_existing: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it becomes ``path``.

    The temporary directory (``.<name>.tmp*`` beside ``path``) gets the permissions
    ``mkdir`` would give. On an exception it is removed and ``path`` is untouched.
    When ``path`` exists, ``check_existing(path)`` may refuse the overwrite by raising.
    At every instant of the swap either the old or the new directory is at ``path``
    (see the module docstring for how, and for the cleanup of leftovers).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> with atomic_directory(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("hello")
    >>> (target / "a.txt").read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        recover(path)
    except OSError:  # best effort; the swap below still never loses a directory
        pass
    lock_fd = None
    with _locked(path.parent):  # a cleaner (which holds this lock) never sees it unlocked
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
        if fcntl is not None:  # mark the temporary directory as a live save
            try:
                lock_fd = os.open(tmp, os.O_RDONLY)
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            except OSError:  # no flock here: a dead save's folder is then left for doctor
                pass
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; a saved directory is shared
    try:
        failpoint("save:started")
        yield tmp
        failpoint("save:complete")
        _fsync_tree(tmp)
        failpoint("save:fsynced")
        with _locked(path.parent):
            if path.exists() or path.is_symlink():
                if check_existing is not None:
                    check_existing(path)
                if _exchange(tmp, path):  # tmp now holds the old directory
                    failpoint("save:exchanged")
                    _fsync_path(path.parent, directory=True)
                    _remove(tmp)
                else:
                    old = path.with_name(f".{path.name}.old")
                    if old.exists() or old.is_symlink():
                        _remove(old)
                    path.rename(old)
                    failpoint("save:between-renames")
                    try:
                        tmp.rename(path)
                    except BaseException:  # put the old directory back
                        old.rename(path)
                        raise
                    failpoint("save:renamed")
                    _fsync_path(path.parent, directory=True)
                    _remove(old)
            else:
                tmp.rename(path)
                _fsync_path(path.parent, directory=True)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
