"""What a probe's fit pays for its weights: L2, elastic net, or a cardinality constraint.

Paired with a datafit (:mod:`needle.probing.datafits`) by
:func:`needle.probing.solvers.solve`. The objective is scikit-learn's
convention, ``C * datafit + penalty(w)``, the intercept never penalised:

- :class:`L2` — ``||w||^2 / 2``;
- :class:`ElasticNet` — ``(1 - l1_ratio) / 2 ||w||^2 + l1_ratio ||w||_1``;
- :class:`L0` — ``||w||^2 / (2 gamma)`` subject to ``||w||_0 <= k`` (solved to
  certified optimality by :mod:`needle.probing.osp`; there ``C = 1``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from needle.errors import InputError

__all__ = ["Penalty", "L2", "ElasticNet", "L0", "check_C"]


def check_C(C, name: str = "C") -> float:
    """``C`` as a float, or a one-line error: the one place inverse regularisation strengths are validated."""
    if isinstance(C, bool) or not isinstance(C, numbers.Real) or not np.isfinite(C) or C <= 0:
        raise InputError(f"{name} must be a positive finite number, got {C!r}.")
    return float(C)


@dataclass(frozen=True)
class Penalty:
    """Base of the penalties."""

    def value(self, w: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class L2(Penalty):
    """Ridge: ``C * datafit + ||w||^2 / 2``."""

    C: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "C", check_C(self.C))

    def value(self, w):
        w = np.asarray(w, dtype=np.float64)
        return float(0.5 * np.sum(w * w))


@dataclass(frozen=True)
class ElasticNet(Penalty):
    """``C * datafit + (1 - l1_ratio) / 2 ||w||^2 + l1_ratio ||w||_1``."""

    C: float = 1.0
    l1_ratio: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "C", check_C(self.C))
        if not 0.0 <= float(self.l1_ratio) <= 1.0:
            raise InputError(f"l1_ratio must lie in [0, 1], got {self.l1_ratio!r}.")

    def value(self, w):
        w = np.asarray(w, dtype=np.float64)
        return float((1 - self.l1_ratio) / 2 * np.sum(w * w) + self.l1_ratio * np.sum(np.abs(w)))


@dataclass(frozen=True)
class L0(Penalty):
    """``datafit + ||w||^2 / (2 gamma)`` subject to at most ``k`` non-zero weights."""

    k: int = 1
    gamma: float = 0.001

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise InputError(f"k must be an integer >= 1, got {self.k!r}.")
        check_C(self.gamma, "gamma")

    def value(self, w):
        w = np.asarray(w, dtype=np.float64)
        return float(np.sum(w * w) / (2 * self.gamma))
