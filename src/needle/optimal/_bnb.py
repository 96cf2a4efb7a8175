"""Best-first branch-and-bound over supports, bounded by cuts and node relaxations.

Nodes fix columns in or out. A node is discarded when a lower bound on every
support it contains reaches the incumbent's objective (minus the tolerance).
Three steps, cheapest first:

1. the cut pool (every dual point seen so far, each minimised over the node's
   supports) — the outer approximation of Bertsimas, Pauphilet & Van Parys
   (2021), evaluated combinatorially instead of by a MIP;
2. reduced-cost fixing on the same cuts (:meth:`CutPool.forced_bounds`): a
   column every support with which is pruned leaves the node, one without
   which every support is pruned is forced in;
3. the node's Boolean relaxation (``problem.relax_node``; see
   :mod:`needle.optimal._relax`), which also proposes a rounding (an incumbent
   candidate) and the branching column.

A node that needs one more column bounds all its extensions at once
(``problem.extension_bounds``). The search is the same for every loss: the
problem object (see :mod:`needle.optimal._types`) supplies the fits and bounds.

The lower bound reported at any time is the smallest bound over the open and
discarded nodes, so it is a certificate even when the search is cut short.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from needle.optimal._heuristics import Evaluator
from needle.optimal._types import SupportFit

__all__ = ["SearchResult", "branch_and_bound"]

# Cuts each node bound and each fixing look at (any subset of the pool gives valid bounds).
_RECENT_CUTS = 256


@dataclass(order=True)
class _Node:
    bound: float
    depth_key: int  # -depth: among equal bounds, go deeper first (finds incumbents sooner)
    order: int
    fixed_in: tuple[int, ...] = field(compare=False)
    excluded: frozenset = field(compare=False)
    s: dict | None = field(compare=False, default=None)  # parent's relaxation weights (warm start)
    theta: dict | None = field(compare=False, default=None)  # parent's (w, b) by column (warm start)
    hint_q: np.ndarray | None = field(compare=False, default=None)  # parent's cut: which columns matter


@dataclass
class SearchResult:
    best: SupportFit
    bound: float
    optimal: bool
    n_nodes: int


class _Search:
    def __init__(self, evaluate: Evaluator, k: int, incumbent: SupportFit, atol: float, rtol: float, deadline: float):
        self.evaluate = evaluate
        self.problem = evaluate.problem
        self.pool = evaluate.pool
        self.k = k
        self.best = incumbent
        self.atol, self.rtol = atol, rtol
        self.deadline = deadline
        self.closed_bound = np.inf  # smallest bound among discarded nodes
        self.counter = itertools.count()
        self.n_nodes = 0
        self.hint_q = incumbent.cut.q  # which columns matter, until a relaxation says better

    def prune_level(self) -> float:
        if not np.isfinite(self.best.value):  # no feasible incumbent yet (constrained problems)
            return np.inf
        return self.best.value - max(self.atol, self.rtol * abs(self.best.value))

    def offer(self, fit: SupportFit) -> None:
        if fit.value < self.best.value:
            self.best = fit

    def close(self, bound: float) -> None:
        self.closed_bound = min(self.closed_bound, bound)

    def leaf(self, support, warm=None) -> None:
        fit = self.evaluate(support, warm=warm)
        self.offer(fit)
        self.close(fit.cut.constant - float(fit.cut.q[list(fit.support)].sum()))

    def last_level(self, fixed_in: tuple[int, ...], free: np.ndarray, node_bound: float) -> None:
        """Close a node that needs one more column: bound every extension at once, fit the survivors."""
        base = self.evaluate(fixed_in)
        bounds, starts = self.problem.extension_bounds(base, free)
        bounds = np.maximum(bounds, node_bound)
        for pick in np.argsort(bounds, kind="stable"):
            if bounds[pick] >= self.prune_level() or time.perf_counter() > self.deadline:
                # Sorted: this bound covers every extension not fitted.
                self.close(float(bounds[pick]))
                return
            j = int(free[pick])
            warm = dict(zip(base.support, starts[:-2, pick].tolist()), b=float(starts[-2, pick]))
            warm[j] = float(starts[-1, pick])
            self.leaf(fixed_in + (j,), warm=warm)

    def fix_columns(self, fixed_in: tuple[int, ...], excluded: frozenset, free: np.ndarray, r: int):
        """Reduced-cost fixing on the pool's cuts: drop and force in the free columns the cuts decide.

        A free column every support with which the cuts prune is dropped; one
        without which every support is pruned is forced in. Returns ``(fixed_in,
        excluded, free, with_column, without_column)`` of the node that holds
        every support of this one the cuts cannot prune (the last two: the
        cuts' bounds of the node's supports with and without each remaining
        free column), or None when none is left. Each discarded part is closed
        at its bound, so the reported bound stays valid.
        """
        with_column, without_column = self.pool.forced_bounds(
            np.array(fixed_in, dtype=np.intp), free, r, recent=_RECENT_CUTS)
        level = self.prune_level()
        drop, force = with_column >= level, without_column >= level
        both = drop & force
        if both.any():
            # Every support either holds such a column or lacks it.
            self.close(float(np.minimum(with_column, without_column)[both].max()))
            return None
        if force.sum() > r:
            # Every support lacks one of the forced columns.
            self.close(float(without_column[force].min()))
            return None
        if drop.any():
            self.close(float(with_column[drop].min()))
        if force.any():
            self.close(float(without_column[force].min()))
            fixed_in = tuple(sorted(fixed_in + tuple(free[force].tolist())))
        excluded = excluded | frozenset(free[drop].tolist())
        keep = ~(drop | force)
        return fixed_in, excluded, free[keep], with_column[keep], without_column[keep]

    def ranked(self, relax, free: np.ndarray):
        """The relaxation's weights on ``free``, its cut coefficients, and ``free``'s positions by weight then cut."""
        weight = np.array([relax.s.get(j, 0.0) for j in free.tolist()])
        hint = relax.cut.q if relax.cut is not None else self.hint_q
        return weight, hint, np.lexsort((-hint[free], -weight))

    def process(self, node: _Node, max_iter: int, min_iter: int) -> list[_Node]:
        """Bound, fix, round and branch one node; return its children."""
        self.n_nodes += 1
        d = self.problem.n_columns
        fixed, excluded = node.fixed_in, node.excluded
        taken = set(fixed) | excluded
        free = np.array([j for j in range(d) if j not in taken], dtype=np.intp)
        bound = node.bound
        relax = None
        # Fix columns on the pool's cuts, relax, fix again with the relaxation's cut in the pool; every
        # shrinking of the node re-checks the leaf cases and the bound (free only shrinks: this ends).
        while True:
            r = self.k - len(fixed)
            if r == 0:
                self.leaf(fixed)
                return []
            if free.size <= r:
                # Adding columns never hurts (c is non-increasing in s): take all that are left.
                self.leaf(fixed + tuple(free.tolist()))
                return []
            fixed_in = np.array(fixed, dtype=np.intp)
            # The latest cuts come from this part of the tree; older ones seldom decide.
            bound = max(bound, self.pool.bound(fixed_in, free, r, recent=_RECENT_CUTS))
            if bound >= self.prune_level():
                self.close(bound)
                return []
            reduced = self.fix_columns(fixed, excluded, free, r)
            if reduced is None:
                return []
            shrunk = reduced[2].size != free.size
            fixed, excluded, free, with_column, without_column = reduced
            if shrunk:
                continue
            if relax is not None:
                break
            if r == 1:
                self.last_level(fixed, free, bound)
                return []
            relax = self.problem.relax_node(
                fixed_in,
                free,
                r,
                prune_level=self.prune_level(),
                warm_s=node.s,
                warm_theta=node.theta,
                hint_q=self.hint_q if node.hint_q is None else node.hint_q,
                max_iter=max_iter,
                min_iter=min_iter,
                deadline=self.deadline,
                clock=time.perf_counter,
            )
            if relax.cut is not None:
                self.pool.add(relax.cut)
            bound = max(bound, relax.bound)
            # Rounding: the r free columns the relaxation weighs most (ties by cut coefficient).
            weight, hint, order = self.ranked(relax, free)
            self.offer(self.evaluate(fixed + tuple(free[order[:r]].tolist())))
        weight, hint, order = self.ranked(relax, free)  # fixing may have shrunk free since the rounding
        # Branch on the most fractional relaxation weight. (Tried: the column whose two children the
        # cuts bound highest; ten times the nodes.) The cuts still give each child a head-start bound.
        fractional = np.where(weight < 1.0 - 1e-9, weight, -1.0)
        pick = int(np.argmax(fractional)) if fractional.max() > 0 else int(order[0])
        j = int(free[pick])
        depth = len(fixed) + len(excluded) + 1
        children = (
            (tuple(sorted(fixed + (j,))), excluded, max(bound, float(with_column[pick]))),
            (fixed, excluded | {j}, max(bound, float(without_column[pick]))),
        )
        return [
            _Node(child_bound, -depth, next(self.counter), child_fixed, child_excluded, relax.s, relax.theta, hint)
            for child_fixed, child_excluded, child_bound in children
        ]


def branch_and_bound(
    evaluate: Evaluator,
    k: int,
    incumbent: SupportFit,
    *,
    deadline: float,
    rtol: float,
    atol: float,
    root_iter: int = 120,
    node_iter: int = 30,
    max_nodes: int | None = None,
) -> SearchResult:
    """Search all supports of size ``k`` for one with a lower objective than ``incumbent``, to a certified gap.

    Parameters
    ----------
    evaluate : Evaluator
        Exact fits (cached, feeding the cut pool).
    k : int
        Support size, ``1 <= k < n_neurons``.
    incumbent : SupportFit
        Best known support (from the heuristics).
    deadline : float
        ``time.perf_counter()`` value at which to stop.
    rtol, atol : float
        A node is discarded when its bound is within ``max(atol, rtol * |best|)`` of the incumbent.
    root_iter, node_iter : int
        Relaxation iterations at the root and at other nodes.
    max_nodes : int, optional
        Stop after this many nodes (a deterministic stand-in for the deadline, for tests).

    Returns
    -------
    SearchResult
        ``bound`` is a lower bound on the optimum; ``optimal`` says whether the tree was exhausted.
    """
    search = _Search(evaluate, k, incumbent, atol, rtol, deadline)
    d = evaluate.problem.n_columns
    # The objective is a sum of non-negative terms, so 0 bounds it before any work.
    root_bound = max(0.0, evaluate.pool.bound(np.empty(0, dtype=np.intp), np.arange(d), k))
    heap = [_Node(root_bound, 0, next(search.counter), (), frozenset())]
    first = True
    while heap:
        if time.perf_counter() > deadline or search.n_nodes == max_nodes:
            break
        node = heapq.heappop(heap)
        if node.bound >= search.prune_level():
            search.close(node.bound)
            continue
        # The root relaxation runs on even when it cannot prune: its bound is
        # the certificate reported if the search is cut short.
        iters = (root_iter, root_iter // 4) if first else (node_iter, 2)
        for child in search.process(node, *iters):
            heapq.heappush(heap, child)
        first = False
    open_bound = heap[0].bound if heap else np.inf
    bound = min(open_bound, search.closed_bound, search.best.value)
    return SearchResult(best=search.best, bound=bound, optimal=not heap, n_nodes=search.n_nodes)
