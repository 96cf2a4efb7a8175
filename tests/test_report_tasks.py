"""The report on results of every probing task (binary, multiclass, regression) and on old tables without ``task``."""

from __future__ import annotations

import base64
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from needle.report import build_report, figures
from needle.report._tasks import primary_metric, summary_by_task, task_of, with_score
from task_tables import old_schema, task_results

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results():
    return task_results()


def _tables(html: str) -> list[pd.DataFrame]:
    """The HTML tables of a page as frames of strings (header row as columns)."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Tables()
    parser.feed(html)
    return [pd.DataFrame(rows[1:], columns=rows[0]) for rows in parser.tables]


def test_tasks_and_primary_metrics(results):
    assert [primary_metric(t) for t in ("binary", "multiclass", "regression")] == ["f1", "f1_macro", "r2"]
    with pytest.raises(ValueError, match="unknown probing task"):
        primary_metric("ranking")
    old = old_schema(results)
    assert set(task_of(old)) == {"binary"} and "task" not in old
    scored = with_score(results)
    for task, metric in (("binary", "f1"), ("multiclass", "f1_macro"), ("regression", "r2")):
        rows = scored[scored["task"] == task]
        np.testing.assert_array_equal(rows["score"], rows[metric])
    # a null task (a row appended by an older writer) counts as binary
    assert task_of(results.assign(task=[None] * len(results))).eq("binary").all()


def test_summary_per_task_picks_layers_by_the_primary_metric(results):
    summaries = summary_by_task(results)
    assert list(summaries) == ["binary", "multiclass", "regression"]
    regression = summaries["regression"].set_index("feature")
    assert {"r2_k1", "r2_k8", "r2_dense", "spearman_k8", "neuron_r2"} <= set(regression.columns)
    assert not {"f1_k1", "neuron_precision"} & set(regression.columns)
    assert regression.loc["line_position", "best_layer"] == 1 and regression.loc["indent_width", "best_layer"] == 0
    best = results[(results["feature"] == "line_position") & (results["layer"] == 1) & (results["k"] == 8)
                   & (results["method"] == "mean_diff")].iloc[0]
    assert regression.loc["line_position", "r2_k8"] == pytest.approx(best["r2"])
    assert regression.loc["line_position", "spearman_k8"] == pytest.approx(best["spearman"])
    multiclass = summaries["multiclass"].set_index("feature")
    assert multiclass.loc["bracket_depth", "best_layer"] == 2 and "accuracy_k8" in multiclass
    # binary rows summarise exactly as the probing summary does, with or without the task column
    from needle.probing import summarize

    binary = summaries["binary"].reset_index(drop=True)
    # summarize's binary columns, under their names (its uncertainty columns score_k1_lo … named after F1 here)
    expected = summarize(old_schema(results)).rename(
        columns=lambda c: c.replace("score", "f1", 1) if c.endswith(("_lo", "_hi", "_sd")) else c)[list(binary.columns)]
    pd.testing.assert_frame_equal(binary, expected)
    pd.testing.assert_frame_equal(summary_by_task(old_schema(results))["binary"], expected)


def test_figures_are_pngs_for_every_task(results):
    for png in (figures.f1_vs_k_by_collection(results), figures.layer_k_heatmaps(results, "mean_diff"),
                figures.k1_by_layer(results), figures.precision_recall_at_k1(results)):
        assert png[:8] == PNG
    from needle.errors import InputError

    with pytest.raises(InputError, match="binary features only"):
        figures.precision_recall_at_k1(results[results["task"] == "regression"])


def test_r2_axis_is_clipped_not_the_data(results, monkeypatch):
    """The axis stops at R2_FLOOR while every value is still drawn: below the floor as an edge marker."""
    drawn = []
    monkeypatch.setattr(figures, "_png", lambda fig: drawn.append(fig) or PNG)
    figures.k1_by_layer(results[results["feature"].isin(["indent_width", "feat_a"])])
    fig = drawn[0]
    by_label = {ax.get_ylabel(): ax for ax in fig.axes}
    assert set(by_label) == {"F1 at k=1", "R² at k=1"}
    assert by_label["F1 at k=1"].get_ylim() == pytest.approx((0, 1.02))
    r2 = by_label["R² at k=1"]
    low = figures.R2_FLOOR - 0.02
    assert r2.get_ylim() == pytest.approx((low, 1.02))
    # every layer's R² is on a line, unchanged (layer 2 is at −0.8, under the axis) ...
    expected = results[(results["feature"] == "indent_width") & (results["k"] == 1)
                       & (results["method"] == "mean_diff")]
    line = next(line for line in r2.get_lines() if line.get_label() == "mean diff")
    np.testing.assert_allclose(line.get_ydata(), expected.sort_values("layer")["r2"])
    # ... and marked on the bottom edge: one marker per method at layer 2
    markers = np.concatenate([c.get_offsets() for c in r2.collections])
    assert markers.tolist() == [[2.0, pytest.approx(low)], [2.0, pytest.approx(low)]]


def test_report_names_each_task_metric(results):
    html = build_report(results)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4 and all(base64.b64decode(i)[:8] == PNG for i in images)
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    for phrase in ("F1 / macro-F1 / R² against k", "scored by macro-F1", "scored by R²", "Spearman",
                   "R² axes stop 0.5 below zero", "Binary features only"):
        assert phrase in text, phrase
    tables = _tables(html)
    assert len(tables) == 3
    binary, multiclass, regression = tables
    assert "neuron_precision" in binary and set(binary["feature"]) == {"feat_a", "feat_b"}
    assert {"f1_macro_k8", "accuracy_k8"} <= set(multiclass) and list(multiclass["feature"]) == ["bracket_depth"]
    assert {"r2_k1", "r2_k8", "spearman_k8"} <= set(regression) and "f1_k8" not in regression
    assert (float(regression.set_index("feature").loc["line_position", "r2_k8"])
            == pytest.approx(summary_by_task(results)["regression"].set_index("feature").loc["line_position", "r2_k8"],
                             abs=1e-3))


def test_report_of_one_non_binary_task_has_no_precision_recall(results):
    html = build_report(results[results["task"] == "regression"])
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    assert "precision and recall</h2>" not in html and "R² against k" in html
    assert "neuron_precision" not in html


def test_old_schema_report_is_the_binary_report(results):
    old, new = build_report(old_schema(results)), build_report(results[results["task"] == "binary"])
    strip = lambda html: re.sub(r'base64,[^"]+', "", html)  # noqa: E731 (PNG bytes may differ by a timestamp)
    assert strip(old) == strip(new)
    assert "F1 against k" in old and "macro-F1" not in old and "R²" not in old


def test_r2_floor_follows_the_best_probe():
    from needle.report._tasks import R2_FLOOR, r2_floor

    assert r2_floor([0.8, 0.1, -3.0]) == R2_FLOOR  # good probes: stop half a unit below zero
    assert r2_floor([0.8, -0.2]) == -0.2  # nothing to cut: the lowest value
    assert r2_floor([-1.1, -1.4, -5.0]) == pytest.approx(-1.6)  # all bad: still show the best of them in relief
    assert r2_floor([np.nan]) == R2_FLOOR
