"""Selecting ``k`` neurons: selectors, and the registry of methods by name.

A *selector* turns training activations and targets into one support (a set of
neuron indices) per ``k`` of a grid: :meth:`Selector.select_path`. The
estimators, the sweep and the baselines share one fit template around it
(prefilter, standardise, select, refit; :mod:`needle.probing.template`), so a
method implements only this step. Selectors are objects
(``SparseProbe(selector=MeanDiff(normalization="standardized"))``) and names
in a registry (``SparseProbe(selector="mean_diff")``, ``needle probe
--methods mean_diff``). A new method is one class::

    from needle.probing.selection import Selector, SelectionPath, register_method

    @register_method("my_method")
    class MySelector(Selector):
        tasks = ("binary", "regression")          # the targets it can rank for
        diagnostics = ("my_statistic",)           # info keys exposed as SparseProbe.my_statistic_

        def select_path(self, X, y, ks, *, task="binary", random_state=None):
            ...
            return SelectionPath(ks=list(ks), supports=[...], info=[{"my_statistic": ...}, ...])

Whatever a method reports in ``info`` is kept with every result row
(``selection_info``); nothing else needs editing. Packages can also register
methods through the ``needle.selectors`` entry-point group (an entry point
naming a :class:`Selector` subclass; its name is the method's).

Built in: ``random``, ``mean_diff``, ``f_stat``, ``mutual_info``, ``l1``
(ranking methods: the support for ``k`` is the top ``k`` of one ranking, so
supports are nested), ``adaptive`` (adaptive thresholding) and ``osp``
(optimal sparse probing, :mod:`needle.probing.osp`).
"""

from __future__ import annotations

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
from needle.probing.preprocessing import NORMALIZATIONS, normalize_columns, standardization
from needle.probing.scoring import rank_by_score

__all__ = [
    "SelectionPath",
    "Selector",
    "RankingSelector",
    "ScoreSelector",
    "RandomSelector",
    "MeanDiff",
    "FStat",
    "MutualInfo",
    "L1",
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
    #: The tasks (target kinds) the method can select for.
    tasks: ClassVar[tuple[str, ...]] = ("binary",)
    #: Keys of ``info`` that :class:`~needle.probing.SparseProbe` exposes as ``<key>_`` attributes.
    diagnostics: ClassVar[tuple[str, ...]] = ()
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
        self, X: np.ndarray, y: np.ndarray, ks: Sequence[int], *, task: str = "binary",
        random_state: int | None = None,
    ) -> SelectionPath:
        """Choose a support for every ``k``.

        Parameters
        ----------
        X : ndarray of shape (n_examples, n_candidates)
            Training activations of the candidate neurons, in the units of the
            source (not standardised), or standardised when
            :attr:`standardized_input` is set. The candidates are the
            prefiltered neurons in decreasing order of mean difference.
        y : ndarray of shape (n_examples,)
            Targets of ``task``: labels 0/1 (both classes present), class codes, or values.
        ks : sequence of int
            Sizes, each between 1 and ``n_candidates``.
        task : {"binary", "multiclass", "regression"}, default "binary"
            One of :attr:`tasks`.
        random_state : int, optional
            Seed for stochastic methods.

        Returns
        -------
        SelectionPath
        """

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters this selector was built with (recorded with results; scikit-learn's ``clone`` uses it)."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self" and hasattr(self, name)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        # Two selectors of one class with the same hyper-parameters choose alike (scikit-learn's clone relies on it).
        return type(self) is type(other) and self.get_params() == other.get_params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(repr(self))


class RankingSelector(Selector):
    """A method that ranks all candidates once; the support for ``k`` is the top ``k``."""

    nested = True

    @abstractmethod
    def ranking(self, X: np.ndarray, y: np.ndarray, *, task: str = "binary",
                random_state: int | None = None) -> np.ndarray:
        """All candidate indices, most relevant first: ndarray of shape (n_candidates,)."""

    def select_path(self, X, y, ks, *, task="binary", random_state=None):
        order = np.asarray(self.ranking(X, y, task=task, random_state=random_state), dtype=np.int64)
        return SelectionPath(ks=[int(k) for k in ks], supports=[order[: int(k)].copy() for k in ks])


class ScoreSelector(RankingSelector):
    """Rank by a pure scoring function ``score(X, y, *, task, **params) -> scores`` (higher is better).

    Parameters
    ----------
    score_func : callable
        See :mod:`needle.probing.scoring`.
    normalization : {"raw", "standardized", "mean_abs"}, default "raw"
        The units the candidates are ranked in (:func:`needle.probing.preprocessing.normalize_columns`):
        the paper's raw activations, each neuron divided by its standard
        deviation, or by its mean absolute activation (sae-probes'). Scores
        that a rescaling of a column does not change (``f_stat``,
        ``mutual_info``) rank alike in all three.
    **params
        Passed to ``score_func``; ``random_state`` is passed too when the
        function accepts it.
    """

    tasks = ("binary", "multiclass", "regression")

    def __init__(self, score_func: Callable[..., np.ndarray], *, normalization: str = "raw", **params: Any):
        self.score_func = score_func
        self.normalization = normalization
        self.params = params

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = {"normalization": self.normalization, **self.params}
        if type(self) is ScoreSelector:  # subclasses fix their score function
            params["score_func"] = self.score_func
        return params

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return "random_state" in inspect.signature(self.score_func).parameters

    def scores(self, X, y, *, task="binary", random_state=None) -> np.ndarray:
        """The per-candidate scores, ndarray of shape (n_candidates,)."""
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                             f"got {self.normalization!r}.")
        kwargs = dict(self.params)
        if self.stochastic:
            kwargs["random_state"] = random_state
        return self.score_func(normalize_columns(X, self.normalization), y, task=task, **kwargs)

    def ranking(self, X, y, *, task="binary", random_state=None):
        return rank_by_score(self.scores(X, y, task=task, random_state=random_state))


class MeanDiff(ScoreSelector):
    """Rank by mean difference (:func:`~needle.probing.scoring.mean_diff_score`; regression: correlation)."""

    def __init__(self, *, normalization: str = "raw"):
        super().__init__(scoring.mean_diff_score, normalization=normalization)


class FStat(ScoreSelector):
    """Rank by the ANOVA F statistic (:func:`~needle.probing.scoring.f_stat_score`; regression: ``f_regression``)."""

    def __init__(self, *, normalization: str = "raw"):
        super().__init__(scoring.f_stat_score, normalization=normalization)


class MutualInfo(ScoreSelector):
    """Rank by the nearest-neighbour mutual information (:func:`~needle.probing.scoring.mutual_info_score`)."""

    def __init__(self, *, n_neighbors: int = 3, normalization: str = "raw"):
        super().__init__(scoring.mutual_info_score, normalization=normalization, n_neighbors=n_neighbors)


class L1(ScoreSelector):
    """Rank by |coefficient| of a dense L1 fit (:func:`~needle.probing.scoring.l1_score`; standardises itself)."""

    def __init__(self, *, C: float = 0.01, tol: float = 1e-9, max_iter: int = 200):
        super().__init__(scoring.l1_score, C=C, tol=tol, max_iter=max_iter)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return dict(self.params)


class RandomSelector(RankingSelector):
    """``k`` candidates drawn uniformly at random (the floor every method must beat).

    The ranking is one random permutation, so the supports of a path are
    nested. In the sweep the candidates are the prefiltered neurons, as in
    the paper's comparison of selection methods.
    """

    stochastic = True
    tasks = ("binary", "multiclass", "regression")

    def ranking(self, X, y, *, task="binary", random_state=None):
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

    Notes
    -----
    For a regression target the fits are the same schedule on the quadratic
    datafit (``C_m/2 * RSS`` with the target standardised to unit variance,
    scikit-learn's coordinate descent).
    """

    nested = True
    tasks = ("binary", "regression")

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

    def select_path(self, X, y, ks, *, task="binary", random_state=None):
        from sklearn.exceptions import ConvergenceWarning

        from needle.probing.datafits import datafit_for_task
        from needle.probing.penalties import ElasticNet
        from needle.probing.solvers import solve

        X = np.asarray(X)
        y = np.asarray(y).ravel()
        if task == "regression":
            y = (y - y.mean()) / y.std()
        datafit = datafit_for_task(task)
        options = {"tol": self.tol, "max_iter": self.max_iter} if task == "binary" else {}
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
                fit = solve(
                    Z if current.size == Z.shape[1] else Z[:, current],
                    y,
                    datafit,
                    ElasticNet(C=C, l1_ratio=l1_ratio),
                    coef_init=coef,
                    intercept_init=intercept,
                    **options,
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
#: The entry-point group through which installed packages add selection methods.
ENTRY_POINT_GROUP = "needle.selectors"
_entry_points_loaded = False


def register_method(name: str, factory: Callable[..., Selector] | None = None, *, overwrite: bool = False):
    """Make a selection method available by name.

    Parameters
    ----------
    name : str
        The method's name in ``SparseProbe(selector=...)``, ``sweep(methods=...)``
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


def _load_entry_points() -> None:
    """Register the methods that installed packages declare (once); a broken one is reported, not hidden."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in _REGISTRY:
            register_method(point.name, point.load())


def available_methods() -> list[str]:
    """Names of the selection methods that can be used now (those of installed packages included)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_selector(name: str | Selector, **params: Any) -> Selector:
    """The selector registered as ``name`` built with its hyper-parameters (or ``name`` itself, if a Selector).

    Raises
    ------
    InputError
        The name is not registered (the message lists those that are), or a
        parameter is not accepted by the method.
    """
    if isinstance(name, Selector):
        if params:
            raise InputError(f"parameters {sorted(params)} were given beside a selector object {name!r}; "
                             "set them on the object instead.")
        return name
    if not isinstance(name, str):
        raise InputError(f"a selection method is a name or a Selector object, got {name!r}.")
    if name not in _REGISTRY:
        _load_entry_points()
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
    selector = factory(**params)
    if not getattr(selector, "name", ""):
        selector.name = name
    return selector


def method_name(selector: str | Selector) -> str:
    """The name a selector's rows carry in the results table."""
    if isinstance(selector, str):
        return selector
    name = getattr(selector, "name", "") or type(selector).__name__
    return name


register_method("random", RandomSelector)
register_method("mean_diff", MeanDiff)
register_method("f_stat", FStat)
register_method("mutual_info", MutualInfo)
register_method("l1", L1)
register_method("adaptive", AdaptiveSelector)
