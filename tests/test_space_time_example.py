"""examples/space_time.py end to end on MiniLM, on a small sae-probes-shaped wheel built here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_space_time_dataset import make_wheel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "space_time.py"
CITIES = [("Paris", 48.86, 2.35, "France"), ("Lyon", 45.76, 4.84, "France"), ("Marseille", 43.30, 5.37, "France"),
          ("Tokyo", 35.68, 139.69, "Japan"), ("Osaka", 34.69, 135.50, "Japan"), ("Kyoto", 35.01, 135.77, "Japan"),
          ("Lima", -12.05, -77.04, "Peru"), ("Cusco", -13.53, -71.97, "Peru"), ("Arequipa", -16.41, -71.54, "Peru"),
          ("Nairobi", -1.29, 36.82, "Kenya"), ("Mombasa", -4.04, 39.67, "Kenya"), ("Kisumu", -0.09, 34.77, "Kenya"),
          ("Chicago", 41.88, -87.63, "USA"), ("Boston", 42.36, -71.06, "USA"), ("Denver", 39.74, -104.99, "USA"),
          ("Sydney", -33.87, 151.21, "Australia"), ("Perth", -31.95, 115.86, "Australia"),
          ("Hobart", -42.88, 147.33, "Australia"), ("Oslo", 59.91, 10.75, "Norway"), ("Bergen", 60.39, 5.32, "Norway"),
          ("Cairo", 30.04, 31.24, "Egypt"), ("Luxor", 25.69, 32.64, "Egypt"), ("Delhi", 28.61, 77.21, "India"),
          ("Mumbai", 19.08, 72.88, "India"), ("Chennai", 13.08, 80.27, "India"), ("Quito", -0.18, -78.47, "Ecuador"),
          ("Havana", 23.11, -82.37, "Cuba"), ("Dublin", 53.35, -6.26, "Ireland"), ("Cork", 51.90, -8.47, "Ireland"),
          ("Seoul", 37.57, 126.98, "Korea"), ("Busan", 35.18, 129.08, "Korea"), ("Hanoi", 21.03, 105.85, "Vietnam")]
PEOPLE = [("Cleopatra", -30), ("Julius Caesar", -44), ("Augustus", 14), ("Charlemagne", 814), ("Dante Alighieri", 1321),
          ("Geoffrey Chaucer", 1400), ("Joan of Arc", 1431), ("Leonardo da Vinci", 1519), ("Martin Luther", 1546),
          ("Michelangelo", 1564), ("William Shakespeare", 1616), ("Galileo Galilei", 1642), ("Isaac Newton", 1727),
          ("Johann Sebastian Bach", 1750), ("Voltaire", 1778), ("Wolfgang Amadeus Mozart", 1791),
          ("George Washington", 1799), ("Napoleon", 1821), ("Ludwig van Beethoven", 1827), ("Charles Darwin", 1882),
          ("Vincent van Gogh", 1890), ("Queen Victoria", 1901), ("Mark Twain", 1910), ("Sigmund Freud", 1939),
          ("Albert Einstein", 1955), ("Winston Churchill", 1965), ("Pablo Picasso", 1973), ("Elvis Presley", 1977),
          ("John Lennon", 1980), ("Carl Sagan", 1996)]


def _frame(rows):
    return pd.DataFrame(rows, columns=["prompt", "target"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    path = tmp_path_factory.mktemp("wheel") / "sae_probes-0.4.2-py3-none-any.whl"
    return make_wheel(path, {
        "18_world_latitude": _frame([(n, a) for n, a, _, _ in CITIES]),
        "19_world_longitude": _frame([(n, o) for n, _, o, _ in CITIES]),
        "17_world_country": _frame([(n, c) for n, _, _, c in CITIES]),
        "20_world_pageviews": _frame([("Paris", 1)]),
        "3_hist_fig_deathyear": _frame(PEOPLE), "2_hist_fig_birthyear": _frame([(n, y - 60) for n, y in PEOPLE[::2]]),
        "5_hist_fig_ismale": _frame([("Cleopatra", 0)]), "7_hist_fig_ispolitician": _frame([("Napoleon", 1)]),
    })


def test_example_runs_and_reports_what_it_computed(wheel, tmp_path):
    spec = importlib.util.spec_from_file_location("space_time_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    work = tmp_path / "work"
    example.main(["--work", str(work), "--sae-probes", str(wheel), "--datasets", "world,historical",
                  "--neurons", "world", "--block-min-test", "2", "--quiet"])
    summary = json.loads((work / "summary.json").read_text())
    assert set(summary) == {"world", "historical"}
    for name in ("world", "historical"):
        scores = pd.read_csv(work / f"scores-{name}.csv")
        layer = summary[name]["layer"]
        # The summary's R² is the scores table's at the layer of the best training leave-one-out R².
        at = scores[(scores.layer == layer) & scores.r2.notna()]
        assert [r["r2"] for r in summary[name]["r2"]] == pytest.approx(at.r2.tolist())
        per_layer = scores.dropna(subset=["loo_r2"]).groupby("layer").loo_r2.mean()
        assert layer == per_layer.idxmax()
    assert (work / "map-world.png").stat().st_size > 10_000 and (work / "years-historical.png").exists()
    assert (work / "r2-by-layer.png").exists()
    neurons = summary["world"]["neurons"]
    assert [row["condition"] for row in neurons["ablation"]][:2] == ["none", "aligned"]
    assert neurons["ablation"][0]["mean_abs_change"] == 0.0
    results = pd.read_parquet(work / "results-world.parquet")
    assert {"ridge", "pca", "f_stat", "mlp"} <= set(results.method)
    assert np.isfinite(results.r2).all()
    # The MLP neurons of every layer, scored on the residual run's entity split.
    site = summary["world"]["neuron_site"]
    neuron_scores = pd.read_csv(work / "scores-world-neurons.csv")
    assert site["site"] == "mlp.hook_post" and sorted(neuron_scores.layer.unique()) == sorted(scores.layer.unique())
    assert site["layer"] == neuron_scores.dropna(subset=["loo_r2"]).groupby("layer").loo_r2.mean().idxmax()
    at = neuron_scores[(neuron_scores.layer == site["layer"]) & neuron_scores.r2.notna()]
    assert [r["r2"] for r in site["r2"]] == pytest.approx(at.r2.tolist())
    assert [r["n_test"] for r in site["r2"]] == [r["n_test"] for r in summary["world"]["r2"]]  # the same test entities
    neuron_results = pd.read_parquet(work / "results-world-neurons.parquet")
    assert set(neuron_results.method) == {"ridge", "f_stat"} and (neuron_results.site == "mlp.hook_post").all()
    one = neuron_results[(neuron_results.method == "f_stat") & (neuron_results.k == 1) & (neuron_results.layer == site["layer"])]
    assert {f: v["neuron"] for f, v in site["best_single_neuron"].items()} == {r.feature: r.neurons[0] for r in one.itertuples()}
    resid_r2 = {r["target"]: r["r2"] for r in summary["world"]["r2"]}
    for row in site["paired"]:  # the paired difference's point estimate is the two sites' R² apart
        assert row["difference"] == pytest.approx(next(r["r2"] for r in site["r2"] if r["target"] == row["target"])
                                                  - resid_r2[row["target"]], abs=1e-9)
    text = (work / "summary.md").read_text()
    assert "MLP neurons (mlp.hook_post, 1536 per layer)" in text
    # The block hold-out: its figure, the sidecar the report draws it from, and the report.
    from PIL import Image

    from needle.spacetime.figures import BLOCKS_KEY

    drawn = Image.open(work / "blocks-historical.png").info[BLOCKS_KEY].split("|")
    assert len(drawn) == min(8, summary["historical"]["block"]["blocks"]) > 0
    assert "Block hold-out: historical" in (work / "report-historical.html").read_text()
    # A second run resumes: nothing is rebuilt, the numbers are the same.
    before = (work / "summary.json").read_text()
    example.main(["--work", str(work), "--sae-probes", str(wheel), "--datasets", "world,historical",
                  "--neurons", "world", "--block-min-test", "2", "--quiet"])
    assert (work / "summary.json").read_text() == before
