"""Sparse probing: select k neurons, fit a probe on them, sweep k, layers and features.

The engine is blind to where the activations come from: it reads a
:class:`ProbeSource` (an :class:`~needle.activations.ActivationCache`, an
:class:`ArraySource`, ...). A feature's target is binary, multiclass or a
regression value. Modules, one job each:

- :mod:`~needle.probing.source` — the ProbeSource protocol and ArraySource;
- :mod:`~needle.probing.preprocessing` — prefilter, standardisation, ranking units;
- :mod:`~needle.probing.scoring` — pure per-neuron scores ``score(X, y, task=...)``;
- :mod:`~needle.probing.selection` — selectors (objects and registered names);
- :mod:`~needle.probing.datafits`, :mod:`~needle.probing.penalties`,
  :mod:`~needle.probing.solvers` — what is minimised, separate from how
  (``solve(X, y, datafit, penalty)``); :mod:`~needle.probing.fitting` holds
  the engine's own batched Newton and elastic-net solvers;
- :mod:`~needle.probing.template` — the one fit template (prefilter →
  standardise → select → refit → input units) every probe runs;
- :mod:`~needle.probing.estimators` — scikit-learn estimators over the template;
- :mod:`~needle.probing.metrics` — per-task metrics;
- :mod:`~needle.probing.splits` — train/test splits by group (or the source's own);
- :mod:`~needle.probing.sweep` — sweeps over (feature, layer, method, k);
- :mod:`~needle.probing.results` — the results table;
- :mod:`~needle.probing.osp` — certified optimal sparse probing.
"""

from needle.probing.constants import BASELINE_METHODS, DEFAULT_KS, DEFAULT_METHODS
from needle.probing.datafits import Logistic, Multinomial, Quadratic
from needle.probing.estimators import (
    DenseProbe,
    RandomDirectionsProbe,
    SparseProbe,
    SparseRegressionProbe,
    random_orthonormal,
)
from needle.probing.fitting import fit_elastic_net_logistic, fit_logistic_batch, fit_logistic_path
from needle.probing.metrics import (
    PRIMARY_METRIC,
    binary_metrics,
    binary_metrics_batch,
    metrics_batch,
    multiclass_metrics_batch,
    primary_metric,
    regression_metrics_batch,
)
from needle.probing.penalties import L0, L2, ElasticNet
from needle.probing.preprocessing import normalize_columns, standardization
from needle.probing.results import load_results, summarize
from needle.probing.scoring import f_stat_score, l1_score, mean_diff_score, mutual_info_score, rank_by_score
from needle.probing.selection import (
    L1,
    AdaptiveSelector,
    FStat,
    MeanDiff,
    MutualInfo,
    RandomSelector,
    ScoreSelector,
    SelectionPath,
    Selector,
    available_methods,
    get_selector,
    register_method,
)
from needle.probing.solvers import solve, solve_path
from needle.probing.source import ArraySource, ProbeSource
from needle.probing.splits import group_train_test_split, load_splits, splits_path
from needle.probing.sweep import ProbeTask, SweepConfig, plan_tasks, run_task, sweep
from needle.probing.template import CrossValidatedC, candidate_neurons, fit_path, method_candidates, prepare

# Registers the "osp" method (an import, not a plugin lookup: it is part of the engine).
from needle.probing.osp import OSPSelector  # noqa: E402  isort: skip
# Registers the whole-layer regression probes "ridge", "pca" and "mlp".
from needle.probing import layer_probes  # noqa: E402,F401  isort: skip

__all__ = [
    # where X comes from
    "ProbeSource",
    "ArraySource",
    # estimators
    "SparseProbe",
    "SparseRegressionProbe",
    "DenseProbe",
    "RandomDirectionsProbe",
    "random_orthonormal",
    # selectors
    "Selector",
    "SelectionPath",
    "ScoreSelector",
    "RandomSelector",
    "MeanDiff",
    "FStat",
    "MutualInfo",
    "L1",
    "AdaptiveSelector",
    "OSPSelector",
    "register_method",
    "get_selector",
    "available_methods",
    "mean_diff_score",
    "f_stat_score",
    "mutual_info_score",
    "l1_score",
    "rank_by_score",
    # the template and its parts
    "prepare",
    "fit_path",
    "CrossValidatedC",
    "candidate_neurons",
    "method_candidates",
    "standardization",
    "normalize_columns",
    "Logistic",
    "Multinomial",
    "Quadratic",
    "L2",
    "ElasticNet",
    "L0",
    "solve",
    "solve_path",
    "fit_logistic_batch",
    "fit_logistic_path",
    "fit_elastic_net_logistic",
    # metrics
    "PRIMARY_METRIC",
    "primary_metric",
    "metrics_batch",
    "binary_metrics",
    "binary_metrics_batch",
    "multiclass_metrics_batch",
    "regression_metrics_batch",
    # sweeps and results
    "sweep",
    "plan_tasks",
    "run_task",
    "ProbeTask",
    "SweepConfig",
    "DEFAULT_KS",
    "DEFAULT_METHODS",
    "BASELINE_METHODS",
    "group_train_test_split",
    "splits_path",
    "load_splits",
    "load_results",
    "summarize",
]
