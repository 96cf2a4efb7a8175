"""Chapter 4 analyses on a synthetic cache, recomputed independently with scikit-learn and brute force."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from needle.probing.ridge import DEFAULT_ALPHAS
from needle.report.space_time import space_time_sections
from needle.spacetime import block_holdout, entity_split, held_out_predictions, layer_scores, load_entities
from needle.spacetime.metrics import proximity_error_bruteforce


class FakeCache:
    """What the analyses read of an ActivationCache: layers, rows, features, groups, the dataset."""

    def __init__(self, layers, targets, metadata, kind="space"):
        n = len(next(iter(layers.values())))
        self._layers, self._targets = layers, targets
        self.layers = list(layers)
        self.rows = {"sequence": np.arange(n), "start": np.zeros(n, np.int64)}
        self.row_groups = np.array([f"g{i}" for i in range(n)])
        self.feature_names = list(targets)
        self._dataset = SimpleNamespace(extra={"space_time": {
            "dataset": "synthetic", "kind": kind, "names": [f"e{i}" for i in range(n)], "metadata": metadata}})

    def layer(self, layer):
        return self._layers[layer]

    def feature(self, name):
        values = self._targets[name]
        rows = np.flatnonzero(np.isfinite(values))
        return rows, values[rows]

    def feature_split(self, name):
        return None

    def dataset(self):
        return self._dataset


def _synthetic(n=240, d=12, seed=0):
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(-60, 60, n), rng.uniform(-150, 150, n)
    signal = np.c_[lat, lon] @ rng.normal(size=(2, d)) / 50
    layers = {0: (rng.normal(size=(n, d)) * 3).astype(np.float32),
              1: (signal + rng.normal(size=(n, d))).astype(np.float32)}
    lon_missing = lon.copy()
    lon_missing[:10] = np.nan  # some entities lack a longitude, as in the sae-probes samples
    region = np.where(lat > 20, "north", np.where(lat < -20, "south", "middle")).astype(object)
    region[::7] = ""
    return FakeCache(layers, {"latitude": lat, "longitude": lon_missing}, {"region": list(region)}), lat, lon


def _reference_predictions(X, y, train, test):
    scaler = StandardScaler().fit(X[train])
    model = RidgeCV(alphas=DEFAULT_ALPHAS).fit(scaler.transform(X[train]), y[train])
    return model.predict(scaler.transform(X[test]))


def test_layer_scores_match_scikit_learn():
    cache, lat, lon = _synthetic()
    entities = load_entities(cache)
    is_test = entity_split(entities, seed=1)
    assert entity_split(entities, seed=1).tolist() == is_test.tolist() and 0.25 < is_test.mean() < 0.35
    scores = layer_scores(cache, entities, is_test, n_boot=50)
    X = np.asarray(cache.layer(1), np.float64)
    for name, values in (("latitude", lat), ("longitude", entities.targets["longitude"])):
        has = np.isfinite(values)
        pred = _reference_predictions(X, values, ~is_test & has, is_test & has)
        y = values[is_test & has]
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        row = scores[(scores.layer == 1) & (scores.target == name)].iloc[0]
        assert row.r2 == pytest.approx(r2, abs=1e-9)
        assert row.r2_low <= row.r2 <= row.r2_high and row.n_test == (is_test & has).sum()
    # The layer with signal is better, and so is its position error.
    position = scores[scores.target == "position"].set_index("layer")
    assert position.loc[1, "proximity"] < position.loc[0, "proximity"]
    assert position.loc[1, "median_km"] < position.loc[0, "median_km"]
    frame = held_out_predictions(cache, entities, is_test, 1)
    assert len(frame) == is_test.sum() and {"pred_latitude", "pred_longitude", "region"} <= set(frame.columns)


def test_block_holdout_matches_the_definition():
    cache, lat, lon = _synthetic(seed=2)
    entities = load_entities(cache)
    is_test = entity_split(entities)
    table = block_holdout(cache, entities, is_test, 1, "region", min_test=3, max_share=0.9)
    assert set(table.block) <= {"north", "south", "middle"} and len(table) >= 2
    X = np.asarray(cache.layer(1), np.float64)
    usable = entities.has_coordinates
    region = entities.metadata["region"]
    test_rows = np.flatnonzero(is_test & usable)
    for row in table.itertuples():
        held = region == row.block
        train = ~is_test & ~held
        block_rows = np.flatnonzero(held & usable)
        evaluated = np.concatenate([block_rows, test_rows[~np.isin(test_rows, block_rows)]])
        pred = np.c_[[_reference_predictions(X, v, train & np.isfinite(v), evaluated)
                      for v in (lat, entities.targets["longitude"])]].T
        pred[:, 0] = np.clip(pred[:, 0], -90, 90)
        true = np.c_[lat[evaluated], lon[evaluated]]
        expected = proximity_error_bruteforce(true, pred)[: block_rows.size].mean()
        assert row.held_out == pytest.approx(expected, abs=1e-12)
        assert row.n_block == block_rows.size


def test_grid_blocks_and_bad_columns():
    cache, *_ = _synthetic(seed=3)
    entities = load_entities(cache)
    table = block_holdout(cache, entities, entity_split(entities), 1, "grid", grid_degrees=60, min_test=3)
    assert len(table) and table.block.str.contains(",").all()
    with pytest.raises(Exception, match="no metadata column"):
        block_holdout(cache, entities, entity_split(entities), 1, "country")


def test_report_section_only_for_space_time_rows():
    rows = pd.DataFrame({"collection": ["space-time:world"] * 4 + ["pos"], "feature": ["latitude"] * 4 + ["NOUN"],
                         "method": ["ridge", "ridge", "pca", "mlp", "mean_diff"], "layer": [0, 1, 1, 1, 0],
                         "k": [8, 8, 2, 8, 1], "r2": [0.2, 0.5, 0.1, 0.45, np.nan], "spearman": [0.3, 0.6, 0.2, 0.5, np.nan],
                         "n_test": [30] * 5})
    sections = space_time_sections(rows)
    assert len(sections) == 1 and "data:image/png;base64," in sections[0]["html"]
    assert "0.450" in sections[0]["html"] and "0.500" in sections[0]["html"]  # MLP next to the ridge at its layer
    assert space_time_sections(rows[rows.collection == "pos"]) == []


def test_scope_page_draws_the_map(tmp_path):
    from needle.scope.render import environment
    from needle.scope.space_time import space_time_page

    cache, *_ = _synthetic(seed=4)
    meta = {"model_id": "m", "site": "hook_resid_post", "needle_version": "0", "results_name": "r.parquet",
            "dataset_hash": "0" * 12, "n_features": 2, "n_neurons": 0}
    html = space_time_page(environment(set()), cache, cache.dataset(), meta, tmp_path)
    assert 'src="space-time/map.png"' in html and "R² by layer" in html
    assert (tmp_path / "space-time" / "map.png").stat().st_size > 5_000
    assert space_time_page(environment(set()), cache, SimpleNamespace(extra={}), meta, tmp_path) is None
