"""One writer at a time per artefact: an exclusive lock on a destination path.

The lock is an ``fcntl.flock`` on a sibling file ``.<name>.lock``, so the
kernel drops it when its holder exits in any way (``kill -9`` included): a
crashed run never leaves a destination locked. The standard library's
``flock`` is used rather than the ``filelock`` package because the message
must name the process holding the lock (its pid is written into the lock
file), and because ``flock`` is all ``filelock`` does on POSIX.

The lock file is removed on release. Removing a lock file that another
process may have opened is the classic race (that process then holds a lock
on a file nobody else can find); :func:`exclusive_lock` closes it by checking,
once it holds the lock, that the path still names the file it locked, and
trying again otherwise.

POSIX only: where ``fcntl`` is missing (Windows) the lock does nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from needle.errors import BusyError

__all__ = ["exclusive_lock", "lock_path"]

#: Seconds between two attempts while waiting for a lock.
_POLL = 0.05


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, *, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold the exclusive lock of ``target`` (a file or directory, which need not exist) for the block.

    Parameters
    ----------
    target : path-like
        The destination being written.
    what : str
        What this process is doing, for the other process's message (e.g. ``"an extraction"``).
    wait : float, default 0
        Seconds to wait for another holder to finish; 0 fails at once.

    Raises
    ------
    BusyError
        Another process holds the lock (after ``wait`` seconds).

    Notes
    -----
    Not re-entrant: taking the lock of one target twice in one process fails
    like a second process would (``flock`` locks belong to open files, not
    processes).
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, Path(target), what, wait)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: see the module docstring
        os.close(fd)


def _acquire(path: Path, target: Path, what: str, wait: float) -> int:
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"{target} is being written by another needle process{holder} ({what} cannot share it); "
                    "wait for that process to finish, or choose another --out."
                ) from None
            time.sleep(_POLL)
            continue
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # the holder we waited for removed this file: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
