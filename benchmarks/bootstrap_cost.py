"""Benchmark: what the confidence intervals cost a sweep.

Runs the same sweep twice, side by side, on an activation cache — once with ``bootstrap=0`` (no intervals)
and once with the default 1000 resamples of the test groups, ``--repeat`` interleaved pairs — and prints the
fastest wall time of each side, their ratio,
and that the point metrics are identical (the bootstrap must not change them). Also prints, from the second
run, the median interval width of F1 and how many features have fewer than 50 test positives.

Example::

    python benchmarks/bootstrap_cost.py --cache /tmp/bench/work/cache-minilm-ewt-dev \\
        --features pos:NOUN,pos:SYM,morph:Gender=Fem,dep:nsubj --layers 0,3,5 --repeat 2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--features", default="pos:NOUN,pos:SYM,morph:Gender=Fem,dep:nsubj")
    parser.add_argument("--layers", default="0,3,5")
    parser.add_argument("--methods", default="mean_diff,f_stat,adaptive")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from needle.activations import load_cache
    from needle.probing import sweep

    cache = load_cache(args.cache)
    options = dict(out=None, features=args.features.split(","), layers=[int(v) for v in args.layers.split(",")],
                   methods=args.methods.split(","), progress=False)
    sweep(cache, bootstrap=0, **{**options, "layers": options["layers"][:1], "features": options["features"][:1]})
    # Interleaved pairs, the fastest of each side: the machine's load drifts between runs.
    times, frames = {0: [], args.bootstrap: []}, {}
    for _ in range(args.repeat):
        for n_boot in (0, args.bootstrap):
            start = time.perf_counter()
            frames[n_boot] = sweep(cache, bootstrap=n_boot, **options)
            times[n_boot].append(time.perf_counter() - start)
    print("wall times per run:", {k: [round(t, 1) for t in v] for k, v in times.items()})
    times = {k: min(v) for k, v in times.items()}
    plain, boot = frames[0], frames[args.bootstrap]
    same = all(np.array_equal(plain[m].to_numpy(), boot[m].to_numpy(), equal_nan=True)
               for m in ("f1", "precision", "recall", "roc_auc"))
    print(f"{len(boot)} rows; {len(options['features'])} features x {len(options['layers'])} layers")
    print(f"bootstrap=0     {times[0]:8.2f} s")
    print(f"bootstrap={args.bootstrap:<5d} {times[args.bootstrap]:8.2f} s")
    print(f"ratio           {times[args.bootstrap] / times[0]:8.3f}x  (point metrics identical: {same})")
    width = (boot["f1_hi"] - boot["f1_lo"]).median()
    per_feature = boot.groupby("feature")[["n_test_pos", "n_test_groups"]].first()
    print(f"median F1 interval width {width:.3f}; test positives / groups per feature:")
    print(per_feature.to_string())


if __name__ == "__main__":
    main()
