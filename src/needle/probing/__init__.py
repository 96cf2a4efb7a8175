"""Sparse probing: select k neurons, fit a probe on them, sweep k, layers and features.

The engine is blind to where the activations come from: it reads a
:class:`ProbeSource` (an :class:`~needle.activations.ActivationCache`, an
:class:`ArraySource`, ...). Modules, one job each:

- :mod:`~needle.probing.source` — the ProbeSource protocol and ArraySource;
- :mod:`~needle.probing.scoring` — pure per-neuron scores ``score(X, y)``;
- :mod:`~needle.probing.selection` — selectors and the registry of methods;
- :mod:`~needle.probing.fitting` — batched Newton refits, elastic-net solver;
- :mod:`~needle.probing.estimators` — scikit-learn estimators;
- :mod:`~needle.probing.metrics` — F1, precision, recall, MCC, accuracy, ROC-AUC;
- :mod:`~needle.probing.splits` — train/test splits by group;
- :mod:`~needle.probing.sweep` — sweeps over (feature, layer, method, k);
- :mod:`~needle.probing.results` — the results table.
"""

from needle.probing.estimators import DenseProbe, RandomDirectionsProbe, SparseProbe, random_orthonormal
from needle.probing.fitting import fit_elastic_net_logistic, fit_logistic_batch, fit_logistic_path
from needle.probing.metrics import binary_metrics, binary_metrics_batch
from needle.probing.results import load_results, summarize
from needle.probing.scoring import f_stat_score, l1_score, mean_diff_score, mutual_info_score, rank_by_score
from needle.probing.selection import (
    AdaptiveSelector,
    RandomSelector,
    ScoreSelector,
    SelectionPath,
    Selector,
    available_methods,
    get_selector,
    register_method,
)
from needle.probing.source import ArraySource, ProbeSource
from needle.probing.splits import group_train_test_split, load_splits, splits_path
from needle.probing.sweep import DEFAULT_KS, DEFAULT_METHODS, ProbeTask, SweepConfig, plan_tasks, run_task, sweep

__all__ = [
    # where X comes from
    "ProbeSource",
    "ArraySource",
    # estimators
    "SparseProbe",
    "DenseProbe",
    "RandomDirectionsProbe",
    "random_orthonormal",
    # methods
    "Selector",
    "SelectionPath",
    "ScoreSelector",
    "RandomSelector",
    "AdaptiveSelector",
    "register_method",
    "get_selector",
    "available_methods",
    "mean_diff_score",
    "f_stat_score",
    "mutual_info_score",
    "l1_score",
    "rank_by_score",
    # fitting and metrics
    "fit_logistic_batch",
    "fit_logistic_path",
    "fit_elastic_net_logistic",
    "binary_metrics",
    "binary_metrics_batch",
    # sweeps and results
    "sweep",
    "plan_tasks",
    "run_task",
    "ProbeTask",
    "SweepConfig",
    "DEFAULT_KS",
    "DEFAULT_METHODS",
    "group_train_test_split",
    "splits_path",
    "load_splits",
    "load_results",
    "summarize",
]
