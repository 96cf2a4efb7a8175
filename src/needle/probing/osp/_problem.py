"""The data of one optimal-sparse-probing problem, validated once.

The problem is

.. math::

    \\min_{w \\in \\mathbb{R}^d,\\, b \\in \\mathbb{R}}
    \\sum_i c_i \\log\\bigl(1 + e^{-\\tilde y_i (w \\cdot x_i + b)}\\bigr)
    + \\frac{1}{2\\gamma} \\lVert w \\rVert_2^2
    \\quad \\text{s.t.} \\quad \\lVert w \\rVert_0 \\le k,

with labels :math:`\\tilde y_i \\in \\{-1, +1\\}`, sample weights :math:`c_i > 0`
and an unpenalised intercept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from needle.errors import InputError

__all__ = ["OSPProblem", "make_problem", "objective"]


@dataclass(frozen=True, eq=False)
class OSPProblem:
    """Validated arrays of one problem; ``k`` is not part of it (cuts are valid for every k).

    Attributes
    ----------
    X : ndarray of shape (n_examples, n_neurons)
        Float64, C-contiguous.
    XT : ndarray of shape (n_neurons, n_examples)
        ``X.T`` stored contiguously, for the full gradient ``X^T r`` every cut needs.
    y : ndarray of shape (n_examples,)
        Labels in {-1.0, +1.0}.
    weight : ndarray of shape (n_examples,)
        Sample weights ``c_i > 0``.
    gamma : float
        Ridge parameter; the penalty is ``||w||^2 / (2 gamma)``.
    fingerprint : str
        Hash of (X, y, weight, gamma): a cut pool is valid only for the problem it was built on.
    """

    X: np.ndarray
    XT: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    gamma: float
    fingerprint: str

    @property
    def n_examples(self) -> int:
        return self.X.shape[0]

    @property
    def n_neurons(self) -> int:
        return self.X.shape[1]

    @property
    def n_columns(self) -> int:
        return self.X.shape[1]

    # The four methods the shared search calls (:mod:`needle.optimal._types`).
    def fit_support(self, support, init=None):
        from needle.probing.osp._inner import fit_support

        return fit_support(self, support, init=init)

    def relax_node(self, fixed_in, free, r, **options):
        from needle.probing.osp._relax import relax_node

        return relax_node(self, fixed_in, free, r, **options)

    def extension_bounds(self, base, candidates):
        from needle.probing.osp._lookahead import extension_bounds

        return extension_bounds(self, base, candidates)

    def screen_support(self, k: int) -> tuple[int, ...]:
        from needle.probing.osp._heuristics import mean_difference_support

        return mean_difference_support(self, k)


def _labels_to_signs(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"y must be 1-D, got shape {y.shape}.")
    classes = np.unique(y)
    if classes.size != 2:
        raise InputError(
            f"y must contain exactly two classes, got {classes.size} ({classes[:5].tolist()}); "
            "a probe needs positive and negative examples."
        )
    as_set = set(classes.tolist())
    if as_set <= {0, 1} or as_set <= {False, True}:
        return np.where(y.astype(bool), 1.0, -1.0)
    if as_set == {-1, 1}:
        return y.astype(np.float64)
    raise InputError(f"y must take values in {{0, 1}} or {{-1, +1}}, got {classes.tolist()}.")


def _balanced_weights(signs: np.ndarray) -> np.ndarray:
    # scikit-learn's class_weight="balanced": n / (n_classes * n_class(i)), so the weights sum to n.
    n = signs.size
    n_pos = np.count_nonzero(signs > 0)
    return np.where(signs > 0, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))


def make_problem(X, y, *, gamma: float, sample_weight=None) -> OSPProblem:
    """Validate inputs and build an :class:`OSPProblem`.

    Parameters
    ----------
    X : array-like of shape (n_examples, n_neurons)
        Finite activations. Not rescaled here: the objective is checkable from outside.
    y : array-like of shape (n_examples,)
        Binary labels in {0, 1} (or booleans) or in {-1, +1}; both classes must occur.
    gamma : float
        Ridge parameter, > 0.
    sample_weight : array-like of shape (n_examples,), optional
        Positive finite weights ``c_i``; default: balanced classes, ``c_i = n / (2 n_class(i))``.

    Raises
    ------
    InputError
        A ``ValueError`` naming the offending parameter.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"X must be a non-empty 2-D array (n_examples, n_neurons), got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise InputError(f"X must be real numbers, got dtype {X.dtype}.")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise InputError(
            f"X contains NaN or infinite values (first at row {bad[0]}, column {bad[1]}); "
            "clean or impute the activations first."
        )
    signs = _labels_to_signs(y)
    if signs.size != X.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {signs.size} labels.")
    try:
        gamma = float(gamma)
    except (TypeError, ValueError):
        raise InputError(f"gamma must be a positive number, got {gamma!r}.") from None
    if not (np.isfinite(gamma) and gamma > 0):
        raise InputError(f"gamma must be a positive finite number, got {gamma!r}.")
    if sample_weight is None:
        weight = _balanced_weights(signs)
    else:
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != signs.shape:
            raise InputError(f"sample_weight must have shape {signs.shape}, got {weight.shape}.")
        if not (np.all(np.isfinite(weight)) and np.all(weight > 0)):
            raise InputError("sample_weight must be positive and finite (drop examples instead of giving weight 0).")
        if not (weight[signs > 0].size and weight[signs < 0].size):
            raise InputError("sample_weight leaves one class without weight.")
    digest = hashlib.blake2b(digest_size=16)
    for arr in (X, signs, weight, np.array([gamma])):
        digest.update(np.ascontiguousarray(arr).view(np.uint8))
    digest.update(str(X.shape).encode())
    return OSPProblem(
        X=X,
        XT=np.ascontiguousarray(X.T),
        y=signs,
        weight=weight,
        gamma=gamma,
        fingerprint=digest.hexdigest(),
    )


def objective(problem: OSPProblem, coef: np.ndarray, intercept: float) -> float:
    """The objective ``sum_i c_i log(1 + exp(-y_i (w.x_i + b))) + ||w||^2 / (2 gamma)``.

    Parameters
    ----------
    problem : OSPProblem
    coef : ndarray of shape (n_neurons,)
    intercept : float
    """
    margins = problem.y * (problem.X @ coef + intercept)
    loss = float(problem.weight @ np.logaddexp(0.0, -margins))
    return loss + float(coef @ coef) / (2.0 * problem.gamma)
