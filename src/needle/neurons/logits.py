"""The output side of a neuron: its direct effect on the logits, ``W_U · (γ ⊙ w_out)``.

A neuron adds ``a · w_out`` to the residual stream; through the final norm's
scale ``γ`` and the unembedding ``W_U`` that raises the logit of token ``t``
by ``a · (W_U[:, t] · (γ ⊙ w_out))`` — ignoring the norm's data-dependent
denominator, which scales all tokens alike, and its bias, which adds the
same to every neuron. Chapter 3 of the thesis separates *prediction*
neurons (high kurtosis, positive skew: a few tokens boosted), *suppression*
neurons (high kurtosis, negative skew) and *partition* neurons (high
variance: the vocabulary split in two) by the moments of this vector.

Encoders (BERT, MiniLM) have no unembedding as loaded here (the
sentence-transformers checkpoint has no masked-LM head), so these analyses
raise a clear error for them rather than guess at a decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.neurons.corpus import TokenNames

__all__ = ["LogitEffects", "latent_logit_effects", "latent_write_directions", "logit_effects", "logit_statistics", "final_norm_scale",
           "neuron_logit_vector"]


@dataclass(frozen=True)
class LogitEffects:
    """The direct logit effect of one neuron.

    Attributes
    ----------
    layer, neuron : int
    effects : ndarray of shape (vocab_size,)
        ``W_U · (γ ⊙ w_out)``: logit change per unit of activation.
    table : DataFrame
        The ``top`` largest and smallest effects: columns ``layer, neuron,
        kind ("top"|"bottom"), rank, token_id, token, effect``.
    mean, variance, skew, kurtosis : float
        Moments of ``effects`` over the vocabulary (population variance;
        kurtosis is not excess: 3 for a Gaussian).
    """

    layer: int
    neuron: int
    effects: np.ndarray
    table: pd.DataFrame
    mean: float
    variance: float
    skew: float
    kurtosis: float

    def summary(self) -> dict[str, float]:
        """The moments as a dict (one row of :func:`logit_statistics`)."""
        return {"layer": self.layer, "neuron": self.neuron, "mean": self.mean, "variance": self.variance,
                "skew": self.skew, "kurtosis": self.kurtosis}


def _check_causal(model: ModelAdapter) -> None:
    if not model.is_causal:
        raise InputError(f"{model.model_id} is an encoder ({model.family}) with no unembedding, so neurons have no "
                         "direct effect on next-token logits; logit effects need a causal LM "
                         "(GPT-NeoX, GPT-2, Llama…).")


def final_norm_scale(model: ModelAdapter) -> torch.Tensor:
    """The final norm's elementwise scale ``γ``, shape (d_model,) (ones where there is no norm or no scale).

    Gemma's RMSNorm multiplies by ``1 + weight``; every other supported norm by ``weight``.
    """
    norm = model.final_norm()
    weight = getattr(norm, "weight", None) if norm is not None else None
    if weight is None:
        return torch.ones(model.d_model, dtype=torch.float32)
    weight = weight.detach().float().cpu()
    if "gemma" in type(norm).__name__.lower():
        weight = 1.0 + weight
    return weight


def _moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean, population variance, skew and (non-excess) kurtosis along the last axis, in float64."""
    x = x.double()
    mean = x.mean(-1)
    centred = x - mean[..., None]
    var = (centred**2).mean(-1)
    std = var.sqrt().clamp(min=1e-300)
    return {"mean": mean, "variance": var, "skew": (centred**3).mean(-1) / std**3,
            "kurtosis": (centred**4).mean(-1) / std**4}


def neuron_logit_vector(model: ModelAdapter, layer: int, neurons: Sequence[int] | None = None) -> torch.Tensor:
    """``W_U · (γ ⊙ w_out)`` for neurons of one layer, shape (n_selected, vocab_size), float32 on the CPU."""
    _check_causal(model)
    model._check_layer(layer)
    w_out = model.w_out(layer).float().cpu()
    if neurons is not None:
        index = torch.as_tensor(list(neurons), dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= w_out.shape[0]):
            raise InputError(f"neuron indices must lie in 0..{w_out.shape[0] - 1} for layer {layer}.")
        w_out = w_out[index]
    unembed = model.unembed().float().cpu()
    return (w_out * final_norm_scale(model)) @ unembed


def logit_effects(model: ModelAdapter, layer: int, neuron: int, *, top: int = 20) -> LogitEffects:
    """Direct effect of one neuron on the next-token logits.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM loaded with its head.
    layer, neuron : int
    top : int, default 20
        Tokens listed at each end.

    Returns
    -------
    LogitEffects

    Raises
    ------
    InputError
        The model is an encoder or was loaded without its head.
    """
    return _effects(model, int(layer), int(neuron), neuron_logit_vector(model, int(layer), [int(neuron)])[0], top)


def latent_logit_effects(model: ModelAdapter, site, layer: int, latent: int, *, top: int = 20) -> LogitEffects:
    """Direct effect of one latent of a transformed site (an SAE's, an NMF direction) on the next-token logits.

    The latent writes its decoder row: in the residual stream for a site of width d_model, or through the MLP's
    output weights for a neuron site (``post``). Its effect is ``W_U · (γ ⊙ d)`` for that d_model direction d,
    as for a neuron (:func:`logit_effects`).

    Parameters
    ----------
    model : ModelAdapter
        A causal LM loaded with its head.
    site : Site
        With its transform: an object with ``w_dec`` (n_latents, width) or ``directions()`` of that shape.
    layer, latent : int
    top : int, default 20

    Raises
    ------
    InputError
        No transform, one without decoder directions, or a site whose width is neither d_model nor the neurons.
    """
    _check_causal(model)
    model._check_layer(int(layer))
    rows = latent_write_directions(model, site, int(layer))
    if not 0 <= int(latent) < rows.shape[0]:
        raise InputError(f"latent {latent} does not exist; {site.transform.name} has 0..{rows.shape[0] - 1}.")
    effects = (rows[int(latent)].float() * final_norm_scale(model)) @ model.unembed().float().cpu()
    return _effects(model, int(layer), int(latent), effects, top)


def latent_write_directions(model: ModelAdapter, site, layer: int) -> torch.Tensor:
    """What each latent of a transformed site writes into the residual stream per unit of activation.

    The decoder rows (``w_dec``, or ``directions()``) for a site of width d_model; for a neuron site (``post``)
    the rows through the MLP's output weights, ``w_dec @ W_out``.

    Parameters
    ----------
    model : ModelAdapter
    site : Site
        With its transform.
    layer : int

    Returns
    -------
    Tensor of float32 on the CPU, shape (n_latents, d_model)

    Raises
    ------
    InputError
        No transform, one without decoder directions, or a site whose width is neither d_model nor the neurons.
    """
    transform = getattr(site, "transform", None)
    if transform is None:
        raise InputError("latent logit effects need a transformed site (an SAE's latents); use logit_effects.")
    if hasattr(transform, "w_dec"):
        rows = torch.as_tensor(transform.w_dec)
    elif callable(getattr(transform, "directions", None)):
        rows = torch.as_tensor(np.asarray(transform.directions()))
    else:
        raise InputError(f"the transform {transform.name} has no decoder directions (w_dec or directions()).")
    rows = rows.detach().float().cpu()
    if site.width_of == "n_neurons":
        if site.name != "mlp.hook_post":  # W_out multiplies the neurons after the nonlinearity, not before
            raise InputError(f"latents of {site.name} write nothing through W_out; their logit effects are not "
                             "defined (an SAE of mlp.hook_post's are).")
        rows = rows @ model.w_out(int(layer)).float().cpu()
    elif site.width_of != "d_model":
        raise InputError(f"logit effects of latents of {site.name} ({site.width_of} wide) are not defined here.")
    return rows


def _effects(model: ModelAdapter, layer: int, neuron: int, effects: torch.Tensor, top: int) -> LogitEffects:
    moments = {k: float(v) for k, v in _moments(effects).items()}
    names = TokenNames(model.tokenizer)
    n_names = len(model.tokenizer) if model.tokenizer is not None else 0
    top = max(0, min(int(top), effects.numel()))
    order = torch.argsort(effects, descending=True, stable=True)
    rows = []
    for kind, ids in (("top", order[:top]), ("bottom", order.flip(0)[:top])):
        for rank, t in enumerate(ids.tolist()):
            token = names(t) if t < n_names else f"<unused {t}>"
            rows.append((int(layer), int(neuron), kind, rank, t, token, float(effects[t])))
    table = pd.DataFrame(rows, columns=["layer", "neuron", "kind", "rank", "token_id", "token", "effect"])
    return LogitEffects(int(layer), int(neuron), effects.numpy(), table, **moments)


def logit_statistics(model: ModelAdapter, layers: Sequence[int] | None = None, *, chunk: int = 256) -> pd.DataFrame:
    """Moments of every neuron's logit-effect vector, to find prediction, suppression and partition neurons.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM loaded with its head.
    layers : sequence of int, optional
        Default: all.
    chunk : int, default 256
        Neurons per matrix product (bounds memory to ``chunk × vocab`` floats).

    Returns
    -------
    DataFrame
        One row per neuron: ``layer, neuron, mean, variance, skew, kurtosis,
        max_effect, min_effect``.
    """
    _check_causal(model)
    layers = range(model.n_layers) if layers is None else [int(l) for l in layers]
    frames = []
    for layer in layers:
        for start in range(0, model.n_neurons, chunk):
            index = list(range(start, min(start + chunk, model.n_neurons)))
            effects = neuron_logit_vector(model, layer, index)
            moments = {k: v.numpy() for k, v in _moments(effects).items()}
            frames.append(pd.DataFrame({"layer": layer, "neuron": index, **moments,
                                        "max_effect": effects.max(-1).values.double().numpy(),
                                        "min_effect": effects.min(-1).values.double().numpy()}))
    return pd.concat(frames, ignore_index=True)
