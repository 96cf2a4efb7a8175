"""The least-squares problem: sparse ridge regression over one or several targets, with linear constraints.

The problem is

.. math::

    \\min_{\\Xi \\in \\mathbb{R}^{D \\times d}} \\sum_{t=1}^{d}
        \\lVert y_t - X \\xi_t \\rVert_2^2 + \\alpha \\lVert \\xi_t \\rVert_2^2
    \\quad \\text{s.t.} \\quad \\lVert \\bar\\xi \\rVert_0 \\le k,\\;
    A_{=} \\bar\\xi = b_{=},\\; A_{\\le} \\bar\\xi \\le b_{\\le},

with :math:`\\bar\\xi = (\\xi_1; \\dots; \\xi_d)` the coefficients stacked
target by target (column ``t * D + j`` is feature ``j`` of target ``t``): one
sparsity budget across the targets, as in (5.17)-(5.18) of the thesis, and
constraints on the stacked vector (§5.2.3). With one target it is plain
k-sparse ridge regression.

Data. Only a thin QR of ``X`` is kept: ``X = Q R`` (``R`` of shape
``(m, D)``, ``m = min(n, D)``), ``z_t = Q^T y_t`` and the residual outside
the column span ``rho_t = ||y_t||^2 - ||z_t||^2``, so that
``||y_t - X xi||^2 = rho_t + ||z_t - R xi||^2``. Every fit, cut and bound then
costs a function of ``D`` alone (the thesis's point that the formulation does
not grow with ``n``), and residuals are formed as differences of vectors, not
of squared norms: the Gram form ``y'y - 2 c'xi + xi'G xi`` loses every digit
when the fit is near perfect, as SINDy's clean-data fits are.

Dual (derivation). For a support indicator ``s`` let ``c(s)`` be the optimum
with ridge ``alpha xi_j^2 / s_j`` on ``s`` and ``xi_j = 0`` off it. Write
``||y - X xi||^2 = max_beta 2 beta'(y - X xi) - ||beta||^2`` per target and
dualise the constraints with ``2 mu`` (``mu_<= >= 0``). Minimising over
``xi_j`` gives ``xi_j = s_j v_j / alpha`` with ``v = X'beta - A'mu`` (stacked),
hence

.. math::

    c(s) = \\max_{\\beta, \\mu}\\; \\sum_t \\bigl(2 y_t'\\beta_t - \\lVert\\beta_t\\rVert^2\\bigr)
           - 2 b'\\mu - \\frac{1}{\\alpha} \\sum_j s_j v_j^2 ,

a maximum of functions affine in ``s``: convex, and every dual point gives
the cut ``c(s') >= constant - q . s'`` with ``q = v^2 / alpha >= 0``, valid for
every support (weak duality). At ``beta_t = y_t - X xi_t`` the constant is
``sum_t (rho_t + ||z_t - R xi_t||^2 + 2 xi_t' R'(z_t - R xi_t)) - 2 b'mu``, each
term of the objective's size; at the optimum of a support the cut is tight
there. Any ``xi`` and any ``mu`` with ``mu_<= >= 0`` give a valid cut, so a
relaxation iterate or a constrained solve stopped short still bounds.
An infeasible support (the constraints cannot be met on it) has ``c = inf``.

Reference: D. Bertsimas, B. Van Parys (2020), "Sparse high-dimensional
regression: exact scalable algorithms and phase transitions", Annals of
Statistics 48(1) (the dual of the inner ridge problem as a cut); D. Bertsimas,
W. Gurnee (2023), "Learning sparse nonlinear dynamics via mixed-integer
optimization", Nonlinear Dynamics (the SINDy formulation, stacked targets and
constraints). The derivation above, with constraints and the QR form, is ours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from needle.errors import InputError
from needle.optimal._relax import (
    capped_simplex,
    grow_working_set,
    initial_working_set,
    node_bound,
    relaxation_done,
    relaxed_weights,
    start_weights,
)
from needle.optimal._types import Cut, NodeRelaxation, SupportFit

__all__ = ["RidgeFit", "RidgeProblem", "make_ridge_problem"]

# Relative residual of A xi = b above which a support counts as infeasible.
_FEAS_TOL = 1e-8


@dataclass(frozen=True, eq=False)
class _Solve:
    xi: np.ndarray  # (len(cols),)
    mu: np.ndarray  # (n_constraints,), inequality part >= 0
    status: str  # "ok", "infeasible" (proven up to _FEAS_TOL), "inaccurate"


@dataclass(frozen=True, eq=False)
class RidgeFit(SupportFit):
    """A :class:`~needle.optimal._types.SupportFit` that keeps the constraint multipliers of its solve."""

    mu: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class RidgeProblem:
    """Validated data of one sparse ridge problem; ``k`` is not part of it (cuts hold for every k).

    Attributes
    ----------
    R : ndarray of shape (m, n_features)
        Triangular factor of the thin QR of ``X`` (``m = min(n_examples, n_features)``).
    RT : ndarray of shape (n_features, m)
        ``R.T``, contiguous.
    Z : ndarray of shape (n_targets, m)
        ``Q' y_t`` per target.
    rho : ndarray of shape (n_targets,)
        ``||y_t||^2 - ||z_t||^2`` (clipped at 0): the part of each target no coefficients can fit.
    alpha : float
        Ridge strength, > 0.
    A : ndarray of shape (n_constraints, n_columns)
        Constraint rows on the stacked coefficients: the first ``n_eq`` are equalities, the rest ``<=``.
    b : ndarray of shape (n_constraints,)
    n_eq : int
    fingerprint : str
    """

    R: np.ndarray
    RT: np.ndarray
    Z: np.ndarray
    rho: np.ndarray
    alpha: float
    A: np.ndarray
    b: np.ndarray
    n_eq: int
    fingerprint: str

    @property
    def n_features(self) -> int:
        return self.R.shape[1]

    @property
    def n_targets(self) -> int:
        return self.Z.shape[0]

    @property
    def n_columns(self) -> int:
        return self.R.shape[1] * self.Z.shape[0]

    @property
    def constrained(self) -> bool:
        return self.A.shape[0] > 0

    def target(self, t: int) -> RidgeProblem:
        """Target ``t`` alone, as a one-target problem (unconstrained problems only: constraints may couple)."""
        if self.constrained:
            raise ValueError("a constrained problem does not split by target")
        digest = hashlib.blake2b(f"{self.fingerprint}/target{t}".encode(), digest_size=16).hexdigest()
        return RidgeProblem(R=self.R, RT=self.RT, Z=self.Z[t : t + 1], rho=self.rho[t : t + 1], alpha=self.alpha,
                            A=np.zeros((0, self.n_features)), b=np.zeros(0), n_eq=0, fingerprint=digest)

    # ------------------------------------------------------------------ fits
    def _solve(self, cols: np.ndarray, pen: np.ndarray) -> _Solve:
        """Minimise ``sum_t ||z_t - R xi_t||^2 + sum_j pen_j xi_j^2`` on ``cols``, under the constraints."""
        if not self.constrained:
            return _Solve(self._unconstrained(cols, pen), np.zeros(0), "ok")
        B, rhs = self._design(cols, pen)
        A = self.A[:, cols]
        if self.A.shape[0] > self.n_eq:
            return self._qp(B, rhs, A)
        # Equalities only: the null-space method, least squares throughout.
        b = self.b
        scale = 1.0 + np.abs(b).max() if b.size else 1.0
        if cols.size == 0:
            ok = np.abs(b).max() <= _FEAS_TOL * scale
            return _Solve(np.zeros(0), np.zeros(b.size), "ok" if ok else "infeasible")
        xp = scipy.linalg.lstsq(A, b, lapack_driver="gelsd")[0]
        if np.abs(A @ xp - b).max() > _FEAS_TOL * (scale + np.abs(A).max() * np.abs(xp).max()):
            return _Solve(np.zeros(cols.size), np.zeros(b.size), "infeasible")
        N = scipy.linalg.null_space(A)
        xi = xp
        if N.shape[1]:
            w = scipy.linalg.lstsq(B @ N, rhs - B @ xp, lapack_driver="gelsy")[0]
            xi = xp + N @ w
        # Stationarity: A' mu = B' (rhs - B xi).
        mu = scipy.linalg.lstsq(A.T, B.T @ (rhs - B @ xi), lapack_driver="gelsd")[0]
        return _Solve(xi, mu, "ok")

    def _unconstrained(self, cols, pen):
        xi = np.zeros(cols.size)
        targets, features = np.divmod(cols, self.n_features)
        for t in np.unique(targets):
            idx = np.flatnonzero(targets == t)
            B = np.vstack([self.R[:, features[idx]], np.diag(np.sqrt(pen[idx]))])
            rhs = np.concatenate([self.Z[t], np.zeros(idx.size)])
            xi[idx] = scipy.linalg.lstsq(B, rhs, lapack_driver="gelsy", check_finite=False)[0]
        return xi

    def _design(self, cols, pen):
        """The stacked least-squares design ``[blockdiag_t R_{S_t}; diag(sqrt(pen))]`` and its target."""
        D, m, d = self.n_features, self.R.shape[0], self.n_targets
        targets, features = np.divmod(cols, D)
        B = np.zeros((d * m + cols.size, cols.size))
        for i, (t, f) in enumerate(zip(targets.tolist(), features.tolist())):
            B[t * m : (t + 1) * m, i] = self.R[:, f]
        B[d * m + np.arange(cols.size), np.arange(cols.size)] = np.sqrt(pen)
        rhs = np.concatenate([self.Z.ravel(), np.zeros(cols.size)])
        return B, rhs

    def _qp(self, B, rhs, A) -> _Solve:
        """Inequality (and equality) constraints: Clarabel's interior point on ``min ||rhs - B xi||^2``."""
        try:
            import clarabel
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise InputError(
                "inequality constraints need the Clarabel QP solver: pip install 'needle[sindy]' (or clarabel)."
            ) from None
        from scipy import sparse

        n_cols, n_eq, n_con = B.shape[1], self.n_eq, self.A.shape[0]
        if n_cols == 0:
            ok_eq = np.all(np.abs(self.b[:n_eq]) <= _FEAS_TOL * (1 + np.abs(self.b).max()))
            ok_in = np.all(self.b[n_eq:] >= -_FEAS_TOL * (1 + np.abs(self.b).max()))
            return _Solve(np.zeros(0), np.zeros(n_con), "ok" if ok_eq and ok_in else "infeasible")
        if not self._could_be_feasible(A):
            return _Solve(np.zeros(n_cols), np.zeros(n_con), "infeasible")
        P = sparse.csc_matrix(np.triu(2.0 * (B.T @ B)))
        q = -2.0 * (B.T @ rhs)
        cones = ([clarabel.ZeroConeT(n_eq)] if n_eq else []) + [clarabel.NonnegativeConeT(n_con - n_eq)]
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
        settings.tol_feas = 1e-10
        solver = clarabel.DefaultSolver(P, q, sparse.csc_matrix(A), self.b.copy(), cones, settings)
        sol = solver.solve()
        status = str(sol.status)
        mu = np.asarray(sol.z, dtype=np.float64) / 2.0
        mu[n_eq:] = np.maximum(mu[n_eq:], 0.0)
        xi = np.asarray(sol.x, dtype=np.float64)
        if "Solved" not in status and not self._feasible_lp(A):
            # The interior point is unsure; HiGHS's phase one decides feasibility exactly.
            return _Solve(np.zeros(n_cols), np.zeros(n_con), "infeasible")
        viol = np.concatenate([np.abs(A[:n_eq] @ xi - self.b[:n_eq]), np.maximum(A[n_eq:] @ xi - self.b[n_eq:], 0)])
        scale = 1.0 + np.abs(self.b).max() + np.abs(A).max() * np.abs(xi).max()
        ok = status in ("Solved", "SolverStatus.Solved", "AlmostSolved", "SolverStatus.AlmostSolved")
        return _Solve(xi, mu, "ok" if ok and viol.max(initial=0.0) <= 1e3 * _FEAS_TOL * scale else "inaccurate")

    def _could_be_feasible(self, A) -> bool:
        """False when a constraint row has no column on the support and its ``b`` rules out ``0``."""
        empty = ~np.any(A != 0.0, axis=1)
        tol = _FEAS_TOL * (1.0 + np.abs(self.b).max())
        eq = np.arange(self.b.size) < self.n_eq
        bad_eq = empty & eq & (np.abs(self.b) > tol)
        bad_in = empty & ~eq & (self.b < -tol)
        return not (bad_eq.any() or bad_in.any())

    def _feasible_lp(self, A) -> bool:
        from scipy.optimize import linprog

        n_eq = self.n_eq
        res = linprog(np.zeros(A.shape[1]), A_ub=A[n_eq:] if A.shape[0] > n_eq else None,
                      b_ub=self.b[n_eq:] if A.shape[0] > n_eq else None, A_eq=A[:n_eq] if n_eq else None,
                      b_eq=self.b[:n_eq] if n_eq else None, bounds=(None, None), method="highs")
        return res.status != 2  # 2: infeasible

    def _residuals(self, cols, xi):
        """``z_t - R xi_t`` for every target, shape (n_targets, m)."""
        res = self.Z.copy()
        targets, features = np.divmod(cols, self.n_features)
        for t in np.unique(targets):
            idx = np.flatnonzero(targets == t)
            res[t] -= self.R[:, features[idx]] @ xi[idx]
        return res

    def _cut(self, cols, xi, mu) -> tuple[Cut, np.ndarray, float]:
        """The cut of the dual point ``(y - X xi, mu)``; also ``v`` and ``sum_t ||y_t - X xi_t||^2``."""
        res = self._residuals(cols, xi)
        rss = float(self.rho.sum() + np.einsum("ij,ij->", res, res))
        w = (res @ self.R).ravel()  # X' beta, stacked target by target
        v = w - self.A.T @ mu if self.constrained else w
        constant = rss + 2.0 * float(xi @ w[cols])
        if self.constrained:
            constant -= 2.0 * float(self.b @ mu)
        return Cut(constant=constant, q=v * v / self.alpha), v, rss

    def fit_support(self, support, init=None) -> SupportFit:
        """The exact constrained ridge fit on one support, with its cut (``init`` is unused: the fit is direct)."""
        key = tuple(sorted(int(j) for j in support))
        cols = np.array(key, dtype=np.intp)
        out = self._solve(cols, np.full(cols.size, self.alpha))
        if out.status == "infeasible":
            return RidgeFit(key, np.zeros(cols.size), 0.0, np.inf, Cut(np.inf, np.zeros(self.n_columns)), out.mu)
        cut, _, rss = self._cut(cols, out.xi, out.mu)
        # A constrained solve that did not converge still gives a valid cut, but no incumbent.
        value = rss + self.alpha * float(out.xi @ out.xi) if out.status == "ok" else np.inf
        return RidgeFit(key, out.xi, 0.0, value, cut, out.mu)

    # ------------------------------------------------------------ search hooks
    def screen_support(self, k: int) -> tuple[int, ...]:
        """The ``k`` stacked columns with the largest ``|x_j' y_t| / ||x_j||`` (ties to the lower id)."""
        norms = np.sqrt(np.maximum(np.einsum("ij,ij->j", self.R, self.R), 1e-300))
        score = (np.abs(self.Z @ self.R) / norms).ravel()
        return tuple(sorted(np.argsort(-score, kind="stable")[:k].tolist()))

    def extension_bounds(self, base: SupportFit, candidates: np.ndarray):
        """Certified lower bounds on ``c(base.support + {j})`` for every ``j`` in ``candidates``.

        From the base fit, one exact step of the Lagrangian at the base's ``mu``
        (for an unconstrained problem: the exact optimum on ``S + {j}``) is
        taken for every candidate through the Schur complement of the shared
        block, and the dual value of each step's point is evaluated on its
        support: a valid bound whatever the step's accuracy.
        """
        n_c = candidates.size
        starts = np.zeros((len(base.support) + 2, n_c))
        if not np.isfinite(base.cut.constant):
            return np.full(n_c, -np.inf), starts
        D, alpha = self.n_features, self.alpha
        S = np.array(base.support, dtype=np.intp)
        xi = np.asarray(base.coef, dtype=np.float64)
        mu = base.mu if self.constrained else np.zeros(0)
        cut, v, _ = self._cut(S, xi, mu)
        res = self._residuals(S, xi)
        a_all = self.A.T @ mu if self.constrained else np.zeros(self.n_columns)
        bounds = np.empty(n_c)
        base_bound = cut.constant - float(cut.q[S].sum())
        s_t, s_f = np.divmod(S, D)
        c_t, c_f = np.divmod(candidates, D)
        for t in np.unique(c_t):
            pick = np.flatnonzero(c_t == t)
            f = c_f[pick]
            inside = np.flatnonzero(s_t == t)
            F = s_f[inside]
            # Orthonormal basis of [R_F; sqrt(alpha) I]: the Schur complement of each new column is
            # alpha + the squared norm of its projection residual, computed without cancellation.
            M = np.vstack([self.R[:, F], np.sqrt(alpha) * np.eye(F.size)])
            Cand = np.vstack([self.R[:, f], np.zeros((F.size, f.size))])
            if F.size:
                Qm, Rm = np.linalg.qr(M)
                proj = Qm.T @ Cand
                resid = Cand - Qm @ proj
                coupling = scipy.linalg.solve_triangular(Rm, proj)  # H_F^{-1} h_j, (|F|, n_pick)
            else:
                resid, coupling = Cand, np.zeros((0, f.size))
            schur = np.einsum("ij,ij->j", resid, resid) + alpha
            step_new = v[candidates[pick]] / schur
            step_old = -coupling * step_new
            # Residual of target t after each step, and X'beta on the new support.
            beta = res[t][:, None] - self.R[:, F] @ step_old - self.R[:, f] * step_new  # (m, n_pick)
            w_old = self.RT[F] @ beta  # (|F|, n_pick)
            w_new = np.einsum("ij,ij->j", self.R[:, f], beta)
            xi_old = xi[inside][:, None] + step_old
            v_old = w_old - a_all[S[inside]][:, None]
            v_new = w_new - a_all[candidates[pick]]
            term_new = (np.einsum("ij,ij->j", beta, beta) + 2.0 * (np.einsum("ij,ij->j", xi_old, w_old) + step_new * w_new)
                        - (np.einsum("ij,ij->j", v_old, v_old) + v_new * v_new) / alpha)
            w_t = self.RT[F] @ res[t]
            v_t = v[S[inside]]
            term_old = float(res[t] @ res[t]) + 2.0 * float(xi[inside] @ w_t) - float(v_t @ v_t) / alpha
            bounds[pick] = base_bound - term_old + term_new
        # No warm starts: the exact fits are direct solves.
        return bounds, starts

    def relax_node(self, fixed_in, free, r, *, prune_level, warm_s=None, warm_theta=None, hint_q=None,
                   max_iter=30, min_iter=2, rtol=1e-6, deadline=np.inf, clock=None, extra=3) -> NodeRelaxation:
        """The node's Boolean relaxation, alternating exact weighted fits with the capped-simplex ``s``.

        Same schedule and stopping rules as the logistic relaxation
        (:func:`needle.probing.osp._relax.relax_node`); the fit at fixed ``s``
        is exact here (a least-squares solve), not one Newton step.
        """
        warm_s = warm_s or {}
        work = initial_working_set(free, r, warm_s, hint_q, extra)
        n_fixed = fixed_in.size
        best, best_cut, value = -np.inf, None, np.inf
        s = start_weights(work, warm_s, r)
        xi, cols = np.zeros(0), fixed_in
        for it in range(max_iter):
            cols = np.concatenate([fixed_in, work])
            pen = np.concatenate([np.full(n_fixed, self.alpha), self.alpha / s])
            out = self._solve(cols, pen)
            if out.status == "infeasible":
                if work.size == free.size:
                    # Even with every free column allowed the constraints fail: no support here is feasible.
                    return NodeRelaxation(bound=np.inf, value=np.inf, s={}, theta={"b": 0.0}, cut=None)
                work = free.copy()
                s = capped_simplex(np.full(work.size, 1.0), r) if work.size > r else np.ones(work.size)
                continue
            xi = out.xi
            cut, _, rss = self._cut(cols, xi, out.mu)
            value = rss + float(pen @ (xi * xi)) if out.status == "ok" else np.inf
            bound = node_bound(cut, fixed_in, free, r)
            if bound > best:
                best, best_cut = bound, cut
            if relaxation_done(best, value, it, prune_level=prune_level, rtol=rtol, min_iter=min_iter,
                               clock=clock, deadline=deadline):
                break
            if work.size > r:
                a = np.abs(xi[n_fixed:])
                s = relaxed_weights(a, r)
            grown = grow_working_set(work, s, free, cut.q, r)
            if grown is not None:
                old = dict(zip(work.tolist(), s.tolist()))
                work = grown
                s = start_weights(work, old, r)
        theta = dict(zip(cols.tolist(), xi.tolist())) if xi.size == cols.size else {}
        theta["b"] = 0.0
        return NodeRelaxation(bound=best, value=value, s=dict(zip(work.tolist(), s.tolist())), theta=theta,
                              cut=best_cut)



def _as_matrix(X, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty 2-D array, got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise InputError(f"{name} must be real numbers, got dtype {X.dtype}.")
    X = np.asarray(X, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise InputError(f"{name} contains NaN or infinite values (first at row {bad[0]}, column {bad[1]}).")
    return X


def _constraints(lhs, rhs, n_columns: int, name: str):
    if lhs is None and rhs is None:
        return np.zeros((0, n_columns)), np.zeros(0)
    if lhs is None or rhs is None:
        raise InputError(f"{name}: give both the left-hand side matrix and the right-hand side vector.")
    A = _as_matrix(np.atleast_2d(lhs), f"{name} lhs")
    b = np.asarray(rhs, dtype=np.float64).ravel()
    if A.shape[1] != n_columns:
        raise InputError(f"{name} lhs must have n_features * n_targets = {n_columns} columns, got {A.shape[1]}.")
    if b.shape != (A.shape[0],) or not np.all(np.isfinite(b)):
        raise InputError(f"{name} rhs must be {A.shape[0]} finite numbers (one per row of lhs), got shape {b.shape}.")
    return A, b


def make_ridge_problem(X, Y, *, alpha: float, eq=(None, None), ineq=(None, None)) -> RidgeProblem:
    """Validate inputs and build a :class:`RidgeProblem` (no centring: the caller handles intercepts).

    Parameters
    ----------
    X : array-like of shape (n_examples, n_features)
    Y : array-like of shape (n_examples, n_targets)
    alpha : float
        Ridge strength, > 0 (the certificate needs it: with ``alpha = 0`` the cuts are void).
    eq, ineq : pair of (array-like of shape (n_constraints, n_features * n_targets), array-like of shape (n_constraints,))
        ``A xi = b`` and ``A xi <= b`` on the coefficients stacked target by target.
    """
    X = _as_matrix(X, "X")
    Y = _as_matrix(Y, "y")
    if Y.shape[0] != X.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {Y.shape[0]}.")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha must be a positive number, got {alpha!r}.") from None
    if not (np.isfinite(alpha) and alpha > 0):
        raise InputError(
            f"alpha must be a positive finite number, got {alpha!r}; the certified solver needs some ridge "
            "(its bounds are void without it): use a small value such as 1e-6 for near-plain least squares."
        )
    n_columns = X.shape[1] * Y.shape[1]
    A_eq, b_eq = _constraints(*eq, n_columns, "equality constraints")
    A_in, b_in = _constraints(*ineq, n_columns, "inequality constraints")
    # One QR of [X | Y], without forming Q: R, then Z' = Q'Y above, and below it a triangle whose
    # column norms are what no coefficients can fit (||y||^2 - ||z||^2 would cancel).
    D = X.shape[1]
    R_aug = scipy.linalg.qr(np.hstack([X, Y]), mode="r", check_finite=False)[0]
    m = min(X.shape[0], D)
    R = np.triu(R_aug[:m, :D])
    Z = R_aug[:m, D:].T.copy()
    T = np.triu(R_aug[m:, D:]) if R_aug.shape[0] > m else np.zeros((0, Y.shape[1]))
    rho = np.einsum("ij,ij->j", T, T)
    A = np.vstack([A_eq, A_in])
    b = np.concatenate([b_eq, b_in])
    digest = hashlib.blake2b(digest_size=16)
    for arr in (X, Y, A, b, np.array([alpha, A_eq.shape[0]], dtype=np.float64)):
        digest.update(np.ascontiguousarray(arr).view(np.uint8))
    digest.update(str((X.shape, Y.shape, A.shape)).encode())
    return RidgeProblem(R=np.ascontiguousarray(R), RT=np.ascontiguousarray(R.T), Z=Z, rho=rho, alpha=alpha,
                        A=np.ascontiguousarray(A), b=b, n_eq=A_eq.shape[0], fingerprint=digest.hexdigest())
