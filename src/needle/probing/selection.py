"""Selecting ``k`` neurons: selectors, and the registry of methods by name.

A *selector* turns training activations and labels into one support (a set of
neuron indices) per ``k`` of a grid: :meth:`Selector.select_path`. The
estimators and the sweep share one template around it (prefilter,
standardise, select, refit; see :mod:`needle.probing.sweep`), so a method
implements only this step. Methods are looked up by name in a registry; a new
one is added by registering a selector class::

    from needle.probing.selection import Selector, SelectionPath, register_method

    @register_method("my_method")
    class MySelector(Selector):
        def select_path(self, X, y, ks, *, random_state=None):
            ...
            return SelectionPath(ks=list(ks), supports=[...])

Built in: ``random``, ``mean_diff``, ``f_stat``, ``mutual_info``, ``l1``
(ranking methods: the support for ``k`` is the top ``k`` of one ranking, so
supports are nested) and ``adaptive`` (adaptive thresholding). ``osp``
(optimal sparse probing) lives in ``needle.probing.osp`` and registers itself
when first asked for.
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from needle.errors import InputError
from needle.probing import scoring
from needle.probing.fitting import standardization
from needle.probing.scoring import rank_by_score

__all__ = [
    "SelectionPath",
    "Selector",
    "RankingSelector",
    "ScoreSelector",
    "RandomSelector",
    "AdaptiveSelector",
    "register_method",
    "get_selector",
    "available_methods",
]


@dataclass
class SelectionPath:
    """The supports a selector chose, one per ``k``.

    Attributes
    ----------
    ks : list of int
        The sizes, in the order the caller asked for them.
    supports : list of ndarray of int64
        ``supports[j]`` holds ``ks[j]`` distinct column indices of the ``X``
        given to the selector, most important first where the method has an
        order.
    info : list of dict
        Per-``k`` facts worth keeping with the result (JSON-serialisable),
        e.g. the regularisation of the fit that chose the support, or an
        optimality certificate. Empty dicts by default.
    """

    ks: list[int]
    supports: list[np.ndarray]
    info: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        if not self.info:
            self.info = [{} for _ in self.ks]
        if not (len(self.ks) == len(self.supports) == len(self.info)):
            raise ValueError("a SelectionPath needs one support and one info per k.")


class Selector(ABC):
    """Base class of selection methods.

    Subclasses set :attr:`name` (done by :func:`register_method`), take their
    hyper-parameters as keyword arguments of ``__init__`` (stored, not
    validated there) and implement :meth:`select_path`.
    """

    name: ClassVar[str] = ""
    #: Whether the method's supports for increasing ``k`` are always nested.
    nested: ClassVar[bool] = False
    #: Whether the method uses ``random_state``.
    stochastic: ClassVar[bool] = False
    #: Whether the sweep must pass standardised candidates (training mean 0, std 1)
    #: instead of raw activations; such a method never rescales its input itself.
    standardized_input: ClassVar[bool] = False

    def candidate_limit(self) -> int | None:
        """How many of the candidates (the top ones by mean difference) the method looks at; None: all."""
        return None

    @abstractmethod
    def select_path(
        self, X: np.ndarray, y: np.ndarray, ks: Sequence[int], *, random_state: int | None = None
    ) -> SelectionPath:
        """Choose a support for every ``k``.

        Parameters
        ----------
        X : ndarray of shape (n_examples, n_candidates)
            Training activations of the candidate neurons, in the units of the
            source (not standardised). In the sweep, the candidates are the
            prefiltered neurons in decreasing order of mean difference.
        y : ndarray of shape (n_examples,)
            Labels 0/1, both classes present.
        ks : sequence of int
            Sizes, each between 1 and ``n_candidates``.
        random_state : int, optional
            Seed for stochastic methods.

        Returns
        -------
        SelectionPath
        """

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters this selector was built with (recorded with results)."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self" and hasattr(self, name)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class RankingSelector(Selector):
    """A method that ranks all candidates once; the support for ``k`` is the top ``k``."""

    nested = True

    @abstractmethod
    def ranking(self, X: np.ndarray, y: np.ndarray, *, random_state: int | None = None) -> np.ndarray:
        """All candidate indices, most relevant first: ndarray of shape (n_candidates,)."""

    def select_path(self, X, y, ks, *, random_state=None):
        order = np.asarray(self.ranking(X, y, random_state=random_state), dtype=np.int64)
        return SelectionPath(ks=[int(k) for k in ks], supports=[order[: int(k)].copy() for k in ks])


class ScoreSelector(RankingSelector):
    """Rank by a pure scoring function ``score(X, y, **params) -> scores`` (higher is better).

    Parameters
    ----------
    score_func : callable
        See :mod:`needle.probing.scoring`.
    **params
        Passed to ``score_func``; ``random_state`` is passed too when the
        function accepts it.
    """

    def __init__(self, score_func: Callable[..., np.ndarray], **params: Any):
        self.score_func = score_func
        self.params = params

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return "random_state" in inspect.signature(self.score_func).parameters

    def scores(self, X, y, *, random_state=None) -> np.ndarray:
        """The per-candidate scores, ndarray of shape (n_candidates,)."""
        kwargs = dict(self.params)
        if self.stochastic:
            kwargs["random_state"] = random_state
        return self.score_func(X, y, **kwargs)

    def ranking(self, X, y, *, random_state=None):
        return rank_by_score(self.scores(X, y, random_state=random_state))


class RandomSelector(RankingSelector):
    """``k`` candidates drawn uniformly at random (the floor every method must beat).

    The ranking is one random permutation, so the supports of a path are
    nested. In the sweep the candidates are the prefiltered neurons, as in
    the paper's comparison of selection methods.
    """

    stochastic = True

    def ranking(self, X, y, *, random_state=None):
        return np.random.default_rng(random_state).permutation(np.asarray(X).shape[1]).astype(np.int64)


class AdaptiveSelector(Selector):
    r"""Adaptive thresholding: elastic-net fits down a decreasing schedule of ``k``.

    Starting from all candidates, fit a balanced elastic-net logistic
    regression, keep the ``k_1`` neurons with the largest absolute
    coefficients, refit on them, keep the ``k_2 < k_1`` largest, and so on
    down the grid (paper, Section 2.3.2 and Appendix A.2.3). One pass gives a
    nested support for every ``k``. Exact ties in ``|coef|`` (typically
    zeros) keep the order of the previous step, which starts as the column
    order.

    Each fit on ``m`` neurons minimises scikit-learn's elastic-net logistic
    objective::

        C_m * sum_i s_i * logloss_i + (1 - r_m) / 2 * ||w||_2^2 + r_m * ||w||_1

    with balanced weights ``s_i``, ``C_m = C_scale * m`` and
    ``r_m = clip(exp(-m / l1_ratio_scale), *l1_ratio_bounds)`` — the schedule
    of the paper's released code (``C = k / 20``, ``l1_ratio =
    clip(e^{-k/20}, 0.1, 0.9)``): large fits nearly ridge and weakly
    regularised, the last small ones mostly L1. Like that code, the fits see
    every neuron scaled to standard deviation ``feature_std`` (0.1: the code
    divided activations by ten times their standard deviation), which is
    what makes this schedule's regularisation as strong as the paper's.
    Each fit is warm-started from the previous one and solved to a KKT
    tolerance by :func:`needle.probing.fitting.fit_elastic_net_logistic`
    (deterministic; on a 1400 × 1024 first fit it took 0.7 s where
    scikit-learn's SAGA, at the paper code's settings, took 7.7 s and
    stopped 1.6% short of the optimum).

    Parameters
    ----------
    C_scale : float, default 0.05
    l1_ratio_scale : float, default 20.0
    l1_ratio_bounds : tuple of float, default (0.1, 0.9)
    feature_std : float, default 0.1
    tol : float, default 1e-9
        KKT tolerance of each fit. Tight, because the ranking of near-tied
        coefficients at the k-th place decides the support.
    max_iter : int, default 200
        Newton iterations per fit.
    """

    nested = True

    def __init__(
        self,
        *,
        C_scale: float = 0.05,
        l1_ratio_scale: float = 20.0,
        l1_ratio_bounds: tuple[float, float] = (0.1, 0.9),
        feature_std: float = 0.1,
        tol: float = 1e-9,
        max_iter: int = 200,
    ):
        self.C_scale = C_scale
        self.l1_ratio_scale = l1_ratio_scale
        self.l1_ratio_bounds = l1_ratio_bounds
        self.feature_std = feature_std
        self.tol = tol
        self.max_iter = max_iter

    def schedule(self, m: int) -> tuple[float, float]:
        """``(C, l1_ratio)`` of the fit on ``m`` neurons."""
        lo, hi = self.l1_ratio_bounds
        return self.C_scale * m, float(np.clip(math.exp(-m / self.l1_ratio_scale), lo, hi))

    def select_path(self, X, y, ks, *, random_state=None):
        from sklearn.exceptions import ConvergenceWarning

        from needle.probing.fitting import fit_elastic_net_logistic

        X = np.asarray(X)
        y = np.asarray(y).ravel()
        mean, scale = standardization(X)
        # Column-major, so that the solver's transpose and the column subsets below are contiguous copies.
        Z = np.empty(X.shape, dtype=np.float64, order="F")
        np.subtract(X, mean, out=Z)
        Z *= self.feature_std / scale
        ks = [int(k) for k in ks]
        current = np.arange(X.shape[1])  # candidate columns, in current rank order
        coef = None  # coefficients of `current` from the last fit, for the warm start
        intercept = 0.0
        chosen: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
        for k in sorted(set(ks), reverse=True):
            if k >= current.size:
                chosen[k] = (current.copy(), {})
                continue
            C, l1_ratio = self.schedule(current.size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit = fit_elastic_net_logistic(
                    Z if current.size == Z.shape[1] else Z[:, current],
                    y,
                    C=C,
                    l1_ratio=l1_ratio,
                    coef_init=coef,
                    intercept_init=intercept,
                    tol=self.tol,
                    max_iter=self.max_iter,
                )
            magnitude = np.abs(fit.coef)
            # Stable: ties keep the previous rank order (see rank_by_score).
            keep = rank_by_score(magnitude)[:k]
            info = {
                "fit_on": int(current.size),
                "C": C,
                "l1_ratio": l1_ratio,
                "n_iter": int(fit.n_iter),
                "converged": bool(fit.converged),
                "nonzero": int(np.count_nonzero(magnitude)),
            }
            current = current[keep]
            coef = fit.coef[keep]
            intercept = fit.intercept
            chosen[k] = (current.copy(), info)
        return SelectionPath(ks=ks, supports=[chosen[k][0] for k in ks], info=[dict(chosen[k][1]) for k in ks])


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Selector]] = {}
#: Methods implemented in modules that register themselves when imported.
_PLUGINS: dict[str, str] = {"osp": "needle.probing.osp"}


def register_method(name: str, factory: Callable[..., Selector] | None = None, *, overwrite: bool = False):
    """Make a selection method available by name.

    Parameters
    ----------
    name : str
        The method's name in ``SparseProbe(method=...)``, ``sweep(methods=...)``
        and the results table.
    factory : callable, optional
        A :class:`Selector` subclass, or any callable returning a selector,
        called with the method's keyword parameters. Omit it to use
        ``register_method`` as a class decorator.
    overwrite : bool, default False
        Replace an existing method of that name.

    Returns
    -------
    The factory (so that it works as a decorator).
    """

    def add(factory):
        if name in _REGISTRY and not overwrite:
            raise InputError(f"a selection method named {name!r} is already registered.")
        if name in ("dense", "random_directions"):
            raise InputError(f"{name!r} is reserved for a baseline of the results table.")
        _REGISTRY[name] = factory
        if isinstance(factory, type) and issubclass(factory, Selector) and not factory.__dict__.get("name"):
            factory.name = name
        return factory

    return add if factory is None else add(factory)


def available_methods() -> list[str]:
    """Names of the selection methods that can be used now (plugins included once importable)."""
    for name, module in _PLUGINS.items():
        if name not in _REGISTRY:
            _load_plugin(name, module)
    return sorted(_REGISTRY)


def _load_plugin(name: str, module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the plugin exists but one of *its* imports is missing: say so
            raise
    # Importing registers the method; a missing plugin module leaves it unknown.


def get_selector(name: str, **params: Any) -> Selector:
    """Build the selector registered as ``name`` with its hyper-parameters.

    Raises
    ------
    InputError
        The name is not registered (the message lists those that are), or a
        parameter is not accepted by the method.
    """
    if name not in _REGISTRY and name in _PLUGINS:
        _load_plugin(name, _PLUGINS[name])
    if name not in _REGISTRY:
        raise InputError(f"unknown selection method {name!r}; available methods: {', '.join(available_methods())}.")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(factory).parameters if p not in ("self", "args", "kwargs")]
        raise InputError(
            f"method {name!r} does not take parameters {sorted(params)} ({exc}); it accepts: {accepted or 'none'}."
        ) from None
    return factory(**params)


def _score_method(score_func):
    """A registry factory for a ranking by ``score_func`` with its keyword parameters."""

    def factory(**params):
        return ScoreSelector(score_func, **params)

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p for p in inspect.signature(score_func).parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "random_state"]
    )
    factory.__name__ = f"{score_func.__name__}_selector"
    return factory


register_method("random", RandomSelector)
register_method("mean_diff", _score_method(scoring.mean_diff_score))
register_method("f_stat", _score_method(scoring.f_stat_score))
register_method("mutual_info", _score_method(scoring.mutual_info_score))
register_method("l1", _score_method(scoring.l1_score))
register_method("adaptive", AdaptiveSelector)
