"""Per-neuron scores for ranking-based selection: pure functions ``score(X, y) -> scores``.

Every function takes the activations ``X`` of shape (n_examples, n_neurons)
and targets ``y`` of shape (n_examples,) — 0/1 labels for ``task="binary"``
(the default), class codes for ``"multiclass"``, real values for
``"regression"`` — and returns one score per neuron, higher meaning more
relevant to the feature (Appendix A.2.3 of the paper for the binary forms;
the others are their natural generalisations, stated per function). They do not depend on each other or on any state, so a selector
(:class:`needle.probing.selection.ScoreSelector`) or a user can call them
directly. :func:`rank_by_score` turns scores into a ranking with a
documented tie-break.
"""

from __future__ import annotations

import warnings

import numpy as np

from needle.errors import InputError
from needle.probing.preprocessing import standardization

__all__ = [
    "mean_diff_score",
    "f_stat_score",
    "mutual_info_score",
    "l1_score",
    "rank_by_score",
]

#: Rows per block when a statistic is accumulated over row blocks.
_BLOCK_ROWS = 4096


def _check(X, y, task="binary"):
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise InputError(f"X must be 2-D with one row per label; got X {X.shape} and y {y.shape}.")
    if task == "binary":
        positive = y == 1
        n_pos = int(positive.sum())
        if n_pos == 0 or n_pos == y.size:
            raise InputError(f"scoring needs both classes; got {n_pos} positives among {y.size} examples.")
        return X, positive
    if task == "multiclass":
        if np.unique(y).size < 2:
            raise InputError(f"scoring needs at least two classes; y has only {np.unique(y).tolist()}.")
        return X, y.astype(np.int64)
    if task == "regression":
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
            raise InputError("scoring a regression target needs finite, non-constant values.")
        return X, y
    raise InputError(f"unknown task {task!r}; tasks are binary, multiclass, regression.")


def mean_diff_score(X: np.ndarray, y: np.ndarray, *, task: str = "binary") -> np.ndarray:
    """Absolute difference of class means (the paper's "mean difference"/MMD).

    - binary: ``s_j = |mean_{i in P} X_ij - mean_{i in N} X_ij|`` in the units of ``X``;
    - multiclass: the largest one-vs-rest difference, ``max_c |mean_{y=c} X_j - mean_{y!=c} X_j|``;
    - regression: ``|cov(X_j, y)| / std(y)``, the mean difference's continuous
      analogue (the slope of ``X_j`` on standardised ``y``; on standardised
      columns it is ``|corr(X_j, y)|``, the correlation ranking).

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
    task : {"binary", "multiclass", "regression"}

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    X, positive = _check(X, y, task)
    if task == "multiclass":
        codes = positive
        total = X.sum(axis=0, dtype=np.float64)
        best = np.zeros(X.shape[1])
        for c in np.unique(codes):
            inside = codes == c
            n_in = int(inside.sum())
            sum_in = X[inside].sum(axis=0, dtype=np.float64)
            np.maximum(best, np.abs(sum_in / n_in - (total - sum_in) / (codes.size - n_in)), out=best)
        return best
    if task == "regression":
        target = positive - positive.mean()
        # Column-wise X^T (y - mean y) in float64, blockwise: no float64 copy of X.
        cov = np.zeros(X.shape[1])
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            cov += target[start : start + _BLOCK_ROWS] @ X[start : start + _BLOCK_ROWS].astype(np.float64)
        return np.abs(cov / target.size) / float(np.sqrt(np.mean(target**2)))
    # Accumulate in float64: float16/float32 sums over many rows lose digits.
    mean_pos = X[positive].mean(axis=0, dtype=np.float64)
    mean_neg = X[~positive].mean(axis=0, dtype=np.float64)
    return np.abs(mean_pos - mean_neg)


def f_stat_score(X: np.ndarray, y: np.ndarray, *, task: str = "binary") -> np.ndarray:
    """One-way ANOVA F statistic of each neuron against the classes (regression: the correlation F test).

    For ``task="multiclass"`` this is scikit-learn's :func:`~sklearn.feature_selection.f_classif`
    over all classes, for ``"regression"`` its :func:`~sklearn.feature_selection.f_regression`
    (both with NaN as 0). The binary form below is computed here without a float64 copy of ``X``.

    The statistic of scikit-learn's :func:`~sklearn.feature_selection.f_classif`
    (the test suite checks they agree), computed in float64 straight from
    ``X``'s dtype without a float64 copy of ``X``: with ``n`` examples, class
    sizes ``n_c`` and means ``m_c``, overall mean ``m``::

        F = SS_between / (SS_within / (n - 2)),
        SS_between = sum_c n_c (m_c - m)^2,   SS_within = sum_i (x_i - m)^2 - SS_between

    A constant neuron (F = 0/0) scores 0.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
    task : {"binary", "multiclass", "regression"}

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    X, positive = _check(X, y, task)
    if task != "binary":
        from sklearn.feature_selection import f_classif, f_regression

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: 0/0, mapped to 0 below
            f = (f_classif if task == "multiclass" else f_regression)(np.asarray(X, dtype=np.float64), positive)[0]
        return np.nan_to_num(np.asarray(f, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    n = positive.size
    n_pos = int(positive.sum())
    total = X.sum(axis=0, dtype=np.float64)
    mean = total / n
    mean_pos = X[positive].sum(axis=0, dtype=np.float64) / n_pos
    mean_neg = (total - mean_pos * n_pos) / (n - n_pos)
    # Sum of squares about the overall mean, in row blocks (no float64 copy of X).
    sum_sq = np.zeros(X.shape[1])
    for start in range(0, n, _BLOCK_ROWS):
        centred = X[start : start + _BLOCK_ROWS] - mean
        sum_sq += np.einsum("ij,ij->j", centred, centred, dtype=np.float64)
    between = n_pos * (mean_pos - mean) ** 2 + (n - n_pos) * (mean_neg - mean) ** 2
    within = sum_sq - between
    with np.errstate(divide="ignore", invalid="ignore"):
        f = between / (within / (n - 2)) if n > 2 else np.full(X.shape[1], np.nan)
    f[X.max(axis=0) == X.min(axis=0)] = 0.0  # constant neurons: 0/0
    return np.nan_to_num(f, nan=0.0, posinf=np.finfo(np.float64).max)


def mutual_info_score(
    X: np.ndarray, y: np.ndarray, *, task: str = "binary", n_neighbors: int = 3, random_state: int | None = None
) -> np.ndarray:
    """Nearest-neighbour estimate of the mutual information I(X_j; y) of each neuron.

    scikit-learn's :func:`~sklearn.feature_selection.mutual_info_classif`
    (Ross 2014, the estimator the paper cites), treating every neuron as
    continuous; :func:`~sklearn.feature_selection.mutual_info_regression`
    (Kraskov et al. 2004) for a regression target. It adds a little noise to
    break ties, hence ``random_state``.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    n_neighbors : int, default 3
    random_state : int, optional

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    X, positive = _check(X, y, task)
    if task == "regression":
        return mutual_info_regression(np.asarray(X, dtype=np.float64), positive, n_neighbors=n_neighbors,
                                      random_state=random_state).astype(np.float64)
    return mutual_info_classif(
        np.asarray(X, dtype=np.float64),
        positive.astype(np.int8) if task == "binary" else positive,
        discrete_features=False,
        n_neighbors=n_neighbors,
        random_state=random_state,
    ).astype(np.float64)


def l1_score(X: np.ndarray, y: np.ndarray, *, task: str = "binary", C: float = 0.01, tol: float = 1e-9,
             max_iter: int = 200) -> np.ndarray:
    """Absolute coefficients of a dense L1-regularised fit of the task's datafit.

    The columns are standardised (so that the penalty treats neurons alike),
    then the balanced L1 logistic regression ``C * sum_i s_i logloss_i +
    ||w||_1`` (scikit-learn's ``LogisticRegression(l1_ratio=1, C=C,
    class_weight="balanced")``) is solved by
    :func:`needle.probing.fitting.fit_elastic_net_logistic`; the score of a
    neuron is the absolute value of its coefficient. Many scores are exactly
    0: their order is decided by the tie-break of :func:`rank_by_score`.
    Multiclass: the balanced multinomial loss (scikit-learn's SAGA), a neuron
    scoring its largest |coefficient| over classes. Regression: the lasso
    ``C/2 * RSS + ||w||_1`` on the target standardised to unit variance
    (scikit-learn's coordinate descent).

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    C : float, default 0.01
        Inverse regularisation strength on standardised columns. The paper's
        code used ``C=0.1`` on activations scaled to standard deviation 0.1,
        which is the same problem as ``C=0.01`` on standardised ones.
    tol, max_iter : solver tolerance (KKT; tight, since near-ties decide the ranking) and Newton iterations.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    from sklearn.exceptions import ConvergenceWarning

    from needle.probing.datafits import datafit_for_task
    from needle.probing.penalties import ElasticNet
    from needle.probing.solvers import solve

    X, target = _check(X, y, task)
    mean, scale = standardization(X)
    # Column-major: the solver takes subsets of columns.
    Z = np.empty(X.shape, dtype=np.float64, order="F")
    np.subtract(X, mean, out=Z)
    Z /= scale
    if task == "regression":
        target = (target - target.mean()) / target.std()
    options = {"tol": tol, "max_iter": max_iter} if task == "binary" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = solve(Z, target, datafit_for_task(task), ElasticNet(C=C, l1_ratio=1.0), **options)
    coef = np.abs(fit.coef)
    return coef.max(axis=0) if coef.ndim == 2 else coef


def rank_by_score(scores: np.ndarray) -> np.ndarray:
    """Neuron indices from the highest score to the lowest.

    Ties are broken stably: among equal scores the lower column index comes
    first. A stable sort makes the ranking a deterministic function of the
    scores alone (an unstable sort may order ties differently across numpy
    versions and platforms), and it lets the caller choose the tie-break by
    the order of the columns — the sweep passes the prefiltered neurons in
    decreasing order of mean difference, so exact ties (e.g. the many zero
    coefficients of an L1 fit) fall back to the mean-difference ranking.
    NaN scores rank last.

    Parameters
    ----------
    scores : ndarray of shape (n_neurons,)

    Returns
    -------
    ndarray of shape (n_neurons,), int64
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.argsort(-key, kind="stable").astype(np.int64)
