"""Block hold-out predictions (what the block hold-out maps draw), checked against independent refits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from needle.report.space_time import read_block_predictions, space_time_sections, write_block_predictions
from needle.spacetime import block_column, block_holdout, entity_split, load_entities
from needle.spacetime.figures import BLOCKS_KEY, block_holdout_figure, shown_blocks
from needle.spacetime.metrics import proximity_error_bruteforce
from test_spacetime_analysis import FakeCache, _reference_predictions, _synthetic


def _years(n=200, d=10, seed=5):
    rng = np.random.default_rng(seed)
    year = rng.uniform(1000, 2000, n)
    X = (np.outer(year - 1500, rng.normal(size=d)) / 300 + rng.normal(size=(n, d))).astype(np.float32)
    century = np.array([f"{int(y // 100) + 1}th" for y in year], dtype=object)
    return FakeCache({0: X}, {"death_year": year}, {"century": list(century)}, kind="time"), year


def test_held_out_predictions_equal_a_refit_without_the_block():
    cache, lat, lon = _synthetic(seed=2)
    entities = load_entities(cache)
    is_test = entity_split(entities)
    table, pred = block_holdout(cache, entities, is_test, 1, "region", min_test=3, max_share=0.9, predictions=True)
    assert table.equals(block_holdout(cache, entities, is_test, 1, "region", min_test=3, max_share=0.9))
    X = np.asarray(cache.layer(1), np.float64)
    region, usable = entities.metadata["region"], entities.has_coordinates
    test_rows = np.flatnonzero(is_test & usable)
    assert set(pred.block) == set(table.block) and len(pred) == table.n_block.sum()
    for row in table.itertuples():
        part = pred[pred.block == row.block]
        rows = np.flatnonzero((region == row.block) & usable)
        assert part.row.tolist() == rows.tolist() and part.in_test.sum() == row.n_test
        assert part.in_test.tolist() == is_test[rows].tolist()
        for name, values in (("latitude", lat), ("longitude", entities.targets["longitude"])):
            has = np.isfinite(values)
            held = _reference_predictions(X, values, ~is_test & (region != row.block) & has, rows)
            nominal = _reference_predictions(X, values, ~is_test & has, rows)
            if name == "latitude":
                held, nominal = np.clip(held, -90, 90), np.clip(nominal, -90, 90)
            np.testing.assert_allclose(part[f"held_{name}"], held, atol=1e-8)
            np.testing.assert_allclose(part[f"nominal_{name}"], nominal, atol=1e-8)
            np.testing.assert_array_equal(part[name], values[rows])
        # The per-entity proximity errors are the table's, and the nominal ones the brute-force definition's.
        assert part.held_proximity.mean() == pytest.approx(row.held_out, abs=1e-12)
        assert part.nominal_proximity.isna().tolist() == (~is_test[rows]).tolist()
        assert part.nominal_proximity.mean() == pytest.approx(row.nominal, abs=1e-12)
        nominal_pred = np.c_[[_reference_predictions(X, v, ~is_test & np.isfinite(v), test_rows)
                              for v in (lat, entities.targets["longitude"])]].T
        nominal_pred[:, 0] = np.clip(nominal_pred[:, 0], -90, 90)
        brute = proximity_error_bruteforce(np.c_[lat[test_rows], lon[test_rows]], nominal_pred)
        expected = brute[np.isin(test_rows, rows)]
        np.testing.assert_allclose(part.nominal_proximity.dropna(), expected, atol=1e-12)


def test_time_blocks_equal_a_refit():
    cache, year = _years()
    entities = load_entities(cache)
    is_test = entity_split(entities)
    table, pred = block_holdout(cache, entities, is_test, 0, "century", min_test=3, predictions=True)
    X = np.asarray(cache.layer(0), np.float64)
    assert len(table) >= 5
    for block in table.block:
        part = pred[pred.block == block]
        held = _reference_predictions(X, year, ~is_test & (entities.metadata["century"] != block), part.row.to_numpy())
        np.testing.assert_allclose(part.held_death_year, held, atol=1e-7)
        assert {"death_year", "nominal_death_year"} <= set(part.columns) and "latitude" not in part


def _image_blocks(path) -> list[str]:
    return Image.open(path).info[BLOCKS_KEY].split("|")


def test_figures_draw_the_largest_blocks(tmp_path):
    cache, *_ = _synthetic(seed=2)
    entities = load_entities(cache)
    is_test = entity_split(entities)
    table, pred = block_holdout(cache, entities, is_test, 1, "grid", grid_degrees=40, min_test=2, predictions=True)
    assert len(table) >= 4
    counts = pred[pred.in_test].groupby("block").size()
    assert shown_blocks(pred, 3) == sorted(counts.index, key=lambda b: (-counts[b], b))[:3]
    path = block_holdout_figure(pred, tmp_path / "map.png", blocks=3)
    assert _image_blocks(path) == shown_blocks(pred, 3) and path.stat().st_size > 10_000
    assert len(_image_blocks(block_holdout_figure(pred, tmp_path / "all.png", blocks=99))) == len(table)
    times, _ = _years()
    t_entities = load_entities(times)
    _, t_pred = block_holdout(times, t_entities, entity_split(t_entities), 0, "century", min_test=3, predictions=True)
    path = block_holdout_figure(t_pred, tmp_path / "years.png", blocks=4)
    assert len(_image_blocks(path)) == 4


def test_block_column_falls_back_to_a_grid_for_sparse_countries():
    cache, *_ = _synthetic()
    entities = load_entities(cache)
    assert block_column(entities) is None  # a dataset of no known name has no default block
    entities.dataset = "world"
    entities.metadata["country"] = np.where(np.arange(len(entities)) % 3 == 0, "X", "")
    assert block_column(entities) == ("grid", 10.0, "grid 10°")
    entities.metadata["country"] = np.full(len(entities), "X")
    assert block_column(entities) == ("country", None, "country")


def test_report_and_scope_draw_the_block_holdout(tmp_path):
    from needle.scope.render import environment
    from needle.scope.space_time import space_time_page

    cache, *_ = _synthetic(seed=4)
    info = cache._dataset.extra["space_time"]
    info["dataset"], info["metadata"]["country"] = "world", info["metadata"]["region"]  # the world's country blocks
    entities = load_entities(cache)
    is_test = entity_split(entities)
    assert block_column(entities) == ("country", None, "country")
    table, pred = block_holdout(cache, entities, is_test, 1, "country", predictions=True)
    assert len(table) == 3
    results = tmp_path / "world.parquet"
    sidecar = write_block_predictions(pred, results, dataset="world", column="country", layer=1)
    assert sidecar.name == "world.space-time-blocks.parquet"
    back = read_block_predictions(results)
    assert len(back) == len(pred) and (back.layer == 1).all() and read_block_predictions(tmp_path / "x.parquet") is None
    rows = pd.DataFrame({"collection": ["space-time:world"] * 2, "feature": ["latitude"] * 2, "method": ["ridge"] * 2,
                         "layer": [0, 1], "k": [8, 8], "r2": [0.2, 0.5], "spearman": [0.3, 0.6], "n_test": [30, 30]})
    html = space_time_sections(rows, back)[0]["html"]
    assert "Block hold-out: world" in html and html.count("data:image/png;base64,") == 2
    assert space_time_sections(rows)[0]["html"].count("data:image/png;base64,") == 1
    meta = {"model_id": "m", "site": "hook_resid_post", "needle_version": "0", "results_name": "r.parquet",
            "dataset_hash": "0" * 12, "n_features": 2, "n_neurons": 0}
    page = space_time_page(environment(set()), cache, cache.dataset(), meta, tmp_path / "site", blocks=3)
    assert 'src="space-time/blocks.png"' in page and "Block hold-out (Table 4.3)" in page
    assert len(_image_blocks(tmp_path / "site" / "space-time" / "blocks.png")) == 3


def test_paired_r2_difference():
    from sklearn.metrics import r2_score

    from needle.spacetime import paired_r2_difference

    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    a, b = y + rng.normal(size=300), y + 0.5 * rng.normal(size=300)
    diff, low, high = paired_r2_difference(y, a, b)
    assert diff == pytest.approx(r2_score(y, b) - r2_score(y, a), abs=1e-12)
    assert 0 < low < diff < high
    assert paired_r2_difference(y, a, a) == (0.0, 0.0, 0.0)
    swapped = paired_r2_difference(y, b, a)
    assert swapped == pytest.approx((-diff, -high, -low), abs=1e-12)
    with pytest.raises(Exception, match="one shape"):
        paired_r2_difference(y, a[:10], b)
