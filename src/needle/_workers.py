"""What every worker process needs: to die with its parent, and to leave Ctrl-C to it.

A ``ProcessPoolExecutor`` worker waits on its task queue for ever once the
parent is gone (every worker holds the queue's write end, so the read never
sees end-of-file), keeping its memory. :func:`init_worker_process`, called from
a pool's ``initializer``, starts a thread that blocks on the parent's
sentinel — a pipe the parent holds open for its whole life, which the
standard library gives every child process (``multiprocessing.parent_process``)
— and ends the worker the moment the parent dies, however it died
(``kill -9`` included). No polling, and nothing platform-specific.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait

__all__ = ["init_worker_process", "stop_workers"]

#: Exit status of a worker whose parent died.
ORPHAN_EXIT_STATUS = 3


def init_worker_process() -> None:
    """Make this (child) process exit as soon as its parent dies, and ignore SIGINT.

    Ctrl-C in a terminal signals the whole process group; the parent decides
    what to keep and how to stop, so workers must not each raise their own
    ``KeyboardInterrupt`` (and print its traceback).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:  # not started by multiprocessing: nothing to watch
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(ORPHAN_EXIT_STATUS)  # no cleanup to run: the parent owned every output

    threading.Thread(target=watch, name="needle-parent-watch", daemon=True).start()


def stop_workers(pool) -> None:
    """Terminate the worker processes of a ``ProcessPoolExecutor`` now (on Ctrl-C), without waiting for their tasks."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
