"""What the site shows about probes, computed from a results table alone (no model, no cache).

Pure functions over a :func:`needle.probing.load_results` table: the index
rows, a feature's layer × k grid and chosen neurons, and the set of neurons
the results reference (the neurons that get a page).

Scores are each feature's primary metric (F1 for binary features, macro-F1
for multiclass, R² for regression; :mod:`needle.report._tasks`), named in
every record by ``metric``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.neurons import ids
from needle.probing.constants import BASELINE_METHODS
from needle.report._tasks import (
    SECONDARY_METRICS,
    metric_label,
    primary_metric,
    summary_by_task,
    task_of,
    tasks_present,
    with_score,
)

__all__ = [
    "NeuronRef",
    "neuron_id",
    "parse_neuron_id",
    "neuron_page_name",
    "feature_page_name",
    "sparse_rows",
    "feature_index",
    "f1_by_layer_k",
    "f1_by_k",
    "chosen_neurons",
    "referenced_neurons",
    "probe_catalogue",
    "preferred_method",
    "feature_task",
    "neuron_coefficients",
]

#: Methods preferred when one method must stand for a feature (first present wins).
PREFERRED_METHODS = ("adaptive", "osp", "mean_diff", "f_stat", "l1", "mutual_info", "random")


@dataclass(frozen=True, order=True)
class NeuronRef:
    """One neuron: ``(layer, index)``, written ``L3.N1201``."""

    layer: int
    index: int

    @property
    def id(self) -> str:
        return neuron_id(self.layer, self.index)


def neuron_id(layer: int, index: int) -> str:
    """The display id of a neuron, e.g. ``L3.N1201`` (:func:`needle.neurons.ids.format_neuron_id`)."""
    return ids.format_neuron_id(layer, index)


def parse_neuron_id(text: str) -> NeuronRef:
    """Parse ``L3.N1201`` (or any form :func:`needle.neurons.ids.parse_neuron_id` reads) into a :class:`NeuronRef`."""
    return NeuronRef(*ids.parse_neuron_id(str(text)))


def neuron_page_name(ref: NeuronRef) -> str:
    """Path of a neuron's page, relative to the site root."""
    return f"neurons/L{ref.layer}/{ref.id}.html"


#: Characters of a feature's name kept in its page's file name (file systems allow 255 bytes).
_MAX_NAME = 120


def feature_page_name(feature: str) -> str:
    """Path of a feature's page, relative to the site root (the name made safe for a file system)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", feature).strip("._")[:_MAX_NAME] or "feature"
    if safe != feature:
        safe = f"{safe}-{_short_hash(feature)}"  # two names that sanitise alike still get two pages
    return f"features/{safe}.html"


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def sparse_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of selection methods (baselines ``dense`` and ``random_directions`` left out)."""
    return results[~results["method"].isin(BASELINE_METHODS)]


def preferred_method(methods) -> str | None:
    """The method that stands for a feature: the first of :data:`PREFERRED_METHODS` present, else the first."""
    methods = [m for m in dict.fromkeys(methods) if m not in BASELINE_METHODS]
    return next((m for m in PREFERRED_METHODS if m in methods), methods[0] if methods else None)


def _check(results: pd.DataFrame) -> None:
    required = {"feature", "collection", "layer", "method", "k", "neurons", "coef", "intercept"}
    if required <= set(results.columns):
        tasks = tasks_present(results)
        required |= {primary_metric(t) for t in tasks} | ({"precision", "recall"} if "binary" in tasks else set())
    else:
        required |= {"f1", "precision", "recall"}
    missing = required - set(results.columns)
    if missing:
        raise InputError(f"the results table lacks columns {sorted(missing)}; is it a needle results file?")
    if results.empty:
        raise InputError("the results table is empty; run a sweep first (needle probe).")
    if sparse_rows(results).empty:
        raise InputError("the results table has only baseline rows (dense, random_directions); "
                         "run a sweep with a selection method such as mean_diff.")


def feature_task(results: pd.DataFrame, feature: str) -> str:
    """The task of a feature's rows (``"binary"`` for tables without a ``task`` column)."""
    tasks = task_of(results[results["feature"] == feature])
    return str(tasks.iloc[0]) if len(tasks) else "binary"


def neuron_coefficients(row) -> np.ndarray:
    """One coefficient per neuron of a probe row: its own for binary and regression probes; for a multiclass
    probe (``coef`` the (n_classes × k) matrix flattened row-major) the class coefficient largest in magnitude.

    Returns
    -------
    ndarray of shape (k,)
    """
    neurons = np.asarray(row.neurons)
    coef = np.asarray(row.coef, dtype=np.float64)
    if neurons.size and coef.size != neurons.size and coef.size % neurons.size == 0:
        matrix = coef.reshape(-1, neurons.size)
        return matrix[np.abs(matrix).argmax(axis=0), np.arange(neurons.size)]
    return coef


def f1_by_layer_k(results: pd.DataFrame, feature: str, method: str | None = None) -> pd.DataFrame:
    """The primary score (F1, macro-F1 or R²) of a feature's probes as a layer × k grid (best over selection
    methods, or of one ``method``).

    Returns
    -------
    DataFrame of shape (n_layers, n_ks)
        Index: layer; columns: k; NaN where no probe was fitted.
    """
    rows = sparse_rows(results)
    rows = with_score(rows[rows["feature"] == feature])
    if method is not None:
        rows = rows[rows["method"] == method]
    return rows.pivot_table(index="layer", columns="k", values="score", aggfunc="max").sort_index().sort_index(axis=1)


def f1_by_k(results: pd.DataFrame, feature: str, layer: int) -> dict[str, list[tuple[int, float]]]:
    """The primary score against k at one layer: per method (and the dense baseline as ``dense``), sorted by k."""
    rows = with_score(results[(results["feature"] == feature) & (results["layer"] == layer)])
    curves: dict[str, list[tuple[int, float]]] = {}
    for method, frame in rows.groupby("method", sort=True):
        if method == "random_directions":
            continue
        frame = frame.sort_values("k")
        curves[str(method)] = [(int(k), float(f)) for k, f in zip(frame["k"], frame["score"])]
    return curves


#: The two numbers beside the primary score on the index, per task: (column, k of the probe).
INDEX_EXTRAS = {"binary": (("precision", 1), ("recall", 1)), "multiclass": (("accuracy", 1), ("accuracy", 8)),
                "regression": (("spearman", 1), ("spearman", 8))}


def feature_index(results: pd.DataFrame, descriptions: dict[str, str] | None = None) -> list[dict]:
    """One record per feature for the index page, sorted by collection, task, then feature.

    Each record: ``feature, collection, level, task, metric`` (the primary metric's column: ``f1``,
    ``f1_macro`` or ``r2``), ``metric_label`` (``F1``, ``macro-F1``, ``R²``), ``description, best_layer,
    score_k1, score_k8, score_dense`` (the primary metric), ``extras`` (two ``(label, value)`` pairs shown
    beside it: precision and recall of the best 1-sparse probe at the best layer for binary features, its
    accuracy or Spearman correlation at k = 1 and 8 otherwise), ``neuron`` (the id of the best single neuron
    over all layers), ``neuron_score``, ``sparkline`` (the score against k at the best layer, best over
    methods: list of ``(k, score)``) and ``page`` (path of the feature page). Binary records also carry
    the score under its old names ``f1_k1, f1_k8, f1_dense, neuron_f1, precision_k1, recall_k1``.

    Uncertainty: ``score_k1_ci``, ``score_k8_ci``, ``neuron_score_ci`` (the 95 % bootstrap interval over test
    groups as ``(lo, hi)``, None where the table has none), ``score_k8_sd`` (sd over repeated splits or None),
    ``n_test_pos``, ``n_test_groups`` and ``few_positives`` (fewer than ``MIN_TEST_POSITIVES`` test
    positives: the scores are fragile).
    """
    _check(results)
    descriptions = descriptions or {}
    sparse = with_score(sparse_rows(results))
    records = []
    for task, summary in summary_by_task(results).items():
        metric = primary_metric(task)
        for row in summary.to_dict("records"):
            feature = row["feature"]
            frame = sparse[(sparse["feature"] == feature) & (sparse["layer"] == row["best_layer"])]
            curve = frame.groupby("k")["score"].max().sort_index()
            extras = []
            for column, k in INDEX_EXTRAS.get(task, ()):
                probes = frame[frame["k"] == k].sort_values(["score", "method"], ascending=[False, True],
                                                            kind="stable")
                value = probes[column].iloc[0] if len(probes) and column in probes else None
                extras.append((f"{metric_label(column)} k={k}", _float(value)))
            level = results.loc[results["feature"] == feature, "level"].iloc[0] if "level" in results else ""
            record = {
                "feature": feature,
                "collection": row["collection"],
                "level": level,
                "task": task,
                "metric": metric,
                "metric_label": metric_label(metric),
                "description": descriptions.get(feature, ""),
                "best_layer": int(row["best_layer"]),
                "score_k1": _float(row.get(f"{metric}_k1")),
                "score_k8": _float(row.get(f"{metric}_k8")),
                "score_dense": _float(row.get(f"{metric}_dense")),
                "extras": extras,
                "neuron": neuron_id(row["neuron_layer"], row["neuron"]) if not pd.isna(row["neuron"]) else None,
                "neuron_score": _float(row.get(f"neuron_{metric}")),
                "sparkline": [(int(k), float(f)) for k, f in curve.items()],
                "page": feature_page_name(feature),
                "score_k1_ci": _interval(row, f"{metric}_k1"),
                "score_k8_ci": _interval(row, f"{metric}_k8"),
                "neuron_score_ci": _interval(row, f"neuron_{metric}"),
                "score_k8_sd": _float(row.get(f"{metric}_k8_sd")),
                "n_test_pos": _int(row.get("n_test_pos")),
                "n_test_groups": _int(row.get("n_test_groups")),
                "few_positives": bool(row.get("few_positives", False)),
            }
            if task == "binary":
                record.update(f1_k1=record["score_k1"], f1_k8=record["score_k8"], f1_dense=record["score_dense"],
                              neuron_f1=record["neuron_score"], precision_k1=extras[0][1], recall_k1=extras[1][1])
            records.append(record)
    order = {task: i for i, task in enumerate(tasks_present(results))}
    records.sort(key=lambda r: (r["collection"], order[r["task"]], r["feature"]))
    return records


def chosen_neurons(results: pd.DataFrame, feature: str, *, max_k: int | None = None) -> pd.DataFrame:
    """The probes of a feature with their neurons and coefficients, one row per (layer, method, k).

    Returns
    -------
    DataFrame
        Columns ``layer, method, k, f1, precision, recall, intercept, neurons, task, score, metrics`` where
        ``neurons`` is a list of ``(NeuronRef, coefficient)`` ordered by decreasing |coefficient| (for a
        multiclass probe, each neuron's largest class coefficient, :func:`neuron_coefficients`), ``score`` the
        primary metric and ``metrics`` the task's secondary metrics as ``{column: value}``; sorted by layer,
        method, k.
    """
    rows = sparse_rows(results)
    rows = with_score(rows[rows["feature"] == feature])
    if max_k is not None:
        rows = rows[rows["k"] <= max_k]
    columns = ["layer", "method", "k", "f1", "precision", "recall", "intercept", "neurons", "task", "score",
               "metrics"]
    out = []
    for row in rows.sort_values(["layer", "method", "k"], kind="stable").itertuples(index=False):
        neurons, coef = np.asarray(row.neurons, dtype=np.int64), neuron_coefficients(row)
        order = np.argsort(-np.abs(coef), kind="stable")
        metrics = {m: _float(getattr(row, m, None)) for m in SECONDARY_METRICS.get(row.task, ())}
        out.append({"layer": int(row.layer), "method": row.method, "k": int(row.k),
                    "f1": _nan(getattr(row, "f1", None)), "precision": _nan(getattr(row, "precision", None)),
                    "recall": _nan(getattr(row, "recall", None)), "intercept": _nan(row.intercept),
                    "neurons": [(NeuronRef(int(row.layer), int(neurons[i])), float(coef[i])) for i in order],
                    "task": row.task, "score": _nan(row.score), "metrics": metrics})
    return pd.DataFrame(out, columns=columns)


def referenced_neurons(results: pd.DataFrame, *, max_k: int | None = 8) -> dict[NeuronRef, list[dict]]:
    """Every neuron chosen by a sparse probe with ``k <= max_k``, and where it was chosen.

    Returns
    -------
    dict of NeuronRef to list of dict
        Sorted by neuron; each use is ``feature, collection, method, k, coef, f1, task, metric, score,
        partners`` (``score`` the probe's primary metric, named by ``metric``; ``partners`` the other neurons
        of the same probe, as NeuronRefs), sorted by k then feature.
    """
    _check(results)
    rows = with_score(sparse_rows(results))
    if max_k is not None:
        rows = rows[rows["k"] <= max_k]
    uses: dict[NeuronRef, list[dict]] = {}
    for row in rows.itertuples(index=False):
        metric = primary_metric(row.task) if row.task in ("binary", "multiclass", "regression") else "score"
        chosen = [int(n) for n in np.asarray(row.neurons).tolist()]
        for neuron, coef in zip(chosen, neuron_coefficients(row).tolist()):
            uses.setdefault(NeuronRef(int(row.layer), int(neuron)), []).append(
                {"feature": row.feature, "collection": row.collection, "method": row.method, "k": int(row.k),
                 "coef": float(coef), "f1": _nan(getattr(row, "f1", None)), "task": row.task, "metric": metric,
                 "score": _nan(row.score),
                 "partners": [NeuronRef(int(row.layer), other) for other in chosen if other != neuron]})
    for value in uses.values():
        value.sort(key=lambda u: (u["k"], u["feature"], u["method"]))
    return dict(sorted(uses.items()))


def probe_catalogue(results: pd.DataFrame, *, ks: Sequence[int] | None = (1, 2, 4, 8)) -> list[dict]:
    """Binary sparse probes a viewer can apply to text: one dict per (feature, layer, method, k) with k in ``ks``
    (None: every k).

    Each dict: ``id`` (``feature/L{layer}/{method}/k{k}``), ``feature, layer, method, k, f1, neurons``
    (list of int), ``coef`` (list of float, raw activation units), ``intercept``. The probe's score on an
    activation vector ``a`` of the layer is ``a[neurons] @ coef + intercept``; positive means predicted.
    Multiclass and regression probes are left out: neither has a "positive" for the viewer to highlight.
    """
    rows = sparse_rows(results)
    rows = rows[task_of(rows) == "binary"]
    if ks is not None:
        rows = rows[rows["k"].isin(list(ks))]
    catalogue = []
    for row in rows.sort_values(["feature", "layer", "method", "k"], kind="stable").itertuples(index=False):
        catalogue.append({
            "id": f"{row.feature}/L{int(row.layer)}/{row.method}/k{int(row.k)}",
            "feature": row.feature, "layer": int(row.layer), "method": row.method, "k": int(row.k),
            "f1": float(row.f1), "neurons": [int(n) for n in np.asarray(row.neurons)],
            "coef": [float(c) for c in np.asarray(row.coef)], "intercept": float(row.intercept),
        })
    return catalogue


def _interval(row: dict, column: str) -> tuple[float, float] | None:
    lo, hi = _float(row.get(f"{column}_lo")), _float(row.get(f"{column}_hi"))
    return None if lo is None or hi is None else (lo, hi)


def _int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _nan(value) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
