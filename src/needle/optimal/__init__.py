"""Certified L0-constrained solvers, shared by optimal sparse probing and sparse regression.

One search serves every loss: outer-approximation cuts from the dual of each
fixed-support problem, per-node Boolean relaxations and a best-first
branch-and-bound over supports (Bertsimas, Pauphilet & Van Parys 2021;
Bertsimas & Van Parys 2020), with no MIP solver. Every answer comes with its
certificate: the objective, a proven lower bound, the gap and the status.

- :func:`solve_sparse_ridge` / :func:`solve_sparse_ridge_path` — k-sparse
  ridge regression, for one target or several under one budget (MIO-SINDy's
  (5.17)-(5.18)), with linear equality and inequality constraints on the
  stacked coefficients (§5.2.3 of the thesis);
- :func:`needle.probing.osp.solve_osp` — the ridge-logistic form (optimal
  sparse probing), on the same search.

Modules: :mod:`._types` (what the search exchanges with a problem),
:mod:`._pool` (cuts and cached fits), :mod:`._heuristics` (incumbents),
:mod:`._relax` (relaxation pieces), :mod:`._bnb` (the tree),
:mod:`._certify` (one ``k``), :mod:`._ridge` (the least-squares problem and
its derivation), :mod:`.ridge` (entry points).
"""

from needle.optimal._pool import CutPool
from needle.optimal.ridge import SparseRidgeResult, ridge_objective, solve_sparse_ridge, solve_sparse_ridge_path

__all__ = ["CutPool", "SparseRidgeResult", "ridge_objective", "solve_sparse_ridge", "solve_sparse_ridge_path"]
