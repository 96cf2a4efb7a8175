"""Probing tasks as the report and the scope site see them: the primary metric of each task, its label, and a
per-task summary of a results table.

A results row belongs to one task, ``"binary"``, ``"multiclass"`` or ``"regression"`` (its ``task`` column;
tables written before that column existed are binary). Scores of different tasks are never averaged or ranked
together: every figure and table here groups by task first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from needle.probing.metrics import PRIMARY_METRIC

__all__ = [
    "PRIMARY_METRIC",
    "SECONDARY_METRICS",
    "TASK_ORDER",
    "metric_label",
    "primary_metric",
    "task_of",
    "with_score",
    "summary_by_task",
    "R2_FLOOR",
    "r2_floor",
    "display_summary",
]

#: Metrics shown beside the primary one, per task (binary pages show precision and recall as before).
SECONDARY_METRICS = {"binary": ("precision", "recall"), "multiclass": ("accuracy", "mcc"),
                     "regression": ("spearman", "mae")}
#: Tasks in the order they are shown.
TASK_ORDER = ("binary", "multiclass", "regression")
#: How far below zero (or below the best R², where that is negative) an R² axis or colour scale reaches: a probe
#: far worse than predicting the mean matters less than seeing the good probes at full resolution.
R2_FLOOR = -0.5
_LABELS = {"f1": "F1", "f1_macro": "macro-F1", "f1_weighted": "weighted F1", "r2": "R²", "spearman": "Spearman",
           "pearson": "Pearson", "mae": "MAE", "accuracy": "accuracy", "mcc": "MCC", "precision": "precision",
           "recall": "recall", "roc_auc": "ROC-AUC"}


def primary_metric(task: str) -> str:
    """The column a task's probes are ranked by: ``f1``, ``f1_macro`` or ``r2``.

    Parameters
    ----------
    task : str
        ``"binary"``, ``"multiclass"`` or ``"regression"``.

    Returns
    -------
    str
    """
    try:
        return PRIMARY_METRIC[task]
    except KeyError:
        raise ValueError(f"unknown probing task {task!r}; expected one of {', '.join(PRIMARY_METRIC)}.") from None


def metric_label(metric: str) -> str:
    """How a metric is written for people: ``r2`` → ``R²``, ``f1_macro`` → ``macro-F1``."""
    return _LABELS.get(metric, metric)


def r2_floor(values) -> float:
    """The lowest R² an axis or colour scale of ``values`` shows: their minimum, but not lower than
    :data:`R2_FLOOR` below ``min(0, max(values))``. Values under it are drawn on the edge, never left out.

    Parameters
    ----------
    values : array-like of float
        NaN ignored.

    Returns
    -------
    float
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return R2_FLOOR
    return float(max(values.min(), min(0.0, values.max()) + R2_FLOOR))


def task_of(frame: pd.DataFrame) -> pd.Series:
    """The task of every row of a results table; ``"binary"`` where the table has no ``task`` column (or a null).

    Parameters
    ----------
    frame : DataFrame
        A results table.

    Returns
    -------
    Series of str, aligned with ``frame``'s index.
    """
    if "task" not in frame.columns:
        return pd.Series("binary", index=frame.index, dtype=object)
    return frame["task"].astype(object).where(frame["task"].notna(), "binary")


def with_score(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``task`` filled in and ``score``, the primary metric of each row's task, added.

    Returns
    -------
    DataFrame
        A copy; a metric column the table lacks counts as NaN.
    """
    out = frame.copy()
    out["task"] = task_of(frame)
    score = pd.Series(np.nan, index=frame.index, dtype=np.float64)
    for task, metric in PRIMARY_METRIC.items():
        rows = out["task"] == task
        if rows.any() and metric in frame.columns:
            score[rows] = frame.loc[rows, metric].astype(np.float64)
    out["score"] = score
    return out


def tasks_present(frame: pd.DataFrame) -> list[str]:
    """The tasks of a results table, in :data:`TASK_ORDER`."""
    present = set(task_of(frame))
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def summary_by_task(results: pd.DataFrame, *, ks: tuple[int, int] = (1, 8)) -> dict[str, pd.DataFrame]:
    """:func:`needle.probing.summarize` per task, its score columns named after the task's primary metric.

    The binary table is exactly ``summarize``'s (``f1_k1, f1_k8, f1_dense, …, neuron_precision,
    neuron_recall``). A multiclass table has ``f1_macro_k1, f1_macro_k8, f1_macro_dense, accuracy_k8, …,
    neuron_f1_macro``; a regression table ``r2_k1, r2_k8, r2_dense, spearman_k8, …, neuron_r2``, the
    second metric being that of the best ``ks[1]``-sparse probe at the best layer.

    Where ``summarize`` already reports per task (``metric`` and ``score_k*`` columns) its scores are used;
    otherwise the task's primary metric stands in for F1 so that the best layer and neuron are chosen by it.

    Parameters
    ----------
    results : DataFrame
        A results table.
    ks : tuple of int, default (1, 8)

    Returns
    -------
    dict of str to DataFrame
        One summary per task present, in :data:`TASK_ORDER`.
    """
    from needle.probing import summarize

    scored = with_score(results)
    k_small, k_large = ks
    out = {}
    for task in tasks_present(scored):
        metric = primary_metric(task)
        part = scored[scored["task"] == task]
        if task == "binary":
            summary = summarize(part.drop(columns=["score"]), ks=ks)
        else:
            summary = summarize(part.assign(f1=part["score"]).drop(columns=["score"]), ks=ks)
        summary = summary.drop(columns=["task", "metric"], errors="ignore")
        if task != "regression":
            summary = summary.drop(columns=["neuron_spearman"], errors="ignore")
        if task != "binary":  # summarize's binary-only aliases of the score columns
            summary = summary.drop(columns=[c for c in summary.columns
                                            if c.startswith("f1_k") or c in ("f1_dense", "neuron_f1")])
        scores = [c for c in summary.columns if "score" in c]
        if scores:  # summarize reports per task: its score columns are the primary metric's
            renames = {c: c.replace("score", metric, 1) for c in scores}
            summary = summary.drop(columns=[c for c in renames.values() if c in summary.columns])
        else:
            renames = {c: c.replace("f1", metric, 1) for c in summary.columns if c.startswith(("f1_", "neuron_f1"))}
        if task != "binary":
            summary = summary.drop(columns=["neuron_precision", "neuron_recall"], errors="ignore")
        summary = summary.rename(columns=renames)
        if task != "binary":
            second = SECONDARY_METRICS[task][0]
            summary.insert(summary.columns.get_loc(f"{metric}_dense") + 1, f"{second}_k{k_large}",
                           _at_best(part, summary, second, k_large))
        out[task] = summary
    return out


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """A :func:`summary_by_task` table for people: each score with its interval in one cell.

    ``X`` with ``X_lo``, ``X_hi`` (and ``X_sd``) becomes ``"0.940 ±0.010 [0.88–0.99]"``; the interval columns go;
    ``few_positives`` becomes a first column ``!`` (marked ``!``). Numbers are kept as text with three decimals.

    Returns
    -------
    DataFrame
    """
    out = summary.copy()
    for column in [c for c in summary.columns if f"{c}_lo" in summary.columns]:
        cells = []
        for value, lo, hi, sd in zip(summary[column], summary[f"{column}_lo"], summary[f"{column}_hi"],
                                     summary.get(f"{column}_sd", pd.Series(np.nan, index=summary.index))):
            text = "–" if pd.isna(value) else f"{value:.3f}"
            if not pd.isna(value) and not pd.isna(sd):
                text += f" ±{sd:.3f}"
            if not (pd.isna(lo) or pd.isna(hi)):
                text += f" [{lo:.2f}–{hi:.2f}]"
            cells.append(text)
        out[column] = cells
    drop = [c for c in summary.columns if c.endswith(("_lo", "_hi", "_sd")) and c[:-3] in summary.columns]
    out = out.drop(columns=drop)
    if "few_positives" in out:
        out.insert(0, "!", ["!" if few else "" for few in out["few_positives"]])
        out = out.drop(columns=["few_positives"])
    return out


def _at_best(part: pd.DataFrame, summary: pd.DataFrame, column: str, k: int) -> list[float]:
    """``column`` of the best ``k``-sparse probe (by score, best over methods) at each feature's best layer."""
    from needle.probing.constants import BASELINE_METHODS

    values = []
    if column not in part.columns:
        return [np.nan] * len(summary)
    sparse = part[~part["method"].isin(BASELINE_METHODS) & (part["k"] == k)]
    keys = [c for c in ("model_id", "dataset_hash", "site", "feature") if c in summary.columns and c in sparse]
    for _, row in summary.iterrows():
        match = sparse["layer"] == row["best_layer"]
        for key in keys:
            match &= sparse[key] == row[key]
        rows = sparse[match]
        rows = rows[rows["score"].notna()]
        values.append(float(rows.loc[rows["score"].idxmax(), column]) if len(rows) else np.nan)
    return values
