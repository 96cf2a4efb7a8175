"""Certified sparse ridge regression (needle.optimal): checked against exhaustive enumeration.

Every support of size <= k is fitted independently (numpy's ridge solve; for
constrained problems the KKT system of every active set, a different
algorithm from the solver's null-space and interior-point fits), and the
solver's answer must match the best of them, with a bound that never exceeds it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from needle.errors import InputError
from needle.optimal import CutPool, SparseRidgeResult, ridge_objective, solve_sparse_ridge, solve_sparse_ridge_path


def _data(seed, n=40, D=8, d=1, noise=0.5, mix=0.6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)) + mix * rng.standard_normal((n, 1))  # correlated columns
    W = np.zeros((d, D))
    for t in range(d):
        W[t, rng.choice(D, 3, replace=False)] = rng.standard_normal(3) * 2
    Y = X @ W.T + noise * rng.standard_normal((n, d))
    return X, (Y[:, 0] if d == 1 else Y)


def _ridge_value(X, y, cols, alpha):
    if not cols:
        return float(y @ y)
    Xs = X[:, cols]
    w = np.linalg.solve(Xs.T @ Xs + alpha * np.eye(len(cols)), Xs.T @ y)
    r = y - Xs @ w
    return float(r @ r + alpha * w @ w)


def _brute_unconstrained(X, Y, k, alpha):
    Y = Y.reshape(len(X), -1)
    D, d = X.shape[1], Y.shape[1]
    best = np.inf
    for size in range(k + 1):
        for S in itertools.combinations(range(D * d), size):
            best = min(best, sum(_ridge_value(X, Y[:, t], [j % D for j in S if j // D == t], alpha)
                                 for t in range(d)))
    return best


def _kkt_value(X, Y, S, alpha, A_eq, b_eq, A_ub, b_ub):
    """Constrained ridge on stacked support S by enumerating active sets; inf where infeasible.

    The problem is strictly convex, so a KKT point (stationary, feasible, with
    non-negative multipliers on the active inequalities) is its optimum: try
    every set of active inequalities and keep the KKT points.
    """
    D = X.shape[1]
    S = list(S)
    n_ub = 0 if A_ub is None else A_ub.shape[0]
    H = np.zeros((len(S), len(S)))
    g = np.zeros(len(S))
    for a, ja in enumerate(S):
        g[a] = X[:, ja % D] @ Y[:, ja // D]
        for b, jb in enumerate(S):
            if ja // D == jb // D:
                H[a, b] = X[:, ja % D] @ X[:, jb % D]
    H += alpha * np.eye(len(S))
    const = float(np.sum(Y * Y))
    best = np.inf
    for active in itertools.chain.from_iterable(itertools.combinations(range(n_ub), r) for r in range(n_ub + 1)):
        rows = ([] if A_eq is None else [A_eq[i, S] for i in range(A_eq.shape[0])]) + [A_ub[i, S] for i in active]
        rhs = ([] if A_eq is None else list(b_eq)) + [b_ub[i] for i in active]
        E = np.array(rows).reshape(len(rows), len(S))
        e = np.array(rhs, dtype=float)
        K = np.block([[2 * H, E.T], [E, np.zeros((len(rows), len(rows)))]])
        sol = np.linalg.lstsq(K, np.concatenate([2 * g, e]), rcond=None)[0]
        x, lam = sol[: len(S)], sol[len(S):]
        if len(rows) and np.abs(E @ x - e).max() > 1e-8:
            continue
        if np.any(lam[len(rows) - len(active):] < -1e-9):
            continue
        if n_ub and np.any(A_ub[:, S] @ x > b_ub + 1e-9):
            continue
        best = min(best, const - 2 * g @ x + x @ H @ x)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_single_target_matches_exhaustive_enumeration(seed, k):
    X, y = _data(seed)
    res = solve_sparse_ridge(X, y, k, alpha=0.5)
    best = _brute_unconstrained(X, y, k, 0.5)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(best, rel=1e-9)
    assert res.bound <= res.objective
    assert res.bound >= best * (1 - 1e-6)
    assert np.count_nonzero(res.coef) <= k
    # The objective is the data's, not the solver's bookkeeping.
    assert res.objective == pytest.approx(ridge_objective(X, y, res.coef, 0.5), rel=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_one_budget_across_targets_matches_enumeration(seed, k):
    X, Y = _data(seed, D=6, d=2)
    res = solve_sparse_ridge(X, Y, k, alpha=0.3)
    best = _brute_unconstrained(X, Y, k, 0.3)
    assert res.coef.shape == (2, 6)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(best, rel=1e-9)
    assert res.bound <= res.objective
    assert np.count_nonzero(res.coef) <= k
    assert res.support.tolist() == np.flatnonzero(res.coef.ravel()).tolist()


def _constraints(rng, D, d, kind):
    A_eq = b_eq = A_ub = b_ub = None
    if kind in ("eq", "both"):
        A_eq = rng.standard_normal((1, D * d)) * (rng.random((1, D * d)) < 0.5)
        b_eq = np.array([0.7])
    if kind in ("ub", "both"):
        A_ub = rng.standard_normal((2, D * d))
        b_ub = np.array([-0.2, 0.3])
    return A_eq, b_eq, A_ub, b_ub


@pytest.mark.parametrize("kind", ["eq", "ub", "both"])
@pytest.mark.parametrize("seed", [0, 1])
def test_constrained_matches_enumeration(kind, seed):
    rng = np.random.default_rng(100 + seed)
    X, Y = _data(seed, n=30, D=5, d=2, noise=0.3)
    A_eq, b_eq, A_ub, b_ub = _constraints(rng, 5, 2, kind)
    for k in (1, 2, 3):
        res = solve_sparse_ridge(X, Y, k, alpha=0.3, A_eq=A_eq, b_eq=b_eq, A_ub=A_ub, b_ub=b_ub)
        best = min(_kkt_value(X, Y, S, 0.3, A_eq, b_eq, A_ub, b_ub)
                   for size in range(k + 1) for S in itertools.combinations(range(10), size))
        if not np.isfinite(best):
            assert res.status == "infeasible"
            continue
        assert res.status == "optimal"
        assert res.objective == pytest.approx(best, rel=1e-7)
        assert res.bound <= res.objective
        xi = res.coef.ravel()
        if A_eq is not None:
            np.testing.assert_allclose(A_eq @ xi, b_eq, atol=1e-7)
        if A_ub is not None:
            assert np.all(A_ub @ xi <= b_ub + 1e-7)


def test_equality_constraints_that_need_many_terms_report_infeasible():
    X, Y = _data(5, n=30, D=4, d=1)
    # Four equalities pin four coefficients to non-zero values: no support of size 2 meets them.
    A = np.eye(4)
    res = solve_sparse_ridge(X, Y, 2, alpha=0.1, A_eq=A, b_eq=np.ones(4))
    assert res.status == "infeasible"
    assert not np.any(res.coef) and res.objective == np.inf
    ok = solve_sparse_ridge(X, Y, 4, alpha=0.1, A_eq=A, b_eq=np.ones(4))
    np.testing.assert_allclose(ok.coef, 1.0)


def test_interrupted_search_keeps_a_valid_bound():
    X, y = _data(6, n=60, D=14, noise=2.0, mix=1.5)
    best = _brute_unconstrained(X, y, 4, 0.05)
    res = solve_sparse_ridge(X, y, 4, alpha=0.05, time_limit=1e-4)
    assert res.status in ("time_limit", "optimal")
    assert res.bound <= best * (1 + 1e-9)
    assert res.objective >= best * (1 - 1e-9)


def test_fit_intercept_centres_and_recovers_a_planted_model():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((200, 12)) + 3.0
    y = 2.0 * X[:, 3] - 1.5 * X[:, 8] + 5.0
    res = solve_sparse_ridge(X, y, 2, alpha=1e-8, fit_intercept=True)
    assert res.support.tolist() == [3, 8]
    np.testing.assert_allclose(res.coef[[3, 8]], [2.0, -1.5], atol=1e-6)
    assert res.intercept == pytest.approx(5.0, abs=1e-5)


def test_path_matches_independent_solves_and_reuses_cuts():
    X, Y = _data(8, D=7, d=2)
    path = solve_sparse_ridge_path(X, Y, [3, 1, 2], alpha=0.2)
    assert [r.k for r in path] == [3, 1, 2]
    for r in path:
        alone = solve_sparse_ridge(X, Y, r.k, alpha=0.2)
        assert r.objective == pytest.approx(alone.objective, rel=1e-10)
    again = solve_sparse_ridge(X, Y, 3, alpha=0.2, cuts=path[0].cuts)
    assert again.objective == pytest.approx(path[0].objective, rel=1e-12)
    X1, y1 = _data(9)
    single = solve_sparse_ridge_path(X1, y1, [1, 2, 3], alpha=0.2)
    assert isinstance(single[0].cuts, CutPool) and single[0].cuts is single[2].cuts
    with pytest.raises(InputError, match="different data"):
        solve_sparse_ridge(X1 + 1.0, y1, 2, alpha=0.2, cuts=single[0].cuts)


def test_repr_and_types():
    X, y = _data(10)
    res = solve_sparse_ridge(X, y, 2)
    assert isinstance(res, SparseRidgeResult) and "SparseRidgeResult" in repr(res) and res.optimal


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k must be >= 1"),
        (dict(k=2, alpha=0.0), "alpha must be a positive"),
        (dict(k=2, A_eq=np.ones((1, 3)), b_eq=[1.0]), "columns"),
        (dict(k=2, A_eq=np.ones((1, 8))), "both"),
        (dict(k=2, time_limit=0), "time_limit"),
    ],
)
def test_bad_parameters(kwargs, match):
    X, y = _data(11)
    with pytest.raises(InputError, match=match):
        solve_sparse_ridge(X, y, **kwargs)


def test_bad_data():
    X, y = _data(12)
    X[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        solve_sparse_ridge(X, y, 2)
    with pytest.raises(InputError, match="rows"):
        solve_sparse_ridge(X[:-1], y, 2)


def _centred_brute(X, y, k, alpha):
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    best, best_s = np.inf, None
    for S in itertools.combinations(range(X.shape[1]), k):
        v = _ridge_value(Xc, yc, list(S), alpha)
        if v < best:
            best, best_s = v, S
    return best, best_s


def test_quadratic_l0_is_a_registered_solver():
    from needle.probing import L0, Quadratic, solve

    X, y = _data(13, n=50, D=9)
    y = y + 4.0
    sol = solve(X, y, Quadratic(), L0(k=3, gamma=0.5))
    best, _ = _centred_brute(X, y, 3, 1.0 / 0.5)
    resid = y - X @ sol.coef - sol.intercept
    # The datafit + penalty the pair claims: 1/2 RSS + ||w||^2 / (2 gamma), i.e. half the ridge objective.
    assert 0.5 * float(resid @ resid) + float(sol.coef @ sol.coef) / (2 * 0.5) == pytest.approx(0.5 * best, rel=1e-9)
    assert sol.converged and np.count_nonzero(sol.coef) <= 3


def test_sparse_regression_probe_osp_is_certified_on_its_standardised_input():
    from needle.probing import SparseRegressionProbe
    from needle.probing.preprocessing import standardization

    X, y = _data(14, n=80, D=10)
    probe = SparseRegressionProbe(k=3, selector="osp").fit(X, y)
    mean, scale = standardization(X)
    Z = (X - mean) / scale
    gamma = probe.selection_info_["gamma"]
    best, best_s = _centred_brute(Z, y, 3, 1.0 / gamma)
    assert probe.status_ == "optimal"
    assert sorted(probe.support_.tolist()) == sorted(best_s)
    assert probe.objective_ == pytest.approx(best, rel=1e-9)
    assert probe.bound_ <= probe.objective_


def test_target_caps_under_one_budget_match_enumeration():
    X, Y = _data(15, D=6, d=2)
    res = solve_sparse_ridge(X, Y, 4, alpha=0.3, target_caps=[1, 3])
    D = 6
    best = min(
        sum(_ridge_value(X, Y[:, t], [j % D for j in S if j // D == t], 0.3) for t in range(2))
        for size in range(5) for S in itertools.combinations(range(12), size)
        if sum(j < D for j in S) <= 1 and sum(j >= D for j in S) <= 3
    )
    assert res.status == "optimal"
    assert res.objective == pytest.approx(best, rel=1e-9)
    assert np.count_nonzero(res.coef, axis=1).tolist()[0] <= 1
    with pytest.raises(InputError, match="target_caps"):
        solve_sparse_ridge(X, Y, 4, target_caps=[1])


@pytest.mark.parametrize("seed", range(4))
def test_forced_bounds_match_enumeration_of_the_node(seed):
    """Reduced-cost fixing's bounds: each cut minimised over the node's supports with / without a column."""
    from needle.optimal._types import Cut

    rng = np.random.default_rng(seed)
    d, n_cuts = 9, 5

    class _Fingerprinted:
        fingerprint, n_columns = "test", d

    pool = CutPool(_Fingerprinted())
    for _ in range(n_cuts):
        q = rng.exponential(size=d) * (rng.random(d) < 0.8)  # some zeros: ties at the r-th value
        pool.add(Cut(constant=float(rng.normal(10.0)), q=q))
    fixed_in = np.array([1, 4])
    free = np.array([0, 2, 3, 5, 6, 8])  # column 7 excluded
    for r in (1, 2, 3, 5):
        with_column, without_column = pool.forced_bounds(fixed_in, free, r)
        for position, j in enumerate(free):
            supports = [R for R in itertools.combinations(free.tolist(), r)]
            values = [[c - pool.q[t, fixed_in].sum() - pool.q[t, list(R)].sum() for R in supports]
                      for t, c in enumerate(pool.constants)]
            has_j = [j in R for R in supports]
            expect_with = max(min(v for v, h in zip(row, has_j) if h) for row in values)
            expect_without = max(min(v for v, h in zip(row, has_j) if not h) for row in values)
            assert with_column[position] == pytest.approx(expect_with, abs=1e-12)
            assert without_column[position] == pytest.approx(expect_without, abs=1e-12)
        # Fewer supports, higher bounds: never below the node's own.
        node = pool.bound(fixed_in, free, r)
        assert np.all(np.minimum(with_column, without_column) >= node - 1e-12)
