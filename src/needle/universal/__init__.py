"""Universal neurons (thesis Chapter 3): neurons of models trained from different seeds that fire on the same tokens.

* :mod:`needle.universal.family` — which models are compared (toy seed families, published ones).
* :mod:`needle.universal.tokens` — the token stream: texts packed into BOS-led blocks, one tokenizer.
* :mod:`needle.universal.moments` — mergeable, streaming cross-moment statistics (shifted float32 GEMMs
  into float64 sums).
* :mod:`needle.universal.correlate` — every neuron of a reference model against every neuron of the
  others, with a random-rotation baseline, tiled over layer pairs, reduced to per-neuron summaries
  (§3.4.1, Eq. 3.2–3.3).
* :mod:`needle.universal.stats` — activation and weight statistics as layer percentiles (§3.4.2, Fig. 3.3).
* :mod:`needle.universal.explain` — variance-reduction tests and neuron families (§3.4.3, Eq. 3.4), with
  :mod:`~needle.universal.position` (mutual information with the position) and :mod:`~needle.universal.syntax`
  (gold UD labels).
* :mod:`needle.universal.roles` — prediction, suppression and partition neurons (§3.5.1, Fig. 3.6).
* :mod:`needle.universal.entropy` — fixed-activation interventions, entropy candidates and antipodal pairs
  (§3.5.2, Fig. 3.7).
* :mod:`needle.universal.attention` — BOS scores and query path ablation (§3.5.3, Fig. 3.8).
* :mod:`needle.universal.figures` — the chapter's figures from these tables (PNG).

The CLI is ``needle universal correlate | stats | explain | roles | entropy | attention | scope``; the scope
site's universality view is :mod:`needle.scope.universality`.
"""

from needle.universal.correlate import UniversalCorrelations, correlate_activations, correlate_models
from needle.universal.family import HUB_FAMILIES, FamilyMember, hub_family, resolve_family

__all__ = ["HUB_FAMILIES", "FamilyMember", "UniversalCorrelations", "correlate_activations", "correlate_models",
           "hub_family", "resolve_family"]
