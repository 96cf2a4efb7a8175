"""Chapter 4's analyses on an activation cache of a ``space-time`` dataset.

Everything here reads a cache (residual stream or MLP neurons) extracted from
a dataset built by :func:`needle.datasets.space_time.build_space_time`, and
fits the paper's probe: ridge on the standardised layer with alpha chosen by
leave-one-out error (:func:`needle.probing.ridge.ridge_loo`), one per target.

- :func:`load_entities` — the cache's rows with every target (NaN where the
  source lacks it) and the metadata the builder kept.
- :func:`entity_split` — one train/test split of the entities (whole groups;
  the dataset's own split when it has one), shared by every target so that
  a place's latitude and longitude are on the same side.
- :func:`layer_scores` — per layer and target: R² with a bootstrap 95 %
  interval, Spearman, Pearson, MAE, the chosen alpha and the training
  leave-one-out R² (which picks the best layer without looking at the test
  split); per layer for places: great-circle error, R² on the sphere and
  proximity error of the entities that have both coordinates.
- :func:`held_out_predictions` — the test entities' true and predicted values at a layer.
- :func:`block_holdout` — Tables 4.3 and 4.4: hold out each block (a
  metadata value such as a country, a time block, a grid cell, or an entity
  type) in turn and compare its proximity error held out with its nominal one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.probing.metrics import regression_metrics_batch
from needle.probing.preprocessing import standardization
from needle.probing.ridge import DEFAULT_ALPHAS, RidgePath, ridge_loo
from needle.spacetime.metrics import great_circle_errors, proximity_error, sphere_r2

__all__ = ["Entities", "load_entities", "entity_split", "fit_ridge", "layer_scores", "best_layer",
           "held_out_predictions", "block_holdout", "block_column", "BLOCK_COLUMNS", "bootstrap_interval",
           "paired_r2_difference"]

#: dataset → (Table 4.3's block column, grid cell in degrees used when that column is too sparse).
BLOCK_COLUMNS: dict[str, tuple[str, float | None]] = {
    "world": ("country", 10.0), "us": ("state", 2.0), "nyc": ("borough", 0.02), "historical": ("century", None),
    "art": ("decade", None), "headlines": ("year_block", None), "world-cities": ("country", 10.0),
    "us-cities": ("state", 2.0)}


@dataclass
class Entities:
    """A cache's rows as entities of a space-time dataset.

    Attributes
    ----------
    dataset : str
        The builder's dataset name (world, us, …).
    kind : {"space", "time"}
    rows : ndarray of shape (n,), int64
        Rows of the cache's layer matrices.
    names : ndarray of shape (n,), str
    groups : ndarray of shape (n,), str
    targets : dict of str to ndarray of shape (n,)
        NaN where the source has no value.
    metadata : dict of str to ndarray of shape (n,), str
        ``""`` where unknown.
    split : ndarray of shape (n,), bool, or None
        The dataset's own split (True for test), when it has one.
    """

    dataset: str
    kind: str
    rows: np.ndarray
    names: np.ndarray
    groups: np.ndarray
    targets: dict[str, np.ndarray]
    metadata: dict[str, np.ndarray]
    split: np.ndarray | None = None

    def __len__(self) -> int:
        return self.rows.size

    @property
    def has_coordinates(self) -> np.ndarray:
        """Entities with both a latitude and a longitude: bool of shape (n,)."""
        if self.kind != "space":
            return np.zeros(len(self), bool)
        return np.isfinite(self.targets["latitude"]) & np.isfinite(self.targets["longitude"])

    @property
    def main_target(self) -> str:
        """The target of the time metrics (the first: death year, release year, year)."""
        return next(iter(self.targets))


def load_entities(cache: Any, dataset: Any = None) -> Entities:
    """The entities of a space-time cache (its dataset is loaded from the recorded path unless given)."""
    dataset = cache.dataset() if dataset is None else dataset
    info = dataset.extra.get("space_time")
    if info is None:
        raise InputError(f"{getattr(cache, 'path', 'the cache')} was not extracted from a space-time dataset "
                         "(build one with `needle dataset build space-time`).")
    sequence = np.asarray(cache.rows["sequence"], np.int64)
    n_rows = sequence.size
    targets = {}
    for name in cache.feature_names:
        rows, y = cache.feature(name)
        column = np.full(n_rows, np.nan)
        column[rows] = y
        targets[name] = column
    split = None
    for name in cache.feature_names:
        given = cache.feature_split(name)
        if given is not None:
            split = np.zeros(n_rows, bool) if split is None else split
            split[cache.feature(name)[0][given]] = True
    metadata = {k: np.asarray(v, dtype=object)[sequence].astype(str) for k, v in info["metadata"].items()}
    names = np.asarray(info["names"], dtype=object)[sequence].astype(str)
    return Entities(dataset=info["dataset"], kind=info["kind"], rows=np.arange(n_rows), names=names,
                    groups=np.asarray(cache.row_groups).astype(str), targets=targets, metadata=metadata, split=split)


def entity_split(entities: Entities, *, test_size: float = 0.3, seed: int = 0) -> np.ndarray:
    """Test mask over entities: the dataset's own split, else a seeded ``test_size`` share of the groups."""
    if entities.split is not None:
        return entities.split.copy()
    if not 0 < test_size < 1:
        raise InputError(f"test_size must be in (0, 1), not {test_size}.")
    unique, inverse = np.unique(entities.groups, return_inverse=True)
    order = np.random.default_rng([seed, 4, 2]).permutation(unique.size)
    test_groups = np.zeros(unique.size, bool)
    test_groups[order[: int(round(test_size * unique.size))]] = True
    return test_groups[inverse]


def fit_ridge(X: np.ndarray, y: np.ndarray, alphas: Sequence[float] = DEFAULT_ALPHAS) -> tuple[RidgePath, float]:
    """The paper's probe on raw activations: ridge with leave-one-out alpha on standardised columns.

    Returns
    -------
    path : RidgePath
        Coefficients folded back to the units of ``X`` (``path.predict(X)`` works on raw activations).
    loo_r2 : float
        1 − (leave-one-out MSE at the chosen alpha) / var(y): a training-only score.
    """
    X = np.asarray(X, np.float64)
    mean, scale = standardization(X)
    path = ridge_loo((X - mean) / scale, y, alphas)
    path.coef = path.coef / scale[:, None]
    path.intercept = path.intercept - mean @ path.coef
    loo_mse = path.loo_mse[path.best, np.arange(path.best.size)]
    return path, float(1.0 - loo_mse[0] / np.var(y))


def bootstrap_interval(y: np.ndarray, pred: np.ndarray, *, n_boot: int = 500, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of R² over the test entities."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    index = np.random.default_rng([seed, 9]).integers(0, y.size, size=(n_boot, y.size))
    yb, pb = y[index], pred[index]
    ss_tot = np.sum((yb - yb.mean(axis=1, keepdims=True)) ** 2, axis=1)
    r2 = 1 - np.sum((yb - pb) ** 2, axis=1) / np.where(ss_tot > 0, ss_tot, np.nan)
    low, high = np.nanpercentile(r2, [2.5, 97.5])
    return float(low), float(high)


def paired_r2_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, n_boot: int = 1000,
                         seed: int = 0) -> tuple[float, float, float]:
    """R²(b) − R²(a) on the same entities, with a paired 95 % percentile bootstrap interval.

    Two probes (two sites, say) scored on one test split: resampling the
    entities once for both keeps their shared difficulty out of the interval,
    which two separate intervals would not.

    Parameters
    ----------
    y, pred_a, pred_b : ndarray of shape (n,)

    Returns
    -------
    difference, low, high : float
    """
    y, pred_a, pred_b = (np.asarray(v, np.float64) for v in (y, pred_a, pred_b))
    if not y.shape == pred_a.shape == pred_b.shape or y.ndim != 1:
        raise InputError(f"y and both predictions must have one shape (n,), not {y.shape}, {pred_a.shape}, {pred_b.shape}.")

    def r2(yy, pp):
        ss_tot = np.sum((yy - yy.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        return 1 - np.sum((yy - pp) ** 2, axis=-1) / np.where(ss_tot > 0, ss_tot, np.nan)

    index = np.random.default_rng([seed, 9, 2]).integers(0, y.size, size=(n_boot, y.size))
    diffs = r2(y[index], pred_b[index]) - r2(y[index], pred_a[index])
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(r2(y, pred_b) - r2(y, pred_a)), float(low), float(high)


def _layer_matrix(cache: Any, layer: int) -> np.ndarray:
    X = np.asarray(cache.layer(layer), dtype=np.float32)
    if not np.isfinite(X).all():
        raise InputError(f"layer {layer} of {getattr(cache, 'path', 'the cache')} has NaN or infinite activations.")
    return X


def _fit_targets(X: np.ndarray, entities: Entities, train: np.ndarray, alphas) -> dict[str, tuple[RidgePath, float]]:
    out = {}
    for name, values in entities.targets.items():
        rows = train & np.isfinite(values)
        if rows.sum() < 3:
            raise InputError(f"target {name!r} has {int(rows.sum())} training entities; a probe needs more.")
        out[name] = fit_ridge(X[rows], values[rows], alphas)
    return out


def layer_scores(cache: Any, entities: Entities, is_test: np.ndarray, *, layers: Sequence[int] | None = None,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, n_boot: int = 500) -> pd.DataFrame:
    """Test metrics of the ridge probe per (layer, target), plus the joint space metrics per layer.

    Returns
    -------
    DataFrame
        One row per (layer, target) with ``r2``, ``r2_low``, ``r2_high`` (bootstrap 95 %),
        ``spearman``, ``pearson``, ``mae``, ``alpha``, ``loo_r2`` (training only), ``n_train``,
        ``n_test``; and one row per layer with ``target="position"`` (places): ``sphere_r2``,
        ``median_km``, ``mean_km``, ``proximity`` and ``n_test`` (entities with both coordinates),
        or ``target="<main>:proximity"`` (times).
    """
    layers = list(cache.layers if layers is None else layers)
    train = ~is_test
    records = []
    for layer in layers:
        X = _layer_matrix(cache, layer)
        fits = _fit_targets(X, entities, train, alphas)
        predictions = {}
        for name, (path, loo_r2) in fits.items():
            test = is_test & np.isfinite(entities.targets[name])
            y = entities.targets[name][test]
            pred = path.predict(X[test])[:, 0]
            predictions[name] = (test, pred)
            metrics = {k: float(v[0]) for k, v in regression_metrics_batch(y, pred[None]).items()}
            low, high = bootstrap_interval(y, pred, n_boot=n_boot)
            records.append({"layer": layer, "target": name, **metrics, "r2_low": low, "r2_high": high,
                            "alpha": float(path.alpha[0]), "loo_r2": loo_r2,
                            "n_train": int((train & np.isfinite(entities.targets[name])).sum()), "n_test": int(test.sum())})
        if entities.kind == "space":
            both = is_test & entities.has_coordinates
            if both.sum() >= 2:
                lat = fits["latitude"][0].predict(X[both])[:, 0]
                lon = fits["longitude"][0].predict(X[both])[:, 0]
                t_lat, t_lon = entities.targets["latitude"][both], entities.targets["longitude"][both]
                km = great_circle_errors(t_lat, t_lon, lat, lon)
                prox = proximity_error(np.c_[t_lat, t_lon], np.c_[np.clip(lat, -90, 90), lon], kind="space")
                records.append({"layer": layer, "target": "position", "sphere_r2": sphere_r2(t_lat, t_lon, lat, lon),
                                "median_km": float(np.median(km)), "mean_km": float(km.mean()),
                                "proximity": float(prox.mean()), "n_test": int(both.sum())})
        else:
            name = entities.main_target
            test, pred = predictions[name]
            prox = proximity_error(entities.targets[name][test], pred, kind="time")
            records.append({"layer": layer, "target": f"{name}:proximity", "proximity": float(prox.mean()),
                            "n_test": int(test.sum())})
    return pd.DataFrame.from_records(records)


def best_layer(scores: pd.DataFrame) -> int:
    """The layer of the highest mean training leave-one-out R² over the targets (the test split is not used)."""
    per_layer = scores.dropna(subset=["loo_r2"]).groupby("layer")["loo_r2"].mean()
    return int(per_layer.idxmax())


def held_out_predictions(cache: Any, entities: Entities, is_test: np.ndarray, layer: int, *,
                     alphas: Sequence[float] = DEFAULT_ALPHAS) -> pd.DataFrame:
    """The test entities' names, metadata, true and predicted targets at ``layer`` (``pred_<target>`` columns)."""
    X = _layer_matrix(cache, layer)
    fits = _fit_targets(X, entities, ~is_test, alphas)
    frame = pd.DataFrame({"name": entities.names[is_test], **{k: v[is_test] for k, v in entities.metadata.items()}})
    for name, (path, _) in fits.items():
        frame[name] = entities.targets[name][is_test]
        frame[f"pred_{name}"] = path.predict(X[is_test])[:, 0]
    return frame


def _blocks(entities: Entities, column: str, grid_degrees: float | None) -> np.ndarray:
    if column == "grid":
        if entities.kind != "space":
            raise InputError("block column 'grid' needs a space dataset (latitude and longitude).")
        if grid_degrees is None or grid_degrees <= 0:
            raise InputError("block column 'grid' needs grid_degrees > 0 (the cell size).")
        lat, lon = entities.targets["latitude"], entities.targets["longitude"]
        ok = entities.has_coordinates
        labels = np.full(len(entities), "", dtype=object)
        labels[ok] = [f"{np.floor(a / grid_degrees) * grid_degrees:.6g}°,{np.floor(o / grid_degrees) * grid_degrees:.6g}°"
                      for a, o in zip(lat[ok], lon[ok])]  # the cell's south-west corner
        return labels.astype(str)
    if column not in entities.metadata:
        raise InputError(f"no metadata column {column!r} in the {entities.dataset} dataset; it has: "
                         f"{', '.join(entities.metadata) or 'none'}{' (or grid)' if entities.kind == 'space' else ''}.")
    return entities.metadata[column]


def _usable(entities: Entities) -> np.ndarray:
    """Entities a hold-out can score: both coordinates for places, the main target for times."""
    if entities.kind == "space":
        return entities.has_coordinates
    return np.isfinite(entities.targets[entities.main_target])


def block_column(entities: Entities) -> tuple[str, float | None, str] | None:
    """The block hold-out's column for a dataset: ``(column, grid_degrees, label)``, or None when it has none.

    The paper's column (:data:`BLOCK_COLUMNS`) when at least half of the usable
    entities have a value; for places, cells of a latitude/longitude grid
    otherwise (the sae-probes samples rarely hold a place's country together
    with both coordinates).
    """
    column, grid = BLOCK_COLUMNS.get(entities.dataset, (None, None))
    usable = _usable(entities)
    if column in entities.metadata and (grid is None or (entities.metadata[column][usable] != "").mean() >= 0.5):
        return column, None, column
    if grid is not None and entities.kind == "space":
        return "grid", grid, f"grid {grid:g}°"
    return None


def block_holdout(cache: Any, entities: Entities, is_test: np.ndarray, layer: int, column: str, *,
                  grid_degrees: float | None = None, min_test: int = 5, max_blocks: int = 40,
                  max_share: float = 0.5, alphas: Sequence[float] = DEFAULT_ALPHAS,
                  predictions: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Proximity error of each block when held out, against its nominal value (Tables 4.3 and 4.4).

    Nominal: the probe trained on the default training split; the block's test
    entities' proximity errors among all test entities. Held out: probes
    trained on the training split without the block; the block's entities
    (train and test) are predicted with the other test entities, and their
    proximity errors averaged among that set. Places use both coordinates
    (entities with a latitude and a longitude), times the main target.

    Parameters
    ----------
    column : str
        A metadata column (country, state, borough, century, decade, entity_type, …) or ``"grid"``.
    grid_degrees : float, optional
        Cell size of ``"grid"`` blocks.
    min_test : int, default 5
        Blocks with fewer test entities (that have every target needed) are skipped.
    max_blocks : int, default 40
        The largest blocks only.
    max_share : float, default 0.5
        Blocks holding more than this share of the entities are skipped (the paper
        leaves out majority entity types: what would be left to train on is not the same task).
    predictions : bool, default False
        Also return every held-out block entity's predictions (what
        :func:`needle.spacetime.figures.block_holdout_map` draws).

    Returns
    -------
    table : DataFrame
        One row per block: ``block``, ``n_block``, ``n_test``, ``nominal``, ``held_out``.
    predictions : DataFrame, only with ``predictions=True``
        One row per entity of a block in ``table`` (its train and test entities):
        ``block``, ``row`` (the entity's index), ``name``, ``in_test``, the true
        targets (``latitude`` and ``longitude``, or the main target), ``nominal_<target>``
        (the probe of the default training split, which saw the block's training
        entities) and ``held_<target>`` (the probe trained without the block), and
        ``nominal_proximity`` / ``held_proximity`` (NaN for training entities, which
        have no nominal proximity error).
    """
    labels = _blocks(entities, column, grid_degrees)
    X = _layer_matrix(cache, layer)
    usable = _usable(entities)
    targets = ["latitude", "longitude"] if entities.kind == "space" else [entities.main_target]
    kind = entities.kind

    def predict(rows: np.ndarray, fits) -> np.ndarray:
        pred = np.column_stack([fits[t][0].predict(X[rows])[:, 0] for t in targets])
        if kind == "space":
            pred[:, 0] = np.clip(pred[:, 0], -90, 90)
        return pred

    def prox(rows: np.ndarray, pred: np.ndarray) -> np.ndarray:
        true = np.column_stack([entities.targets[t][rows] for t in targets])
        if kind == "space":
            return proximity_error(true, pred, kind="space")
        return proximity_error(true[:, 0], pred[:, 0], kind="time")

    train = ~is_test
    nominal_fits = {t: fit_ridge(X[train & np.isfinite(entities.targets[t])],
                                 entities.targets[t][train & np.isfinite(entities.targets[t])], alphas) for t in targets}
    test_rows = np.flatnonzero(is_test & usable)
    if test_rows.size < 2:
        raise InputError(f"{entities.dataset}: fewer than two test entities have {' and '.join(targets)}.")
    nominal = prox(test_rows, predict(test_rows, nominal_fits))
    values, counts = np.unique(labels[usable & (labels != "")], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    records, frames = [], []
    for value, count in zip(values[order], counts[order]):
        in_block = (labels == value) & usable
        block_test = np.isin(test_rows, np.flatnonzero(in_block))
        if block_test.sum() < min_test or count > max_share * usable.sum():
            continue
        fits = {}
        for t in targets:
            rows = train & ~(labels == value) & np.isfinite(entities.targets[t])
            fits[t] = fit_ridge(X[rows], entities.targets[t][rows], alphas)
        block_rows = np.flatnonzero(in_block)
        others = test_rows[~block_test]
        evaluated = np.concatenate([block_rows, others])
        held_pred = predict(evaluated, fits)
        held = prox(evaluated, held_pred)[: block_rows.size]
        records.append({"block": value, "n_block": int(block_rows.size), "n_test": int(block_test.sum()),
                        "nominal": float(nominal[block_test].mean()), "held_out": float(held.mean())})
        if predictions:
            frame = pd.DataFrame({"block": value, "row": block_rows, "name": entities.names[block_rows],
                                  "in_test": is_test[block_rows]})
            held_block = held_pred[: block_rows.size]
            for t, nom, out in zip(targets, predict(block_rows, nominal_fits).T, held_block.T):
                frame[t] = entities.targets[t][block_rows]
                frame[f"nominal_{t}"], frame[f"held_{t}"] = nom, out
            nominal_prox = np.full(block_rows.size, np.nan)
            nominal_prox[np.isin(block_rows, test_rows)] = nominal[block_test]  # both in row order
            frame["nominal_proximity"], frame["held_proximity"] = nominal_prox, held
            frames.append(frame)
        if len(records) >= max_blocks:
            break
    table = pd.DataFrame.from_records(records, columns=["block", "n_block", "n_test", "nominal", "held_out"])
    if not predictions:
        return table
    columns = ["block", "row", "name", "in_test", *[c for t in targets for c in (t, f"nominal_{t}", f"held_{t}")],
               "nominal_proximity", "held_proximity"]
    return table, (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns))
