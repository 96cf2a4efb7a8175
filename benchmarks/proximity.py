"""Proximity error: needle's blockwise computation against the n × n distance matrix, side by side.

needle (:func:`needle.spacetime.metrics.proximity_error`): great-circle order
through dot products of unit vectors, 100 rows at a time (memory O(100 n));
times by sorting. The n × n way
(:func:`~needle.spacetime.metrics.proximity_error_bruteforce`): the whole
haversine distance matrix, as the original code built it. Synthetic
coordinates: uniform places on the sphere within 70° of the equator, predictions displaced by a
Gaussian of ``--noise`` degrees. Peak memory by ``tracemalloc`` (numpy
allocations are traced). The n × n side is skipped, and what it would need
printed, when its matrix does not fit in a quarter of the free memory.

    python benchmarks/proximity.py --n 5000 40000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def _measure(function, *args, **kwargs):
    tracemalloc.start()
    start = time.process_time()  # CPU seconds: steadier than wall time on a shared machine
    value = function(*args, **kwargs)
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 40000])
    parser.add_argument("--noise", type=float, default=15.0)
    args = parser.parse_args(argv)

    import psutil
    from threadpoolctl import threadpool_limits

    from needle.spacetime.metrics import proximity_error, proximity_error_bruteforce

    with threadpool_limits(1):  # CPU time of one core on both sides; lifted again when main returns
        print("CPU seconds; peak memory traced by tracemalloc; the n × n matrix alone is n² × 8 bytes")
        print(f"{'n':>7} {'kind':<6} {'needle s':>9} {'needle MB':>10} {'n×n s':>8} {'n×n MB':>9} {'speed-up':>9} "
              f"{'memory ÷':>9} {'max |Δ|':>8} {'mean error':>11}")
        for n in args.n:
            rng = np.random.default_rng(n)
            # Places up to 70° from the equator: predictions clipped onto a pole would all be one point, and the
            # two sides would break those exact ties by rounding noise (both are right; they would just differ).
            lat = np.degrees(np.arcsin(rng.uniform(-0.94, 0.94, n)))
            lon = rng.uniform(-180, 180, n)
            true = np.c_[lat, lon]
            pred = np.c_[np.clip(lat + rng.normal(0, args.noise, n), -90, 90), lon + rng.normal(0, args.noise, n)]
            years = rng.uniform(-1000, 2000, n)
            for kind, t, p in (("space", true, pred), ("time", years, years + rng.normal(0, 100, n))):
                fast, fast_s, fast_peak = _measure(proximity_error, t, p, kind=kind)
                need = 6 * n * n * 8  # the float64 matrix and the haversine's temporaries
                if need < psutil.virtual_memory().available / 4:
                    slow, slow_s, slow_peak = _measure(proximity_error_bruteforce, t, p, kind=kind)
                    diff = float(np.abs(fast - slow).max())
                    print(f"{n:>7} {kind:<6} {fast_s:>9.3f} {fast_peak / 2**20:>10.1f} {slow_s:>8.2f} "
                          f"{slow_peak / 2**20:>9.0f} {slow_s / fast_s:>8.1f}× {slow_peak / fast_peak:>8.0f}× "
                          f"{diff:>8.1e} {fast.mean():>11.4f}")
                else:
                    print(f"{n:>7} {kind:<6} {fast_s:>9.3f} {fast_peak / 2**20:>10.1f} {'skipped':>8} "
                          f"{need / 2**30:>7.1f}GB {'—':>9} {need / fast_peak:>8.0f}× {'—':>8} {fast.mean():>11.4f}")


if __name__ == "__main__":
    main()
