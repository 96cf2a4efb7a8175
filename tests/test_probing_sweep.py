"""Sweeps over an ArraySource: findings, schema, saved splits, appending, resuming, bad input."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from needle.errors import FormatError, InputError
from needle.probing import (
    ArraySource,
    ProbeSource,
    load_results,
    load_splits,
    random_orthonormal,
    splits_path,
    summarize,
    sweep,
)
from needle.probing.results import RESULT_KEY, RESULT_SCHEMA
from needle.probing.splits import derive_seed

# The module, not the function of the same name that needle.probing re-exports.
sweep_module = importlib.import_module("needle.probing.sweep")

PLANTED_LAYER, PLANTED_NEURON = 1, 23
KS = (1, 2, 3, 4, 8, 16)


def make_source(seed=0, n=600, d=40, layers=3, nan_layer=None):
    """Layers of float16 'activations'; feature 'planted' lives in one neuron of one layer."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 6), 6)
    y = (rng.random(n) < 0.25).astype(np.int8)
    matrices = {}
    for layer in range(layers):
        X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
        if layer == PLANTED_LAYER:
            X[:, PLANTED_NEURON] += 4.0 * y * X[:, PLANTED_NEURON].std()
        if layer == nan_layer:
            X[7, 3] = np.nan
        matrices[layer] = X.astype(np.float16)
    # 'weak' uses a subset of the rows (rows of a feature need not be all rows)
    rows_weak = np.arange(0, n, 2)
    y_weak = (matrices[2][rows_weak, 0].astype(float) + rng.normal(size=rows_weak.size) > 1.0).astype(np.int8)
    features = {"planted": (np.arange(n), y), "weak": (rows_weak, y_weak)}
    info = {"planted": {"collection": "toy", "level": "token"}, "weak": {"collection": "toy", "level": "sequence"}}
    return ArraySource(matrices, features, groups=groups, feature_info=info,
                       manifest={"model_id": "toy-model", "dataset_hash": "abc123", "site": "post", "extra": 1})


def run(source, out, **kwargs):
    kwargs.setdefault("methods", ("mean_diff", "f_stat", "adaptive"))
    kwargs.setdefault("ks", KS)
    kwargs.setdefault("prefilter", 16)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("checkpoint_seconds", 0.0)
    return sweep(source, out=out, **kwargs)


def comparable(frame):
    frame = frame.drop(columns=["fit_seconds"]).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    for col in ("neurons", "coef"):
        frame[col] = frame[col].map(lambda a: tuple(np.round(np.asarray(a, dtype=float), 9)))
    return frame


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "results.parquet"
    source = make_source()
    results = run(source, out)
    return source, out, results


def test_array_source_is_a_probe_source():
    assert isinstance(make_source(), ProbeSource)


def test_finds_the_planted_neuron(swept):
    _, _, results = swept
    planted = results[results["feature"] == "planted"]
    k1 = planted[planted["k"] == 1].set_index(["layer", "method"])["f1"]
    for method in ("mean_diff", "f_stat", "adaptive"):
        assert k1[(PLANTED_LAYER, method)] > 0.9
        assert k1[(0, method)] < 0.6 and k1[(2, method)] < 0.6
    selected = planted[~planted["method"].isin(["dense", "random_directions"])]
    neurons = selected[(selected["k"] == 1) & (selected["layer"] == PLANTED_LAYER)]["neurons"]
    assert len(neurons) == 3
    assert all(list(n) == [PLANTED_NEURON] for n in neurons)  # ids in the layer's numbering
    summary = summarize(results).set_index("feature")
    assert summary.loc["planted", "best_layer"] == PLANTED_LAYER
    assert summary.loc["planted", "neuron"] == PLANTED_NEURON
    assert summary.loc["planted", "neuron_layer"] == PLANTED_LAYER
    assert summary.loc["planted", "f1_k1"] > 0.9 and summary.loc["planted", "f1_dense"] > 0.8
    assert 0 < summary.loc["planted", "neuron_precision"] <= 1


def test_schema_is_complete(swept):
    _, out, results = swept
    assert list(results.columns) == RESULT_SCHEMA.names
    assert not results[list(RESULT_KEY)].duplicated().any()
    # per (feature, layer): 3 methods x 6 ks + dense + random directions x 6 ks
    assert len(results) == 2 * 3 * (3 * len(KS) + 1 + len(KS))
    assert set(results["method"]) == {"mean_diff", "f_stat", "adaptive", "dense", "random_directions"}
    assert (results["fit_seconds"] >= 0).all()
    assert results[["f1", "precision", "recall", "accuracy", "roc_auc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert results["converged"].all()
    sparse = results[~results["method"].isin(["dense", "random_directions"])]
    assert (sparse["neurons"].map(len) == sparse["k"]).all() and (sparse["coef"].map(len) == sparse["k"]).all()
    assert (results[results["method"] == "dense"]["k"] == 40).all()
    row = results.iloc[0]
    assert row["model_id"] == "toy-model" and row["dataset_hash"] == "abc123" and row["site"] == "post"
    assert row["collection"] == "toy" and row["needle_version"]
    params = json.loads(row["params"])
    assert params["C"] == 0.01 and params["test_size"] == 0.3 and params["prefilter"] == 16
    assert params["method_params"]["adaptive"]["C_scale"] == 0.05
    assert json.loads(row["manifest"])["extra"] == 1
    weak = results[results["feature"] == "weak"]
    assert (weak["n_train"] + weak["n_test"] == 300).all()
    assert (results.groupby("feature")["n_test"].nunique() == 1).all()  # one split per feature, all layers


def test_recompute_rows_by_hand_from_the_splits_file(swept):
    source, out, results = swept
    splits = load_splits(splits_path(out))
    for feature, layer, method, k in [("planted", 1, "adaptive", 3), ("weak", 2, "f_stat", 8), ("planted", 0, "dense", 40)]:
        row = results[(results["feature"] == feature) & (results["layer"] == layer) & (results["method"] == method)
                      & (results["k"] == k)].iloc[0]
        split = splits[splits["feature"] == feature].sort_values("example")
        test = split[split["split"] == "test"]
        X = np.asarray(source.layer(layer)[test["row"].to_numpy()], dtype=np.float32)
        scores = X[:, row["neurons"]].astype(np.float64) @ row["coef"] + row["intercept"]
        assert f1_score(test["y"], scores > 0) == row["f1"]
        assert roc_auc_score(test["y"], scores) == pytest.approx(row["roc_auc"], abs=1e-12)
        assert row["n_test"] == len(test) and row["n_test_pos"] == test["y"].sum()
    # a random-directions row: standardise by the training split, project, apply the coefficients
    row = results[(results["feature"] == "planted") & (results["layer"] == 1) & (results["method"] == "random_directions")
                  & (results["k"] == 4)].iloc[0]
    split = splits[splits["feature"] == "planted"].sort_values("example")
    X = np.asarray(source.layer(1)[split["row"].to_numpy()], dtype=np.float32)
    train = (split["split"] == "train").to_numpy()
    mean, std = X[train].astype(np.float64).mean(0), X[train].astype(np.float64).std(0)
    Q = random_orthonormal(X.shape[1], 4, derive_seed(0, "random_directions", "planted", 1))
    scores = (((X[~train] - mean) / std) @ Q) @ row["coef"] + row["intercept"]
    assert f1_score(split["y"][~train], scores > 0) == pytest.approx(row["f1"], abs=1e-9)
    # groups never straddle the split
    for _, frame in splits.groupby("feature"):
        assert frame.groupby("group")["split"].nunique().max() == 1


def test_append_method_and_layer_without_duplicates(swept, tmp_path):
    source, out, first = swept
    path = tmp_path / "r.parquet"
    run(source, path, layers=[0, 1], baselines=False)
    before = load_results(path)
    after = run(source, path, layers=[0, 1], methods=("mean_diff", "random"), baselines=False)
    assert not after[list(RESULT_KEY)].duplicated().any()
    assert len(after) == len(before) + 2 * 2 * len(KS)
    pd.testing.assert_frame_equal(
        comparable(after[after["method"] != "random"]), comparable(before), check_dtype=False
    )
    appended = run(source, path, layers=[2], baselines=True)
    assert set(appended["layer"]) == {0, 1, 2}
    assert not appended[list(RESULT_KEY)].duplicated().any()
    # the same rows as one sweep over everything (splits do not depend on which layers run)
    again = run(source, path)
    expected = first[first["method"] != "random"]
    got = again[again["method"] != "random"]
    pd.testing.assert_frame_equal(comparable(got).drop(columns="params"), comparable(expected).drop(columns="params"),
                                  check_dtype=False)


def test_interrupted_sweep_resumes_to_the_same_table(swept, tmp_path, monkeypatch):
    source, _, uninterrupted = swept
    path = tmp_path / "r.parquet"
    real = sweep_module.run_task
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third task
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "run_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(source, path)
    partial = load_results(path)
    assert len(partial) == 2 * (3 * len(KS) + 1 + len(KS))  # the two completed tasks, whole
    monkeypatch.setattr(sweep_module, "run_task", real)
    resumed = run(source, path)
    pd.testing.assert_frame_equal(comparable(resumed), comparable(uninterrupted), check_dtype=False)


def test_parallel_equals_serial(swept, tmp_path):
    source, _, serial = swept
    parallel = run(source, tmp_path / "p.parquet", n_jobs=2)
    pd.testing.assert_frame_equal(comparable(parallel), comparable(serial), check_dtype=False)


def test_in_memory_sweep(swept):
    source, _, results = swept
    memory = run(source, None, features=["weak"], layers=[2])
    expected = results[(results["feature"] == "weak") & (results["layer"] == 2)]
    pd.testing.assert_frame_equal(comparable(memory), comparable(expected), check_dtype=False)


def test_incompatible_parameters_are_refused(swept, tmp_path):
    source, _, _ = swept
    path = tmp_path / "r.parquet"
    run(source, path, layers=[0], methods=("mean_diff",), baselines=False)
    with pytest.raises(InputError, match="test_size"):
        run(source, path, layers=[1], methods=("mean_diff",), baselines=False, test_size=0.5)
    run(source, path, layers=[1], methods=("mean_diff",), baselines=False, test_size=0.5, overwrite=True)
    assert set(load_results(path)["layer"]) == {1}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"methods": ("mean_diff", "astrology")}, "available methods: .*mean_diff"),
        ({"ks": (0, 1)}, "ks must be"),
        ({"ks": ()}, "ks must be"),
        ({"ks": (1.5,)}, "ks must be"),
        ({"prefilter": 0}, "prefilter"),
        ({"C": -1.0}, "C must be"),
        ({"features": ["nope"]}, "unknown features"),
        ({"layers": [7]}, "unknown layers"),
        ({"method_params": {"adaptive": {"alpha": 1}}}, "does not take"),
        ({"methods": (), "baselines": False}, "nothing to do"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        run(make_source(), tmp_path / "r.parquet", **kwargs)
    assert not (tmp_path / "r.parquet").exists()


def test_bad_data(tmp_path):
    source = make_source(nan_layer=2)
    with pytest.raises(InputError, match=r"feature 'planted', layer 2: 1 of 600 examples have NaN"):
        run(source, tmp_path / "r.parquet", features=["planted"], layers=[2])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5)).astype(np.float16)
    groups = np.repeat(np.arange(5), 4)
    one_class = ArraySource({0: X}, {"f": (np.arange(20), np.zeros(20))}, groups=groups)
    with pytest.raises(InputError, match="feature 'f' has only one class"):
        run(one_class, tmp_path / "a.parquet", features=["f"])
    with pytest.raises(InputError, match="no feature can be probed: feature 'f' has only one class"):
        run(one_class, tmp_path / "a.parquet")
    one_group = ArraySource({0: X}, {"f": (np.arange(20), (np.arange(20) < 3).astype(int))}, groups=groups)
    with pytest.raises(InputError, match="single group '0'"):
        run(one_group, tmp_path / "b.parquet", features=["f"])
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "b.parquet").exists()
    # Sweeping every feature, an unsplittable one is skipped with a warning; the others are probed.
    mixed = ArraySource({0: X}, {"f": (np.arange(20), (np.arange(20) < 3).astype(int)),
                                 "g": (np.arange(20), (np.arange(20) % 2).astype(int))}, groups=groups)
    with pytest.warns(UserWarning, match="skipping feature 'f'"):
        results = run(mixed, tmp_path / "m.parquet")
    assert set(results["feature"]) == {"g"}
    with pytest.raises(InputError, match=r"manifest lacks \['dataset_hash', 'site'\]"):
        run(_BareSource(X), tmp_path / "c.parquet")
    with pytest.raises(FormatError, match="missing"):
        load_results(tmp_path / "nothing.parquet")


class _BareSource:
    """A ProbeSource whose manifest lacks the provenance the results need."""

    def __init__(self, X):
        self.layers, self.feature_names = [0], ["f"]
        self.row_groups = np.arange(len(X)).astype(str)
        self.manifest = {"model_id": "m"}
        self._X = X

    def layer(self, layer):
        return self._X

    def feature(self, name):
        return np.arange(len(self._X)), np.arange(len(self._X)) % 2

    def feature_info(self, name):
        return {"collection": "c", "level": "token"}


def test_osp_in_a_sweep_has_its_own_prefilter_and_certificate_columns(tmp_path):
    from needle.probing.osp import solve_osp
    from needle.probing.template import candidate_neurons, standardization

    source = make_source()
    out = tmp_path / "osp.parquet"
    results = run(source, out, features=["planted"], layers=[PLANTED_LAYER], methods=("mean_diff", "osp"),
                  ks=(1, 2, 4, 8), prefilter=16, baselines=False,
                  method_params={"osp": {"prefilter": 6, "gamma": 0.05, "time_limit": 20}})
    osp = results[results["method"] == "osp"].set_index("k")
    mean_diff = results[results["method"] == "mean_diff"].set_index("k")
    assert list(osp.index) == [1, 2, 4] and list(mean_diff.index) == [1, 2, 4, 8]  # k <= its 6 candidates
    assert (osp["status"] == "optimal").all() and (osp["bound"] <= osp["objective"] + 1e-9).all()
    assert (osp["gap"] <= 1e-6).all()
    assert mean_diff["status"].isna().all() and mean_diff["objective"].isna().all()
    assert osp.loc[1, "neurons"].tolist() == [PLANTED_NEURON]

    # The certificate is for the top-6 candidates standardised on the training split: recompute it.
    splits = load_splits(splits_path(out))
    train = splits[(splits["feature"] == "planted") & (splits["split"] == "train")]
    X = np.asarray(source.layer(PLANTED_LAYER)[train["row"].to_numpy()], dtype=np.float32)
    y = train["y"].to_numpy()
    top = candidate_neurons(X, y, 16)[:6]
    mean, scale = standardization(X[:, top])
    for k in (1, 2, 4):
        assert set(osp.loc[k, "neurons"].tolist()) <= set(top.tolist())
        direct = solve_osp((X[:, top] - mean) / scale, y, k, gamma=0.05)
        assert osp.loc[k, "objective"] == pytest.approx(direct.objective, rel=1e-6)

    # Older tables without certificate columns still load (nulls there) and append.
    legacy = pq.read_table(out).drop(["objective", "bound", "gap", "status"])
    pq.write_table(legacy, out)
    assert load_results(out)["status"].isna().all()
    again = run(source, out, features=["planted"], layers=[PLANTED_LAYER], methods=("mean_diff", "osp", "f_stat"),
                ks=(1, 2, 4, 8), prefilter=16, baselines=False,
                method_params={"osp": {"prefilter": 6, "gamma": 0.05, "time_limit": 20}})
    assert len(again) == len(results) + 4 and not again[list(RESULT_KEY)].duplicated().any()
