"""What the site shows about probes, computed from a results table alone (no model, no cache).

Pure functions over a :func:`needle.probing.load_results` table: the index
rows, a feature's layer × k grid and chosen neurons, and the set of neurons
the results reference (the neurons that get a page).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.neurons import ids

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
]

#: Methods preferred when one method must stand for a feature (first present wins).
PREFERRED_METHODS = ("adaptive", "osp", "mean_diff", "f_stat", "l1", "mutual_info", "random")
_BASELINES = ("dense", "random_directions")


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


def feature_page_name(feature: str) -> str:
    """Path of a feature's page, relative to the site root (the name made safe for a file system)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", feature).strip("._") or "feature"
    if safe != feature:
        safe = f"{safe}-{_short_hash(feature)}"  # two names that sanitise alike still get two pages
    return f"features/{safe}.html"


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def sparse_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of selection methods (baselines ``dense`` and ``random_directions`` left out)."""
    return results[~results["method"].isin(_BASELINES)]


def preferred_method(methods) -> str | None:
    """The method that stands for a feature: the first of :data:`PREFERRED_METHODS` present, else the first."""
    methods = [m for m in dict.fromkeys(methods) if m not in _BASELINES]
    return next((m for m in PREFERRED_METHODS if m in methods), methods[0] if methods else None)


def _check(results: pd.DataFrame) -> None:
    required = {"feature", "collection", "layer", "method", "k", "f1", "precision", "recall", "neurons", "coef",
                "intercept"}
    missing = required - set(results.columns)
    if missing:
        raise InputError(f"the results table lacks columns {sorted(missing)}; is it a needle results file?")
    if results.empty:
        raise InputError("the results table is empty; run a sweep first (needle probe).")
    if sparse_rows(results).empty:
        raise InputError("the results table has only baseline rows (dense, random_directions); "
                         "run a sweep with a selection method such as mean_diff.")


def f1_by_layer_k(results: pd.DataFrame, feature: str, method: str | None = None) -> pd.DataFrame:
    """F1 of a feature's probes as a layer × k grid (best over selection methods, or of one ``method``).

    Returns
    -------
    DataFrame of shape (n_layers, n_ks)
        Index: layer; columns: k; NaN where no probe was fitted.
    """
    rows = sparse_rows(results)
    rows = rows[rows["feature"] == feature]
    if method is not None:
        rows = rows[rows["method"] == method]
    return rows.pivot_table(index="layer", columns="k", values="f1", aggfunc="max").sort_index().sort_index(axis=1)


def f1_by_k(results: pd.DataFrame, feature: str, layer: int) -> dict[str, list[tuple[int, float]]]:
    """F1 against k at one layer: per method (and the dense baseline as ``dense``), sorted by k."""
    rows = results[(results["feature"] == feature) & (results["layer"] == layer)]
    curves: dict[str, list[tuple[int, float]]] = {}
    for method, frame in rows.groupby("method", sort=True):
        if method == "random_directions":
            continue
        frame = frame.sort_values("k")
        curves[str(method)] = [(int(k), float(f)) for k, f in zip(frame["k"], frame["f1"])]
    return curves


def feature_index(results: pd.DataFrame, descriptions: dict[str, str] | None = None) -> list[dict]:
    """One record per feature for the index page, sorted by collection then feature.

    Each record: ``feature, collection, level, description, best_layer, f1_k1, f1_k8, f1_dense,
    precision_k1, recall_k1`` (of the best 1-sparse probe at the best layer), ``neuron`` (its id, the best
    single neuron over all layers), ``neuron_f1``, ``sparkline`` (F1 against k at the best layer, best
    over methods: list of ``(k, f1)``) and ``page`` (path of the feature page).
    """
    from needle.probing import summarize

    _check(results)
    summary = summarize(results)
    descriptions = descriptions or {}
    sparse = sparse_rows(results)
    records = []
    for row in summary.itertuples(index=False):
        feature = row.feature
        frame = sparse[(sparse["feature"] == feature) & (sparse["layer"] == row.best_layer)]
        curve = frame.groupby("k")["f1"].max().sort_index()
        ones = frame[frame["k"] == 1].sort_values(["f1", "method"], ascending=[False, True], kind="stable")
        best_one = ones.iloc[0] if len(ones) else None
        level = results.loc[results["feature"] == feature, "level"].iloc[0] if "level" in results else ""
        records.append({
            "feature": feature,
            "collection": row.collection,
            "level": level,
            "description": descriptions.get(feature, ""),
            "best_layer": int(row.best_layer),
            "f1_k1": _float(row.f1_k1),
            "f1_k8": _float(row.f1_k8),
            "f1_dense": _float(row.f1_dense),
            "precision_k1": _float(best_one["precision"]) if best_one is not None else None,
            "recall_k1": _float(best_one["recall"]) if best_one is not None else None,
            "neuron": neuron_id(row.neuron_layer, row.neuron) if not pd.isna(row.neuron) else None,
            "neuron_f1": _float(row.neuron_f1),
            "sparkline": [(int(k), float(f)) for k, f in curve.items()],
            "page": feature_page_name(feature),
        })
    records.sort(key=lambda r: (r["collection"], r["feature"]))
    return records


def chosen_neurons(results: pd.DataFrame, feature: str, *, max_k: int | None = None) -> pd.DataFrame:
    """The probes of a feature with their neurons and coefficients, one row per (layer, method, k).

    Returns
    -------
    DataFrame
        Columns ``layer, method, k, f1, precision, recall, intercept, neurons`` where ``neurons`` is a list
        of ``(NeuronRef, coefficient)`` ordered by decreasing |coefficient|; sorted by layer, method, k.
    """
    rows = sparse_rows(results)
    rows = rows[rows["feature"] == feature]
    if max_k is not None:
        rows = rows[rows["k"] <= max_k]
    out = []
    for row in rows.sort_values(["layer", "method", "k"], kind="stable").itertuples(index=False):
        neurons, coef = np.asarray(row.neurons, dtype=np.int64), np.asarray(row.coef, dtype=np.float64)
        order = np.argsort(-np.abs(coef), kind="stable")
        out.append({"layer": int(row.layer), "method": row.method, "k": int(row.k), "f1": float(row.f1),
                    "precision": float(row.precision), "recall": float(row.recall),
                    "intercept": float(row.intercept),
                    "neurons": [(NeuronRef(int(row.layer), int(neurons[i])), float(coef[i])) for i in order]})
    return pd.DataFrame(out, columns=["layer", "method", "k", "f1", "precision", "recall", "intercept", "neurons"])


def referenced_neurons(results: pd.DataFrame, *, max_k: int | None = 8) -> dict[NeuronRef, list[dict]]:
    """Every neuron chosen by a sparse probe with ``k <= max_k``, and where it was chosen.

    Returns
    -------
    dict of NeuronRef to list of dict
        Sorted by neuron; each use is ``feature, collection, method, k, coef, f1``, sorted by k then feature.
    """
    _check(results)
    rows = sparse_rows(results)
    if max_k is not None:
        rows = rows[rows["k"] <= max_k]
    uses: dict[NeuronRef, list[dict]] = {}
    for row in rows.itertuples(index=False):
        for neuron, coef in zip(np.asarray(row.neurons).tolist(), np.asarray(row.coef).tolist()):
            uses.setdefault(NeuronRef(int(row.layer), int(neuron)), []).append(
                {"feature": row.feature, "collection": row.collection, "method": row.method, "k": int(row.k),
                 "coef": float(coef), "f1": float(row.f1)})
    for value in uses.values():
        value.sort(key=lambda u: (u["k"], u["feature"], u["method"]))
    return dict(sorted(uses.items()))


def probe_catalogue(results: pd.DataFrame, *, ks: Sequence[int] | None = (1, 2, 4, 8)) -> list[dict]:
    """Sparse probes a viewer can apply to text: one dict per (feature, layer, method, k) with k in ``ks``
    (None: every k).

    Each dict: ``id`` (``feature/L{layer}/{method}/k{k}``), ``feature, layer, method, k, f1, neurons``
    (list of int), ``coef`` (list of float, raw activation units), ``intercept``. The probe's score on an
    activation vector ``a`` of the layer is ``a[neurons] @ coef + intercept``; positive means predicted.
    """
    rows = sparse_rows(results)
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


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
