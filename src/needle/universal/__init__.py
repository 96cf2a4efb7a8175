"""Universal neurons (thesis Chapter 3): neurons of models trained from different seeds that fire on the same tokens.

* :mod:`needle.universal.family` — which models are compared (toy seed families, published ones).
* :mod:`needle.universal.moments` — mergeable, streaming cross-covariance statistics.
* :mod:`needle.universal.correlate` — every neuron of a reference model against every neuron of the
  others over a token stream, with a random-rotation baseline, reduced to per-neuron summaries.
"""

from needle.universal.family import HUB_FAMILIES, FamilyMember, hub_family, resolve_family

__all__ = ["HUB_FAMILIES", "FamilyMember", "hub_family", "resolve_family"]
