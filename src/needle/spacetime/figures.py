"""Figures of Chapter 4: a world scatter of predicted vs true places, predicted vs true years, R² by layer,
and block hold-out maps (Table 4.3's predictions, block by block).

All offline: the map is drawn on a light latitude/longitude grid (no tiles,
no coastline download). Each function writes a PNG atomically and returns
its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["world_scatter", "year_scatter", "r2_by_layer", "block_holdout_map", "block_holdout_years",
           "block_holdout_figure", "held_target", "shown_blocks", "BLOCKS_KEY"]

#: PNG text key under which a block hold-out figure records the blocks it drew ("|"-separated).
BLOCKS_KEY = "needle:blocks"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _save(plt, fig, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _colours(labels: np.ndarray, top: int = 10):
    import matplotlib

    values, counts = np.unique(labels, return_counts=True)
    keep = [v for v in values[np.argsort(-counts, kind="stable")] if v][:top]
    palette = matplotlib.colormaps["tab10"]
    colour = {v: palette(i % 10) for i, v in enumerate(keep)}
    return [colour.get(v, (0.6, 0.6, 0.6, 1.0)) for v in labels], colour


def _extent(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float, float, float]:
    pad_lat, pad_lon = max(np.ptp(lat) * 0.08, 0.01), max(np.ptp(lon) * 0.08, 0.01)
    return (max(lon.min() - pad_lon, -180), min(lon.max() + pad_lon, 180),
            max(lat.min() - pad_lat, -90), min(lat.max() + pad_lat, 90))


def _grid(ax, step: float) -> None:
    for g in np.arange(np.floor(-180 / step) * step, 180 + step, step):
        ax.axvline(g, color="0.9", lw=0.6, zorder=0)
    for g in np.arange(np.floor(-90 / step) * step, 90 + step, step):
        ax.axhline(g, color="0.9", lw=0.6, zorder=0)


def _grid_step(width: float) -> float:
    return 30 if width > 90 else 10 if width > 20 else 1 if width > 2 else 0.05 if width > 0.2 else 0.01


def world_scatter(frame: pd.DataFrame, path: str | os.PathLike, *, colour_by: str | None = None,
                  title: str = "") -> Path:
    """True (left) and predicted (right) positions of held-out places, coloured by a metadata column.

    Parameters
    ----------
    frame : DataFrame
        From :func:`needle.spacetime.held_out_predictions`: ``latitude``, ``longitude``,
        ``pred_latitude``, ``pred_longitude`` (rows lacking one are skipped), and ``colour_by``.
    path : path-like
        The PNG to write.
    colour_by : str, optional
        A column (continent, country, state, borough…); the ten most common get colours.
    """
    rows = frame.dropna(subset=["latitude", "longitude", "pred_latitude", "pred_longitude"])
    lat, lon = rows.latitude.to_numpy(), rows.longitude.to_numpy()
    plat, plon = np.clip(rows.pred_latitude.to_numpy(), -90, 90), rows.pred_longitude.to_numpy()
    labels = rows[colour_by].astype(str).to_numpy() if colour_by in rows else np.full(len(rows), "")
    colours, legend = _colours(labels)
    plt, fig = _figure(12, 3.4)
    x0, x1, y0, y1 = _extent(np.r_[lat, plat], np.r_[lon, plon])
    step = _grid_step(x1 - x0)
    for i, (name, (a, o)) in enumerate([("true positions", (lat, lon)), ("probe's predictions", (plat, plon))]):
        ax = fig.add_subplot(1, 2, i + 1)
        _grid(ax, step)
        ax.scatter(o, a, s=5, c=colours, alpha=0.7, linewidths=0)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="longitude (°)", ylabel="latitude (°)", title=name)
        ax.set_aspect("equal", adjustable="box")
    if legend:
        handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=k) for k, c in legend.items()]
        fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False, title=colour_by)
    fig.suptitle(title or f"{len(rows)} held-out places")
    return _save(plt, fig, path)


def year_scatter(frame: pd.DataFrame, target: str, path: str | os.PathLike, *, colour_by: str | None = None,
                 title: str = "") -> Path:
    """Predicted against true years of held-out entities, with the identity line."""
    rows = frame.dropna(subset=[target, f"pred_{target}"])
    true, pred = rows[target].to_numpy(), rows[f"pred_{target}"].to_numpy()
    labels = rows[colour_by].astype(str).to_numpy() if colour_by in rows else np.full(len(rows), "")
    colours, legend = _colours(labels)
    plt, fig = _figure(5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(true, pred, s=5, c=colours, alpha=0.6, linewidths=0)
    low, high = min(true.min(), pred.min()), max(true.max(), pred.max())
    ax.plot([low, high], [low, high], color="0.3", lw=0.8, ls="--")
    ax.set(xlabel=f"true {target.replace('_', ' ')}", ylabel=f"predicted {target.replace('_', ' ')}",
           title=title or f"{len(rows)} held-out entities")
    if legend:
        ax.legend(handles=[plt.Line2D([], [], ls="", marker="o", color=c, label=k) for k, c in legend.items()],
                  fontsize=7, frameon=False, title=colour_by)
    return _save(plt, fig, path)


def r2_by_layer(scores: Mapping[str, pd.DataFrame], path: str | os.PathLike, *, title: str = "") -> Path:
    """Test R² (bootstrap 95 % band) of each dataset's targets by layer.

    Parameters
    ----------
    scores : mapping of dataset name to the DataFrame of :func:`needle.spacetime.layer_scores`
    """
    plt, fig = _figure(6.5, 4)
    ax = fig.add_subplot(1, 1, 1)
    for name, frame in scores.items():
        per_target = frame.dropna(subset=["r2"])
        for target, rows in per_target.groupby("target", sort=False):
            rows = rows.sort_values("layer")
            line, = ax.plot(rows.layer, rows.r2, marker="o", ms=3, label=f"{name} · {target}")
            ax.fill_between(rows.layer, rows.r2_low, rows.r2_high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel="layer", ylabel="test R²", title=title or "ridge probe on the residual stream")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    return _save(plt, fig, path)


def shown_blocks(predictions: pd.DataFrame, blocks: int = 8) -> list[str]:
    """The blocks a hold-out figure draws: the ``blocks`` with the most held-out test entities (ties by name)."""
    test = predictions[predictions["in_test"].astype(bool)]
    counts = test.groupby("block").size()
    counts = counts[counts > 0].sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    return [str(b) for b in counts.index[:blocks]]


def _block_rows(predictions: pd.DataFrame, blocks: int, per_block: int, seed: int):
    """Test entities of the shown blocks, at most ``per_block`` of each (seeded), and the blocks' colours."""
    import matplotlib

    chosen = shown_blocks(predictions, blocks)
    rng = np.random.default_rng([seed, 4, 3])
    parts = []
    for block in chosen:
        rows = predictions[(predictions["block"].astype(str) == block) & predictions["in_test"].astype(bool)]
        if len(rows) > per_block:
            rows = rows.iloc[np.sort(rng.choice(len(rows), per_block, replace=False))]
        parts.append(rows)
    palette = matplotlib.colormaps["tab10"]
    everything = predictions[predictions["block"].astype(str).isin(chosen) & predictions["in_test"].astype(bool)]
    return chosen, parts, {b: palette(i % 10) for i, b in enumerate(chosen)}, everything


def _finish_block_figure(plt, fig, chosen, colour, extra_handles, title: str, path) -> Path:
    """The blocks' legend beside the panels, the title, and the PNG with :data:`BLOCKS_KEY`."""
    handles = [plt.Line2D([], [], ls="", marker="o", color=colour[b], label=b) for b in chosen] + extra_handles
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False, title="held-out block")
    fig.suptitle(title)
    return _save(plt, fig, path, {BLOCKS_KEY: "|".join(chosen)})


def held_target(predictions: pd.DataFrame) -> str:
    """The target of a time dataset's block hold-out predictions (the ``<target>`` of ``held_<target>``)."""
    return next(c[len("held_"):] for c in predictions.columns if c.startswith("held_") and c != "held_proximity")


def block_holdout_map(predictions: pd.DataFrame, path: str | os.PathLike, *, blocks: int = 8, per_block: int = 40,
                      seed: int = 0, title: str = "") -> Path:
    """Block hold-out on a map: each block's held-out places, predicted by the nominal probe and with the block held out.

    Two panels on the same latitude/longitude grid. In each, a block's test
    places are dots at their true positions with a line to the prediction
    (left: the probe of the default training split; right: the probe trained
    without the block); the large circle is the block's mean true position
    and the large cross its mean prediction. A block whose points drift when
    held out has longer lines and a cross further from its circle on the right.

    Parameters
    ----------
    predictions : DataFrame
        The second value of :func:`needle.spacetime.block_holdout` with ``predictions=True``
        (``block``, ``in_test``, ``latitude``, ``longitude``, ``nominal_*``, ``held_*``).
    path : path-like
        The PNG to write; its text chunk :data:`BLOCKS_KEY` lists the blocks drawn.
    blocks : int, default 8
        The blocks with the most test places (:func:`shown_blocks`).
    per_block : int, default 40
        At most this many places of a block are drawn (a seeded sample); the block means use them all.
    """
    chosen, parts, colour, everything = _block_rows(predictions, blocks, per_block, seed)
    lat_all = np.r_[everything.latitude, np.clip(everything.nominal_latitude, -90, 90),
                    np.clip(everything.held_latitude, -90, 90)]
    lon_all = np.r_[everything.longitude, everything.nominal_longitude, everything.held_longitude]
    x0, x1, y0, y1 = _extent(lat_all, lon_all) if len(everything) else (-180, 180, -90, 90)
    plt, fig = _figure(12, float(np.clip(4.5 * (y1 - y0) / max(x1 - x0, 1e-9) + 1.0, 2.6, 7.0)))
    fig.set_layout_engine("constrained")
    for i, (name, prefix) in enumerate([("nominal probe (block in training)", "nominal"),
                                        ("block held out of training", "held")]):
        ax = fig.add_subplot(1, 2, i + 1)
        _grid(ax, _grid_step(x1 - x0))
        for block, rows in zip(chosen, parts):
            c = colour[block]
            lat, lon = rows.latitude.to_numpy(), rows.longitude.to_numpy()
            plat, plon = np.clip(rows[f"{prefix}_latitude"].to_numpy(), -90, 90), rows[f"{prefix}_longitude"].to_numpy()
            ax.plot(np.c_[lon, plon].T, np.c_[lat, plat].T, color=c, lw=0.5, alpha=0.45)
            ax.scatter(lon, lat, s=6, color=c, alpha=0.8, linewidths=0)
            whole = everything[everything["block"].astype(str) == block]
            ax.scatter(whole.longitude.mean(), whole.latitude.mean(), s=90, facecolors="none", edgecolors=[c], lw=1.6)
            ax.scatter(whole[f"{prefix}_longitude"].mean(), np.clip(whole[f"{prefix}_latitude"], -90, 90).mean(),
                       s=90, marker="X", color=c, edgecolors="k", linewidths=0.5)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="longitude (°)", ylabel="latitude (°)", title=name)
        ax.set_aspect("equal", adjustable="box")
    means = [plt.Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="block mean, true"),
             plt.Line2D([], [], ls="", marker="X", color="0.3", label="block mean, predicted")]
    return _finish_block_figure(plt, fig, chosen, colour, means, title or f"block hold-out: {len(chosen)} blocks, "
                                "their test places (dot: true, line: to the prediction)", path)


def block_holdout_years(predictions: pd.DataFrame, target: str, path: str | os.PathLike, *, blocks: int = 8,
                        per_block: int = 40, seed: int = 0, title: str = "") -> Path:
    """Block hold-out of a time dataset: predicted against true year, nominal (left) and with each block held out (right).

    A block's test entities are dots coloured by block, with the identity line;
    the large marker is the block's mean true and mean predicted year. A block
    that drifts when held out moves away from the identity on the right.
    ``predictions`` as for :func:`block_holdout_map`, with ``target``, ``nominal_<target>``, ``held_<target>``.
    """
    chosen, parts, colour, everything = _block_rows(predictions, blocks, per_block, seed)
    values = np.r_[everything[target], everything[f"nominal_{target}"], everything[f"held_{target}"]]
    low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
    plt, fig = _figure(11, 4.2)
    fig.set_layout_engine("constrained")
    label = target.replace("_", " ")
    for i, (name, prefix) in enumerate([("nominal probe (block in training)", "nominal"),
                                        ("block held out of training", "held")]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot([low, high], [low, high], color="0.3", lw=0.8, ls="--")
        for block, rows in zip(chosen, parts):
            c = colour[block]
            ax.scatter(rows[target], rows[f"{prefix}_{target}"], s=7, color=c, alpha=0.6, linewidths=0)
            whole = everything[everything["block"].astype(str) == block]
            ax.scatter(whole[target].mean(), whole[f"{prefix}_{target}"].mean(), s=90, marker="X", color=c,
                       edgecolors="k", linewidths=0.5)
        ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"true {label}", ylabel=f"predicted {label}", title=name)
    means = [plt.Line2D([], [], ls="", marker="X", color="0.3", label="block mean")]
    return _finish_block_figure(plt, fig, chosen, colour, means,
                                title or f"block hold-out: {len(chosen)} blocks, their test entities", path)


def block_holdout_figure(predictions: pd.DataFrame, path: str | os.PathLike, **options) -> Path:
    """:func:`block_holdout_map` for places (``latitude`` and ``longitude`` columns), else :func:`block_holdout_years`."""
    if {"latitude", "longitude"} <= set(predictions.columns):
        return block_holdout_map(predictions, path, **options)
    return block_holdout_years(predictions, held_target(predictions), path, **options)
