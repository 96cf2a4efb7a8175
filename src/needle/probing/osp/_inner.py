"""The inner problem: ridge logistic regression on a fixed (possibly fractional) support, and its cut.

For a support indicator :math:`s \\in [0, 1]^d` (binary in the end, fractional
inside relaxations) let

.. math::

    c(s) = \\min_{w, b} \\; \\sum_i c_i \\, \\ell\\bigl(\\tilde y_i (w \\cdot x_i + b)\\bigr)
           + \\sum_{j : s_j > 0} \\frac{w_j^2}{2 \\gamma s_j},
    \\qquad w_j = 0 \\text{ where } s_j = 0,

with :math:`\\ell(u) = \\log(1 + e^{-u})`. For binary :math:`s` this is the
ridge-logistic objective restricted to the support :math:`S = \\{j : s_j = 1\\}`.

Dual (derivation). The convex conjugate of :math:`\\ell` is
:math:`\\ell^*(\\beta) = (-\\beta) \\log(-\\beta) + (1 + \\beta) \\log(1 + \\beta)`
for :math:`\\beta \\in [-1, 0]` (and :math:`+\\infty` elsewhere), so with
:math:`\\alpha_i = -\\beta_i c_i \\in [0, c_i]` and :math:`a_i = \\alpha_i / c_i`,

.. math::

    c_i \\ell(z_i) = \\max_{\\alpha_i \\in [0, c_i]} \\; -\\alpha_i z_i - c_i \\ell^*(-a_i)
                  = \\max_{\\alpha_i} \\; -\\alpha_i z_i + c_i H(a_i),

where :math:`H(a) = -a \\log a - (1 - a) \\log(1 - a)` is the binary entropy.
Put :math:`z_i = \\tilde y_i (w \\cdot x_i + b)` and exchange min and max (the
function is convex in (w, b), concave in α, and α ranges over a compact box):

* minimising :math:`-b \\sum_i \\alpha_i \\tilde y_i` over the free intercept
  gives :math:`-\\infty` unless :math:`\\sum_i \\alpha_i \\tilde y_i = 0` — the
  equality constraint is the price of not penalising b;
* minimising :math:`-w_j v_j + w_j^2 / (2 \\gamma s_j)`, with
  :math:`v = X^\\top (\\alpha \\circ \\tilde y)`, gives
  :math:`w_j = \\gamma s_j v_j` and the value :math:`-\\tfrac{\\gamma}{2} s_j v_j^2`.

Hence

.. math::

    c(s) = \\max_{\\alpha \\in [0, c],\\; \\alpha \\cdot \\tilde y = 0}
           \\; D(\\alpha) - \\frac{\\gamma}{2} \\sum_j s_j v_j(\\alpha)^2,
    \\qquad D(\\alpha) = \\sum_i c_i H(\\alpha_i / c_i).

A maximum of functions affine in s: :math:`c` is convex in s, and for **any**
feasible α (optimal or not) the cut

.. math::

    c(s') \\ge D(\\alpha) - \\sum_j q_j s'_j, \\qquad q_j = \\frac{\\gamma}{2} v_j(\\alpha)^2 \\ge 0,

holds for every :math:`s' \\in [0,1]^d` by weak duality. At the optimal α for
s it is tight at s, and :math:`-q_j = \\partial c / \\partial s_j` (Danskin).
The optimal α is read off the primal optimum:
:math:`\\alpha_i = c_i \\, \\sigma(-z_i)` (stationarity in w gives
:math:`w = \\gamma\\, \\mathrm{diag}(s) v`, in b gives :math:`\\alpha \\cdot \\tilde y = 0`).
Because the primal is solved only to within rounding, α is projected onto
:math:`\\alpha \\cdot \\tilde y = 0` (scaling down the heavier class) and the
cut's constant is the dual value :math:`D(\\alpha)` rather than the primal
value, so every cut is a valid lower bound whatever the solver's accuracy.

Reference: D. Bertsimas, J. Pauphilet, B. Van Parys (2021), "Sparse
classification: a scalable discrete optimization perspective", Machine
Learning, doi:10.1007/s10994-021-06085-5 (the dual of the inner problem and
its use as a cut; the derivation above is ours, for the unpenalised intercept
and sample weights).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from needle.optimal._types import Cut, SupportFit
from needle.probing.osp._problem import OSPProblem

__all__ = ["Cut", "SupportFit", "binary_entropy", "dual_cut", "fit_support", "fit_weighted"]

_MAX_NEWTON = 100
# Newton decrement, relative to the objective, below which a full step is taken
# without a line search (the step then changes the objective by about 1% at most).
_FULL_STEP = 1e-2


def _newton(Z, y, c, penalty, theta, max_steps=_MAX_NEWTON):
    """Minimise ``sum_i c_i log(1 + exp(-y_i Z_i.theta)) + 1/2 sum_j penalty_j theta_j^2`` by damped Newton.

    ``Z`` carries a column of ones for the intercept (penalty 0). Returns
    ``(theta, value, p)`` with ``p_i = sigmoid(-margin_i)``. ``max_steps`` lets a
    relaxation take a few steps per outer iteration instead of solving to the end.
    """

    def value_at(th):
        m = y * (Z @ th)
        return float(c @ np.logaddexp(0.0, -m)) + 0.5 * float(penalty @ (th * th)), m

    f, margins = value_at(theta)
    exact = True  # whether f is the value at theta (full steps near the optimum skip it)
    diag = np.arange(theta.size)
    for _ in range(max_steps):
        p = expit(-margins)
        grad = Z.T @ (-(c * p) * y) + penalty * theta
        h = c * p * (1.0 - p)
        hess = Z.T @ (Z * h[:, None])
        hess[diag, diag] += penalty
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            # Only the intercept is unpenalised, so this needs vanishing curvature
            # (near-perfect separation); a tiny shift keeps the step a descent direction.
            hess[diag, diag] += 1e-10 * (1.0 + np.abs(np.diag(hess)).max())
            step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if decrement <= 1e-13 * max(1.0, abs(f)):
            break
        if decrement < _FULL_STEP * max(1.0, abs(f)):
            # Quadratic convergence region: the full step is safe, and the value
            # (the costly part of a line search) is only needed at the end.
            theta = theta - step
            margins = y * (Z @ theta)
            f, exact = f - 0.5 * decrement, False
            continue
        if not exact:
            f, margins = value_at(theta)
            exact = True
        t = 1.0
        while True:
            cand = theta - t * step
            f_new, m_new = value_at(cand)
            if f_new <= f - 0.25 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        if f_new > f:  # no progress possible at machine precision
            break
        theta, f, margins = cand, f_new, m_new
    if not exact:
        f, margins = value_at(theta)
    return theta, f, expit(-margins)


def binary_entropy(a: np.ndarray) -> np.ndarray:
    """``-a log a - (1 - a) log(1 - a)`` for ``a`` in [0, 1], with ``0 log 0 = 0``."""
    # Flooring the log arguments keeps 0 * log(0) at 0 without xlogy's cost.
    tiny = 1e-300
    b = 1.0 - a
    return -(a * np.log(np.maximum(a, tiny)) + b * np.log(np.maximum(b, tiny)))


def dual_cut(problem: OSPProblem, alpha_frac: np.ndarray) -> Cut:
    """The cut of a dual point given as ``a_i = alpha_i / c_i`` in (0, 1), after projecting onto ``alpha . y = 0``."""
    y, c = problem.y, problem.weight
    alpha = c * alpha_frac
    pos, neg = y > 0, y < 0
    mass_pos, mass_neg = alpha[pos].sum(), alpha[neg].sum()
    # Scaling the heavier class down keeps alpha inside [0, c].
    if mass_pos > mass_neg:
        alpha[pos] *= mass_neg / mass_pos
    elif mass_neg > mass_pos:
        alpha[neg] *= mass_pos / mass_neg
    constant = float(c @ binary_entropy(alpha / c))
    v = problem.XT @ (alpha * y)
    return Cut(constant=constant, q=0.5 * problem.gamma * v * v)


def fit_weighted(problem: OSPProblem, columns, scale, init=None):
    """Minimise the loss plus ``sum_j w_j^2 / (2 gamma scale_j)`` over ``columns``; the inner problem at fractional s.

    Parameters
    ----------
    problem : OSPProblem
    columns : sequence of int
        Where ``s_j > 0``.
    scale : ndarray of shape (len(columns),)
        The values ``s_j`` in (0, 1].
    init : ndarray of shape (len(columns) + 1,), optional
        Starting ``(w, b)``.

    Returns
    -------
    coef, intercept, value, cut
    """
    columns = np.asarray(columns, dtype=np.intp)
    Z = np.empty((problem.n_examples, columns.size + 1))
    Z[:, :-1] = problem.XT[columns].T
    Z[:, -1] = 1.0
    penalty = np.append(1.0 / (problem.gamma * np.asarray(scale, dtype=np.float64)), 0.0)
    theta = np.zeros(columns.size + 1) if init is None else np.asarray(init, dtype=np.float64).copy()
    theta, value, p = _newton(Z, problem.y, problem.weight, penalty, theta)
    return theta[:-1], float(theta[-1]), value, dual_cut(problem, p)


def fit_support(problem: OSPProblem, support, init=None) -> SupportFit:
    """Solve the inner problem exactly on a binary support and return the fit and its cut.

    Parameters
    ----------
    problem : OSPProblem
    support : iterable of int
        Column ids (any order, no duplicates).
    init : ndarray of shape (len(support) + 1,), optional
        Starting ``(w, b)`` in sorted-support order.
    """
    support = tuple(sorted(int(j) for j in support))
    coef, intercept, value, cut = fit_weighted(problem, support, np.ones(len(support)), init)
    return SupportFit(support=support, coef=coef, intercept=intercept, value=value, cut=cut)
