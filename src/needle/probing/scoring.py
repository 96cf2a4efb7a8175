"""Per-neuron scores for ranking-based selection: pure functions ``score(X, y) -> scores``.

Every function takes the activations ``X`` of shape (n_examples, n_neurons)
and labels ``y`` (0/1) of shape (n_examples,) and returns one score per
neuron, higher meaning more relevant to the feature (Appendix A.2.3 of the
paper). They do not depend on each other or on any state, so a selector
(:class:`needle.probing.selection.ScoreSelector`) or a user can call them
directly. :func:`rank_by_score` turns scores into a ranking with a
documented tie-break.
"""

from __future__ import annotations

import warnings

import numpy as np

from needle.errors import InputError

__all__ = [
    "mean_diff_score",
    "f_stat_score",
    "mutual_info_score",
    "l1_score",
    "rank_by_score",
]


def _check(X, y):
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise InputError(f"X must be 2-D with one row per label; got X {X.shape} and y {y.shape}.")
    positive = y == 1
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InputError(f"scoring needs both classes; got {n_pos} positives among {y.size} examples.")
    return X, positive


def mean_diff_score(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Absolute difference of class means (the paper's "mean difference"/MMD).

    ``s_j = |mean_{i in P} X_ij - mean_{i in N} X_ij|`` in the units of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
        Labels 0/1.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    X, positive = _check(X, y)
    # Accumulate in float64: float16/float32 sums over many rows lose digits.
    mean_pos = X[positive].mean(axis=0, dtype=np.float64)
    mean_neg = X[~positive].mean(axis=0, dtype=np.float64)
    return np.abs(mean_pos - mean_neg)


def f_stat_score(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-way ANOVA F statistic of each neuron against the two classes.

    scikit-learn's :func:`~sklearn.feature_selection.f_classif`, with the
    F of a constant neuron (0/0, NaN there) set to 0.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
    y : ndarray of shape (n_examples,)
        Labels 0/1.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
    """
    from sklearn.feature_selection import f_classif

    X, positive = _check(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant features
        warnings.simplefilter("ignore", UserWarning)
        f, _ = f_classif(np.asarray(X, dtype=np.float64), positive.astype(np.int8))
    return np.nan_to_num(np.asarray(f, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)


def mutual_info_score(
    X: np.ndarray, y: np.ndarray, *, n_neighbors: int = 3, random_state: int | None = None
) -> np.ndarray:
    """Nearest-neighbour estimate of the mutual information I(X_j; y) of each neuron.

    scikit-learn's :func:`~sklearn.feature_selection.mutual_info_classif`
    (Ross 2014, the estimator the paper cites), treating every neuron as
    continuous. It adds a little noise to break ties, hence ``random_state``.

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
    from sklearn.feature_selection import mutual_info_classif

    X, positive = _check(X, y)
    return mutual_info_classif(
        np.asarray(X, dtype=np.float64),
        positive.astype(np.int8),
        discrete_features=False,
        n_neighbors=n_neighbors,
        random_state=random_state,
    ).astype(np.float64)


def l1_score(X: np.ndarray, y: np.ndarray, *, C: float = 0.01, tol: float = 1e-9, max_iter: int = 200) -> np.ndarray:
    """Absolute coefficients of a dense L1-regularised logistic regression.

    The columns are standardised (so that the penalty treats neurons alike),
    then the balanced L1 logistic regression ``C * sum_i s_i logloss_i +
    ||w||_1`` (scikit-learn's ``LogisticRegression(l1_ratio=1, C=C,
    class_weight="balanced")``) is solved by
    :func:`needle.probing.fitting.fit_elastic_net_logistic`; the score of a
    neuron is the absolute value of its coefficient. Many scores are exactly
    0: their order is decided by the tie-break of :func:`rank_by_score`.

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

    from needle.probing.fitting import fit_elastic_net_logistic, standardization

    X, positive = _check(X, y)
    X = np.asarray(X, dtype=np.float64)
    mean, scale = standardization(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_elastic_net_logistic((X - mean) / scale, positive, C=C, l1_ratio=1.0, tol=tol, max_iter=max_iter)
    return np.abs(fit.coef)


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
