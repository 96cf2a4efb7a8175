"""Properties of the report's figures measured on the rendered matplotlib figures: labels that do not overlap,
heatmap cells that carry their values, k ticks on every panel, by-layer lines that break at unprobed layers, and
the report's links into a scope site."""

from __future__ import annotations

import itertools
import json
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from needle.report import figures, write_report
from task_tables import task_results


def binary_results(n_features: int, *, layers=(0, 1, 2), ks=(1, 2, 4, 8), seed: int = 0) -> pd.DataFrame:
    """A binary results table of ``n_features`` features with random precision and recall (clustered, so that
    naive labels collide), in the schema of :func:`task_tables.task_results`."""
    template = task_results()
    template = template[template["task"] == "binary"].iloc[0].to_dict()
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_features):
        collection = f"coll{f % 3}"
        centre = rng.uniform(0.55, 0.9, size=2)
        for layer in layers:
            for method in ("mean_diff", "f_stat"):
                for k in ks:
                    precision, recall = np.clip(centre + rng.normal(0, 0.03, size=2) + 0.01 * np.log2(k), 0, 1)
                    f1 = 2 * precision * recall / (precision + recall)
                    rows.append({**template, "feature": f"feature_{f:02d}", "collection": collection,
                                 "layer": layer, "method": method, "k": k,
                                 "neurons": np.arange(layer, layer + k, dtype=np.int64),
                                 "coef": np.linspace(-1, 1, k), "precision": precision, "recall": recall, "f1": f1})
    return pd.DataFrame(rows)


def _boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def test_scatter_labels_never_overlap_with_66_features():
    results = binary_results(66)
    fig, points = figures.precision_recall_figure(results)
    ax = fig.axes[0]
    names = {p.feature for p in points}
    labels = [t for t in ax.texts if t.get_text() in names]
    assert len(points) == 66 and 3 <= len(labels) <= figures.MAX_SCATTER_LABELS
    assert {t.get_text() for t in labels} == {p.feature for p in points if p.labelled}
    boxes = _boxes(fig, labels)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert not any(box.overlaps(legend) for box in boxes)
    # nor does a label cover another feature's point
    by_name = {p.feature: p for p in points}
    for text, box in zip(labels, boxes):
        for p in points:
            if p.feature != text.get_text():
                x, y = ax.transData.transform((p.recall, p.precision))
                assert not box.contains(x, y), (text.get_text(), p.feature)
    assert by_name
    # labels go to the best features first: no unlabelled feature beats every labelled one
    best = max(points, key=lambda p: p.f1)
    assert best.labelled
    # the points' image fractions land on the plotted points in the PNG's pixel grid
    width, height = fig.canvas.get_width_height()
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) and
                              c.get_offsets().shape[1] == 2])
    for p in points[:5]:
        px, py = ax.transData.transform((p.recall, p.precision))
        assert (p.x * width, (1 - p.y) * height) == pytest.approx((px, py))
        assert np.isclose(offsets, [p.recall, p.precision]).all(axis=1).any()


def test_heatmap_cells_carry_their_values_and_every_panel_its_k_ticks():
    results = task_results()
    fig = figures.layer_k_heatmaps_figure(results, "mean_diff", columns=2)
    scored = results[results["method"] == "mean_diff"].copy()
    panels = [ax for ax in fig.axes if ax.images]
    features = sorted(scored["feature"].unique())
    assert len(panels) == len(features)
    renderer = fig.canvas.get_renderer()
    for ax in panels:
        feature = ax.get_title().split(" (")[0]
        part = scored[scored["feature"] == feature]
        metric = {"binary": "f1", "multiclass": "f1_macro", "regression": "r2"}[part["task"].iloc[0]]
        grid = part.pivot_table(index="layer", columns="k", values=metric, aggfunc="max")
        shown = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        expected = {(r, c): figures._cell_text(v) for (r, c), v in np.ndenumerate(grid.to_numpy()) if np.isfinite(v)}
        assert shown == expected
        for text in shown.values():  # the number, written short
            assert abs(float(text) - float(text)) == 0 and len(text) <= 4
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == [str(k) for k in grid.columns]
    # a panel's tick labels never run into the title of the panel below it
    titles = [ax.title.get_window_extent(renderer) for ax in panels]
    ticks = [box for ax in panels for box in _boxes(fig, ax.get_xticklabels()) + [ax.xaxis.label.get_window_extent(
        renderer)]]
    assert not any(t.overlaps(b) for t in titles for b in ticks)


def test_heatmaps_leave_unprobed_layers_blank():
    results = binary_results(2, layers=(0, 2, 3), ks=(1, 2))
    fig = figures.layer_k_heatmaps_figure(results, "mean_diff")
    for ax in (a for a in fig.axes if a.images):
        values = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2", "3"]
        assert np.isnan(values[1]).all() and np.isfinite(values[[0, 2, 3]]).all()
        assert {round(t.get_position()[1]) for t in ax.texts} == {0, 2, 3}


def test_wide_heatmaps_fit_the_report_and_their_ticks_do_not_collide():
    ks = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 128)
    fig = figures.layer_k_heatmaps_figure(binary_results(3, layers=(0, 1), ks=ks), "mean_diff")
    assert fig.get_size_inches()[0] <= figures.MAX_FIGURE_WIDTH
    for ax in (a for a in fig.axes if a.images):
        boxes = [b for b in _boxes(fig, ax.get_xticklabels())]
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in ks]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
        cells = _boxes(fig, ax.texts)  # and no cell's number runs into its neighbour's
        assert not any(a.overlaps(b) for a, b in itertools.combinations(cells, 2))


def test_cell_text_rounds_like_the_value():
    assert [figures._cell_text(v) for v in (0.934, 1.0, 0.0, -0.414, 0.999)] == [".93", "1.0", ".00", "-.41", "1.0"]


def test_by_layer_lines_break_at_unprobed_layers():
    results = binary_results(2, layers=(0, 2, 5), ks=(1, 2))
    fig = figures.k1_by_layer_figure(results)
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if line.get_label() in ("mean diff", "f stat")]
        assert len(lines) == 2
        for line in lines:
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            assert x.tolist() == [0, 1, 2, 3, 4, 5]
            assert np.isnan(y[[1, 3, 4]]).all() and np.isfinite(y[[0, 2, 5]]).all()
            assert line.get_marker() == "o"  # the isolated layer 5 still shows
            feature, method = ax.get_title(), line.get_label().replace(" ", "_")
            rows = results[(results["feature"] == feature) & (results["method"] == method) & (results["k"] == 1)]
            np.testing.assert_allclose(y[[0, 2, 5]], rows.groupby("layer")["f1"].max().to_numpy())


def test_report_links_into_the_site_and_names_every_point_on_hover(tmp_path):
    results = binary_results(4, ks=(1, 2))
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text(json.dumps({"format": "needle.ScopeSite", "neurons": ["L1.N1"]}))
    results.to_parquet(tmp_path / "results.parquet")
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    write_report(tmp_path / "results.parquet", out, site=site)
    html = out.read_text()
    points = re.findall(r'<a class="pt[^"]*" href="([^"]+)" style="left:([\d.]+)%;top:([\d.]+)%" title="([^"]+)"',
                        html)
    assert len(points) == 4
    assert {unescape(t).split(" (")[0] for _, _, _, t in points} == set(results["feature"])
    for href, left, top, _ in points:
        assert href.startswith("../site/features/") and 0 < float(left) < 100 and 0 < float(top) < 100
    table_links = set(re.findall(r'<td><a href="(\.\./site/features/[^"]+)">feature_\d+</a></td>', html))
    assert table_links == {href for href, *_ in points}
    # a best single neuron with a page links to it; the others are plain numbers
    summary = re.findall(r'href="\.\./site/(neurons/[^"]+)"', html)
    assert set(summary) <= {"neurons/L1/L1.N1.html"}
    with pytest.raises(Exception, match="not a site"):
        write_report(tmp_path / "results.parquet", out, site=tmp_path)
    # without a site: hover targets, no links
    from needle.report.html import _scatter_points

    _, found = figures.precision_recall_figure(results)
    assert all(p["href"] is None and p["title"] for p in _scatter_points(found, None))
