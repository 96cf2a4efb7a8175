"""Binary classification metrics of probes, one probe or a batch at once.

Predictions are ``score > threshold`` (``threshold=0`` for a logistic
probe's decision function); ROC-AUC is computed from the scores themselves,
never from hard predictions. Undefined ratios (e.g. precision with no
predicted positive) are 0, like scikit-learn's ``zero_division=0``; ROC-AUC
with a single class present is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from needle.errors import InputError

__all__ = [
    "METRICS",
    "binary_metrics",
    "binary_metrics_batch",
    "f1",
    "precision",
    "recall",
    "mcc",
    "accuracy",
    "roc_auc",
]

#: Names of the metrics, in the order of the results table.
METRICS = ("f1", "precision", "recall", "mcc", "accuracy", "roc_auc")


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
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        auc = np.full(scores.shape[0], np.nan)
    else:
        # Mann-Whitney U with average ranks for ties: equal to the area under
        # the ROC curve with ties counted as one half.
        ranks = rankdata(scores, axis=1)
        auc = (ranks[:, y].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return {"f1": f1_, "precision": prec, "recall": rec, "mcc": mcc_, "accuracy": acc, "roc_auc": auc}


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
        Keys :data:`METRICS`.
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
