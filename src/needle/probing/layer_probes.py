"""Whole-layer regression probes: ridge with leave-one-out alpha, PCA-k ridge, a one-hidden-layer MLP.

These probes read every column of a layer (no neuron selection, no
prefilter) and choose their own regularisation, so they do not run the
select → refit template; they are registered as methods all the same
(``needle probe --methods ridge,pca,mlp``; :func:`needle.probing.get_selector`),
and the sweep hands a (feature, layer)'s raw train/test activations to
:meth:`LayerProbe.result_rows`. A new one is one subclass here::

    @register_method("my_probe")
    class MyProbe(LayerProbe):
        def fit_layer(self, X_train, y_train, ks, *, random_state=None):
            ...
            return [LayerFit(k=..., predict=..., coef=..., intercept=..., info={...})]

- ``ridge`` — the paper's probe (§4.2.2): ridge on the standardised layer,
  alpha chosen by exact leave-one-out error over a grid, all alphas from one
  decomposition (:func:`needle.probing.ridge.ridge_loo`); one row, ``k`` = width.
- ``pca`` — ridge on the ``k`` leading principal components of the training
  activations for every ``k`` of the grid (§4.4.2), from the same kind of
  single decomposition (:func:`needle.probing.ridge.ridge_loo_pca`).
- ``mlp`` — the linearity check of Table 4.2: ``W2 ReLU(W1 x + b1) + b2``
  with 256 hidden units (scikit-learn's ``MLPRegressor``, Adam, early
  stopping on 10 % of the training split when it has 50 examples or more), on the standardised layer with
  a standardised target; its rows hold no coefficients.

Rows of linear probes keep their coefficients in input units over every
neuron, like the dense baseline's; ``selection_info`` records the chosen
alpha (and whether it lies on the edge of the grid).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from needle.errors import InputError
from needle.probing.preprocessing import standardization
from needle.probing.ridge import DEFAULT_ALPHAS, ridge_loo, ridge_loo_pca, spectrum
from needle.probing.selection import Selector, register_method

__all__ = ["LayerFit", "LayerProbe", "RidgeProbe", "PCAProbe", "MLPProbe", "DEFAULT_PCA_KS"]

#: The numbers of principal components of §4.4.2 (k = 2 … 100) used when a sweep's k grid is the default.
DEFAULT_PCA_KS = (2, 3, 5, 10, 20, 50, 100)


@dataclass
class LayerFit:
    """One fitted whole-layer probe.

    Attributes
    ----------
    k : int
        What the result row's ``k`` is (width, or number of components).
    predict : callable
        Maps raw activations of shape (n, width) to predictions of shape (n,).
    coef : ndarray of shape (width,) or (0,)
        Input-unit coefficients over every column (empty for a nonlinear probe).
    intercept : float
    info : dict
        Kept in the row's ``selection_info``.
    """

    k: int
    predict: Callable[[np.ndarray], np.ndarray]
    coef: np.ndarray
    intercept: float
    info: dict[str, Any] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = True


class LayerProbe(Selector):
    """Base of the whole-layer probes: registered like selection methods, but they fit the layer themselves."""

    tasks = ("regression",)
    #: Tells the sweep to call :meth:`result_rows` instead of the select → refit template.
    fits_layer = True

    def select_path(self, X, y, ks, *, task="binary", random_state=None):
        raise InputError(f"{self.name!r} is a whole-layer probe, not a neuron selection method; use it in a sweep "
                         "(needle probe --methods ...) or call fit_layer.")

    def row_ks(self, ks: Sequence[int], width: int) -> list[int]:
        """The ``k`` of the rows this probe writes for a layer of ``width`` columns."""
        return [int(width)]

    def fit_layer(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int], *,
                  random_state: int | None = None) -> list[LayerFit]:
        """Fit on raw training activations (n, width) and targets (n,); one :class:`LayerFit` per row."""
        raise NotImplementedError

    def result_rows(self, common: dict[str, Any], X_train, y_train, X_test, y_test, ks, *,
                    random_state: int | None = None) -> list[dict[str, Any]]:
        """The sweep's result rows of this probe for one (feature, layer) (the schema of the results table)."""
        from needle.probing.metrics import metrics_batch
        from needle.probing.sweep import _row  # the sweep's one row builder (imported here: sweep imports us)

        start = time.perf_counter()
        fits = self.fit_layer(np.asarray(X_train), np.asarray(y_train, np.float64), ks, random_state=random_state)
        seconds = time.perf_counter() - start
        if not fits:
            return []
        predictions = np.stack([f.predict(np.asarray(X_test)) for f in fits])
        metrics = metrics_batch("regression", y_test, predictions)
        path = SimpleNamespace(ks=[f.k for f in fits], converged=[f.converged for f in fits],
                               n_iter=[f.n_iter for f in fits], seconds=seconds)
        width = np.asarray(X_train).shape[1]
        rows = []
        for j, fit in enumerate(fits):
            neurons = np.arange(width) if fit.coef.size else np.zeros(0, np.int64)
            rows.append(_row(common, self.name, path, j, metrics, neurons, fit.coef, fit.intercept, fit.info,
                             certificate=False))
        return rows


def _alpha_info(alphas: np.ndarray, index: int) -> dict[str, Any]:
    return {"alpha": float(alphas[index]), "alpha_at_grid_edge": bool(index in (0, alphas.size - 1)),
            "selection": "leave-one-out"}


def _standardised(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    mean, scale = standardization(X)
    return (X - mean) / scale, mean, scale


def _linear(coef_z: np.ndarray, intercept_z: float, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients on standardised columns mapped to input units."""
    coef = coef_z / scale
    return coef, float(intercept_z - np.sum(coef * mean))


def _predictor(coef: np.ndarray, intercept: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda X: np.asarray(X, np.float64) @ coef + intercept


@register_method("ridge")
class RidgeProbe(LayerProbe):
    """The paper's ridge probe: every column, alpha by exact leave-one-out error (one decomposition).

    Parameters
    ----------
    alphas : sequence of float, default :data:`needle.probing.ridge.DEFAULT_ALPHAS`
        The grid, on standardised columns.
    """

    def __init__(self, *, alphas: Sequence[float] = DEFAULT_ALPHAS):
        self.alphas = alphas

    def fit_layer(self, X_train, y_train, ks, *, random_state=None):
        Z, mean, scale = _standardised(X_train)
        path = ridge_loo(Z, y_train, self.alphas)
        coef, intercept = _linear(path.coef[:, 0], path.intercept[0], mean, scale)
        info = _alpha_info(path.alphas, int(path.best[0]))
        return [LayerFit(k=X_train.shape[1], predict=_predictor(coef, intercept), coef=coef, intercept=intercept,
                         info=info)]


@register_method("pca")
class PCAProbe(LayerProbe):
    """Ridge on the ``k`` leading principal components of the (standardised) training activations (§4.4.2).

    Parameters
    ----------
    ks : sequence of int, optional
        Numbers of components; default the sweep's k grid.
    alphas : sequence of float
    """

    def __init__(self, *, ks: Sequence[int] | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS):
        self.ks = ks
        self.alphas = alphas

    def row_ks(self, ks, width):
        return [int(k) for k in (self.ks or ks) if int(k) <= width]

    def fit_layer(self, X_train, y_train, ks, *, random_state=None):
        Z, mean, scale = _standardised(X_train)
        spec = spectrum(Z)
        paths = ridge_loo_pca(spec, y_train, self.row_ks(ks, X_train.shape[1]), self.alphas)
        fits = []
        for k, path in paths.items():
            coef, intercept = _linear(path.coef[:, 0], path.intercept[0], mean, scale)
            info = dict(_alpha_info(path.alphas, int(path.best[0])), components=k,
                        explained_variance=float(np.sum(spec.s[:k] ** 2) / np.sum(spec.s**2)))
            fits.append(LayerFit(k=k, predict=_predictor(coef, intercept), coef=coef, intercept=intercept, info=info))
        return fits


@register_method("mlp")
class MLPProbe(LayerProbe):
    """A one-hidden-layer ReLU MLP probe (Table 4.2's nonlinear probe), scikit-learn's ``MLPRegressor``.

    Parameters
    ----------
    hidden : int, default 256
    alpha : float, default 1e-4
        L2 penalty of the weights.
    max_iter : int, default 200
    """

    def __init__(self, *, hidden: int = 256, alpha: float = 1e-4, max_iter: int = 200):
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter

    stochastic = True

    def fit_layer(self, X_train, y_train, ks, *, random_state=None):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        if isinstance(self.hidden, bool) or not isinstance(self.hidden, (int, np.integer)) or self.hidden < 1:
            raise InputError(f"mlp: hidden must be a positive integer, not {self.hidden!r}.")
        Z, mean, scale = _standardised(X_train)
        y_mean, y_scale = float(np.mean(y_train)), float(np.std(y_train)) or 1.0
        # Early stopping holds out 10 % of the training split; below 50 examples that is too few to say anything.
        early = len(Z) >= 50
        model = MLPRegressor(hidden_layer_sizes=(int(self.hidden),), alpha=float(self.alpha), max_iter=int(self.max_iter),
                             early_stopping=early, random_state=None if random_state is None else int(random_state) % 2**32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z, (np.asarray(y_train) - y_mean) / y_scale)

        def predict(X):
            return model.predict((np.asarray(X, np.float64) - mean) / scale) * y_scale + y_mean

        converged = model.n_iter_ < int(self.max_iter)
        info = {"hidden": int(self.hidden), "alpha": float(self.alpha), "early_stopping": early,
                **({"best_validation_r2": float(model.best_validation_score_)} if early else {})}
        return [LayerFit(k=X_train.shape[1], predict=predict, coef=np.zeros(0), intercept=float("nan"), info=info,
                         n_iter=int(model.n_iter_), converged=bool(converged))]
