"""The one fit template every probe runs: prefilter → standardise → select → refit → back to input units.

:func:`prepare` does the per-(feature, layer) work that every method shares
(the mean-difference prefilter and the training standardisation), and
:func:`fit_path` runs one selector down a ``k`` grid on it: selection on the
candidates (raw, or standardised for selectors that ask), one batched refit of
the task's datafit with an L2 penalty on every support
(:func:`needle.probing.solvers.solve_path`), and the coefficients mapped back
to the units of the input. :class:`~needle.probing.SparseProbe`, the sweep's
:func:`~needle.probing.run_task` and both baselines are thin callers:

- a sparse probe: ``fit_path(prepare(X, y, prefilter=…), selector, ks)``;
- the dense baseline: every column in input order (``prepare(…, ordered=False)``
  and the :class:`AllColumns` selector), scikit-learn's L-BFGS on float32;
- the random-direction baseline: the standardised columns rotated by a random
  orthonormal matrix (``rotation=Q``) and the :class:`FirstColumns` selector.

The refit's ``C`` is fixed (the paper's), or chosen per support by
cross-validation over the training groups (:class:`CrossValidatedC`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from needle.errors import InputError
from needle.probing.datafits import datafit_for_task
from needle.probing.penalties import L2, check_C
from needle.probing.preprocessing import standardization
from needle.probing.scoring import mean_diff_score, rank_by_score
from needle.probing.selection import SelectionPath, Selector, method_name
from needle.probing.solvers import solve_path

__all__ = ["candidate_neurons", "method_candidates", "Prepared", "ProbePath", "CrossValidatedC", "AllColumns", "FirstColumns", "prepare", "fit_path",
           "check_task_support"]


@dataclass
class Prepared:
    """One (feature, layer)'s training data, prefiltered and standardised once for every method.

    Attributes
    ----------
    task : str
    y : ndarray of shape (n_examples,)
        Training targets (0/1, class codes or values).
    candidates : ndarray of shape (n_candidates,), int64
        Input columns kept, in decreasing order of mean difference (input order when not ``ordered``).
    X : ndarray of shape (n_examples, n_candidates)
        The candidates' raw training values.
    Z : ndarray of shape (n_examples, n_candidates), float64, Fortran order
        The candidates standardised by ``mean`` and ``scale``.
    mean, scale : ndarray of shape (n_candidates,)
    groups : ndarray of shape (n_examples,) or None
        Training groups (documents), for cross-validated C.
    n_classes : int
        Classes of a multiclass target (0 otherwise).
    """

    task: str
    y: np.ndarray
    candidates: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    groups: np.ndarray | None = None
    n_classes: int = 0


@dataclass
class ProbePath:
    """The probes of one selector down a ``k`` grid, in input units.

    Attributes
    ----------
    ks : list of int
    supports : list of ndarray of int64
        Columns of the design (candidates, or directions), most important first.
    neurons : list of ndarray of int64
        The same supports as input column ids.
    coef : list of ndarray
        In input units over ``neurons`` (shape (k,), or (n_classes, k)).
    intercept : list of float or ndarray of shape (n_classes,)
        In input units.
    design_coef, design_intercept : list
        The refit's own coefficients on the (standardised or rotated) design.
    info : list of dict
        What the selector reported per ``k``, plus the refit's ``C`` when chosen by cross-validation.
    n_iter : ndarray of shape (n_ks,), int
    converged : ndarray of shape (n_ks,), bool
    C : list of float
        The refit's inverse regularisation per probe.
    seconds : float
        Selection and refits, wall time.
    """

    ks: list[int]
    supports: list[np.ndarray]
    neurons: list[np.ndarray]
    coef: list[np.ndarray]
    intercept: list
    design_coef: list
    design_intercept: list
    info: list[dict[str, Any]]
    n_iter: np.ndarray
    converged: np.ndarray
    C: list[float]
    seconds: float


@dataclass(frozen=True)
class CrossValidatedC:
    """Choose the refit's ``C`` per support by cross-validation over the training groups.

    For each support, every ``C`` of ``Cs`` is fitted on ``n_folds - 1``
    folds of the training groups and scored on the held-out fold (grouped,
    and stratified by class where the task has classes, so no document is on
    both sides of a fold); the ``C`` with the best mean score is refitted on
    the whole training split. The held-out test split is never used. This is
    the peer practice (sae-probes chooses C by validation AUC on one held-out
    part) made steadier: every training group is validated on once.

    Parameters
    ----------
    Cs : sequence of float, default (1e-4, 1e-3, 1e-2, 1e-1, 1, 10)
    n_folds : int, default 5
    scoring : str, optional
        A metric of :mod:`needle.probing.metrics`; default ``roc_auc`` for
        binary, ``f1_macro`` for multiclass, ``r2`` for regression.
    """

    Cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    n_folds: int = 5
    scoring: str | None = None

    def __post_init__(self):
        if not self.Cs:
            raise InputError("CrossValidatedC needs at least one C in Cs.")
        object.__setattr__(self, "Cs", tuple(check_C(c, "each C of Cs") for c in self.Cs))
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise InputError(f"n_folds must be an integer >= 2, got {self.n_folds!r}.")

    def metric(self, task: str) -> str:
        return self.scoring or {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "r2"}[task]


class AllColumns(Selector):
    """The 'selection' of the dense baseline: every column, for every task."""

    tasks = ("binary", "multiclass", "regression")

    def select_path(self, X, y, ks, *, task="binary", random_state=None):
        return SelectionPath(ks=[int(k) for k in ks], supports=[np.arange(X.shape[1]) for _ in ks])


class FirstColumns(Selector):
    """The 'selection' of the random-direction baseline: the first ``k`` (random) directions."""

    tasks = ("binary", "multiclass", "regression")
    nested = True

    def select_path(self, X, y, ks, *, task="binary", random_state=None):
        return SelectionPath(ks=[int(k) for k in ks], supports=[np.arange(int(k)) for k in ks])


def check_task_support(selector: Selector, task: str, feature: str = "") -> None:
    """A one-line error when ``selector`` cannot select for ``task``."""
    if task not in getattr(selector, "tasks", ("binary",)):
        where = f" ({feature!r} is a {task} feature)" if feature else ""
        raise InputError(f"method {method_name(selector)!r} selects for {', '.join(selector.tasks)} targets only"
                         f"{where}; use one of the methods that supports {task}, e.g. mean_diff or f_stat.")


def candidate_neurons(X: np.ndarray, y: np.ndarray, prefilter: int | None, *, task: str = "binary") -> np.ndarray:
    """The columns selection may choose from: the top ``prefilter`` by mean difference.

    The paper prefilters to the 1024 neurons with the largest class-mean
    difference before any more expensive method (Appendix A.2.4); for other
    tasks the mean difference is its task form (:func:`~needle.probing.scoring.mean_diff_score`).
    The candidates are returned in decreasing order of that score (ties to
    the lower index), which is also the tie-break order of every ranking
    method (see :func:`needle.probing.scoring.rank_by_score`).

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
        Training activations.
    y : ndarray of shape (n_examples,)
        Targets of ``task``.
    prefilter : int or None
        How many to keep; None keeps all (still ordered).
    task : str, default "binary"

    Returns
    -------
    ndarray of shape (min(prefilter, n_columns),), int64
    """
    order = rank_by_score(mean_diff_score(X, y, task=task))
    return order if prefilter is None else order[:prefilter]


def method_candidates(candidates: np.ndarray, selector) -> np.ndarray:
    """The part of ``candidates`` a selection method looks at: the first ``selector.candidate_limit()``.

    ``candidates`` are in decreasing order of mean difference
    (:func:`candidate_neurons`), so a method with its own, smaller prefilter
    (osp: 50) gets the top ones.
    """
    limit = selector.candidate_limit()
    return candidates if limit is None else candidates[:limit]


def prepare(X: np.ndarray, y: np.ndarray, *, task: str = "binary", prefilter: int | None = None,
            ordered: bool = True, groups: np.ndarray | None = None) -> Prepared:
    """Prefilter and standardise the training data of one (feature, layer).

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
        Training activations (any float dtype).
    y : ndarray of shape (n_examples,)
    task : {"binary", "multiclass", "regression"}
    prefilter : int or None
        Keep the top ``prefilter`` columns by mean difference (None: all, still ordered).
    ordered : bool, default True
        False keeps every column in input order (the dense baseline).
    groups : ndarray of shape (n_examples,), optional
        Training groups, needed for a cross-validated C.

    Returns
    -------
    Prepared
    """
    candidates = candidate_neurons(X, y, prefilter, task=task) if ordered else np.arange(X.shape[1])
    # A gather of columns is column-major, like Z below, and its statistics are summed column by column;
    # every column in input order keeps the input's own layout (and so its summation order).
    X_cand = X[:, candidates] if ordered else X
    mean, scale = standardization(X_cand)
    # Fortran order: the batched refit gathers columns, which are then contiguous. Written in place, the
    # standardised copy is made once (the same values as np.asfortranarray((X_cand - mean) / scale)).
    Z = np.empty(X_cand.shape, dtype=np.float64, order="F")
    np.subtract(X_cand, mean, out=Z)
    Z /= scale
    n_classes = int(np.max(y)) + 1 if task == "multiclass" else 0
    return Prepared(task, np.asarray(y), candidates, X_cand, Z, mean, scale, groups, n_classes)


def _select(selector: Selector, inputs: np.ndarray, y: np.ndarray, ks: list[int], task: str, random_state):
    parameters = inspect.signature(selector.select_path).parameters
    if "task" in parameters:
        return selector.select_path(inputs, y, ks, task=task, random_state=random_state)
    # A selector written before tasks existed: binary only (checked by check_task_support).
    return selector.select_path(inputs, y, ks, random_state=random_state)


def fit_path(prepared: Prepared, selector: Selector, ks: Sequence[int], *, C: float | CrossValidatedC = 0.01,
             random_state: int | None = None, tol: float = 1e-8, max_iter: int = 100, solver: str = "default",
             rotation: np.ndarray | None = None, design_dtype: type = np.float64) -> ProbePath:
    """Select a support for every ``k`` and refit a probe on each.

    Parameters
    ----------
    prepared : Prepared
        From :func:`prepare`.
    selector : Selector
    ks : sequence of int
        Sizes; those above the number of columns the selector sees are dropped.
    C : float or CrossValidatedC, default 0.01
        Inverse L2 regularisation of the refits on standardised columns.
    random_state : int, optional
        Seed for stochastic selectors.
    tol, max_iter : float, int
        Refit tolerance and iterations.
    solver : str, default "default"
        The path solver of :func:`needle.probing.solvers.solve_path` (``lbfgs``: scikit-learn's, per support).
    rotation : ndarray of shape (n_candidates, n_directions), optional
        Refit on the standardised columns times this matrix (float32 product) instead.
    design_dtype : numpy dtype, default float64
        dtype of the design the refit sees (float32 for the dense baseline).

    Returns
    -------
    ProbePath
    """
    task = prepared.task
    check_task_support(selector, task)
    selector = selector.with_refit_C(C) if hasattr(selector, "with_refit_C") else selector  # osp.gamma="refit"
    start = time.perf_counter()
    if rotation is None:
        n_columns = method_candidates(prepared.candidates, selector).size
        inputs = prepared.Z[:, :n_columns] if selector.standardized_input else prepared.X[:, :n_columns]
        # A narrower copy is row-major, as the dense baseline's L-BFGS always saw it (its sums run in that order).
        design = prepared.Z if design_dtype == np.float64 else np.ascontiguousarray(prepared.Z, dtype=design_dtype)
    else:
        Z32 = np.asarray(prepared.Z, dtype=np.float32)
        design = np.asfortranarray(Z32 @ rotation.astype(np.float32), dtype=np.float64)
        n_columns = design.shape[1]
        inputs = design
    ks = [int(k) for k in ks if k <= n_columns]
    path = _select(selector, inputs, prepared.y, ks, task, random_state)
    datafit = datafit_for_task(task)
    options = {"tol": tol, "max_iter": max_iter}
    if task == "multiclass":
        options["n_classes"] = prepared.n_classes
    if isinstance(C, CrossValidatedC):
        Cs = [_cross_validate_C(design, prepared, support, C, options) for support in path.supports]
        fits = [solve_path(design, prepared.y, [support], datafit, L2(c), solver=solver, **options)
                for support, c in zip(path.supports, Cs)]
        refit_coef = [f.coef[0] for f in fits]
        refit_intercept = [f.intercept[0] for f in fits]
        n_iter = np.array([f.n_iter[0] for f in fits], dtype=np.int64)
        converged = np.array([f.converged[0] for f in fits], dtype=bool)
        info = [dict(i, C=c) for i, c in zip(path.info, Cs)]
    else:
        C = check_C(C)
        Cs = [C] * len(path.supports)
        fit = solve_path(design, prepared.y, path.supports, datafit, L2(C), solver=solver, **options)
        refit_coef, refit_intercept, n_iter, converged = fit.coef, fit.intercept, fit.n_iter, fit.converged
        info = path.info
    neurons, coef, intercept = [], [], []
    for support, w, b in zip(path.supports, refit_coef, refit_intercept):
        if rotation is None:
            neurons.append(prepared.candidates[support])
            coef.append(w / prepared.scale[support])
            ratio = prepared.mean[support] / prepared.scale[support]
            intercept.append(b - np.sum(w * ratio) if np.ndim(w) == 1 else b - (w * ratio).sum(axis=-1))
        else:
            full = rotation[:, : len(support)] @ np.asarray(w).T  # (n_candidates,) or (n_candidates, n_classes)
            neurons.append(prepared.candidates.copy())
            coef.append((full.T / prepared.scale) if full.ndim == 2 else full / prepared.scale)
            ratio = prepared.mean / prepared.scale
            intercept.append(b - (full.T @ ratio if full.ndim == 2 else np.sum(full * ratio)))
    return ProbePath(ks=list(path.ks), supports=list(path.supports), neurons=neurons, coef=coef, intercept=intercept,
                     design_coef=list(refit_coef), design_intercept=list(refit_intercept), info=info,
                     n_iter=np.asarray(n_iter), converged=np.asarray(converged), C=Cs,
                     seconds=time.perf_counter() - start)


def _folds(prepared: Prepared, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = prepared.groups if prepared.groups is not None else np.arange(prepared.y.size)
    n_groups = np.unique(groups).size
    if n_groups < n_folds:
        raise InputError(f"cross-validating C needs at least {n_folds} training groups, found {n_groups}; "
                         "lower n_folds or pass a fixed C.")
    if prepared.task == "regression":
        return list(GroupKFold(n_splits=n_folds).split(prepared.Z, prepared.y, groups))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=0)
    return list(splitter.split(prepared.Z, prepared.y, groups))


def _cross_validate_C(design, prepared: Prepared, support, cv: CrossValidatedC, options) -> float:
    from needle.probing.metrics import metrics_batch

    metric = cv.metric(prepared.task)
    datafit = datafit_for_task(prepared.task)
    scores = np.zeros(len(cv.Cs))
    counted = np.zeros(len(cv.Cs))
    for train, valid in _folds(prepared, cv.n_folds):
        y_train, y_valid = prepared.y[train], prepared.y[valid]
        if prepared.task != "regression" and (np.unique(y_train).size < 2 or np.unique(y_valid).size < 2):
            continue  # a fold without both classes says nothing about C
        D_train = np.asfortranarray(design[train])
        D_valid = design[valid][:, support]
        for j, c in enumerate(cv.Cs):
            fit = solve_path(D_train, y_train, [support], datafit, L2(c), **options)
            valid_scores = D_valid @ np.asarray(fit.coef[0]).T + fit.intercept[0]
            value = metrics_batch(prepared.task, y_valid, valid_scores[None])[metric][0]
            if np.isfinite(value):
                scores[j] += value
                counted[j] += 1
    if not counted.any():
        raise InputError("no cross-validation fold had both classes on both sides; pass a fixed C.")
    mean = np.where(counted > 0, scores / np.maximum(counted, 1), -np.inf)
    # Ties go to the smallest C (the strongest regularisation), the conservative choice.
    return float(cv.Cs[int(np.argmax(mean))])
