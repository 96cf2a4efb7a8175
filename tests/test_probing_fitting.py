"""Batched Newton refits and the elastic-net solver agree with scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from needle.errors import InputError
from needle.probing.fitting import (
    balanced_sample_weight,
    fit_elastic_net_logistic,
    fit_logistic_batch,
    fit_logistic_path,
)
from needle.probing.preprocessing import standardization


def _problem(seed, n, d, *, pos_frac, signal, noise_flip, scale_spread=True):
    """Correlated 'activations' with a planted direction; labels by threshold on it."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    X = rng.normal(size=(n, d)) + latent @ rng.normal(size=(4, d)) * 0.7
    if scale_spread:
        X *= rng.uniform(0.05, 3.0, size=d)
    w = np.zeros(d)
    w[: min(5, d)] = signal
    logits = (X / X.std(axis=0)) @ w
    y = (logits > np.quantile(logits, 1 - pos_frac)).astype(int)
    flip = rng.random(n) < noise_flip
    y[flip] = 1 - y[flip]
    return X, y


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


# (seed, n, d, pos_frac, signal, noise_flip, C): balanced and imbalanced,
# noisy and (nearly) separable, weak and strong regularisation.
PROBLEMS = [
    (0, 600, 40, 0.5, 0.3, 0.05, 1.0),
    (1, 900, 80, 0.1, 1.0, 0.02, 0.01),
    (2, 500, 30, 0.3, 5.0, 0.0, 10.0),  # separable: only the penalty keeps w finite
    (3, 800, 64, 0.05, 2.0, 0.01, 0.1),
    (4, 700, 140, 0.25, 20.0, 0.0, 100.0),  # separable, weak penalty
]


@pytest.mark.parametrize("seed,n,d,pos_frac,signal,noise,C", PROBLEMS)
def test_batched_path_matches_sklearn(seed, n, d, pos_frac, signal, noise, C):
    X, y = _problem(seed, n, d, pos_frac=pos_frac, signal=signal, noise_flip=noise)
    n_train = int(0.7 * n)
    mean, scale = standardization(X[:n_train])
    Z = (X - mean) / scale
    rng = np.random.default_rng(seed)
    order = rng.permutation(d)
    ks = [k for k in (1, 2, 3, 5, 8, 16, 33, 64, 128) if k <= d]
    supports = [order[:k] for k in ks]  # nested, like a ranking path
    supports.append(rng.choice(d, size=min(d, 12), replace=False))  # and one unrelated support
    fit = fit_logistic_path(Z[:n_train], y[:n_train], supports, C=C)
    assert fit.converged.all()
    for j, sup in enumerate(supports):
        ref = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=20_000).fit(Z[:n_train, sup], y[:n_train])
        ours = np.r_[fit.coef[j], fit.intercept[j]]
        theirs = np.r_[ref.coef_[0], ref.intercept_]
        assert _rel(ours, theirs) < 1e-3, (len(sup), _rel(ours, theirs))
        f1_ours = f1_score(y[n_train:], Z[n_train:, sup] @ fit.coef[j] + fit.intercept[j] > 0)
        f1_theirs = f1_score(y[n_train:], ref.predict(Z[n_train:, sup]))
        assert abs(f1_ours - f1_theirs) <= 0.005
        if C <= 1.0:
            # Also against scikit-learn at its default tolerance (1e-4), on the metric. (With a weak
            # penalty on separable data the default tolerance stops visibly short of the optimum.)
            default = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(Z[:n_train, sup], y[:n_train])
            assert abs(f1_ours - f1_score(y[n_train:], default.predict(Z[n_train:, sup]))) <= 0.005


def test_batch_of_unrelated_problems_and_padding():
    X, y = _problem(5, 400, 20, pos_frac=0.3, signal=1.0, noise_flip=0.05)
    X = (X - X.mean(0)) / X.std(0)
    stack = np.zeros((3, 400, 6))
    stack[0, :, :2] = X[:, [0, 1]]  # padded with four zero columns
    stack[1, :, :6] = X[:, 2:8]
    stack[2, :, :3] = X[:, [9, 4, 0]]
    fit = fit_logistic_batch(stack, y, C=0.5)
    assert np.all(fit.coef[0, 2:] == 0) and np.all(fit.coef[2, 3:] == 0)
    for b, cols in enumerate(([0, 1], list(range(2, 8)), [9, 4, 0])):
        ref = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(X[:, cols], y)
        assert _rel(fit.coef[b, : len(cols)], ref.coef_[0]) < 1e-4
        assert abs(fit.intercept[b] - ref.intercept_[0]) < 1e-4


def test_warm_start_does_not_change_the_answer():
    X, y = _problem(6, 500, 50, pos_frac=0.2, signal=2.0, noise_flip=0.02)
    Z = (X - X.mean(0)) / X.std(0)
    supports = [np.arange(k) for k in (1, 4, 16, 32, 50)]
    warm = fit_logistic_path(Z, y, supports, C=1.0, warm_start=True)
    cold = fit_logistic_path(Z, y, supports, C=1.0, warm_start=False)
    for a, b in zip(warm.coef, cold.coef):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sample_weight_and_balanced_weights():
    y = np.array([1, 0, 0, 0])
    np.testing.assert_allclose(balanced_sample_weight(y), [2.0, 2 / 3, 2 / 3, 2 / 3])
    with pytest.raises(InputError, match="both classes"):
        balanced_sample_weight(np.zeros(5))
    X, y = _problem(7, 300, 5, pos_frac=0.4, signal=1.0, noise_flip=0.1)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=300)
    fit = fit_logistic_batch(X[None], y, C=2.0, sample_weight=w)
    ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=w)
    assert _rel(fit.coef[0], ref.coef_[0]) < 1e-4


def test_constant_column_gets_zero_coefficient():
    X, y = _problem(8, 300, 4, pos_frac=0.3, signal=1.0, noise_flip=0.05)
    X[:, 2] = 3.25
    mean, scale = standardization(X)
    assert scale[2] == 1.0
    fit = fit_logistic_path((X - mean) / scale, y, [np.arange(4)])
    assert fit.coef[0][2] == 0.0


def test_not_converged_is_flagged_and_warned():
    X, y = _problem(9, 300, 10, pos_frac=0.3, signal=3.0, noise_flip=0.0)
    with pytest.warns(ConvergenceWarning):
        fit = fit_logistic_path(X, y, [np.arange(10)], C=100.0, max_iter=1)
    assert not fit.converged[0] and fit.n_iter[0] == 1


def test_bad_inputs():
    X = np.zeros((1, 5, 2))
    with pytest.raises(InputError, match="y has"):
        fit_logistic_batch(X, np.array([0, 1]))
    with pytest.raises(InputError, match="C must be"):
        fit_logistic_batch(np.ones((1, 4, 2)), np.array([0, 1, 0, 1]), C=0)
    with pytest.raises(InputError, match="at least one column"):
        fit_logistic_path(np.ones((4, 2)), np.array([0, 1, 0, 1]), [np.array([], dtype=int)])


@pytest.mark.parametrize("C,l1_ratio", [(1.0, 0.5), (0.05, 1.0), (5.0, 0.1), (0.3, 0.0)])
def test_elastic_net_matches_sklearn_saga(C, l1_ratio):
    X, y = _problem(10, 400, 25, pos_frac=0.3, signal=1.0, noise_flip=0.05)
    Z = (X - X.mean(0)) / X.std(0)
    ours = fit_elastic_net_logistic(Z, y, C=C, l1_ratio=l1_ratio, tol=1e-9)
    assert ours.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LogisticRegression(
            C=C, l1_ratio=l1_ratio, solver="saga", class_weight="balanced", tol=1e-10, max_iter=100_000, random_state=0
        ).fit(Z, y)
    assert _rel(ours.coef, ref.coef_[0]) < 1e-3
    # the same exact zeros (the point of the L1 part), up to solver noise at the threshold
    assert np.sum((ours.coef == 0) != (np.abs(ref.coef_[0]) < 1e-8)) <= 1


def test_elastic_net_warm_start_and_bad_ratio():
    X, y = _problem(11, 300, 12, pos_frac=0.4, signal=1.0, noise_flip=0.05)
    Z = (X - X.mean(0)) / X.std(0)
    cold = fit_elastic_net_logistic(Z, y, C=0.5, l1_ratio=0.5, tol=1e-9)
    warm = fit_elastic_net_logistic(Z, y, C=0.5, l1_ratio=0.5, tol=1e-9, coef_init=cold.coef, intercept_init=cold.intercept)
    assert warm.n_iter <= 2
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-7)
    with pytest.raises(InputError, match="l1_ratio"):
        fit_elastic_net_logistic(Z, y, C=1.0, l1_ratio=1.5)


def test_working_sets_give_the_full_problems_solution():
    rng = np.random.default_rng(5)
    n, d = 400, 200
    X = rng.normal(size=(n, d))
    y = (X[:, :4] @ np.array([1.5, -1.0, 0.8, 0.6]) + rng.normal(scale=0.8, size=n) > 0).astype(int)
    for C, l1_ratio in ((0.05, 1.0), (0.2, 0.7)):
        full = fit_elastic_net_logistic(X, y, C=C, l1_ratio=l1_ratio, tol=1e-10, working_set=False)
        grown = fit_elastic_net_logistic(X, y, C=C, l1_ratio=l1_ratio, tol=1e-10)
        assert full.converged and grown.converged
        assert 0 < np.count_nonzero(grown.coef) < d
        np.testing.assert_array_equal(grown.coef != 0, full.coef != 0)
        np.testing.assert_allclose(grown.coef, full.coef, atol=1e-7)
        assert abs(grown.intercept - full.intercept) < 1e-7


def test_wide_elastic_net_by_conjugate_gradients_matches_direct_newton_and_sklearn(monkeypatch):
    """Wide systems solve Newton steps by preconditioned CG; same optimum as exact Hessians (and as lbfgs for ridge)."""
    from needle.probing import fitting

    X, y = _problem(12, 500, 300, pos_frac=0.2, signal=2.0, noise_flip=0.02)
    Z = (X - X.mean(0)) / X.std(0) * 0.1
    assert Z.shape[1] > fitting._PCG_MIN_WIDTH
    for C, l1_ratio in ((15.0, 0.1), (2.0, 0.0)):
        cg = fit_elastic_net_logistic(Z, y, C=C, l1_ratio=l1_ratio, tol=1e-10)
        with monkeypatch.context() as patch:
            patch.setattr(fitting, "_PCG_MIN_WIDTH", 10_000)  # exact Hessians at every step
            direct = fit_elastic_net_logistic(Z, y, C=C, l1_ratio=l1_ratio, tol=1e-10)
        assert cg.converged and direct.converged
        assert _rel(cg.coef, direct.coef) < 1e-6
        assert abs(cg.intercept - direct.intercept) < 1e-6
        np.testing.assert_array_equal(cg.coef == 0, direct.coef == 0)
        if l1_ratio == 0.0:
            ref = LogisticRegression(C=C, l1_ratio=0.0, class_weight="balanced", tol=1e-10, max_iter=20_000).fit(Z, y)
            assert _rel(cg.coef, ref.coef_[0]) < 1e-4
