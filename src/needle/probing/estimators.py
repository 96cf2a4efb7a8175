"""scikit-learn estimators: the sparse probe and its two baselines.

All three are binary logistic-regression probes with balanced class weights
and an L2 penalty of strength ``1 / C`` on *standardised* inputs (each input
column centred and scaled by its training mean and standard deviation, which
the probes do themselves); they differ in what the logistic regression sees:

- :class:`SparseProbe` — ``k`` neurons chosen by a selection method;
- :class:`DenseProbe` — every neuron;
- :class:`RandomDirectionsProbe` — ``k`` random orthonormal directions.

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
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, column_or_1d, validate_data

from needle.errors import InputError
from needle.probing.fitting import fit_logistic_path, standardization
from needle.probing.scoring import mean_diff_score, rank_by_score
from needle.probing.selection import get_selector

__all__ = ["SparseProbe", "DenseProbe", "RandomDirectionsProbe", "random_orthonormal", "candidate_neurons",
           "method_candidates", "CERTIFICATE_FIELDS"]

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


#: What ``method="osp"`` certifies about a support; set as ``<name>_`` attributes by :class:`SparseProbe`.
CERTIFICATE_FIELDS = ("objective", "bound", "gap", "status", "n_cuts", "solve_seconds")


def candidate_neurons(X: np.ndarray, y: np.ndarray, prefilter: int | None) -> np.ndarray:
    """The neurons selection may choose from: the top ``prefilter`` by mean difference.

    The paper prefilters to the 1024 neurons with the largest class-mean
    difference before any more expensive method (Appendix A.2.4). The
    candidates are returned in decreasing order of mean difference (ties to
    the lower index), which is also the tie-break order of every ranking
    method (see :func:`needle.probing.scoring.rank_by_score`).

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_neurons)
        Training activations.
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    prefilter : int or None
        How many to keep; None keeps all (still ordered).

    Returns
    -------
    ndarray of shape (min(prefilter, n_neurons),), int64
    """
    order = rank_by_score(mean_diff_score(X, y))
    return order if prefilter is None else order[:prefilter]


def method_candidates(candidates: np.ndarray, selector) -> np.ndarray:
    """The part of ``candidates`` a selection method looks at: the first ``selector.candidate_limit()``.

    ``candidates`` are in decreasing order of mean difference
    (:func:`candidate_neurons`), so a method with its own, smaller prefilter
    (osp: 50) gets the top ones.
    """
    limit = selector.candidate_limit()
    return candidates if limit is None else candidates[:limit]


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


class _LinearProbe(ClassifierMixin, BaseEstimator):
    """Shared fitting template: validate, encode labels, fit (``_fit``), predict."""

    def _validate_xy(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            if self.classes_.size < 2:
                raise ValueError(
                    f"{type(self).__name__} needs two classes to train; y has only one class: {self.classes_[0]!r}."
                )
            raise ValueError(
                f"Only binary classification is supported. {type(self).__name__} is a binary probe and y has "
                f"{self.classes_.size} classes; probe one class against the rest instead."
            )
        _check_positive("C", self.C)
        return X, (y == self.classes_[1]).astype(np.int8)

    def _set_linear(self, n_features, columns, w, b, mean, scale):
        """Store a fit on standardised ``columns`` in input units."""
        coef = np.zeros(n_features)
        coef[columns] = w / scale
        self.coef_ = coef[None, :]
        self.intercept_ = np.array([b - np.sum(w * mean / scale)])

    def decision_function(self, X):
        """Decision scores; positive means ``classes_[1]``.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_examples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict(self, X):
        """Predicted classes, ndarray of shape (n_examples,)."""
        scores = self.decision_function(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[(scores > 0).astype(np.int64)]

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n_examples, 2) in the order of ``classes_``."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, ndarray of shape (n_examples, 2)."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class SparseProbe(_LinearProbe):
    """A k-sparse probe: select ``k`` neurons with a method, then fit a logistic regression on them.

    ``fit`` (1) orders the neurons by class-mean difference and keeps the top
    ``prefilter`` as candidates, (2) lets the selection ``method`` choose
    ``k`` of them (see :mod:`needle.probing.selection`), (3) standardises
    the chosen neurons and fits an L2 logistic regression with balanced class
    weights and inverse regularisation ``C`` (the same problem as
    ``LogisticRegression(C=C, class_weight="balanced")`` on the standardised
    columns), solved by Newton's method.

    Parameters
    ----------
    k : int, default 1
        Number of neurons. Larger than the number of candidates is capped,
        with a warning.
    method : str, default "mean_diff"
        A registered selection method: see
        :func:`needle.probing.available_methods`.
    C : float, default 0.01
        Inverse L2 regularisation strength on standardised neurons.
    prefilter : int or None, default None
        Keep only this many neurons (by mean difference) as candidates.
    method_params : dict, optional
        Keyword parameters of the selection method.
    random_state : int, RandomState or None
        Seed for stochastic methods (``random``, ``mutual_info``).
    tol : float, default 1e-8
        Gradient tolerance of the refit (see
        :func:`needle.probing.fitting.fit_logistic_batch`).
    max_iter : int, default 100
        Newton iterations of the refit.
    gamma, time_limit : float, optional
        ``method="osp"`` only: its ridge parameter and seconds per solve
        (shorthands for ``method_params``; see
        :class:`needle.probing.osp.OSPSelector`). The osp problem is solved on
        the top candidates of ``X`` *as given*, so standardise ``X`` first if
        the certificate should refer to standardised neurons.

    Attributes
    ----------
    support_ : ndarray of shape (k,), int64
        The selected neurons (column indices of ``X``), ascending.
    coef_ : ndarray of shape (1, n_features_in_)
        Coefficients in the units of ``X``; zero outside ``support_``.
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (k,)
        Training mean and standard deviation of the ``support_`` neurons.
    selection_info_ : dict
        What the method reported about its choice.
    objective_, bound_, gap_, status_, n_cuts_, solve_seconds_
        ``method="osp"`` only: the optimality certificate of the support, for
        the objective of :func:`needle.probing.osp.solve_osp` on the
        candidates of ``X`` as given: its value at the returned sparse
        solution, a proven lower bound, the relative gap, ``"optimal"`` or
        ``"time_limit"``, the number of cuts and the solver's seconds.
    n_iter_ : int
        Newton iterations of the refit.

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

    def __init__(
        self,
        k=1,
        *,
        method="mean_diff",
        C=DEFAULT_C,
        prefilter=None,
        method_params=None,
        random_state=None,
        tol=1e-8,
        max_iter=100,
        gamma=None,
        time_limit=None,
    ):
        self.k = k
        self.method = method
        self.C = C
        self.prefilter = prefilter
        self.method_params = method_params
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter
        self.gamma = gamma
        self.time_limit = time_limit

    def fit(self, X, y):
        """Select the neurons and fit the probe.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features)
        y : array-like of shape (n_examples,)
            Two classes; ``classes_[1]`` is the positive one.

        Returns
        -------
        self
        """
        _check_positive("k", self.k, integer=True)
        _check_positive("prefilter", self.prefilter, integer=True, allow_none=True)
        selector = get_selector(self.method, **self._method_params())
        X, y01 = self._validate_xy(X, y)
        candidates = method_candidates(candidate_neurons(X, y01, self.prefilter), selector)
        k = self.k
        if k > candidates.size:
            warnings.warn(
                f"k={k} exceeds the {candidates.size} candidate neurons; using all {candidates.size}.",
                UserWarning,
                stacklevel=2,
            )
            k = candidates.size
        # X as given, also for methods that want standardised input (osp): their certificate then refers to the
        # caller's data, and standardising first is the caller's choice (the sweep does).
        path = selector.select_path(X[:, candidates], y01, [k], random_state=_seed(self.random_state))
        neurons = np.sort(candidates[path.supports[0]])
        mean, scale = standardization(X[:, neurons])
        fit = fit_logistic_path((X[:, neurons] - mean) / scale, y01, [np.arange(k)], C=self.C, tol=self.tol,
                                max_iter=self.max_iter)
        self.support_ = neurons
        self.mean_, self.scale_ = mean, scale
        self.selection_info_ = path.info[0]
        for name in CERTIFICATE_FIELDS:
            if name in self.selection_info_:
                setattr(self, f"{name}_", self.selection_info_[name])
        self.n_iter_ = int(fit.n_iter[0])
        self._set_linear(X.shape[1], neurons, fit.coef[0], fit.intercept[0], mean, scale)
        return self

    def _method_params(self) -> dict:
        params = dict(self.method_params or {})
        for name in ("gamma", "time_limit"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.method != "osp":
                raise InputError(f"{name}={value!r} applies to method='osp' only (method is {self.method!r}).")
            if name in params and params[name] != value:
                raise InputError(f"{name} is given twice, as {value!r} and in method_params as {params[name]!r}.")
            params[name] = value
        return params


class DenseProbe(_LinearProbe):
    """Baseline: a logistic-regression probe on every neuron.

    scikit-learn's ``LogisticRegression(C=C, class_weight="balanced",
    solver="lbfgs")`` on the standardised inputs, reported in input units.

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
    coef_ : ndarray of shape (1, n_features_in_)
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    """

    def __init__(self, *, C=DEFAULT_C, tol=1e-6, max_iter=1000):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        """Fit on all neurons.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features)
        y : array-like of shape (n_examples,)

        Returns
        -------
        self
        """
        from sklearn.linear_model import LogisticRegression

        X, y01 = self._validate_xy(X, y)
        mean, scale = standardization(X)
        model = LogisticRegression(C=self.C, class_weight="balanced", tol=self.tol, max_iter=self.max_iter)
        model.fit((X - mean) / scale, y01)
        self.support_ = np.arange(X.shape[1])
        self.mean_, self.scale_ = mean, scale
        self.n_iter_ = int(np.max(model.n_iter_))
        self._set_linear(X.shape[1], self.support_, model.coef_[0], model.intercept_[0], mean, scale)
        return self


class RandomDirectionsProbe(_LinearProbe):
    """Baseline: a logistic-regression probe on ``k`` random orthonormal directions.

    The standardised inputs are multiplied by a random ``n_features × k``
    matrix with orthonormal columns (:func:`random_orthonormal`) and a
    balanced L2 logistic regression is fit on the ``k`` projections — the
    paper's Figure A.2 baseline (which projected raw activations; here they
    are standardised first, as for every probe).

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
    direction_coef_ : ndarray of shape (k,)
        Coefficients of the projections.
    coef_ : ndarray of shape (1, n_features_in_)
        The same linear function in input units.
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
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
        """Draw the directions and fit on the projections.

        Parameters
        ----------
        X : array-like of shape (n_examples, n_features)
        y : array-like of shape (n_examples,)

        Returns
        -------
        self
        """
        _check_positive("k", self.k, integer=True)
        X, y01 = self._validate_xy(X, y)
        k = self.k
        if k > X.shape[1]:
            warnings.warn(f"k={k} exceeds n_features={X.shape[1]}; using {X.shape[1]}.", UserWarning, stacklevel=2)
            k = X.shape[1]
        mean, scale = standardization(X)
        Q = random_orthonormal(X.shape[1], k, _seed(self.random_state))
        fit = fit_logistic_path(((X - mean) / scale) @ Q, y01, [np.arange(k)], C=self.C, tol=self.tol,
                                max_iter=self.max_iter)
        self.components_ = Q
        self.direction_coef_ = fit.coef[0]
        self.mean_, self.scale_ = mean, scale
        self.n_iter_ = int(fit.n_iter[0])
        self._set_linear(X.shape[1], np.arange(X.shape[1]), Q @ fit.coef[0], fit.intercept[0], mean, scale)
        return self
