"""Scoring functions against hand computations and scikit-learn; selectors; the method registry."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from sklearn.feature_selection import f_classif, mutual_info_classif
from sklearn.linear_model import LogisticRegression

from needle.errors import InputError
from needle.probing import (
    AdaptiveSelector,
    SelectionPath,
    Selector,
    SparseProbe,
    available_methods,
    f_stat_score,
    get_selector,
    l1_score,
    mean_diff_score,
    mutual_info_score,
    rank_by_score,
    register_method,
)
from needle.probing import selection as selection_module

GRID = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32]


def _planted(seed=0, n=400, d=60, neuron=17, shift=2.5, pos_frac=0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_frac).astype(np.int8)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
    X[:, neuron] += shift * y
    return X, y


def test_mean_diff_by_hand():
    X = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 1.0], [0.0, 1.0, 1.0], [2.0, 3.0, 0.0]])
    y = np.array([1, 1, 0, 0])
    # positives: means (2, 5, 0.5); negatives: (1, 2, 0.5)
    np.testing.assert_allclose(mean_diff_score(X, y), [1.0, 3.0, 0.0])
    # float16 input is accumulated in float64
    assert mean_diff_score(X.astype(np.float16), y).dtype == np.float64


def test_f_stat_matches_sklearn_and_hand():
    X, y = _planted(1)
    np.testing.assert_allclose(f_stat_score(X, y), f_classif(X, y)[0])
    # one-way ANOVA with two groups by hand for one column
    x = X[:, 3]
    groups = [x[y == 1], x[y == 0]]
    grand = x.mean()
    ssb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups)
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    assert f_stat_score(X, y)[3] == pytest.approx(ssb / (ssw / (len(x) - 2)))
    X[:, 5] = 1.0  # constant: F is 0/0, scored 0
    assert f_stat_score(X, y)[5] == 0.0


def test_mutual_info_matches_sklearn():
    X, y = _planted(2, n=200, d=8, neuron=3)
    ours = mutual_info_score(X, y, random_state=3)
    theirs = mutual_info_classif(X, y, discrete_features=False, random_state=3)
    np.testing.assert_allclose(ours, theirs)
    assert np.argmax(ours) == 3


def test_l1_score_is_abs_l1_coefficients():
    X, y = _planted(3, n=300, d=15, neuron=4)
    scores = l1_score(X, y, C=0.05)
    Z = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(C=0.05, l1_ratio=1.0, solver="saga", class_weight="balanced", tol=1e-10,
                             max_iter=100_000, random_state=0).fit(Z, y)
    np.testing.assert_allclose(scores, np.abs(ref.coef_[0]), atol=2e-4)
    assert np.argmax(scores) == 4
    assert (scores == 0).sum() >= 5  # L1 zeros out irrelevant neurons


def test_rank_by_score_ties_are_stable_and_nan_last():
    scores = np.array([0.5, 2.0, np.nan, 2.0, 0.5, 0.0])
    np.testing.assert_array_equal(rank_by_score(scores), [1, 3, 0, 4, 5, 2])


@pytest.mark.parametrize("method", ["mean_diff", "f_stat", "mutual_info", "l1", "adaptive"])
def test_methods_find_a_planted_neuron(method):
    X, y = _planted(4)
    probe = SparseProbe(k=1, selector=method, random_state=0).fit(X, y)
    np.testing.assert_array_equal(probe.support_, [17])


def test_mean_diff_k1_is_the_exhaustive_argmax():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n, d = 12, 5
        X = rng.integers(-3, 4, size=(n, d)).astype(float)
        y = np.array([1] * 5 + [0] * 7)
        rng.shuffle(y)
        # by hand: every neuron's |mean_P - mean_N| in exact rational arithmetic
        scores = []
        for j in range(d):
            pos = [Fraction(X[i, j]) for i in range(n) if y[i] == 1]
            neg = [Fraction(X[i, j]) for i in range(n) if y[i] == 0]
            scores.append(abs(sum(pos) / len(pos) - sum(neg) / len(neg)))
        # exhaustive over singletons: the argmax, lowest index on ties
        best = min(range(d), key=lambda j: (-scores[j], j))
        assert SparseProbe(k=1).fit(X, y).support_[0] == best
        # exhaustive over pairs: the pair with the largest total score, ties to the lexicographically first
        pair = min(itertools.combinations(range(d), 2), key=lambda p: (-(scores[p[0]] + scores[p[1]]), p))
        if sorted(scores)[-2] != sorted(scores)[-3]:  # a unique best pair
            assert tuple(SparseProbe(k=2).fit(X, y).support_) == pair


def test_adaptive_gives_nested_supports_of_every_size():
    X, y = _planted(6, n=500, d=80)
    path = get_selector("adaptive").select_path(X, y, GRID + [80, 100])
    assert path.ks == GRID + [80, 100]
    for k, support in zip(path.ks, path.supports):
        assert support.size == min(k, 80) and np.unique(support).size == support.size
    for small, large in zip(path.supports, path.supports[1:]):
        assert set(small) <= set(large)
    assert path.supports[0][0] == 17
    info = dict(zip(path.ks, path.info))
    assert info[32]["fit_on"] == 80 and info[1]["fit_on"] == 2 and info[80] == {}


def test_adaptive_schedule_is_the_papers():
    sel = AdaptiveSelector()
    assert sel.schedule(20) == pytest.approx((1.0, np.exp(-1.0)))
    assert sel.schedule(256) == pytest.approx((12.8, 0.1))
    assert sel.schedule(1) == pytest.approx((0.05, 0.9))


def test_random_selector_is_seeded_and_nested():
    X, y = _planted(7)
    sel = get_selector("random")
    a = sel.select_path(X, y, [1, 5, 20], random_state=3)
    b = sel.select_path(X, y, [1, 5, 20], random_state=3)
    c = sel.select_path(X, y, [1, 5, 20], random_state=4)
    assert all(np.array_equal(u, v) for u, v in zip(a.supports, b.supports))
    assert not np.array_equal(a.supports[2], c.supports[2])
    assert set(a.supports[1]) <= set(a.supports[2])


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(InputError) as info:
        get_selector("telepathy")
    for name in ("mean_diff", "f_stat", "adaptive", "random", "l1", "mutual_info"):
        assert name in str(info.value)
    with pytest.raises(InputError, match="available methods"):
        SparseProbe(selector="telepathy").fit(np.eye(4), [0, 1, 0, 1])


def test_bad_method_parameters_are_reported():
    with pytest.raises(InputError, match="accepts"):
        get_selector("mean_diff", C=1.0)
    with pytest.raises(InputError, match="accepts"):
        get_selector("adaptive", nonsense=3)
    assert get_selector("l1", C=0.5).get_params() == {"C": 0.5, "tol": 1e-9, "max_iter": 200}  # defaults recorded too


def test_registering_a_method_makes_it_usable_everywhere(monkeypatch):
    monkeypatch.setattr(selection_module, "_REGISTRY", dict(selection_module._REGISTRY))

    @register_method("last_columns")
    class LastColumns(Selector):
        def __init__(self, *, offset: int = 0):
            self.offset = offset

        def select_path(self, X, y, ks, *, random_state=None):
            d = X.shape[1]
            return SelectionPath(ks=list(ks), supports=[np.arange(d - k, d) for k in ks], info=[{"k": k} for k in ks])

    assert "last_columns" in available_methods()
    X, y = _planted(8, d=10, neuron=2)
    probe = SparseProbe(k=2, selector="last_columns").fit(X, y)
    assert probe.selection_info_ == {"k": 2} and len(probe.support_) == 2
    with pytest.raises(InputError, match="already registered"):
        register_method("last_columns", LastColumns)
    with pytest.raises(InputError, match="reserved"):
        register_method("dense", LastColumns)


def test_installed_packages_register_methods_through_entry_points(monkeypatch):
    # A package declaring a Selector in the "needle.selectors" entry-point group makes it available by name,
    # with no edit to needle; osp is part of the engine and registered on import.
    import importlib.metadata

    class FirstTwo(Selector):
        def select_path(self, X, y, ks, *, task="binary", random_state=None):
            return SelectionPath(ks=list(ks), supports=[np.arange(k) for k in ks])

    class Point:
        name = "first_two"

        @staticmethod
        def load():
            return FirstTwo

    monkeypatch.setattr(selection_module, "_REGISTRY", dict(selection_module._REGISTRY))
    monkeypatch.setattr(selection_module, "_entry_points_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [Point] if group == selection_module.ENTRY_POINT_GROUP else [])
    assert "first_two" in available_methods() and "osp" in available_methods()
    assert isinstance(get_selector("first_two"), FirstTwo)
    with pytest.raises(InputError, match="unknown selection method 'fake_osp'"):
        get_selector("fake_osp")


def test_scores_need_both_classes():
    with pytest.raises(InputError, match="both classes"):
        mean_diff_score(np.ones((4, 2)), np.zeros(4))
