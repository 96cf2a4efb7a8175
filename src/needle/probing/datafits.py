"""What a probe's fit minimises over the data: one datafit per task.

Datafits are small immutable descriptions that a solver
(:func:`needle.probing.solvers.solve`) pairs with a penalty
(:mod:`needle.probing.penalties`), in the manner of skglm's
``solve(X, y, datafit, penalty)``: swapping logistic for quadratic is one
argument, not a copy of the solver. Each can evaluate itself, which the tests
use to check every solver against the objective it claims to minimise.

Every datafit is a sum over examples, scaled by the penalty's ``C``
(scikit-learn's convention: ``C * datafit + penalty``):

- :class:`Logistic` — ``sum_i s_i log(1 + exp(-t_i z_i))`` with ``t_i = ±1``
  and, by default, scikit-learn's ``class_weight="balanced"`` weights
  ``s_i = n / (2 n_{y_i})`` (binary features);
- :class:`Multinomial` — ``sum_i s_i (logsumexp(z_i) - z_{i, y_i})`` with
  balanced weights ``s_i = n / (K n_{y_i})`` for ``K`` classes (multiclass features);
- :class:`Quadratic` — ``sum_i (y_i - z_i)^2 / 2`` (regression targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

__all__ = ["Datafit", "Logistic", "Multinomial", "Quadratic", "datafit_for_task", "class_balanced_weight"]


def class_balanced_weight(y: np.ndarray) -> np.ndarray:
    """scikit-learn's ``class_weight="balanced"`` per example: ``n / (n_classes * n_c)``.

    Parameters
    ----------
    y : ndarray of shape (n_examples,)
        Class codes.

    Returns
    -------
    ndarray of shape (n_examples,), float64
    """
    y = np.asarray(y).ravel()
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (y.size / (classes.size * counts.astype(np.float64)))[inverse]


@dataclass(frozen=True)
class Datafit:
    """Base of the datafits: the task it serves, and its value at linear scores."""

    task: ClassVar[str] = ""
    balanced: bool = True

    def sample_weight(self, y: np.ndarray) -> np.ndarray:
        """Per-example weights ``s_i`` (ones when unbalanced), shape (n_examples,)."""
        y = np.asarray(y)
        return class_balanced_weight(y) if self.balanced else np.ones(y.shape[0])

    def value(self, y: np.ndarray, z: np.ndarray) -> float:  # pragma: no cover - abstract
        """The datafit at linear scores ``z`` (shape (n_examples,) or (n_examples, n_classes))."""
        raise NotImplementedError


@dataclass(frozen=True)
class Logistic(Datafit):
    """Binary logistic loss, class-balanced by default."""

    task: ClassVar[str] = "binary"

    def value(self, y, z):
        y = np.asarray(y, dtype=np.float64)
        return float(np.sum(self.sample_weight(y) * (np.logaddexp(0.0, z) - y * z)))


@dataclass(frozen=True)
class Multinomial(Datafit):
    """Multinomial (softmax) cross-entropy, class-balanced by default."""

    task: ClassVar[str] = "multiclass"

    def value(self, y, z):
        y = np.asarray(y, dtype=np.int64)
        z = np.asarray(z, dtype=np.float64)
        return float(np.sum(self.sample_weight(y) * (logsumexp(z, axis=1) - z[np.arange(y.size), y])))


@dataclass(frozen=True)
class Quadratic(Datafit):
    """Half the residual sum of squares (unweighted)."""

    task: ClassVar[str] = "regression"
    balanced: bool = False

    def value(self, y, z):
        return float(0.5 * np.sum((np.asarray(y, dtype=np.float64) - z) ** 2))


_BY_TASK = {"binary": Logistic, "multiclass": Multinomial, "regression": Quadratic}


def datafit_for_task(task: str) -> Datafit:
    """The default datafit of a task: balanced logistic, balanced multinomial, or quadratic."""
    from needle.errors import InputError

    try:
        return _BY_TASK[task]()
    except KeyError:
        raise InputError(f"unknown task {task!r}; tasks are {', '.join(_BY_TASK)}.") from None
