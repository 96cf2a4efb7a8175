"""Benchmark: the Ray sweep engine against the local process pool, and Ray's scheduling overhead per task.

One invocation runs, side by side:

1. **The EWT-dev POS sweep** (``probe_speed.py``'s grid: MiniLM MLP neurons on
   UD English-EWT dev, the ``pos:`` features, every layer, methods mean_diff,
   f_stat, l1 and adaptive, k in 1-8, 16, 32, 64, prefilter 1024, C 0.01, no
   baselines) twice on the same cache:

   * ``pool`` — :func:`needle.probing.sweep` with ``n_jobs=N`` (N spawned processes);
   * ``ray``  — the same call with ``engine="ray"`` on a local Ray cluster of N CPUs
     (``ray.init(num_cpus=N)``, started before the clock starts: a cluster is
     started once and serves many sweeps; its start time is printed apart).

   Both include their workers' start-up (the pool spawns and imports needle;
   Ray's workers import it on their first task). Printed: wall time of each,
   the ratio ray / pool (target ≤ 1.10), and whether the two results tables
   are identical (every column but ``fit_seconds``, every number exact).
   ``--repeats R`` runs R pairs, alternating which side goes first (``--ray-first``: Ray in the first
   pair), and reports each side's median and range.

2. **Scheduling overhead per task**: ``--tiny-tasks T`` no-op Ray tasks (one
   CPU each, returning their argument) submitted at once and collected with the
   engine's own ``ray.wait`` loop; the wall time per task on N CPUs, and the
   same T no-op calls on a ``ProcessPoolExecutor`` of N processes.

All BLAS/OpenMP pools are capped at one thread (the environment, before numpy loads), as in the sweep's
workers. Not a test: nothing here is asserted.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ewt_cache import add_cache_arguments, ewt_dev_cache

METHODS = ("mean_diff", "f_stat", "l1", "adaptive")
KS = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)


def _sweep(cache, out: Path, features, layers, methods, ks, jobs: int, engine: str) -> tuple[pd.DataFrame, float]:
    from needle.probing import sweep

    started = time.perf_counter()
    results = sweep(cache, out=out, features=features, layers=layers, methods=list(methods), ks=list(ks),
                    prefilter=1024, test_size=0.3, C=0.01, seed=0, baselines=False, n_jobs=jobs, engine=engine,
                    progress=False, overwrite=True)
    return results, time.perf_counter() - started


def _exact(frame: pd.DataFrame) -> pd.DataFrame:
    from needle.probing.results import RESULT_KEY

    frame = frame.drop(columns=["fit_seconds"]).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    for col in ("neurons", "coef", "class_intercepts"):
        frame[col] = frame[col].map(lambda a: None if a is None else tuple(np.asarray(a, dtype=float).tolist()))
    return frame


def _noop(i):
    return i


def tiny_tasks(n: int, jobs: int) -> None:
    import ray

    from needle.probing.engines import _POLL_SECONDS

    remote = ray.remote(num_cpus=1)(_noop)
    ray.get([remote.remote(i) for i in range(2 * jobs)])  # workers started and warm
    started = time.perf_counter()
    pending = [remote.remote(i) for i in range(n)]
    submitted = time.perf_counter() - started
    total = 0
    while pending:  # the engine's loop (needle.probing.engines.ray_results)
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_SECONDS)
        total += sum(ray.get(ready))
    wall = time.perf_counter() - started
    assert total == n * (n - 1) // 2
    print(f"ray   {n:>7} no-op tasks on {jobs} CPUs: {wall:7.1f} s wall ({submitted:.1f} s to submit), "
          f"{wall / n * 1e6:7.0f} µs per task, {wall / n * jobs * 1e6:7.0f} CPU-µs per task", flush=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_noop, range(2 * jobs)))
        started = time.perf_counter()
        futures = [pool.submit(_noop, i) for i in range(n)]
        assert sum(f.result() for f in futures) == n * (n - 1) // 2
        wall = time.perf_counter() - started
    print(f"pool  {n:>7} no-op tasks on {jobs} processes: {wall:7.1f} s wall, {wall / n * 1e6:7.0f} µs per task",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cache_arguments(parser, "needle-probe-speed")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--features", help="Comma-separated subset of the pos: features (default: all of them).")
    parser.add_argument("--layers", help="Comma-separated subset of layers (default: all).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ks", default=",".join(map(str, KS)))
    parser.add_argument("--jobs", type=int, default=2, help="Pool processes and Ray CPUs (default: %(default)s).")
    parser.add_argument("--repeats", type=int, default=1, help="Pairs of runs, alternating which side goes first.")
    parser.add_argument("--ray-first", action="store_true", help="Ray first in the first pair.")
    parser.add_argument("--tiny-tasks", type=int, default=100_000, help="No-op tasks for the overhead (0: skip).")
    parser.add_argument("--skip-sweep", action="store_true", help="Only the tiny-task overhead.")
    args = parser.parse_args()

    import ray

    import needle

    started = time.perf_counter()
    ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
    print(f"ray {ray.__version__}: local cluster of {args.jobs} CPUs started in {time.perf_counter() - started:.1f} s "
          f"(not counted below); machine load average {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_sweep:
        work = Path(args.work)
        cache = needle.load_cache(ewt_dev_cache(cache=args.cache, work=work, ud_dir=args.ud_dir, model=args.model))
        features = ([f.strip() for f in args.features.split(",")] if args.features
                    else [f for f in cache.feature_names if f.startswith("pos:")])
        layers = [int(l) for l in args.layers.split(",")] if args.layers else cache.layers
        methods = [m.strip() for m in args.methods.split(",")]
        ks = [int(k) for k in args.ks.split(",")]
        print(f"grid: {len(features)} features × {len(layers)} layers × {len(methods)} methods × {len(ks)} k "
              f"= {len(features) * len(layers)} tasks", flush=True)
        times = {"pool": [], "ray": []}
        tables = {}
        for repeat in range(args.repeats):
            order = [("pool", "local"), ("ray", "ray")]
            for side, engine in order[::-1] if (repeat % 2 == 1) != args.ray_first else order:
                tables[side], seconds = _sweep(cache, work / f"ray_sweep_{side}.parquet", features, layers, methods,
                                               ks, args.jobs, engine)
                times[side].append(seconds)
                print(f"  run {repeat + 1}: {side:<4} {seconds:7.1f} s wall ({len(tables[side])} rows; "
                      f"load average {os.getloadavg()[0]:.1f})", flush=True)
        a, b = _exact(tables["pool"]), _exact(tables["ray"])
        identical = a.equals(b)
        delta = float(np.nanmax(np.abs(a["f1"].to_numpy() - b["f1"].to_numpy()))) if len(a) == len(b) else np.nan
        med = {side: statistics.median(t) for side, t in times.items()}
        print(f"\n=== pool {med['pool']:.1f} s (range {min(times['pool']):.1f}-{max(times['pool']):.1f}), "
              f"ray {med['ray']:.1f} s (range {min(times['ray']):.1f}-{max(times['ray']):.1f}), "
              f"{args.repeats} run(s) each")
        print(f"=== overhead ratio ray / pool: {med['ray'] / med['pool']:.3f} (target <= 1.10)")
        print(f"=== results identical (every column but fit_seconds, exact): {identical}; rows {len(a)} vs {len(b)}; "
              f"max |ΔF1| {delta:.3g}", flush=True)
    if args.tiny_tasks:
        print()
        tiny_tasks(args.tiny_tasks, args.jobs)
    ray.shutdown()


if __name__ == "__main__":
    main()
