"""Weight statistics per neuron: what the weights alone say about a layer's neurons.

- ``w_in_norm``, ``b_in`` and their product ``norm_times_bias``: in the
  paper's Figures 2.2c and A.3, neurons used in superposition for compound
  words stand out with a large input norm and a very negative bias (the
  product is strongly negative): they fire rarely and sharply.
- ``cos_in_out`` = cos(w_in, w_out): near +1, a *signal-boosting* neuron
  that amplifies the direction it reads; near −1, a *memory-management*
  neuron that erases it (Neuroscope post, 002; thesis Appendix B.3).
- ``w_out_norm`` and ``weight_decay`` = ||w_in||² + ||w_out||² (Chapter 3).

Weights are the model's own (nothing folded): ``w_in`` reads the output of
the MLP's input norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from needle.models.base import ModelAdapter

__all__ = ["weight_statistics", "cos_in_out_ranking", "WEIGHT_COLUMNS"]

WEIGHT_COLUMNS = ["layer", "neuron", "w_in_norm", "b_in", "norm_times_bias", "w_out_norm", "cos_in_out",
                  "weight_decay"]


def weight_statistics(model: ModelAdapter, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Per-neuron input/output weight statistics.

    Parameters
    ----------
    model : ModelAdapter
    layers : sequence of int, optional
        Default: all layers.

    Returns
    -------
    DataFrame
        Columns :data:`WEIGHT_COLUMNS`, one row per (layer, neuron). For
        gated MLPs ``w_in`` is the gate's weight.
    """
    layers = range(model.n_layers) if layers is None else [int(l) for l in layers]
    frames = []
    for layer in layers:
        model._check_layer(layer)
        w_in = model.w_in(layer).double().cpu()  # (d_model, n_neurons)
        w_out = model.w_out(layer).double().cpu()  # (n_neurons, d_model)
        b_in = model.b_in(layer).double().cpu()
        norm_in = w_in.norm(dim=0)
        norm_out = w_out.norm(dim=1)
        cos = torch.nn.functional.cosine_similarity(w_in.T, w_out, dim=1, eps=1e-12)
        frames.append(pd.DataFrame({
            "layer": layer, "neuron": range(w_in.shape[1]), "w_in_norm": norm_in.numpy(), "b_in": b_in.numpy(),
            "norm_times_bias": (norm_in * b_in).numpy(), "w_out_norm": norm_out.numpy(), "cos_in_out": cos.numpy(),
            "weight_decay": (norm_in**2 + norm_out**2).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)[WEIGHT_COLUMNS]


def cos_in_out_ranking(model: ModelAdapter, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Every neuron ranked by cos(w_in, w_out) (Neuroscope problems 9.24–9.25).

    Parameters
    ----------
    model : ModelAdapter
    layers : sequence of int, optional
        Default: all layers (the ranks are over the neurons of these layers together).

    Returns
    -------
    DataFrame
        :func:`weight_statistics`'s columns plus ``rank_negative`` (1: the most negative cosine:
        the strongest memory-management candidate) and ``rank_positive`` (1: the most positive, the
        strongest signal booster), sorted by ``cos_in_out`` ascending; ties are broken by (layer, neuron)
        so that the order is reproducible.
    """
    table = weight_statistics(model, layers)
    table = table.sort_values(["cos_in_out", "layer", "neuron"], kind="stable").reset_index(drop=True)
    n = len(table)
    table["rank_negative"] = range(1, n + 1)
    table["rank_positive"] = n - table["rank_negative"] + 1
    return table
