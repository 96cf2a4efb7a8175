"""Uncertainty in sweeps and summaries: the stored intervals recompute from the splits file by brute force,
repeated splits agree with sweeps run on each split, old tables still load, the few-positives flag, and
``needle results compare``'s paired test."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from needle.errors import InputError
from needle.probing import ArraySource, load_results, load_splits, splits_path, summarize
from needle.probing.bootstrap import CI_COLUMNS, draw_group_indices
from needle.probing.compare import compare_probes, holm
from needle.probing.results import write_results
from needle.probing.splits import derive_seed, group_train_test_split
from test_probing_sweep import PLANTED_LAYER, make_source, run

N_BOOT = 200


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("uncertainty") / "results.parquet"
    source = make_source()
    results = run(source, out, methods=("mean_diff", "random"), bootstrap=N_BOOT)
    return source, out, results


def _test_examples(out, feature):
    splits = load_splits(splits_path(out))
    return splits[(splits["feature"] == feature) & (splits["split"] == "test")].sort_values("example")


def _brute_replicates(source, test, row, seed, metric):
    """Resample the test groups with the sweep's draws, in a plain loop, and recompute with scikit-learn."""
    names = np.unique(test["group"].astype(str))
    members = [np.flatnonzero(test["group"].astype(str).to_numpy() == g) for g in names]
    idx = draw_group_indices(len(names), N_BOOT, derive_seed(seed, "bootstrap", row["feature"]))
    X = np.asarray(source.layer(int(row["layer"]))[test["row"].to_numpy()], dtype=np.float32)
    scores = X[:, row["neurons"]].astype(np.float64) @ row["coef"] + row["intercept"]
    y = test["y"].to_numpy().astype(int)
    out = []
    for b in range(N_BOOT):
        take = np.concatenate([members[g] for g in idx[b]])
        if metric == "f1":
            out.append(f1_score(y[take], scores[take] > 0, zero_division=0))
        else:
            out.append(roc_auc_score(y[take], scores[take]) if 0 < y[take].sum() < take.size else np.nan)
    return np.array(out)


def test_stored_intervals_recompute_from_the_splits_file(swept):
    source, out, results = swept
    for feature, layer, method, k in [("planted", PLANTED_LAYER, "mean_diff", 1), ("weak", 2, "random", 3)]:
        row = results.query("feature == @feature and layer == @layer and method == @method and k == @k").iloc[0]
        test = _test_examples(out, feature)
        assert row["n_test_groups"] == test["group"].nunique()
        for metric in ("f1", "roc_auc"):
            reps = _brute_replicates(source, test, row, int(row["seed"]), metric)
            lo, hi = np.nanquantile(reps, [0.025, 0.975])
            assert row[f"{metric}_lo"] == pytest.approx(lo, abs=1e-12)
            assert row[f"{metric}_hi"] == pytest.approx(hi, abs=1e-12)


def test_every_row_has_sensible_intervals(swept):
    _, _, results = swept
    binary = results[results["task"] == "binary"]
    for metric in ("f1", "precision", "recall", "roc_auc"):
        lo, hi, point = binary[f"{metric}_lo"], binary[f"{metric}_hi"], binary[metric]
        assert lo.notna().all() and (lo <= hi).all() and (lo >= 0).all() and (hi <= 1).all()
        # The percentile interval need not contain the estimate, but almost always does.
        assert ((lo <= point + 1e-12) & (point <= hi + 1e-12)).mean() > 0.95
    assert binary[["r2_lo", "f1_macro_lo"]].isna().all().all()  # no such metric for binary rows
    # The planted neuron separates the classes: a tight interval near 1; random neurons on 'weak' are vague.
    planted = binary.query("feature == 'planted' and layer == @PLANTED_LAYER and method == 'mean_diff' and k == 1")
    assert planted["f1_lo"].iloc[0] > 0.8
    vague = binary.query("feature == 'weak' and method == 'random' and k == 1")
    assert ((vague["f1_hi"] - vague["f1_lo"]) > 0.1).all()


def test_no_bootstrap_gives_nan_intervals_and_the_same_point_metrics(swept, tmp_path):
    source, _, results = swept
    plain = run(source, tmp_path / "plain.parquet", methods=("mean_diff", "random"), bootstrap=0)
    assert plain[list(CI_COLUMNS)].isna().all().all()
    np.testing.assert_array_equal(plain["f1"].to_numpy(), results["f1"].to_numpy())


def test_repeated_splits_agree_with_sweeps_on_each_split(tmp_path):
    source = make_source()
    results = run(source, tmp_path / "r.parquet", methods=("mean_diff",), ks=(1, 4), splits=3, bootstrap=0,
                  baselines=False, features=["planted"])
    assert (results["n_splits"] == 3).all()
    # Independently: the sweep's split seeds, each split handed to a sweep as the source's own split.
    rows, y = source.feature("planted")
    groups = np.asarray(source.row_groups)[rows]
    f1s = [results.set_index(["layer", "k"])["f1"]]
    for i in (1, 2):
        is_test = group_train_test_split(groups, y, seed=derive_seed(0, "split", "planted", i), name="planted")
        given = ArraySource({l: source.layer(l) for l in source.layers},
                            {"planted": (rows, y, np.where(is_test, "test", "train"))}, groups=source.row_groups,
                            manifest=dict(source.manifest))
        other = run(given, None, methods=("mean_diff",), ks=(1, 4), bootstrap=0, baselines=False)
        f1s.append(other.set_index(["layer", "k"])["f1"])
    table = np.stack([f.sort_index().to_numpy() for f in f1s])
    mine = results.set_index(["layer", "k"]).sort_index()
    np.testing.assert_allclose(mine["splits_mean"], table.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mine["splits_sd"], table.std(axis=0, ddof=1), rtol=1e-12)
    summary = summarize(results, ks=(1, 4)).iloc[0]
    assert summary["score_k4_sd"] == pytest.approx(mine.loc[(PLANTED_LAYER, 4), "splits_sd"])


def test_tables_without_the_new_columns_still_load_and_append(swept, tmp_path):
    source, out, _ = swept
    table = pq.read_table(out)
    old = table.drop_columns([c for c in table.column_names
                              if c in CI_COLUMNS or c in ("n_test_groups", "splits_mean", "splits_sd", "n_splits")])
    path = tmp_path / "old.parquet"
    pq.write_table(old, path)
    loaded = load_results(path)
    assert loaded[list(CI_COLUMNS)].isna().all().all() and (loaded["n_splits"] == 1).all()
    summary = summarize(loaded)
    assert summary["score_k1_lo"].isna().all() and summary["few_positives"].dtype == bool
    write_results(path, loaded)  # nulls round-trip through the schema
    # A new sweep appends rows with intervals to the old table.
    grown = run(source, path, methods=("mean_diff", "random", "f_stat"), bootstrap=N_BOOT)
    assert grown.loc[grown["method"] == "f_stat", "f1_lo"].notna().all()
    assert grown.loc[grown["method"] == "mean_diff", "f1_lo"].isna().all()


def test_summary_carries_intervals_and_flags_few_positives(swept):
    _, _, results = swept
    summary = summarize(results).set_index("feature")
    planted = summary.loc["planted"]
    best = results.query("feature == 'planted' and layer == @planted.best_layer and k == 1 and "
                         "method not in ('dense', 'random_directions')").sort_values("f1", ascending=False).iloc[0]
    assert (planted["score_k1"], planted["score_k1_lo"], planted["score_k1_hi"]) == (best["f1"], best["f1_lo"],
                                                                                     best["f1_hi"])
    n_pos = int(results.query("feature == 'planted'")["n_test_pos"].iloc[0])
    assert planted["n_test_pos"] == n_pos
    assert summarize(results, min_positives=n_pos).set_index("feature").loc["planted", "few_positives"] == False  # noqa: E712
    assert summarize(results, min_positives=n_pos + 1).set_index("feature").loc["planted", "few_positives"] == True  # noqa: E712


def test_compare_is_a_paired_test_on_the_sweeps_own_resamples(swept):
    source, out, results = swept
    splits = load_splits(splits_path(out))
    table = compare_probes(results, splits, source, a={"method": "random"}, b={"method": "mean_diff"},
                           features=["planted"])
    assert set(table["k_a"]) == set(results.query("method == 'random'")["k"])
    # At the planted layer, k = 1: mean_diff finds the neuron, random does not — a clear, paired gain.
    hit = table.query("layer_a == @PLANTED_LAYER and k_a == 1").iloc[0]
    assert hit["diff_lo"] > 0.3 and hit["p_value"] < 0.01 and hit["n_boot"] == N_BOOT
    stored = results.query("feature == 'planted' and layer == @PLANTED_LAYER and k == 1")
    assert hit["score_b"] == pytest.approx(stored.query("method == 'mean_diff'")["f1"].iloc[0], abs=1e-12)
    # The same draws as the stored intervals: brute-force replicates of both rows, differenced.
    test = _test_examples(out, "planted")
    rows = [stored.query(f"method == '{m}'").iloc[0] for m in ("random", "mean_diff")]
    d = _brute_replicates(source, test, rows[1], 0, "f1") - _brute_replicates(source, test, rows[0], 0, "f1")
    assert (hit["diff_lo"], hit["diff_hi"]) == pytest.approx(tuple(np.quantile(d, [0.025, 0.975])), abs=1e-12)
    # Probe against itself: no difference, p = 1.
    same = compare_probes(results, splits, source, a={"method": "mean_diff", "k": 2}, b={"method": "mean_diff",
                                                                                          "k": 2})
    assert (same["diff"] == 0).all() and (same["p_value"] == 1).all()
    assert (table["p_holm"] >= table["p_value"]).all()


def test_compare_refuses_mismatched_activations_and_bad_specs(swept):
    source, out, results = swept
    splits = load_splits(splits_path(out))
    other = make_source(seed=1)
    with pytest.raises(InputError, match="pass the cache this sweep read"):
        compare_probes(results, splits, other, a={"k": 1}, b={"k": 2}, features=["planted"])
    with pytest.raises(InputError, match="give some of"):
        compare_probes(results, splits, source, a={"neuron": 3}, b={"k": 2})
    with pytest.raises(InputError, match="no feature has both"):
        compare_probes(results, splits, source, a={"method": "osp"}, b={"k": 2})


def test_holm_matches_its_definition():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, 0.09 (monotone), 0.5
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])


def test_cli_summary_and_compare(swept, monkeypatch):
    from typer.testing import CliRunner

    import needle.activations
    from needle.cli import app

    source, out, _ = swept
    result = CliRunner().invoke(app, ["results", "summary", str(out)])
    assert result.exit_code == 0, result.output
    assert "95% bootstrap interval" in result.output and " [" in result.output
    assert "! " in result.output and "fewer than 50 test positives" in result.output  # 'planted' has about 45
    # The cache is an in-memory source here; the command only needs something with .layer().
    monkeypatch.setattr(needle.activations, "load_cache", lambda path: source)
    result = CliRunner().invoke(app, ["results", "compare", str(out), "--cache", "unused", "--a",
                                      "method=mean_diff,k=1", "--b", "method=mean_diff,k=8"])
    assert result.exit_code == 0, result.output
    assert "pairs: B above A in" in result.output and "Holm" in result.output
    result = CliRunner().invoke(app, ["results", "compare", str(out), "--cache", "unused", "--a", "k", "--b", "k=2"])
    assert result.exit_code != 0 and "must look like" in str(result.exception)


def test_osp_certificate_states_its_candidates_and_gamma_refit_ties_it_to_C(tmp_path):
    from needle.probing import OSPSelector, SparseProbe

    source = make_source()
    results = run(source, tmp_path / "osp.parquet", methods=("osp",), ks=(1, 2), C=0.05, baselines=False,
                  features=["planted"], layers=[PLANTED_LAYER], bootstrap=0,
                  method_params={"osp": {"gamma": "refit", "prefilter": 8, "time_limit": 20}})
    import json

    infos = [json.loads(text) for text in results["selection_info"]]
    assert all(info["gamma"] == 0.05 for info in infos)  # the refit's C, not osp's default 0.001
    assert (results["n_candidates"] == 8).all() and results["status"].eq("optimal").all()
    # SparseProbe: the same resolution, and its default stays 0.001.
    X = np.asarray(source.layer(PLANTED_LAYER), dtype=np.float32)
    y = source.feature("planted")[1]
    refit = SparseProbe(k=1, selector=OSPSelector(gamma="refit", prefilter=8), C=0.2).fit(X, y)
    default = SparseProbe(k=1, selector=OSPSelector(prefilter=8), C=0.2).fit(X, y)
    assert refit.n_candidates_ == 8
    assert refit.objective_ != default.objective_  # different gammas, different objectives on one support
    from needle.probing.template import CrossValidatedC

    with pytest.raises(InputError, match="needs a fixed C"):
        run(source, None, methods=("osp",), ks=(1,), C=CrossValidatedC(), baselines=False, features=["planted"],
            layers=[PLANTED_LAYER], method_params={"osp": {"gamma": "refit", "prefilter": 8}})


def test_multiclass_and_regression_rows_get_their_intervals_and_compare(tmp_path):
    from test_probing_tasks import _task_source

    out = tmp_path / "tasks.parquet"
    source = _task_source()
    results = run(source, out, methods=("mean_diff",), ks=(1, 2, 4), prefilter=None, bootstrap=N_BOOT)
    mc, reg = results[results["task"] == "multiclass"], results[results["task"] == "regression"]
    for frame, metrics, absent in ((mc, ("f1_macro", "accuracy"), ("f1", "r2")), (reg, ("r2",), ("f1", "f1_macro"))):
        for m in metrics:
            assert frame[f"{m}_lo"].notna().all() and (frame[f"{m}_lo"] <= frame[f"{m}_hi"]).all()
        for m in absent:
            assert frame[f"{m}_lo"].isna().all()
    # compare recomputes multiclass scores from the flattened coefficients and class intercepts (checked against
    # the stored metric), and regression scores from coef and intercept.
    table = compare_probes(results, load_splits(splits_path(out)), source, a={"k": 1}, b={"k": 4})
    assert set(table["metric"]) == {"f1_macro", "r2"}
    stored = results.set_index(["feature", "layer", "method", "k"])
    for row in table.itertuples():
        assert row.score_b == pytest.approx(stored.loc[(row.feature, row.layer_b, row.method_b, 4),
                                                       row.metric], abs=1e-9)
    assert table.query("metric == 'f1_macro' and layer_a == 0")["diff_lo"].iloc[0] > 0  # two planted neurons > one
