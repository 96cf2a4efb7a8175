"""The report's "Space and time" section: for results of ``space-time`` datasets (thesis Chapter 4).

From the results table alone: the ridge probe's test R² by layer for every
target, the linear against the MLP probe where both ran (Table 4.2's test),
and R² against the number of principal components (§4.4.2). Maps, hold-outs
and neurons need the activations: ``examples/space_time.py`` and the scope
site's space-time page draw them. The one exception is the block hold-out
map: ``examples/space_time.py`` writes the block hold-out's per-entity
predictions beside the results file (:func:`write_block_predictions`, the
``.space-time-blocks.parquet`` sidecar), and the section draws them when
:func:`needle.report.write_report` finds it.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["space_time_sections", "blocks_sidecar", "write_block_predictions", "read_block_predictions"]

PREFIX = "space-time:"
SIDECAR = ".space-time-blocks.parquet"


def blocks_sidecar(results_path: str | os.PathLike) -> Path:
    """Where the block hold-out predictions of a results file live: ``<stem>.space-time-blocks.parquet`` beside it."""
    path = Path(results_path)
    return path.with_name(path.name.removesuffix(".parquet") + SIDECAR)


def write_block_predictions(predictions: pd.DataFrame, results_path: str | os.PathLike, *, dataset: str,
                            column: str, layer: int) -> Path:
    """Write :func:`needle.spacetime.block_holdout`'s per-entity predictions as the results file's sidecar.

    ``dataset``, ``column`` (the block column's label) and ``layer`` are
    stored as columns, so the report can say what it draws.
    """
    from needle._io import atomic_file

    path = blocks_sidecar(results_path)
    frame = predictions.assign(dataset=dataset, block_column=column, layer=int(layer))
    frame["block"] = frame["block"].astype(str)
    with atomic_file(path, "wb") as handle:
        frame.to_parquet(handle, index=False)
    return path


def read_block_predictions(results_path: str | os.PathLike) -> pd.DataFrame | None:
    """The sidecar of :func:`write_block_predictions`, or None when there is none."""
    path = blocks_sidecar(results_path)
    return pd.read_parquet(path) if path.exists() else None


def _block_figures(blocks: pd.DataFrame) -> str:
    from needle.spacetime.figures import block_holdout_figure

    html = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, part in blocks.groupby("dataset", sort=False):
            part = part.dropna(axis=1, how="all")
            column, layer = part.block_column.iloc[0], int(part.layer.iloc[0])
            path = block_holdout_figure(part, Path(tmp) / "blocks.png",
                                        title=f"{dataset}: block hold-out by {column}, layer {layer}")
            image = base64.b64encode(path.read_bytes()).decode("ascii")
            n_blocks, n_test = part.block.nunique(), int(part.in_test.sum())
            html.append(f'<h3>Block hold-out: {dataset}</h3><p>Table 4.3\'s hold-out, entity by entity: the test '
                        f'entities of the largest blocks (of {n_blocks}, {n_test} test entities in all), predicted by '
                        f'the probe of the default training split (left) and by the probe trained without their '
                        f'block (right), at layer {layer}. Lines run from the true position (or year) to the '
                        f'prediction; a block that drifts when held out moves further on the right.</p>'
                        f'<img alt="block hold-out of {dataset}" src="data:image/png;base64,{image}">')
    return "".join(html)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def space_time_sections(results: pd.DataFrame, blocks: pd.DataFrame | None = None) -> list[dict]:
    """``[{"title", "html"}]``: one section when the results hold space-time rows, else none.

    ``blocks``: block hold-out predictions (:func:`read_block_predictions`), drawn as maps or year plots.
    """
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
    if blocks is not None and len(blocks):
        html += _block_figures(blocks)
    return [{"title": "Space and time (Chapter 4)", "html": html}]
