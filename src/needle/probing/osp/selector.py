"""The ``osp`` selection method: optimal sparse probing as a :class:`~needle.probing.selection.Selector`.

Importing this module registers ``"osp"`` with the selection registry, so
``SparseProbe(method="osp")`` and ``sweep(methods=["osp"])`` find it.
"""

from __future__ import annotations

import numpy as np

from needle.probing.fitting import standardization
from needle.probing.osp._solve import DEFAULT_GAMMA, solve_osp_path
from needle.probing.selection import SelectionPath, Selector, register_method

__all__ = ["OSPSelector"]


class OSPSelector(Selector):
    """Supports that are optimal for the ridge-logistic objective, with a certificate per ``k``.

    The candidates are standardised (training mean and standard deviation, as
    the refit does) and :func:`~needle.probing.osp.solve_osp_path` solves

    ``min sum_i c_i log(1 + exp(-y_i (w.z_i + b))) + ||w||^2 / (2 gamma)`` s.t. ``||w||_0 <= k``

    with balanced weights ``c_i``. With ``gamma`` equal to the refit's ``C``
    (both default to 0.01) this is the refit's own objective, so a certified
    support is the best ``k`` neurons for the probe that is then fitted.

    Parameters
    ----------
    gamma : float, default 0.01
        Ridge parameter on standardised inputs (scikit-learn's ``C``).
    time_limit : float, default 60.0
        Seconds per ``k`` (the paper's limit).
    tol : float, default 1e-6
        Relative optimality gap.

    Notes
    -----
    ``info`` of each ``k`` holds ``objective``, ``bound``, ``gap``, ``status``
    ("optimal" or "time_limit"), ``solve_seconds``, ``n_cuts``, ``n_nodes`` and
    ``gamma``: the certificate to report with the probe. Supports are ordered
    by decreasing ``|coef|`` of the optimal sparse fit.
    """

    nested = False
    stochastic = False

    def __init__(self, *, gamma: float = DEFAULT_GAMMA, time_limit: float = 60.0, tol: float = 1e-6):
        self.gamma = gamma
        self.time_limit = time_limit
        self.tol = tol

    def select_path(self, X, y, ks, *, random_state=None) -> SelectionPath:
        X = np.asarray(X, dtype=np.float64)
        mean, scale = standardization(X)
        ks = [int(k) for k in ks]
        results = solve_osp_path(
            (X - mean) / scale, y, ks, gamma=self.gamma, time_limit=self.time_limit, tol=self.tol
        )
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
            supports.append(support)
            info.append(
                {
                    "objective": float(res.objective),
                    "bound": float(res.bound),
                    "gap": float(res.gap),
                    "status": res.status,
                    "solve_seconds": float(res.solve_seconds),
                    "n_cuts": int(res.n_cuts),
                    "n_nodes": int(res.n_nodes),
                    "gamma": float(res.gamma),
                }
            )
        return SelectionPath(ks=ks, supports=supports, info=info)


register_method("osp", OSPSelector)
