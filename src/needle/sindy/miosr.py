"""``MIOSR``: PySINDy's mixed-integer sparse regression optimiser, certified without Gurobi.

A drop-in for ``pysindy.MIOSR``: ``ps.SINDy(optimizer=needle.sindy.MIOSR(...))``
takes the same parameters and fits the same problem, through
:func:`needle.sindy.fit_miosr` (outer approximation and branch-and-bound,
:mod:`needle.optimal`) instead of Gurobi's SOS-1 model. Because it subclasses
PySINDy's ``BaseOptimizer``, PySINDy's machinery works unchanged around it:
polynomial and weak-form libraries, several trajectories, ensembling,
``normalize_columns``, ``unbias``.
"""

from __future__ import annotations

import numpy as np
from pysindy.optimizers import BaseOptimizer
from sklearn.utils.validation import check_is_fitted

from needle.errors import InputError
from needle.sindy._solve import GUROBI_MIP_GAP, fit_miosr

__all__ = ["MIOSR"]


class MIOSR(BaseOptimizer):
    """Mixed-integer optimised sparse regression, solved to a certified gap.

    Solves, per target or jointly,

    .. math::

        \\min_{\\xi} \\lVert \\dot X - \\Theta \\xi \\rVert_2^2 + \\alpha \\lVert \\xi \\rVert_2^2
        \\quad \\text{subject to} \\quad \\lVert \\xi \\rVert_0 \\le k

    (Bertsimas & Gurnee 2023, "Learning sparse nonlinear dynamics via
    mixed-integer optimization", Nonlinear Dynamics; thesis Chapter 5), with
    needle's certified solver (:func:`needle.optimal.solve_sparse_ridge`).

    Parameters
    ----------
    target_sparsity : int or None, default 5
        Non-zero coefficients in all, across the targets, fitted jointly.
    group_sparsity : tuple of int, optional
        Non-zero coefficients per target: with ``target_sparsity=None`` each
        target is fitted alone (one certificate each); with both, caps under the joint budget.
    alpha : float, default 0.01
        Ridge strength, > 0 (the certificate needs some ridge).
    regression_timeout : float, default 10
        Seconds per solve.
    constraint_lhs : ndarray of shape (n_constraints, n_features * n_targets), optional
    constraint_rhs : ndarray of shape (n_constraints,), optional
        ``constraint_lhs @ xi = constraint_rhs`` on the stacked coefficients (as PySINDy's MIOSR).
    constraint_order : {"target", "feature"}, default "target"
        Column order of ``constraint_lhs``, as in PySINDy.
    inequality_constraints : bool, default False
        Read the constraints as ``<=`` instead (needle's addition; ``ConstrainedSR3``'s flag).
    normalize_columns : bool, default False
        Divide the library columns by their norms before the regression (not with constraints).
    copy_X : bool, default True
    initial_guess : ndarray of shape (n_targets, n_features), optional
        Its support warm-starts the search.
    verbose : bool, default False
        Print each certificate.
    unbias : bool, default False
        Refit least squares on the support found (not with constraints).
    tol : float, default 1e-4
        Relative optimality gap to certify (Gurobi's default, the gap ``ps.MIOSR`` certifies).

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, n_features)
    ind_ : ndarray of shape (n_targets, n_features), bool
    certificates_ : list of needle.optimal.SparseRidgeResult
        One per target when fitted per target, else one for the joint problem:
        objective, lower bound, gap, status, cuts, seconds.
    objective_, bound_, gap_ : ndarray of shape (n_certificates,)
    status_ : list of str
    """

    def __init__(
        self,
        target_sparsity=5,
        group_sparsity=None,
        alpha=0.01,
        regression_timeout=10,
        constraint_lhs=None,
        constraint_rhs=None,
        constraint_order="target",
        inequality_constraints=False,
        normalize_columns=False,
        copy_X=True,
        initial_guess=None,
        verbose=False,
        unbias=False,
        tol=GUROBI_MIP_GAP,
    ):
        super().__init__(normalize_columns=normalize_columns, copy_X=copy_X, unbias=unbias)
        self.target_sparsity = target_sparsity
        self.group_sparsity = group_sparsity
        self.alpha = alpha
        self.regression_timeout = regression_timeout
        self.constraint_lhs = constraint_lhs
        self.constraint_rhs = constraint_rhs
        self.constraint_order = constraint_order
        self.inequality_constraints = inequality_constraints
        self.initial_guess = initial_guess
        self.verbose = verbose
        self.tol = tol

    def _reduce(self, x, y):
        """Fit the coefficients with :func:`needle.sindy.fit_miosr`; keep the certificates."""
        constrained = self.constraint_lhs is not None or self.constraint_rhs is not None
        if constrained and self.unbias:
            raise InputError("MIOSR: unbias=True would break the constraints; set unbias=False.")
        if constrained and self.normalize_columns:
            raise InputError("MIOSR: normalize_columns rescales the coefficients the constraints refer to; "
                             "set normalize_columns=False.")
        fit = fit_miosr(
            x,
            y,
            target_sparsity=self.target_sparsity,
            group_sparsity=self.group_sparsity,
            alpha=self.alpha,
            constraint_lhs=self.constraint_lhs,
            constraint_rhs=self.constraint_rhs,
            constraint_order=self.constraint_order,
            inequality_constraints=self.inequality_constraints,
            initial_guess=self.initial_guess,
            regression_timeout=self.regression_timeout,
            tol=self.tol,
        )
        self.coef_ = fit.coef
        self.ind_ = np.abs(self.coef_) > 0
        self.certificates_ = fit.certificates
        self.objective_ = np.array([c.objective for c in fit.certificates])
        self.bound_ = np.array([c.bound for c in fit.certificates])
        self.gap_ = np.array([c.gap for c in fit.certificates])
        self.status_ = [c.status for c in fit.certificates]
        self.history_ = [self.coef_]
        if self.verbose:
            for c in fit.certificates:
                print(c)

    @property
    def complexity(self):
        check_is_fitted(self)
        return int(np.count_nonzero(self.coef_))
