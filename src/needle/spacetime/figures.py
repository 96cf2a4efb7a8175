"""Figures of Chapter 4: a world scatter of predicted vs true places, predicted vs true years, R² by layer.

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

__all__ = ["world_scatter", "year_scatter", "r2_by_layer"]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _save(plt, fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
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
    step = 30 if x1 - x0 > 90 else 10 if x1 - x0 > 20 else 1 if x1 - x0 > 2 else 0.05
    for i, (name, (a, o)) in enumerate([("true positions", (lat, lon)), ("probe's predictions", (plat, plon))]):
        ax = fig.add_subplot(1, 2, i + 1)
        for g in np.arange(np.floor(-180 / step) * step, 180 + step, step):
            ax.axvline(g, color="0.9", lw=0.6, zorder=0)
        for g in np.arange(np.floor(-90 / step) * step, 90 + step, step):
            ax.axhline(g, color="0.9", lw=0.6, zorder=0)
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
