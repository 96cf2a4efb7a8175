"""The HTML report and the probe/results/report commands, on a sweep of planted features."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from needle.probing import ArraySource, sweep
from needle.report import build_report, write_report


@pytest.fixture(scope="module")
def results_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, d = 600, 40
    layers = {layer: rng.normal(size=(n, d)).astype(np.float16) for layer in (0, 1)}
    y_a = (layers[1][:, 3] > 0.5).astype(np.int8)
    y_b = (layers[0][:, 7] + layers[0][:, 9] > 0.8).astype(np.int8)
    source = ArraySource(
        layers,
        {"feat_a": (np.arange(n), y_a), "feat_b": (np.arange(n), y_b)},
        groups=np.repeat(np.arange(60), 10).astype(str),
        manifest={"model_id": "toy", "dataset_hash": "abc123", "site": "post"},
        feature_info={"feat_a": {"collection": "one", "level": "token"},
                      "feat_b": {"collection": "two", "level": "token"}},
    )
    path = tmp_path_factory.mktemp("sweep") / "results.parquet"
    sweep(source, out=path, methods=["mean_diff", "f_stat"], ks=[1, 2, 4], prefilter=None, progress=False)
    return path


def test_report_has_every_figure_and_the_summary(results_path):
    from needle.probing import load_results

    html = build_report(load_results(results_path))
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4
    for image in images:
        assert base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("feat_a", "feat_b", "neuron_precision", "neuron_recall", "F1 against k", "toy"):
        assert text in html
    # the planted neuron of feat_a (layer 1, neuron 3) is the best single neuron in the summary table
    row = re.search(r"<td>feat_a</td>(.*?)</tr>", html, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[0] == "1" and "3" in cells  # best_layer, and the neuron id appears


def test_report_refuses_what_it_cannot_draw(results_path, tmp_path):
    import pandas as pd

    from needle.errors import InputError
    from needle.probing import load_results

    with pytest.raises(InputError, match="empty"):
        build_report(load_results(results_path).iloc[:0])
    with pytest.raises(InputError, match="lacks columns"):
        build_report(pd.DataFrame({"feature": ["x"]}))
    with pytest.raises(InputError, match="heatmap method"):
        write_report(results_path, tmp_path / "r.html", heatmap_method="osp")
    assert not (tmp_path / "r.html").exists()


def test_results_and_report_commands(results_path, tmp_path, monkeypatch, capsys):
    from test_cli import run_main

    code, _ = run_main(monkeypatch, capsys, "report", str(results_path), "--out", str(tmp_path / "r.html"))
    assert code == 0 and (tmp_path / "r.html").stat().st_size > 10_000
    monkeypatch.setattr("sys.argv", ["needle", "results", "summary", str(results_path)])
    from needle.cli import main

    main()
    out = capsys.readouterr().out
    assert "feat_a" in out and "model_id=toy" in out and "neuron_precision" in out
