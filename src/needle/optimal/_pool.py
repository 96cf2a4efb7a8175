"""The cut pool: every dual point found so far, plus the exact fits of every support evaluated.

A cut ``c(s) >= constant - q . s`` comes from a dual-feasible point of the inner
problem (logistic: :mod:`needle.probing.osp._inner`; least squares:
:mod:`needle.optimal._ridge`), so it is valid for every support of every size:
one pool serves a whole path of ``k`` on the same data.
"""

from __future__ import annotations

import numpy as np

from needle.errors import InputError
from needle.optimal._types import Cut, SupportFit

__all__ = ["CutPool"]


class CutPool:
    """Outer-approximation cuts and cached exact support fits of one problem.

    Pass it back to the solver (``cuts=``; :func:`~needle.probing.osp.solve_osp`,
    :func:`~needle.optimal.solve_sparse_ridge`) to reuse the work on the same
    data and ridge with another ``k`` or a longer time limit; using it on
    different data raises a ``ValueError``.

    Parameters
    ----------
    problem : SparseProblem
        The problem the cuts belong to (only its fingerprint and column count are kept).
    max_cuts : int, default=4000
        Oldest cuts beyond this are dropped (they stay valid; this only bounds memory and time).
    """

    def __init__(self, problem, *, max_cuts: int = 4000):
        self.fingerprint = problem.fingerprint
        self.n_neurons = problem.n_columns
        self.max_cuts = int(max_cuts)
        self._constants = np.empty(64)
        self._q = np.empty((64, self.n_neurons))
        self._size = 0
        self.fits: dict[tuple[int, ...], SupportFit] = {}
        #: Certified lower bound per k solved on this pool (kept by solvers that combine answers across k).
        self.bounds: dict[int, float] = {}

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"CutPool(n_cuts={self._size}, n_supports={len(self.fits)}, n_neurons={self.n_neurons})"

    def check(self, problem) -> None:
        """Raise unless this pool was built on exactly this problem."""
        if problem.fingerprint != self.fingerprint:
            raise InputError(
                "cuts: this CutPool was built on different data (X, y, weights, ridge or constraints differ); "
                "cuts are only valid for the problem they came from. Pass cuts=None."
            )

    @property
    def constants(self) -> np.ndarray:
        """ndarray of shape (n_cuts,)"""
        return self._constants[: self._size]

    @property
    def q(self) -> np.ndarray:
        """ndarray of shape (n_cuts, n_neurons), non-negative."""
        return self._q[: self._size]

    def add(self, cut: Cut) -> None:
        if self._size == self.max_cuts:
            # Drop the oldest half: recent cuts come from supports near the incumbent.
            keep = self.max_cuts // 2
            self._constants[:keep] = self._constants[self._size - keep : self._size]
            self._q[:keep] = self._q[self._size - keep : self._size]
            self._size = keep
        if self._size == self._constants.size:
            grow = min(2 * self._size, self.max_cuts)
            self._constants = np.resize(self._constants, grow)
            self._q = np.resize(self._q, (grow, self.n_neurons))
        self._constants[self._size] = cut.constant
        self._q[self._size] = cut.q
        self._size += 1

    def add_fit(self, fit: SupportFit) -> None:
        if fit.support not in self.fits:
            self.fits[fit.support] = fit
            # An infeasible support (constrained problems) carries no dual point to share.
            if np.isfinite(fit.cut.constant):
                self.add(fit.cut)

    def best_fit(self, size: int) -> SupportFit | None:
        """The cached fit of lowest value among supports of exactly ``size`` columns."""
        same = [f for f in self.fits.values() if len(f.support) == size]
        return min(same, key=lambda f: f.value) if same else None

    def bound(self, fixed_in: np.ndarray, free: np.ndarray, r: int, recent: int | None = None) -> float:
        """Lower bound on ``c(S)`` over supports ``S = fixed_in + R``, ``R`` within ``free``, ``|R| <= r``.

        Each cut is minimised over the node separately (``q >= 0``, so by taking
        the ``r`` largest ``q`` in ``free``); the best of these is returned.
        ``recent`` limits the work to the latest cuts (any subset gives a valid bound).
        """
        if self._size == 0:
            return -np.inf
        first = 0 if recent is None else max(0, self._size - recent)
        q = self._q[first : self._size]
        values = self._constants[first : self._size] - q[:, fixed_in].sum(axis=1)
        if r > 0 and free.size:
            if r >= free.size:
                values = values - q[:, free].sum(axis=1)
            else:
                top = np.partition(q[:, free], free.size - r, axis=1)[:, free.size - r :]
                values = values - top.sum(axis=1)
        return float(values.max())

    def forced_bounds(self, fixed_in: np.ndarray, free: np.ndarray, r: int, recent: int | None = None):
        """Per free column: lower bounds on the node's supports that contain it, and on those that do not.

        For one cut, the node's bound is ``L = constant - q_F - T_r`` (``T_r``: the
        sum of the ``r`` largest ``q`` in ``free``, ``t_r`` and ``t_{r+1}`` the
        ``r``-th and ``(r+1)``-th largest). Forcing ``j`` in replaces the smallest
        of those ``r`` by ``q_j``: ``L + max(0, t_r - q_j)``; forcing it out
        replaces ``q_j`` by the next one: ``L + max(0, q_j - t_{r+1})``. Each is
        maximised over the cuts. These are the reduced costs of branch-and-cut's
        variable fixing: a column whose forced-in bound reaches the incumbent
        can be excluded from the node, one whose forced-out bound does must be in.

        Parameters
        ----------
        fixed_in, free : ndarray of int
        r : int
            Columns still to choose, ``1 <= r < len(free)``.
        recent : int, optional
            Use only the latest cuts.

        Returns
        -------
        with_column, without_column : ndarray of shape (len(free),)
            ``-inf`` everywhere for an empty pool.
        """
        if self._size == 0:
            return np.full(free.size, -np.inf), np.full(free.size, -np.inf)
        first = 0 if recent is None else max(0, self._size - recent)
        q = self._q[first : self._size]
        qf = q[:, free]
        ordered = -np.sort(-qf, axis=1)  # descending per cut
        node = self._constants[first : self._size] - q[:, fixed_in].sum(axis=1) - ordered[:, :r].sum(axis=1)
        with_column = (node[:, None] + np.maximum(0.0, ordered[:, r - 1 : r] - qf)).max(axis=0)
        without_column = (node[:, None] + np.maximum(0.0, qf - ordered[:, r : r + 1])).max(axis=0)
        return with_column, without_column
