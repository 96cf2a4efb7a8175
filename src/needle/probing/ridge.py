"""Ridge regression for every alpha of a grid and every target, from one decomposition.

The paper tunes each ridge probe's ``λ`` by efficient leave-one-out
cross-validation (§4.2.2, after Hastie et al.): for a linear smoother
``ŷ = H y`` the leave-one-out residual of example ``i`` is
``(y_i − ŷ_i) / (1 − H_ii)``, so no refit is needed. With the thin SVD of the
centred design ``X_c = U diag(s) Vᵀ`` (the intercept is not penalised),

    H_α = 1 1ᵀ / n + U diag(s² / (s² + α)) Uᵀ,

and every alpha and every target comes from the one decomposition: the
predictions of all of them are ``U (F_α ⊙ Uᵀ Y_c)`` and the leverages
``(U ⊙ U) F_αᵀ`` with ``F_α = s² / (s² + α)``. The decomposition is that of
the smaller Gram matrix (``X_cᵀ X_c``, d × d, or ``X_c X_cᵀ``, n × n), which
BLAS forms faster than an SVD of ``X_c``. The same spectrum gives the probes
on the ``k`` leading principal components (§4.4.2): ridge on ``X_c V_k`` has
``H = 1 1ᵀ / n + U_k diag(s_k² / (s_k² + α)) U_kᵀ``.

scikit-learn's ``RidgeCV(alphas=…)`` (``cv=None``) minimises the same
leave-one-out squared error; ``benchmarks/ridge.py`` checks that both choose
the same alpha and times them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from needle.errors import InputError

__all__ = ["DEFAULT_ALPHAS", "Spectrum", "RidgePath", "spectrum", "ridge_loo", "ridge_loo_pca"]

#: The alpha grid of the ridge probes (on standardised columns, where the Gram matrix's mean eigenvalue is n).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))
# Singular values below this fraction of the largest (squared) are numerically zero: dropped.
_RANK_TOL = 1e-12


@dataclass
class Spectrum:
    """The thin SVD of a centred design, kept for every alpha, target and number of components.

    Attributes
    ----------
    U : ndarray of shape (n_examples, r)
    s : ndarray of shape (r,)
        Singular values, decreasing; those numerically zero are dropped.
    V : ndarray of shape (n_features, r)
    x_mean : ndarray of shape (n_features,)
    """

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    x_mean: np.ndarray

    @property
    def rank(self) -> int:
        return self.s.size


@dataclass
class RidgePath:
    """Leave-one-out errors over an alpha grid and the probe at each target's best alpha.

    Attributes
    ----------
    alphas : ndarray of shape (n_alphas,)
    loo_mse : ndarray of shape (n_alphas, n_targets)
        Mean leave-one-out squared error.
    best : ndarray of shape (n_targets,), int
        Index of the chosen alpha (the first of the smallest error).
    alpha : ndarray of shape (n_targets,)
    coef : ndarray of shape (n_features, n_targets)
        At the chosen alpha, in the units of ``X``.
    intercept : ndarray of shape (n_targets,)
    """

    alphas: np.ndarray
    loo_mse: np.ndarray
    best: np.ndarray
    alpha: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of shape (n_examples, n_targets)."""
        return np.asarray(X, np.float64) @ self.coef + self.intercept


def spectrum(X: np.ndarray) -> Spectrum:
    """The thin SVD of ``X`` centred by its column means, through the smaller Gram matrix.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_features)

    Returns
    -------
    Spectrum
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise InputError(f"ridge needs a 2-d design with at least 2 examples, got shape {X.shape}.")
    mean = X.mean(axis=0)
    Xc = X - mean
    n, d = Xc.shape
    if d <= n:
        eigenvalues, V = np.linalg.eigh(Xc.T @ Xc)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, V = eigenvalues[order], V[:, order]
        keep = eigenvalues > _RANK_TOL * max(eigenvalues[0], 0.0)
        s, V = np.sqrt(eigenvalues[keep]), V[:, keep]
        U = (Xc @ V) / s
    else:
        eigenvalues, U = np.linalg.eigh(Xc @ Xc.T)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, U = eigenvalues[order], U[:, order]
        keep = eigenvalues > _RANK_TOL * max(eigenvalues[0], 0.0)
        s, U = np.sqrt(eigenvalues[keep]), U[:, keep]
        V = (Xc.T @ U) / s
    if s.size == 0:
        raise InputError("ridge: every column of the design is constant; there is nothing to regress on.")
    return Spectrum(U=U, s=s, V=V, x_mean=mean)


def _check_alphas(alphas) -> np.ndarray:
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise InputError(f"alphas must be positive and finite, got {alphas.tolist()}.")
    return alphas


def _targets(Y: np.ndarray, n: int) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.shape[0] != n:
        raise InputError(f"ridge: the design has {n} examples but the targets {Y.shape[0]}.")
    if not np.all(np.isfinite(Y)):
        raise InputError("ridge: the targets have NaN or infinite values.")
    return Y


def _path(spec: Spectrum, Y: np.ndarray, alphas: np.ndarray, k: int | None) -> RidgePath:
    U, s, V = spec.U, spec.s, spec.V
    if k is not None:
        U, s, V = U[:, :k], s[:k], V[:, :k]
    n = U.shape[0]
    y_mean = Y.mean(axis=0)
    B = U.T @ (Y - y_mean)  # (r, t)
    s2 = s * s
    F = s2[None, :] / (s2[None, :] + alphas[:, None])  # (a, r)
    leverage = (U * U) @ F.T + 1.0 / n  # (n, a)
    loo = np.empty((alphas.size, Y.shape[1]))
    for a in range(alphas.size):  # one (n, r) × (r, t) product per alpha; memory stays O(n t)
        fitted = U @ (F[a][:, None] * B) + y_mean
        residual = (Y - fitted) / (1.0 - leverage[:, a])[:, None]
        loo[a] = np.mean(residual * residual, axis=0)
    best = np.argmin(loo, axis=0)  # first of the smallest: the order of the grid breaks ties, as scikit-learn's
    coef = np.empty((V.shape[0], Y.shape[1]))
    for t, a in enumerate(best):
        coef[:, t] = V @ (s / (s2 + alphas[a]) * B[:, t])
    intercept = y_mean - spec.x_mean @ coef
    return RidgePath(alphas=alphas, loo_mse=loo, best=best, alpha=alphas[best], coef=coef, intercept=intercept)


def ridge_loo(X: np.ndarray | Spectrum, Y: np.ndarray, alphas=DEFAULT_ALPHAS) -> RidgePath:
    """Ridge with an unpenalised intercept, alpha chosen per target by exact leave-one-out error.

    Minimises ``||Y − X W − 1 bᵀ||² + α ||W||²`` for every ``α`` of ``alphas``
    and keeps, per target, the ``α`` of the smallest mean leave-one-out squared error.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_features), or a :class:`Spectrum` of it
    Y : ndarray of shape (n_examples,) or (n_examples, n_targets)
    alphas : sequence of float, default :data:`DEFAULT_ALPHAS`

    Returns
    -------
    RidgePath
    """
    spec = X if isinstance(X, Spectrum) else spectrum(X)
    return _path(spec, _targets(Y, spec.U.shape[0]), _check_alphas(alphas), None)


def ridge_loo_pca(X: np.ndarray | Spectrum, Y: np.ndarray, ks, alphas=DEFAULT_ALPHAS) -> dict[int, RidgePath]:
    """Ridge probes on the ``k`` leading principal components of ``X``, for every ``k``, from one decomposition.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_features), or a :class:`Spectrum` of it
        The principal components are those of ``X`` centred (the training split's).
    Y : ndarray of shape (n_examples,) or (n_examples, n_targets)
    ks : sequence of int
        Numbers of components; those above the rank of ``X`` are skipped.
    alphas : sequence of float

    Returns
    -------
    dict of int to RidgePath
        Coefficients in the units of ``X`` (the components folded back in).
    """
    spec = X if isinstance(X, Spectrum) else spectrum(X)
    Y = _targets(Y, spec.U.shape[0])
    alphas = _check_alphas(alphas)
    return {int(k): _path(spec, Y, alphas, int(k)) for k in sorted(set(int(k) for k in ks)) if 1 <= k <= spec.rank}
