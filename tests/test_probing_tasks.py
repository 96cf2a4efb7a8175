"""Multiclass and regression probes through the one template: estimators, solvers, metrics, sweeps, splits, C by CV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.feature_selection import f_classif, f_regression
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_absolute_error, r2_score

from needle.errors import InputError
from needle.probing import (
    L2,
    ArraySource,
    CrossValidatedC,
    ElasticNet,
    MeanDiff,
    Multinomial,
    Quadratic,
    SparseProbe,
    SparseRegressionProbe,
    f_stat_score,
    load_results,
    mean_diff_score,
    metrics_batch,
    normalize_columns,
    solve,
    solve_path,
    summarize,
    sweep,
)
from needle.probing.splits import group_train_test_split, user_split


def _regression(seed=0, n=500, d=30, neuron=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d)
    y = 2.0 * X[:, neuron] / X[:, neuron].std() + 0.3 * rng.normal(size=n)
    return X, y


def _multiclass(seed=0, n=600, d=30, neurons=(3, 9)):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, d))
    X[:, neurons[0]] += 2.5 * (y == 1)
    X[:, neurons[1]] += 2.5 * (y == 2)
    return X, y


# ------------------------------------------------------------------------------------------------- scores
def test_task_forms_of_the_scores_match_their_definitions():
    X, y = _regression()
    cov = np.abs(((X - X.mean(0)) * (y - y.mean())[:, None]).mean(0)) / y.std()
    np.testing.assert_allclose(mean_diff_score(X, y, task="regression"), cov, rtol=1e-10)
    corr = np.abs([pearsonr(X[:, j], y)[0] for j in range(X.shape[1])])
    np.testing.assert_allclose(mean_diff_score(normalize_columns(X, "standardized"), y, task="regression"), corr,
                               rtol=1e-8)
    np.testing.assert_allclose(f_stat_score(X, y, task="regression"), f_regression(X, y)[0], rtol=1e-8)
    Xm, ym = _multiclass()
    np.testing.assert_allclose(f_stat_score(Xm, ym, task="multiclass"), f_classif(Xm, ym)[0], rtol=1e-8)
    one_vs_rest = np.max([np.abs(Xm[ym == c].mean(0) - Xm[ym != c].mean(0)) for c in range(3)], axis=0)
    np.testing.assert_allclose(mean_diff_score(Xm, ym, task="multiclass"), one_vs_rest, rtol=1e-10)


def test_normalizations_rescale_the_ranking_units():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5)) * [1, 10, 100, 0.1, 1] + [0, 5, 0, 1, 0]
    np.testing.assert_allclose(normalize_columns(X, "standardized").std(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.abs(normalize_columns(X, "mean_abs")).mean(0), 1.0, rtol=1e-12)
    assert normalize_columns(X, "raw") is X
    with pytest.raises(InputError, match="normalization must be one of"):
        normalize_columns(X, "zscore")
    # A neuron with a small raw difference but a large standardised one wins only once standardised.
    y = (rng.random(200) < 0.5).astype(int)
    X[:, 3] += 0.3 * y  # 3 standard deviations of a 0.1-scale neuron
    X[:, 2] += 3.0 * y  # 0.03 standard deviations of a 100-scale neuron
    assert MeanDiff().ranking(X, y)[0] == 2
    assert MeanDiff(normalization="standardized").ranking(X, y)[0] == 3


# ------------------------------------------------------------------------------------------------ solvers
def test_solvers_minimise_what_they_claim():
    X, y = _regression(1, n=200, d=8)
    ridge = solve_path(X, y, [np.arange(8), np.array([1, 4])], Quadratic(), L2(C=0.5))
    for support, w, b in zip([np.arange(8), np.array([1, 4])], ridge.coef, ridge.intercept):
        ref = Ridge(alpha=1 / 0.5).fit(X[:, support], y)
        np.testing.assert_allclose(w, ref.coef_, rtol=1e-8)
        assert b == pytest.approx(ref.intercept_, rel=1e-8)
    enet = solve(X, y, Quadratic(), ElasticNet(C=0.05, l1_ratio=0.7), tol=1e-10)
    ref = SkElasticNet(alpha=1 / (0.05 * 200), l1_ratio=0.7, tol=1e-10, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(enet.coef, ref.coef_, atol=1e-8)
    # the objective C/2 RSS + penalty is lower at the solution than at perturbations of it
    objective = lambda w, b: 0.05 * Quadratic().value(y, X @ w + b) + ElasticNet(0.05, 0.7).value(w)  # noqa: E731
    base = objective(enet.coef, enet.intercept)
    rng = np.random.default_rng(0)
    assert all(objective(enet.coef + 1e-3 * rng.normal(size=8), enet.intercept) > base for _ in range(20))
    Xm, ym = _multiclass(2, n=300, d=6, neurons=(1, 4))
    multi = solve_path(Xm, ym, [np.arange(6)], Multinomial(), L2(C=0.3), n_classes=3)
    ref = LogisticRegression(C=0.3, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Xm, ym)
    np.testing.assert_allclose(multi.coef[0] - multi.coef[0].mean(0), ref.coef_ - ref.coef_.mean(0), atol=1e-4)
    with pytest.raises(InputError, match="no single solver .nope."):
        solve(X, y, Quadratic(), L2(C=1.0), solver="nope")


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_per_task_match_scikit_learn_and_scipy():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 150)
    scores = rng.normal(size=(2, 150, 4))
    m = metrics_batch("multiclass", y, scores)
    for j in range(2):
        pred = scores[j].argmax(1)
        assert m["f1_macro"][j] == pytest.approx(f1_score(y, pred, average="macro"))
        assert m["f1_weighted"][j] == pytest.approx(f1_score(y, pred, average="weighted"))
        assert m["accuracy"][j] == pytest.approx(accuracy_score(y, pred))
        assert m["mcc"][j] == pytest.approx(matthews_corrcoef(y, pred))
    t = rng.normal(size=80)
    p = t + rng.normal(size=(3, 80))
    r = metrics_batch("regression", t, p)
    for j in range(3):
        assert r["r2"][j] == pytest.approx(r2_score(t, p[j]))
        assert r["pearson"][j] == pytest.approx(pearsonr(t, p[j])[0])
        assert r["spearman"][j] == pytest.approx(spearmanr(t, p[j])[0])
        assert r["mae"][j] == pytest.approx(mean_absolute_error(t, p[j]))
    yb = rng.integers(0, 2, 90)
    sb = rng.normal(size=(1, 90))
    assert metrics_batch("binary", yb, sb)["f1_weighted"][0] == pytest.approx(
        f1_score(yb, (sb[0] > 0).astype(int), average="weighted"))


# --------------------------------------------------------------------------------------------- estimators
def test_sparse_regression_probe_is_ridge_on_the_selected_standardised_neurons():
    X, y = _regression(5)
    probe = SparseRegressionProbe(k=3, C=0.2).fit(X, y)
    assert 4 in probe.support_
    Z = (X[:, probe.support_] - probe.mean_) / probe.scale_
    ref = Ridge(alpha=1 / 0.2).fit(Z, y)
    np.testing.assert_allclose(probe.predict(X), ref.predict(Z), rtol=1e-8, atol=1e-8)
    assert probe.score(X, y) > 0.9
    # correlation ranking: the top neuron by |corr| is chosen at k = 1
    corr = np.abs([pearsonr(X[:, j], y)[0] for j in range(X.shape[1])])
    assert SparseRegressionProbe(k=1, selector=MeanDiff(normalization="standardized")).fit(X, y).support_[0] == \
        int(np.argmax(corr))


def test_multiclass_sparse_probe_finds_both_planted_neurons():
    X, y = _multiclass(6)
    probe = SparseProbe(k=2, selector="f_stat").fit(X, np.array(["a", "b", "c"])[y])
    assert sorted(probe.support_) == [3, 9]
    assert list(probe.classes_) == ["a", "b", "c"]
    assert probe.score(X, np.array(["a", "b", "c"])[y]) > 0.8
    np.testing.assert_allclose(probe.predict_proba(X).sum(1), 1.0)


def test_cross_validated_C_picks_from_the_grid_and_reports_it():
    X, y = _regression(7, n=300)
    groups = np.repeat(np.arange(60), 5)
    source = ArraySource({0: X.astype(np.float32)}, {"value": (np.arange(300), y)}, groups=groups,
                         feature_info={"value": {"task": "regression"}})
    cv = CrossValidatedC(Cs=(1e-4, 1.0), n_folds=3)
    results = sweep(source, out=None, methods=["mean_diff"], ks=[1, 2], C=cv, baselines=False, progress=False)
    chosen = [float(__import__("json").loads(s)["C"]) for s in results["selection_info"]]
    assert set(chosen) <= {1e-4, 1.0} and 1.0 in chosen  # the strongly-regularised C loses on a clean signal
    with pytest.raises(InputError, match="n_folds"):
        CrossValidatedC(n_folds=1)


# ------------------------------------------------------------------------------------------------- sweeps
def _task_source(split=False):
    X, y_reg = _regression(8, n=600, d=24)
    Xm, y_mc = _multiclass(9, n=600, d=24)
    layer = np.hstack([X, Xm]).astype(np.float16)
    groups = np.repeat(np.arange(120), 5)
    rows = np.arange(600)
    given = np.where(groups % 4 == 0, "test", "train") if split else None
    features = {"value": (rows, y_reg, given), "kind": (rows, y_mc, given)}
    info = {"value": {"task": "regression", "collection": "t"},
            "kind": {"task": "multiclass", "classes": ["x", "y", "z"], "collection": "t"}}
    return ArraySource({0: layer, 1: layer[:, ::-1].copy()}, features, groups=groups, feature_info=info)


def test_regression_and_multiclass_sweep_end_to_end(tmp_path):
    out = tmp_path / "tasks.parquet"
    results = sweep(_task_source(), out=out, methods=["mean_diff", "f_stat", "l1"], ks=[1, 2, 4], prefilter=None,
                    progress=False)
    assert set(results["task"]) == {"regression", "multiclass"}
    reg = results[results["task"] == "regression"]
    mc = results[results["task"] == "multiclass"]
    assert reg["f1"].isna().all() and reg["r2"].notna().all() and reg["spearman"].notna().all()
    assert mc["f1"].isna().all() and mc["f1_macro"].notna().all() and mc["class_intercepts"].notna().all()
    best = reg[(reg["layer"] == 0) & (reg["method"] == "mean_diff") & (reg["k"] == 1)].iloc[0]
    assert best["neurons"].tolist() == [4] and best["r2"] > 0.9
    # a row recomputes from its coefficients and the saved split
    from needle.probing import load_splits, splits_path

    splits = load_splits(splits_path(out))
    part = splits[splits["feature"] == "value"].sort_values("example")
    test = part["split"].to_numpy() == "test"
    source = _task_source()
    X = source.layer(0)[part["row"].to_numpy()[test]].astype(np.float64)
    pred = X[:, best["neurons"]] @ best["coef"] + best["intercept"]
    assert r2_score(part["y"].to_numpy()[test], pred) == pytest.approx(best["r2"], abs=1e-9)
    mrow = mc[(mc["layer"] == 0) & (mc["method"] == "f_stat") & (mc["k"] == 2)].iloc[0]
    coef = np.asarray(mrow["coef"]).reshape(3, 2)
    part = splits[splits["feature"] == "kind"].sort_values("example")
    test = part["split"].to_numpy() == "test"
    X = source.layer(0)[part["row"].to_numpy()[test]].astype(np.float64)
    pred = (X[:, mrow["neurons"]] @ coef.T + mrow["class_intercepts"]).argmax(1)
    assert f1_score(part["y"].to_numpy()[test], pred, average="macro") == pytest.approx(mrow["f1_macro"])
    summary = summarize(load_results(out)).set_index("feature")
    assert summary.loc["value", "metric"] == "r2" and summary.loc["kind", "metric"] == "f1_macro"
    assert summary.loc["value", "score_k1"] > 0.9
    with pytest.raises(InputError, match="selects for binary, regression targets only"):
        sweep(_task_source(), out=None, features=["kind"], methods=["osp"], ks=[1], progress=False)


def test_a_source_split_is_used_and_checked():
    results = sweep(_task_source(split=True), out=None, methods=["mean_diff"], ks=[1], baselines=False,
                    progress=False)
    assert set(results["n_test"]) == {150}
    groups = np.repeat(np.arange(4), 3)
    with pytest.raises(InputError, match="both train and test"):
        user_split(groups, np.zeros(12), np.arange(12) % 2 == 0, task="regression")
    with pytest.raises(InputError, match="one side only"):
        user_split(groups, np.array([0] * 9 + [1] * 3), groups == 3)


def test_group_splits_stratify_every_class_and_never_straddle():
    rng = np.random.default_rng(10)
    groups = np.repeat(np.arange(100), 4)
    y = rng.integers(0, 5, 400)
    is_test = group_train_test_split(groups, y, test_size=0.3, seed=1, task="multiclass")
    frame = pd.DataFrame({"g": groups, "t": is_test})
    assert frame.groupby("g")["t"].nunique().max() == 1
    for c in range(5):
        share = is_test[y == c].mean()
        assert 0.15 < share < 0.45
    values = rng.normal(size=400)
    is_test = group_train_test_split(groups, values, test_size=0.3, seed=1, task="regression")
    assert 0.25 < is_test.mean() < 0.35


def test_tables_written_before_tasks_load_as_binary_and_can_be_appended_to(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from needle.probing.results import RESULT_SCHEMA

    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 12)).astype(np.float16)
    y = (X[:, 5].astype(float) + 0.5 * rng.normal(size=300) > 0).astype(np.int8)
    source = ArraySource({0: X}, {"f": (np.arange(300), y)}, groups=np.arange(300) // 3)
    out = tmp_path / "old.parquet"
    sweep(source, out=out, methods=["mean_diff"], ks=[1, 2], progress=False)
    # What an older needle wrote: no task or per-task metric columns, method parameters without defaults.
    old_columns = [f.name for f in RESULT_SCHEMA if f.name not in
                   ("task", "f1_weighted", "f1_macro", "r2", "spearman", "pearson", "mae", "class_intercepts")]
    table = pq.read_table(out).select(old_columns)
    params = [json.dumps({**json.loads(p), "method_params": {"mean_diff": {}}}) for p in table.column("params").to_pylist()]
    table = table.set_column(old_columns.index("params"), "params", pa.array(params, pa.string()))
    pq.write_table(table, out)
    old = load_results(out)
    assert set(old["task"]) == {"binary"} and old["r2"].isna().all() and old["f1"].notna().all()
    assert summarize(old)["metric"].tolist() == ["f1"]
    both = sweep(source, out=out, methods=["mean_diff", "f_stat"], ks=[1, 2], progress=False)
    assert set(both["method"]) >= {"mean_diff", "f_stat"} and len(both) == len(old) + 2
