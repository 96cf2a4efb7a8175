"""Optimal sparse probing: optimality against exhaustive enumeration, honest bounds, paths, bad input.

Every reference value here is computed independently of the solver: the
objective from its formula, each support's optimum with scipy's L-BFGS-B.
"""

from __future__ import annotations

import functools
import itertools
import time

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import erf
from threadpoolctl import threadpool_limits

from needle.errors import InputError
from needle.probing.osp import CutPool, OSPResult, solve_osp, solve_osp_path


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The references solve many tiny problems; extra BLAS threads only add contention.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------- references


def _weights(y01, sample_weight=None):
    if sample_weight is not None:
        return np.asarray(sample_weight, dtype=float)
    n, n_pos = y01.size, y01.sum()
    return np.where(y01 == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))


def reference_objective(X, y01, coef, intercept, gamma, sample_weight=None):
    """sum_i c_i log(1 + exp(-y_i (x_i.w + b))) + ||w||^2 / (2 gamma), written out."""
    signs = np.where(y01 == 1, 1.0, -1.0)
    c = _weights(y01, sample_weight)
    margins = signs * (X @ coef + intercept)
    return float(np.sum(c * np.logaddexp(0.0, -margins)) + coef @ coef / (2.0 * gamma))


def reference_support_optimum(X, y01, support, gamma, sample_weight=None):
    """The optimum over one support, by scipy's L-BFGS-B on the exact objective."""
    signs = np.where(y01 == 1, 1.0, -1.0)
    c = _weights(y01, sample_weight)
    Xs = X[:, list(support)]

    def fun(theta):
        w, b = theta[:-1], theta[-1]
        m = signs * (Xs @ w + b)
        value = np.sum(c * np.logaddexp(0.0, -m)) + w @ w / (2.0 * gamma)
        r = -c * signs / (1.0 + np.exp(np.clip(m, -700, 700)))
        return value, np.append(Xs.T @ r + w / gamma, r.sum())

    res = minimize(
        fun,
        np.zeros(len(support) + 1),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000, "maxcor": 30},
    )
    return float(res.fun)


def brute_force(X, y01, k, gamma, sample_weight=None):
    """min over every support of exactly k columns (enough: adding a column never raises the optimum)."""
    return min(
        reference_support_optimum(X, y01, s, gamma, sample_weight)
        for s in itertools.combinations(range(X.shape[1]), k)
    )


# ---------------------------------------------------------------- problems


def _standardise(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


def random_problem(seed, n=160, d=12, pos=0.5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal(d) * (rng.random(d) < 0.4)
    logits = X @ beta + rng.logistic(size=n)
    y = (logits > np.quantile(logits, 1 - pos)).astype(int)
    return X, y


def correlated_problem(seed, n=160, d=12, pos=0.5):
    """Columns in correlated groups (pairs correlated ~0.9), signal on a few of them."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, (d + 1) // 2))
    X = np.repeat(base, 2, axis=1)[:, :d] + 0.35 * rng.standard_normal((n, d))
    logits = 1.5 * X[:, 0] - 1.0 * X[:, 3] + 0.5 * X[:, 5] + rng.logistic(size=n)
    y = (logits > np.quantile(logits, 1 - pos)).astype(int)
    return _standardise(X), y


def activation_problem(seed, n=200, d=12, pos=0.2):
    """Real-looking neurons: GELU of correlated pre-activations, standardised; imbalanced labels."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n, 4))
    pre = factors @ rng.standard_normal((4, d)) / 2.0 + 0.8 * rng.standard_normal((n, d)) - 0.5
    acts = 0.5 * pre * (1.0 + erf(pre / np.sqrt(2.0)))
    logits = 2.0 * factors[:, 0] + acts[:, 2] + rng.logistic(size=n)
    y = (logits > np.quantile(logits, 1 - pos)).astype(int)
    return _standardise(acts), y


def check_result(res, X, y01, k, gamma, sample_weight=None):
    assert isinstance(res, OSPResult)
    assert res.support.ndim == 1 and res.support.size <= k
    assert np.all(np.diff(res.support) > 0)
    off = np.setdiff1d(np.arange(X.shape[1]), res.support)
    assert np.all(res.coef[off] == 0.0)
    recomputed = reference_objective(X, y01, res.coef, res.intercept, gamma, sample_weight)
    assert res.objective == pytest.approx(recomputed, rel=1e-10)
    assert res.bound <= res.objective + 1e-9
    assert res.gap >= 0.0
    assert res.gap == pytest.approx((res.objective - res.bound) / max(abs(res.objective), 1e-12))


# ---------------------------------------------------------------- optimality

ENUMERATED = [
    # (problem, seed, d, k, gamma)
    (random_problem, 0, 12, 1, 1.0),
    (random_problem, 1, 12, 2, 1.0),
    (random_problem, 2, 12, 3, 0.1),
    (random_problem, 3, 10, 4, 1.0),
    (correlated_problem, 0, 12, 2, 1.0),
    (correlated_problem, 1, 12, 3, 0.3),
    (correlated_problem, 2, 10, 4, 0.1),
    (activation_problem, 0, 12, 2, 1.0),
    (activation_problem, 1, 12, 3, 0.1),
    (activation_problem, 2, 10, 4, 0.05),
    (activation_problem, 3, 20, 2, 0.1),
]


@pytest.mark.parametrize(("make", "seed", "d", "k", "gamma"), ENUMERATED)
def test_matches_exhaustive_enumeration(make, seed, d, k, gamma):
    X, y = make(seed, d=d)
    res = solve_osp(X, y, k, gamma=gamma, time_limit=60)
    check_result(res, X, y, k, gamma)
    assert res.status == "optimal"
    assert res.gap <= 1e-6
    best = brute_force(X, y, k, gamma)
    assert res.objective == pytest.approx(best, rel=1e-6)
    assert res.bound <= best + 1e-9


def test_matches_enumeration_with_sample_weights_and_signed_labels():
    X, y = correlated_problem(4, d=10)
    w = np.random.default_rng(0).uniform(0.2, 3.0, size=y.size)
    signed = np.where(y == 1, 1, -1)
    res = solve_osp(X, signed, 3, gamma=0.5, sample_weight=w)
    check_result(res, X, y, 3, 0.5, sample_weight=w)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(brute_force(X, y, 3, 0.5, sample_weight=w), rel=1e-6)


def test_labels_01_bool_and_signed_agree():
    X, y = activation_problem(5)
    a = solve_osp(X, y, 2, gamma=0.2)
    b = solve_osp(X, y.astype(bool), 2, gamma=0.2)
    c = solve_osp(X, 2 * y - 1, 2, gamma=0.2)
    assert a.support.tolist() == b.support.tolist() == c.support.tolist()
    assert a.objective == b.objective == c.objective


def test_every_pooled_cut_is_a_valid_lower_bound():
    X, y = correlated_problem(6, d=10)
    gamma = 0.3
    res = solve_osp(X, y, 3, gamma=gamma)
    pool = res.cuts
    assert len(pool) == res.n_cuts > 0
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 5):
        for _ in range(4):
            support = sorted(rng.choice(X.shape[1], size, replace=False).tolist())
            exact = reference_support_optimum(X, y, support, gamma)
            cut_values = pool.constants - pool.q[:, support].sum(axis=1)
            assert cut_values.max() <= exact + 1e-7 * abs(exact)


def test_deterministic():
    X, y = activation_problem(7, d=16)
    a = solve_osp(X, y, 3, gamma=0.1)
    b = solve_osp(X, y, 3, gamma=0.1)
    assert a.support.tolist() == b.support.tolist()
    assert a.objective == b.objective and a.bound == b.bound


# ---------------------------------------------------------------- planted support


def test_recovers_planted_support_among_correlated_decoys():
    rng = np.random.default_rng(11)
    n, d = 2000, 30
    true = [3, 11, 22]
    X = rng.standard_normal((n, d))
    for decoy, source in [(4, 3), (12, 11), (23, 22), (5, 3), (13, 11)]:
        X[:, decoy] = 0.75 * X[:, source] + np.sqrt(1 - 0.75**2) * rng.standard_normal(n)
    logits = 2.0 * X[:, 3] - 1.5 * X[:, 11] + 1.5 * X[:, 22] + rng.logistic(size=n)
    y = (logits > 0).astype(int)
    res = solve_osp(X, y, 3, gamma=0.01, time_limit=60)
    assert res.status == "optimal"
    assert res.support.tolist() == true
    assert np.all(np.sign(res.coef[true]) == [1, -1, 1])


# ---------------------------------------------------------------- time limit


def test_time_limit_is_respected_and_bound_is_honest():
    rng = np.random.default_rng(3)
    n, d, k = 1500, 200, 10
    factors = rng.standard_normal((n, 20))
    X = _standardise(factors @ rng.standard_normal((20, d)) + rng.standard_normal((n, d)))
    y = (factors[:, :5].sum(axis=1) + rng.logistic(size=n) > 0).astype(int)
    start = time.perf_counter()
    res = solve_osp(X, y, k, gamma=1.0, time_limit=0.5)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5
    assert res.status == "time_limit"
    check_result(res, X, y, k, 1.0)
    assert res.support.size == k
    assert 0.0 <= res.bound < res.objective


@functools.cache
def _interrupted_case_optimum():
    X, y = correlated_problem(8, n=400, d=12)
    return brute_force(X, y, 4, 50.0)


@pytest.mark.parametrize("max_nodes", [1, 4, 8, 12])
def test_interrupted_search_bound_never_exceeds_the_true_optimum(max_nodes):
    # Weak ridge on correlated columns needs a few dozen nodes; stopping after a
    # fixed number of them interrupts the search mid-way, deterministically.
    from needle.probing.osp._bnb import branch_and_bound
    from needle.probing.osp._heuristics import Evaluator, mean_difference_support
    from needle.probing.osp._pool import CutPool as Pool
    from needle.probing.osp._problem import make_problem

    X, y = correlated_problem(8, n=400, d=12)
    gamma, k = 50.0, 4
    best = _interrupted_case_optimum()
    problem = make_problem(X, y, gamma=gamma)
    evaluate = Evaluator(problem, Pool(problem))
    start = evaluate(mean_difference_support(problem, k))
    out = branch_and_bound(evaluate, k, start, deadline=np.inf, rtol=1e-6, atol=1e-9, max_nodes=max_nodes)
    assert out.n_nodes == max_nodes
    assert not out.optimal
    assert 0.0 <= out.bound <= best + 1e-9
    assert out.best.value >= best - 1e-7 * abs(best)


def test_an_interrupted_solve_reports_time_limit():
    X, y = correlated_problem(8, n=400, d=12)
    res = solve_osp(X, y, 4, gamma=50.0, time_limit=1e-4)
    assert res.status == "time_limit"
    assert 0.0 <= res.bound <= res.objective


# ---------------------------------------------------------------- paths and reuse


def test_path_matches_independent_solves():
    X, y = activation_problem(9, n=300, d=16)
    ks = [4, 1, 3, 2]
    path = solve_osp_path(X, y, ks, gamma=0.1)
    assert [r.k for r in path] == ks
    assert all(r.cuts is path[0].cuts for r in path)
    for k, res in zip(ks, path):
        single = solve_osp(X, y, k, gamma=0.1)
        assert res.status == single.status == "optimal"
        assert res.objective == pytest.approx(single.objective, rel=1e-6)
        check_result(res, X, y, k, 0.1)
    by_k = sorted(path, key=lambda r: r.k)
    assert all(a.objective >= b.objective - 1e-9 for a, b in itertools.pairwise(by_k))


def test_cut_pool_reuse_same_answer_and_mismatch_rejected():
    X, y = correlated_problem(10, d=12)
    first = solve_osp(X, y, 3, gamma=0.2)
    again = solve_osp(X, y, 3, gamma=0.2, cuts=first.cuts)
    assert again.cuts is first.cuts
    assert again.objective == pytest.approx(first.objective, rel=1e-9)
    assert again.n_fits <= first.n_fits
    with pytest.raises(ValueError, match="cuts"):
        solve_osp(X, y, 3, gamma=0.3, cuts=first.cuts)
    with pytest.raises(ValueError, match="cuts"):
        solve_osp(X[::-1], y[::-1], 3, gamma=0.2, cuts=first.cuts)
    with pytest.raises(ValueError, match="cuts"):
        solve_osp(X, y, 3, gamma=0.2, cuts="not a pool")


def test_warm_supports_any_size():
    X, y = activation_problem(12, d=14)
    plain = solve_osp(X, y, 3, gamma=0.1)
    for warm in ([[0]], [[0, 1, 2, 3, 4, 5]], [np.array([7, 2, 9])]):
        res = solve_osp(X, y, 3, gamma=0.1, warm_supports=warm)
        assert res.objective == pytest.approx(plain.objective, rel=1e-6)
    with pytest.raises(ValueError, match="warm_supports"):
        solve_osp(X, y, 3, gamma=0.1, warm_supports=[[0, 99]])


def test_k_at_least_d_is_the_dense_fit():
    X, y = random_problem(13, d=5)
    res = solve_osp(X, y, 9, gamma=0.5)
    assert res.k == 5 and res.status == "optimal"
    assert res.support.tolist() == list(range(5))
    assert res.objective == pytest.approx(reference_support_optimum(X, y, range(5), 0.5), rel=1e-8)
    assert res.gap <= 1e-6


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    return random_problem(14, d=6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k"),
        ({"k": -2}, "k"),
        ({"k": 1.5}, "k"),
        ({"k": True}, "k"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"time_limit": 0}, "time_limit"),
        ({"tol": -1e-3}, "tol"),
    ],
)
def test_bad_parameters(small, kwargs, match):
    X, y = small
    args = {"k": 2, **kwargs}
    k = args.pop("k")
    with pytest.raises(ValueError, match=match):
        solve_osp(X, y, k, **args)


def test_bad_data(small):
    X, y = small
    with pytest.raises(ValueError, match="two classes"):
        solve_osp(X, np.ones_like(y), 2)
    with pytest.raises(ValueError, match="two classes"):
        solve_osp(X, np.arange(y.size) % 3, 2)
    with pytest.raises(ValueError, match="values in"):
        solve_osp(X, np.where(y == 1, 2, 5), 2)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve_osp(bad, y, 2)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="row 3, column 2"):
        solve_osp(bad, y, 2)
    with pytest.raises(ValueError, match="rows"):
        solve_osp(X, y[:-1], 2)
    with pytest.raises(ValueError, match="2-D"):
        solve_osp(X[:, 0], y, 1)
    with pytest.raises(ValueError, match="sample_weight"):
        solve_osp(X, y, 2, sample_weight=-np.ones(y.size))
    with pytest.raises(ValueError, match="ks"):
        solve_osp_path(X, y, [])


def test_cut_pool_type_is_exported():
    X, y = random_problem(15, d=6)
    res = solve_osp(X, y, 2)
    assert isinstance(res.cuts, CutPool)
    assert "CutPool" in repr(res.cuts) and "OSPResult" in repr(res)


# ---------------------------------------------------------------- the "osp" selection method


def test_osp_selector_is_registered_and_certifies_the_problem_on_its_input():
    from needle.probing.selection import get_selector

    X, y = activation_problem(16, d=12)
    X = 3.0 * X + 1.0  # not rescaled: the certificate is for the X given (the sweep standardises before)
    selector = get_selector("osp", gamma=0.1, time_limit=30)
    assert selector.standardized_input and selector.candidate_limit() == 50
    path = selector.select_path(X, y, [1, 3])
    assert path.ks == [1, 3]
    for k, support, info in zip(path.ks, path.supports, path.info):
        assert support.size == k and len(set(support.tolist())) == k
        assert info["status"] == "optimal" and info["bound"] <= info["objective"] + 1e-9
        best = brute_force(X, y, k, 0.1)
        assert info["objective"] == pytest.approx(best, rel=1e-6)
        assert reference_support_optimum(X, y, support, 0.1) == pytest.approx(best, rel=1e-6)
    assert selector.get_params() == {"gamma": 0.1, "time_limit": 30, "tol": 1e-6, "prefilter": 50}


def test_osp_selector_prefilter_solves_over_the_top_candidates_by_mean_difference():
    from needle.probing.scoring import mean_diff_score, rank_by_score
    from needle.probing.selection import get_selector

    X, y = activation_problem(18, d=14)
    top = rank_by_score(mean_diff_score(X, y))[:6]
    path = get_selector("osp", gamma=0.1, prefilter=6).select_path(X, y, [2])
    assert set(path.supports[0].tolist()) <= set(top.tolist())
    assert path.info[0]["objective"] == pytest.approx(brute_force(X[:, top], y, 2, 0.1), rel=1e-6)
    with pytest.raises(InputError, match="prefilter"):
        get_selector("osp", prefilter=3).select_path(X, y, [4])


def test_sparse_probe_osp_exposes_its_certificate_for_the_data_given():
    from needle.probing import OSPSelector, SparseProbe
    from needle.probing.preprocessing import standardization

    X, y = activation_problem(19, d=10)
    probe = SparseProbe(2, selector=OSPSelector(gamma=0.1, time_limit=20)).fit(X, y)
    # Like the sweep, SparseProbe hands osp the standardised candidates: the certificate is about those.
    mean, scale = standardization(X)
    Z = (X - mean) / scale
    assert probe.status_ == "optimal" and probe.bound_ <= probe.objective_ + 1e-9
    assert probe.objective_ == pytest.approx(brute_force(Z, y, 2, 0.1), rel=1e-6)
    assert probe.gap_ <= 1e-6 and probe.n_cuts_ >= 1 and probe.solve_seconds_ >= 0
    assert probe.n_candidates_ == 10
    assert reference_support_optimum(Z, y, probe.support_, 0.1) == pytest.approx(probe.objective_, rel=1e-6)
    with pytest.raises(InputError, match="beside a selector object"):
        from needle.probing import get_selector

        get_selector(OSPSelector(gamma=0.1), gamma=0.2)
