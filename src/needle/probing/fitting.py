"""Batched fitting of many small L2 logistic-regression probes at once.

A sweep refits a logistic-regression probe on every selected support: tens of
thousands of small problems. Instead of one scikit-learn call per probe, the
problems of one path (all ``k`` of one feature × layer × method) are stacked
into 3-D arrays and solved together by a vectorised Newton method: every
iteration builds the ``(k+1) × (k+1)`` Hessians of all problems with one
batched matrix product and solves them with one :func:`numpy.linalg.solve`
call on the stack. Problems of similar size share a bucket (the smaller ones
padded with zero columns, which provably keep a zero coefficient), and each
bucket starts from the previous bucket's solution on the neurons they share
(warm starts along the ``k`` path). Wide systems (k above 48) build their
Hessians in float32 and keep a Cholesky factor across iterations while it
still cuts the gradient fast (the gradient and the line search stay float64,
so the optimum is exact).

Also here: :func:`fit_elastic_net_logistic`, an orthant-wise Newton solver for
the elastic-net fits of adaptive thresholding and the L1 scores. On many
columns (adaptive thresholding's first fit sees 1024) it solves each Newton
system by conjugate gradients with Hessian-vector products (``2 n q`` each,
where forming the Hessian costs ``n q^2``), preconditioned by the Cholesky
factor of a Hessian built only now and then.

The objective is scikit-learn's ``LogisticRegression(C=C, class_weight=
"balanced")`` (L2 penalty, intercept not penalised)::

    min_{w, b}  C * sum_i s_i * log(1 + exp(-t_i (x_i . w + b)))  +  ||w||^2 / 2

with ``t_i = ±1`` and the balanced weights ``s_i = n / (2 n_{y_i})``. We
minimise the same function divided by ``C * sum(s)`` (identical minimiser,
better scaled) and stop when the largest gradient entry of the scaled
objective is below ``tol``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from needle.errors import InputError

__all__ = [
    "balanced_sample_weight",
    "fit_logistic_batch",
    "fit_logistic_path",
    "BatchFit",
    "PathFit",
    "fit_elastic_net_logistic",
    "ElasticNetFit",
]

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
#: Hessians of systems wider than this are accumulated in float32.
_SMALL_WIDTH = 48
#: Elastic-net fits on more columns than this use working sets (when there is an L1 term).
_WORKING_SET_MIN = 64
#: Keep a wide system's Hessian while each step cuts the gradient at least this much.
_REFRESH_RATIO = 0.25
#: Elastic-net Newton systems wider than this are solved by preconditioned conjugate gradients.
_PCG_MIN_WIDTH = 128
#: Build a new preconditioning Hessian after a CG solve that needed more iterations than this.
_CG_REFRESH = 10
_CG_MAX_ITER = 50


def balanced_sample_weight(y: np.ndarray) -> np.ndarray:
    """scikit-learn's ``class_weight="balanced"`` as per-example weights.

    Parameters
    ----------
    y : ndarray of shape (n_examples,)
        Labels 0/1; both classes must be present.

    Returns
    -------
    ndarray of shape (n_examples,), float64
        ``n / (2 * n_c)`` for an example of class ``c``; they sum to ``n``.
    """
    y = np.asarray(y)
    n = y.size
    n_pos = int(np.count_nonzero(y))
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"balanced weights need both classes; got {n_pos} positives and {n_neg} negatives.")
    return np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * n_neg))


@dataclass
class BatchFit:
    """Solutions of a stack of logistic regressions.

    Attributes
    ----------
    coef : ndarray of shape (n_problems, n_columns)
    intercept : ndarray of shape (n_problems,)
    n_iter : ndarray of shape (n_problems,), int
        Newton iterations used by each problem.
    converged : ndarray of shape (n_problems,), bool
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def _loss(z: np.ndarray, y: np.ndarray, s_over_S: np.ndarray) -> np.ndarray:
    """Weighted mean logistic loss per problem. z (B, n) -> (B,)."""
    # softplus(z) - y z is the logistic loss for labels y in {0, 1}
    return ((np.logaddexp(0.0, z) - y * z) * s_over_S).sum(axis=1)


def _hessians(Xt: np.ndarray, h: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """``X^T diag(h) X + diag(pen)`` for every problem of the stack.

    Xt (B, q, n) — the design matrices transposed —, h (B, n), pen (q,)
    -> (B, q, q), float64.
    """
    q = Xt.shape[1]
    if q > _SMALL_WIDTH:
        # Wide systems: the Hessian only sets the *direction* of a step, so
        # float32 products (several times faster than float64) are enough;
        # the gradient, the line search and therefore the optimum stay float64.
        A = Xt.astype(np.float32) * np.sqrt(h).astype(np.float32)[:, None, :]
    else:
        A = Xt * np.sqrt(h)[:, None, :]
    hess = np.matmul(A, A.transpose(0, 2, 1)).astype(np.float64)
    hess[:, np.arange(q), np.arange(q)] += pen
    # The intercept's diagonal entry is sum(h) > 0 and every other one gets
    # the ridge term, so each Hessian is symmetric positive definite.
    return hess


def _cholesky(hess: np.ndarray):
    """Cholesky factor of a Hessian; a numerically indefinite one gets a growing ridge."""
    try:
        return cho_factor(hess, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    scale = max(np.trace(hess) / hess.shape[0], 1e-300)
    for relative in (1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0):
        try:
            return cho_factor(hess + relative * scale * np.eye(hess.shape[0]), lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("Hessian is not positive definite even with a ridge; are there NaNs in X?")


def _newton_batch(Xt, y, s, C, theta, tol, max_iter):
    """Newton's method on a stack; Xt (B, q, n) includes the intercept row last.

    For wide systems (more than ``_SMALL_WIDTH`` columns), building the
    Hessian (``n q^2``) dominates, so a Hessian is kept while it works: the
    next step reuses it (a "chord" step, ``n q`` for the gradient plus ``q^2``)
    unless the last step cut the largest gradient entry by less than a factor
    ``1 / _REFRESH_RATIO``. Every step is a descent direction (the kept
    Hessian is positive definite) and is line-searched, so the iteration
    converges to the same optimum; warm-started problems typically need one
    or two Hessians instead of four to eight.

    theta (B, q) is the start and is overwritten with the solution.
    Returns (n_iter, converged).
    """
    n_problems, q, n = Xt.shape
    s_over_S = s / s.sum()
    pen = np.full(q, 1.0 / (C * s.sum()))
    pen[-1] = 0.0  # the intercept is not penalised
    n_iter = np.zeros(n_problems, dtype=np.int64)
    converged = np.zeros(n_problems, dtype=bool)
    factors: list = [None] * n_problems  # kept Cholesky factors of wide systems
    last_gmax = np.full(n_problems, np.inf)
    wide = q > _SMALL_WIDTH
    active = np.arange(n_problems)
    z_all = np.matmul(theta[:, None, :], Xt)[:, 0, :]
    f_all = _loss(z_all, y, s_over_S) + 0.5 * np.einsum("bq,q,bq->b", theta, pen, theta)
    for iteration in range(max_iter + 1):
        Xb = Xt if active.size == n_problems else Xt[active]
        th, z, f0 = theta[active], z_all[active], f_all[active]
        prob = expit(z)
        grad = np.matmul(Xb, (s_over_S * (prob - y))[:, :, None])[:, :, 0] + pen * th
        gmax = np.abs(grad).max(axis=1)
        done = gmax <= tol
        if done.any():
            converged[active[done]] = True
            keep = ~done
            active, Xb, th, z, f0, prob, grad, gmax = (
                active[keep], Xb[keep], th[keep], z[keep], f0[keep], prob[keep], grad[keep], gmax[keep]
            )
        if active.size == 0 or iteration == max_iter:
            break
        h = s_over_S * prob * (1.0 - prob)
        if not wide:
            # Many small systems: one batched product and one batched solve.
            refresh = np.ones(active.size, dtype=bool)
            step = -np.linalg.solve(_hessians(Xb, h, pen), grad[:, :, None])[:, :, 0]
        else:
            refresh = np.array([factors[b] is None for b in active]) | (gmax > _REFRESH_RATIO * last_gmax[active])
            step = np.empty_like(grad)
            for row, b in enumerate(active):
                if refresh[row]:
                    factors[b] = _cholesky(_hessians(Xb[row : row + 1], h[row : row + 1], pen)[0])
                step[row] = cho_solve(factors[b], -grad[row])
        last_gmax[active] = gmax
        # Backtracking (Armijo) line search on the exact objective; z is
        # linear in the step, so trying a step length costs no matrix product.
        z_step = np.matmul(step[:, None, :], Xb)[:, 0, :]
        slope = np.einsum("bq,bq->b", grad, step)
        alpha = np.ones(active.size)
        f_new = f0.copy()
        pending = np.arange(active.size)
        for _ in range(_MAX_HALVINGS):
            cand = th[pending] + alpha[pending, None] * step[pending]
            f1 = _loss(z[pending] + alpha[pending, None] * z_step[pending], y, s_over_S)
            f1 += 0.5 * np.einsum("bq,q,bq->b", cand, pen, cand)
            ok = f1 <= f0[pending] + _ARMIJO * alpha[pending] * slope[pending]
            f_new[pending[ok]] = f1[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            alpha[pending] *= 0.5
        alpha[pending] = 0.0
        theta[active] = th + alpha[:, None] * step
        z_all[active] = z + alpha[:, None] * z_step
        f_all[active] = f_new
        n_iter[active] += 1
        if pending.size:
            # No step length decreases the objective. With a kept Hessian,
            # refresh it and try again; with a fresh one the iterate sits at
            # its numerical optimum: stop (flagged converged only if the
            # gradient is small by a looser standard).
            for row in pending[~refresh[pending]]:
                factors[active[row]] = None
            stuck = pending[refresh[pending]]
            converged[active[stuck]] = gmax[stuck] <= max(tol, 1e-6)
            active = np.delete(active, stuck)
            if active.size == 0:
                break
    return n_iter, converged


def _check_common(y, C, n):
    from needle.probing.penalties import check_C

    y = np.asarray(y, dtype=np.float64).ravel()
    if y.shape != (n,):
        raise InputError(f"y has {y.size} entries but X has {n} examples.")
    check_C(C)
    return y


def _warn_unconverged(converged, tol, max_iter):
    if not converged.all():
        warnings.warn(
            f"{int((~converged).sum())} of {converged.size} logistic regressions did not reach tol={tol:g} in "
            f"{max_iter} Newton iterations; increase max_iter or decrease C.",
            ConvergenceWarning,
            stacklevel=3,
        )


def fit_logistic_batch(
    X: np.ndarray,
    y: np.ndarray,
    *,
    C: float = 1.0,
    sample_weight: np.ndarray | None = None,
    coef_init: np.ndarray | None = None,
    intercept_init: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> BatchFit:
    """Fit a stack of L2 logistic regressions on the same examples with Newton's method.

    Every problem ``b`` minimises (up to a constant factor)::

        C * sum_i s_i * logloss(y_i, X[b, i] . w_b + c_b) + ||w_b||^2 / 2

    exactly as ``sklearn.linear_model.LogisticRegression(C=C)`` does with
    ``sample_weight=s`` (``class_weight="balanced"`` when ``s`` is
    :func:`balanced_sample_weight`). Newton steps are taken for all problems
    at once (one batched Hessian product, one batched solve per iteration),
    with a backtracking (Armijo) line search per problem; problems leave the
    active set as they converge.

    Parameters
    ----------
    X : ndarray of shape (n_problems, n_examples, n_columns)
        Design matrices, without an intercept column. Columns that are zero
        for every example (padding) get a zero coefficient.
    y : ndarray of shape (n_examples,)
        Labels 0/1, shared by all problems.
    C : float, default 1.0
        Inverse regularisation strength, as in scikit-learn.
    sample_weight : ndarray of shape (n_examples,), optional
        Default: balanced class weights.
    coef_init : ndarray of shape (n_problems, n_columns), optional
        Warm start (default zeros).
    intercept_init : ndarray of shape (n_problems,), optional
        Warm start (default zeros).
    tol : float, default 1e-8
        Stop a problem when the largest absolute entry of the gradient of
        the scaled objective (loss averaged with weights ``s / sum(s)``) is
        at most ``tol``.
    max_iter : int, default 100
        Newton iterations at most; a problem that has not converged by then
        is flagged and a :class:`~sklearn.exceptions.ConvergenceWarning` is
        issued.

    Returns
    -------
    BatchFit
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise InputError(f"X must be 3-D (n_problems, n_examples, n_columns), got shape {X.shape}.")
    n_problems, n, p = X.shape
    y = _check_common(y, C, n)
    s = balanced_sample_weight(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    Xt = np.empty((n_problems, p + 1, n))
    Xt[:, :p, :] = X.transpose(0, 2, 1)
    Xt[:, p, :] = 1.0
    theta = np.zeros((n_problems, p + 1))
    if coef_init is not None:
        theta[:, :p] = coef_init
    if intercept_init is not None:
        theta[:, p] = intercept_init
    n_iter, converged = _newton_batch(Xt, y, s, C, theta, tol, max_iter)
    _warn_unconverged(converged, tol, max_iter)
    return BatchFit(coef=theta[:, :p].copy(), intercept=theta[:, p].copy(), n_iter=n_iter, converged=converged)


@dataclass
class PathFit:
    """Refits of a list of supports (e.g. every ``k`` of one selection path).

    Attributes
    ----------
    coef : list of ndarray
        ``coef[j]`` has shape (len(supports[j]),), aligned with ``supports[j]``.
    intercept : ndarray of shape (n_supports,)
    n_iter : ndarray of shape (n_supports,), int
    converged : ndarray of shape (n_supports,), bool
    """

    coef: list[np.ndarray]
    intercept: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def _bucket_width(k: int, min_width: int) -> int:
    """Padded width of a support of size ``k``: a power of two, at least ``min_width``."""
    return max(min_width, 1 << max(0, int(k) - 1).bit_length())


def fit_logistic_path(
    X: np.ndarray,
    y: np.ndarray,
    supports: Sequence[np.ndarray],
    *,
    C: float = 1.0,
    sample_weight: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 100,
    min_width: int = 8,
    warm_start: bool = True,
) -> PathFit:
    """Refit an L2 logistic regression on each support, batched.

    Supports are grouped into buckets of padded width (a power of two, at
    least ``min_width``); each bucket is one batched Newton solve (as in :func:`fit_logistic_batch`).
    Buckets are solved from the narrowest to the widest and, with
    ``warm_start``, each problem starts from the most recent solution that
    shares columns with it (the coefficients of shared columns are copied,
    new columns start at zero) — along a nested ``k`` path this is the fit at
    the previous ``k``.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
        Design matrix (usually standardised training activations).
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    supports : sequence of ndarray of int
        Column indices of each probe (no duplicates within a support).
    C, sample_weight, tol, max_iter
        As in :func:`fit_logistic_batch`.
    min_width : int, default 8
        Supports up to this size are padded to it and solved together.
    warm_start : bool, default True

    Returns
    -------
    PathFit
    """
    X = np.asarray(X, dtype=np.float64)
    y64 = _check_common(y, C, X.shape[0])
    supports = [np.asarray(sup, dtype=np.int64).ravel() for sup in supports]
    n_sup = len(supports)
    coefs: list[np.ndarray] = [np.empty(0)] * n_sup
    intercept = np.zeros(n_sup)
    n_iter = np.zeros(n_sup, dtype=np.int64)
    converged = np.zeros(n_sup, dtype=bool)
    if n_sup == 0:
        return PathFit([], intercept, n_iter, converged)
    s = balanced_sample_weight(y64) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    buckets: dict[int, list[int]] = {}
    for j, sup in enumerate(supports):
        if sup.size == 0:
            raise InputError("every support must contain at least one column.")
        buckets.setdefault(_bucket_width(sup.size, min_width), []).append(j)

    # Work on the columns used by some support only, transposed so that
    # gathering a support copies whole contiguous rows.
    used, inverse = np.unique(np.concatenate(supports), return_inverse=True)
    Xt_used = np.ascontiguousarray(X[:, used].T)
    supports = np.split(inverse, np.cumsum([sup.size for sup in supports])[:-1])
    n = X.shape[0]
    # Most recent solution per (used) column, for warm starts.
    last_coef = np.zeros(used.size)
    last_intercept = 0.0
    have_last = False
    for width in sorted(buckets):
        members = buckets[width]
        stack = np.zeros((len(members), width + 1, n))
        stack[:, width, :] = 1.0  # intercept row
        theta = np.zeros((len(members), width + 1))
        for row, j in enumerate(members):
            sup = supports[j]
            stack[row, : sup.size, :] = Xt_used[sup]
            if warm_start and have_last:
                theta[row, : sup.size] = last_coef[sup]
                theta[row, width] = last_intercept
        it, conv = _newton_batch(stack, y64, s, C, theta, tol, max_iter)
        for row, j in enumerate(members):
            k = supports[j].size
            coefs[j] = theta[row, :k].copy()
            intercept[j] = theta[row, width]
            n_iter[j] = it[row]
            converged[j] = conv[row]
        # Warm start the next bucket from this bucket's largest problem.
        biggest = max(members, key=lambda j: supports[j].size)
        last_coef[:] = 0.0
        last_coef[supports[biggest]] = coefs[biggest]
        last_intercept = float(intercept[biggest])
        have_last = True
    _warn_unconverged(converged, tol, max_iter)
    return PathFit(coefs, intercept, n_iter, converged)


@dataclass
class ElasticNetFit:
    """Solution of one elastic-net logistic regression.

    Attributes
    ----------
    coef : ndarray of shape (n_columns,)
    intercept : float
    n_iter : int
        Newton iterations used.
    converged : bool
    """

    coef: np.ndarray
    intercept: float
    n_iter: int
    converged: bool


def fit_elastic_net_logistic(
    X: np.ndarray,
    y: np.ndarray,
    *,
    C: float,
    l1_ratio: float,
    sample_weight: np.ndarray | None = None,
    coef_init: np.ndarray | None = None,
    intercept_init: float = 0.0,
    tol: float = 1e-6,
    max_iter: int = 200,
    working_set: bool = True,
) -> ElasticNetFit:
    """Elastic-net logistic regression by an orthant-wise Newton method.

    Minimises scikit-learn's ``LogisticRegression(C=C, l1_ratio=l1_ratio)``
    objective (intercept not penalised)::

        C * sum_i s_i * logloss_i + (1 - l1_ratio) / 2 * ||w||_2^2 + l1_ratio * ||w||_1

    The objective is smooth inside each orthant. Every iteration takes the
    free variables (non-zero ones, and zero ones whose gradient exceeds the
    L1 threshold), fixes the orthant each of them may move in (its sign, or
    for a zero one the sign opposite to its pseudo-gradient), takes a Newton
    step for the smooth objective of that orthant restricted to the free
    variables, and line-searches along it with every coordinate that would
    leave its orthant clipped to zero (the projection of OWL-QN, Andrew & Gao
    2007, with exact Hessians in place of quasi-Newton ones; a coordinate at
    zero may only leave it along its negative pseudo-gradient). If the Newton
    step gives no decrease, a projected steepest-descent step on the
    pseudo-gradient is tried. It stops when the largest entry of the
    pseudo-gradient (the minimum-norm subgradient, scaled like
    :func:`fit_logistic_batch`'s gradient) is at most ``tol``.

    With more than ``_PCG_MIN_WIDTH`` (128) free variables, the Newton
    system is not formed: it is solved by conjugate gradients (Hessian-vector
    products in float32, ``2 n q`` each instead of ``n q^2`` for the
    Hessian), to a relative residual ``min(0.1, sqrt(gmax))`` (an inexact
    Newton method), preconditioned by the Cholesky factor of the last Hessian
    built; a new one is built after a solve that needed more than
    ``_CG_REFRESH`` iterations. The gradient, the objective and the line
    search stay float64, so the solution is the same to the tolerance.

    For the hundreds-to-thousands of standardised columns of adaptive
    thresholding, this reaches the tolerance in about ten to twenty Newton
    steps and two or three Hessians where SAGA needs hundreds of epochs; the
    test suite checks it against scikit-learn's SAGA solution and against
    exact Newton steps.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    C : float
        Inverse regularisation strength.
    l1_ratio : float
        Between 0 (ridge) and 1 (lasso).
    sample_weight : ndarray of shape (n_examples,), optional
        Default: balanced class weights.
    coef_init : ndarray of shape (n_columns,), optional
        Warm start.
    intercept_init : float, default 0.0
    tol : float, default 1e-6
    max_iter : int, default 200
    working_set : bool, default True
        With ``l1_ratio >= 0.5`` and many columns, solve on a working set of columns
        and grow it with the columns that violate the optimality conditions
        until none does (the solution is the same; sparse solutions come much
        faster because the Hessians stay small).

    Returns
    -------
    ElasticNetFit
    """
    X = np.asarray(X, dtype=np.float64)
    n, m = X.shape
    y = _check_common(y, C, n)
    if not 0.0 <= l1_ratio <= 1.0:
        raise InputError(f"l1_ratio must lie in [0, 1], got {l1_ratio!r}.")
    s = balanced_sample_weight(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    # Working sets pay off for sparse solutions; mostly-ridge fits (adaptive's first ones) end up dense.
    if working_set and l1_ratio >= 0.5 and m > _WORKING_SET_MIN:
        return _fit_on_working_sets(X, y, s, C=C, l1_ratio=l1_ratio, coef_init=coef_init,
                                    intercept_init=intercept_init, tol=tol, max_iter=max_iter)
    sw = s / s.sum()
    a2 = (1.0 - l1_ratio) / (C * s.sum())
    a1 = l1_ratio / (C * s.sum())
    Xt = np.ascontiguousarray(X.T)  # (m, n): a set of columns is a set of contiguous rows
    Xt32 = None  # float32 copy for the Hessian products of wide systems, made on first use
    w = np.zeros(m) if coef_init is None else np.array(coef_init, dtype=np.float64)
    b = float(intercept_init)
    z = w @ Xt + b

    def objective(z, w):
        return float(np.sum((np.logaddexp(0.0, z) - y * z) * sw) + 0.5 * a2 * (w @ w) + a1 * np.abs(w).sum())

    def rows_times(v, cols):
        """``v @ Xt[cols]`` without gathering most of the matrix."""
        if cols.size * 2 > m:
            full = np.zeros(m)
            full[cols] = v
            return full @ Xt
        return v @ Xt[cols]

    f = objective(z, w)
    converged = False
    iteration = 0
    kept = None  # the preconditioner of wide systems (see _kept_hessian)
    refresh = False
    for iteration in range(1, max_iter + 1):
        prob = expit(z)
        resid = sw * (prob - y)
        g = Xt @ resid + a2 * w
        gb = float(resid.sum())
        # Pseudo-gradient: the subgradient of smallest norm.
        pg = np.where(w > 0, g + a1, np.where(w < 0, g - a1, np.sign(g) * np.maximum(np.abs(g) - a1, 0.0)))
        gmax = max(np.abs(pg).max(initial=0.0), abs(gb))
        if gmax <= tol:
            converged = True
            break
        free = np.flatnonzero((w != 0) | (pg != 0))
        # The orthant each free coordinate must stay in (none without L1).
        orthant = np.where(w[free] != 0, np.sign(w[free]), -np.sign(pg[free])) if a1 > 0 else None
        q = free.size
        h = sw * prob * (1.0 - prob)
        rhs = -np.r_[pg[free], gb]
        if q <= _PCG_MIN_WIDTH:
            # Few columns: build the exact Hessian and solve (n q^2 is cheap here).
            Xf = Xt[free]
            A = Xf * np.sqrt(h) if q <= _SMALL_WIDTH else Xf.astype(np.float32) * np.sqrt(h).astype(np.float32)
            hess = np.empty((q + 1, q + 1))
            hess[:q, :q] = A @ A.T
            hess[np.arange(q), np.arange(q)] += a2
            hess[:q, q] = hess[q, :q] = Xf @ h
            hess[q, q] = h.sum()
            step = cho_solve(_cholesky(hess), rhs, check_finite=False)
        else:
            # Many columns: building a Hessian costs n q^2 but a Hessian-vector product only 2 n q, so
            # solve the Newton system by conjugate gradients, preconditioned with the Cholesky factor
            # of the last Hessian built; build a new one when the kept one stops being a good
            # preconditioner (too many CG iterations). The products use a float32 copy of X: they only
            # set the step; the gradient and the line search stay float64, so the optimum is exact.
            if Xt32 is None:
                Xt32 = Xt.astype(np.float32)
            if kept is None or refresh:
                kept = _kept_hessian(Xt32, Xt, free, h, a2)
            step, cg_iter = _newton_cg(Xt32, free, h, a2, rhs, kept, rtol=min(0.1, np.sqrt(gmax)))
            refresh = cg_iter > _CG_REFRESH
        d, db = step[:q], step[q]
        # A coordinate at zero may only leave it along -pg (OWL-QN's alignment);
        # non-zero ones follow the Newton step, clipped at zero below.
        if a1 > 0:
            d[(w[free] == 0) & (d * pg[free] > 0)] = 0.0
        accepted = False
        for direction in ("newton", "gradient"):
            if direction == "gradient":
                d, db = -pg[free], -gb
            # z is linear in the step except where a coordinate is clipped at zero: one product here,
            # and per trial step length only the (few) clipped columns.
            z_dir = rows_times(d, free) + db
            alpha = 1.0
            for _ in range(_MAX_HALVINGS):
                w_free = w[free] + alpha * d
                z_new = z + alpha * z_dir
                if orthant is not None:
                    clipped = np.flatnonzero(np.sign(w_free) != orthant)  # leaves its orthant: stays at zero
                    moved = clipped[w_free[clipped] != 0.0]
                    if moved.size:
                        z_new -= w_free[moved] @ Xt[free[moved]]
                    w_free[clipped] = 0.0
                delta = w_free - w[free]
                w_new = w.copy()
                w_new[free] = w_free
                f_new = objective(z_new, w_new)
                if f_new <= f + _ARMIJO * (pg[free] @ delta + gb * alpha * db):
                    accepted = True
                    break
                alpha *= 0.5
            if accepted:
                break
        if not accepted:
            converged = gmax <= max(tol, 1e-5)
            break
        w, b, z, f = w_new, b + alpha * db, z_new, f_new
    if not converged:
        warnings.warn(
            f"elastic-net logistic regression did not reach tol={tol:g} in {max_iter} iterations.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return ElasticNetFit(coef=w, intercept=b, n_iter=iteration, converged=converged)


@dataclass
class _KeptHessian:
    """A Hessian built at some iterate, kept as a preconditioner: its free columns and Cholesky factor."""

    free: np.ndarray
    factor: tuple


def _kept_hessian(Xt32, Xt, free, h, a2) -> _KeptHessian:
    """Build and factor the smooth part's Hessian on ``free`` plus the intercept (last), with float32 products.

    Xt32, Xt (m, n) — the design matrix transposed, in float32 and float64 —, free (q,), h (n,) the
    curvature weights, a2 the ridge coefficient.
    """
    q = free.size
    m = Xt.shape[0]
    Xf32 = Xt32[free] if q < m else Xt32
    A = Xf32 * np.sqrt(h).astype(np.float32)
    hess = np.empty((q + 1, q + 1))
    hess[:q, :q] = A @ A.T
    hess[np.arange(q), np.arange(q)] += a2
    hess[:q, q] = hess[q, :q] = Xt[free] @ h if 2 * q <= m else (Xt @ h)[free]
    hess[q, q] = h.sum()
    return _KeptHessian(free=free, factor=_cholesky(hess))


def _newton_cg(Xt32, free, h, a2, rhs, kept: _KeptHessian, *, rtol, max_iter=_CG_MAX_ITER):
    """Solve ``H d = rhs`` on the free columns plus the intercept (last) by preconditioned conjugate gradients.

    ``H`` is the Hessian of the smooth part at the current iterate (weights
    ``h``), applied as ``X_f^T diag(h) X_f + a2 I`` (intercept row and column
    included) without forming it: two float32 products with ``Xt32`` (m, n)
    per iteration. The preconditioner is the kept factor on the free columns
    it covers (a principal sub-block of the kept Hessian's inverse, hence
    positive definite) and the current diagonal on the others. Returns the
    solution of shape (q + 1,), stopped at relative residual ``rtol`` or
    after ``max_iter`` iterations, and the iterations used.
    """
    m = Xt32.shape[0]
    q = free.size
    full = np.zeros(m, dtype=np.float32)
    h32 = h.astype(np.float32)
    position = np.searchsorted(kept.free, free)
    position[position >= kept.free.size] = 0
    covered = kept.free[position] == free if kept.free.size else np.zeros(q, bool)
    covered_pos = np.r_[position[covered], kept.free.size]  # rows of the kept system, intercept last
    covered_idx = np.r_[np.flatnonzero(covered), q]
    other = np.flatnonzero(~covered)
    inv_diag = 1.0 / (np.square(Xt32[free[other]], dtype=np.float64) @ h + a2)
    n_kept = kept.free.size + 1

    def hvp(v):
        full[free] = v[:q]
        u = full @ Xt32 + np.float32(v[q])  # X_f v + v_b, (n,)
        hu = h32 * u
        out = np.empty(q + 1)
        out[:q] = (Xt32[free] @ hu if 2 * q <= m else (Xt32 @ hu)[free]) + a2 * v[:q]
        out[q] = float(hu.sum(dtype=np.float64))
        return out

    def precondition(r):
        out = np.empty(q + 1)
        padded = np.zeros(n_kept)
        padded[covered_pos] = r[covered_idx]
        out[covered_idx] = cho_solve(kept.factor, padded, check_finite=False)[covered_pos]
        out[other] = r[other] * inv_diag
        return out

    x = np.zeros(q + 1)
    r = rhs.copy()
    target = rtol * np.linalg.norm(rhs)
    zr = precondition(r)
    p = zr.copy()
    rz = r @ zr
    for iteration in range(1, max_iter + 1):
        Ap = hvp(p)
        curvature = p @ Ap
        if curvature <= 0:
            return (x if iteration > 1 else zr), iteration
        step = rz / curvature
        x += step * p
        r -= step * Ap
        if np.linalg.norm(r) <= target:
            return x, iteration
        zr = precondition(r)
        rz_new = r @ zr
        p = zr + (rz_new / rz) * p
        rz = rz_new
    return x, max_iter


def _fit_on_working_sets(X, y, s, *, C, l1_ratio, coef_init, intercept_init, tol, max_iter) -> ElasticNetFit:
    """Solve the elastic-net problem on growing sets of columns until every other column is optimal at zero.

    A column left out at zero is optimal when its gradient is within the L1
    threshold; the outer loop adds the worst violators (at most as many as
    the set holds) and warm-starts the next solve, so the answer is the full
    problem's, to the same tolerance.
    """
    n, m = X.shape
    sw = s / s.sum()
    a1 = l1_ratio / (C * s.sum())
    a2 = (1.0 - l1_ratio) / (C * s.sum())
    w = np.zeros(m) if coef_init is None else np.array(coef_init, dtype=np.float64)
    b = float(intercept_init)

    def gradient(w, b):
        resid = sw * (expit(X @ w + b) - y)
        return X.T @ resid + a2 * w

    g = gradient(w, b)
    violation = np.maximum(np.abs(g) - a1, 0.0)
    active = np.flatnonzero(w)
    start = max(_WORKING_SET_MIN // 2, 2 * active.size)
    extra = np.setdiff1d(np.argsort(-violation, kind="stable")[:start], active)
    active = np.sort(np.concatenate([active, extra[violation[extra] > 0]]))
    iterations = 0
    while True:
        if active.size == 0:
            active = np.argsort(-violation, kind="stable")[:1]
        fit = fit_elastic_net_logistic(X[:, active], y, C=C, l1_ratio=l1_ratio, sample_weight=s,
                                       coef_init=w[active], intercept_init=b, tol=tol,
                                       max_iter=max(max_iter - iterations, 1), working_set=False)
        iterations += fit.n_iter
        w = np.zeros(m)
        w[active] = fit.coef
        b = fit.intercept
        g = gradient(w, b)
        outside = np.ones(m, bool)
        outside[active] = False
        violation = np.where(outside, np.maximum(np.abs(g) - a1, 0.0), 0.0)
        worst = float(violation.max(initial=0.0))
        if worst <= tol or iterations >= max_iter or active.size == m:
            return ElasticNetFit(coef=w, intercept=b, n_iter=iterations, converged=fit.converged and worst <= tol)
        violators = np.flatnonzero(violation > tol)
        violators = violators[np.argsort(-violation[violators], kind="stable")][: max(active.size, 1)]
        active = np.sort(np.concatenate([active, violators]))
