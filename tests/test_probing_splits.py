"""Group splits keep documents whole, stratify, are seeded, and fail clearly; metrics match scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from needle.errors import InputError
from needle.probing.metrics import METRICS, binary_metrics, binary_metrics_batch, f1, roc_auc
from needle.probing.splits import (
    derive_seed,
    group_train_test_split,
    load_splits,
    splits_frame,
    splits_path,
    write_splits,
)


def _data(seed, n_groups=60, per_group=(1, 30), pos_rate=0.2, clustered=False):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per_group[0], per_group[1] + 1, size=n_groups)
    groups = np.repeat([f"doc{i}" for i in range(n_groups)], sizes)
    if clustered:  # positives concentrated in a few documents
        rate = np.where(rng.random(n_groups) < 0.15, 0.8, 0.0)
        y = (rng.random(groups.size) < np.repeat(rate, sizes)).astype(int)
    else:
        y = (rng.random(groups.size) < pos_rate).astype(int)
    return groups, y


def _check_split(groups, y, test):
    assert not set(groups[test]) & set(groups[~test]), "a group on both sides"
    assert y[test].sum() > 0 and (1 - y[test]).sum() > 0
    assert y[~test].sum() > 0 and (1 - y[~test]).sum() > 0


@pytest.mark.parametrize("seed", range(25))
def test_split_invariants(seed):
    groups, y = _data(seed, clustered=seed % 2 == 1)
    if len(set(groups[y == 1])) < 2:
        pytest.skip("this draw has positives in one group")
    test = group_train_test_split(groups, y, test_size=0.3, seed=seed)
    _check_split(groups, y, test)


def test_split_fraction_is_close_to_the_target():
    groups, y = _data(0, n_groups=400, per_group=(1, 10))
    test = group_train_test_split(groups, y, test_size=0.3, seed=1)
    assert abs(y[test].sum() / y.sum() - 0.3) < 0.03
    assert abs((1 - y[test]).sum() / (1 - y).sum() - 0.3) < 0.03


def test_split_is_seeded():
    groups, y = _data(3)
    a = group_train_test_split(groups, y, seed=7)
    assert np.array_equal(a, group_train_test_split(groups, y, seed=7))
    assert not np.array_equal(a, group_train_test_split(groups, y, seed=8))


def test_split_with_anchors_when_greedy_cannot():
    # Positives only in two documents, one of them huge: the greedy pass alone would
    # put both on one side; the anchored rebuild keeps both classes on both sides.
    groups = np.array(["big"] * 100 + ["small"] * 3 + [f"n{i}" for i in range(20)])
    y = np.array([1] * 90 + [0] * 10 + [1, 1, 0] + [0] * 20)
    for seed in range(10):
        test = group_train_test_split(groups, y, test_size=0.3, seed=seed)
        _check_split(groups, y, test)
    # negatives only in the positive documents' complement, positives in exactly two documents
    groups = np.array(["a", "a", "b", "b", "c", "d"])
    y = np.array([1, 1, 1, 1, 0, 0])
    for seed in range(10):
        _check_split(groups, y, group_train_test_split(groups, y, test_size=0.5, seed=seed))


def test_split_errors():
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(InputError, match="only one class"):
        group_train_test_split(groups, np.array([0, 0, 0, 0]), name="is_verb")
    with pytest.raises(InputError, match=r"all 2 positive examples come from the single group 'a'"):
        group_train_test_split(groups, np.array([1, 1, 0, 0]), name="is_verb")
    with pytest.raises(InputError, match="negative"):
        group_train_test_split(groups, np.array([1, 1, 1, 0]), name="is_verb")
    with pytest.raises(InputError, match="test_size"):
        group_train_test_split(groups, np.array([1, 0, 1, 0]), test_size=1.0)


def test_derive_seed_is_stable():
    assert derive_seed(0, "split", "is_verb") == derive_seed(0, "split", "is_verb")
    assert derive_seed(0, "split", "is_verb") != derive_seed(1, "split", "is_verb")
    assert derive_seed(0, "split", "is_verb") == 158350146  # fixed across processes and machines


def test_splits_file_roundtrip_and_conflicts(tmp_path):
    assert splits_path(tmp_path / "r.parquet") == tmp_path / "r.splits.parquet"
    assert splits_path("out/sweep") == splits_path("out/sweep.parquet")
    groups, y = _data(4)
    test = group_train_test_split(groups, y, seed=0)
    rows = np.arange(len(y)) * 2
    frame = splits_frame("h", "f", rows, groups, y, test, seed=0, test_size=0.3)
    path = tmp_path / "r.splits.parquet"
    write_splits(path, frame)
    write_splits(path, frame)  # identical again: no duplicates
    other = splits_frame("h", "g", rows, groups, y, test, seed=0, test_size=0.3)
    table = write_splits(path, other)
    assert len(table) == 2 * len(y)
    loaded = load_splits(path)
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    assert loaded.groupby("feature").size().to_dict() == {"f": len(y), "g": len(y)}
    changed = splits_frame("h", "f", rows, groups, y, ~test, seed=0, test_size=0.3)
    with pytest.raises(InputError, match="different splits"):
        write_splits(path, changed)


# ------------------------------------------------------------------------ metrics


def test_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    scores = np.round(rng.normal(size=(5, 300)) + y, 1)  # rounding makes ties
    batch = binary_metrics_batch(y, scores)
    for j in range(5):
        pred = scores[j] > 0
        expected = {
            "f1": skm.f1_score(y, pred),
            "precision": skm.precision_score(y, pred),
            "recall": skm.recall_score(y, pred),
            "mcc": skm.matthews_corrcoef(y, pred),
            "accuracy": skm.accuracy_score(y, pred),
            "roc_auc": skm.roc_auc_score(y, scores[j]),
        }
        for name in METRICS:
            assert batch[name][j] == pytest.approx(expected[name], abs=1e-12), name
        assert binary_metrics(y, scores[j]) == pytest.approx({n: batch[n][j] for n in batch})
        assert batch["f1_weighted"][j] == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)


def test_metrics_zero_division_and_auc_from_scores():
    y = np.array([0, 0, 1, 1])
    nothing = binary_metrics(y, np.array([-1.0, -2.0, -0.5, -0.1]))  # predicts no positive
    assert nothing["precision"] == 0.0 and nothing["f1"] == 0.0 and nothing["mcc"] == 0.0
    assert nothing["roc_auc"] == 1.0  # the scores still rank positives first
    assert f1(y, np.array([1.0, -1, 1, 1])) == pytest.approx(0.8)
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))
    with pytest.raises(InputError):
        binary_metrics_batch(y, np.zeros((2, 3)))
