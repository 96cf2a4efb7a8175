"""Hand-built results tables in the three-task schema (binary, multiclass, regression), for the report and
site tests. Scores are planted, not fitted: each feature peaks at a known layer, and one regression feature has
negative R² at its worst probes."""

from __future__ import annotations

import numpy as np
import pandas as pd

LAYERS = (0, 1, 2)
KS = (1, 2, 4, 8)
METHODS = ("mean_diff", "f_stat")
CLASSES = ["depth0", "depth1", "depth2"]
#: feature -> (collection, task, best layer, peak primary score)
FEATURES = {
    "feat_a": ("words", "binary", 1, 0.9),
    "feat_b": ("words", "binary", 2, 0.7),
    "bracket_depth": ("code", "multiclass", 2, 0.8),
    "line_position": ("code", "regression", 1, 0.75),
    "indent_width": ("code", "regression", 0, 0.3),
}
_CLASSIFICATION = ("f1", "precision", "recall", "mcc", "accuracy", "roc_auc", "f1_weighted", "f1_macro")
_REGRESSION = ("r2", "spearman", "pearson", "mae")


def _score(peak: float, best: int, layer: int, k: int, method: str) -> float:
    """Rises with k, falls away from the best layer; f_stat a little below mean_diff."""
    return peak - 0.3 * abs(layer - best) - 0.25 * (1 / k - 1 / 8) - (0.03 if method == "f_stat" else 0.0)


def task_results(*, model_id: str = "toy", dataset_hash: str = "abc123", site: str = "post",
                 neurons_of=None) -> pd.DataFrame:
    """A results table with every task, its rows as the new schema writes them.

    Parameters
    ----------
    neurons_of : callable (feature, layer, k) -> list of int, optional
        The neurons of a probe (default: ``[0, 1, …, k-1]`` shifted by the layer).
    """
    rows = []
    for feature, (collection, task, best, peak) in FEATURES.items():
        for layer in LAYERS:
            for method in METHODS + ("dense", "random_directions"):
                for k in (KS if method != "dense" else (40,)):
                    score = _score(peak, best, layer, k, method) if method != "dense" else peak + 0.05
                    if method == "random_directions":
                        score -= 0.3
                    score = float(np.clip(score, -1.0 if task == "regression" else 0.0, 0.99))
                    # indent_width is barely predictable: its sparse probes at the wrong layers do worse than the mean
                    if feature == "indent_width" and layer == 2:
                        score = -0.8 + 0.1 * np.log2(k)
                    neurons = (list(neurons_of(feature, layer, k)) if neurons_of else
                               [layer + i for i in range(k)]) if method != "random_directions" else []
                    n_classes = len(CLASSES) if task == "multiclass" else 1
                    row = {"model_id": model_id, "dataset_hash": dataset_hash, "site": site,
                           "collection": collection, "level": "token", "feature": feature, "task": task,
                           "layer": layer, "method": method, "k": k, "n_train": 140, "n_test": 60,
                           "n_train_pos": 28, "n_test_pos": 12, "neurons": np.asarray(neurons, np.int64),
                           "coef": np.linspace(-1, 1, max(1, n_classes * len(neurons)))[: n_classes * len(neurons)],
                           "intercept": np.nan if task == "multiclass" else 0.1,
                           "class_intercepts": np.asarray([0.1, -0.2, 0.1]) if task == "multiclass" else None,
                           "converged": True, "n_iter": 5, "fit_seconds": 0.01, "seed": 0, "selection_info": "{}",
                           "objective": np.nan, "bound": np.nan, "gap": np.nan, "status": None,
                           "needle_version": "test", "params": "{}", "manifest": "{}"}
                    row.update({m: np.nan for m in _CLASSIFICATION + _REGRESSION})
                    if task == "binary":
                        row.update(f1=score, precision=min(1.0, score + 0.05), recall=max(0.0, score - 0.05),
                                   mcc=score - 0.1, accuracy=0.5 + score / 2, roc_auc=0.5 + score / 2,
                                   f1_weighted=score)
                    elif task == "multiclass":
                        row.update(f1_macro=score, f1_weighted=min(1.0, score + 0.02), accuracy=min(1.0, score + 0.05),
                                   mcc=score - 0.1)
                    else:
                        row.update(r2=score, spearman=float(np.clip(score + 0.1, -1, 1)),
                                   pearson=float(np.clip(score + 0.05, -1, 1)), mae=1.0 - score / 2)
                    rows.append(row)
    return pd.DataFrame(rows)


def old_schema(results: pd.DataFrame) -> pd.DataFrame:
    """The binary rows as a table written before the ``task`` column existed."""
    binary = results[results["task"] == "binary"]
    return binary.drop(columns=["task", "f1_weighted", "f1_macro", "class_intercepts", *_REGRESSION]).reset_index(
        drop=True)
