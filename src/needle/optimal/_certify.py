"""The certified search for one ``k``, shared by every loss: incumbents, then branch-and-bound.

:func:`certify` takes a validated problem (see :mod:`needle.optimal._types`)
and a cut pool, finds a strong incumbent with the heuristics (the problem's
screen, warm supports, the pool's best supports of neighbouring sizes, greedy
forward selection, swap search), and closes the gap with
:func:`~needle.optimal._bnb.branch_and_bound`. The callers
(:func:`needle.probing.osp.solve_osp`, :func:`needle.optimal.solve_sparse_ridge`)
validate their inputs with the checks below and wrap the answer in their result type.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import numpy as np

from needle.errors import InputError
from needle.optimal._bnb import branch_and_bound
from needle.optimal._heuristics import Evaluator, greedy_support, shrink_support, swap_search
from needle.optimal._pool import CutPool
from needle.optimal._types import SupportFit

__all__ = ["ATOL", "Certified", "certify", "check_k", "check_options", "check_warm", "resolve_pool"]

# Absolute part of the optimality tolerance, for objectives near zero.
ATOL = 1e-9


@dataclass(frozen=True, eq=False)
class Certified:
    """The best support found for one ``k``, a proven lower bound, and the search's counters."""

    best: SupportFit
    bound: float
    optimal: bool
    n_nodes: int
    n_fits: int


def check_k(k, d: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InputError(f"k must be a positive integer, got {k!r}.")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}.")
    return min(int(k), d)


def check_options(time_limit, tol) -> tuple[float, float]:
    try:
        time_limit, tol = float(time_limit), float(tol)
    except (TypeError, ValueError):
        raise InputError(f"time_limit and tol must be numbers, got {time_limit!r} and {tol!r}.") from None
    if not time_limit > 0:
        raise InputError(f"time_limit must be > 0 seconds, got {time_limit}.")
    if not (np.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be a finite number >= 0, got {tol}.")
    return time_limit, tol


def check_warm(warm_supports, d: int) -> list[tuple[int, ...]]:
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


def resolve_pool(problem, cuts) -> CutPool:
    if cuts is None:
        return CutPool(problem)
    if not isinstance(cuts, CutPool):
        raise InputError(f"cuts must be a CutPool from a previous result, got {type(cuts).__name__}.")
    cuts.check(problem)
    return cuts


def _incumbent(evaluate: Evaluator, k: int, warm: list[tuple[int, ...]], deadline: float) -> SupportFit:
    """Best support of size k from the cheap heuristics, the warm starts and the pool's cache."""
    problem = evaluate.problem
    candidates = [evaluate(problem.screen_support(k))]
    for support in warm:
        fit = evaluate(support)
        if len(support) > k:
            fit = shrink_support(evaluate, fit, k)
        elif len(support) < k:
            fit = greedy_support(evaluate, k, start=support)
        candidates.append(fit)
    for size in range(k + 1, min(k + 2, problem.n_columns) + 1):
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


def certify(problem, k: int, pool: CutPool, *, deadline: float, tol: float, warm) -> Certified:
    """Solve ``min c(S)`` over supports ``|S| <= k`` to a relative gap ``tol`` or until ``deadline``.

    Parameters
    ----------
    problem
        A validated problem with the methods of :mod:`needle.optimal._types`.
    k : int
        ``1 <= k <= problem.n_columns`` (checked by :func:`check_k`).
    pool : CutPool
        The problem's pool (grows; reusable for another ``k``).
    deadline : float
        ``time.perf_counter()`` value at which to stop.
    tol : float
        Relative optimality gap (an absolute :data:`ATOL` is added).
    warm : list of tuple of int
        Supports to start from (:func:`check_warm`).
    """
    evaluate = Evaluator(problem, pool)
    d = problem.n_columns
    if k == d:
        best = evaluate(tuple(range(d)))
        bound, optimal, n_nodes = best.cut.constant - float(best.cut.q.sum()), True, 0
    else:
        best = _incumbent(evaluate, k, warm, deadline)
        search = branch_and_bound(evaluate, k, best, deadline=deadline, rtol=tol, atol=ATOL)
        best, bound, optimal, n_nodes = search.best, search.bound, search.optimal, search.n_nodes
    return Certified(best=best, bound=float(bound), optimal=optimal, n_nodes=n_nodes, n_fits=evaluate.n_fits)
