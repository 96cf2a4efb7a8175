"""scikit-learn estimators: the sparse probe, its two baselines, and the sparse regression probe.

The classifiers are logistic-regression probes (binary, or multinomial for
more than two classes) with balanced class weights and an L2 penalty of
strength ``1 / C`` on *standardised* inputs (each input column centred and
scaled by its training mean and standard deviation, which the probes do
themselves); they differ in what the logistic regression sees:

- :class:`SparseProbe` — ``k`` neurons chosen by a selector;
- :class:`DenseProbe` — every neuron;
- :class:`RandomDirectionsProbe` — ``k`` random orthonormal directions;

and :class:`SparseRegressionProbe` is the ridge analogue of
:class:`SparseProbe` for a continuous target. All four are thin callers of
the one fit template (:mod:`needle.probing.template`), the same code the
sweep runs.

The learned linear function is reported in the units of the input: for an
input ``X``, ``decision_function(X) = X @ coef_.ravel() + intercept_``.

The default ``C=0.01`` reproduces the regularisation of the paper's code,
which fit scikit-learn's default ``C=1`` on activations divided by ten times
their standard deviation: scaling the inputs by 1/10 multiplies the
coefficients by 10 and so the penalty by 100.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, column_or_1d, validate_data

from needle.errors import InputError
from needle.probing.penalties import check_C

__all__ = ["SparseProbe", "DenseProbe", "RandomDirectionsProbe", "SparseRegressionProbe", "random_orthonormal"]

#: The default inverse regularisation strength on standardised inputs (see the module docstring).
DEFAULT_C = 0.01


def random_orthonormal(n_features: int, k: int, random_state: int | None = None) -> np.ndarray:
    """A random ``n_features × k`` matrix with orthonormal columns (Haar-distributed).

    The QR factorisation of a Gaussian matrix, with signs fixed so that ``R``
    has a positive diagonal. The Gaussian entries are drawn row by row of its
    transpose, so the first ``j`` columns of ``random_orthonormal(d, k, s)``
    equal ``random_orthonormal(d, j, s)`` for every ``j <= k``: a sweep draws
    the largest ``k`` once and uses nested prefixes.

    Parameters
    ----------
    n_features : int
    k : int
        At most ``n_features``.
    random_state : int, optional

    Returns
    -------
    ndarray of shape (n_features, k), float64
    """
    if not 1 <= k <= n_features:
        raise InputError(f"need 1 <= k <= n_features for random directions, got k={k}, n_features={n_features}.")
    gaussian = np.random.default_rng(random_state).standard_normal((k, n_features)).T
    q, r = np.linalg.qr(gaussian)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _seed(random_state) -> int | None:
    """An int seed (or None) from scikit-learn's ``random_state`` conventions."""
    if random_state is None or isinstance(random_state, numbers.Integral):
        return None if random_state is None else int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _check_positive(name, value, *, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if not ok or isinstance(value, bool) or not np.isfinite(value) or value < (1 if integer else 0) or value == 0:
        kind = "an integer >= 1" if integer else "a positive finite number"
        raise InputError(f"{name} must be {kind}{' or None' if allow_none else ''}, got {value!r}.")



class _LinearProbe(BaseEstimator):
    """What the probes share: validation, the template call, and the linear function in input units."""

    _task_kind = "classification"

    def _validate_xy(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2,
                             y_numeric=self._task_kind == "regression")
        y = column_or_1d(y, warn=True)
        check_C(self.C)
        if self._task_kind == "regression":
            y = np.asarray(y, dtype=np.float64)
            if np.ptp(y) == 0:
                raise ValueError(f"{type(self).__name__} needs a non-constant target.")
            return X, y, "regression"
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs two classes to train; y has only one class: {self.classes_[0]!r}."
            )
        if self.classes_.size == 2:
            return X, codes.astype(np.int8), "binary"
        return X, codes.astype(np.int64), "multiclass"

    def _fit_template(self, X, y, task, selector, k, *, rotation=None, solver="default", tol, max_iter):
        """The template on every column in input order (the baselines)."""
        from needle.probing.template import fit_path, prepare

        prepared = prepare(X, y, task=task, prefilter=None, ordered=False)
        path = fit_path(prepared, selector, [k], C=self.C, random_state=_seed(getattr(self, "random_state", None)),
                        tol=tol, max_iter=max_iter, solver=solver, rotation=rotation)
        return prepared, path

    def _set_linear(self, n_features, neurons, coef, intercept):
        """Store a probe given in input units over ``neurons`` as dense ``coef_`` and ``intercept_``."""
        coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        full = np.zeros((coef.shape[0], n_features))
        full[:, neurons] = coef
        self.coef_ = full
        self.intercept_ = np.atleast_1d(np.asarray(intercept, dtype=np.float64)).copy()

    def decision_function(self, X):
        """Decision scores.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_examples,)
            Binary probes and regressors: positive means ``classes_[1]`` (the prediction, for a regressor).
        ndarray of shape (n_examples, n_classes)
            Multiclass probes: one score per class of ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores


class _ProbeClassifier(ClassifierMixin, _LinearProbe):
    def predict(self, X):
        """Predicted classes, ndarray of shape (n_examples,)."""
        scores = self.decision_function(X)  # checks fitted-ness before classes_ is touched
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n_examples, n_classes) in the order of ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, ndarray of shape (n_examples, n_classes)."""
        return np.log(self.predict_proba(X))


class _SparseEstimator(_LinearProbe):
    """The parameters and the fit the sparse probes share (one ``k``, one selector, the template)."""

    def __init__(self, k=1, *, selector="mean_diff", C=DEFAULT_C, prefilter=None, random_state=None, tol=1e-8,
                 max_iter=100):
        self.k = k
        self.selector = selector
        self.C = C
        self.prefilter = prefilter
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        """Select the neurons and fit the probe.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features)
        y : array-like of shape (n_examples,)
            Classes (two, or more when the selector supports multiclass), or values for a regression probe.

        Returns
        -------
        self
        """
        _fit_sparse(self, X, y)
        return self


class SparseProbe(_ProbeClassifier, _SparseEstimator):
    """A k-sparse probe: select ``k`` neurons with a selector, then fit a logistic regression on them.

    ``fit`` runs the fit template (:mod:`needle.probing.template`): (1)
    orders the neurons by class-mean difference and keeps the top
    ``prefilter`` as candidates, (2) standardises them, (3) lets the
    ``selector`` choose ``k`` of them (see :mod:`needle.probing.selection`;
    it sees the raw candidates, or the standardised ones if it asks, like
    ``osp``), (4) fits an L2 logistic regression with balanced class weights
    and inverse regularisation ``C`` on the chosen standardised neurons (the
    problem of ``LogisticRegression(C=C, class_weight="balanced")``; multinomial
    for more than two classes), solved by Newton's method, (5) reports it in
    the units of ``X``.

    Parameters
    ----------
    k : int, default 1
        Number of neurons. Larger than the number of candidates is capped,
        with a warning.
    selector : str or Selector, default "mean_diff"
        A registered method's name (:func:`needle.probing.available_methods`)
        or a selector object, e.g. ``MeanDiff(normalization="standardized")``
        or ``OSPSelector(gamma=0.01, time_limit=30)``.
    C : float or CrossValidatedC, default 0.01
        Inverse L2 regularisation strength on standardised neurons, or
        :class:`~needle.probing.template.CrossValidatedC` to choose it by
        cross-validation.
    prefilter : int or None, default None
        Keep only this many neurons (by mean difference) as candidates.
    random_state : int, RandomState or None
        Seed for stochastic selectors (``random``, ``mutual_info``).
    tol : float, default 1e-8
        Gradient tolerance of the refit (see
        :func:`needle.probing.fitting.fit_logistic_batch`).
    max_iter : int, default 100
        Newton iterations of the refit.

    Attributes
    ----------
    support_ : ndarray of shape (k,), int64
        The selected neurons (column indices of ``X``), ascending.
    coef_ : ndarray of shape (1, n_features_in_) or (n_classes, n_features_in_)
        Coefficients in the units of ``X``; zero outside ``support_``.
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (k,)
        Training mean and standard deviation of the ``support_`` neurons.
    selection_info_ : dict
        What the selector reported about its choice.
    <diagnostic>_
        Each of the selector's ``diagnostics`` it reported, e.g. for ``osp``
        ``objective_``, ``bound_``, ``gap_``, ``status_``, ``n_cuts_``,
        ``solve_seconds_``, ``n_candidates_``: the optimality certificate of
        the support for the objective of :func:`needle.probing.osp.solve_osp`
        on the standardised candidates (the top ``n_candidates_`` by mean
        difference only, at the selector's ``gamma``, which need not be the
        refit's ``C``).
    n_iter_ : int
        Iterations of the refit.

    Examples
    --------
    >>> import numpy as np
    >>> from needle.probing import SparseProbe
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 50))
    >>> y = (X[:, 7] > 0.5).astype(int)
    >>> SparseProbe(k=1).fit(X, y).support_
    array([7])
    """

    def __sklearn_tags__(self):
        from needle.probing.selection import get_selector

        tags = super().__sklearn_tags__()
        try:
            tags.classifier_tags.multi_class = "multiclass" in get_selector(self.selector).tasks
        except InputError:  # an unknown name fails in fit, with its message
            tags.classifier_tags.multi_class = False
        return tags


class SparseRegressionProbe(RegressorMixin, _SparseEstimator):
    """A k-sparse ridge probe of a continuous target: select ``k`` neurons, then fit a ridge regression on them.

    The regression form of :class:`SparseProbe`: the same template, with the
    task's forms of the selectors (``mean_diff`` ranks by ``|cov(X_j, y)|``,
    i.e. correlation on standardised neurons; ``f_stat`` by
    ``f_regression``), and the refit ``C/2 * ||y - Z_s w - b||^2 + ||w||^2/2``
    (scikit-learn's ``Ridge(alpha=1/C)``) on the standardised selected neurons.

    Parameters
    ----------
    k, selector, C, prefilter, random_state, tol, max_iter
        As in :class:`SparseProbe`.

    Attributes
    ----------
    support_, coef_ (shape (1, n_features_in_)), intercept_ (shape (1,)), n_features_in_, mean_, scale_,
    selection_info_, n_iter_
        As in :class:`SparseProbe`.
    """

    _task_kind = "regression"

    def predict(self, X):
        """Predicted targets, ndarray of shape (n_examples,)."""
        return self.decision_function(X)


def _fit_sparse(probe, X, y) -> None:
    """The fit of :class:`SparseProbe` and :class:`SparseRegressionProbe`: the template with one ``k``."""
    from needle.probing.selection import get_selector
    from needle.probing.template import fit_path, prepare

    _check_positive("k", probe.k, integer=True)
    _check_positive("prefilter", probe.prefilter, integer=True, allow_none=True)
    selector = get_selector(probe.selector)
    X, y, task = probe._validate_xy(X, y)
    if task == "multiclass" and task not in selector.tasks:
        raise ValueError(f"Only binary classification is supported by the selector {selector!r}; y has "
                         f"{probe.classes_.size} classes. Probe one class against the rest, or use a selector "
                         "that supports multiclass targets (mean_diff, f_stat, mutual_info, l1, random).")
    n_candidates = min(X.shape[1], probe.prefilter or X.shape[1], selector.candidate_limit() or X.shape[1])
    k = probe.k
    if k > n_candidates:
        warnings.warn(f"k={k} exceeds the {n_candidates} candidate neurons; using all {n_candidates}.", UserWarning,
                      stacklevel=3)
        k = n_candidates
    prepared = prepare(X, y, task=task, prefilter=probe.prefilter)
    path = fit_path(prepared, selector, [k], C=probe.C, random_state=_seed(probe.random_state), tol=probe.tol,
                    max_iter=probe.max_iter)
    order = np.argsort(path.neurons[0], kind="stable")
    support = path.supports[0][order]
    probe.support_ = path.neurons[0][order].astype(np.int64)
    probe.mean_, probe.scale_ = prepared.mean[support], prepared.scale[support]
    probe.selection_info_ = path.info[0]
    for name in getattr(selector, "diagnostics", ()):
        if name in probe.selection_info_:
            setattr(probe, f"{name}_", probe.selection_info_[name])
    probe.n_iter_ = int(path.n_iter[0])
    probe._set_linear(X.shape[1], probe.support_, np.asarray(path.coef[0])[..., order], path.intercept[0])


class DenseProbe(_ProbeClassifier):
    """Baseline: a logistic-regression probe on every neuron.

    scikit-learn's ``LogisticRegression(C=C, class_weight="balanced",
    solver="lbfgs")`` on the standardised inputs, reported in input units
    (the sweep's dense rows run the same template on a float32 copy, which
    halves the memory of a wide layer).

    Parameters
    ----------
    C : float, default 0.01
        Inverse L2 regularisation strength on standardised neurons.
    tol : float, default 1e-6
    max_iter : int, default 1000
        L-BFGS iterations.

    Attributes
    ----------
    support_ : ndarray of shape (n_features_in_,)
        All neurons.
    coef_ : ndarray of shape (1, n_features_in_) or (n_classes, n_features_in_)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    """

    def __init__(self, *, C=DEFAULT_C, tol=1e-6, max_iter=1000):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        """Fit on all neurons (``X`` (n_examples, n_features), ``y`` (n_examples,)); returns self."""
        from needle.probing.template import AllColumns

        X, y, task = self._validate_xy(X, y)
        prepared, path = self._fit_template(X, y, task, AllColumns(), X.shape[1],
                                            solver="lbfgs" if task == "binary" else "default",
                                            tol=self.tol, max_iter=self.max_iter)
        self.support_ = np.arange(X.shape[1])
        self.mean_, self.scale_ = prepared.mean, prepared.scale
        self.n_iter_ = int(path.n_iter[0])
        self._set_linear(X.shape[1], self.support_, path.coef[0], path.intercept[0])
        return self


class RandomDirectionsProbe(_ProbeClassifier):
    """Baseline: a logistic-regression probe on ``k`` random orthonormal directions.

    The standardised inputs are multiplied by a random ``n_features × k``
    matrix with orthonormal columns (:func:`random_orthonormal`) and a
    balanced L2 logistic regression is fit on the ``k`` projections — the
    paper's Figure A.2 baseline (which projected raw activations; here they
    are standardised first, as for every probe), exactly as the sweep's
    ``random_directions`` rows (float32 projection).

    Parameters
    ----------
    k : int, default 1
        Number of directions (capped at ``n_features``, with a warning).
    C : float, default 0.01
        Inverse L2 regularisation strength on the projections.
    random_state : int, RandomState or None
    tol : float, default 1e-8
    max_iter : int, default 100

    Attributes
    ----------
    components_ : ndarray of shape (n_features_in_, k)
        The directions, in standardised input space.
    direction_coef_ : ndarray of shape (k,) or (n_classes, k)
        Coefficients of the projections.
    coef_ : ndarray of shape (1, n_features_in_) or (n_classes, n_features_in_)
        The same linear function in input units.
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    """

    def __init__(self, k=1, *, C=DEFAULT_C, random_state=None, tol=1e-8, max_iter=100):
        self.k = k
        self.C = C
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        """Draw the directions and fit on the projections (``X`` (n_examples, n_features)); returns self."""
        from needle.probing.template import FirstColumns

        _check_positive("k", self.k, integer=True)
        X, y, task = self._validate_xy(X, y)
        k = self.k
        if k > X.shape[1]:
            warnings.warn(f"k={k} exceeds n_features={X.shape[1]}; using {X.shape[1]}.", UserWarning, stacklevel=2)
            k = X.shape[1]
        Q = random_orthonormal(X.shape[1], k, _seed(self.random_state))
        prepared, path = self._fit_template(X, y, task, FirstColumns(), k, rotation=Q, tol=self.tol,
                                            max_iter=self.max_iter)
        self.components_ = Q
        self.direction_coef_ = path.design_coef[0]
        self.mean_, self.scale_ = prepared.mean, prepared.scale
        self.n_iter_ = int(path.n_iter[0])
        self._set_linear(X.shape[1], np.arange(X.shape[1]), path.coef[0], path.intercept[0])
        return self
