"""Bounds for every one-column extension of a support at once (the last level of the tree).

A node that needs one more column (``r = 1``) contains the supports
``S + {j}`` for its free columns ``j``. Instead of a relaxation, bound each of
them directly: from the exact fit on ``S``, take one Newton step for every
candidate ``j`` in closed form (the new column enters through a Schur
complement of the shared Hessian block), and turn each step's primal point
into a dual point, i.e. a cut (see :mod:`needle.probing.osp._inner`). All
candidates are handled by a few matrix products.

Any primal point gives a *valid* bound after the dual projection; the Newton
step only makes it tight (one step from the optimum on ``S`` lands close to
the optimum on ``S + {j}``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from needle.probing.osp._inner import SupportFit, binary_entropy
from needle.probing.osp._problem import OSPProblem

__all__ = ["extension_bounds"]


def extension_bounds(problem: OSPProblem, base: SupportFit, candidates: np.ndarray):
    """Certified lower bounds on ``c(base.support + {j})`` for every ``j`` in ``candidates``.

    Parameters
    ----------
    problem : OSPProblem
    base : SupportFit
        The exact fit on the support being extended.
    candidates : ndarray of int, shape (n_candidates,)
        Columns not in ``base.support``.

    Returns
    -------
    bounds : ndarray of shape (n_candidates,)
    starts : ndarray of shape (len(base.support) + 2, n_candidates)
        The Newton point of each extension, rows ``(w_base..., b, w_new)``: a
        warm start for its exact fit.
    """
    X, y, c, gamma = problem.X, problem.y, problem.weight, problem.gamma
    support = np.array(base.support, dtype=np.intp)
    n = X.shape[0]
    Zf = np.empty((n, support.size + 1))
    Zf[:, :-1] = problem.XT[support].T
    Zf[:, -1] = 1.0
    theta = np.append(base.coef, base.intercept)
    decision = Zf @ theta
    p = expit(-y * decision)
    h = c * p * (1.0 - p)
    XcT = problem.XT[candidates]  # rows of X.T: a contiguous gather
    Xc = XcT.T
    g = XcT @ (-(c * p) * y)  # loss gradient in each new column (the penalty's is 0 at w_j = 0)
    Zh = Zf * h[:, None]
    H_ff = Zf.T @ Zh
    H_ff[np.arange(support.size), np.arange(support.size)] += 1.0 / gamma
    H_fj = (XcT @ Zh).T  # (m + 1, n_candidates)
    H_jj = np.einsum("ij,ij->j", Xc, Xc * h[:, None]) + 1.0 / gamma
    try:
        solved = np.linalg.solve(H_ff, H_fj)
    except np.linalg.LinAlgError:
        solved = np.linalg.lstsq(H_ff, H_fj, rcond=None)[0]
    schur = np.maximum(H_jj - np.einsum("ij,ij->j", H_fj, solved), 1.0 / gamma)
    step_new = -g / schur
    step_old = -solved * step_new  # (m + 1, n_candidates)
    decisions = decision[:, None] + Zf @ step_old + Xc * step_new
    # a = sigmoid(-y * decision) = alpha / c, one column per candidate.
    a = 1.0 / (1.0 + np.exp(np.clip(y[:, None] * decisions, -700.0, 700.0)))
    pos = y > 0
    mass_pos, mass_neg = np.where(pos, c, 0.0) @ a, np.where(pos, 0.0, c) @ a
    # Project every column onto alpha . y = 0 by scaling the heavier class down (stays in [0, c]).
    a *= np.where(pos[:, None], np.minimum(1.0, mass_neg / mass_pos), np.minimum(1.0, mass_pos / mass_neg))
    constants = c @ binary_entropy(a)
    ya = c[:, None] * a * y[:, None]
    v_old = problem.XT[support] @ ya  # (|S|, n_candidates)
    v_new = np.einsum("ij,ij->j", Xc, ya)
    bounds = constants - 0.5 * gamma * ((v_old**2).sum(axis=0) + v_new**2)
    return bounds, np.vstack([theta[:, None] + step_old, step_new])

