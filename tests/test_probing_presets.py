"""``--preset saebench``: SAEBench's sparse-probing setting (train 4,000 / test 1,000, mean_diff, k 1, 2, 5)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from needle.cli import app
from needle.errors import InputError
from needle.probing import ArraySource
from needle.probing.presets import CappedSplitSource, get_preset
from needle.probing.splits import derive_seed, group_train_test_split

runner = CliRunner()


def _source(n_big: int = 6000, n_small: int = 300, width: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_big + n_small
    X = rng.normal(size=(n, width)).astype(np.float32)
    big_y = (rng.random(n_big) < 0.4).astype(np.int8)  # 40 % positives
    small_y = (np.arange(n_small) % 2).astype(np.int8)
    X[:n_big][big_y == 1, 3] += 2.0
    X[n_big:][small_y == 1, 5] += 2.0
    groups = np.arange(n) // 3  # three rows per document
    features = {"big": (np.arange(n_big), big_y), "small": (np.arange(n_big, n), small_y)}
    return ArraySource({0: X, 1: X[:, ::-1].copy()}, features, groups=groups)


def test_saebench_caps_each_side_stratified_within_the_group_split():
    source = _source()
    capped = get_preset("saebench").source(source, seed=3)
    rows, y = capped.feature("big")
    is_test = capped.feature_split("big")
    assert (int((~is_test).sum()), int(is_test.sum())) == (4000, 1000)
    # The caps sample each side of the very split the sweep would draw (test share 0.2, the sweep's seed).
    full_rows, full_y = source.feature("big")
    full_test = group_train_test_split(source.row_groups[full_rows], full_y, test_size=0.2,
                                       seed=derive_seed(3, "split", "big"))
    was_test = dict(zip(full_rows.tolist(), full_test.tolist()))
    assert all(was_test[r] == t for r, t in zip(rows.tolist(), is_test.tolist()))
    # Class shares of each side kept to the example (largest remainders).
    for side, cap in ((~full_test, 4000), (full_test, 1000)):
        positives = full_y[side].sum()
        share = positives * cap / side.sum()
        kept = y[is_test == (cap == 1000)].sum()
        assert kept in (np.floor(share), np.ceil(share))
    groups = source.row_groups[rows]
    assert not set(groups[is_test]) & set(groups[~is_test])
    # Deterministic, and a feature under the caps keeps every example with the plain group split.
    again = CappedSplitSource(source, n_train=4000, n_test=1000, test_size=0.2, seed=3)
    assert np.array_equal(again.feature("big")[0], rows)
    small_rows, small_y = capped.feature("small")
    assert np.array_equal(small_rows, source.feature("small")[0])
    expected = group_train_test_split(source.row_groups[small_rows], small_y, test_size=0.2,
                                      seed=derive_seed(3, "split", "small"))
    assert np.array_equal(capped.feature_split("small"), expected)


def test_bad_preset_and_caps_are_refused():
    with pytest.raises(InputError, match="unknown preset 'saebnch'; presets: saebench"):
        get_preset("saebnch")
    with pytest.raises(InputError, match="n_train must be an integer >= 2"):
        CappedSplitSource(_source(60, 30), n_train=1, n_test=None, test_size=0.2)


class _Cache(ArraySource):
    width = 12


def test_probe_command_runs_the_saebench_setting(tmp_path, monkeypatch):
    from needle.probing import load_results

    source = _source()
    source.__class__ = _Cache
    monkeypatch.setattr("needle.activations.load_cache", lambda path: source)
    out = tmp_path / "r.parquet"
    result = runner.invoke(app, ["probe", "--cache", str(tmp_path), "--out", str(out), "--preset", "saebench",
                                 "--bootstrap", "0", "--layers", "0"])
    assert result.exit_code == 0, result.output
    results = load_results(out)
    assert set(results["method"]) == {"mean_diff"} and sorted(set(results["k"])) == [1, 2, 5]
    big = results[results["feature"] == "big"]
    assert set(big["n_train"]) == {4000} and set(big["n_test"]) == {1000}
    small_rows, small_y = source.feature("small")
    small_test = group_train_test_split(source.row_groups[small_rows], small_y, test_size=0.2,
                                        seed=derive_seed(0, "split", "small"))
    assert set(results[results["feature"] == "small"]["n_test"]) == {int(small_test.sum())}
    # The planted neuron is the top-1 mean-difference choice.
    assert big[big["k"] == 1]["neurons"].iloc[0].tolist() == [3]
    result = runner.invoke(app, ["probe", "--cache", str(tmp_path), "--out", str(tmp_path / "b.parquet"),
                                 "--preset", "saebnch"])
    assert result.exit_code != 0 and "unknown preset" in str(result.exception or result.output)
