"""Ridge with leave-one-out alpha from one decomposition, against scikit-learn and brute-force refits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV

from needle.errors import InputError
from needle.probing.ridge import ridge_loo, ridge_loo_pca, spectrum

ALPHAS = np.logspace(-2, 3, 11)


def _problem(n, d, seed=0, targets=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d)
    Y = X[:, :4] @ rng.normal(size=(4, targets)) + rng.normal(size=(n, targets)) * 2
    return X, Y


@pytest.mark.parametrize("n, d", [(80, 20), (30, 60)])  # the d × d and the n × n Gram paths
def test_chosen_alpha_and_coefficients_match_ridgecv(n, d):
    X, Y = _problem(n, d)
    path = ridge_loo(X, Y, ALPHAS)
    for t in range(Y.shape[1]):
        reference = RidgeCV(alphas=ALPHAS).fit(X, Y[:, t])
        assert path.alpha[t] == reference.alpha_
        np.testing.assert_allclose(path.coef[:, t], reference.coef_, atol=1e-9)
        assert path.intercept[t] == pytest.approx(reference.intercept_, abs=1e-9)
    np.testing.assert_allclose(path.predict(X), np.c_[[RidgeCV(alphas=ALPHAS).fit(X, Y[:, t]).predict(X)
                                                       for t in range(2)]].T, atol=1e-9)


def test_leave_one_out_error_equals_refits():
    X, Y = _problem(25, 8, seed=3)
    path = ridge_loo(X, Y, ALPHAS)
    for a in (0, 5, 10):
        errors = []
        for i in range(len(X)):
            keep = np.arange(len(X)) != i
            fit = Ridge(alpha=ALPHAS[a]).fit(X[keep], Y[keep])
            errors.append((fit.predict(X[i : i + 1])[0] - Y[i]) ** 2)
        np.testing.assert_allclose(path.loo_mse[a], np.mean(errors, axis=0), rtol=1e-9)


def test_pca_probes_equal_ridge_on_sklearn_components():
    X, Y = _problem(60, 30, seed=1)
    paths = ridge_loo_pca(X, Y[:, 0], [1, 3, 7, 500], ALPHAS)
    assert sorted(paths) == [1, 3, 7]  # k above the rank is skipped
    for k, path in paths.items():
        Z = PCA(k).fit(X).transform(X)
        reference = RidgeCV(alphas=ALPHAS).fit(Z, Y[:, 0])
        assert path.alpha[0] == reference.alpha_
        np.testing.assert_allclose(path.predict(X)[:, 0], reference.predict(Z), atol=1e-9)


def test_spectrum_is_the_svd_of_the_centred_design():
    X, _ = _problem(40, 12)
    spec = spectrum(X)
    np.testing.assert_allclose(spec.s, np.linalg.svd(X - X.mean(0), compute_uv=False), rtol=1e-9)
    np.testing.assert_allclose((spec.U * spec.s) @ spec.V.T, X - X.mean(0), atol=1e-9)


def test_bad_inputs():
    X, Y = _problem(10, 5)
    with pytest.raises(InputError, match="alphas"):
        ridge_loo(X, Y, [0.0, 1.0])
    with pytest.raises(InputError, match="examples"):
        ridge_loo(X, Y[:5], ALPHAS)
    with pytest.raises(InputError, match="constant"):
        ridge_loo(np.ones((5, 3)), Y[:5], ALPHAS)
