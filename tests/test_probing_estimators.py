"""The probes honour scikit-learn's estimator contract and compute what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from needle.errors import InputError
from needle.probing import AdaptiveSelector, DenseProbe, RandomDirectionsProbe, SparseProbe, random_orthonormal

ESTIMATORS = [
    SparseProbe(k=2),
    SparseProbe(k=2, selector="f_stat"),
    SparseProbe(k=2, selector="adaptive"),
    SparseProbe(k=2, selector="random"),
    DenseProbe(),
    RandomDirectionsProbe(k=2),
]


def _expected_failed_checks(estimator):
    # Every check of scikit-learn 1.9 passes. Declared as binary-only through
    # __sklearn_tags__ (classifier_tags.multi_class = False), the probes are
    # checked on binary problems, and check_classifier_not_supporting_multiclass
    # verifies the error they raise on more classes. (check_array_api_input is
    # skipped by scikit-learn itself unless SCIPY_ARRAY_API is set.)
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _planted(seed=0, n=300, d=30, neuron=11, shift=3.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    X = rng.normal(size=(n, d)) * rng.uniform(0.2, 5.0, size=d) + rng.normal(size=d)
    X[:, neuron] += shift * y * X[:, neuron].std()
    return X, y


def test_pipeline_with_scaler():
    X, y = _planted()
    pipe = Pipeline([("scale", StandardScaler()), ("probe", SparseProbe(k=3, selector="f_stat"))]).fit(X, y)
    assert 11 in pipe.named_steps["probe"].support_
    assert pipe.score(X, y) > 0.9
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.9


def test_clone_and_set_params():
    probe = SparseProbe(k=3, selector=AdaptiveSelector(C_scale=0.1), random_state=4)
    twin = clone(probe)
    assert twin.get_params() == probe.get_params() and twin is not probe
    twin.set_params(k=5, selector="mean_diff")
    assert (twin.k, twin.selector, probe.k) == (5, "mean_diff", 3)
    X, y = _planted()
    twin.fit(X, y)
    assert len(twin.support_) == 5
    with pytest.raises(NotFittedError):
        probe.predict(X)  # the clone's fit did not touch the original


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
@pytest.mark.parametrize("method", ["predict", "decision_function", "predict_proba"])
def test_not_fitted(estimator, method):
    with pytest.raises(NotFittedError):
        getattr(clone(estimator), method)(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "estimator,match",
    [
        (SparseProbe(k=0), "k must be"),
        (SparseProbe(k=-2), "k must be"),
        (SparseProbe(k=1.5), "k must be"),
        (SparseProbe(C=0), "C must be"),
        (SparseProbe(C=-1.0), "C must be"),
        (SparseProbe(prefilter=0), "prefilter must be"),
        (SparseProbe(selector="nope"), "unknown selection method"),
        (SparseProbe(selector=42), "a name or a Selector object"),
        (RandomDirectionsProbe(k=0), "k must be"),
        (DenseProbe(C=float("inf")), "C must be"),
    ],
    ids=repr,
)
def test_bad_parameters(estimator, match):
    X, y = _planted()
    with pytest.raises(InputError, match=match):
        estimator.fit(X, y)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_one_class_and_three_classes(estimator):
    X, _ = _planted()
    with pytest.raises(ValueError, match="only one class"):
        clone(estimator).fit(X, np.ones(len(X)))
    three = np.arange(len(X)) % 3
    if not estimator.__sklearn_tags__().classifier_tags.multi_class:
        with pytest.raises(ValueError, match="binary"):
            clone(estimator).fit(X, three)
        return
    # Multiclass: the multinomial balanced logistic regression of scikit-learn on the probe's standardised inputs.
    probe = clone(estimator).fit(X, three)
    assert probe.coef_.shape == (3, X.shape[1]) and probe.intercept_.shape == (3,)
    if isinstance(probe, (SparseProbe, DenseProbe)):
        cols = probe.support_
        Z = (X[:, cols] - probe.mean_) / probe.scale_
        reference = LogisticRegression(C=probe.C, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Z, three)
        np.testing.assert_allclose(probe.decision_function(X) - probe.decision_function(X).mean(1, keepdims=True),
                                   reference.decision_function(Z) - reference.decision_function(Z).mean(1, keepdims=True),
                                   atol=2e-3)


def test_sparse_probe_is_logistic_regression_on_standardised_support():
    X, y = _planted(1)
    probe = SparseProbe(k=4, selector="mean_diff", C=0.3).fit(X, y)
    cols = probe.support_
    assert list(cols) == sorted(cols) and 11 in cols
    Z = (X[:, cols] - X[:, cols].mean(0)) / X[:, cols].std(0)
    ref = LogisticRegression(C=0.3, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(Z), rtol=1e-5, atol=1e-6)
    # coef_ is in input units and zero off the support
    assert probe.coef_.shape == (1, X.shape[1])
    assert np.count_nonzero(probe.coef_) == 4
    np.testing.assert_allclose(probe.coef_[0, cols] * X[:, cols].std(0), ref.coef_[0], rtol=1e-5)
    proba = probe.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(probe.predict(X), np.where(proba[:, 1] > 0.5, 1, 0))


def test_string_labels_and_positive_class():
    X, y = _planted(2)
    labels = np.where(y == 1, "verb", "noun")  # sorted: classes_ = [noun, verb]
    probe = SparseProbe(k=1).fit(X, labels)
    assert list(probe.classes_) == ["noun", "verb"]
    assert probe.coef_[0, 11] > 0  # 'verb' (the shifted class) is positive
    assert set(probe.predict(X)) <= {"noun", "verb"}


def test_prefilter_restricts_candidates():
    X, y = _planted(3, d=40)
    probe = SparseProbe(k=3, selector="random", prefilter=5, random_state=0).fit(X, y)
    top5 = np.argsort(-np.abs(X[y == 1].mean(0) - X[y == 0].mean(0)), kind="stable")[:5]
    assert set(probe.support_) <= set(top5)


def test_k_above_candidates_warns_and_caps():
    X, y = _planted(4, d=6, neuron=2)
    with pytest.warns(UserWarning, match="exceeds"):
        probe = SparseProbe(k=10).fit(X, y)
    assert len(probe.support_) == 6
    with pytest.warns(UserWarning, match="exceeds"):
        probe = SparseProbe(k=10, prefilter=3).fit(X, y)
    assert len(probe.support_) == 3


def test_dense_probe_matches_sklearn():
    X, y = _planted(5)
    probe = DenseProbe(C=0.05, tol=1e-10, max_iter=10_000).fit(X, y)
    Z = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(C=0.05, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(Z), rtol=1e-5, atol=1e-6)
    assert len(probe.support_) == X.shape[1]


def test_random_directions_probe():
    X, y = _planted(6)
    probe = RandomDirectionsProbe(k=4, random_state=3).fit(X, y)
    Q = probe.components_
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(Q, random_orthonormal(X.shape[1], 4, 3))
    Z = ((X - X.mean(0)) / X.std(0)) @ Q
    ref = LogisticRegression(C=0.01, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(probe.direction_coef_, ref.coef_[0], rtol=1e-4)
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(Z), rtol=1e-5, atol=1e-6)
    # different seeds, different directions; same seed, same probe
    assert not np.allclose(RandomDirectionsProbe(k=4, random_state=4).fit(X, y).components_, Q)
    np.testing.assert_array_equal(RandomDirectionsProbe(k=4, random_state=3).fit(X, y).coef_, probe.coef_)


def test_random_orthonormal_prefixes_are_nested():
    Q8 = random_orthonormal(20, 8, 5)
    for j in (1, 3, 8):
        np.testing.assert_allclose(random_orthonormal(20, j, 5), Q8[:, :j], atol=1e-12)
    with pytest.raises(InputError):
        random_orthonormal(3, 4, 0)
