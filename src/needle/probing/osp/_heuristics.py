"""Incumbents for the logistic search: the mean-difference top-k, and the shared heuristics.

Greedy forward selection, swap search and backward shrinking are the same for
every loss and live in :mod:`needle.optimal._heuristics`; re-exported here.
"""

from __future__ import annotations

import numpy as np

from needle.optimal._heuristics import Evaluator, greedy_support, shrink_support, swap_search
from needle.probing.osp._problem import OSPProblem

__all__ = ["Evaluator", "greedy_support", "mean_difference_support", "shrink_support", "swap_search"]


def mean_difference_support(problem: OSPProblem, k: int) -> tuple[int, ...]:
    """The ``k`` columns with the largest ``|mean_P x_j - mean_N x_j|`` (ties to the lower id)."""
    pos = problem.y > 0
    score = np.abs(problem.X[pos].mean(axis=0) - problem.X[~pos].mean(axis=0))
    # A stable sort on -score keeps equal scores in column order: deterministic ties.
    return tuple(sorted(np.argsort(-score, kind="stable")[:k].tolist()))
