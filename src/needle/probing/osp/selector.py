"""The ``osp`` selection method: optimal sparse probing as a :class:`~needle.probing.selection.Selector`.

Importing this module registers ``"osp"`` with the selection registry, so
``SparseProbe(selector="osp")``, ``SparseRegressionProbe(selector="osp")`` and
``sweep(methods=["osp"])`` find it, and the certified solvers as the
(Logistic, L0) and (Quadratic, L0) pairs of :func:`needle.probing.solvers.solve`.
"""

from __future__ import annotations

import numpy as np

from needle.errors import InputError
from needle.optimal import solve_sparse_ridge, solve_sparse_ridge_path
from needle.probing.datafits import Logistic, Quadratic
from needle.probing.estimators import DEFAULT_C
from needle.probing.osp._solve import DEFAULT_GAMMA, solve_osp, solve_osp_path
from needle.probing.penalties import L0
from needle.probing.scoring import mean_diff_score, rank_by_score
from needle.probing.selection import SelectionPath, Selector, register_method
from needle.probing.solvers import Solution, register_solver

__all__ = ["OSPSelector"]


class OSPSelector(Selector):
    """Supports that are optimal for the ridge-logistic objective, with a certificate per ``k``.

    :func:`~needle.probing.osp.solve_osp_path` solves, on the ``X`` it is given,

    ``min sum_i c_i log(1 + exp(-y_i (w.x_i + b))) + ||w||^2 / (2 gamma)`` s.t. ``||w||_0 <= k``

    with balanced weights ``c_i``; for a regression target,
    :func:`~needle.optimal.solve_sparse_ridge_path` solves
    ``min ||y - X w - b||^2 + ||w||^2 / gamma`` s.t. ``||w||_0 <= k`` (the
    regression refit's objective ``C/2 ||y - Xw - b||^2 + ||w||^2 / 2`` times
    ``2 / C`` at ``gamma = C``). ``X`` is not rescaled here
    (:attr:`standardized_input`): the sweep passes the candidates standardised
    by their training mean and standard deviation, exactly as the refit sees
    them, so ``objective`` can be checked from outside; with ``gamma`` equal
    to the refit's ``C`` (0.01) the certified support is the best ``k``
    neurons for the very probe that is then fitted. The default ``gamma`` is
    ten times more ridge than that, which certifies every problem of our
    benchmark quickly (see :mod:`needle.probing.osp`, "Choosing gamma").

    What the certificate proves, exactly: the support is optimal among the top ``prefilter`` candidates by
    mean difference (``n_candidates`` in ``info``), for this objective with its own ``gamma``. The probe
    that is then refit and scored uses the refit's ``C`` (0.01 by default), so with the default ``gamma``
    the certificate is about the support, not about the reported probe's loss; ``gamma="refit"`` makes
    them the same problem.

    Parameters
    ----------
    gamma : float or "refit", default 0.001
        Ridge parameter (scikit-learn's ``C`` on the same inputs). ``"refit"``: the refit's ``C`` (in a
        sweep or ``SparseProbe``; 0.01 when called directly), slower to certify.
    time_limit : float, default 60.0
        Seconds per ``k`` (the paper's limit).
    tol : float, default 1e-6
        Relative optimality gap.
    prefilter : int or None, default 50
        Solve over only the top ``prefilter`` candidates by class-mean
        difference (the paper's top-50 prefilter for its MIP, A.2.4); None
        uses every candidate it is given.

    Notes
    -----
    ``info`` of each ``k`` holds ``objective``, ``bound``, ``gap``, ``status``
    ("optimal" or "time_limit"), ``solve_seconds``, ``n_cuts``, ``n_nodes`` and
    ``gamma``: the certificate to report with the probe. Supports are ordered
    by decreasing ``|coef|`` of the optimal sparse fit.
    """

    nested = False
    stochastic = False
    standardized_input = True
    tasks = ("binary", "regression")
    #: The certificate, exposed as ``SparseProbe.objective_``, ``bound_`` … (also kept in every result row).
    diagnostics = ("objective", "bound", "gap", "status", "n_cuts", "solve_seconds", "n_candidates")

    def __init__(self, *, gamma: float = DEFAULT_GAMMA, time_limit: float = 60.0, tol: float = 1e-6,
                 prefilter: int | None = 50):
        self.gamma = gamma
        self.time_limit = time_limit
        self.tol = tol
        self.prefilter = prefilter

    def with_refit_C(self, C) -> OSPSelector:
        """This selector with ``gamma="refit"`` resolved to the refit's ``C`` (called by the fit template)."""
        if not (isinstance(self.gamma, str) and self.gamma == "refit"):
            return self
        if not isinstance(C, (int, float)) or isinstance(C, bool):
            raise InputError("osp.gamma='refit' needs a fixed C: a cross-validated C is chosen after selection.")
        return OSPSelector(gamma=float(C), time_limit=self.time_limit, tol=self.tol, prefilter=self.prefilter)

    def candidate_limit(self) -> int | None:
        return None if self.prefilter is None else int(self.prefilter)

    def select_path(self, X, y, ks, *, task="binary", random_state=None) -> SelectionPath:
        X = np.asarray(X, dtype=np.float64)
        limit = self.candidate_limit()
        if limit is not None and X.shape[1] > limit:
            # Callers order candidates by decreasing mean difference; re-rank anyway so a direct call is right too.
            top = rank_by_score(mean_diff_score(X, np.asarray(y), task=task))[:limit]
        else:
            top = np.arange(X.shape[1])
        if max(ks) > top.size:
            raise InputError(f"osp: k={max(ks)} exceeds the {top.size} candidates it solves over (prefilter).")
        X = X[:, top]
        ks = [int(k) for k in ks]
        gamma = self.with_refit_C(DEFAULT_C).gamma
        if task == "regression":
            results = solve_sparse_ridge_path(X, np.asarray(y, dtype=np.float64), ks, alpha=1.0 / gamma,
                                              fit_intercept=True, time_limit=self.time_limit, tol=self.tol)
        else:
            results = solve_osp_path(X, y, ks, gamma=gamma, time_limit=self.time_limit, tol=self.tol)
        supports, info = [], []
        for res in results:
            # Strongest first; a stable sort keeps equal weights in column order.
            order = np.argsort(-np.abs(res.coef[res.support]), kind="stable")
            support = res.support[order].astype(np.int64)
            if support.size < res.k:
                # Only on exact ties (e.g. a constant column, whose weight is 0): any
                # extra column keeps the optimum, and callers expect k of them.
                rest = np.setdiff1d(np.arange(X.shape[1]), support)[: res.k - support.size]
                support = np.concatenate([support, rest])
            supports.append(top[support])
            info.append(
                {
                    "objective": float(res.objective),
                    "bound": float(res.bound),
                    "gap": float(res.gap),
                    "status": res.status,
                    "solve_seconds": float(res.solve_seconds),
                    "n_cuts": int(res.n_cuts),
                    "n_nodes": int(res.n_nodes),
                    "gamma": float(gamma),
                    "n_candidates": int(top.size),
                }
            )
        return SelectionPath(ks=ks, supports=supports, info=info)


register_method("osp", OSPSelector)


@register_solver(Logistic, L0)
def _logistic_l0(X, y, datafit, penalty, *, time_limit=60.0, tol=1e-6):
    if not datafit.balanced:
        raise InputError("the certified L0 solver fits the class-balanced logistic loss only.")
    result = solve_osp(X, y, penalty.k, gamma=penalty.gamma, time_limit=time_limit, tol=tol)
    return Solution(result.coef, result.intercept, result.n_nodes, result.status == "optimal")



@register_solver(Quadratic, L0)
def _quadratic_l0(X, y, datafit, penalty, *, time_limit=60.0, tol=1e-6):
    """``1/2 ||y - Xw - b||^2 + ||w||^2 / (2 gamma)`` s.t. ``||w||_0 <= k``: the certified ridge solver at ``alpha = 1/gamma``."""
    result = solve_sparse_ridge(X, y, penalty.k, alpha=1.0 / penalty.gamma, fit_intercept=True,
                                time_limit=time_limit, tol=tol)
    return Solution(result.coef, result.intercept, result.n_nodes, result.status == "optimal")
