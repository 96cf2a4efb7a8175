"""Incumbents for the exact search: greedy forward selection, swap local search, backward shrinking.

All of them evaluate supports through :class:`Evaluator`, which caches every
exact fit in the cut pool, so each evaluated support also contributes a cut.
Candidate moves are ranked by the cut coefficients ``q_j``: for a column
outside the support, ``q_j`` bounds how much adding it can lower the
objective (it is ``-dc/ds_j``), so it is the natural screening score. The
problem supplies the first screen (``problem.screen_support``: mean
difference for a probe, correlation for a regression).
"""

from __future__ import annotations

import time

import numpy as np

from needle.optimal._pool import CutPool
from needle.optimal._types import SupportFit

__all__ = ["Evaluator", "greedy_support", "shrink_support", "swap_search"]


class Evaluator:
    """Exact support fits, cached in a :class:`CutPool` (whose cuts they feed)."""

    def __init__(self, problem, pool: CutPool):
        self.problem = problem
        self.pool = pool
        self.n_fits = 0

    def __call__(self, support, warm=None) -> SupportFit:
        """The exact fit on ``support``; ``warm`` (a SupportFit or ``{column: w, "b": b}``) starts Newton."""
        key = tuple(sorted(int(j) for j in support))
        cached = self.pool.fits.get(key)
        if cached is not None:
            return cached
        fit = self.problem.fit_support(key, init=_warm_start(key, warm))
        self.n_fits += 1
        self.pool.add_fit(fit)
        return fit


def _warm_start(support: tuple[int, ...], warm):
    """``(w, b)`` for ``support`` from a SupportFit or a ``{column: w, "b": b}`` mapping (others 0)."""
    if warm is None:
        return None
    if isinstance(warm, SupportFit):
        known = dict(zip(warm.support, warm.coef))
        return np.array([known.get(j, 0.0) for j in support] + [warm.intercept])
    return np.array([warm.get(j, 0.0) for j in support] + [warm.get("b", 0.0)])


def _ranked_outside(fit: SupportFit, n_columns: int, width: int) -> list[int]:
    inside = np.zeros(n_columns, dtype=bool)
    inside[list(fit.support)] = True
    score = np.where(inside, -np.inf, fit.cut.q)
    order = np.argsort(-score, kind="stable")
    return [int(j) for j in order[:width] if not inside[j]]


def greedy_support(evaluate: Evaluator, k: int, *, start=(), width: int = 6) -> SupportFit:
    """Forward selection from ``start`` to ``k`` columns, trying the ``width`` best-screened columns per step."""
    d = evaluate.problem.n_columns
    current = evaluate(start) if start else None
    support = tuple(start)
    while len(support) < k:
        if current is None:
            candidates = list(evaluate.problem.screen_support(min(width, d)))
        else:
            candidates = _ranked_outside(current, d, width)
        fits = [evaluate(support + (j,), warm=current) for j in candidates]
        current = min(fits, key=lambda f: f.value)
        support = current.support
    return current


def swap_search(
    evaluate: Evaluator, fit: SupportFit, *, width: int = 6, max_rounds: int = 20, deadline: float = np.inf
) -> SupportFit:
    """Best-improvement single swaps (one column out, one screened column in) until none improves."""
    d = evaluate.problem.n_columns
    for _ in range(max_rounds):
        if time.perf_counter() > deadline:
            break
        if len(fit.support) == d:
            break
        incoming = _ranked_outside(fit, d, width)
        best = fit
        for out in fit.support:
            rest = tuple(j for j in fit.support if j != out)
            for j in incoming:
                cand = evaluate(rest + (j,), warm=fit)
                if cand.value < best.value:
                    best = cand
        if best is fit:
            break
        fit = best
    return fit


def shrink_support(evaluate: Evaluator, fit: SupportFit, k: int) -> SupportFit:
    """Drop columns one at a time (the one whose removal hurts least) down to ``k`` columns."""
    while len(fit.support) > k:
        fits = [evaluate(tuple(j for j in fit.support if j != out), warm=fit) for out in fit.support]
        fit = min(fits, key=lambda f: f.value)
    return fit
