"""What every certified L0 solver exchanges: a cut, and the exact fit of one support.

The problems differ (:class:`needle.probing.osp._problem.OSPProblem` for the
ridge-logistic loss, :class:`needle.optimal._ridge.RidgeProblem` for least
squares); the search (:mod:`needle.optimal._bnb`), the heuristics and the cut
pool only see these two objects and the problem's four methods:

``fit_support(support, init=None) -> SupportFit``
    the exact fit on one binary support, with its dual cut;
``relax_node(fixed_in, free, r, **options) -> NodeRelaxation``
    the Boolean relaxation of a branch-and-bound node;
``extension_bounds(base, candidates) -> (bounds, starts)``
    certified lower bounds on every one-column extension of a fitted support;
``screen_support(k) -> tuple of int``
    a cheap first support (the top ``k`` columns by a univariate score);

plus ``n_columns`` and ``fingerprint``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Cut", "NodeRelaxation", "SupportFit"]


@dataclass(frozen=True, eq=False)
class Cut:
    """A valid lower bound ``c(s) >= constant - q . s`` for every ``s`` in ``[0, 1]^d``, with ``q >= 0``."""

    constant: float
    q: np.ndarray


@dataclass(frozen=True, eq=False)
class SupportFit:
    """The exact fit on one support, with its cut.

    Attributes
    ----------
    support : tuple of int
        Sorted column ids.
    coef : ndarray of shape (len(support),)
    intercept : float
        0.0 for problems without one.
    value : float
        Primal objective at ``(coef, intercept)``: an upper bound on (and, up to
        the solver's tolerance, equal to) the optimum over this support;
        ``inf`` where the support is infeasible (constrained problems).
    cut : Cut
        The dual cut at this support; ``cut.constant - cut.q[support].sum()`` is a
        certified lower bound on the optimum over this support (``inf`` with
        ``q = 0`` for an infeasible support: such a cut is never pooled).
    """

    support: tuple[int, ...]
    coef: np.ndarray
    intercept: float
    value: float
    cut: Cut


@dataclass(eq=False)
class NodeRelaxation:
    """Result of a (possibly early-stopped) node relaxation.

    Attributes
    ----------
    bound : float
        Certified lower bound over the node's supports.
    value : float
        Relaxation objective at the last iterate: an upper bound on the relaxation optimum.
    s : dict of int to float
        Relaxation weights of the free columns in the working set (others are 0).
    theta : dict
        Last weights by column (fixed and working-set columns), and ``"b"`` for the intercept.
    cut : Cut or None
        The cut of the best iterate.
    """

    bound: float
    value: float
    s: dict
    theta: dict
    cut: Cut | None
