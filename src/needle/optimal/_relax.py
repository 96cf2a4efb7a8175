"""Pieces of every node relaxation: the capped simplex, a cut minimised over a node, working sets.

A node fixes some columns in (``fixed_in``), some out, and leaves ``free``
columns from which ``r`` more may be chosen. Its Boolean relaxation replaces
the binary choice by ``s`` in ``{s_F = 1, 0 <= s_U <= 1, sum(s_U) = r}``; the
perspective of the ridge term makes it jointly convex in the weights and
``s``, solved by alternating a fit at fixed ``s`` with the closed-form best
``s`` at fixed weights, ``s_j = min(1, |w_j| / tau)`` (:func:`capped_simplex`).
Whatever the iterate, the cut of its dual point minimised over the node
(:func:`node_bound`) is a certified bound. The fits differ per loss
(:mod:`needle.probing.osp._relax`, :mod:`needle.optimal._ridge`); these
pieces do not.
"""

from __future__ import annotations

import numpy as np

from needle.optimal._types import Cut

__all__ = ["capped_simplex", "grow_working_set", "initial_working_set", "node_bound", "relaxed_weights",
    "relaxation_done",
           "start_weights"]

# Floor of the smoothed |w| (relative to max |w|) in the s update, so that a column whose
# weight hits zero can come back; it only affects speed, never validity.
_SMOOTH = 1e-4


def capped_simplex(a: np.ndarray, r: float) -> np.ndarray:
    """``s = min(1, a / tau)`` with ``sum(s) = r``, for ``a > 0`` and ``r < len(a)``."""
    desc = np.sort(a)[::-1]
    tail = np.cumsum(desc[::-1])[::-1]  # tail[m] = sum(desc[m:])
    tau = tail[0] / r
    for m in range(int(r)):
        tau = tail[m] / (r - m)
        if desc[m] <= tau:
            break
    return np.minimum(1.0, a / tau)


def start_weights(work: np.ndarray, warm_s: dict, r: int) -> np.ndarray:
    """Relaxed weights for the working set ``work``: the warm ones where known, on the capped simplex."""
    s = np.array([warm_s.get(j, 0.0) for j in work.tolist()]) + 1e-3
    return capped_simplex(s, r) if work.size > r else np.ones(work.size)


def relaxed_weights(a: np.ndarray, r: int) -> np.ndarray:
    """The closed-form best ``s`` for free-weight magnitudes ``a`` (shape ``(len(work),)``), smoothed."""
    return np.maximum(capped_simplex(a + _SMOOTH * max(a.max(), 1e-12), r), 1e-8)


def relaxation_done(best, value, it, *, prune_level, rtol, min_iter, clock, deadline) -> bool:
    """Whether a node's alternation stops: pruned, converged (gap within ``rtol``), good enough, or out of time."""
    if best >= prune_level or value - best <= rtol * max(1.0, abs(value)):
        return True
    if it + 1 >= min_iter and value < prune_level:
        return True
    return clock is not None and clock() > deadline


def node_bound(cut: Cut, fixed_in: np.ndarray, free: np.ndarray, r: int) -> float:
    """The cut minimised over supports ``fixed_in + R``, ``R`` within ``free``, ``|R| = r`` (``q >= 0``)."""
    value = cut.constant - float(cut.q[fixed_in].sum())
    if r > 0:
        qf = cut.q[free]
        value -= float(qf.sum()) if r >= qf.size else float(np.partition(qf, qf.size - r)[qf.size - r :].sum())
    return value


def initial_working_set(free, r, warm_s, hint_q, extra):
    """The parent's weighted columns plus the ``r + extra`` free columns with the largest ``hint_q``."""
    chosen = [j for j in free.tolist() if warm_s.get(j, 0.0) > 1e-3] if warm_s else []
    if hint_q is not None:
        ranked = free[np.argsort(-hint_q[free], kind="stable")].tolist()
        chosen += ranked[: r + extra]
        chosen += ranked[r + extra :][: max(0, r + 1 - len(set(chosen)))]
    else:
        chosen += free.tolist()
    return np.array(sorted(set(chosen)), dtype=np.intp)


def grow_working_set(work, s, free, q, r, max_add=3):
    """Free columns outside the working set whose q exceeds the level of the weighted ones, or None."""
    inside = np.zeros(q.size, dtype=bool)
    inside[work] = True
    outside = free[~inside[free]]
    if outside.size == 0:
        return None
    weighted = q[work][s > 1e-3] if work.size > r else q[work]
    level = weighted.min() if weighted.size else 0.0
    violators = outside[q[outside] > level * (1.0 + 1e-6)]
    if violators.size == 0:
        return None
    violators = violators[np.argsort(-q[violators], kind="stable")[:max_add]]
    return np.sort(np.concatenate([work, violators]))
