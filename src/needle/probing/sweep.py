"""Sweeps: every (feature, layer, method, k) of a source, written to a results table.

The work is a list of independent :class:`ProbeTask` s, one per (feature,
layer); :func:`run_task` is a pure function of a task, the source and the
:class:`SweepConfig` that returns the task's result rows, so a process pool
(or later a distributed engine) can map it. :func:`sweep` plans the tasks,
saves the train/test splits, maps :func:`run_task` (serially, over a
process pool, or as Ray tasks: :mod:`needle.probing.engines`), and merges the rows into the results file atomically as tasks
complete; rerunning it skips rows already present, so an interrupted sweep
resumes and a sweep with another method or layer appends.

For one (feature, layer), :func:`run_task` reads the feature's rows of the
layer (float16 → float32, refusing NaN or infinite values), runs the fit
template (:mod:`needle.probing.template`: prefilter to the top ``prefilter``
neurons by mean difference, standardise, select a support for every ``k``
with each method, refit the task's probe on every support in one batched
solve, map back to input units), evaluates every probe on the held-out split
with the task's metrics, and with ``baselines`` also fits the dense probe on
all neurons and probes on ``k`` random orthonormal directions.

A feature's task (``binary``, ``multiclass`` or ``regression``) comes from the
source; the split is the source's own when it has one (a dataset's ``split``
column, :meth:`ProbeSource.feature_split`), else drawn by group.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from needle._version import __version__
from needle.errors import InputError
from needle.probing.bootstrap import CI_COLUMNS, DEFAULT_N_BOOT, interval_columns, sweep_bootstrap
from needle.probing.constants import DEFAULT_KS, DEFAULT_METHODS
from needle.probing.estimators import DEFAULT_C, random_orthonormal
from needle.probing.metrics import ALL_METRICS, PRIMARY_METRIC, metrics_batch
from needle.probing.penalties import check_C
from needle.probing.results import (
    RESULT_KEY,
    append_results,
    certificate_columns,
    check_replaceable_results,
    load_results,
    merge_results,
)
from needle.probing.selection import get_selector
from needle.probing.source import ProbeSource, feature_split, feature_task
from needle.probing.splits import (
    derive_seed,
    group_train_test_split,
    merged_splits,
    splits_frame,
    splits_path,
    user_split,
    write_splits,
)
from needle.probing.template import AllColumns, CrossValidatedC, FirstColumns, check_task_support, fit_path, prepare

__all__ = ["DEFAULT_KS", "DEFAULT_METHODS", "SweepConfig", "ProbeTask", "plan_tasks", "run_task", "sweep"]

#: Parameters that must agree between the rows of one results file (same data, same question).
_COMPATIBLE = ("test_size", "seed", "prefilter", "C", "tol", "max_iter")


@dataclass(frozen=True)
class SweepConfig:
    """What to probe and how: everything a task needs besides its data (recorded as ``params`` with every row).

    Validated on construction, so a bad value fails before any work.

    Attributes
    ----------
    methods : tuple of str, default ("mean_diff", "f_stat", "adaptive")
        Registered selection methods (:func:`needle.probing.available_methods`).
    ks : tuple of int
        The grid of sparsities; those above the number of candidates are skipped.
    baselines : bool, default True
        Also fit the ``dense`` probe and the ``random_directions`` probes.
    prefilter : int or None, default 1024
        Candidates kept by mean difference before selection (paper, A.2.4); None: all.
    test_size : float, default 0.3
        Target fraction of each class held out, by group (the paper code's ``test_set_frac``);
        unused for features whose source gives a split.
    C : float or CrossValidatedC, default 0.01
        Inverse L2 regularisation of every refit on standardised neurons (the paper code's
        ``C=1`` on activations scaled to std 0.1), or chosen per probe by cross-validation
        over the training groups.
    seed : int, default 0
        Seeds the splits, the ``random`` method and the random directions.
    method_params : dict
        ``{method: {parameter: value}}`` for selection methods.
    tol, max_iter : float, int
        Refit tolerance and iterations.
    bootstrap : int, default 1000
        Resamples of the test groups for the confidence intervals of every row (``f1_lo``, ``f1_hi``, …;
        :mod:`needle.probing.bootstrap`); 0: none.
    splits : int, default 1
        Group splits per feature: with N > 1 every probe is also refit on N - 1 further group splits (seeds
        ``("split", feature, i)``) and its row records the primary metric's mean and sd over all N
        (``splits_mean``, ``splits_sd``, ``n_splits``). N times the work. Not for features whose source
        gives the split.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    ks: tuple[int, ...] = DEFAULT_KS
    baselines: bool = True
    prefilter: int | None = 1024
    test_size: float = 0.3
    C: float | CrossValidatedC = DEFAULT_C
    seed: int = 0
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tol: float = 1e-8
    max_iter: int = 100
    bootstrap: int = DEFAULT_N_BOOT
    splits: int = 1

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        set_("ks", _check_ks(self.ks))
        set_("methods", tuple(self.methods))
        set_("baselines", bool(self.baselines))
        if not self.methods and not self.baselines:
            raise InputError("nothing to do: give at least one method or baselines=True.")
        set_("method_params", {m: dict(p) for m, p in (self.method_params or {}).items()})
        unused = sorted(set(self.method_params) - set(self.methods))
        if unused:
            raise InputError(f"method parameters were given for {unused}, which this sweep does not run "
                             f"(methods: {', '.join(self.methods) or 'none'}).")
        for method in self.methods:  # unknown names and bad parameters fail before any work
            get_selector(method, **self.method_params.get(method, {}))
        prefilter = self.prefilter
        if prefilter is not None and (isinstance(prefilter, bool) or not isinstance(prefilter, (int, np.integer))
                                      or prefilter < 1):
            raise InputError(f"prefilter must be an integer >= 1 or None, got {prefilter!r}.")
        set_("prefilter", None if prefilter is None else int(prefilter))
        if not isinstance(self.C, CrossValidatedC):
            set_("C", check_C(self.C))
        set_("test_size", float(self.test_size))
        set_("seed", int(self.seed))
        set_("tol", float(self.tol))
        set_("max_iter", int(self.max_iter))
        for name, low in (("bootstrap", 0), ("splits", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}.")
            set_(name, int(value))

    def params(self) -> dict[str, Any]:
        """The JSON-able description recorded in the ``params`` column."""
        out = asdict(self)
        out["ks"] = list(self.ks)
        out["methods"] = list(self.methods)
        out["C"] = {"cv": asdict(self.C)} if isinstance(self.C, CrossValidatedC) else self.C
        out["method_params"] = {m: get_selector(m, **self.method_params.get(m, {})).get_params() for m in self.methods}
        out["split"] = "by group, stratified (or the source's own split)"
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
    task : str
        ``binary``, ``multiclass`` or ``regression``.
    groups : ndarray of shape (n_examples,), optional
        The group of every example (for a cross-validated C and the bootstrap over test groups).
    resplits : tuple of ndarray of shape (n_examples,), bool
        Further test masks (``SweepConfig.splits`` > 1): the probes are refit on each for the spread.
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
    task: str = "binary"
    groups: np.ndarray | None = None
    resplits: tuple[np.ndarray, ...] = ()


def _grid(ks: Sequence[int], limit: int) -> list[int]:
    return [k for k in ks if k <= limit]


def _method_ks(selector, ks: Sequence[int], n_cand: int, limit: int | None, width: int) -> list[int]:
    """The ks of a method's rows: a whole-layer probe (:mod:`needle.probing.layer_probes`) says its own."""
    if getattr(selector, "fits_layer", False):
        return selector.row_ks(ks, width)
    return _grid(ks, min(n_cand, limit or n_cand))


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
    config: SweepConfig = SweepConfig(),
    done: set[tuple] | None = None,
) -> tuple[list[ProbeTask], pd.DataFrame]:
    """Split every feature and list the (feature, layer) tasks with work left.

    Parameters
    ----------
    source : ProbeSource
    features, layers : optional
        Subsets (default: all of the source's).
    config : SweepConfig
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
        whose classes cannot be split by group, or a method that cannot
        select for the feature's task. When ``features`` is None such
        features are skipped with a warning instead.
    """
    methods, baselines = config.methods, config.baselines
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
    selectors = {m: get_selector(m, **config.method_params.get(m, {})) for m in methods}
    limits = {m: selector.candidate_limit() for m, selector in selectors.items()}
    if config.ks and max(config.ks) > max(widths.values(), default=0):
        too_big = [k for k in config.ks if k > max(widths.values())]
        warnings.warn(f"k = {too_big} exceed the {max(widths.values())} columns of every layer and are skipped.",
                      stacklevel=2)
    row_groups = np.asarray(source.row_groups)
    tasks, split_frames, skipped = [], [], []
    for feature in features:
        rows, y = source.feature(feature)
        task = feature_task(source, feature)
        rows = np.asarray(rows, dtype=np.int64)
        y = np.asarray(y, dtype=np.int8 if task == "binary" else np.int64 if task == "multiclass" else np.float64)
        groups = row_groups[rows]
        try:
            for selector in selectors.values():
                check_task_support(selector, task, feature)
            given = feature_split(source, feature)
            resplits = ()
            if given is not None:
                is_test = user_split(groups, y, given, task=task, name=feature)
            else:
                is_test = group_train_test_split(groups, y, test_size=config.test_size,
                                                 seed=derive_seed(config.seed, "split", feature), name=feature,
                                                 task=task)
                resplits = tuple(group_train_test_split(groups, y, test_size=config.test_size, name=feature,
                                                        seed=derive_seed(config.seed, "split", feature, i), task=task)
                                 for i in range(1, config.splits))
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

            todo = tuple(m for m in methods if missing(m, _method_ks(selectors[m], config.ks, n_cand, limits[m], width)))
            dense = baselines and missing("dense", [width])
            rand = baselines and missing("random_directions", _grid(config.ks, width))
            if todo or dense or rand:
                tasks.append(ProbeTask(feature, layer, rows, y, is_test, todo, dense, rand, info, task, groups,
                                       resplits))
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


def _scores(task: str, X_test: np.ndarray, neurons: np.ndarray, coef: np.ndarray, intercept) -> np.ndarray:
    """Test scores of one probe in input units: (n_test,), or (n_test, n_classes) for multiclass."""
    Xs = X_test[:, neurons].astype(np.float64)
    if task == "multiclass":
        return Xs @ np.asarray(coef).T + np.asarray(intercept)
    return Xs @ coef + intercept if neurons.size else np.full(X_test.shape[0], float(intercept))


def _metric_columns(task: str, metrics: Mapping[str, np.ndarray], j: int) -> dict[str, float]:
    return {name: float(metrics[name][j]) if name in metrics else np.nan for name in ALL_METRICS + CI_COLUMNS}


def _rows_for_path(common, method, path, X_test, y_test, boot=None) -> list[dict[str, Any]]:
    """Result rows of one fitted path: evaluate every probe on the test split."""
    task = common["task"]
    stored, scores = [], []
    for neurons, coef, intercept in zip(path.neurons, path.coef, path.intercept):
        order = np.argsort(neurons, kind="stable")
        neurons = np.asarray(neurons)[order]
        coef = np.asarray(coef, dtype=np.float64)[..., order]
        stored.append((neurons, coef, intercept))
        scores.append(_scores(task, X_test, neurons, coef, intercept))
    scores = np.stack(scores)
    metrics = {**metrics_batch(task, y_test, scores), **interval_columns(boot, task, y_test, scores)}
    return [_row(common, method, path, j, metrics, *stored[j], path.info[j]) for j in range(len(path.ks))]


def _row(common, method, path, j, metrics, neurons, coef, intercept, info, *, certificate=True) -> dict[str, Any]:
    """The result row of probe ``j`` of a fitted path (``info`` is what its ``selection_info`` records)."""
    task = common["task"]
    row = dict(common)
    row.update(method=method, k=int(path.ks[j]))
    row.update(_metric_columns(task, metrics, j))
    row.update(
        neurons=np.asarray(neurons, dtype=np.int64),
        coef=np.asarray(coef, dtype=np.float64).ravel(),
        intercept=float(intercept) if task != "multiclass" else np.nan,
        class_intercepts=np.asarray(intercept, dtype=np.float64) if task == "multiclass" else None,
        converged=bool(path.converged[j]),
        n_iter=int(path.n_iter[j]),
        fit_seconds=path.seconds / len(path.ks),
        selection_info=json.dumps(info, sort_keys=True, default=float),
        **(certificate_columns(info) if certificate else {}),
    )
    return row


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
    groups_train = None if task.groups is None else np.asarray(task.groups)[train]
    # Without groups every example is its own group.
    groups_test = np.flatnonzero(task.is_test) if task.groups is None else np.asarray(task.groups)[task.is_test]
    boot = sweep_bootstrap(groups_test, config.bootstrap, config.seed, task.feature)
    is_regression = task.task == "regression"
    common = {
        "model_id": manifest["model_id"],
        "dataset_hash": manifest["dataset_hash"],
        "site": manifest["site"],
        "collection": task.info.get("collection", ""),
        "level": task.info.get("level", ""),
        "feature": task.feature,
        "task": task.task,
        "layer": int(task.layer),
        "n_train": int(train.sum()),
        "n_test": int(task.is_test.sum()),
        # Regression has no positives: the counts are of examples with a target above the training median.
        "n_train_pos": int((y_train > np.median(y_train)).sum() if is_regression else (y_train == 1).sum()),
        "n_test_pos": int((y_test > np.median(y_train)).sum() if is_regression else (y_test == 1).sum()),
        "n_test_groups": int(np.unique(groups_test).size),
        "n_splits": 1,
        "seed": int(config.seed),
        "needle_version": __version__,
        "params": params_json,
        "manifest": _manifest_json(manifest),
    }
    rows: list[dict[str, Any]] = []
    width = X.shape[1]
    fit_options = dict(C=config.C, tol=config.tol, max_iter=config.max_iter)

    if task.methods:
        prepared = prepare(X_train, y_train, task=task.task, prefilter=config.prefilter, groups=groups_train)
        for method in task.methods:
            selector = get_selector(method, **config.method_params.get(method, {}))
            seed = derive_seed(config.seed, "select", task.feature, task.layer, method)
            if getattr(selector, "fits_layer", False):  # a whole-layer probe fits every column itself
                rows += selector.result_rows(common, X_train, y_train, X_test, y_test, config.ks, random_state=seed)
                continue
            path = fit_path(prepared, selector, config.ks, random_state=seed, **fit_options)
            rows += _rows_for_path(common, method, path, X_test, y_test, boot)

    if task.dense or task.random_directions:
        everything = prepare(X_train, y_train, task=task.task, prefilter=None, ordered=False, groups=groups_train)
    if task.dense:
        # scikit-learn's L-BFGS on float32 (binary): the dense probe is one wide fit, not a batch of small ones.
        path = fit_path(everything, AllColumns(), [width], C=config.C, tol=1e-6, max_iter=1000,
                        solver="lbfgs" if task.task == "binary" else "default", design_dtype=np.float32)
        rows += _rows_for_path(common, "dense", path, X_test, y_test, boot)
    if task.random_directions:
        seed = derive_seed(config.seed, "random_directions", task.feature, task.layer)
        ks = _grid(config.ks, width)
        Q = random_orthonormal(width, max(ks), seed)
        path = fit_path(everything, FirstColumns(), ks, rotation=Q, **fit_options)
        Z_test = ((X_test - everything.mean) / everything.scale).astype(np.float32)
        P_test = Z_test @ Q.astype(np.float32)
        scores = []
        for w, b in zip(path.design_coef, path.design_intercept):
            k = np.shape(w)[-1]
            P = P_test[:, :k].astype(np.float64)
            scores.append(P @ np.asarray(w).T + b if task.task == "multiclass" else P @ w + b)
        scores = np.stack(scores)
        metrics = {**metrics_batch(task.task, y_test, scores), **interval_columns(boot, task.task, y_test, scores)}
        info = {"directions_seed": seed, "n_directions_drawn": int(max(ks))}
        # Rows keep the coefficients of the projections (no neurons): the directions are re-drawn from the seed.
        rows += [_row(common, "random_directions", path, j, metrics, np.zeros(0, dtype=np.int64), path.design_coef[j],
                      path.design_intercept[j], info, certificate=False) for j in range(len(path.ks))]
    frame = pd.DataFrame(rows)
    if task.resplits and len(frame):
        # The same probes refit on the other group splits; only their primary metric is kept.
        once = replace(config, bootstrap=0, splits=1)
        others = [run_task(source, replace(task, is_test=mask, resplits=()), once) for mask in task.resplits]
        frame = _with_split_spread(frame, others, PRIMARY_METRIC.get(task.task, "f1"))
    return frame


def _with_split_spread(frame: pd.DataFrame, others: list[pd.DataFrame], metric: str) -> pd.DataFrame:
    """``frame`` with ``splits_mean``, ``splits_sd`` (ddof 1) and ``n_splits`` of ``metric`` over its own split and
    the ``others`` (rows matched by method and k)."""
    values = [frame[metric].to_numpy(np.float64)]
    for other in others:
        lookup = dict(zip(zip(other["method"], other["k"]), other[metric]))
        values.append(np.array([lookup.get(key, np.nan) for key in zip(frame["method"], frame["k"])], dtype=float))
    values = np.stack(values)
    frame = frame.copy()
    frame["n_splits"] = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with one finite value has no sd
        frame["splits_mean"] = np.nanmean(values, axis=0)
        frame["splits_sd"] = np.nanstd(values, axis=0, ddof=1)
    return frame


# ------------------------------------------------------------------ process pool plumbing
_WORKER_SOURCE: ProbeSource | None = None


def _init_worker(source: ProbeSource) -> None:
    global _WORKER_SOURCE
    from needle._workers import init_worker_process

    init_worker_process()  # exit when this sweep's process dies; leave Ctrl-C to it
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
            if method not in old.get("method_params", {}):
                continue
            # Tables written before a parameter existed ran its default.
            defaults = json.loads(json.dumps(get_selector(method).get_params(), default=str))
            if {**defaults, **old["method_params"][method]} != mp:
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
    config: SweepConfig | None = None,
    features: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    n_jobs: int = 1,
    executor: Executor | None = None,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 30.0,
    overwrite: bool = False,
    **settings: Any,
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
    config : SweepConfig, optional
        What to probe and how (methods, ks, baselines, prefilter, test_size, C,
        seed, method_params, tol, max_iter); default :class:`SweepConfig()`.
    features, layers : optional
        Subsets of the source's (default: all).
    n_jobs : int, default 1
        Processes; 1 runs in this process.
    executor : concurrent.futures.Executor, optional
        Run tasks on this executor instead (its workers must be able to
        receive the source by pickling); overrides ``n_jobs``.
    engine : {"local", "ray"}, default "local"
        ``"ray"`` runs every task as a Ray task (:mod:`needle.probing.engines`:
        a cache is read by path on the workers, so it must be on storage all
        nodes share); same rows and numbers as ``"local"``.
    address : str, optional
        With ``engine="ray"``: the cluster, ``"auto"`` (started by ``ray start``)
        or ``"ray://host:10001"``; None starts a local cluster of ``n_jobs``
        CPUs (all of them when ``n_jobs`` is 1), or uses the one this process
        already joined.
    progress : bool, default True
        Show a progress bar.
    checkpoint_seconds : float, default 30
        Merge completed tasks into ``out`` at most this often (and always at
        the end or on an error). 0 writes after every task.
    overwrite : bool, default False
        Delete an existing ``out`` and its splits first.
    **settings
        Fields of :class:`SweepConfig` overriding ``config``'s, e.g.
        ``sweep(cache, out=..., methods=["mean_diff"], ks=[1, 2, 4])``.

    Returns
    -------
    DataFrame
        The whole results table at ``out`` (or the rows computed, if ``out``
        is None).
    """
    from tqdm import tqdm

    known = {f.name for f in fields(SweepConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"sweep() got unknown settings {unknown}; SweepConfig fields are {sorted(known)}.")
    config = replace(config or SweepConfig(), **settings)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise InputError(f"n_jobs must be an integer >= 1, got {n_jobs!r}.")
    from needle.probing.engines import ENGINES, by_cost, ray_results

    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}.")
    if engine == "ray" and executor is not None:
        raise InputError("pass either executor= or engine='ray', not both.")
    if address is not None and engine != "ray":
        raise InputError(f"address={address!r} is the Ray cluster's; pass engine='ray' (--engine ray) with it.")
    params_json = json.dumps(config.params(), sort_keys=True, default=str)
    params = json.loads(params_json)  # compared with stored params, so in their JSON form (lists, not tuples)
    manifest = _manifest(source)

    existing = None
    if out is not None:
        out = Path(out)
        if overwrite and out.exists():
            from needle._locks import exclusive_lock

            with exclusive_lock(out, what="another sweep appending results", wait=60):
                check_replaceable_results(out)
                for path in (out, splits_path(out)):
                    if path.exists():
                        path.unlink()
        if out.exists():
            existing = load_results(out)
            _check_compatible(existing, params, manifest, out)
    done = set() if existing is None else set(existing[list(RESULT_KEY)].itertuples(index=False, name=None))
    tasks, splits = plan_tasks(source, features=features, layers=layers, config=config, done=done)
    if out is not None and len(splits):
        merged_splits(splits_path(out), splits)  # refuse other splits now; they are written with the first rows

    pending: list[pd.DataFrame] = []
    computed: list[pd.DataFrame] = []
    last_commit = time.monotonic()
    known = None  # (table, stamp) of the last write: another sweep may append to the same file meanwhile
    splits_written = not len(splits)

    def before_write(on_disk: pd.DataFrame | None) -> None:
        nonlocal splits_written
        if on_disk is not None:
            _check_compatible(on_disk, params, manifest, out)
        if not splits_written:
            write_splits(splits_path(out), splits)
            splits_written = True

    def commit():
        nonlocal existing, pending, last_commit, known
        if out is not None and pending:
            existing, stamp = append_results(out, pd.concat(pending, ignore_index=True), before_write=before_write,
                                             known=known)
            known = (existing, stamp)
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

    if engine == "ray" or executor is not None or n_jobs > 1:
        tasks = by_cost(tasks, {l: int(source.layer(l).shape[1]) for l in {t.layer for t in tasks}})
    bar = tqdm(total=len(tasks), desc="probing", unit="task", disable=not progress)
    try:
        if engine == "ray":
            from contextlib import closing

            # closing: an error in the writer cancels the cluster's work now, not when the traceback is freed.
            with closing(ray_results(source, tasks, config, params_json, address=address,
                                     num_cpus=int(n_jobs) if n_jobs > 1 else None)) as finished:
                for task, frame in finished:
                    bar.set_postfix_str(f"{task.feature} L{task.layer}", refresh=False)
                    collect(frame)
                    bar.update()
        elif executor is None and n_jobs == 1:
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
            except KeyboardInterrupt:
                if own:  # the running tasks' rows could no longer be collected: do not wait for them
                    from needle._workers import stop_workers

                    stop_workers(pool)
                raise
            finally:
                if own:
                    pool.shutdown(cancel_futures=True)
    finally:
        try:
            commit()  # keep every completed task, even when interrupted
        finally:
            bar.close()  # ends the bar's line, so that an error message starts on its own
    if out is not None:
        return load_results(out) if out.exists() else merge_results(None, pd.DataFrame())
    return merge_results(None, pd.concat(computed, ignore_index=True)) if computed else merge_results(None, pd.DataFrame())
