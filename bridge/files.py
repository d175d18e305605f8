"""File helpers: atomic writes (a temporary file, fsync, rename; abandoned temporaries of an
interrupted write cleaned up by the next save of the same target), paths checked before a
run, and file-like arguments passed through.

Re-exported by :mod:`bridge.utils`, where skorch code looks for ``open_file_like``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def open_file_like(f: str | os.PathLike | IO, mode: str) -> Any:
    """Open a path, or pass a file-like object through unchanged (as a context manager)."""
    if isinstance(f, (str, os.PathLike)):
        return open(f, mode)
    return contextlib.nullcontext(f)


def check_writable_path(path: str | os.PathLike) -> str:
    """Return the folder of ``path``, a file to be written.

    Raises
    ------
    IsADirectoryError, FileNotFoundError
        When ``path`` is a folder, or its folder does not exist.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a folder; give a file name in it")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not exist")
    return folder


_TEMPORARY_PREFIX = ".tmp-"


def _hold_lock(fd: int) -> int | None:
    """Lock the temporary file behind ``fd`` for as long as the returned descriptor is open
    (POSIX ``flock``; None where there is none). The lock dies with the process."""
    try:
        import fcntl
    except ImportError:
        return None
    holder = os.dup(fd)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
    except OSError:  # a file system without locks: nothing is then taken for abandoned
        os.close(holder)
        return None
    return holder


def _abandoned(path: str) -> bool:
    """Whether nobody writes the temporary file ``path`` any more: its writer's lock is gone
    (the process died), or, without ``flock``, it is over an hour old. Where locking fails
    (some network file systems), no file is taken for abandoned."""
    try:
        import fcntl
    except ImportError:
        import time

        return time.time() - os.path.getmtime(path) > 3600
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_abandoned_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls left beside ``path``.

    Only files named as ``atomic_write`` names them for this very target, and only those no
    live writer holds, are removed; errors are ignored (the next save tries again).

    Returns
    -------
    list of str
        The files removed.
    """
    import re

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(_TEMPORARY_PREFIX + os.path.basename(path) + "-") + r"[a-z0-9_]{8}")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if _abandoned(entry.path):
                        os.remove(entry.path)
                        removed.append(entry.path)
    return removed


def atomic_write(path: str | os.PathLike | IO, writer: Callable[[IO[bytes]], Any]) -> None:
    """Write a file atomically: a temp file in the same folder, fsync, then ``os.replace``.

    Readers never see a half-written file, even if the process dies mid-write. The temp file
    is locked while it is written; temp files of this target that an earlier, interrupted
    write left behind (their writer's lock is gone) are deleted after the file is replaced.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        Where to write; a file object is written to directly (it has no atomic rename).
    writer : callable
        Called with an open binary file object; writes the content.

    Returns
    -------
    None

    Raises
    ------
    IsADirectoryError, FileNotFoundError
        From :func:`check_writable_path` (naming ``path``, not the temporary file).
    """
    if not isinstance(path, (str, os.PathLike)):
        writer(path)
        return
    path = os.fspath(path)
    folder = check_writable_path(path)
    fd, tmp_path = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX + os.path.basename(path) + "-", dir=folder)
    lock = _hold_lock(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    remove_abandoned_temporaries(path)
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def bytes_of(writer: Callable[[IO[bytes]], Any]) -> bytes:
    """The bytes ``writer`` writes to a file object."""
    buffer = io.BytesIO()
    writer(buffer)
    return buffer.getvalue()
