"""Dynamics read out of a language model (thesis §5.4): probes at the separators, then SINDy on their predictions.

The steps, one function each:

1. the residual stream at a ``dynamics`` dataset's separators is an ordinary
   activation cache (``needle.extract(model, dataset, out, site="resid")``);
2. :func:`probe_layers` fits a ridge probe per layer on the dataset's own
   train split (``split="time"``: each trajectory's earlier steps) and scores
   it on the rest (the later steps);
3. :func:`predicted_series` puts the test predictions back in time order, one
   series per trajectory;
4. :func:`fit_map` (a discrete map: the logistic map) and :func:`fit_flow`
   (an ODE: Lorenz) fit SINDy to those series with needle's certified
   :func:`~needle.sindy.fit_miosr` or PySINDy's STLSQ, and :func:`recovery`
   scores the coefficients against the true ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.errors import InputError
from needle.probing.layer_probes import RidgeProbe

__all__ = ["LORENZ_COEF", "LORENZ_TERMS", "fit_flow", "fit_map", "map_library", "predicted_series", "probe_layers",
           "recovery"]

OPTIMIZERS = ("miosr", "stlsq")

#: Terms of a degree-2 polynomial library in (x, y, z), in PySINDy's order, and Lorenz's (σ=10, ρ=28, β=8/3)
#: coefficients on them, shape (3, 10).
LORENZ_TERMS = ("1", "x", "y", "z", "x^2", "x y", "x z", "y^2", "y z", "z^2")
LORENZ_COEF = np.zeros((3, 10))
LORENZ_COEF[0, [1, 2]] = [-10.0, 10.0]
LORENZ_COEF[1, [1, 2, 6]] = [28.0, -1.0, -1.0]
LORENZ_COEF[2, [3, 5]] = [-8.0 / 3.0, 1.0]


def probe_layers(cache: Any, feature: str) -> list[dict[str, Any]]:
    """A ridge probe per layer on the cache's train split, scored on its test split.

    The probe is the paper's (:class:`~needle.probing.layer_probes.RidgeProbe`): every
    dimension, its penalty chosen by exact leave-one-out error on the train rows.

    Parameters
    ----------
    cache : ActivationCache
        Of a dataset with a train/test split (``dynamics`` with ``split="time"``).
    feature : str
        A regression feature (``current``, ``next``, ``y``, ``z``).

    Returns
    -------
    list of dict
        Per layer: ``layer``, ``r2``, ``mse``, ``mae``, ``n_train``, ``n_test``,
        ``rows`` (the test examples' cache rows, shape (n_test,)) and
        ``prediction`` (shape (n_test,)). R² is NaN where the layer is constant
        on the train rows (nothing to read).
    """
    rows, y = cache.feature(feature)
    test = cache.feature_split(feature)
    if test is None or not test.any() or test.all():
        raise InputError(f"feature {feature!r} of {cache.path} needs a train/test split: build the dynamics "
                         "dataset with split='time'.")
    out = []
    for layer in cache.layers:
        X = np.asarray(cache.layer(layer)[rows], np.float64)
        entry = {"layer": layer, "n_train": int((~test).sum()), "n_test": int(test.sum()), "rows": rows[test]}
        if np.ptp(X[~test], axis=0).max() == 0:
            out.append(entry | {"r2": np.nan, "mse": np.nan, "mae": np.nan, "prediction": np.full(test.sum(), np.nan)})
            continue
        fit = RidgeProbe().fit_layer(X[~test], y[~test], [X.shape[1]])[0]
        pred = fit.predict(X[test])
        err = pred - y[test]
        r2 = 1.0 - np.sum(err**2) / np.sum((y[test] - y[test].mean()) ** 2)
        out.append(entry | {"r2": float(r2), "mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))),
                            "prediction": pred})  # fmt: skip
    return out


def predicted_series(cache: Any, rows: np.ndarray, values: np.ndarray) -> dict[int, np.ndarray]:
    """``values`` at cache ``rows`` as one series per sequence (trajectory), in token order.

    Parameters
    ----------
    cache : ActivationCache
    rows : ndarray of int, shape (n,)
    values : ndarray, shape (n,) or (n, d)

    Returns
    -------
    dict
        Sequence index -> ndarray of shape (n_steps,) or (n_steps, d).
    """
    sequence, start = cache.rows["sequence"][rows], cache.rows["start"][rows]
    order = np.lexsort((start, sequence))
    sequence, values = sequence[order], np.asarray(values)[order]
    cuts = np.flatnonzero(np.diff(sequence)) + 1
    return {int(s[0]): v for s, v in zip(np.split(sequence, cuts), np.split(values, cuts))}


def map_library(x: np.ndarray, degree: int = 3) -> np.ndarray:
    """The polynomial library [1, x, …, x^degree] of a scalar series, shape (n, degree + 1)."""
    return np.stack([np.asarray(x, np.float64) ** p for p in range(degree + 1)], axis=1)


def fit_map(series: np.ndarray, *, optimizer: str = "miosr", k: int = 2, degree: int = 3, alpha: float = 1e-6,
            threshold: float = 0.1) -> np.ndarray:
    """Fit x_{t+1} = ξ·[1, x_t, …, x_t^degree] to one scalar series.

    Parameters
    ----------
    series : ndarray, shape (n_steps,)
    optimizer : {"miosr", "stlsq"}
        needle's certified k-sparse ridge (at most ``k`` terms), or PySINDy's
        sequentially thresholded least squares (``threshold``).
    k, degree, alpha, threshold
        Sparsity budget (miosr), library degree, ridge penalty (both), STLSQ threshold.

    Returns
    -------
    ndarray, shape (degree + 1,)
    """
    series = np.asarray(series, np.float64)
    return _regress(map_library(series[:-1], degree), series[1:, None], optimizer, k, alpha, threshold)[0]


def fit_flow(series: list[np.ndarray], dt: float, *, optimizer: str = "miosr", k: int = 7, degree: int = 2,
             alpha: float = 1e-6, threshold: float = 0.5, weak: bool = False) -> np.ndarray:
    """Fit an ODE ẋ = Ξ θ(x) to several trajectories with PySINDy (derivative or weak form).

    Parameters
    ----------
    series : list of ndarray, each (n_steps, d)
        Trajectories sampled every ``dt``; with ``weak=True`` all of the same length.
    dt : float
    optimizer : {"miosr", "stlsq"}
        needle's :class:`~needle.sindy.MIOSR` with ``target_sparsity=k`` over all
        targets, or PySINDy's STLSQ with ``threshold``.
    weak : bool, default False
        The integral (weak) formulation: PySINDy's ``WeakPDELibrary`` on the time grid.

    Returns
    -------
    ndarray, shape (d, n_terms)
        In the order of PySINDy's polynomial library (for d = 3 and degree 2: :data:`LORENZ_TERMS`).
    """
    import pysindy as ps

    from needle.sindy.miosr import MIOSR

    _check_optimizer(optimizer)
    if optimizer == "miosr":
        opt = MIOSR(target_sparsity=k, alpha=alpha)
    else:
        opt = ps.STLSQ(threshold=threshold, alpha=alpha)
    library = ps.PolynomialLibrary(degree=degree)
    if weak:
        lengths = {len(s) for s in series}
        if len(lengths) != 1:
            raise InputError("fit_flow(weak=True) needs trajectories of one length (one time grid).")
        t = np.arange(lengths.pop()) * dt
        library = ps.WeakPDELibrary(function_library=library, spatiotemporal_grid=t, K=min(100, 4 * len(t)),
                                    p=4, H_xt=[t[-1] / 4])
    model = ps.SINDy(optimizer=opt, feature_library=library)
    model.fit([np.asarray(s, np.float64) for s in series], t=dt)
    return np.asarray(model.coefficients())


def recovery(coef: np.ndarray, true: np.ndarray, *, tol: float = 1e-8) -> dict[str, float]:
    """Support recovery and coefficient error of ``coef`` against ``true`` (same shape).

    Returns
    -------
    dict
        ``tpr`` (true terms found / true terms), ``fpr`` (false terms / absent
        terms), ``exact`` (1.0 when the supports are equal) and ``coef_error``
        ‖coef − true‖ / ‖true‖ (Frobenius).
    """
    coef, true = np.asarray(coef, np.float64), np.asarray(true, np.float64)
    found, real = np.abs(coef) > tol, np.abs(true) > tol
    return {"tpr": float((found & real).sum() / max(real.sum(), 1)),
            "fpr": float((found & ~real).sum() / max((~real).sum(), 1)),
            "exact": float(np.array_equal(found, real)),
            "coef_error": float(np.linalg.norm(coef - true) / np.linalg.norm(true))}  # fmt: skip


def _check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}.")


def _regress(theta: np.ndarray, target: np.ndarray, optimizer: str, k: int, alpha: float,
             threshold: float) -> np.ndarray:
    """Coefficients, shape (n_targets, n_terms), of target (n, n_targets) on theta (n, n_terms)."""
    _check_optimizer(optimizer)
    if optimizer == "miosr":
        from needle.sindy import fit_miosr

        return fit_miosr(theta, target, target_sparsity=None, group_sparsity=[k] * target.shape[1],
                         alpha=alpha).coef
    import pysindy as ps

    return np.atleast_2d(ps.STLSQ(threshold=threshold, alpha=alpha).fit(theta, target).coef_)
