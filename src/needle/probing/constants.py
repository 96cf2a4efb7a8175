"""Names shared by the engine, the CLI, the report and the site: one place for every method list.

Adding a selection method never touches this file: methods register themselves
(:func:`needle.probing.selection.register_method`); what is listed here are the
defaults and the names of the rows that are baselines rather than selections.
"""

from __future__ import annotations

__all__ = ["DEFAULT_KS", "DEFAULT_METHODS", "BASELINE_METHODS", "HEATMAP_METHOD_PREFERENCE", "TASKS"]

#: The paper's grid of sparsities (Section 2.5.3, A.2.5): 1..8, 10, 12, then powers of two to 256.
DEFAULT_KS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 128, 256)
#: Methods a sweep runs when none are named (``needle probe`` without ``--methods``).
DEFAULT_METHODS = ("mean_diff", "f_stat", "adaptive")
#: Methods of the baseline rows of a results table (not neuron selections).
BASELINE_METHODS = ("dense", "random_directions")
#: The method shown in layer × k heatmaps: the first of these present in a results table.
HEATMAP_METHOD_PREFERENCE = ("adaptive", "osp", "mean_diff", "f_stat", "l1", "mutual_info", "random")
#: What a feature's target can be (see :mod:`needle.probing.tasks`).
TASKS = ("binary", "multiclass", "regression")
