"""A user's own table, end to end: regression, multiclass and binary probes through extraction, sweep and summary.

Random weights test plumbing here, not findings: what is checked is that every
task flows through the pipeline with its own metrics and that each stored row
recomputes from its coefficients.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, r2_score
from typer.testing import CliRunner

from model_zoo import build_model
from needle.activations import extract
from needle.cli import app
from needle.datasets.table import build_table
from needle.models import adapt
from needle.probing import load_results, load_splits, splits_path

WORDS = ["alpha", "beta", "gamma", "delta", "def", "class", "return", "value", "the", "a"]


def _table(n=90, seed=0):
    rng = np.random.default_rng(seed)
    texts, lengths, kinds, flags = [], [], [], []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(2, 9)))
        texts.append(" ".join(words))
        lengths.append(float(len(words)) + 0.1 * rng.normal())
        kinds.append(["short", "medium", "long"][min(2, (len(words) - 2) // 2)])
        flags.append(int("def" in words))
    return pd.DataFrame({"text": texts, "length": lengths, "kind": kinds, "has_def": flags,
                         "doc": [f"d{i // 3}" for i in range(n)]})


def test_table_regression_multiclass_and_binary_through_the_sweep(tmp_path, bpe_tokenizer):
    data = _table()
    dataset = build_table(data, bpe_tokenizer, label_columns=["length", "kind", "has_def"], group_column="doc",
                          position="mean")
    tasks = {f["name"]: f.get("task", "binary") for f in dataset.features}
    assert tasks == {"length": "regression", "kind": "multiclass", "has_def": "binary"}
    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer)
    cache = extract(adapter, dataset, tmp_path / "cache", progress=False)
    out = tmp_path / "results.parquet"
    runner = CliRunner()
    result = runner.invoke(app, ["probe", "--cache", str(tmp_path / "cache"), "--out", str(out), "--methods",
                                 "mean_diff,f_stat", "--k", "1,2,4", "--prefilter", "0"])
    assert result.exit_code == 0, result.output
    results = load_results(out)
    by_task = results.groupby("task")
    assert set(by_task.groups) == {"regression", "multiclass", "binary"}
    reg, mc, binary = (results[results["task"] == t] for t in ("regression", "multiclass", "binary"))
    assert reg["r2"].notna().all() and reg["spearman"].notna().all() and reg["f1"].isna().all()
    assert mc["f1_macro"].notna().all() and mc["r2"].isna().all() and binary["f1"].notna().all()
    assert set(results["method"]) == {"mean_diff", "f_stat", "dense", "random_directions"}
    # every row recomputes from its coefficients and the saved split
    splits = load_splits(splits_path(out))
    for _, row in results[results["method"] != "random_directions"].iterrows():
        part = splits[splits["feature"] == row["feature"]].sort_values("example")
        test = part["split"].to_numpy() == "test"
        X = cache.layer(row["layer"])[part["row"].to_numpy()[test]].astype(np.float64)[:, row["neurons"]]
        y = part["y"].to_numpy()[test]
        if row["task"] == "regression":
            assert abs(r2_score(y, X @ row["coef"] + row["intercept"]) - row["r2"]) < 1e-9
        elif row["task"] == "multiclass":
            coef = np.asarray(row["coef"]).reshape(len(row["class_intercepts"]), -1)
            pred = (X @ coef.T + row["class_intercepts"]).argmax(1)
            assert abs(f1_score(y, pred, average="macro") - row["f1_macro"]) < 1e-12
        else:
            assert abs(f1_score(y, X @ row["coef"] + row["intercept"] > 0) - row["f1"]) < 1e-12
    summary = runner.invoke(app, ["results", "summary", str(out)])
    assert summary.exit_code == 0, summary.output
    assert "r2" in summary.output and "f1_macro" in summary.output and "length" in summary.output
