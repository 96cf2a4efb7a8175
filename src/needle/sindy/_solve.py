"""MIOSR on arrays: the regression PySINDy's ``MIOSR`` hands to Gurobi, solved with needle's certified search.

:func:`fit_miosr` needs only numpy (no PySINDy, no Gurobi): it takes the
library ``Theta`` and the derivatives, and returns the coefficients with one
certificate per solve. :class:`needle.sindy.MIOSR` is the PySINDy optimiser
around it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from needle.errors import InputError
from needle.optimal import SparseRidgeResult, solve_sparse_ridge

__all__ = ["MIOSRFit", "fit_miosr", "GUROBI_MIP_GAP"]

#: Gurobi's default relative MIP gap, the certificate ``ps.MIOSR`` reports; our default too.
GUROBI_MIP_GAP = 1e-4


@dataclass(frozen=True, eq=False)
class MIOSRFit:
    """Coefficients and certificates of one MIOSR regression.

    Attributes
    ----------
    coef : ndarray of shape (n_targets, n_features)
    certificates : list of SparseRidgeResult
        One per target when the targets were fitted one at a time
        (``group_sparsity`` alone), else one for the joint problem.
    joint : bool
    """

    coef: np.ndarray
    certificates: list[SparseRidgeResult]
    joint: bool


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _to_target_order(lhs: np.ndarray, n_features: int, n_targets: int, order: str) -> np.ndarray:
    """Columns of a constraint matrix in target-major order (``t * n_features + j``)."""
    if order == "target":
        return lhs
    # "feature" order: column j * n_targets + t holds feature j of target t.
    index = np.arange(n_features * n_targets).reshape(n_features, n_targets).T.ravel()
    return lhs[:, index]


def fit_miosr(
    Theta,
    Xdot,
    *,
    target_sparsity: int | None = 5,
    group_sparsity=None,
    alpha: float = 0.01,
    constraint_lhs=None,
    constraint_rhs=None,
    constraint_order: str = "target",
    inequality_constraints: bool = False,
    initial_guess=None,
    regression_timeout: float = 10.0,
    tol: float = GUROBI_MIP_GAP,
) -> MIOSRFit:
    """Solve MIOSR's problem (Bertsimas & Gurnee 2023) to a certified gap.

    For each target ``t`` (or jointly)

    .. math::

        \\min_{\\xi} \\lVert \\dot X_t - \\Theta \\xi \\rVert_2^2 + \\alpha \\lVert \\xi \\rVert_2^2
        \\quad \\text{s.t.} \\quad \\lVert \\xi \\rVert_0 \\le k_t,

    with PySINDy's semantics: ``target_sparsity`` is one budget across all
    targets, fitted jointly (per-target caps ``group_sparsity`` may be added);
    with ``target_sparsity=None`` each target ``t`` is fitted alone with
    ``group_sparsity[t]`` terms; constraints ``constraint_lhs @ xi = rhs``
    (``<=`` with ``inequality_constraints``) act on the stacked coefficients
    and need the joint form.

    Parameters
    ----------
    Theta : array-like of shape (n_samples, n_features)
        The library evaluated on the data.
    Xdot : array-like of shape (n_samples,) or (n_samples, n_targets)
        The derivatives (or the weak form's left-hand side).
    target_sparsity, group_sparsity, alpha, constraint_lhs, constraint_rhs, constraint_order
        As in PySINDy's ``MIOSR``.
    inequality_constraints : bool, default False
        Read the constraints as ``<=`` (PySINDy's ``ConstrainedSR3`` flag of the same name).
    initial_guess : array-like of shape (n_targets, n_features), optional
        Its support seeds the search.
    regression_timeout : float, default 10.0
        Seconds per solve (per target, or for the joint problem).
    tol : float, default 1e-4
        Relative optimality gap (Gurobi's default ``MIPGap``, which ``ps.MIOSR`` uses).

    Returns
    -------
    MIOSRFit
    """
    Theta = np.asarray(Theta, dtype=np.float64)
    Y = np.asarray(Xdot, dtype=np.float64)
    Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
    if Theta.ndim != 2 or Y.ndim != 2 or Y.shape[0] != Theta.shape[0]:
        raise InputError(f"Theta must be (n_samples, n_features) and Xdot (n_samples, n_targets) with the same rows; "
                         f"got {Theta.shape} and {Y.shape}.")
    n_features, n_targets = Theta.shape[1], Y.shape[1]
    if constraint_order not in ("target", "feature"):
        raise InputError(f"constraint_order must be 'target' or 'feature', got {constraint_order!r}.")
    if group_sparsity is not None:
        group_sparsity = [_positive_int(g, "group_sparsity entries") for g in np.atleast_1d(group_sparsity).tolist()]
        if len(group_sparsity) != n_targets:
            raise InputError(f"group_sparsity must have one entry per target ({n_targets}), got {len(group_sparsity)}.")
    constrained = constraint_lhs is not None or constraint_rhs is not None
    if target_sparsity is None and group_sparsity is None:
        raise InputError("give target_sparsity (one budget across targets) or group_sparsity (one per target).")
    if target_sparsity is None and constrained:
        raise InputError("constraints couple the targets: give target_sparsity (the joint budget) as well.")
    if constrained and group_sparsity is not None:
        raise InputError("group_sparsity with constraints is not supported: use target_sparsity alone.")
    warm = None
    if initial_guess is not None:
        guess = np.asarray(initial_guess, dtype=np.float64).reshape(n_targets, n_features)
        warm = [np.flatnonzero(np.abs(guess.ravel()) > 1e-6)]
    if target_sparsity is not None:
        k = _positive_int(target_sparsity, "target_sparsity")
        kwargs = {}
        if constrained:
            if constraint_lhs is None or constraint_rhs is None:
                raise InputError("constraints: give both constraint_lhs and constraint_rhs.")
            lhs = np.atleast_2d(np.asarray(constraint_lhs, dtype=np.float64))
            if lhs.shape[1] != n_features * n_targets:
                raise InputError(f"constraint_lhs must have n_features * n_targets = {n_features * n_targets} "
                                 f"columns, got {lhs.shape[1]}.")
            lhs = _to_target_order(lhs, n_features, n_targets, constraint_order)
            key = ("A_ub", "b_ub") if inequality_constraints else ("A_eq", "b_eq")
            kwargs = {key[0]: lhs, key[1]: np.asarray(constraint_rhs, dtype=np.float64).ravel()}
        res = solve_sparse_ridge(Theta, Y, k, alpha=alpha, target_caps=group_sparsity, time_limit=regression_timeout,
                                 tol=tol, warm_supports=warm, **kwargs)
        coef = np.asarray(res.coef, dtype=np.float64).reshape(n_targets, n_features)
        return MIOSRFit(coef=coef, certificates=[res], joint=True)
    coef = np.zeros((n_targets, n_features))
    certificates = []
    for t in range(n_targets):
        warm_t = None if warm is None else [warm[0][warm[0] // n_features == t] - t * n_features]
        res = solve_sparse_ridge(Theta, Y[:, t], group_sparsity[t], alpha=alpha, time_limit=regression_timeout,
                                 tol=tol, warm_supports=warm_t)
        coef[t] = res.coef
        certificates.append(res)
    return MIOSRFit(coef=coef, certificates=certificates, joint=False)
