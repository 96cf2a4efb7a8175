"""Sweeps: every (feature, layer, method, k) of a source, written to a results table.

The work is a list of independent :class:`ProbeTask` s, one per (feature,
layer); :func:`run_task` is a pure function of a task, the source and the
:class:`SweepConfig` that returns the task's result rows, so a process pool
(or later a distributed engine) can map it. :func:`sweep` plans the tasks,
saves the train/test splits, maps :func:`run_task` (serially or over a
process pool), and merges the rows into the results file atomically as tasks
complete; rerunning it skips rows already present, so an interrupted sweep
resumes and a sweep with another method or layer appends.

For one (feature, layer), :func:`run_task`:

1. reads the feature's rows of the layer (float16 → float32), refusing NaN
   or infinite values;
2. orders the neurons by class-mean difference on the training split and
   keeps the top ``prefilter`` as candidates (paper, Appendix A.2.4);
3. standardises the candidates by their training mean and standard
   deviation (constant neurons guarded);
4. for each method, selects a support for every ``k`` of the grid (capped at
   the number of candidates) and refits a balanced L2 logistic regression on
   each support — all ``k`` of the path in one batched Newton solve
   (:func:`needle.probing.fitting.fit_logistic_path`);
5. evaluates every probe on the held-out split;
6. with ``baselines``, also fits a dense probe on all neurons and probes on
   ``k`` random orthonormal directions for every ``k`` of the grid.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from needle._version import __version__
from needle.errors import InputError
from needle.probing.estimators import DEFAULT_C, candidate_neurons, method_candidates, random_orthonormal
from needle.probing.fitting import fit_logistic_path, standardization
from needle.probing.metrics import METRICS, binary_metrics_batch
from needle.probing.results import RESULT_KEY, certificate_columns, load_results, merge_results, write_results
from needle.probing.selection import get_selector
from needle.probing.source import ProbeSource
from needle.probing.splits import derive_seed, group_train_test_split, splits_frame, splits_path, write_splits

__all__ = ["DEFAULT_KS", "DEFAULT_METHODS", "SweepConfig", "ProbeTask", "plan_tasks", "run_task", "sweep"]

#: The paper's grid of sparsities (Section 2.5.3, A.2.5): 1..8, 10, 12, then powers of two to 256.
DEFAULT_KS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 128, 256)
DEFAULT_METHODS = ("mean_diff", "f_stat", "adaptive")
#: Parameters that must agree between the rows of one results file (same data, same question).
_COMPATIBLE = ("test_size", "seed", "prefilter", "C", "tol", "max_iter")


@dataclass(frozen=True)
class SweepConfig:
    """Everything a task needs besides its data (recorded as ``params`` with every row).

    Attributes
    ----------
    ks : tuple of int
        The grid of sparsities.
    prefilter : int or None
        Candidates kept by mean difference (None: all neurons).
    test_size : float
    C : float
        Inverse L2 regularisation of every refit, on standardised neurons.
    seed : int
    method_params : dict
        ``{method: {parameter: value}}`` for selection methods.
    tol, max_iter : float, int
        Newton refit tolerance and iterations.
    """

    ks: tuple[int, ...] = DEFAULT_KS
    prefilter: int | None = 1024
    test_size: float = 0.3
    C: float = DEFAULT_C
    seed: int = 0
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tol: float = 1e-8
    max_iter: int = 100

    def params(self, methods: Sequence[str], baselines: bool) -> dict[str, Any]:
        """The JSON-able description recorded in the ``params`` column."""
        out = asdict(self)
        out["ks"] = list(self.ks)
        out["methods"] = list(methods)
        out["baselines"] = bool(baselines)
        out["method_params"] = {m: get_selector(m, **self.method_params.get(m, {})).get_params() for m in methods}
        out["split"] = "by group, stratified"
        out["standardize"] = "training mean and std per neuron"
        return out


@dataclass(frozen=True)
class ProbeTask:
    """One (feature, layer) of a sweep: its examples, split and what is left to run.

    Attributes
    ----------
    feature : str
    layer : int
    rows : ndarray of shape (n_examples,), int64
        Rows of the layer matrix.
    y : ndarray of shape (n_examples,), int8
    is_test : ndarray of shape (n_examples,), bool
    methods : tuple of str
        Selection methods still to run.
    dense : bool
        Whether the dense baseline is still to run.
    random_directions : bool
        Whether the random-directions baseline is still to run.
    info : dict
        ``collection`` and ``level`` of the feature.
    """

    feature: str
    layer: int
    rows: np.ndarray
    y: np.ndarray
    is_test: np.ndarray
    methods: tuple[str, ...]
    dense: bool
    random_directions: bool
    info: Mapping[str, Any]


def _grid(ks: Sequence[int], limit: int) -> list[int]:
    return [k for k in ks if k <= limit]


def _check_ks(ks) -> tuple[int, ...]:
    ks = tuple(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
    if not ks or bad:
        raise InputError(f"ks must be a non-empty list of integers >= 1; bad values: {bad or 'none given'}.")
    return tuple(sorted({int(k) for k in ks}))


def _manifest(source: ProbeSource) -> dict[str, Any]:
    manifest = dict(source.manifest)
    missing = [key for key in ("model_id", "dataset_hash", "site") if key not in manifest]
    if missing:
        raise InputError(f"the source's manifest lacks {missing}; a ProbeSource must record them.")
    return manifest


def _manifest_json(manifest: Mapping[str, Any]) -> str:
    # The per-feature list can be long and is already in the rows (collection, level).
    small = {k: v for k, v in manifest.items() if k != "features"}
    return json.dumps(small, sort_keys=True, default=str)


def plan_tasks(
    source: ProbeSource,
    *,
    features: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    config: SweepConfig = SweepConfig(),
    baselines: bool = True,
    done: set[tuple] | None = None,
) -> tuple[list[ProbeTask], pd.DataFrame]:
    """Split every feature and list the (feature, layer) tasks with work left.

    Parameters
    ----------
    source : ProbeSource
    features, layers : optional
        Subsets (default: all of the source's).
    methods : sequence of str
    config : SweepConfig
    baselines : bool, default True
    done : set of tuple, optional
        Keys (see :data:`needle.probing.results.RESULT_KEY`) already computed.

    Returns
    -------
    tasks : list of ProbeTask
    splits : DataFrame
        The splits of the planned features (see :func:`needle.probing.splits.splits_frame`).

    Raises
    ------
    InputError
        Unknown feature or layer, or a requested feature with one class or
        whose classes cannot be split by group. When ``features`` is None such
        features are skipped with a warning instead.
    """
    manifest = _manifest(source)
    all_features = list(source.feature_names)
    explicit = features is not None
    features = all_features if features is None else list(features)
    unknown = [f for f in features if f not in all_features]
    if unknown:
        raise InputError(f"unknown features {unknown}; the source has: {', '.join(all_features)}")
    all_layers = list(source.layers)
    layers = all_layers if layers is None else [int(l) for l in layers]
    unknown_layers = [l for l in layers if l not in all_layers]
    if unknown_layers:
        raise InputError(f"unknown layers {unknown_layers}; the source has layers {all_layers}.")
    done = done or set()
    model, dataset, site = manifest["model_id"], manifest["dataset_hash"], manifest["site"]
    widths = {l: int(source.layer(l).shape[1]) for l in layers}
    limits = {m: get_selector(m, **config.method_params.get(m, {})).candidate_limit() for m in methods}
    row_groups = np.asarray(source.row_groups)
    tasks, split_frames, skipped = [], [], []
    for feature in features:
        rows, y = source.feature(feature)
        rows = np.asarray(rows, dtype=np.int64)
        y = np.asarray(y, dtype=np.int8)
        groups = row_groups[rows]
        try:
            is_test = group_train_test_split(
                groups, y, test_size=config.test_size, seed=derive_seed(config.seed, "split", feature), name=feature
            )
        except InputError as exc:
            if explicit:
                raise
            # One unsplittable feature (say, all positives in one document) must not sink a sweep of all of them.
            warnings.warn(f"skipping {exc}", stacklevel=2)
            skipped.append(str(exc))
            continue
        split_frames.append(
            splits_frame(dataset, feature, rows, groups, y, is_test, seed=config.seed, test_size=config.test_size)
        )
        info = source.feature_info(feature)
        info = {"collection": str(info.get("collection", "")), "level": str(info.get("level", ""))}
        for layer in layers:
            width = widths[layer]
            n_cand = width if config.prefilter is None else min(config.prefilter, width)

            def missing(method, ks):
                return any((model, dataset, site, feature, layer, method, k) not in done for k in ks)

            todo = tuple(m for m in methods if missing(m, _grid(config.ks, min(n_cand, limits[m] or n_cand))))
            dense = baselines and missing("dense", [width])
            rand = baselines and missing("random_directions", _grid(config.ks, width))
            if todo or dense or rand:
                tasks.append(ProbeTask(feature, layer, rows, y, is_test, todo, dense, rand, info))
    if skipped and not split_frames:
        raise InputError("no feature can be probed: " + " | ".join(skipped))
    splits = pd.concat(split_frames, ignore_index=True) if split_frames else pd.DataFrame()
    return tasks, splits


def _read_activations(source: ProbeSource, task: ProbeTask) -> np.ndarray:
    matrix = source.layer(task.layer)
    # Fancy indexing reads just these rows of a memory-mapped matrix.
    X = np.asarray(matrix[task.rows], dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"feature {task.feature!r}, layer {task.layer}: {bad.size} of {len(X)} examples have NaN or infinite "
            f"activations (rows {task.rows[bad[:5]].tolist()}{'...' if bad.size > 5 else ''}). "
            "Re-extract the activations (fp16 overflow?) or drop these examples."
        )
    return X


def _rows_for_path(common, method, ks, neurons_list, coefs, intercepts, X_test, y_test, fit, info, seconds):
    """Result rows of one path: evaluate every probe on the test split."""
    scores = np.empty((len(ks), X_test.shape[0]))
    stored = []
    for j, (neurons, coef) in enumerate(zip(neurons_list, coefs)):
        order = np.argsort(neurons, kind="stable")
        neurons, coef = np.asarray(neurons)[order], np.asarray(coef, dtype=np.float64)[order]
        stored.append((neurons, coef))
        scores[j] = X_test[:, neurons].astype(np.float64) @ coef + intercepts[j] if neurons.size else intercepts[j]
    metrics = binary_metrics_batch(y_test, scores)
    rows = []
    for j, k in enumerate(ks):
        row = dict(common)
        row.update(method=method, k=int(k))
        row.update({name: float(metrics[name][j]) for name in METRICS})
        row.update(
            neurons=stored[j][0].astype(np.int64),
            coef=stored[j][1],
            intercept=float(intercepts[j]),
            converged=bool(fit.converged[j]),
            n_iter=int(fit.n_iter[j]),
            fit_seconds=seconds / len(ks),
            selection_info=json.dumps(info[j], sort_keys=True, default=float),
            **certificate_columns(info[j]),
        )
        rows.append(row)
    return rows


def run_task(source: ProbeSource, task: ProbeTask, config: SweepConfig, *, params_json: str = "{}") -> pd.DataFrame:
    """Compute the result rows of one (feature, layer).

    A pure function of its arguments (it only reads ``source``), so tasks can
    run in any order and in any process.

    Parameters
    ----------
    source : ProbeSource
    task : ProbeTask
    config : SweepConfig
    params_json : str
        Recorded in the ``params`` column.

    Returns
    -------
    DataFrame
        Rows in the schema of :data:`needle.probing.results.RESULT_SCHEMA`.
    """
    manifest = _manifest(source)
    X = _read_activations(source, task)
    train = ~task.is_test
    X_train, X_test = X[train], X[task.is_test]
    y_train, y_test = task.y[train], task.y[task.is_test]
    common = {
        "model_id": manifest["model_id"],
        "dataset_hash": manifest["dataset_hash"],
        "site": manifest["site"],
        "collection": task.info.get("collection", ""),
        "level": task.info.get("level", ""),
        "feature": task.feature,
        "layer": int(task.layer),
        "n_train": int(train.sum()),
        "n_test": int(task.is_test.sum()),
        "n_train_pos": int(y_train.sum()),
        "n_test_pos": int(y_test.sum()),
        "seed": int(config.seed),
        "needle_version": __version__,
        "params": params_json,
        "manifest": _manifest_json(manifest),
    }
    rows: list[dict[str, Any]] = []
    width = X.shape[1]

    if task.methods:
        candidates = candidate_neurons(X_train, y_train, config.prefilter)
        X_cand = X_train[:, candidates]
        mean, scale = standardization(X_cand)
        # Fortran order: the batched refit gathers columns, which are then contiguous.
        Z = np.asfortranarray((X_cand - mean) / scale)
        for method in task.methods:
            start = time.perf_counter()
            selector = get_selector(method, **config.method_params.get(method, {}))
            # A method with its own prefilter (osp) sees the first columns: the top ones by mean difference.
            n_method = method_candidates(candidates, selector).size
            ks = _grid(config.ks, n_method)
            inputs = Z[:, :n_method] if selector.standardized_input else X_cand[:, :n_method]
            path = selector.select_path(
                inputs, y_train, ks, random_state=derive_seed(config.seed, "select", task.feature, task.layer, method)
            )
            fit = fit_logistic_path(Z, y_train, path.supports, C=config.C, tol=config.tol, max_iter=config.max_iter)
            seconds = time.perf_counter() - start
            neurons_list = [candidates[s] for s in path.supports]
            coefs = [w / scale[s] for w, s in zip(fit.coef, path.supports)]
            intercepts = [b - np.sum(w * mean[s] / scale[s]) for w, b, s in zip(fit.coef, fit.intercept, path.supports)]
            rows += _rows_for_path(common, method, ks, neurons_list, coefs, intercepts, X_test, y_test, fit,
                                   path.info, seconds)

    if task.dense or task.random_directions:
        mean_all, scale_all = standardization(X_train)
        Z_train = ((X_train - mean_all) / scale_all).astype(np.float32)
        Z_test = ((X_test - mean_all) / scale_all).astype(np.float32)
    if task.dense:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        start = time.perf_counter()
        model = LogisticRegression(C=config.C, class_weight="balanced", tol=1e-6, max_iter=1000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(Z_train, y_train)
        seconds = time.perf_counter() - start
        w = model.coef_[0].astype(np.float64)

        # The one-probe analogue of a PathFit, for _rows_for_path.
        fit = SimpleNamespace(
            converged=np.array([not any(issubclass(c.category, ConvergenceWarning) for c in caught)]),
            n_iter=np.array([int(np.max(model.n_iter_))]),
        )
        intercept = float(model.intercept_[0]) - float(np.sum(w * mean_all / scale_all))
        rows += _rows_for_path(common, "dense", [width], [np.arange(width)], [w / scale_all], [intercept],
                               X_test, y_test, fit, [{}], seconds)
    if task.random_directions:
        ks = _grid(config.ks, width)
        start = time.perf_counter()
        seed = derive_seed(config.seed, "random_directions", task.feature, task.layer)
        Q = random_orthonormal(width, max(ks), seed)
        P_train = np.asfortranarray(Z_train @ Q.astype(np.float32), dtype=np.float64)
        fit = fit_logistic_path(P_train, y_train, [np.arange(k) for k in ks], C=config.C, tol=config.tol,
                                max_iter=config.max_iter)
        seconds = time.perf_counter() - start
        P_test = Z_test @ Q.astype(np.float32)
        scores = np.stack([P_test[:, : len(w)].astype(np.float64) @ w + b for w, b in zip(fit.coef, fit.intercept)])
        metrics = binary_metrics_batch(y_test, scores)
        for j, k in enumerate(ks):
            row = dict(common)
            row.update(method="random_directions", k=int(k))
            row.update({name: float(metrics[name][j]) for name in METRICS})
            row.update(
                neurons=np.zeros(0, dtype=np.int64),
                coef=np.asarray(fit.coef[j], dtype=np.float64),
                intercept=float(fit.intercept[j]),
                converged=bool(fit.converged[j]),
                n_iter=int(fit.n_iter[j]),
                fit_seconds=seconds / len(ks),
                selection_info=json.dumps({"directions_seed": seed, "n_directions_drawn": int(max(ks))}),
            )
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ process pool plumbing
_WORKER_SOURCE: ProbeSource | None = None


def _init_worker(source: ProbeSource) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per process: the pool provides the parallelism


def _run_in_worker(task: ProbeTask, config: SweepConfig, params_json: str) -> pd.DataFrame:
    assert _WORKER_SOURCE is not None
    return run_task(_WORKER_SOURCE, task, config, params_json=params_json)


def _check_compatible(existing: pd.DataFrame, params: dict[str, Any], manifest: Mapping[str, Any], out: Path) -> None:
    """Refuse to mix rows computed under different splits or regularisation in one file."""
    scope = existing[
        (existing["model_id"] == manifest["model_id"])
        & (existing["dataset_hash"] == manifest["dataset_hash"])
        & (existing["site"] == manifest["site"])
    ]
    for text in scope["params"].unique():
        old = json.loads(text)
        differ = {key: (old.get(key), params[key]) for key in _COMPATIBLE if old.get(key) != params[key]}
        for method, mp in params["method_params"].items():
            if method in old.get("method_params", {}) and old["method_params"][method] != mp:
                differ[f"method_params[{method}]"] = (old["method_params"][method], mp)
        if differ:
            detail = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in differ.items())
            raise InputError(
                f"{out} holds results of this model and dataset made with other parameters ({detail}). "
                "Write to a new file, or pass overwrite=True to start over."
            )


def sweep(
    source: ProbeSource,
    *,
    out: str | os.PathLike | None,
    features: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    ks: Sequence[int] = DEFAULT_KS,
    prefilter: int | None = 1024,
    test_size: float = 0.3,
    C: float = DEFAULT_C,
    seed: int = 0,
    baselines: bool = True,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_jobs: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 30.0,
    overwrite: bool = False,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> pd.DataFrame:
    """Probe every (feature, layer, method, k) of a source and write the results table.

    Parameters
    ----------
    source : ProbeSource
        An :class:`~needle.activations.ActivationCache`, an
        :class:`~needle.probing.ArraySource`, or anything with that protocol.
    out : path-like or None
        Results Parquet file, created or appended to; the splits are saved
        beside it (:func:`needle.probing.splits.splits_path`). None keeps
        everything in memory (nothing saved, nothing resumed).
    features, layers : optional
        Subsets of the source's (default: all).
    methods : sequence of str, default ("mean_diff", "f_stat", "adaptive")
        Registered selection methods (:func:`needle.probing.available_methods`).
    ks : sequence of int, default :data:`DEFAULT_KS`
        Sparsities; those above the number of candidates are skipped.
    prefilter : int or None, default 1024
        Candidates kept by mean difference before selection (paper, A.2.4).
    test_size : float, default 0.3
        Target fraction of each class held out, by group (0.3 is the paper
        code's ``test_set_frac``).
    C : float, default 0.01
        Inverse L2 regularisation of every probe on standardised neurons
        (the paper code's ``C=1`` on activations scaled to std 0.1).
    seed : int, default 0
        Seeds the splits, the ``random`` method and the random directions.
    baselines : bool, default True
        Also fit the ``dense`` probe and the ``random_directions`` probes.
    method_params : dict, optional
        ``{method: {parameter: value}}``.
    n_jobs : int, default 1
        Processes; 1 runs in this process.
    executor : concurrent.futures.Executor, optional
        Run tasks on this executor instead (its workers must be able to
        receive the source by pickling); overrides ``n_jobs``.
    progress : bool, default True
        Show a progress bar.
    checkpoint_seconds : float, default 30
        Merge completed tasks into ``out`` at most this often (and always at
        the end or on an error). 0 writes after every task.
    overwrite : bool, default False
        Delete an existing ``out`` and its splits first.
    tol, max_iter : float, int
        Newton refit tolerance and iterations.

    Returns
    -------
    DataFrame
        The whole results table at ``out`` (or the rows computed, if ``out``
        is None).
    """
    from tqdm import tqdm

    ks = _check_ks(ks)
    methods = tuple(methods)
    if not methods and not baselines:
        raise InputError("nothing to do: give at least one method or baselines=True.")
    for method in methods:  # unknown names and bad parameters fail before any work
        get_selector(method, **(method_params or {}).get(method, {}))
    if prefilter is not None and (isinstance(prefilter, bool) or not isinstance(prefilter, (int, np.integer)) or prefilter < 1):
        raise InputError(f"prefilter must be an integer >= 1 or None, got {prefilter!r}.")
    if not (np.isfinite(C) and C > 0):
        raise InputError(f"C must be a positive finite number, got {C!r}.")
    config = SweepConfig(
        ks=ks,
        prefilter=None if prefilter is None else int(prefilter),
        test_size=float(test_size),
        C=float(C),
        seed=int(seed),
        method_params={m: dict(p) for m, p in (method_params or {}).items()},
        tol=float(tol),
        max_iter=int(max_iter),
    )
    params_json = json.dumps(config.params(methods, baselines), sort_keys=True, default=str)
    params = json.loads(params_json)  # compared with stored params, so in their JSON form (lists, not tuples)
    manifest = _manifest(source)

    existing = None
    if out is not None:
        out = Path(out)
        if overwrite:
            for path in (out, splits_path(out)):
                if path.exists():
                    path.unlink()
        if out.exists():
            existing = load_results(out)
            _check_compatible(existing, params, manifest, out)
    done = set() if existing is None else set(existing[list(RESULT_KEY)].itertuples(index=False, name=None))
    tasks, splits = plan_tasks(
        source, features=features, layers=layers, methods=methods, config=config, baselines=baselines, done=done
    )
    if out is not None and len(splits):
        write_splits(splits_path(out), splits)

    pending: list[pd.DataFrame] = []
    computed: list[pd.DataFrame] = []
    last_commit = time.monotonic()

    def commit():
        nonlocal existing, pending, last_commit
        if out is not None and pending:
            existing = merge_results(existing, pd.concat(pending, ignore_index=True))
            write_results(out, existing)
        pending = []
        last_commit = time.monotonic()

    def collect(frame: pd.DataFrame):
        if len(frame):
            # Rows already in the file (a method partly done before) are not duplicated.
            keys = frame[list(RESULT_KEY)].itertuples(index=False, name=None)
            frame = frame[[key not in done for key in keys]]
        pending.append(frame)
        computed.append(frame)
        if time.monotonic() - last_commit >= checkpoint_seconds:
            commit()

    bar = tqdm(total=len(tasks), desc="probing", unit="task", disable=not progress)
    try:
        if executor is None and n_jobs == 1:
            from threadpoolctl import threadpool_limits

            # Small dense problems run faster on one BLAS thread; the pool (n_jobs) parallelises.
            with threadpool_limits(1):
                for task in tasks:
                    bar.set_postfix_str(f"{task.feature} L{task.layer}", refresh=False)
                    collect(run_task(source, task, config, params_json=params_json))
                    bar.update()
        else:
            own = executor is None
            # "spawn": fresh interpreters, safe whatever threads this process runs.
            pool = executor or ProcessPoolExecutor(
                max_workers=int(n_jobs), mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(source,),
            )
            try:
                if own:
                    futures = {pool.submit(_run_in_worker, t, config, params_json): t for t in tasks}
                else:
                    futures = {pool.submit(run_task, source, t, config, params_json=params_json): t for t in tasks}
                for future in as_completed(futures):
                    task = futures[future]
                    bar.set_postfix_str(f"{task.feature} L{task.layer}", refresh=False)
                    collect(future.result())
                    bar.update()
            finally:
                if own:
                    pool.shutdown(cancel_futures=True)
    finally:
        commit()  # keep every completed task, even when interrupted
        bar.close()
    if out is not None:
        return load_results(out) if out.exists() else merge_results(None, pd.DataFrame())
    return merge_results(None, pd.concat(computed, ignore_index=True)) if computed else merge_results(None, pd.DataFrame())
