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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.probing.constants import BASELINE_METHODS
from needle.report._tasks import R2_FLOOR, metric_label, primary_metric, r2_floor, tasks_present, with_score

__all__ = ["f1_vs_k_by_collection", "layer_k_heatmaps", "layer_k_heatmaps_figure", "k1_by_layer",
           "k1_by_layer_figure", "precision_recall_at_k1", "precision_recall_figure", "ScatterPoint", "BASELINES",
           "R2_FLOOR", "MAX_SCATTER_LABELS"]

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


def _png(fig, *, tight: bool = True) -> bytes:
    """PNG bytes of a figure (closed afterwards). ``tight=False`` keeps the figure's own canvas, so that positions
    computed in figure coordinates stay where they are in the image."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight" if tight else None)
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
    """PNG of :func:`layer_k_heatmaps_figure`."""
    return _png(layer_k_heatmaps_figure(results, method, columns=columns))


#: Widest heatmap figure, in inches (about the report's 1200-pixel column at the figures' 110 dpi).
MAX_FIGURE_WIDTH = 11.0


def _cell_text(value: float) -> str:
    """A heatmap cell's number in at most four characters: ``.93``, ``1.0``, ``-.41``."""
    text = f"{value:.2f}"
    if text in ("1.00", "-1.00"):
        return text[:-1]
    return text.replace("0.", ".", 1)


def layer_k_heatmaps_figure(results: pd.DataFrame, method: str, *, columns: int = 4):
    """One layer × k heatmap of the test score per feature, for ``method``: F1, macro-F1 or R² by the feature's task.

    All share one 0–1 colour scale; R² below 0 (worse than predicting the mean) is drawn grey, and each panel's
    title names its metric where the results mix tasks. Rows run over every layer from the first probed to the
    last, a layer without probes left blank. Every cell carries its value (:func:`_cell_text`, dark on
    light cells and light on dark ones); every panel carries a tick for each of its ks.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    scored = with_score(results)
    part = scored[scored["method"] == method]
    tasks = tasks_present(part)
    order = {t: i for i, t in enumerate(tasks)}
    features = sorted(dict.fromkeys(part["feature"]),
                      key=lambda f: order[part.loc[part["feature"] == f, "task"].iloc[0]])
    n_ks = part["k"].nunique()
    probed = sorted(int(layer) for layer in part["layer"].unique())
    layer_axis = pd.Index(range(probed[0], probed[-1] + 1) if probed else [], name="layer")
    panel_width = max(3.3, 0.36 * n_ks + 0.9)  # room for every cell's number
    # At most MAX_FIGURE_WIDTH inches across, so that the report shows the figure unscaled and the numbers legible.
    cols = max(1, min(columns, len(features), int(MAX_FIGURE_WIDTH // panel_width)))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(panel_width * cols, (0.28 * len(layer_axis) + 1.3) * rows)
    cmap = matplotlib.colormaps["viridis"].with_extremes(under="#bbbbbb")
    image = None
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        rows_of = part[part["feature"] == feature]
        task = rows_of["task"].iloc[0]
        grid = rows_of.pivot_table(index="layer", columns="k", values="score", aggfunc="max")
        grid = grid.reindex(layer_axis)  # an unprobed layer is an empty row, not hidden by its neighbours closing up
        values = grid.to_numpy(dtype=np.float64)
        image = ax.imshow(values, aspect="auto", origin="lower", vmin=0, vmax=1, cmap=cmap)
        for (r, c), value in np.ndenumerate(values):
            if np.isfinite(value):
                # viridis is light above about 0.6: dark text there, white below (and on the grey of R² < 0)
                ax.text(c, r, _cell_text(value), ha="center", va="center", fontsize=5.5,
                        color="black" if value > 0.6 else "white")
        ks = [int(k) for k in grid.columns]
        # Panels widen with the number of ks (0.36 inch a column), so every k has room for its label.
        ax.set_xticks(range(len(ks)), [str(k) for k in ks], fontsize=6.5)
        ax.set_yticks(range(grid.shape[0]), [str(l) for l in grid.index], fontsize=7)
        ax.set_title(feature if len(tasks) == 1 else f"{feature} ({_label(task)})", fontsize=9)
        ax.set_xlabel("k", fontsize=7, labelpad=1)
        if i % cols == 0:
            ax.set_ylabel("layer", fontsize=8)
    fig.tight_layout(h_pad=1.2, w_pad=0.8)
    if image is not None:
        # Several tasks: the panel titles name each metric, and a long label would overrun the bar.
        label = f"test {_label(tasks[0])} ({method})" if len(tasks) == 1 else f"test score ({method})"
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label=label,
                     extend="min" if "regression" in tasks else "neither")
    return fig


def k1_by_layer(results: pd.DataFrame, *, columns: int = 4) -> bytes:
    """PNG of :func:`k1_by_layer_figure`."""
    return _png(k1_by_layer_figure(results, columns=columns))


def k1_by_layer_figure(results: pd.DataFrame, *, columns: int = 4):
    """The primary metric of the best single neuron (k = 1) by layer, per feature, one line per method.

    The x axis runs over every layer from the first to the last probed; a layer a line has no probe at is NaN in
    it, so the line breaks there (with markers at every probed layer) instead of drawing a straight segment
    across layers that were never measured.

    Returns
    -------
    matplotlib.figure.Figure
    """
    scored = with_score(results)
    part = scored[(scored["k"] == 1) & ~scored["method"].isin(BASELINES)]
    order = {t: i for i, t in enumerate(tasks_present(part))}
    features = sorted(dict.fromkeys(part["feature"]),
                      key=lambda f: order[part.loc[part["feature"] == f, "task"].iloc[0]])
    probed = sorted(int(layer) for layer in scored["layer"].unique())
    axis = np.arange(probed[0], probed[-1] + 1) if probed else np.arange(0)
    cols = min(columns, len(features))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(3.3 * cols, 2.4 * rows)
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        rows_of = part[part["feature"] == feature]
        task = rows_of["task"].iloc[0]
        low, high = _score_limits(task, rows_of["score"])
        for j, method in enumerate(_selection_methods(part)):
            by_layer = rows_of[rows_of["method"] == method].groupby("layer")["score"].max()
            line = by_layer.reindex(axis)  # NaN where this method has no probe: the line breaks
            ax.plot(axis, line.to_numpy(dtype=np.float64), marker="o", ms=3, label=method.replace("_", " "),
                    color=f"C{j}")
            _mark_below(ax, by_layer.index, by_layer.to_numpy(), low, color=f"C{j}")
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
    return fig


#: Features named on the precision–recall scatter at most (the best by F1 first; the others on hover).
MAX_SCATTER_LABELS = 12


@dataclass(frozen=True)
class ScatterPoint:
    """One feature on the precision–recall scatter, with where it lies in the image.

    ``x`` and ``y`` are fractions of the image's width and height from its top-left corner, so an HTML overlay
    placed at ``left: x·100 %; top: y·100 %`` sits on the point at any displayed size. ``labelled`` says whether
    the figure names it.
    """

    feature: str
    collection: str
    layer: int
    neuron: int
    method: str
    precision: float
    recall: float
    f1: float
    x: float
    y: float
    labelled: bool


def precision_recall_at_k1(results: pd.DataFrame) -> bytes:
    """PNG of :func:`precision_recall_figure`."""
    fig, _ = precision_recall_figure(results)
    return _png(fig, tight=False)


#: Where a label may go relative to its point (offset in points, horizontal alignment), tried in this order.
_LABEL_SPOTS = ((3, 3, "left"), (3, -8, "left"), (-3, 3, "right"), (-3, -8, "right"), (0, 7, "center"),
                (0, -12, "center"), (8, -2, "left"), (-8, -2, "right"))


def precision_recall_figure(results: pd.DataFrame, *, max_labels: int = MAX_SCATTER_LABELS):
    """Precision against recall of each feature's best single neuron (its best layer and method).

    High precision with low recall is the signature of a neuron that fires
    for part of a feature (Section 2.5.4); the reverse, of a polysemantic one.
    Binary features only: multiclass and regression probes have no single
    precision and recall.

    Labels never overlap: the features are labelled best F1 first, each at the first of a few spots around its
    point where its text box meets no label already placed, no other point and the legend, and stays inside the
    axes; a feature with no free
    spot, or beyond ``max_labels``, is left unlabelled (the report names it on hover). Saved without
    ``bbox_inches="tight"`` (:func:`precision_recall_at_k1`) so that the points' image fractions hold.

    Returns
    -------
    fig : matplotlib.figure.Figure
    points : list of ScatterPoint
        One per binary feature, in the order labels were tried (best F1 first).

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
    best = best.sort_values(["f1", "feature"], ascending=[False, True], kind="stable")
    fig, plt = _figure(6.4, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    collections = list(dict.fromkeys(best.sort_values("collection", kind="stable")["collection"]))
    colors = plt.get_cmap("tab10")
    for i, collection in enumerate(collections):
        points = best[best["collection"] == collection]
        ax.scatter(points["recall"], points["precision"], s=22, color=colors(i % 10), label=collection, zorder=3)
    for f1 in (0.5, 0.7, 0.9):
        recall = np.linspace(f1 / 2 + 1e-3, 1, 100)  # iso-F1 curve: precision = f1·r / (2r − f1), defined for r > f1/2
        precision = f1 * recall / (2 * recall - f1)
        ok = (precision > 0) & (precision <= 1)
        ax.plot(recall[ok], precision[ok], color="grey", lw=0.6, ls=":")
        ax.annotate(f"F1={f1}", (recall[ok][-1], precision[ok][-1]), fontsize=6, color="grey", ha="right",
                    va="bottom", xytext=(-2, 2), textcoords="offset points")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="Best single neuron per feature (k = 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    labelled = _place_labels(fig, ax, best, max_labels)
    width, height = fig.canvas.get_width_height()
    out = []
    for row in best.itertuples(index=False):
        px, py = ax.transData.transform((float(row.recall), float(row.precision)))
        neuron = np.asarray(row.neurons)
        out.append(ScatterPoint(
            feature=str(row.feature), collection=str(row.collection), layer=int(row.layer),
            neuron=int(neuron[0]) if neuron.size else -1, method=str(row.method), precision=float(row.precision),
            recall=float(row.recall), f1=float(row.f1), x=float(px / width), y=float(1 - py / height),
            labelled=str(row.feature) in labelled))
    return fig, out


def _place_labels(fig, ax, best: pd.DataFrame, max_labels: int) -> set[str]:
    """Annotate features best F1 first at the first free spot (:data:`_LABEL_SPOTS`); the names placed."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() is not None else []
    # Every point is an obstacle too, so that a label never covers another feature's point and reads as its name.
    radius = 0.5 * math.sqrt(22) * fig.dpi / 72 + 1
    centres = ax.transData.transform(best[["recall", "precision"]].to_numpy(dtype=np.float64))
    dots = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in centres]
    placed: set[str] = set()
    for i, row in enumerate(best.itertuples(index=False)):
        if len(placed) >= max_labels:
            break
        for dx, dy, align in _LABEL_SPOTS:
            text = ax.annotate(str(row.feature), (float(row.recall), float(row.precision)), fontsize=6.5,
                               xytext=(dx, dy), textcoords="offset points", ha=align, zorder=4)
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            fits = (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
                    and not any(box.overlaps(other) for other in taken)
                    and not any(box.overlaps(dot) for j, dot in enumerate(dots) if j != i))
            if fits:
                taken.append(box)
                placed.add(str(row.feature))
                break
            text.remove()
    return placed
