"""The whole-layer regression probes (ridge, pca, mlp) through the sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor

from needle.errors import InputError
from needle.probing import ArraySource, available_methods, get_selector, sweep
from needle.probing.ridge import DEFAULT_ALPHAS
from needle.probing.splits import derive_seed, group_train_test_split


def _source(seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(300, 24)) * rng.uniform(0.2, 5, 24) + 3).astype(np.float32)
    y = X[:, :3].astype(np.float64) @ [1.0, 2.0, -1.0] + rng.normal(0, 0.5, 300)
    groups = np.arange(300) // 2
    return X, y, ArraySource({0: X}, {"t": (np.arange(300), y)}, groups=groups,
                             feature_info={"t": {"task": "regression"}})


def test_registered():
    assert {"ridge", "pca", "mlp"} <= set(available_methods())
    with pytest.raises(InputError, match="whole-layer"):
        get_selector("ridge").select_path(np.zeros((10, 3)), np.arange(10.0), [1], task="regression")


def test_ridge_row_equals_ridgecv_on_the_standardised_training_split(tmp_path):
    X, y, source = _source()
    results = sweep(source, out=tmp_path / "r.parquet", methods=["ridge", "pca", "mlp"], ks=[2, 5, 50],
                    baselines=False, progress=False)
    row = results[results.method == "ridge"].iloc[0]
    assert row.k == 24 and row.neurons.size == 24
    # Recompute from the split the sweep drew (test rows = those it held out).
    is_test = group_train_test_split(np.arange(300) // 2, y, test_size=0.3, seed=derive_seed(0, "split", "t"),
                                     name="t", task="regression")
    mean, std = X[~is_test].astype(np.float64).mean(0), X[~is_test].astype(np.float64).std(0)
    reference = RidgeCV(alphas=DEFAULT_ALPHAS).fit((X[~is_test] - mean) / std, y[~is_test])
    pred = reference.predict((X[is_test] - mean) / std)
    r2 = 1 - np.sum((y[is_test] - pred) ** 2) / np.sum((y[is_test] - y[is_test].mean()) ** 2)
    assert row.r2 == pytest.approx(r2, abs=1e-6)
    assert json.loads(row.selection_info)["alpha"] == reference.alpha_
    np.testing.assert_allclose(X[is_test].astype(np.float64) @ row.coef + row.intercept, pred, atol=1e-6)
    # PCA rows: one per k that fits; MLP: one row, no coefficients, a real fit.
    assert sorted(results[results.method == "pca"].k) == [2, 5]
    mlp = results[results.method == "mlp"].iloc[0]
    assert mlp.coef.size == 0 and mlp.r2 > 0.8
    # A rerun has nothing left to do (the planner knows the rows' ks).
    again = sweep(source, out=tmp_path / "r.parquet", methods=["ridge", "pca", "mlp"], ks=[2, 5, 50],
                  baselines=False, progress=False)
    assert len(again) == len(results)


def test_mlp_probe_is_sklearns_mlp():
    X, y, _ = _source(1)
    probe = get_selector("mlp", hidden=16, max_iter=50)
    fit = probe.fit_layer(X[:200], y[:200], [1], random_state=3)[0]
    mean, std = X[:200].astype(np.float64).mean(0), X[:200].astype(np.float64).std(0)
    reference = MLPRegressor(hidden_layer_sizes=(16,), alpha=1e-4, max_iter=50, early_stopping=True,
                             random_state=3).fit((X[:200] - mean) / std, (y[:200] - y[:200].mean()) / y[:200].std())
    expected = reference.predict((X[200:] - mean) / std) * y[:200].std() + y[:200].mean()
    np.testing.assert_allclose(fit.predict(X[200:]), expected, rtol=1e-6, atol=1e-6)


def test_layer_probes_refuse_classification():
    rng = np.random.default_rng(0)
    source = ArraySource({0: rng.normal(size=(40, 5))}, {"b": (np.arange(40), np.arange(40) % 2)})
    with pytest.raises(InputError, match="regression"):
        sweep(source, out=None, methods=["ridge"], features=["b"], progress=False)
