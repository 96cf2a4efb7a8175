"""Engines that run a sweep's :class:`~needle.probing.sweep.ProbeTask` s: the local process pool, or a Ray cluster.

:func:`needle.probing.sweep` plans the tasks and writes the results; an engine
only maps the pure function :func:`~needle.probing.sweep.run_task` over them
and hands each task's complete rows back to the writer. ``engine="local"`` is
the process pool (``n_jobs``); ``engine="ray"`` submits every task as a Ray
task to the cluster at ``address`` (``"auto"``: the one ``ray start`` made on
this node; ``ray://host:10001``: a remote one; None: start a local one with
``n_jobs`` CPUs, or join the one this process already initialised).

How the activations reach the workers
-------------------------------------
An :class:`~needle.activations.ActivationCache` is **read by path**: every
task carries the cache's directory and its manifest, and the worker opens
the same directory (once per worker process) and reads only the task's rows
of one layer from the memory-mapped ``.npy`` file. Chosen over putting each
layer into Ray's object store because

* a task needs only its feature's rows (fancy indexing of a memory map reads
  just those pages); the object store would ship the whole
  ``(n_rows, width)`` layer to every node that runs one task of it;
* a terabyte of activations does not fit the object store (by default 30 % of
  each node's memory): it would spill to local disk, a second copy of data
  that is already on disk;
* the driver would push every byte through its own node's network link,
  which is the bottleneck the cluster is meant to remove; the OS page cache
  already shares a node's reads between its workers, as the object store's
  shared memory would.

The price is that the cache must be at the same path on every node (shared
storage: NFS, Lustre, GPFS, as on the SLURM clusters the paper ran on, or a
copy made beforehand). A worker that finds another cache, or none, there
fails with an error that says so rather than probing other data.

Any other :class:`~needle.probing.ProbeSource` (an in-memory
:class:`~needle.probing.ArraySource`) has no path: it is put into the object
store **once** per sweep and every task refers to that one object (its arrays
are shared memory on each node, not copied per task).

Failures and interruption
-------------------------
A task returns all of its rows as one object, so the writer sees a task whole
or not at all. A worker that dies (killed, out of memory, node lost) has its
task retried by Ray up to ``max_retries`` times; an exception raised by the
task itself (bad input) is not retried and stops the sweep, like the local
pool. On Ctrl-C every unfinished task is cancelled on the cluster (running
ones are interrupted) before the interrupt propagates; the rows of finished tasks
are kept by the writer, so the sweep resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from needle.errors import FormatError, InputError

__all__ = ["ENGINES", "task_cost", "by_cost", "ray_results"]

#: Values of ``sweep(engine=...)`` and ``needle probe --engine``.
ENGINES = ("local", "ray")

#: How often the driver looks for finished tasks (seconds): short enough for Ctrl-C and the progress bar.
_POLL_SECONDS = 0.2


def task_cost(task, width: int) -> float:
    """A proxy for a task's run time: examples × columns × fits (methods, dense, random directions) × splits.

    Parameters
    ----------
    task : ProbeTask
    width : int
        Columns of the task's layer.

    Returns
    -------
    float
    """
    fits = len(task.methods) + 2 * bool(task.dense) + bool(task.random_directions)  # the dense fit is the widest
    return float(len(task.rows)) * float(width) * fits * (1 + len(task.resplits))


def by_cost(tasks: Sequence, widths: dict[int, int]) -> list:
    """The tasks in decreasing :func:`task_cost` (ties in their planned order).

    The longest tasks start first, so none of them is left running alone at
    the end while the other workers idle.
    """
    order = sorted(range(len(tasks)), key=lambda i: (-task_cost(tasks[i], widths[tasks[i].layer]), i))
    return [tasks[i] for i in order]


# ------------------------------------------------------------------ Ray
@dataclass(frozen=True)
class _CacheByPath:
    """What a Ray task carries of an ActivationCache: where it is and what it must be."""

    path: str
    manifest: dict[str, Any]


_OPEN_CACHES: dict[str, Any] = {}  # per worker process: path → ActivationCache


def _open_by_path(ref: _CacheByPath):
    cache = _OPEN_CACHES.get(ref.path)
    if cache is None:
        from needle.activations import load_cache

        node = os.uname().nodename
        try:
            cache = load_cache(ref.path)
        except (FormatError, OSError) as exc:
            raise InputError(f"node {node} cannot open the activation cache at {ref.path} ({exc}); a Ray sweep reads "
                             "the cache by path, so put it on storage every node mounts at the same path.") from None
        if cache.manifest != ref.manifest:
            raise InputError(f"the activation cache at {ref.path} on node {node} is not the one the sweep was planned "
                             "on (its manifest differs); every node must see the same cache at that path.")
        _OPEN_CACHES[ref.path] = cache
    return cache


def _run_on_worker(source, task, config, params_json: str):
    """The body of one Ray task: :func:`run_task` on one BLAS thread (as in the local pool), whole rows out."""
    from threadpoolctl import threadpool_limits

    from needle.probing.sweep import run_task

    if isinstance(source, _CacheByPath):
        source = _open_by_path(source)
    with threadpool_limits(1):  # the same arithmetic as the pool's workers: identical numbers
        return run_task(source, task, config, params_json=params_json)


def import_ray():
    """Ray, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("engine 'ray' needs Ray, which is not installed: pip install 'needle[ray]' "
                         "(or pip install ray).") from None
    return ray


def connect(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` (or start a local one); True when this call connected (so it disconnects).

    A process that already called ``ray.init`` keeps its connection and ``address`` is not used.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"address": address, "log_to_driver": False}
    if address is None:
        options.update(num_cpus=num_cpus, include_dashboard=False)
    try:
        ray.init(**options)
    except ConnectionError as exc:
        raise InputError(f"no Ray cluster at --address {address!r} ({exc}); start one with `ray start --head`, "
                         "or leave --address out to start a local one.") from None
    return True


def ray_results(source, tasks: Sequence, config, params_json: str, *, address: str | None = None,
                num_cpus: int | None = None, max_retries: int = 3) -> Iterator[tuple[Any, Any]]:
    """Run ``tasks`` as Ray tasks and yield ``(task, rows)`` as each finishes (in completion order).

    Parameters
    ----------
    source : ProbeSource
        An ActivationCache (read by path on the workers) or any picklable
        source (put into the object store once).
    tasks : sequence of ProbeTask
        Submitted in this order (plan them with :func:`by_cost`).
    config : SweepConfig
    params_json : str
    address : str, optional
        ``"auto"``, ``"ray://host:port"`` or a GCS address; None starts a
        local cluster (or uses the one this process initialised).
    num_cpus : int, optional
        CPUs of a local cluster started here (default: all).
    max_retries : int, default 3
        Retries of a task whose worker died.

    Yields
    ------
    task : ProbeTask
    rows : DataFrame
        All of the task's result rows.
    """
    from needle.activations.cache import ActivationCache

    ray = import_ray()
    own = connect(address, num_cpus)
    refs: dict[Any, Any] = {}
    try:
        if isinstance(source, ActivationCache):
            handle = _CacheByPath(str(source.path.resolve()), source.manifest)
        else:
            handle = ray.put(source)  # once: every task gets the same object, resolved on its worker
        config_ref = ray.put(config)
        remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_run_on_worker)
        refs = {remote.remote(handle, task, config_ref, params_json): task for task in tasks}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_SECONDS)
            for ref in ready:
                try:
                    rows = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the task's own exception, raised as the local pool does
                    cause = getattr(exc, "cause", None)
                    raise (cause if isinstance(cause, Exception) else exc) from None
                yield refs.pop(ref), rows
    finally:
        # Ctrl-C, an error, or the writer stopping early: nothing keeps running on the cluster for this sweep.
        cancel(ray, list(refs))
        if own:
            ray.shutdown()


def cancel(ray, refs: list) -> None:
    """Cancel the unfinished ``refs``: queued tasks are dropped, running ones interrupted (``KeyboardInterrupt``
    in the task; the worker survives).

    Finished tasks are left alone and ``force=True`` (killing the worker) is not used: Ray 2.60 can abort the
    driver ("Tried to complete task that was not pending") when a task completes while it is force-cancelled.
    """
    if not refs:
        return
    _, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in unfinished:
        ray.cancel(ref)
