"""Public entry points: :func:`solve_osp` and :func:`solve_osp_path`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from needle.errors import InputError
from needle.optimal._certify import certify
from needle.optimal._certify import check_k as _check_k
from needle.optimal._certify import check_options as _check_options
from needle.optimal._certify import check_warm as _check_warm
from needle.optimal._certify import resolve_pool as _resolve_pool
from needle.optimal._pool import CutPool
from needle.probing.osp._problem import make_problem, objective

__all__ = ["DEFAULT_GAMMA", "OSPResult", "solve_osp", "solve_osp_path"]

#: Ten times the refit's ridge (scikit-learn C = 0.001 on standardised neurons); see the package docstring.
DEFAULT_GAMMA = 0.001


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


def _solve_problem(problem, k, pool, *, time_limit, tol, warm) -> OSPResult:
    # The linear algebra is on matrices of at most n x (d + 1); a second BLAS
    # thread buys nothing there and, on a busy machine or inside a process
    # pool, costs 10x or more in contention. Parallelise over problems instead.
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_single_threaded(problem, k, pool, time_limit=time_limit, tol=tol, warm=warm)


def _solve_single_threaded(problem, k, pool, *, time_limit, tol, warm) -> OSPResult:
    start = time.perf_counter()
    found = certify(problem, k, pool, deadline=start + time_limit, tol=tol, warm=warm)
    best, bound, optimal, n_nodes = found.best, found.bound, found.optimal, found.n_nodes
    d = problem.n_neurons
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
        n_fits=found.n_fits,
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
