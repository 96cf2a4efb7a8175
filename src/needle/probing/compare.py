"""Paired comparisons of probes: does the score really rise with k, does one method beat another?

Two rows of a results table for the same feature share its test split, and a sweep's bootstrap gives every row
of a feature the same resamples of its test groups (:func:`needle.probing.bootstrap.sweep_bootstrap`). So the
difference of two probes is judged on the **same** resamples: each probe's test scores are recomputed from its
stored neurons, coefficients and intercept on the activations (checked against the stored metric), both are
evaluated on every resample, and the interval and p-value are those of the paired differences
(:func:`needle.probing.bootstrap.paired_difference`). Pairing removes the variation the two probes share (which
test documents happened to be drawn), so a real difference shows up where two unpaired intervals overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.probing.bootstrap import CI_METRICS, DEFAULT_LEVEL, DEFAULT_N_BOOT, paired_difference, sweep_bootstrap
from needle.probing.metrics import PRIMARY_METRIC, metrics_batch
from needle.probing.results import MIN_TEST_POSITIVES

__all__ = ["compare_probes", "probe_test_scores", "holm"]

#: Columns a probe spec may fix; the others pair the two sides.
SPEC_KEYS = ("method", "k", "layer")
_PAIR_KEYS = ("model_id", "dataset_hash", "site", "feature", "layer", "method", "k")


def probe_test_scores(row, X_test: np.ndarray) -> np.ndarray:
    """A result row's scores on test activations.

    Parameters
    ----------
    row : Series or namedtuple
        A results row (``neurons``, ``coef``, ``intercept``, ``class_intercepts``, ``task``).
    X_test : ndarray of shape (n_test, n_neurons)
        The layer's activations at the test rows.

    Returns
    -------
    ndarray of shape (n_test,), or (n_test, n_classes) for multiclass
    """
    neurons = np.asarray(row["neurons"], dtype=np.int64)
    coef = np.asarray(row["coef"], dtype=np.float64)
    Xs = np.asarray(X_test, dtype=np.float32)[:, neurons].astype(np.float64)
    if row["task"] == "multiclass":
        intercepts = np.asarray(row["class_intercepts"], dtype=np.float64)
        return Xs @ coef.reshape(intercepts.size, neurons.size).T + intercepts
    return Xs @ coef + float(row["intercept"])


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN kept): ndarray of the same shape."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def _spec(spec: Mapping, name: str) -> dict:
    spec = dict(spec)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown or not spec:
        raise InputError(f"probe {name} {spec!r}: give some of {', '.join(SPEC_KEYS)}, e.g. method=mean_diff,k=8.")
    for key in ("k", "layer"):
        if key in spec:
            spec[key] = int(spec[key])
    return spec


def _select(results: pd.DataFrame, spec: Mapping) -> pd.DataFrame:
    mask = np.ones(len(results), dtype=bool)
    for key, value in spec.items():
        mask &= (results[key] == value).to_numpy()
    return results[mask]


def compare_probes(
    results: pd.DataFrame,
    splits: pd.DataFrame,
    source,
    *,
    a: Mapping,
    b: Mapping,
    metric: str | None = None,
    features: Iterable[str] | None = None,
    n_boot: int | None = None,
    level: float = DEFAULT_LEVEL,
    min_positives: int = MIN_TEST_POSITIVES,
) -> pd.DataFrame:
    """Paired bootstrap comparison of probe A and probe B for every feature (and layer, k, method) they share.

    Parameters
    ----------
    results : DataFrame
        A results table (:func:`needle.probing.load_results`).
    splits : DataFrame
        Its splits (:func:`needle.probing.load_splits`).
    source : ProbeSource
        The activations the sweep read (an :class:`~needle.activations.ActivationCache`).
    a, b : mapping
        What fixes each side: some of ``method``, ``k``, ``layer`` (e.g. ``{"method": "mean_diff", "k": 1}``
        against ``{"method": "mean_diff", "k": 8}``: does the score rise from k = 1 to 8?). The keys neither
        side fixes pair the rows: ``{"method": "mean_diff"}`` against ``{"method": "osp"}`` compares them at
        every layer and ``k`` both have.
    metric : str, optional
        Default: each feature's primary metric (F1, macro-F1, R²); any of
        :data:`needle.probing.bootstrap.CI_METRICS` of its task.
    features : iterable of str, optional
        Default: every feature with both probes.
    n_boot : int, optional
        Resamples; default the sweep's own (``bootstrap`` in ``params``, so the resamples are the very ones
        behind the stored intervals), or 1000.
    level : float, default 0.95
    min_positives : int, default 50
        ``few_positives`` as in :func:`needle.probing.summarize`.

    Returns
    -------
    DataFrame
        One row per pair: ``feature, layer_a, method_a, k_a, layer_b, method_b, k_b, task, metric, score_a,
        score_b, diff`` (B − A), ``diff_lo, diff_hi`` (paired percentile interval), ``p_value`` (two-sided,
        "no difference"), ``p_holm`` (Holm-adjusted over the rows returned), ``n_boot, n_test_groups,
        n_test_pos, few_positives``.

    Raises
    ------
    InputError
        A bad spec, no rows to pair, a row without neurons (``random_directions``), or activations that do not
        reproduce a stored score.
    """
    a, b = _spec(a, "A"), _spec(b, "B")
    pair_on = [key for key in _PAIR_KEYS if key not in a and key not in b]
    rows_a, rows_b = _select(results, a), _select(results, b)
    if features is not None:
        features = list(features)
        rows_a = rows_a[rows_a["feature"].isin(features)]
        rows_b = rows_b[rows_b["feature"].isin(features)]
    if "random_directions" in (a.get("method"), b.get("method")):
        raise InputError("random_directions rows have no neurons to recompute; compare selection methods or "
                         "the dense probe.")
    # Unless asked for, the random-direction baseline is left out (it has no neurons to recompute).
    rows_a = rows_a[rows_a["method"] != "random_directions"]
    rows_b = rows_b[rows_b["method"] != "random_directions"]
    pairs = rows_a.reset_index(drop=True).merge(rows_b.reset_index(drop=True), on=pair_on, suffixes=("_a", "_b"))
    if not len(pairs):
        raise InputError(f"no feature has both probe A {a} and probe B {b} in these results.")
    out = []
    cache_X: dict[tuple, np.ndarray] = {}
    for feature, group in pairs.groupby("feature", sort=True):
        test = splits[(splits["feature"] == feature) & (splits["split"] == "test")].sort_values("example")
        if not len(test):
            raise InputError(f"the splits file has no test rows for {feature!r}; is it this results file's?")
        y = test["y"].to_numpy()
        first = group.iloc[0]
        task = str(first["task_a"] if "task_a" in group else first["task"])
        y = y.astype(np.int64) if task != "regression" else y.astype(np.float64)
        name = metric or PRIMARY_METRIC.get(task, "f1")
        if name not in CI_METRICS.get(task, ()):
            raise InputError(f"metric {name!r} has no bootstrap for {task} feature {feature!r}; "
                             f"use one of {', '.join(CI_METRICS.get(task, ()))}.")
        params = json.loads(first["params_a"] if "params_a" in group else first["params"])
        boot = sweep_bootstrap(test["group"].to_numpy(), int(n_boot or params.get("bootstrap") or DEFAULT_N_BOOT),
                               int(params.get("seed", 0)), feature)
        for pair in group.to_dict("records"):
            reps, scores = [], []
            for side in ("a", "b"):
                row = {key: pair.get(f"{key}_{side}", pair.get(key)) for key in
                       ("neurons", "coef", "intercept", "class_intercepts", "task", "layer", name)}
                layer = int(row["layer"])
                if (feature, layer) not in cache_X:
                    cache_X[(feature, layer)] = np.asarray(source.layer(layer)[test["row"].to_numpy()],
                                                           dtype=np.float32)
                s = probe_test_scores(row, cache_X[(feature, layer)])
                point = float(metrics_batch(task, y, s[None])[name][0])
                if not np.isclose(point, row[name], rtol=1e-6, atol=1e-9, equal_nan=True):
                    raise InputError(f"{feature!r} layer {layer}: the activations give {name} {point:.6f} where "
                                     f"the results say {row[name]:.6f}; pass the cache this sweep read.")
                scores.append(point)
                reps.append(boot.replicates(task, y, s[None], metrics=[name])[name][0])
            result = paired_difference(reps[0], reps[1], level=level)
            n_pos = int(pair.get("n_test_pos_a", pair.get("n_test_pos")))
            out.append({
                "feature": feature,
                **{f"{key}_{side}": pair.get(f"{key}_{side}", pair.get(key)) for side in ("a", "b")
                   for key in ("layer", "method", "k")},
                "task": task, "metric": name, "score_a": scores[0], "score_b": scores[1],
                "diff": scores[1] - scores[0], **result, "n_test_groups": boot.n_groups, "n_test_pos": n_pos,
                "few_positives": (n_pos if task == "binary" else len(test)) < min_positives,
            })
    frame = pd.DataFrame(out)
    frame.insert(frame.columns.get_loc("p_value") + 1, "p_holm", holm(frame["p_value"]))
    return frame
