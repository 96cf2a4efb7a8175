"""Metrics of probes on the held-out split, per task, one probe or a batch at once.

- binary (:func:`binary_metrics_batch`): predictions are ``score > threshold``
  (``threshold=0`` for a logistic probe's decision function); ROC-AUC is
  computed from the scores themselves, never from hard predictions.
  Undefined ratios (e.g. precision with no predicted positive) are 0, like
  scikit-learn's ``zero_division=0``; ROC-AUC with a single class present is
  NaN. ``f1_weighted`` averages the F1 of both classes weighted by their
  support (scikit-learn's ``average="weighted"``).
- multiclass (:func:`multiclass_metrics_batch`): the prediction is the class
  of the largest score; accuracy, macro- and support-weighted F1 over the
  classes present in the truth or the predictions, and the multiclass MCC
  (Gorodkin's R_K, scikit-learn's ``matthews_corrcoef``).
- regression (:func:`regression_metrics_batch`): R² (1 − SS_res / SS_tot on
  the test split, so it can be negative), Pearson and Spearman correlation,
  mean absolute error.

Every metric is checked against scikit-learn / scipy in the test suite.
:data:`PRIMARY_METRIC` names the headline metric of each task.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from needle.errors import InputError

__all__ = [
    "METRICS",
    "TASK_METRICS",
    "ALL_METRICS",
    "PRIMARY_METRIC",
    "primary_metric",
    "metrics_batch",
    "binary_metrics",
    "binary_metrics_batch",
    "multiclass_metrics_batch",
    "regression_metrics_batch",
    "f1",
    "precision",
    "recall",
    "mcc",
    "accuracy",
    "roc_auc",
]

#: Names of the binary metrics, in the order of the results table.
METRICS = ("f1", "precision", "recall", "mcc", "accuracy", "roc_auc")
#: The metrics each task computes (the others are NaN in its result rows).
TASK_METRICS = {
    "binary": METRICS + ("f1_weighted",),
    "multiclass": ("f1_macro", "f1_weighted", "accuracy", "mcc"),
    "regression": ("r2", "spearman", "pearson", "mae"),
}
#: Every metric column of the results table, in order.
ALL_METRICS = METRICS + ("f1_weighted", "f1_macro", "r2", "spearman", "pearson", "mae")
#: The headline metric of each task: what the report, the site and ``summarize`` show first.
PRIMARY_METRIC = {"binary": "f1", "multiclass": "f1_macro", "regression": "r2"}


def primary_metric(task: str) -> str:
    """The headline metric of a task (``"f1"``, ``"f1_macro"`` or ``"r2"``)."""
    try:
        return PRIMARY_METRIC[task]
    except KeyError:
        raise InputError(f"unknown task {task!r}; tasks are {', '.join(PRIMARY_METRIC)}.") from None


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def binary_metrics_batch(y_true: np.ndarray, scores: np.ndarray, *, threshold: float = 0.0) -> dict[str, np.ndarray]:
    """All metrics for a batch of probes evaluated on the same examples.

    Parameters
    ----------
    y_true : ndarray of shape (n_examples,)
        Labels 0/1.
    scores : ndarray of shape (n_probes, n_examples)
        Decision scores; a probe predicts positive where ``score > threshold``.
    threshold : float, default 0.0

    Returns
    -------
    dict of str to ndarray of shape (n_probes,)
        Keys :data:`METRICS`.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != y.size:
        raise InputError(f"scores have {scores.shape[1]} columns but there are {y.size} labels.")
    pred = scores > threshold
    tp = (pred & y).sum(axis=1).astype(np.float64)
    fp = (pred & ~y).sum(axis=1).astype(np.float64)
    fn = (~pred & y).sum(axis=1).astype(np.float64)
    tn = (~pred & ~y).sum(axis=1).astype(np.float64)
    prec = _divide(tp, tp + fp)
    rec = _divide(tp, tp + fn)
    f1_ = _divide(2 * tp, 2 * tp + fp + fn)
    acc = _divide(tp + tn, tp + tn + fp + fn)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc_ = _divide(tp * tn - fp * fn, denom)
    n = float(y.size)
    f1_neg = _divide(2 * tn, 2 * tn + fn + fp)
    f1_weighted = (f1_ * (tp + fn) + f1_neg * (tn + fp)) / n
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        auc = np.full(scores.shape[0], np.nan)
    else:
        # Mann-Whitney U with average ranks for ties: equal to the area under
        # the ROC curve with ties counted as one half.
        ranks = rankdata(scores, axis=1)
        auc = (ranks[:, y].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return {"f1": f1_, "precision": prec, "recall": rec, "mcc": mcc_, "accuracy": acc, "roc_auc": auc,
            "f1_weighted": f1_weighted}


def multiclass_metrics_batch(y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Multiclass metrics for a batch of probes evaluated on the same examples.

    Parameters
    ----------
    y_true : ndarray of shape (n_examples,)
        Class codes 0..n_classes-1.
    scores : ndarray of shape (n_probes, n_examples, n_classes)
        Decision scores; a probe predicts the class of its largest score (the first on ties).

    Returns
    -------
    dict of str to ndarray of shape (n_probes,)
        ``f1_macro``, ``f1_weighted``, ``accuracy``, ``mcc``.
    """
    y = np.asarray(y_true).ravel().astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2:
        scores = scores[None]
    if scores.shape[1] != y.size:
        raise InputError(f"scores have {scores.shape[1]} examples but there are {y.size} labels.")
    n_classes = max(scores.shape[2], int(y.max(initial=-1)) + 1)
    pred = scores.argmax(axis=2)
    n_probes, n = pred.shape
    # Confusion counts per probe: (n_probes, n_classes true, n_classes predicted).
    flat = (np.arange(n_probes)[:, None] * n_classes + y[None, :]) * n_classes + pred
    confusion = np.bincount(flat.ravel(), minlength=n_probes * n_classes * n_classes).reshape(
        n_probes, n_classes, n_classes).astype(np.float64)
    true = confusion.sum(axis=2)
    predicted = confusion.sum(axis=1)
    tp = np.einsum("bcc->bc", confusion)
    f1_class = _divide(2 * tp, true + predicted)
    present = (true + predicted) > 0  # scikit-learn averages over labels in the truth or the predictions
    f1_macro = _divide((f1_class * present).sum(axis=1), present.sum(axis=1))
    f1_weighted = (f1_class * true).sum(axis=1) / n
    correct = tp.sum(axis=1)
    accuracy = correct / n
    cov_ytyp = correct * n - (true * predicted).sum(axis=1)
    cov_ypyp = n * n - (predicted * predicted).sum(axis=1)
    cov_ytyt = n * n - (true * true).sum(axis=1)
    mcc_ = _divide(cov_ytyp, np.sqrt(cov_ytyt * cov_ypyp))
    return {"f1_macro": f1_macro, "f1_weighted": f1_weighted, "accuracy": accuracy, "mcc": mcc_}


def regression_metrics_batch(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """Regression metrics for a batch of probes evaluated on the same examples.

    Parameters
    ----------
    y_true : ndarray of shape (n_examples,)
    predictions : ndarray of shape (n_probes, n_examples)

    Returns
    -------
    dict of str to ndarray of shape (n_probes,)
        ``r2`` (1 − SS_res/SS_tot; NaN when the test targets are constant), ``pearson`` and
        ``spearman`` (NaN when either side is constant), ``mae``.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.atleast_2d(np.asarray(predictions, dtype=np.float64))
    if pred.shape[1] != y.size:
        raise InputError(f"predictions have {pred.shape[1]} columns but there are {y.size} targets.")
    resid = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - np.sum(resid**2, axis=1) / ss_tot if ss_tot > 0 else np.full(pred.shape[0], np.nan)

    def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=-1, keepdims=True)
        b = b - b.mean(axis=-1, keepdims=True)
        den = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, np.sum(a * b, axis=-1) / np.where(den > 0, den, 1.0), np.nan)

    pearson = correlation(pred, y[None, :])
    spearman = correlation(rankdata(pred, axis=1), rankdata(y)[None, :])
    mae = np.abs(resid).mean(axis=1)
    return {"r2": r2, "spearman": spearman, "pearson": pearson, "mae": mae}


def metrics_batch(task: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of ``task`` for a batch of probes (see the three functions above)."""
    if task == "binary":
        return binary_metrics_batch(y_true, scores)
    if task == "multiclass":
        return multiclass_metrics_batch(y_true, scores)
    if task == "regression":
        return regression_metrics_batch(y_true, scores)
    raise InputError(f"unknown task {task!r}; tasks are {', '.join(PRIMARY_METRIC)}.")


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, *, threshold: float = 0.0) -> dict[str, float]:
    """All metrics of one probe.

    Parameters
    ----------
    y_true : ndarray of shape (n_examples,)
        Labels 0/1.
    scores : ndarray of shape (n_examples,)
        Decision scores.
    threshold : float, default 0.0

    Returns
    -------
    dict of str to float
        Keys :data:`METRICS` and ``f1_weighted``.
    """
    batch = binary_metrics_batch(y_true, np.asarray(scores, dtype=np.float64)[None, :], threshold=threshold)
    return {name: float(values[0]) for name, values in batch.items()}


def _one(name):
    def metric(y_true: np.ndarray, scores: np.ndarray, *, threshold: float = 0.0) -> float:
        return binary_metrics(y_true, scores, threshold=threshold)[name]

    metric.__name__ = name
    metric.__qualname__ = name
    metric.__doc__ = (
        f"{name} of one probe from labels (0/1, shape (n_examples,)) and decision scores (shape (n_examples,)).\n\n"
        "Predictions are ``scores > threshold``; see :func:`binary_metrics`."
    )
    return metric


f1 = _one("f1")
precision = _one("precision")
recall = _one("recall")
mcc = _one("mcc")
accuracy = _one("accuracy")
roc_auc = _one("roc_auc")
