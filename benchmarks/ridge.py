"""needle's all-alphas ridge against scikit-learn's RidgeCV, per (layer, target), side by side.

needle: for each layer, one decomposition of the standardised training
activations (:func:`needle.probing.ridge.ridge_loo`) gives the leave-one-out
error of every alpha of the grid for every target at once. scikit-learn:
``RidgeCV(alphas=grid)`` (``cv=None``: its efficient leave-one-out, the same
criterion) fitted once per (layer, target) on the same standardised matrix.
Both choose per target; the script checks the chosen alphas are identical and
the test R² agree to 1e-6, and prints both times and the ratio.

Data: a space-time activation cache (``--cache``; the entities with every
target, split 70/30 by group) or synthetic activations of the same shape as
MiniLM's residual stream (``--synthetic``: n, d, layers, targets).

    python benchmarks/ridge.py --cache /tmp/st/cache-world-cities-resid
    python benchmarks/ridge.py --synthetic --n 5000 --d 384 --layers 6 --targets 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _data(args):
    if args.synthetic or not args.cache:
        rng = np.random.default_rng(0)
        n, d = args.n, args.d
        base = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.1, 3, d).astype(np.float32)
        layers = {l: base + rng.normal(size=(n, d)).astype(np.float32) * (0.5 + l) for l in range(args.layers)}
        Y = base[:, :8] @ rng.normal(size=(8, args.targets)) + rng.normal(size=(n, args.targets)) * 3
        is_test = rng.random(n) < 0.3
        return layers, Y, is_test, f"synthetic n={n} d={d}"
    from needle.activations import load_cache
    from needle.spacetime import entity_split, load_entities

    cache = load_cache(args.cache)
    entities = load_entities(cache)
    Y = np.column_stack(list(entities.targets.values()))
    rows = np.isfinite(Y).all(axis=1)
    is_test = entity_split(entities)[rows]
    layers = {l: np.asarray(cache.layer(l), np.float32)[rows] for l in cache.layers}
    return layers, Y[rows], is_test, f"{args.cache} ({rows.sum()} entities with {', '.join(entities.targets)})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--targets", type=int, default=2)
    args = parser.parse_args(argv)

    from sklearn.linear_model import RidgeCV
    from threadpoolctl import threadpool_limits

    from needle.probing.preprocessing import standardization
    from needle.probing.ridge import DEFAULT_ALPHAS, ridge_loo

    layers, Y, is_test, what = _data(args)
    alphas = np.asarray(DEFAULT_ALPHAS)
    print(f"data: {what}; {len(layers)} layers × {Y.shape[1]} targets × {alphas.size} alphas; "
          f"{(~is_test).sum()} train / {is_test.sum()} test")
    t_needle = t_sklearn = c_needle = c_sklearn = 0.0
    worst_r2, same_alpha, cells = 0.0, 0, 0
    def r2(y, p):
        return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)

    with threadpool_limits(1):  # one core each, as a sweep worker runs; CPU time is the steadier number on a busy machine
        for layer, X in layers.items():
            mean, scale = standardization(X[~is_test])
            Z_train = (X[~is_test] - mean) / scale
            Z_test = (X[is_test] - mean) / scale
            start, cpu = time.perf_counter(), time.process_time()
            path = ridge_loo(Z_train, Y[~is_test], alphas)
            pred = path.predict(Z_test)
            t_needle += time.perf_counter() - start
            c_needle += time.process_time() - cpu
            for t in range(Y.shape[1]):
                start, cpu = time.perf_counter(), time.process_time()
                reference = RidgeCV(alphas=alphas).fit(Z_train, Y[~is_test, t])
                ref_pred = reference.predict(Z_test)
                t_sklearn += time.perf_counter() - start
                c_sklearn += time.process_time() - cpu
                cells += 1
                same_alpha += int(reference.alpha_ == path.alpha[t])
                worst_r2 = max(worst_r2, abs(r2(Y[is_test, t], ref_pred) - r2(Y[is_test, t], pred[:, t])))
    print(f"{'':<22}{'wall s':>10}{'CPU s':>10}")
    print(f"{'needle ridge_loo':<22}{t_needle:>10.3f}{c_needle:>10.3f}")
    print(f"{'sklearn RidgeCV':<22}{t_sklearn:>10.3f}{c_sklearn:>10.3f}")
    print(f"speed-up {t_sklearn / t_needle:.1f}× wall, {c_sklearn / c_needle:.1f}× CPU; same chosen alpha in "
          f"{same_alpha}/{cells} (layer, target); max |ΔR²| {worst_r2:.2e}")


if __name__ == "__main__":
    main()
