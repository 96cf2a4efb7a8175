"""Optimal sparse probing: k-sparse ridge-logistic probes solved to provable optimality.

:func:`solve_osp` solves, for one ``k``,

    minimise over w, b:  sum_i c_i log(1 + exp(-y_i (w.x_i + b))) + ||w||^2 / (2 gamma)
    subject to           ||w||_0 <= k

and returns the probe with a certificate (a proven lower bound, the gap, and
whether it is optimal or the time limit struck); :func:`solve_osp_path` does
several ``k`` sharing work. The method follows Bertsimas, Pauphilet & Van
Parys (2021), "Sparse classification: a scalable discrete optimization
perspective": the optimal value ``c(s)`` on a support ``s`` is convex in
``s``, and the dual of each fixed-support problem gives a cut
(:mod:`._inner` has the derivation). No commercial MIP solver is needed: cuts
and per-node Boolean relaxations (:mod:`._relax`) bound a best-first
branch-and-bound over supports, whose last level bounds every one-column
extension at once (:mod:`._lookahead`). The search itself (the tree, the cut
pool, the incumbent heuristics) is loss-agnostic and lives in
:mod:`needle.optimal`, shared with certified sparse ridge regression; this
package supplies the logistic fits and bounds.

Importing this package registers the ``"osp"`` selection method
(:class:`OSPSelector`) used by ``SparseProbe(method="osp")`` and the sweep.

Choosing gamma
--------------
The certificate is for the objective at the given ``gamma``, and how fast it
comes depends on it: the weaker the ridge (larger gamma), the weaker every
bound. The thesis (A.2.5) notes the trade-off: "this provable optimality is
with respect to the specific level of l2 regularization which often needs to
be turned fairly high to speed up convergence". The default ``gamma = 0.001``
on standardised activations is ten times the ridge of the engine's refit
(scikit-learn's ``C = 0.01``, the paper code's regularisation). Measured with
``benchmarks/osp.py`` on MiniLM / EWT dev (17 part-of-speech features x 6
layers x k = 1..8, top-50 candidates, 2 CPU cores): at 0.001 every one of the
816 problems was certified optimal (median 0.2 s, max 20 s) and the selected
supports' test F1 after the refit was the second best of all methods; at 0.01
(the refit's own ridge) 76 % of a seeded sample of 96 problems were certified within 60 s: all
with k <= 4, half of those with k = 5..8 (open gaps 4-7 %), because the root relaxation's gap is
10-18 % there against about 2 % at 0.001. Pass ``gamma=0.01`` to certify the support for the
refit's own objective, with a longer ``time_limit``. Over the top 256 candidates (``prefilter=256``)
every k <= 4 problem of the benchmark certified at 0.001 (median 0.1 s, max 5.5 s).

What a sweep's certificate covers: the problem over the columns it is given,
which in a sweep are the top ``prefilter`` (50) candidates by mean difference
(``n_candidates`` in every row), not all neurons; and the objective at its own
``gamma``. ``OSPSelector(gamma="refit")`` uses the refit's ``C`` instead.
"""

from needle.optimal._pool import CutPool
from needle.probing.osp._solve import (
    DEFAULT_GAMMA,
    OSPResult,
    solve_osp,
    solve_osp_path,
)
from needle.probing.osp.selector import OSPSelector

__all__ = ["DEFAULT_GAMMA", "CutPool", "OSPResult", "OSPSelector", "solve_osp", "solve_osp_path"]
