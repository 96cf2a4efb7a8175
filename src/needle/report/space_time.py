"""The report's "Space and time" section: for results of ``space-time`` datasets (thesis Chapter 4).

From the results table alone: the ridge probe's test R² by layer for every
target, the linear against the MLP probe where both ran (Table 4.2's test),
and R² against the number of principal components (§4.4.2). Maps, hold-outs
and neurons need the activations: ``examples/space_time.py`` and the scope
site's space-time page draw them.
"""

from __future__ import annotations

import base64
import io

import pandas as pd

__all__ = ["space_time_sections"]

PREFIX = "space-time:"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def space_time_sections(results: pd.DataFrame) -> list[dict]:
    """``[{"title", "html"}]``: one section when the results hold space-time rows, else none."""
    rows = results[results["collection"].astype(str).str.startswith(PREFIX)]
    rows = rows[rows["method"].isin(["ridge", "mlp", "pca"])]
    if rows.empty or "ridge" not in set(rows["method"]):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows.assign(dataset=rows["collection"].str[len(PREFIX):])
    ridge = rows[rows.method == "ridge"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    for (dataset, feature), part in ridge.groupby(["dataset", "feature"], sort=False):
        part = part.sort_values("layer")
        axes[0].plot(part.layer, part.r2, marker="o", ms=3, label=f"{dataset} · {feature}")
    axes[0].set(xlabel="layer", ylabel="test R²", title="ridge probe (alpha by leave-one-out)")
    axes[0].axhline(0, color="0.7", lw=0.6)
    axes[0].legend(fontsize=7, frameon=False)
    best = ridge.loc[ridge.groupby(["dataset", "feature"]).r2.idxmax()]
    pca = rows[rows.method == "pca"]
    for row in best.itertuples():
        curve = pca[(pca.dataset == row.dataset) & (pca.feature == row.feature) & (pca.layer == row.layer)]
        if len(curve):
            line, = axes[1].plot(curve.sort_values("k").k, curve.sort_values("k").r2, marker="o", ms=3,
                                 label=f"{row.dataset} · {row.feature} (L{row.layer})")
            axes[1].axhline(row.r2, color=line.get_color(), ls=":", lw=0.8)
    axes[1].set(xscale="log", xlabel="principal components k", ylabel="test R²",
                title="PCA-k probes at the ridge's best layer (dotted: all dimensions)")
    if len(pca):
        axes[1].legend(fontsize=7, frameon=False)
    image = _png(fig)
    table = best[["dataset", "feature", "layer", "r2", "spearman", "n_test"]].rename(columns={"r2": "ridge_r2"})
    mlp = rows[rows.method == "mlp"][["dataset", "feature", "layer", "r2"]].rename(columns={"r2": "mlp_r2"})
    if len(mlp):
        linear = ridge[["dataset", "feature", "layer", "r2"]].rename(columns={"r2": "ridge_r2_same_layer"})
        mlp = mlp.merge(linear, on=["dataset", "feature", "layer"], how="left").rename(columns={"layer": "mlp_layer"})
        table = table.merge(mlp, on=["dataset", "feature"], how="left")
    html = (f'<p>Best layer per target by test R² (a look at the test split; <code>examples/space_time.py</code> '
            f'picks the layer on training leave-one-out error instead). Where the MLP probe ran, its R² is next to '
            f'the ridge probe\'s at the same layer: the paper finds the two close (space and time are linear).</p>'
            f'<img alt="space and time R² by layer" src="data:image/png;base64,{image}">'
            + table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0))
    return [{"title": "Space and time (Chapter 4)", "html": html}]
