"""Single-neuron analyses: zoom in on a (layer, neuron) found by a sweep.

A neuron is ``(layer, index)`` at a site — ``post`` (after the nonlinearity,
the default) or ``pre`` — as in :mod:`needle.models`; functions accept pairs
or ids like ``"L3.N120"`` (:mod:`~needle.neurons.ids`). Every analysis returns a tidy
:class:`pandas.DataFrame` (plus a small dataclass where a summary is
natural) and has a plot in :mod:`needle.neurons.plots`.

Modules, one analysis each:

- :mod:`~needle.neurons.ids` — reading and printing neuron ids (``L3.N120``);
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

Names are imported on first use, so ``needle.neurons.ids`` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from needle.neurons.ablation import ablate, ablated, ablation_losses, neuron_means
    from needle.neurons.corpus import Corpus
    from needle.neurons.distributions import cache_distributions, class_distributions
    from needle.neurons.dla import LogitAttribution, logit_attribution
    from needle.neurons.errors_browser import probe_errors
    from needle.neurons.firing import firing_statistics
    from needle.neurons.ids import parse_neurons
    from needle.neurons.logits import (
        LogitEffects,
        latent_logit_effects,
        logit_effects,
        logit_statistics,
        neuron_logit_vector,
    )
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
    "firing_statistics",
    "class_distributions",
    "cache_distributions",
    "probe_errors",
    # output side and causal effect (causal LMs)
    "latent_logit_effects",
    "logit_effects",
    "logit_statistics",
    "neuron_logit_vector",
    "LogitEffects",
    "logit_attribution",
    "LogitAttribution",
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

# Where each public name lives: the package imports a module only when one of its names is asked for.
_HOME = {
    "parse_neurons": "ids", "Corpus": "corpus", "top_activations": "top", "DEFAULT_BANDS": "top",
    "token_statistics": "token_stats", "firing_statistics": "firing", "class_distributions": "distributions", "cache_distributions": "distributions",
    "probe_errors": "errors_browser", "logit_effects": "logits", "latent_logit_effects": "logits",
    "logit_statistics": "logits",
    "neuron_logit_vector": "logits", "LogitEffects": "logits", "logit_attribution": "dla", "LogitAttribution": "dla", "ablate": "ablation", "ablation_losses": "ablation",
    "ablated": "ablation", "neuron_means": "ablation", "weight_statistics": "weights",
    "compound_activation": "superposition", "rotation_comparison": "superposition", "random_basis": "superposition",
}
_HOME.update({name: "plots" for name in __all__ if name.startswith("plot_") or name == "save_figure"})


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"needle.neurons.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'needle.neurons' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
