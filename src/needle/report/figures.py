"""Figures of a sweep's results (matplotlib, rendered to PNG bytes).

Each function takes the tidy results table (one row per feature × layer ×
method × k, see ``docs/results.md``) and returns PNG bytes, so the HTML
report can embed them and a notebook can display them.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

__all__ = ["f1_vs_k_by_collection", "layer_k_heatmaps", "k1_by_layer", "precision_recall_at_k1", "BASELINES"]

#: Methods that are baselines rather than neuron selections.
BASELINES = ("dense", "random_directions")


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
    """F1 against k per collection: max over layers, mean over features (Figure 2.4a / A.2).

    One panel per collection, one line per method, the random-direction
    baseline dashed and the dense probe as a dotted horizontal line.
    """
    collections = list(dict.fromkeys(results["collection"]))
    cols = min(3, len(collections))
    rows = math.ceil(len(collections) / cols)
    fig, plt = _figure(4.6 * cols, 3.4 * rows)
    best = results.groupby(["collection", "feature", "method", "k"], as_index=False)["f1"].max()
    mean = best.groupby(["collection", "method", "k"], as_index=False)["f1"].mean()
    for i, collection in enumerate(collections):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = mean[mean["collection"] == collection]
        for method in _selection_methods(results) + ["random_directions"]:
            line = part[part["method"] == method].sort_values("k")
            if len(line):
                style = dict(ls="--", color="grey") if method == "random_directions" else dict(marker="o", ms=3)
                ax.plot(line["k"], line["f1"], label=method.replace("_", " "), **style)
        dense = part[part["method"] == "dense"]
        if len(dense):
            ax.axhline(float(dense["f1"].mean()), ls=":", color="black", label="dense (all neurons)")
        n_features = results.loc[results["collection"] == collection, "feature"].nunique()
        ax.set(xscale="log", xlabel="k (neurons)", ylabel="F1 (best layer, mean over features)",
               title=f"{collection} ({n_features} features)", ylim=(0, 1.02))
        _k_ticks(ax, sorted(part["k"].unique()))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def layer_k_heatmaps(results: pd.DataFrame, method: str, *, columns: int = 4) -> bytes:
    """One layer × k heatmap of test F1 per feature, for ``method``."""
    part = results[results["method"] == method]
    features = list(dict.fromkeys(part["feature"]))
    cols = min(columns, len(features))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(3.3 * cols, 2.5 * rows)
    image = None
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        grid = part[part["feature"] == feature].pivot_table(index="layer", columns="k", values="f1", aggfunc="max")
        image = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        ks = [int(k) for k in grid.columns]
        # Columns are evenly spaced while k is not: label a sparse set so 16…256 do not collide.
        shown = [j for j, k in enumerate(ks) if k in (1, 4, 8, 16, 64, 256)] if len(ks) > 8 else list(range(len(ks)))
        bottom_row = i >= len(features) - cols
        # Only the bottom row carries k labels, so they never collide with the titles below them.
        ax.set_xticks(shown, [str(ks[j]) for j in shown] if bottom_row else [], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [str(l) for l in grid.index], fontsize=7)
        ax.set_title(feature, fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("layer", fontsize=8)
        if bottom_row:
            ax.set_xlabel("k", fontsize=8)
    fig.subplots_adjust(hspace=0.35, wspace=0.25)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label=f"test F1 ({method})")
    return _png(fig)


def k1_by_layer(results: pd.DataFrame, *, columns: int = 4) -> bytes:
    """F1 of the best single neuron (k = 1) by layer, per feature, one line per method."""
    part = results[(results["k"] == 1) & ~results["method"].isin(BASELINES)]
    features = list(dict.fromkeys(part["feature"]))
    cols = min(columns, len(features))
    rows = math.ceil(len(features) / cols)
    fig, plt = _figure(3.3 * cols, 2.4 * rows)
    for i, feature in enumerate(features):
        ax = fig.add_subplot(rows, cols, i + 1)
        for method in _selection_methods(part):
            line = part[(part["feature"] == feature) & (part["method"] == method)].sort_values("layer")
            ax.plot(line["layer"], line["f1"], marker="o", ms=3, label=method.replace("_", " "))
        ax.set_ylim(0, 1.02)
        ax.set_title(feature, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(_integer_locator())
        if i == 0:
            ax.legend(fontsize=7)
        if i % cols == 0:
            ax.set_ylabel("F1 at k=1", fontsize=8)
        if i >= len(features) - cols:
            ax.set_xlabel("layer", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def precision_recall_at_k1(results: pd.DataFrame) -> bytes:
    """Precision against recall of each feature's best single neuron (its best layer and method).

    High precision with low recall is the signature of a neuron that fires
    for part of a feature (Section 2.5.4); the reverse, of a polysemantic one.
    """
    part = results[(results["k"] == 1) & ~results["method"].isin(BASELINES)]
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
