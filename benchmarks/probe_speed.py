"""Benchmark: needle's probing engine against the paper's straightforward procedure.

One invocation runs the same sparse-probing sweep twice, side by side, on one
real activation cache (MiniLM over UD EWT dev, the ``pos:`` features, all
layers by default):

* ``needle``          — :func:`needle.probing.sweep` (batched Newton refits,
  orthant-wise Newton elastic-net/L1 fits), ``n_jobs=1``;
* ``straightforward`` — the procedure of the paper's released code,
  reimplemented here the simple way: one scikit-learn ``LogisticRegression``
  per selection fit and one per (method, k) refit.

Both sides use the same data, the same train/test split (the straightforward
side reads needle's saved splits file), the same preprocessing and the same
``k`` grid, and both run on one BLAS/OpenMP thread (environment variables set
before numpy is imported, and ``threadpoolctl`` limits around both).

What the straightforward side does, per (feature, layer) — it reimplements
:func:`needle.probing.sweep.run_task` step by step, without calling needle:

1. read the feature's rows of the layer matrix (float16 -> float32) and split
   them as the splits file says (examples in the file's order);
2. prefilter: the top 1024 neurons by ``|mean_P - mean_N|`` on the
   training rows in raw units (means accumulated in float64), ordered by
   decreasing mean difference with ties to the lower neuron index (a stable
   sort) — this order is also the tie-break of every ranking below, as in
   needle;
3. standardise the candidates by their training mean and standard deviation
   (float64; a column whose std is <= 1e-6 x its largest |value| is constant
   and keeps scale 1);
4. select, for every k:

   - ``mean_diff``: numpy ``|mean_P - mean_N|`` of the candidates, ranked;
   - ``f_stat``: ``sklearn.feature_selection.f_classif`` on the raw
     candidates (NaN -> 0), ranked;
   - ``l1``: ``|coef|`` of one ``LogisticRegression(l1_ratio=1,
     solver="saga", C=0.01, class_weight="balanced")`` on the standardised
     candidates (the paper's ``C=0.1, penalty="l1", solver="saga"`` on
     activations scaled to std 0.1 — the same problem), ranked;
   - ``adaptive``: the paper's "telescopic" loop: on the candidates scaled to
     std 0.1, for k in the grid from the largest down, fit
     ``LogisticRegression(solver="saga", l1_ratio=r_m, C=C_m,
     class_weight="balanced", max_iter=1000)`` on the current m neurons with
     ``C_m = m / 20`` and ``r_m = clip(e^{-m/20}, 0.1, 0.9)``, keep the k
     largest ``|coef|``; no fit when k >= m (needle's AdaptiveSelector
     schedule, which is the paper code's);

   rankings are ``argsort(-score, kind="stable")`` so that ties fall back to
   the candidate order exactly as in needle;
5. refit one ``LogisticRegression(C=0.01, class_weight="balanced")`` per
   (method, k) on the standardised selected neurons (``--refit-solver lbfgs``,
   scikit-learn's default solver and settings: tol 1e-4, max_iter 100; or
   ``saga``: the paper code's ``solver="saga", max_iter=200`` on activations
   scaled to std 0.1 with ``C=1``, the same problem), predict on the test
   split, F1.

The SAGA settings of the selection fits are the paper code's (scikit-learn
defaults tol=1e-4; max_iter 100 for the L1 ranking, 1000 for adaptive);
``--saga-max-iter`` and ``--saga-tol`` change them for both. SAGA's
``random_state`` is fixed (0) so the run is deterministic.

Printed: wall and CPU time of each side on exactly the same tasks (CPU time
is the steadier number on a shared machine), the speed-up, max |ΔF1| overall
and per method, mean F1 per method on both sides, how often the two chose the
same neurons, and how many scikit-learn fits stopped at max_iter. Target
(issue): speed-up >= 20x with max |ΔF1| <= 0.01. The per-probe comparison
(both F1s and neuron sets) is saved as ``probe_speed_comparison.parquet``
under ``--work``.

``--jobs N`` gives both sides N worker processes (needle's ``n_jobs`` and a
pool of the same size over the straightforward side's (feature, layer)
tasks); the CPU times then include the workers'.

Recheck (``--recheck saga|lbfgsb``; with ``--recheck-only``, on a saved comparison):
SAGA's stopping rule (relative change of the coefficients below ``tol``) can
stop well short of the optimum of the problem it is given, and the l1 and
adaptive rankings then differ from needle's near the k-th place. The recheck
re-runs the straightforward side's l1/adaptive tasks where a probe chose
other neurons than needle (or had |ΔF1| > 0.01) with every selection fit
solved to convergence — by SAGA at
``--recheck-tol`` (default 1e-8; hours on the large tasks) or by scipy's
L-BFGS-B on the same problem (``lbfgsb``; the bound-constrained split form,
restarted until the optimality conditions hold to 1e-6 of their value at
zero; checked equal to SAGA at tol 1e-12 to 4e-9) — and prints needle
against that converged reference, and the paper-setting SAGA against it.

The straightforward side of the whole grid takes hours (SAGA on up to
15k x 1024), so ``--features``/``--layers`` run a subset; the printout says
which. With a subset, ``--engine-full`` also times needle on the whole grid
(measured) and ``--extrapolate`` estimates the straightforward side's whole
grid from a power law in training rows fitted to the subset's tasks (labelled
as an estimate). ``--diagnose`` takes the l1/adaptive task with the largest
|ΔF1| and compares the objective of its first selection fit under SAGA (as
run; ``--diagnose-tight``: also at tol/100) and under needle's solver — this
is where the two sides part: SAGA stops short of the optimum and ranks the
neurons near the k-th place differently. ``--needle-tol`` sets the KKT
tolerance of needle's l1/adaptive fits; ``--profile N`` prints a cProfile of
the needle side.

Usage::

    python benchmarks/probe_speed.py [--cache DIR] [--features pos:NOUN,pos:ADV] [--layers 0,3]
        [--refit-solver lbfgs|saga] [--saga-max-iter N] [--saga-tol T] [--needle-tol T]
        [--extrapolate] [--engine-full] [--diagnose [--diagnose-tight]] [--profile 25] [--verbose]
        [--jobs 2] [--recheck saga|lbfgsb [--recheck-tol 1e-8] [--recheck-only]]

Without ``--cache`` the cache is built (once) under ``--work``: the EWT dev
dataset with ``needle.datasets.ud.build_ud`` and the MiniLM activations with
``needle.extract``.
"""

from __future__ import annotations

import os

# One thread for every BLAS / OpenMP pool, for both sides, before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import cProfile
import io
import math
import pstats
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ewt_cache import add_cache_arguments, ewt_dev_cache

METHODS = ("mean_diff", "f_stat", "l1", "adaptive")
KS = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)
# The engine's defaults, passed explicitly to both sides.
C = 0.01
PREFILTER = 1024
TEST_SIZE = 0.3
SEED = 0
L1_C = 0.01  # needle's l1_score default = the paper's C=0.1 on std-0.1 activations
ADAPTIVE = {"C_scale": 0.05, "l1_ratio_scale": 20.0, "l1_ratio_bounds": (0.1, 0.9), "feature_std": 0.1}


# ------------------------------------------------------------------ the straightforward side
def _rank(score: np.ndarray) -> np.ndarray:
    """Highest score first; ties (and NaN, ranked last) keep the column order."""
    score = np.where(np.isnan(score), -np.inf, score)
    return np.argsort(-score, kind="stable")


class FitCounter:
    """Counts selection/refit fits and those that did not converge (scikit-learn: a ConvergenceWarning)."""

    def __init__(self):
        self.fits: dict[str, int] = {}
        self.unconverged: dict[str, int] = {}

    def fit(self, what: str, model, X, y):
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X, y)
        self.count(what, converged=not any(issubclass(w.category, ConvergenceWarning) for w in caught))
        return model

    def count(self, what: str, *, converged: bool) -> None:
        self.fits[what] = self.fits.get(what, 0) + 1
        if not converged:
            self.unconverged[what] = self.unconverged.get(what, 0) + 1

    def merge(self, other: FitCounter) -> None:
        for what, n in other.fits.items():
            self.fits[what] = self.fits.get(what, 0) + n
        for what, n in other.unconverged.items():
            self.unconverged[what] = self.unconverged.get(what, 0) + n


def prepare(layer_matrix, rows, y, is_test):
    """Read, split, prefilter and standardise one (feature, layer), as run_task does."""
    X = np.asarray(layer_matrix[rows], dtype=np.float32)
    train = ~is_test
    X_train, X_test, y_train, y_test = X[train], X[is_test], y[train], y[is_test]
    pos = y_train == 1
    # Prefilter by |mean difference| in raw units; candidates in decreasing order.
    mean_diff = np.abs(X_train[pos].mean(axis=0, dtype=np.float64) - X_train[~pos].mean(axis=0, dtype=np.float64))
    candidates = _rank(mean_diff)[:PREFILTER]
    Xc = X_train[:, candidates].astype(np.float64)
    mean, std = Xc.mean(axis=0), Xc.std(axis=0)
    std[std <= 1e-6 * np.maximum(np.abs(Xc).max(axis=0), 1e-300)] = 1.0  # constant columns
    Z_train = (Xc - mean) / std
    Z_test = (X_test[:, candidates].astype(np.float64) - mean) / std
    return candidates, Xc, Z_train, Z_test, y_train, y_test


def adaptive_schedule(m: int) -> tuple[float, float]:
    """(C, l1_ratio) of the paper code's fit on m neurons."""
    lo, hi = ADAPTIVE["l1_ratio_bounds"]
    return ADAPTIVE["C_scale"] * m, float(np.clip(math.exp(-m / ADAPTIVE["l1_ratio_scale"]), lo, hi))


def _selection_coef(Z, y, C_, l1_ratio, max_iter, what, saga, args, counter: FitCounter) -> np.ndarray:
    """Coefficients of one elastic-net selection fit: scikit-learn's SAGA (the paper code's), or L-BFGS-B."""
    from sklearn.linear_model import LogisticRegression

    if getattr(args, "selection_solver", "saga") == "lbfgsb":
        return _elastic_net_lbfgsb(Z, y, C_, l1_ratio, what, counter)
    model = LogisticRegression(C=C_, l1_ratio=l1_ratio, max_iter=max_iter, **saga)
    counter.fit(f"{what} (saga)", model, Z, y)
    return model.coef_[0]


def _elastic_net_lbfgsb(Z, y, C_, l1_ratio, what, counter: FitCounter) -> np.ndarray:
    """scikit-learn's balanced elastic-net logistic problem solved to high precision by scipy's L-BFGS-B.

    An independent reference for the recheck (SAGA needs hours on the large tasks): the smooth,
    bound-constrained split form ``w = w_plus - w_minus``, ``w_plus, w_minus >= 0``, whose L1 term is linear.
    Coefficients below 1e-7 of the largest are set to zero (the split form leaves round-off where the exact
    solution has zeros, and the ranking's tie-break among zeros is the candidate order).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    n, m = Z.shape
    n_pos = int(y.sum())
    weight = C_ * np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))
    yf = y.astype(np.float64)

    def objective(v):
        w, b = v[:m] - v[m:2 * m], v[-1]
        z = Z @ w + b
        loss = np.sum(weight * (np.logaddexp(0.0, z) - yf * z))
        g_z = weight * (expit(z) - yf)
        g_w = Z.T @ g_z + (1 - l1_ratio) * w
        value = loss + 0.5 * (1 - l1_ratio) * (w @ w) + l1_ratio * np.sum(v[:2 * m])
        return value, np.concatenate([g_w + l1_ratio, -g_w + l1_ratio, [g_z.sum()]])

    def kkt_violation(v):
        """Largest violation of the elastic-net optimality conditions at v (0 at the exact optimum)."""
        w = v[:m] - v[m:2 * m]
        _, grad = objective(v)
        g_w, g_b = grad[:m] - l1_ratio, grad[-1]  # gradient of the smooth part
        return max(np.max(np.where(w != 0, np.abs(g_w + l1_ratio * np.sign(w)),
                                   np.maximum(np.abs(g_w) - l1_ratio, 0.0)), initial=0.0), abs(g_b))

    def clean(v):
        """v with coefficients below 1e-7 of the largest set to zero, and the coefficients w."""
        v = v.copy()
        w = v[:m] - v[m:2 * m]
        w[np.abs(w) <= 1e-7 * max(np.abs(w).max(), 1e-300)] = 0.0
        v[:m], v[m:2 * m] = np.maximum(w, 0.0), np.maximum(-w, 0.0)
        return v, w

    # Converged: KKT violation below 1e-6 of the one at the start (scale-free) or at round-off (w = 0 optimal).
    # L-BFGS-B can stall short of that (a relative-reduction or line-search stop with a stale curvature memory),
    # so it is restarted from where it stopped until the conditions hold; its own messages are not the test.
    start = np.zeros(2 * m + 1)
    target = max(1e-6 * kkt_violation(start), 1e-10)
    bounds = [(0.0, None)] * (2 * m) + [(None, None)]
    v = start
    for _ in range(50):
        result = minimize(objective, v, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 50_000, "maxfun": 100_000, "ftol": 0.0, "gtol": 1e-12, "maxcor": 30})
        v, w = clean(result.x)
        converged = kkt_violation(v) <= target
        if converged:
            break
    counter.count(f"{what} (L-BFGS-B)", converged=converged)
    return w


def straightforward_task(layer_matrix, rows, y, is_test, methods, ks, args, counter: FitCounter):
    """One (feature, layer) the simple way. Returns {method: [(k, f1, neurons)]} and per-method seconds."""
    from sklearn.feature_selection import f_classif
    from sklearn.linear_model import LogisticRegression

    candidates, Xc, Z_train, Z_test, y_train, y_test = prepare(layer_matrix, rows, y, is_test)
    pos = y_train == 1
    ks = [k for k in ks if k <= candidates.size]

    saga = {"solver": "saga", "class_weight": "balanced", "tol": args.saga_tol, "random_state": 0}
    out, seconds = {}, {}
    for method in methods:
        started = time.perf_counter()
        if method == "mean_diff":
            score = np.abs(Xc[pos].mean(axis=0) - Xc[~pos].mean(axis=0))
            supports = {k: _rank(score)[:k] for k in ks}
        elif method == "f_stat":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # constant columns
                f, _ = f_classif(Xc, y_train)
            order = _rank(np.nan_to_num(f, nan=0.0))
            supports = {k: order[:k] for k in ks}
        elif method == "l1":
            coef = _selection_coef(Z_train, y_train, L1_C, 1.0, args.saga_max_iter or 100, "l1 selection", saga,
                                   args, counter)
            order = _rank(np.abs(coef))
            supports = {k: order[:k] for k in ks}
        elif method == "adaptive":
            Zs = Z_train * ADAPTIVE["feature_std"]
            current = np.arange(candidates.size)
            supports = {}
            for k in sorted(ks, reverse=True):
                if k < current.size:
                    m = current.size
                    C_m, l1_ratio = adaptive_schedule(m)
                    coef = _selection_coef(Zs[:, current], y_train, C_m, l1_ratio, args.saga_max_iter or 1000,
                                           f"adaptive selection{' m=1024' if m == PREFILTER else ''}", saga, args,
                                           counter)
                    current = current[_rank(np.abs(coef))[:k]]
                supports[k] = current.copy()
        else:
            raise SystemExit(f"the straightforward side has no method {method!r}")
        results = []
        for k in ks:
            sup = supports[k]
            if args.refit_solver == "lbfgs":
                model = LogisticRegression(C=C, class_weight="balanced")
                counter.fit("refit (lbfgs)", model, Z_train[:, sup], y_train)
                pred = model.predict(Z_test[:, sup])
            else:  # the paper code's refit: C=1 on activations scaled to std 0.1 (= C=0.01 on standardised)
                model = LogisticRegression(C=C * 100, solver="saga", class_weight="balanced", max_iter=200,
                                           random_state=0)
                counter.fit("refit (saga)", model, Z_train[:, sup] / 10, y_train)
                pred = model.predict(Z_test[:, sup] / 10)
            tp = int(np.sum((pred == 1) & (y_test == 1)))
            f1 = 2 * tp / (2 * tp + int(np.sum(pred != y_test))) if tp else 0.0
            results.append((k, f1, np.sort(candidates[sup])))
        out[method] = results
        seconds[method] = time.perf_counter() - started
    return out, seconds


def _task_inputs(splits: pd.DataFrame, feature: str):
    """Rows, labels and test mask of a feature, in the splits file's example order."""
    split = splits[splits["feature"] == feature].sort_values("example")
    return (split["row"].to_numpy(np.int64), split["y"].to_numpy().astype(np.int8),
            split["split"].to_numpy() == "test")


_WORKER_CACHE = None


def _init_worker(cache_path: str) -> None:
    global _WORKER_CACHE
    import needle

    _WORKER_CACHE = needle.load_cache(cache_path)


def _straightforward_job(feature, layer, rows, y, is_test, methods, ks, args, cache=None):
    """One (feature, layer) on the straightforward side, timed; runs in this process or a pool worker."""
    from threadpoolctl import threadpool_limits

    counter = FitCounter()
    started, started_cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        out, seconds = straightforward_task((cache or _WORKER_CACHE).layer(layer), rows, y, is_test, methods, ks,
                                            args, counter)
    task = {"feature": feature, "layer": layer, "seconds": time.perf_counter() - started,
            "cpu": time.process_time() - started_cpu, "n_train": int((~is_test).sum()),
            **{f"s_{m}": s for m, s in seconds.items()}}
    return out, task, counter


def run_straightforward(cache, splits: pd.DataFrame, tasks, methods, ks, args, jobs: int = 1):
    """The straightforward side on ``tasks`` [(feature, layer), ...]; ``jobs`` > 1 runs them in a process pool.

    Returns the per-probe records, the per-task times and the merged fit counter.
    """
    counter = FitCounter()
    records, per_task = [], []

    def collect(out, task, task_counter):
        per_task.append(task)
        counter.merge(task_counter)
        for method, results in out.items():
            for k, f1, neurons in results:
                records.append({"feature": task["feature"], "layer": task["layer"], "method": method, "k": k,
                                "f1_sf": f1, "neurons_sf": neurons})
        if args.verbose:
            print(f"    straightforward {task['feature']} L{task['layer']}: {task['seconds']:.1f} s wall, "
                  f"{task['cpu']:.1f} s CPU; wall per method: "
                  + " ".join(f"{m}={task[f's_{m}']:.1f}" for m in methods), flush=True)

    inputs = {f: _task_inputs(splits, f) for f in dict.fromkeys(f for f, _ in tasks)}
    if jobs == 1:
        for feature, layer in tasks:
            collect(*_straightforward_job(feature, layer, *inputs[feature], methods, ks, args, cache=cache))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Largest tasks first, so the pool does not end waiting on one big task.
        order = sorted(tasks, key=lambda t: -len(inputs[t[0]][0]))
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(str(cache.path),)) as pool:
            futures = [pool.submit(_straightforward_job, f, l, *inputs[f], methods, ks, args) for f, l in order]
            for future in as_completed(futures):
                collect(*future.result())
    return pd.DataFrame(records), pd.DataFrame(per_task), counter


def _objective(Z, y, w, b, C_, l1_ratio):
    """scikit-learn's balanced elastic-net logistic objective (intercept not penalised)."""
    n, n_pos = y.size, int(y.sum())
    s = np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))
    z = Z @ w + b
    loss = np.logaddexp(0.0, z) - y * z
    return float(C_ * np.sum(s * loss) + 0.5 * (1 - l1_ratio) * (w @ w) + l1_ratio * np.abs(w).sum())


def diagnose(cache, splits, feature, layer, method, args):
    """Why the two sides disagree: the first selection fit of (feature, layer, method), SAGA against needle.

    Fits the same elastic-net problem with the straightforward side's SAGA and with needle's solver
    (:func:`needle.probing.fitting.fit_elastic_net_logistic`, KKT tolerance 1e-9, as the engine), and prints
    both objective values and how many of the top-k neurons by |coef| they share.
    """
    from sklearn.linear_model import LogisticRegression

    from needle.probing.fitting import fit_elastic_net_logistic

    candidates, _, Z_train, _, y_train, _ = prepare(cache.layer(layer), *_task_inputs(splits, feature))
    if method == "adaptive":
        Z = Z_train * ADAPTIVE["feature_std"]
        C_, l1_ratio = adaptive_schedule(candidates.size)
        max_iter = args.saga_max_iter or 1000
    else:
        Z, C_, l1_ratio, max_iter = Z_train, L1_C, 1.0, args.saga_max_iter or 100
    print(f"\ndiagnosis: {feature} L{layer} {method}, first selection fit: {Z.shape[0]} x {Z.shape[1]}, "
          f"C={C_:g}, l1_ratio={l1_ratio:.3g}")
    fits = {}
    for name, tol, iters in (("saga (as run)", args.saga_tol, max_iter),
                             ("saga tol/100, 10x iter", args.saga_tol / 100, 10 * max_iter)):
        if name.startswith("saga tol/100") and not args.diagnose_tight:
            continue
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=C_, l1_ratio=l1_ratio, solver="saga", class_weight="balanced", tol=tol,
                                       max_iter=iters, random_state=0).fit(Z, y_train)
        fits[name] = (model.coef_[0], float(model.intercept_[0]), time.perf_counter() - started,
                      f"{int(model.n_iter_[0])} epochs")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_elastic_net_logistic(Z, y_train, C=C_, l1_ratio=l1_ratio, tol=1e-9, max_iter=200)
    fits["needle"] = (fit.coef, float(fit.intercept), time.perf_counter() - started,
                      f"{fit.n_iter} Newton iterations, converged={fit.converged}")
    best = _objective(Z, y_train, fit.coef, fit.intercept, C_, l1_ratio)
    top_needle = {k: set(_rank(np.abs(fit.coef))[:k]) for k in (8, 64)}
    for name, (w, b, sec, note) in fits.items():
        obj = _objective(Z, y_train, w, b, C_, l1_ratio)
        overlap = "  ".join(f"top-{k} shared {len(set(_rank(np.abs(w))[:k]) & top_needle[k])}/{k}" for k in (8, 64))
        print(f"  {name:<24} objective {obj:14.6f} (+{(obj - best) / abs(best):.2e} rel.)  {overlap}  "
              f"nonzero {np.count_nonzero(w):4d}  {sec:6.1f} s, {note}")


# ------------------------------------------------------------------------------- needle
def run_engine(cache, out: Path, features, layers, methods, ks, needle_tol=None, jobs: int = 1):
    from needle.probing import sweep

    params = {} if needle_tol is None else {m: {"tol": needle_tol} for m in methods if m in ("l1", "adaptive")}
    return sweep(cache, out=out, features=features, layers=layers, methods=list(methods), ks=list(ks),
                 prefilter=PREFILTER, test_size=TEST_SIZE, C=C, seed=SEED, baselines=False, n_jobs=jobs,
                 progress=False, overwrite=True, method_params=params)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (waited-for) children, so pool workers count."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn):
    """(fn's value, wall seconds, CPU seconds including pool workers that ended inside fn)."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    value = fn()
    return value, time.perf_counter() - wall, _cpu_seconds() - cpu


def _same_neurons(a, b) -> bool:
    return bool(np.array_equal(np.sort(np.asarray(a)), np.sort(np.asarray(b))))


def save_comparison(both: pd.DataFrame, path: Path) -> None:
    """The per-probe comparison as Parquet (neuron sets as int lists; None where a probe was not rechecked)."""
    from needle._io import atomic_file

    lists = {c: [None if a is None or (np.isscalar(a) and pd.isna(a)) else list(map(int, a)) for a in both[c]]
             for c in ("neurons", "neurons_sf", "neurons_conv") if c in both}
    with atomic_file(path) as handle:
        both.assign(**lists).to_parquet(handle, index=False)


def recheck(cache, splits, both: pd.DataFrame, args, comparison_path: Path) -> None:
    """Re-run, with selection fits solved to convergence, the straightforward l1/adaptive tasks where the sides disagreed.

    Adds ``f1_conv`` / ``same_conv`` (needle against the converged straightforward side) to the saved table.
    """
    import copy

    from threadpoolctl import threadpool_limits

    bad = both[both["method"].isin(["l1", "adaptive"]) & ((both["dF1"] > 0.01) | ~both["same"].astype(bool))]
    todo = sorted(set(zip(bad["feature"], bad["layer"].astype(int), bad["method"])))
    solver = (f"SAGA at tol {args.recheck_tol:g}, max_iter {args.recheck_max_iter}" if args.recheck == "saga"
              else "scipy L-BFGS-B, restarted until the KKT conditions hold to 1e-6")
    print(f"\n=== recheck: straightforward l1/adaptive selection fits by {solver}, on the {len(todo)} "
          f"(feature, layer, method) tasks where a probe's neurons differ or |ΔF1| > 0.01 ===")
    if not todo:
        return
    tight = copy.copy(args)
    tight.saga_tol, tight.saga_max_iter = args.recheck_tol, args.recheck_max_iter
    tight.selection_solver = args.recheck
    ks = sorted(both["k"].unique().astype(int))
    frames, wall, cpu, counter = [], 0.0, 0.0, FitCounter()
    for method in ("l1", "adaptive"):
        tasks = [(f, l) for f, l, m in todo if m == method]
        if not tasks:
            continue
        with threadpool_limits(1):
            (records, _, task_counter), w, c = timed(
                lambda tasks=tasks, method=method: run_straightforward(cache, splits, tasks, [method], ks, tight,
                                                                       args.jobs))
        frames.append(records)
        wall, cpu = wall + w, cpu + c
        counter.merge(task_counter)
    conv = pd.concat(frames, ignore_index=True).rename(columns={"f1_sf": "f1_conv", "neurons_sf": "neurons_conv"})
    both = both.drop(columns=["f1_conv", "neurons_conv", "same_conv"], errors="ignore")  # an earlier recheck's
    both = both.merge(conv, on=["feature", "layer", "method", "k"], how="left", validate="one_to_one")
    checked = both["f1_conv"].notna()
    both["same_conv"] = [_same_neurons(a, b) if c else None
                         for a, b, c in zip(both["neurons"], both["neurons_conv"], checked)]
    d = both[checked]
    d_needle = (d["f1"] - d["f1_conv"]).abs()
    d_saga = (d["f1_sf"] - d["f1_conv"]).abs()
    print(f"{checked.sum()} probes re-fitted in {wall:.0f} s wall, {cpu:.0f} s CPU")
    print(f"{'method':<10}{'probes':>7}{'max|needle-conv|':>17}{'#>0.01':>7}{'same nbrs':>10}"
          f"{'max|paper-conv|':>16}{'#>0.01':>7}")
    for method, g in d.groupby("method"):
        dn, ds = d_needle[g.index], d_saga[g.index]
        print(f"{method:<10}{len(g):7d}{dn.max():17.4f}{int((dn > 0.01).sum()):7d}{g['same_conv'].mean():10.1%}"
              f"{ds.max():16.4f}{int((ds > 0.01).sum()):7d}")
    print("  (conv = the straightforward side with its selection fits solved to convergence; needle-conv: needle "
          "against it; paper-conv: scikit-learn at the paper's SAGA settings against it)")
    print("fits not converged / all (scikit-learn: stopped at max_iter; L-BFGS-B: KKT violation above 1e-6 of "
          "the start's):")
    for what, n in counter.fits.items():
        print(f"  {what:<36} {counter.unconverged.get(what, 0):6d} / {n}")
    final = np.where(checked, (both["f1"] - both["f1_conv"]).abs(), both["dF1"])
    print(f"max |ΔF1| over all probes, the disagreeing tasks' selection fits solved to convergence: "
          f"{np.max(final):.4f}   (target <= 0.01)")
    save_comparison(both, comparison_path)
    print(f"comparison with the recheck saved to {comparison_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cache_arguments(parser, "needle-probe-speed", work_help="Where to build the dataset and cache, and write the results (default: %(default)s).")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--features", help="Comma-separated subset of the pos: features (default: all of them).")
    parser.add_argument("--layers", help="Comma-separated subset of layers (default: all).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ks", default=",".join(map(str, KS)))
    parser.add_argument("--refit-solver", choices=["lbfgs", "saga"], default="lbfgs",
                        help="Straightforward refits: scikit-learn's default lbfgs, or the paper code's saga.")
    parser.add_argument("--saga-max-iter", type=int, default=None,
                        help="max_iter of the straightforward side's SAGA selection fits "
                             "(default: the paper code's, 100 for l1 and 1000 for adaptive).")
    parser.add_argument("--saga-tol", type=float, default=1e-4, help="tol of those SAGA fits (default: %(default)s).")
    parser.add_argument("--needle-tol", type=float, default=None,
                        help="KKT tolerance of needle's l1 and adaptive fits (default: the engine's, 1e-9).")
    parser.add_argument("--extrapolate", action="store_true",
                        help="With a subset, estimate the straightforward side's time on all pos: features x all "
                             "layers from a power law in training rows fitted to the subset's tasks (an estimate, "
                             "labelled as such).")
    parser.add_argument("--engine-full", action="store_true",
                        help="With a subset, also time needle on all pos: features x all layers (measured).")
    parser.add_argument("--diagnose", action="store_true",
                        help="For the l1/adaptive task with the largest |ΔF1|, compare the first selection fit's "
                             "objective under SAGA and under needle's solver.")
    parser.add_argument("--diagnose-tight", action="store_true",
                        help="With --diagnose, also run SAGA at tol/100 and 10x max_iter (slow).")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Afterwards, profile the needle side once more and print its top N functions.")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Worker processes for BOTH sides (needle's sweep n_jobs, and a pool of the same size "
                             "over the straightforward side's tasks); CPU times include the workers "
                             "(default: %(default)s).")
    parser.add_argument("--recheck", choices=["saga", "lbfgsb"], default=None, metavar="SOLVER",
                        help="Afterwards, re-run the straightforward side's l1/adaptive tasks where a probe's neurons "
                             "differ from needle's (or |ΔF1| > 0.01) with their selection fits solved to convergence, by scikit-learn's SAGA "
                             "at --recheck-tol (hours on the large tasks) or by scipy's L-BFGS-B on the same problem "
                             "(lbfgsb, minutes): is the difference needle's, or SAGA's stopping early?")
    parser.add_argument("--recheck-tol", type=float, default=1e-8,
                        help="tol of the SAGA fits of --recheck saga (default: %(default)s).")
    parser.add_argument("--recheck-max-iter", type=int, default=100_000,
                        help="max_iter of the SAGA fits of --recheck saga (default: %(default)s).")
    parser.add_argument("--recheck-only", action="store_true",
                        help="Skip the timed run: recheck the comparison table a previous run saved under --work.")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.recheck_only and args.recheck is None:
        parser.error("--recheck-only needs --recheck saga|lbfgsb")

    import sklearn
    from threadpoolctl import threadpool_info, threadpool_limits

    import needle
    from needle.probing import load_splits, splits_path

    cache = needle.load_cache(ewt_dev_cache(cache=args.cache, work=args.work, ud_dir=args.ud_dir, model=args.model))
    all_pos = [f for f in cache.feature_names if f.startswith("pos:")]
    if not all_pos:
        sys.exit(f"{cache.path} has no pos: features.")
    features = all_pos if not args.features else [f.strip() for f in args.features.split(",")]
    unknown = [f for f in features if f not in all_pos]
    if unknown:
        sys.exit(f"unknown features {unknown}; the cache's pos: features are {all_pos}")
    layers = list(cache.layers) if not args.layers else [int(l) for l in args.layers.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    ks = sorted({int(k) for k in args.ks.split(",")})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "probe_speed_results.parquet"
    comparison_path = work / "probe_speed_comparison.parquet"
    if args.recheck_only:
        if not comparison_path.is_file():
            sys.exit(f"{comparison_path} is missing: run the benchmark once without --recheck-only (same --work).")
        recheck(cache, load_splits(splits_path(out)), pd.read_parquet(comparison_path), args, comparison_path)
        return

    n_train = {}
    for f in all_pos:
        _, y = cache.feature(f)
        n_train[f] = len(y)
    subset = features != all_pos or layers != list(cache.layers)
    print(f"cache   : {cache.path} ({cache.manifest['model_id']}, {cache.n_rows} rows x {cache.width} neurons, "
          f"layers {cache.layers})")
    print(f"grid    : {len(features)} features x {len(layers)} layers = {len(features) * len(layers)} tasks"
          f"{' (SUBSET of ' + str(len(all_pos)) + ' x ' + str(len(cache.layers)) + ')' if subset else ''}")
    print(f"features: {', '.join(features)}  ({sum(n_train[f] for f in features)} examples in all)")
    print(f"layers  : {layers}")
    print(f"methods : {methods};  ks = {ks};  C = {C}, prefilter = {PREFILTER}, test_size = {TEST_SIZE}, seed = {SEED}")
    print(f"straightforward: refits {args.refit_solver}"
          + (" (sklearn defaults: tol 1e-4, max_iter 100)" if args.refit_solver == "lbfgs" else
             " (paper code: C=1 on std-0.1 activations, max_iter 200)")
          + f"; SAGA selection fits tol {args.saga_tol:g}, max_iter "
          + (f"{args.saga_max_iter}" if args.saga_max_iter else "100 (l1) / 1000 (adaptive), the paper code's"))
    if args.needle_tol is not None:
        print(f"needle  : l1 and adaptive fits at KKT tolerance {args.needle_tol:g} (engine default 1e-9)")
    print(f"versions: needle {needle.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
          f"threads: " + ", ".join(sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()}))
          + f" (limited to 1 below); worker processes per side: {args.jobs}", flush=True)

    # Import what either side uses before timing (neither pays an import), and warm the page cache so
    # neither pays the first read of the layer files.
    import sklearn.feature_selection
    import sklearn.linear_model
    import sklearn.metrics

    import needle.probing.fitting
    import needle.probing.sweep

    for layer in layers:
        float(np.asarray(cache.layer(layer)).sum(dtype=np.float64))

    with threadpool_limits(1):
        print("\nrunning needle ...", flush=True)
        results, t_engine, c_engine = timed(
            lambda: run_engine(cache, out, features, layers, methods, ks, args.needle_tol, args.jobs))
        print(f"  needle          : {t_engine:8.1f} s wall, {c_engine:8.1f} s CPU", flush=True)
        splits = load_splits(splits_path(out))
        print("running straightforward ...", flush=True)
        (sf, per_task, counter), t_sf, c_sf = timed(
            lambda: run_straightforward(cache, splits, [(f, l) for f in features for l in layers], methods, ks,
                                        args, args.jobs))
        print(f"  straightforward : {t_sf:8.1f} s wall, {c_sf:8.1f} s CPU", flush=True)

    eng = results[["feature", "layer", "method", "k", "f1", "neurons", "fit_seconds"]]
    both = sf.merge(eng, on=["feature", "layer", "method", "k"], how="left", validate="one_to_one")
    if both["f1"].isna().any():
        sys.exit("needle produced no row for some (feature, layer, method, k) of the straightforward side")
    both["dF1"] = (both["f1"] - both["f1_sf"]).abs()
    both["same"] = [_same_neurons(a, b) for a, b in zip(both["neurons"], both["neurons_sf"])]
    save_comparison(both, comparison_path)

    print(f"\n=== {len(features)} features x {len(layers)} layers x {len(methods)} methods x {len(ks)} k "
          f"= {len(both)} probes per side{'  [SUBSET]' if subset else ''} ===")
    print(f"{'':16}{'wall s':>10}{'CPU s':>10}")
    print(f"{'needle':16}{t_engine:10.1f}{c_engine:10.1f}")
    print(f"{'straightforward':16}{t_sf:10.1f}{c_sf:10.1f}")
    print(f"speed-up        : {t_sf / t_engine:6.1f}x wall, {c_sf / c_engine:6.1f}x CPU   (target >= 20x)")
    print(f"max |ΔF1|       : {both['dF1'].max():.4f}   (target <= 0.01)")
    sec_engine = eng.groupby("method")["fit_seconds"].sum()  # fit_seconds is a path's time / len(ks)
    sec_sf = per_task[[f"s_{m}" for m in methods]].sum()
    print(f"\n{'method':<11}{'max|ΔF1|':>9}{'mean|ΔF1|':>10}{'#>0.01':>7}{'same nbrs':>10}"
          f"{'F1 needle':>10}{'F1 sklearn':>11}{'s needle':>9}{'s sklearn':>10}{'ratio':>7}")
    for method in methods:
        d = both[both["method"] == method]
        s_e, s_s = float(sec_engine.get(method, np.nan)), float(sec_sf[f"s_{method}"])
        print(f"{method:<11}{d['dF1'].max():9.4f}{d['dF1'].mean():10.4f}{int((d['dF1'] > 0.01).sum()):7d}"
              f"{d['same'].mean():10.1%}{d['f1'].mean():10.4f}{d['f1_sf'].mean():11.4f}"
              f"{s_e:9.1f}{s_s:10.1f}{s_s / s_e:6.0f}x")
    print("  (s = time inside each method's selection + refits; needle's from fit_seconds, excludes reading/prefilter)")
    worst = both.sort_values("dF1", ascending=False).head(5)
    print("\nlargest |ΔF1|:")
    for _, r in worst.iterrows():
        print(f"  {r['feature']:<10} L{r['layer']} {r['method']:<9} k={r['k']:<3} needle {r['f1']:.4f}  "
              f"sklearn {r['f1_sf']:.4f}  same neurons: {r['same']}")
    print("\nscikit-learn fits on the straightforward side (stopped at max_iter / all):")
    for what, n in counter.fits.items():
        print(f"  {what:<36} {counter.unconverged.get(what, 0):6d} / {n}")

    print(f"\nper-probe comparison saved to {comparison_path}")

    if args.recheck is not None:
        recheck(cache, splits, both, args, comparison_path)

    if args.diagnose:
        d = both[both["method"].isin(["l1", "adaptive"])]
        if len(d):
            r = d.sort_values("dF1", ascending=False).iloc[0]
            with threadpool_limits(1):
                diagnose(cache, splits, r["feature"], int(r["layer"]), r["method"], args)

    if subset and (args.extrapolate or args.engine_full):
        n_all = np.array([round(n_train[f] * (1 - TEST_SIZE)) for f in all_pos for _ in cache.layers], float)
        print(f"\n=== whole grid: all {len(all_pos)} pos features x {len(cache.layers)} layers "
              f"= {n_all.size} tasks ===")
        t_engine_full = None
        if args.engine_full:
            full_out = work / "probe_speed_full.parquet"
            with threadpool_limits(1):
                _, t_engine_full, c_engine_full = timed(
                    lambda: run_engine(cache, full_out, all_pos, list(cache.layers), methods, ks, args.needle_tol,
                                       args.jobs))
            print(f"needle, MEASURED        : {t_engine_full:8.1f} s wall, {c_engine_full:8.1f} s CPU")
        if args.extrapolate:
            x = np.log(per_task["n_train"].to_numpy(float))

            def power_law(column, total):
                """Estimated whole-grid total of a per-task time column, from a power law in n_train."""
                t = np.log(per_task[column].to_numpy(float))
                if np.ptp(x) > 0.5 and len(x) >= 3:
                    slope, intercept = np.polyfit(x, t, 1)
                    model = f"~ n_train^{slope:.2f}, fitted to the {len(per_task)} measured tasks"
                else:
                    slope, intercept = 1.0, float(np.mean(t - x))
                    model = f"assumed proportional to n_train ({len(per_task)} measured tasks)"
                est = float(np.exp(intercept) * np.sum(n_all ** slope))
                return est * total / per_task[column].sum(), model  # the loop's own overhead, if any

            est, model = power_law("seconds", t_sf)
            est_cpu, model_cpu = power_law("cpu", c_sf)
            print(f"straightforward, ESTIMATED (not measured): ~{est:.0f} s wall  [per-task wall {model}]")
            print(f"{'':42}~{est_cpu:.0f} s CPU   [per-task CPU {model_cpu}]")
            print(f"{'':42}(measured n_train {round(np.exp(x.min()))}..{round(np.exp(x.max()))}; whole grid "
                  f"n_train {int(n_all.min())}..{int(n_all.max())}; layers not modelled)")
            if t_engine_full:
                print(f"speed-up, ESTIMATED     : ~{est / t_engine_full:.1f}x wall, ~{est_cpu / c_engine_full:.1f}x CPU "
                      "(estimated straightforward / measured needle)")

    if args.profile:
        profile = cProfile.Profile()
        prof_out = work / "probe_speed_profile.parquet"
        with threadpool_limits(1):
            profile.enable()
            run_engine(cache, prof_out, features, layers, methods, ks, args.needle_tol)
            profile.disable()
        for key in ("tottime", "cumulative"):
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).sort_stats(key).print_stats(args.profile)
            text = stream.getvalue()
            print(f"\n--- needle profile, top {args.profile} by {key} ---")
            print(text[text.find("   ncalls"):].rstrip())


if __name__ == "__main__":
    main()
