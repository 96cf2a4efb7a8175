"""Single-neuron analyses: zoom in on a (layer, neuron) found by a sweep.

A neuron is ``(layer, index)`` at a site — ``post`` (after the nonlinearity,
the default) or ``pre`` — as in :mod:`needle.models`; functions accept pairs
or strings like ``"L3N120"``. Every analysis returns a tidy
:class:`pandas.DataFrame` (plus a small dataclass where a summary is
natural) and has a plot in :mod:`needle.neurons.plots`.

Modules, one analysis each:

- :mod:`~needle.neurons.corpus` — :class:`Corpus`, what the analyses stream over;
- :mod:`~needle.neurons.top` — max-/min-activating examples and quantile-band samples;
- :mod:`~needle.neurons.token_stats` — count, mean, max per vocabulary token (and label);
- :mod:`~needle.neurons.distributions` — pre/post activations by class for a feature;
- :mod:`~needle.neurons.errors_browser` — a probe's false positives and negatives in context;
- :mod:`~needle.neurons.logits` — direct logit effects and their moments (causal LMs);
- :mod:`~needle.neurons.ablation` — change in next-token loss by label when neurons are ablated;
- :mod:`~needle.neurons.weights` — input norm, bias, their product, cos(w_in, w_out);
- :mod:`~needle.neurons.superposition` — compound words vs look-alikes; neuron basis vs rotations;
- :mod:`~needle.neurons.plots` — one figure per analysis.
"""

from needle.neurons._common import parse_neurons
from needle.neurons.ablation import ablate, ablated, ablation_losses, neuron_means
from needle.neurons.corpus import Corpus
from needle.neurons.distributions import cache_distributions, class_distributions
from needle.neurons.errors_browser import probe_errors
from needle.neurons.logits import LogitEffects, logit_effects, logit_statistics, neuron_logit_vector
from needle.neurons.plots import (
    plot_ablation,
    plot_class_distributions,
    plot_compound_activation,
    plot_logit_effects,
    plot_logit_statistics,
    plot_probe_errors,
    plot_rotation_comparison,
    plot_token_statistics,
    plot_top_activations,
    plot_weight_statistics,
    save_figure,
)
from needle.neurons.superposition import compound_activation, random_basis, rotation_comparison
from needle.neurons.token_stats import token_statistics
from needle.neurons.top import DEFAULT_BANDS, top_activations
from needle.neurons.weights import weight_statistics

__all__ = [
    # what to analyse
    "Corpus",
    "parse_neurons",
    # activations
    "top_activations",
    "DEFAULT_BANDS",
    "token_statistics",
    "class_distributions",
    "cache_distributions",
    "probe_errors",
    # output side and causal effect (causal LMs)
    "logit_effects",
    "logit_statistics",
    "neuron_logit_vector",
    "LogitEffects",
    "ablate",
    "ablation_losses",
    "ablated",
    "neuron_means",
    # weights and superposition
    "weight_statistics",
    "compound_activation",
    "rotation_comparison",
    "random_basis",
    # plots
    "plot_top_activations",
    "plot_token_statistics",
    "plot_class_distributions",
    "plot_probe_errors",
    "plot_logit_effects",
    "plot_logit_statistics",
    "plot_ablation",
    "plot_weight_statistics",
    "plot_compound_activation",
    "plot_rotation_comparison",
    "save_figure",
]
