"""How a probe's fit is solved: ``solve(X, y, datafit, penalty)`` and its path form.

One entry point per shape of work, dispatched on the (datafit, penalty) pair,
in the manner of skglm:

- :func:`solve` — one fit on all columns of ``X`` (what selection methods
  need: an elastic-net or L1 fit whose coefficients rank the neurons);
- :func:`solve_path` — refits on many supports of the same ``X`` (what every
  probe of a ``k`` path needs), batched where a batched solver exists.

Solvers, by pair (the engine's own where it is the point and measured faster;
scikit-learn where the problem is solved well there):

============================  ==================================================================
(Logistic, L2), path          batched Newton over stacked supports (:func:`~needle.probing.fitting.fit_logistic_path`)
(Logistic, L2), ``lbfgs``     scikit-learn's ``LogisticRegression`` (the dense baseline)
(Logistic, ElasticNet)        orthant-wise Newton on working sets (:func:`~needle.probing.fitting.fit_elastic_net_logistic`)
(Multinomial, L2)             scikit-learn's ``LogisticRegression`` (lbfgs, multinomial)
(Multinomial, ElasticNet)     scikit-learn's ``LogisticRegression`` (saga)
(Quadratic, L2)               closed form: a Cholesky solve per support
(Quadratic, ElasticNet)       scikit-learn's ``ElasticNet`` (coordinate descent)
(Logistic, L0)                certified branch-and-bound (:func:`~needle.probing.osp.solve_osp`; registered by that package)
(Quadratic, L0)               certified branch-and-bound (:func:`~needle.optimal.solve_sparse_ridge`; registered by osp)
============================  ==================================================================

A new pair is one function registered with :func:`register_solver`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from needle.errors import InputError
from needle.probing.datafits import Datafit, Logistic, Multinomial, Quadratic
from needle.probing.penalties import L2, ElasticNet, Penalty

__all__ = ["Solution", "PathSolution", "solve", "solve_path", "register_solver"]


@dataclass
class Solution:
    """One fit.

    Attributes
    ----------
    coef : ndarray of shape (n_columns,) or (n_classes, n_columns)
    intercept : float or ndarray of shape (n_classes,)
    n_iter : int
    converged : bool
    """

    coef: np.ndarray
    intercept: float | np.ndarray
    n_iter: int
    converged: bool


@dataclass
class PathSolution:
    """Refits of a list of supports.

    Attributes
    ----------
    coef : list of ndarray
        ``coef[j]`` has shape (len(supports[j]),), or (n_classes, len(supports[j])) for multiclass.
    intercept : list of float or ndarray of shape (n_classes,)
    n_iter : ndarray of shape (n_supports,), int
    converged : ndarray of shape (n_supports,), bool
    """

    coef: list[np.ndarray]
    intercept: list
    n_iter: np.ndarray
    converged: np.ndarray


_SOLVERS: dict[tuple[type, type, str], Callable] = {}


def register_solver(datafit: type[Datafit], penalty: type[Penalty], kind: str = "single", name: str = "default"):
    """Register a solver function for a (datafit, penalty) pair; ``kind`` is ``single`` or ``path``."""

    def add(function):
        _SOLVERS[(datafit, penalty, f"{kind}:{name}")] = function
        return function

    return add


def _lookup(datafit: Datafit, penalty: Penalty, kind: str, solver: str):
    key = (type(datafit), type(penalty), f"{kind}:{solver}")
    if key not in _SOLVERS:
        known = sorted(f"({d.__name__}, {p.__name__}) {k}" for d, p, k in _SOLVERS)
        raise InputError(f"no {kind} solver {solver!r} for ({type(datafit).__name__}, {type(penalty).__name__}); "
                         f"available: {', '.join(known)}.")
    return _SOLVERS[key]


def solve(X: np.ndarray, y: np.ndarray, datafit: Datafit, penalty: Penalty, *, solver: str = "default",
          **options) -> Solution:
    """Minimise ``C * datafit(y, X w + b) + penalty(w)`` over ``w`` and an unpenalised ``b``.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
    y : ndarray of shape (n_examples,)
        0/1 labels (Logistic), class codes (Multinomial) or targets (Quadratic).
    datafit, penalty
        See :mod:`needle.probing.datafits` and :mod:`needle.probing.penalties`.
    solver : str, default "default"
    **options
        Solver options (``tol``, ``max_iter``, warm starts …).

    Returns
    -------
    Solution
    """
    return _lookup(datafit, penalty, "single", solver)(X, y, datafit, penalty, **options)


def solve_path(X: np.ndarray, y: np.ndarray, supports: Sequence[np.ndarray], datafit: Datafit, penalty: Penalty, *,
               solver: str = "default", **options) -> PathSolution:
    """Refit ``datafit`` + ``penalty`` on each support (columns of ``X``); see :func:`solve`."""
    return _lookup(datafit, penalty, "path", solver)(X, y, supports, datafit, penalty, **options)


# ------------------------------------------------------------------------------------------------ logistic
@register_solver(Logistic, L2, "path")
def _logistic_l2_path(X, y, supports, datafit, penalty, *, tol=1e-8, max_iter=100):
    from needle.probing.fitting import fit_logistic_path

    weight = None if datafit.balanced else np.ones(len(y))
    fit = fit_logistic_path(X, y, supports, C=penalty.C, sample_weight=weight, tol=tol, max_iter=max_iter)
    return PathSolution(list(fit.coef), [float(b) for b in fit.intercept], fit.n_iter, fit.converged)


@register_solver(Logistic, L2, "path", "lbfgs")
def _logistic_l2_lbfgs_path(X, y, supports, datafit, penalty, *, tol=1e-6, max_iter=1000):
    """scikit-learn's L-BFGS, one fit per support (the dense baseline's solver)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    coefs, intercepts, n_iter, converged = [], [], [], []
    for support in supports:
        model = LogisticRegression(C=penalty.C, class_weight="balanced" if datafit.balanced else None, tol=tol,
                                   max_iter=max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X if len(support) == X.shape[1] else X[:, support], y)
        coefs.append(model.coef_[0].astype(np.float64))
        intercepts.append(float(model.intercept_[0]))
        n_iter.append(int(np.max(model.n_iter_)))
        converged.append(not any(issubclass(c.category, ConvergenceWarning) for c in caught))
    return PathSolution(coefs, intercepts, np.asarray(n_iter), np.asarray(converged))


@register_solver(Logistic, ElasticNet)
def _logistic_enet(X, y, datafit, penalty, *, tol=1e-6, max_iter=200, coef_init=None, intercept_init=0.0):
    from needle.probing.fitting import fit_elastic_net_logistic

    weight = None if datafit.balanced else np.ones(len(y))
    fit = fit_elastic_net_logistic(X, y, C=penalty.C, l1_ratio=penalty.l1_ratio, sample_weight=weight, tol=tol,
                                   max_iter=max_iter, coef_init=coef_init, intercept_init=intercept_init)
    return Solution(fit.coef, fit.intercept, fit.n_iter, fit.converged)


# --------------------------------------------------------------------------------------------- multinomial
def _sklearn_logistic(X, y, datafit, C, *, l1_ratio=None, tol, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    params = dict(C=C, class_weight="balanced" if datafit.balanced else None, tol=tol, max_iter=max_iter)
    if l1_ratio is not None:
        params.update(l1_ratio=l1_ratio, solver="saga")
    model = LogisticRegression(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    return model, converged


def _full_classes(model, n_classes: int):
    """Coefficients and intercepts for every class code 0..n_classes-1 (classes absent from y get -inf scores)."""
    coef = np.zeros((n_classes, model.coef_.shape[1]))
    intercept = np.full(n_classes, -1e30)
    coef[model.classes_.astype(np.int64)] = model.coef_
    intercept[model.classes_.astype(np.int64)] = model.intercept_
    return coef, intercept


@register_solver(Multinomial, L2, "path")
def _multinomial_l2_path(X, y, supports, datafit, penalty, *, tol=1e-8, max_iter=1000, n_classes=None):
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(n_classes or y.max() + 1)
    coefs, intercepts, n_iter, converged = [], [], [], []
    for support in supports:
        # scikit-learn's tol is on the projected gradient of the unscaled objective; 1e-8 of the engine's scaled one
        model, ok = _sklearn_logistic(X[:, support], y, datafit, penalty.C, tol=max(tol, 1e-6), max_iter=max_iter)
        coef, intercept = _full_classes(model, n_classes)
        coefs.append(coef)
        intercepts.append(intercept)
        n_iter.append(int(np.max(model.n_iter_)))
        converged.append(ok)
    return PathSolution(coefs, intercepts, np.asarray(n_iter), np.asarray(converged))


@register_solver(Multinomial, ElasticNet)
def _multinomial_enet(X, y, datafit, penalty, *, tol=1e-4, max_iter=1000, n_classes=None, **_):
    y = np.asarray(y, dtype=np.int64)
    model, ok = _sklearn_logistic(X, y, datafit, penalty.C, l1_ratio=penalty.l1_ratio, tol=tol, max_iter=max_iter)
    coef, intercept = _full_classes(model, int(n_classes or y.max() + 1))
    return Solution(coef, intercept, int(np.max(model.n_iter_)), ok)


# ---------------------------------------------------------------------------------------------- quadratic
@register_solver(Quadratic, L2, "path")
def _ridge_path(X, y, supports, datafit, penalty, *, tol=None, max_iter=None):
    """Closed form: ``(X_s^T X_s + I / C) w = X_s^T (y - mean y)`` on centred columns, intercept from the means."""
    y = np.asarray(y, dtype=np.float64)
    y_mean = y.mean()
    coefs, intercepts = [], []
    for support in supports:
        Xs = np.asarray(X[:, support], dtype=np.float64)
        x_mean = Xs.mean(axis=0)
        Xc = Xs - x_mean
        gram = Xc.T @ Xc
        gram[np.diag_indices_from(gram)] += 1.0 / penalty.C
        w = np.linalg.solve(gram, Xc.T @ (y - y_mean))
        coefs.append(w)
        intercepts.append(float(y_mean - x_mean @ w))
    n = len(supports)
    return PathSolution(coefs, intercepts, np.ones(n, dtype=np.int64), np.ones(n, dtype=bool))


@register_solver(Quadratic, ElasticNet)
def _quadratic_enet(X, y, datafit, penalty, *, tol=1e-6, max_iter=10_000, coef_init=None, **_):
    """scikit-learn's coordinate descent: ``C/2 RSS + penalty`` is its objective times ``C n`` at ``alpha = 1/(C n)``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet as SkElasticNet

    n = X.shape[0]
    model = SkElasticNet(alpha=1.0 / (penalty.C * n), l1_ratio=penalty.l1_ratio, tol=tol, max_iter=max_iter,
                         warm_start=coef_init is not None)
    if coef_init is not None:
        model.coef_ = np.asarray(coef_init, dtype=np.float64).copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    return Solution(model.coef_.astype(np.float64), float(model.intercept_), int(model.n_iter_), converged)
