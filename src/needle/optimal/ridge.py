"""Public entry points of certified sparse ridge regression: :func:`solve_sparse_ridge` and its path."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from needle.errors import InputError
from needle.optimal._certify import ATOL, certify, check_k, check_options, check_warm, resolve_pool
from needle.optimal._pool import CutPool
from needle.optimal._ridge import RidgeProblem, make_ridge_problem

__all__ = ["SparseRidgeResult", "ridge_objective", "solve_sparse_ridge", "solve_sparse_ridge_path"]


@dataclass(frozen=True, eq=False)
class SparseRidgeResult:
    """A k-sparse ridge regression with its optimality certificate.

    Attributes
    ----------
    coef : ndarray of shape (n_features,), or (n_targets, n_features) for a 2-D ``y``
        Coefficients, zero off the support.
    intercept : float, or ndarray of shape (n_targets,)
        0 unless ``fit_intercept``.
    support : ndarray of shape (n_selected,)
        Sorted ids of the non-zero coefficients stacked target by target
        (``t * n_features + j``); for one target, the feature ids.
    objective : float
        ``sum_t ||y_t - X xi_t - b_t||^2 + alpha ||xi_t||^2`` at ``coef``, recomputed on the data given.
    bound : float
        A proven lower bound on the optimum over all feasible supports of size ``<= k``; ``bound <= objective``.
    gap : float
        ``(objective - bound) / max(|objective|, 1e-12)``.
    status : {"optimal", "time_limit", "infeasible"}
        "optimal": the gap is within ``tol``. "time_limit": stopped by the
        limit, ``bound`` still valid. "infeasible": no support of size
        ``<= k`` satisfies the constraints (``coef`` is zero, ``objective`` inf).
    k : int
    alpha : float
    n_cuts, n_nodes, n_fits : int
        Cuts in the pool at the end, branch-and-bound nodes, exact support fits of this call.
    solve_seconds : float
    cuts : CutPool or tuple of CutPool
        Reusable: pass as ``cuts=`` to another solve on the same data, ``alpha`` and constraints.
        For several targets without constraints (solved target by target), one pool per target.
    """

    coef: np.ndarray
    intercept: float | np.ndarray
    support: np.ndarray
    objective: float
    bound: float
    gap: float
    status: str
    k: int
    alpha: float
    n_cuts: int
    n_nodes: int
    n_fits: int
    solve_seconds: float
    cuts: CutPool | tuple

    def __repr__(self) -> str:
        return (
            f"SparseRidgeResult(k={self.k}, support={self.support.tolist()}, objective={self.objective:.6g}, "
            f"bound={self.bound:.6g}, gap={self.gap:.2e}, status={self.status!r}, "
            f"solve_seconds={self.solve_seconds:.3g})"
        )

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


def ridge_objective(X, Y, coef, alpha: float, intercept=0.0) -> float:
    """``sum_t ||y_t - X xi_t - b_t||^2 + alpha ||xi_t||^2`` with ``coef`` of shape (n_features,) or (n_targets, n_features)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
    W = np.asarray(coef, dtype=np.float64).reshape(Y.shape[1], X.shape[1])
    resid = Y - X @ W.T - np.asarray(intercept, dtype=np.float64).reshape(1, -1)
    return float(np.sum(resid * resid) + alpha * np.sum(W * W))


@dataclass(frozen=True, eq=False)
class _Prepared:
    X: np.ndarray
    Y: np.ndarray
    one_target: bool
    x_mean: np.ndarray
    y_mean: np.ndarray
    problem: RidgeProblem


def _prepare(X, y, *, alpha, fit_intercept, A_eq, b_eq, A_ub, b_ub) -> _Prepared:
    y_arr = np.asarray(y)
    if y_arr.ndim not in (1, 2):
        raise InputError(f"y must be 1-D (one target) or 2-D (n_examples, n_targets), got shape {y_arr.shape}.")
    one_target = y_arr.ndim == 1
    X = np.asarray(X)
    Y = y_arr.reshape(-1, 1) if one_target else y_arr
    if X.ndim == 2 and Y.shape[0] != X.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {Y.shape[0]}.")
    Xf = np.asarray(X, dtype=np.float64) if np.issubdtype(X.dtype, np.number) else X
    Yf = np.asarray(Y, dtype=np.float64) if np.issubdtype(Y.dtype, np.number) else Y
    if fit_intercept and getattr(Xf, "ndim", 0) == 2 and getattr(Yf, "ndim", 0) == 2:
        x_mean, y_mean = Xf.mean(axis=0), Yf.mean(axis=0)
        Xc, Yc = Xf - x_mean, Yf - y_mean
    else:
        x_mean, y_mean = None, None
        Xc, Yc = Xf, Yf
    problem = make_ridge_problem(Xc, Yc, alpha=alpha, eq=(A_eq, b_eq), ineq=(A_ub, b_ub))
    if x_mean is None:
        x_mean, y_mean = np.zeros(problem.n_features), np.zeros(problem.n_targets)
    return _Prepared(np.asarray(Xf, dtype=np.float64), np.asarray(Yf, dtype=np.float64), one_target, x_mean, y_mean,
                     problem)


def _result(prep: _Prepared, k, pool, found, start, tol) -> SparseRidgeResult:
    problem = prep.problem
    D, d = problem.n_features, problem.n_targets
    flat = np.zeros(D * d)
    best = found.best
    feasible = np.isfinite(best.value)
    if feasible:
        flat[list(best.support)] = best.coef
    W = flat.reshape(d, D)
    intercept = prep.y_mean - W @ prep.x_mean
    if feasible:
        value = ridge_objective(prep.X, prep.Y, W, problem.alpha, intercept)
        # Rounding can put a valid bound a hair above the value it certifies.
        bound = min(found.bound, value)
        gap = (value - bound) / max(abs(value), 1e-12)
        # An exhausted tree certifies only what its bounds prove (a constrained fit that did not
        # converge closes its leaf with a weaker bound), so the gap decides.
        status = "optimal" if found.optimal and value - bound <= max(ATOL, tol * abs(value)) else "time_limit"
        support = np.array(best.support, dtype=np.intp)
    else:
        value, bound, gap = np.inf, found.bound, np.nan
        status = "infeasible" if found.optimal and bound == np.inf else "time_limit"
        support = np.zeros(0, dtype=np.intp)
    return SparseRidgeResult(
        coef=W[0] if prep.one_target else W,
        intercept=float(intercept[0]) if prep.one_target else intercept,
        support=support,
        objective=float(value),
        bound=float(bound),
        gap=float(gap),
        status=status,
        k=k,
        alpha=problem.alpha,
        n_cuts=len(pool),
        n_nodes=found.n_nodes,
        n_fits=found.n_fits,
        solve_seconds=time.perf_counter() - start,
        cuts=pool,
    )


_CONTROLLER: list = []


def _one_blas_thread():
    """Limit BLAS to one thread: the matrices are small, and on a shared machine a second thread costs 10x.

    The controller is built once: building one scans the loaded libraries (about 0.1 s).
    """
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _solve(prep, k, pool, *, time_limit, tol, warm) -> SparseRidgeResult:
    with _one_blas_thread():
        start = time.perf_counter()
        found = certify(prep.problem, k, pool, deadline=start + time_limit, tol=tol, warm=warm)
        return _result(prep, k, pool, found, start, tol)


def _allocate(tables: np.ndarray, k: int) -> tuple[float, list[int]]:
    """Minimise ``sum_t tables[t, k_t]`` over ``sum_t k_t <= k``; ``tables`` of shape (n_targets, k + 1)."""
    d = tables.shape[0]
    best = tables[0].copy()  # best[b]: targets 0..t with budget b
    choice = [np.arange(k + 1)]
    for t in range(1, d):
        # cand[b, j] = tables[t, j] + best[b - j], j <= b
        cand = np.full((k + 1, k + 1), np.inf)
        for j in range(k + 1):
            cand[j:, j] = tables[t, j] + best[: k + 1 - j]
        pick = np.argmin(cand, axis=1)
        best = cand[np.arange(k + 1), pick]
        choice.append(pick)
    b = int(np.argmin(best))
    value = float(best[b])
    alloc = [0] * d
    for t in range(d - 1, 0, -1):
        alloc[t] = int(choice[t][b])
        b -= alloc[t]
    alloc[0] = b
    return value, alloc


@dataclass(frozen=True, eq=False)
class _Found:
    """What :func:`_result` needs of a search (the shape of :class:`~needle.optimal._certify.Certified`)."""

    best: object
    bound: float
    optimal: bool
    n_nodes: int
    n_fits: int


def _solve_separable(prep, k, pools, *, time_limit, tol, warm, caps=None) -> SparseRidgeResult:
    """Several unconstrained targets under one budget: certified per-target paths, combined exactly.

    Without constraints the stacked problem separates, ``c(S) = sum_t c_t(S_t)``,
    so its optimum is ``min sum_t opt_t(k_t)`` over allocations
    ``sum_t k_t <= k`` (a small dynamic programme). Each ``opt_t(j)`` is bounded
    above by the best support of size ``<= j`` found and below by its
    certificate, or, until solved, by the dense fit's bound (``opt_t`` is
    non-increasing in ``j``). Only the ``(t, j)`` that the lower allocation
    uses are solved, until the two allocations' values meet: the same
    certificate as the stacked search, at a fraction of the work. ``caps``
    bounds each target's own count (MIOSR's ``group_sparsity``).
    """
    with _one_blas_thread():
        start = time.perf_counter()
        deadline = start + time_limit
        problem = prep.problem
        d, D = problem.n_targets, problem.n_features
        subs = [problem.target(t) for t in range(d)]
        kmax = min(k, problem.n_columns)
        jmax = min(kmax, D)
        n_nodes = n_fits = 0
        floors, fits = [], [dict() for _ in range(d)]
        for t, sub in enumerate(subs):
            empty = sub.fit_support(())
            fits[t][0] = empty
            pools[t].bounds.setdefault(0, empty.value)
            dense = pools[t].fits.get(tuple(range(D))) or sub.fit_support(tuple(range(D)))
            floors.append(min(dense.value, dense.cut.constant - float(dense.cut.q.sum())))
        warm_t = [[tuple(j - t * D for j in w if j // D == t) for w in warm] for t in range(d)]
        while True:
            ub = np.full((d, kmax + 1), np.inf)
            lb = np.full((d, kmax + 1), -np.inf)
            for t in range(d):
                for j in range(kmax + 1):
                    jj = min(j, jmax)
                    sizes = [size for size in range(jj + 1) if pools[t].best_fit(size) is not None]
                    known = [fits[t][0].value] + [pools[t].best_fit(size).value for size in sizes]
                    ub[t, j] = min(known)
                    solved = [b for size, b in pools[t].bounds.items() if size >= jj]
                    lb[t, j] = max([floors[t]] + solved)
                if caps is not None:
                    # More than the cap is not allowed: such an allocation costs what the cap gives.
                    ub[t, caps[t] + 1 :] = ub[t, min(caps[t], kmax)]
                    lb[t, caps[t] + 1 :] = lb[t, min(caps[t], kmax)]
            upper, alloc_u = _allocate(ub, kmax)
            lower, alloc_l = _allocate(lb, kmax)
            if upper - lower <= max(ATOL, tol * abs(upper)):
                optimal = True
                break
            todo = [(t, _size(j, jmax, caps, t)) for t, j in enumerate(alloc_l)]
            todo = [(t, j) for t, j in todo if j not in pools[t].bounds]
            if not todo or time.perf_counter() > deadline:
                optimal = False
                break
            for t, j in todo:
                found = certify(subs[t], j, pools[t], deadline=deadline, tol=tol,
                                warm=[w for w in warm_t[t] if w])
                pools[t].bounds[j] = min(found.bound, found.best.value)
                n_nodes += found.n_nodes
                n_fits += found.n_fits
        # The upper allocation's supports: the best fit of size <= k_t per target.
        support, coef = [], []
        for t, j in enumerate(alloc_u):
            top = min(j, jmax) if caps is None else min(j, jmax, caps[t])
            options = [fits[t][0]] + [pools[t].best_fit(size) for size in range(1, top + 1)]
            best = min((f for f in options if f is not None), key=lambda f: f.value)
            support += [t * D + c for c in best.support]
            coef += list(best.coef)
        order = np.argsort(support)
        from needle.optimal._types import Cut, SupportFit

        best = SupportFit(tuple(int(support[i]) for i in order), np.asarray(coef)[order], 0.0, upper,
                          Cut(upper, np.zeros(problem.n_columns)))
        found = _Found(best=best, bound=lower, optimal=optimal, n_nodes=n_nodes, n_fits=n_fits)
        result = _result(prep, k, pools[0], found, start, tol)
        return _replace_cuts(result, tuple(pools))


def _size(j, jmax, caps, t) -> int:
    return min(j, jmax) if caps is None else min(j, jmax, caps[t])


def _check_caps(caps, n_targets: int, constrained: bool):
    if caps is None:
        return None
    caps = list(caps) if np.ndim(caps) else [caps] * n_targets
    if len(caps) != n_targets or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0
                                     for c in caps):
        raise InputError(f"target_caps must be {n_targets} non-negative integers (one per target), got {caps!r}.")
    if constrained:
        raise InputError("target_caps cannot be combined with constraints (give one budget k, or fit each target).")
    return [int(c) for c in caps]


def _replace_cuts(result: SparseRidgeResult, pools: tuple) -> SparseRidgeResult:
    from dataclasses import replace

    return replace(result, cuts=pools, n_cuts=int(sum(len(p) for p in pools)))


def _resolve_pools(prep, cuts):
    """One pool per target for a separable problem (``cuts``: None or the tuple of an earlier result)."""
    subs = [prep.problem.target(t) for t in range(prep.problem.n_targets)]
    if cuts is None:
        return [CutPool(sub) for sub in subs]
    if not (isinstance(cuts, tuple) and len(cuts) == len(subs)):
        raise InputError(f"cuts must be the cuts of an earlier result on the same {len(subs)} targets "
                         "(a tuple of one CutPool per target).")
    for pool, sub in zip(cuts, subs):
        resolve_pool(sub, pool)
    return list(cuts)


def _separable(prep) -> bool:
    return prep.problem.n_targets > 1 and not prep.problem.constrained


def solve_sparse_ridge(
    X,
    y,
    k: int,
    *,
    alpha: float = 0.01,
    fit_intercept: bool = False,
    A_eq=None,
    b_eq=None,
    A_ub=None,
    b_ub=None,
    target_caps=None,
    time_limit: float = 60.0,
    tol: float = 1e-6,
    warm_supports=None,
    cuts: CutPool | None = None,
) -> SparseRidgeResult:
    """Optimal k-sparse ridge regression, one target or several under one budget, with a certificate.

    Solves

    .. math::

        \\min_{\\Xi} \\sum_t \\lVert y_t - X \\xi_t \\rVert_2^2 + \\alpha \\lVert \\xi_t \\rVert_2^2
        \\quad \\text{s.t.} \\quad \\lVert \\bar\\xi \\rVert_0 \\le k,\\;
        A_{eq} \\bar\\xi = b_{eq},\\; A_{ub} \\bar\\xi \\le b_{ub}

    (:math:`\\bar\\xi` the coefficients stacked target by target) to provable
    optimality (relative gap ``tol``) or until ``time_limit``, by outer
    approximation and branch-and-bound (Bertsimas & Van Parys 2020; the
    MIO-SINDy formulation of Bertsimas & Gurnee 2023, thesis Chapter 5, with
    no MIP solver): the optimum ``c(s)`` on a support is convex in ``s`` and
    every dual point of a fixed-support problem gives a cut valid for all
    supports (:mod:`needle.optimal._ridge` has the derivation). The search is
    the one of :func:`needle.probing.osp.solve_osp`.

    Parameters
    ----------
    X : array-like of shape (n_examples, n_features)
        Finite features, used as given.
    y : array-like of shape (n_examples,) or (n_examples, n_targets)
        A 2-D ``y`` is the group form: ``k`` non-zero coefficients in all
        across the targets. (For one budget per target, solve each column.)
    k : int
        Maximum number of non-zero coefficients, ``>= 1``.
    alpha : float, default=0.01
        Ridge strength, > 0 (MIOSR's ``alpha``).
    fit_intercept : bool, default=False
        Fit an unpenalised, unconstrained intercept per target (by centring).
    A_eq, b_eq : array-like of shape (n_eq, n_features * n_targets) and (n_eq,), optional
        Equality constraints on the stacked coefficients.
    A_ub, b_ub : array-like of shape (n_ub, n_features * n_targets) and (n_ub,), optional
        Inequality constraints ``A_ub xi <= b_ub`` (solved with Clarabel, the ``sindy`` extra).
    target_caps : int or sequence of int, optional
        At most this many non-zero coefficients per target as well (2-D ``y``,
        no constraints): MIOSR's ``group_sparsity`` under its ``target_sparsity``.
    time_limit : float, default=60.0
        Seconds of wall time, heuristics included.
    tol : float, default=1e-6
        Relative optimality gap at which to stop (an absolute 1e-9 is added).
    warm_supports : iterable of array-like of int, optional
        Stacked supports to start from (any size).
    cuts : CutPool, optional
        The ``cuts`` of an earlier result on the same data, ``alpha`` and constraints.

    Returns
    -------
    SparseRidgeResult

    Raises
    ------
    ValueError
        (:class:`needle.errors.InputError`) on bad input: ``k < 1``, ``alpha <= 0``, NaN in ``X``,
        mismatched shapes, constraints of the wrong width, a mismatched ``cuts``.
    """
    with _one_blas_thread():
        prep = _prepare(X, y, alpha=alpha, fit_intercept=fit_intercept, A_eq=A_eq, b_eq=b_eq, A_ub=A_ub, b_ub=b_ub)
    k = check_k(k, prep.problem.n_columns)
    time_limit, tol = check_options(time_limit, tol)
    warm = check_warm(warm_supports, prep.problem.n_columns)
    caps = _check_caps(target_caps, prep.problem.n_targets, prep.problem.constrained)
    if _separable(prep) or caps is not None:
        return _solve_separable(prep, k, _resolve_pools(prep, cuts), time_limit=time_limit, tol=tol, warm=warm,
                                caps=caps)
    pool = resolve_pool(prep.problem, cuts)
    return _solve(prep, k, pool, time_limit=time_limit, tol=tol, warm=warm)


def solve_sparse_ridge_path(
    X,
    y,
    ks,
    *,
    alpha: float = 0.01,
    fit_intercept: bool = False,
    A_eq=None,
    b_eq=None,
    A_ub=None,
    b_ub=None,
    target_caps=None,
    time_limit: float = 60.0,
    tol: float = 1e-6,
    warm_supports=None,
    cuts: CutPool | None = None,
) -> list[SparseRidgeResult]:
    """:func:`solve_sparse_ridge` for several ``k`` on the same data, sharing cuts and incumbents.

    ``ks`` are solved in increasing order; ``time_limit`` is per ``k``. Returns
    one result per entry of ``ks``, in the order given.
    """
    with _one_blas_thread():
        prep = _prepare(X, y, alpha=alpha, fit_intercept=fit_intercept, A_eq=A_eq, b_eq=b_eq, A_ub=A_ub, b_ub=b_ub)
    ks = list(ks)
    if not ks:
        raise InputError("ks must contain at least one k.")
    effective = [check_k(k, prep.problem.n_columns) for k in ks]
    time_limit, tol = check_options(time_limit, tol)
    warm = check_warm(warm_supports, prep.problem.n_columns)
    caps = _check_caps(target_caps, prep.problem.n_targets, prep.problem.constrained)
    if _separable(prep) or caps is not None:
        pools = _resolve_pools(prep, cuts)
        solved = {k: _solve_separable(prep, k, pools, time_limit=time_limit, tol=tol, warm=warm, caps=caps)
                  for k in sorted(set(effective))}
        return [solved[k] for k in effective]
    pool = resolve_pool(prep.problem, cuts)
    solved = {k: _solve(prep, k, pool, time_limit=time_limit, tol=tol, warm=warm) for k in sorted(set(effective))}
    return [solved[k] for k in effective]
