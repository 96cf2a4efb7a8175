"""Label-shuffle control tasks and selectivity; PCA and rotated bases of a source."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from needle.errors import InputError
from needle.probing import ArraySource, load_splits, splits_path, sweep
from needle.probing.bases import pca_basis, rotated_basis
from needle.probing.controls import LabelShuffleControl, control_sweep, permute_within_groups, selectivity

PLANTED = 5


def planted_source(seed=0, n=900, d=30):
    """'planted' lives in one column; 'noise' is a coin flip unrelated to the activations."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 6), 6)
    y = (rng.random(n) < 0.3).astype(np.int8)
    noise = (rng.random(n) < 0.3).astype(np.int8)
    X = rng.normal(size=(n, d))
    X[:, PLANTED] += 3.0 * y
    return ArraySource({0: X.astype(np.float32)}, {"planted": (np.arange(n), y), "noise": (np.arange(n), noise)},
                       groups=groups, manifest={"model_id": "m", "dataset_hash": "h", "site": "custom"})


def test_permute_within_groups_is_a_permutation_inside_each_group():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 7, 200).astype(str)
    y = rng.integers(0, 3, 200)
    shuffled = permute_within_groups(y, groups, seed=3)
    assert shuffled.dtype == y.dtype and not np.array_equal(shuffled, y)
    for g in np.unique(groups):
        assert sorted(shuffled[groups == g]) == sorted(y[groups == g])
    assert np.array_equal(permute_within_groups(y, groups, seed=3), shuffled)
    with pytest.raises(InputError, match="shape"):
        permute_within_groups(y, groups[:5], seed=0)


def test_selectivity_on_a_planted_feature(tmp_path):
    source = planted_source()
    out = tmp_path / "results.parquet"
    table = control_sweep(source, out=out, methods=["mean_diff"], ks=[1, 2], baselines=False, progress=False,
                          checkpoint_seconds=0)
    real = pd.read_parquet(out)
    control = pd.read_parquet(tmp_path / "results.control.parquet")
    assert set(control["dataset_hash"]) == {"h+shuffle0"}
    # identical splits: the same examples are held out for the feature and its control
    for feature in ("planted", "noise"):
        a = load_splits(splits_path(out)).query("feature == @feature").sort_values("example")
        b = load_splits(splits_path(tmp_path / "results.control.parquet")).query("feature == @feature")
        assert np.array_equal(a["split"].to_numpy(), b.sort_values("example")["split"].to_numpy())
    planted = table[(table["feature"] == "planted") & (table["k"] == 1)].iloc[0]
    assert planted["f1"] > 0.8 and planted["control_f1"] < 0.5 and planted["selectivity"] > 0.4
    assert planted["f1"] == pytest.approx(real.query("feature == 'planted' and k == 1")["f1"].iloc[0])
    noise = table[table["feature"] == "noise"]
    assert (noise["selectivity"].abs() < 0.25).all()
    # selectivity is the difference of the two tables' F1, row by row
    joined = real.merge(control, on=["feature", "layer", "method", "k"], suffixes=("", "_c"))
    assert np.allclose(np.sort(joined["f1"] - joined["f1_c"]), np.sort(table["selectivity"]))


def test_control_keeps_rows_groups_and_label_counts():
    source = planted_source()
    control = LabelShuffleControl(source, seed=2)
    rows, y = source.feature("planted")
    c_rows, c_y = control.feature("planted")
    assert np.array_equal(rows, c_rows) and c_y.sum() == y.sum() and not np.array_equal(c_y, y)
    assert control.layer(0) is source.layer(0)
    with pytest.raises(InputError, match="lacks columns"):
        selectivity(pd.DataFrame({"feature": []}), pd.DataFrame({"feature": []}))


def test_a_control_that_cannot_shuffle_anything_is_refused():
    # one example per group (sae-probes' prompts are each their own document): every permutation is the identity
    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random(n) < 0.5).astype(np.int8)
    source = ArraySource({0: rng.normal(size=(n, 4)).astype(np.float32)}, {"f": (np.arange(n), y)},
                         groups=np.arange(n), manifest={"model_id": "m", "dataset_hash": "h", "site": "custom"})
    with pytest.raises(InputError, match="no group holds two examples with different labels"):
        LabelShuffleControl(source, seed=0).feature("f")
    # across all examples instead: a permutation of the labels, and not the identity
    _, shuffled = LabelShuffleControl(source, seed=0, within="all").feature("f")
    assert sorted(shuffled) == sorted(y) and not np.array_equal(shuffled, y)
    with pytest.raises(InputError, match="within"):
        LabelShuffleControl(source, within="docs")


def test_pca_and_rotated_bases_equal_sklearn_and_numpy():
    from sklearn.decomposition import PCA

    source = planted_source()
    X = source.layer(0).astype(np.float64)
    pca = pca_basis(source, n_components=10)
    want = PCA(10, svd_solver="full").fit(X).transform(X)
    got = pca.layer(0)
    # components are defined up to sign
    signs = np.sign((got * want).sum(0))
    np.testing.assert_allclose(got * signs, want, atol=1e-3)
    assert pca.manifest["site"] == "custom+pca" and pca.feature("planted")[1] is source.feature("planted")[1]
    rot = rotated_basis(source, seed=1)
    np.testing.assert_allclose(np.linalg.norm(rot.layer(0), axis=1), np.linalg.norm(X, axis=1), rtol=1e-4)
    # the planted column is spread over many rotated coordinates: the best single one is weaker
    results = sweep(rot, out=None, methods=["mean_diff"], ks=[1], baselines=False, features=["planted"],
                    progress=False)
    base = sweep(source, out=None, methods=["mean_diff"], ks=[1], baselines=False, features=["planted"],
                 progress=False)
    assert results["f1"].iloc[0] < base["f1"].iloc[0]
