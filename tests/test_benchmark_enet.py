"""The elastic-net solver benchmark's KKT check is zero at the optimum and positive away from it.

``benchmarks/enet_solver.py`` judges needle, skglm and celer by one numpy KKT check of the scaled
objective (intercept included); that judgement is only worth something if the check vanishes at an
independent solution (scikit-learn's SAGA run to convergence) and not elsewhere.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from benchmark_scripts import load_benchmark
from needle.probing.fitting import balanced_sample_weight


@pytest.fixture(scope="module")
def enet_solver():
    """The benchmark script as a module."""
    return load_benchmark("enet_solver.py")


def _problem(seed: int = 0, n: int = 300, m: int = 20):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m))
    X[:, 1] = X[:, 0] + 0.3 * rng.normal(size=n)
    y = (X[:, 0] - 0.7 * X[:, 2] + rng.normal(size=n) > 1.0).astype(np.float64)  # unbalanced classes
    return X, y


@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize(("C", "l1_ratio"), [(0.05, 1.0), (0.2, 0.5)])
def test_kkt_is_zero_at_saga_solution_and_positive_away(enet_solver, balanced, C, l1_ratio):
    X, y = _problem()
    s = balanced_sample_weight(y) if balanced else np.ones_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would make the check meaningless
        saga = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=200_000,
                                  class_weight="balanced" if balanced else None).fit(X, y)
    w, b = saga.coef_[0], float(saga.intercept_[0])
    assert np.count_nonzero(w) < w.size  # some coefficients sit at zero: the subgradient branch is exercised
    assert enet_solver.kkt_violation(X, y, s, C, l1_ratio, w, b) < 1e-7

    f0 = enet_solver.objective(X, y, s, C, l1_ratio, w, b)
    for dw, db in ((0.05 * np.eye(w.size)[np.argmax(np.abs(w))], 0.0), (np.zeros_like(w), 0.1)):
        assert enet_solver.kkt_violation(X, y, s, C, l1_ratio, w + dw, b + db) > 1e-3
        assert enet_solver.objective(X, y, s, C, l1_ratio, w + dw, b + db) > f0
    # a zero coefficient moved off zero breaks the subgradient condition too
    j = np.flatnonzero(w == 0)[0]
    assert enet_solver.kkt_violation(X, y, s, C, l1_ratio, w + 0.05 * np.eye(w.size)[j], b) > 1e-3
