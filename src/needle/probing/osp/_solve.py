"""Public entry points: :func:`solve_osp` and :func:`solve_osp_path`."""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from needle.errors import InputError
from needle.probing.osp._bnb import branch_and_bound
from needle.probing.osp._heuristics import (
    Evaluator,
    greedy_support,
    mean_difference_support,
    shrink_support,
    swap_search,
)
from needle.probing.osp._inner import SupportFit
from needle.probing.osp._pool import CutPool
from needle.probing.osp._problem import OSPProblem, make_problem, objective

__all__ = ["DEFAULT_GAMMA", "OSPResult", "solve_osp", "solve_osp_path"]

#: Ten times the refit's ridge (scikit-learn C = 0.001 on standardised neurons); see the package docstring.
DEFAULT_GAMMA = 0.001
# Absolute part of the optimality tolerance, for objectives near zero.
_ATOL = 1e-9


@dataclass(frozen=True, eq=False)
class OSPResult:
    """A k-sparse ridge-logistic probe with its optimality certificate.

    Attributes
    ----------
    support : ndarray of shape (n_selected,)
        Sorted column ids, ``n_selected <= k``.
    coef : ndarray of shape (n_neurons,)
        Weights, zero off the support.
    intercept : float
    objective : float
        The objective (see :func:`solve_osp`) at ``(coef, intercept)`` on the data given.
    bound : float
        A proven lower bound on the optimum over all supports of size ``<= k``; ``bound <= objective``.
    gap : float
        ``(objective - bound) / max(|objective|, 1e-12)``.
    status : {"optimal", "time_limit"}
        "optimal": the gap is within ``tol`` (the support is optimal up to it).
        "time_limit": stopped by ``time_limit``; ``bound`` is still valid.
    k : int
        The sparsity solved for (``min(k, n_neurons)``).
    gamma : float
    n_cuts : int
        Cuts in the pool when the solve ended.
    n_nodes : int
        Branch-and-bound nodes processed.
    n_fits : int
        Exact support fits computed by this call.
    solve_seconds : float
    cuts : CutPool
        Reusable: pass as ``cuts=`` to another solve on the same data and gamma.
    """

    support: np.ndarray
    coef: np.ndarray
    intercept: float
    objective: float
    bound: float
    gap: float
    status: str
    k: int
    gamma: float
    n_cuts: int
    n_nodes: int
    n_fits: int
    solve_seconds: float
    cuts: CutPool

    def __repr__(self) -> str:
        return (
            f"OSPResult(k={self.k}, support={self.support.tolist()}, objective={self.objective:.6g}, "
            f"bound={self.bound:.6g}, gap={self.gap:.2e}, status={self.status!r}, "
            f"solve_seconds={self.solve_seconds:.3g})"
        )

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


def _check_k(k, d: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InputError(f"k must be a positive integer, got {k!r}.")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}.")
    return min(int(k), d)


def _check_options(time_limit, tol) -> tuple[float, float]:
    try:
        time_limit, tol = float(time_limit), float(tol)
    except (TypeError, ValueError):
        raise InputError(f"time_limit and tol must be numbers, got {time_limit!r} and {tol!r}.") from None
    if not time_limit > 0:
        raise InputError(f"time_limit must be > 0 seconds, got {time_limit}.")
    if not (np.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be a finite number >= 0, got {tol}.")
    return time_limit, tol


def _check_warm(warm_supports, d: int) -> list[tuple[int, ...]]:
    if warm_supports is None:
        return []
    out = []
    for support in warm_supports:
        ids = np.asarray(support).ravel()
        if ids.size == 0:
            continue
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= d:
            raise InputError(f"warm_supports: every support must be column ids in [0, {d}), got {ids.tolist()}.")
        out.append(tuple(sorted(set(ids.tolist()))))
    return out


def _resolve_pool(problem: OSPProblem, cuts) -> CutPool:
    if cuts is None:
        return CutPool(problem)
    if not isinstance(cuts, CutPool):
        raise InputError(f"cuts must be a CutPool from a previous OSPResult, got {type(cuts).__name__}.")
    cuts.check(problem)
    return cuts


def _incumbent(evaluate: Evaluator, k: int, warm: list[tuple[int, ...]], deadline: float) -> SupportFit:
    """Best support of size k from the cheap heuristics, the warm starts and the pool's cache."""
    problem = evaluate.problem
    candidates = [evaluate(mean_difference_support(problem, k))]
    for support in warm:
        fit = evaluate(support)
        if len(support) > k:
            fit = shrink_support(evaluate, fit, k)
        elif len(support) < k:
            fit = greedy_support(evaluate, k, start=support)
        candidates.append(fit)
    for size in range(k + 1, min(k + 2, problem.n_neurons) + 1):
        bigger = evaluate.pool.best_fit(size)
        if bigger is not None:
            candidates.append(shrink_support(evaluate, bigger, k))
    smaller = evaluate.pool.best_fit(k - 1) if k > 1 else None
    if smaller is not None:
        candidates.append(greedy_support(evaluate, k, start=smaller.support))
    cached = evaluate.pool.best_fit(k)
    if cached is not None:
        candidates.append(cached)
    if time.perf_counter() < deadline:
        candidates.append(greedy_support(evaluate, k))
    best = min(candidates, key=lambda f: f.value)
    if time.perf_counter() < deadline:
        best = swap_search(evaluate, best, deadline=deadline)
    return best


def _solve_problem(problem, k, pool, *, time_limit, tol, warm) -> OSPResult:
    # The linear algebra is on matrices of at most n x (d + 1); a second BLAS
    # thread buys nothing there and, on a busy machine or inside a process
    # pool, costs 10x or more in contention. Parallelise over problems instead.
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_single_threaded(problem, k, pool, time_limit=time_limit, tol=tol, warm=warm)


def _solve_single_threaded(problem, k, pool, *, time_limit, tol, warm) -> OSPResult:
    start = time.perf_counter()
    deadline = start + time_limit
    evaluate = Evaluator(problem, pool)
    d = problem.n_neurons
    if k == d:
        best = evaluate(tuple(range(d)))
        bound, optimal, n_nodes = best.cut.constant - float(best.cut.q.sum()), True, 0
    else:
        best = _incumbent(evaluate, k, warm, deadline)
        search = branch_and_bound(evaluate, k, best, deadline=deadline, rtol=tol, atol=_ATOL)
        best, bound, optimal, n_nodes = search.best, search.bound, search.optimal, search.n_nodes
    coef = np.zeros(d)
    coef[list(best.support)] = best.coef
    value = objective(problem, coef, best.intercept)
    # Rounding can put a valid bound a hair above the value it certifies.
    bound = min(bound, value)
    gap = (value - bound) / max(abs(value), 1e-12)
    return OSPResult(
        support=np.array(best.support, dtype=np.intp),
        coef=coef,
        intercept=float(best.intercept),
        objective=value,
        bound=float(bound),
        gap=float(gap),
        status="optimal" if optimal else "time_limit",
        k=k,
        gamma=problem.gamma,
        n_cuts=len(pool),
        n_nodes=n_nodes,
        n_fits=evaluate.n_fits,
        solve_seconds=time.perf_counter() - start,
        cuts=pool,
    )


def solve_osp(
    X,
    y,
    k: int,
    *,
    gamma: float = DEFAULT_GAMMA,
    sample_weight=None,
    time_limit: float = 60.0,
    tol: float = 1e-6,
    warm_supports=None,
    cuts: CutPool | None = None,
    random_state=None,
) -> OSPResult:
    """Optimal k-sparse ridge-regularised logistic regression, with a certificate.

    Solves

    .. math::

        \\min_{w \\in \\mathbb{R}^d,\\, b \\in \\mathbb{R}}
        \\sum_i c_i \\log\\bigl(1 + e^{-\\tilde y_i (w \\cdot x_i + b)}\\bigr)
        + \\frac{\\lVert w \\rVert_2^2}{2\\gamma}
        \\quad \\text{s.t.} \\quad \\lVert w \\rVert_0 \\le k

    to provable optimality (relative gap ``tol``) or until ``time_limit``.
    The method is the outer approximation of Bertsimas, Pauphilet & Van Parys
    (2021, "Sparse classification: a scalable discrete optimization
    perspective"): the optimal value ``c(s)`` of the ridge problem on a support
    ``s`` is convex in ``s``, and the dual solution of each inner problem gives a
    cut valid for every support. Here the cuts and each node's Boolean
    relaxation bound a best-first branch-and-bound over supports (no commercial
    MIP solver), started from heuristic incumbents (mean-difference top-k,
    greedy forward selection, swap local search). See
    :mod:`needle.probing.osp` for the details and the derivation.

    Parameters
    ----------
    X : array-like of shape (n_examples, n_neurons)
        Finite features, used as given (standardise them beforehand if wanted:
        the objective and ``gamma`` refer to this ``X``).
    y : array-like of shape (n_examples,)
        Labels in {0, 1} (or booleans) or in {-1, +1}; both classes must occur.
    k : int
        Maximum number of non-zero weights, ``>= 1``. A ``k`` above
        ``n_neurons`` is allowed and means ``n_neurons`` (the dense ridge fit).
    gamma : float, default=0.001
        Ridge parameter: the penalty is ``||w||^2 / (2 gamma)``. This is
        scikit-learn's ``C`` for ``LogisticRegression(C=gamma,
        class_weight="balanced")`` (whose objective ``C sum c_i l + ||w||^2/2``
        is this one times ``C``). The default, 0.001, is ten times the ridge
        of the engine's refit (``C = 0.01``, the paper code's). Smaller gamma (more ridge) makes the certificate much faster to
        reach, larger gamma much slower; see :mod:`needle.probing.osp`.
    sample_weight : array-like of shape (n_examples,), optional
        Weights ``c_i > 0``. Default: balanced classes, ``c_i = n / (2 n_class(i))``.
    time_limit : float, default=60.0
        Seconds of wall time, heuristics included.
    tol : float, default=1e-6
        Relative optimality gap at which to stop (an absolute 1e-9 is added for
        objectives near zero).
    warm_supports : iterable of array-like of int, optional
        Supports to start from (any size; shrunk or grown greedily to ``k``).
    cuts : CutPool, optional
        The ``cuts`` of an earlier result on the same data and gamma, to reuse.
    random_state : None, int or Generator, optional
        Accepted for a uniform interface; the solver is deterministic and does not use it.

    Returns
    -------
    OSPResult

    Raises
    ------
    ValueError
        (:class:`needle.errors.InputError`) on bad input: ``k < 1``, one class
        in ``y``, NaN or inf in ``X``, ``gamma <= 0``, a mismatched ``cuts``.
    """
    problem = make_problem(X, y, gamma=gamma, sample_weight=sample_weight)
    k = _check_k(k, problem.n_neurons)
    time_limit, tol = _check_options(time_limit, tol)
    warm = _check_warm(warm_supports, problem.n_neurons)
    pool = _resolve_pool(problem, cuts)
    return _solve_problem(problem, k, pool, time_limit=time_limit, tol=tol, warm=warm)


def solve_osp_path(
    X,
    y,
    ks,
    *,
    gamma: float = DEFAULT_GAMMA,
    sample_weight=None,
    time_limit: float = 60.0,
    tol: float = 1e-6,
    warm_supports=None,
    cuts: CutPool | None = None,
    random_state=None,
) -> list[OSPResult]:
    """Solve :func:`solve_osp` for several ``k`` on the same data, sharing cuts and incumbents.

    Cuts are cuts of the convex function ``c(s)`` and hold for every ``k``; every
    support evaluated for one ``k`` is cached and seeds the incumbents of the
    others (the best ``k+1`` support shrunk by its weakest column, the best
    ``k-1`` support grown greedily). ``ks`` are solved in increasing order.

    Parameters
    ----------
    ks : iterable of int
        Sparsities, each ``>= 1`` (values above ``n_neurons`` mean ``n_neurons``).
    time_limit : float, default=60.0
        Seconds per ``k``.
    Other parameters
        As in :func:`solve_osp`.

    Returns
    -------
    list of OSPResult
        One per entry of ``ks``, in the order given (duplicates share a result).
    """
    problem = make_problem(X, y, gamma=gamma, sample_weight=sample_weight)
    ks = list(ks)
    if not ks:
        raise InputError("ks must contain at least one k.")
    effective = [_check_k(k, problem.n_neurons) for k in ks]
    time_limit, tol = _check_options(time_limit, tol)
    warm = _check_warm(warm_supports, problem.n_neurons)
    pool = _resolve_pool(problem, cuts)
    solved = {}
    for k in sorted(set(effective)):
        solved[k] = _solve_problem(problem, k, pool, time_limit=time_limit, tol=tol, warm=warm)
    return [solved[k] for k in effective]
