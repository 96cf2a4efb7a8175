"""benchmarks/sae_probes.py: its sae-probes reimplementation and a run on planted features (no timings asserted)."""

from __future__ import annotations

import re

import numpy as np

from benchmark_scripts import load_benchmark


def test_mean_act_normalization_divides_by_the_mean_of_non_zero_magnitudes():
    bench = load_benchmark("sae_probes.py")
    X = np.array([[0.0, 2.0, 0.0], [4.0, -2.0, 0.0], [2.0, 0.0, 0.0]])
    # Column 0: non-zero |x| are 4 and 2 → mean 3; column 1: 2 and 2 → 2; column 2: all zero → divisor 1e-6.
    expected = X / (np.array([6 / (2 + 1e-6), 4 / (2 + 1e-6), 0.0]) + 1e-6)
    np.testing.assert_allclose(bench.mean_act_normalization(X), expected)
    y = np.array([1, 0, 0])
    # Normalised mean differences: column 0 |0 − 1| = 1, column 1 |1 − (−0.5)| = 1.5, column 2 0.
    assert bench.sae_probes_ranking(X, y).tolist() == [1, 0, 2]


def test_planted_features_both_sides_same_splits(capsys):
    load_benchmark("sae_probes.py").main(["--synthetic", "--n-datasets", "3", "--max-rows", "200", "--ks", "1,2"])
    out = capsys.readouterr().out
    assert "identical splits: True" in out
    rows = {int(m.group(1)): [float(v) for v in re.findall(r"(\d\.\d{3}) ±", m.group(2))]
            for m in re.finditer(r"^\s*(\d+)\s+(.*)$", out, flags=re.M) if "±" in m.group(2)}
    assert sorted(rows) == [1, 2] and len(rows[2]) == 5
    assert min(rows[2]) > 0.95  # two planted neurons: every side finds them
