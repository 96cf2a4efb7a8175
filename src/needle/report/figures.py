"""Figures of a sweep's results (matplotlib, rendered to PNG bytes).

Each function takes the tidy results table (one row per feature × layer ×
method × k, see ``docs/results.md``) and returns PNG bytes, so the HTML
report can embed them and a notebook can display them.

Every figure plots the primary metric of each feature's task (F1, macro-F1
or R², :mod:`needle.report._tasks`) and names it on its axes; features of
different tasks are never averaged together. R² has no lower bound, so its
axes stop :data:`R2_FLOOR` below zero (or below the best R², where even that
is negative): a value under the axis is drawn as a marker on the bottom
edge, never moved or dropped.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.probing.constants import BASELINE_METHODS
from needle.report._tasks import R2_FLOOR, metric_label, primary_metric, r2_floor, tasks_present, with_score

__all__ = ["f1_vs_k_by_collection", "layer_k_heatmaps", "k1_by_layer", "precision_recall_at_k1", "BASELINES",
           "R2_FLOOR"]

#: Methods that are baselines rather than neuron selections.
BASELINES = BASELINE_METHODS  # kept under its old name for importers


def _label(task: str) -> str:
    return metric_label(primary_metric(task))


def _score_limits(task: str, values) -> tuple[float, float]:
    """Axis limits of a task's score: 0–1 for classification; for R² from 0 or lower, down to
    :func:`~needle.report._tasks.r2_floor` of the values."""
    if task != "regression":
        return (0.0, 1.02)
    return (min(0.0, math.floor(r2_floor(values) * 10) / 10) - 0.02, 1.02)


def _mark_below(ax, x, y, low: float, **style) -> None:
    """Values under the axis's lower limit as down-pointing markers on the bottom edge."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    below = y < low
    if below.any():
        ax.scatter(x[below], np.full(below.sum(), low), marker="v", s=28, clip_on=False, zorder=5, **style)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), dpi=110)
    return fig, plt


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _selection_methods(results: pd.DataFrame) -> list[str]:
    return [m for m in dict.fromkeys(results["method"]) if m not in BASELINES]


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _k_ticks(ax, ks) -> None:
    """Label a log k axis with the k values themselves (powers of two where there are many)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [k for k in ks if k & (k - 1) == 0] if len(ks) > 8 else list(ks)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(int(k)) for k in ticks])


def f1_vs_k_by_collection(results: pd.DataFrame) -> bytes:
    """The primary metric against k per collection and task: max over layers, mean over features (Figure 2.4a / A.2).

    One panel per (collection, task), so that F1, macro-F1 and R² are never averaged together; one line per
    method, the random-direction baseline dashed and the dense probe as a dotted horizontal line.
    """
    scored = with_score(results)
    panels = [(c, t) for c in dict.fromkeys(scored["collection"]) for t in tasks_present(scored[scored["collection"]
                                                                                                == c])]
    single_task = len(tasks_present(scored)) == 1
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, plt = _figure(4.6 * cols, 3.4 * rows)
    best = scored.groupby(["collection", "task", "feature", "method", "k"], as_index=False)["score"].max()
    mean = best.groupby(["collection", "task", "method", "k"], as_index=False)["score"].mean()
    for i, (collection, task) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = mean[(mean["collection"] == collection) & (mean["task"] == task)]
        low, high = _score_limits(task, part["score"])
        for j, method in enumerate(_selection_methods(results) + ["random_directions"]):
            line = part[part["method"] == method].sort_values("k")
            if len(line):
                style = dict(ls="--", color="grey") if method == "random_directions" else dict(
                    marker="o", ms=3, color=f"C{j}")
                ax.plot(line["k"], line["score"], label=method.replace("_", " "), **style)
                _mark_below(ax, line["k"], line["score"], low, color=style["color"])
        dense = part[part["method"] == "dense"]
        if len(dense):
            ax.axhline(float(dense["score"].mean()), ls=":", color="black", label="dense (all neurons)")
        n_features = scored.loc[(scored["collection"] == collection) & (scored["task"] == task), "feature"].nunique()
        title = f"{collection} ({n_features} features)" if single_task else f"{collection}, {task} ({n_features})"
        ax.set(xscale="log", xlabel="k (neurons)", ylabel=f"{_label(task)} (best layer, mean over features)",
               title=title, ylim=(low, high))
        _k_ticks(ax, sorted(part["k"].unique()))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def layer_k_heatmaps(results: pd.DataFrame, method: str, *, columns: int = 4) -> bytes:
    """One layer × k heatmap of the test score per feature, for ``method``: F1, macro-F1 or R² by the feature's task.

    All share one 0–1 colour scale; R² below 0 (worse than predicting the mean) is drawn grey, and each panel's
    title names its metric where the results mix tasks.
    """
    import matplotlib

    scored = with_score(results)
    part = scored[scored["method"] == method]
    tasks = tasks_present(part)
    order = {t: i for i, t in enumerate(tasks)}
    features = sorted(dict.fromkeys(part["feature"]),
                      key=lambda f: order[part.loc[part["feature"] == f, "task"].iloc[0]])
    cols = min(columns, len(features))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(3.3 * cols, 2.5 * rows)
    cmap = matplotlib.colormaps["viridis"].with_extremes(under="#bbbbbb")
    image = None
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        rows_of = part[part["feature"] == feature]
        task = rows_of["task"].iloc[0]
        grid = rows_of.pivot_table(index="layer", columns="k", values="score", aggfunc="max")
        image = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap=cmap)
        ks = [int(k) for k in grid.columns]
        # Columns are evenly spaced while k is not: label a sparse set so 16…256 do not collide.
        shown = [j for j, k in enumerate(ks) if k in (1, 4, 8, 16, 64, 256)] if len(ks) > 8 else list(range(len(ks)))
        bottom_row = i >= len(features) - cols
        # Only the bottom row carries k labels, so they never collide with the titles below them.
        ax.set_xticks(shown, [str(ks[j]) for j in shown] if bottom_row else [], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [str(l) for l in grid.index], fontsize=7)
        ax.set_title(feature if len(tasks) == 1 else f"{feature} ({_label(task)})", fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("layer", fontsize=8)
        if bottom_row:
            ax.set_xlabel("k", fontsize=8)
    fig.subplots_adjust(hspace=0.35, wspace=0.25)
    if image is not None:
        # Several tasks: the panel titles name each metric, and a long label would overrun the bar.
        label = f"test {_label(tasks[0])} ({method})" if len(tasks) == 1 else f"test score ({method})"
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label=label,
                     extend="min" if "regression" in tasks else "neither")
    return _png(fig)


def k1_by_layer(results: pd.DataFrame, *, columns: int = 4) -> bytes:
    """The primary metric of the best single neuron (k = 1) by layer, per feature, one line per method."""
    scored = with_score(results)
    part = scored[(scored["k"] == 1) & ~scored["method"].isin(BASELINES)]
    order = {t: i for i, t in enumerate(tasks_present(part))}
    features = sorted(dict.fromkeys(part["feature"]),
                      key=lambda f: order[part.loc[part["feature"] == f, "task"].iloc[0]])
    cols = min(columns, len(features))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(3.3 * cols, 2.4 * rows)
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        rows_of = part[part["feature"] == feature]
        task = rows_of["task"].iloc[0]
        low, high = _score_limits(task, rows_of["score"])
        for j, method in enumerate(_selection_methods(part)):
            line = rows_of[rows_of["method"] == method].sort_values("layer")
            ax.plot(line["layer"], line["score"], marker="o", ms=3, label=method.replace("_", " "), color=f"C{j}")
            _mark_below(ax, line["layer"], line["score"], low, color=f"C{j}")
        ax.set_ylim(low, high)
        ax.set_title(feature, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(_integer_locator())
        if i == 0:
            ax.legend(fontsize=7)
        if i % cols == 0 or len(order) > 1:
            ax.set_ylabel(f"{_label(task)} at k=1", fontsize=8)
        if i >= len(features) - cols:
            ax.set_xlabel("layer", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def precision_recall_at_k1(results: pd.DataFrame) -> bytes:
    """Precision against recall of each feature's best single neuron (its best layer and method).

    High precision with low recall is the signature of a neuron that fires
    for part of a feature (Section 2.5.4); the reverse, of a polysemantic one.
    Binary features only: multiclass and regression probes have no single
    precision and recall.

    Raises
    ------
    InputError
        The results have no binary feature.
    """
    scored = with_score(results)
    part = results[(results["k"] == 1) & ~results["method"].isin(BASELINES) & (scored["task"] == "binary")]
    if part.empty:
        raise InputError("precision and recall are defined for binary features only; these results have none.")
    best = part.loc[part.groupby("feature")["f1"].idxmax()]
    fig, plt = _figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    collections = list(dict.fromkeys(best["collection"]))
    colors = plt.get_cmap("tab10")
    for i, collection in enumerate(collections):
        points = best[best["collection"] == collection]
        ax.scatter(points["recall"], points["precision"], s=22, color=colors(i % 10), label=collection)
        if len(best) <= 40:
            for _, row in points.iterrows():
                ax.annotate(row["feature"], (row["recall"], row["precision"]), fontsize=6, alpha=0.8,
                            xytext=(2, 2), textcoords="offset points")
    for f1 in (0.5, 0.7, 0.9):
        recall = np.linspace(f1 / 2 + 1e-3, 1, 100)  # iso-F1 curve: precision = f1·r / (2r − f1), defined for r > f1/2
        precision = f1 * recall / (2 * recall - f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall[ok], precision[ok], color="grey", lw=0.6, ls=":")
        ax.annotate(f"F1={f1}", (recall[ok][-1], precision[ok][-1]), fontsize=6, color="grey")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="Best single neuron per feature (k = 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)
