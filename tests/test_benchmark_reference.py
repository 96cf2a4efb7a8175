"""The probe-speed benchmark's converged reference solves the problem scikit-learn and needle solve.

``benchmarks/probe_speed.py --recheck lbfgsb`` judges needle's l1/adaptive selections against an
elastic-net logistic fit by scipy's L-BFGS-B; that judgement is only worth something if the reference
reaches the same optimum as scikit-learn's SAGA run to convergence.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from benchmark_scripts import load_benchmark
from needle.probing.fitting import fit_elastic_net_logistic


@pytest.fixture(scope="module")
def probe_speed():
    """The benchmark script as a module."""
    return load_benchmark("probe_speed.py")


def _problem(seed: int, n: int = 300, m: int = 25):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m))
    X[:, 1] = X[:, 0] + 0.3 * rng.normal(size=n)  # correlated columns, as neurons are
    y = (X[:, 0] - 0.7 * X[:, 2] + rng.normal(size=n) > 1.0).astype(np.int8)  # unbalanced classes
    return X, y


@pytest.mark.parametrize(("C", "l1_ratio"), [(0.01, 1.0), (0.2, 0.9), (1.5, 0.3), (5.0, 0.1)])
def test_lbfgsb_reference_equals_converged_saga_and_needle(probe_speed, C, l1_ratio):
    X, y = _problem(0)
    counter = probe_speed.FitCounter()
    w = probe_speed._elastic_net_lbfgsb(X, y, C, l1_ratio, "test", counter)
    assert counter.fits == {"test (L-BFGS-B)": 1} and not counter.unconverged

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would make the comparison meaningless
        saga = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", class_weight="balanced", tol=1e-12,
                                  max_iter=200_000).fit(X, y)
    np.testing.assert_allclose(w, saga.coef_[0], atol=1e-6)
    np.testing.assert_array_equal(w == 0, saga.coef_[0] == 0)

    fit = fit_elastic_net_logistic(X, y, C=C, l1_ratio=l1_ratio, tol=1e-10, max_iter=500)  # balanced weights
    np.testing.assert_allclose(w, fit.coef, atol=1e-6)


def test_lbfgsb_reference_flags_a_fit_it_could_not_finish(probe_speed, monkeypatch):
    """The convergence test is the optimality conditions, so a stalled solver is counted, not trusted."""
    import scipy.optimize

    real = scipy.optimize.minimize

    def one_iteration(*args, **kwargs):
        kwargs["options"] = {**kwargs["options"], "maxiter": 1}
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", one_iteration)
    X, y = _problem(1)
    counter = probe_speed.FitCounter()
    probe_speed._elastic_net_lbfgsb(X, y, 1.5, 0.3, "stalled", counter)
    assert counter.unconverged == {"stalled (L-BFGS-B)": 1}
