"""The Boolean (perspective) relaxation of a branch-and-bound node for the logistic loss, and its bound.

A node fixes some columns in (``fixed_in``), some out, and leaves ``free``
columns from which ``r`` more may be chosen. Its relaxation replaces the binary
choice by ``s`` in ``{s_F = 1, 0 <= s_U <= 1, sum(s_U) = r}``:

.. math::

    \\min_{s}\\; c(s) = \\min_{s} \\min_{w, b}\\; L(w, b) + \\sum_j \\frac{w_j^2}{2 \\gamma s_j},

jointly convex in (w, s) (the perspective of the ridge term). It is solved by
alternating a damped Newton step in (w, b) at fixed s with the closed-form best
s at fixed w, ``s_j = min(1, |w_j| / tau)`` with ``tau`` set so that
``sum(s_U) = r`` (the "eta trick" for squared norms; the minimiser over s of
``sum w_j^2 / s_j`` on that polytope). Whatever the iterate, the dual point
``alpha`` it defines certifies

.. math::

    \\min_{S \\text{ in node}} c(S) \\;\\ge\\; D(\\alpha) - \\sum_{j \\in F} q_j - \\mathrm{top}_r\\{q_j : j \\in U\\},

the cut of :mod:`needle.probing.osp._inner` minimised over the node's supports.
At the relaxation optimum this equals the relaxation value (minimax), so the
bound is exact up to the iteration's accuracy and valid at every iteration.
"""

from __future__ import annotations

import numpy as np

from needle.optimal._relax import capped_simplex, node_bound, relaxation_done, relaxed_weights, start_weights
from needle.optimal._relax import grow_working_set as _grow
from needle.optimal._relax import initial_working_set as _initial_working_set
from needle.optimal._types import NodeRelaxation
from needle.probing.osp._inner import _newton, dual_cut
from needle.probing.osp._problem import OSPProblem

__all__ = ["NodeRelaxation", "capped_simplex", "node_bound", "relax_node"]


def relax_node(
    problem: OSPProblem,
    fixed_in: np.ndarray,
    free: np.ndarray,
    r: int,
    *,
    prune_level: float,
    warm_s: dict | None = None,
    warm_theta: dict | None = None,
    hint_q: np.ndarray | None = None,
    max_iter: int = 30,
    min_iter: int = 2,
    rtol: float = 1e-6,
    deadline: float = np.inf,
    clock=None,
    extra: int = 3,
) -> NodeRelaxation:
    """Run the relaxation of one node until it prunes, cannot prune, converges, or runs out of iterations.

    Stops early as soon as the outcome is decided: the bound reaches
    ``prune_level`` (the node is pruned), or the relaxation value drops below it
    after ``min_iter`` iterations (no bound from this relaxation can prune, so
    branch now).

    The relaxation is solved on a working set of free columns (the relaxation
    solution is sparse): the parent's weighted columns plus the ``r + extra``
    with the largest ``hint_q``, grown by the columns whose cut coefficient
    exceeds the working set's level (they violate optimality). The bound is
    always computed over *all* free columns, so a small working set can only
    weaken it, never make it wrong; and the value on a working set is the value
    of a feasible point of the full relaxation, so it stays an upper bound.
    """
    warm_s = warm_s or {}
    work = _initial_working_set(free, r, warm_s, hint_q, extra)
    n_fixed = fixed_in.size
    best, best_cut, value = -np.inf, None, np.inf
    s = start_weights(work, warm_s, r)
    warm_theta = warm_theta or {}
    theta = None
    for it in range(max_iter):
        if theta is None:
            cols = np.concatenate([fixed_in, work])
            Z = np.empty((problem.n_examples, cols.size + 1))
            Z[:, :-1] = problem.XT[cols].T
            Z[:, -1] = 1.0
            theta = np.array([warm_theta.get(j, 0.0) for j in cols.tolist()] + [warm_theta.get("b", 0.0)])
        penalty = np.concatenate([np.full(n_fixed, 1.0 / problem.gamma), 1.0 / (problem.gamma * s), [0.0]])
        theta, value, p = _newton(Z, problem.y, problem.weight, penalty, theta, max_steps=1)
        cut = dual_cut(problem, p)
        bound = node_bound(cut, fixed_in, free, r)
        if bound > best:
            best, best_cut = bound, cut
        if relaxation_done(best, value, it, prune_level=prune_level, rtol=rtol, min_iter=min_iter,
                           clock=clock, deadline=deadline):
            break
        if work.size > r:
            a = np.abs(theta[n_fixed:-1])
            s = relaxed_weights(a, r)
        grown = _grow(work, s, free, cut.q, r)
        if grown is not None:
            warm_theta = dict(zip(cols.tolist(), theta[:-1].tolist()), b=float(theta[-1]))
            warm_s = dict(zip(work.tolist(), s.tolist()))
            work = grown
            s = start_weights(work, warm_s, r)
            theta = None
    if theta is None:  # the working set grew on the last iteration
        theta_map = warm_theta
    else:
        theta_map = dict(zip(cols.tolist(), theta[:-1].tolist()), b=float(theta[-1]))
    return NodeRelaxation(bound=best, value=value, s=dict(zip(work.tolist(), s.tolist())), theta=theta_map, cut=best_cut)

