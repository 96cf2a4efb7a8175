"""The space-time benchmarks' own checks, on data small enough for a test (no timings asserted)."""

from __future__ import annotations

import re

from benchmark_scripts import load_benchmark


def test_ridge_benchmark_reports_identical_alphas(capsys):
    load_benchmark("ridge.py").main(["--synthetic", "--n", "300", "--d", "20", "--layers", "2", "--targets", "2"])
    out = capsys.readouterr().out
    match = re.search(r"same chosen alpha in (\d+)/(\d+).*max \|ΔR²\| ([0-9.e+-]+)", out)
    assert match and match.group(1) == match.group(2) == "4" and float(match.group(3)) < 1e-6


def test_proximity_benchmark_agrees_with_the_matrix(capsys):
    load_benchmark("proximity.py").main(["--n", "400"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("400")]
    assert [r[1] for r in rows] == ["space", "time"]
    assert all(float(r[8]) == 0.0 for r in rows)  # max |Δ| between the two ways
