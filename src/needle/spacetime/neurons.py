"""Space and time neurons (§4.5): neurons aligned with a residual probe's direction, and their ablation.

A residual-stream probe at layer ``L`` is a direction ``w`` in ``d_model``
space. A neuron *reads* a direction through its input weights (a column of
``w_in``, shape (d_model,)) and *writes* one through its output weights (a row
of ``w_out``). :func:`aligned_neurons` ranks every neuron of the model by the
cosine of those weights with ``w``; :func:`neuron_projections` projects the
cached residual activations onto a neuron's input weights (what the neuron
sees) and correlates that with the true coordinate or year, per entity type
where the dataset has them. :func:`ablation_effect` zeroes the most aligned
neurons of layers ``≤ L`` during the forward pass, re-reads the residual
stream at the entities' last name token, and measures how much the probe's
predictions on held-out entities change, against ablating as many random
neurons of the same layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from needle.errors import InputError

__all__ = ["aligned_neurons", "alignment_null", "neuron_projections", "resid_at_entities", "ablation_effect"]


def _unit(v: np.ndarray, axis: int = 0) -> np.ndarray:
    norm = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def aligned_neurons(model: Any, direction: np.ndarray, *, layers: Sequence[int] | None = None,
                    top: int = 20) -> pd.DataFrame:
    """Neurons whose input or output weights have the largest |cosine| with ``direction``.

    Parameters
    ----------
    model : ModelAdapter
    direction : ndarray of shape (d_model,)
        A residual probe's coefficients (e.g. a ridge probe's ``coef`` on ``hook_resid_post``).
    layers : sequence of int, optional
        Default: every layer.
    top : int, default 20

    Returns
    -------
    DataFrame
        ``layer``, ``neuron``, ``cos_in``, ``cos_out``, ``score`` (the larger |cosine|),
        sorted by ``score``, ``top`` rows.
    """
    direction = _unit(np.asarray(direction, np.float64).ravel())
    if direction.size != model.d_model:
        raise InputError(f"the direction has {direction.size} entries; {model.model_id}'s residual stream has "
                         f"{model.d_model}. Use a probe of a hook_resid_* site.")
    frames = []
    for layer in range(model.n_layers) if layers is None else layers:
        w_in = model.w_in(layer).detach().double().cpu().numpy()  # (d_model, n_neurons)
        w_out = model.w_out(layer).detach().double().cpu().numpy()  # (n_neurons, d_model)
        cos_in = direction @ _unit(w_in, axis=0)
        cos_out = _unit(w_out, axis=1) @ direction
        frames.append(pd.DataFrame({"layer": layer, "neuron": np.arange(w_in.shape[1]), "cos_in": cos_in,
                                    "cos_out": cos_out}))
    table = pd.concat(frames, ignore_index=True)
    table["score"] = np.maximum(np.abs(table.cos_in), np.abs(table.cos_out))
    return table.sort_values(["score", "layer", "neuron"], ascending=[False, True, True]).head(top).reset_index(drop=True)


def alignment_null(model: Any, *, layers: Sequence[int] | None = None, draws: int = 5, seed: int = 0) -> np.ndarray:
    """The best |cosine| any neuron reaches with random directions: what :func:`aligned_neurons` finds by chance.

    In ``d_model`` dimensions a random direction's cosine with a fixed vector is
    about ``N(0, 1/d_model)``, and the best of thousands of neurons is several
    of those standard deviations; a probe's top neurons mean something only above this.

    Returns
    -------
    ndarray of shape (draws,)
        The top ``score`` for each of ``draws`` Gaussian directions.
    """
    rng = np.random.default_rng([seed, 7])
    return np.array([float(aligned_neurons(model, rng.normal(size=model.d_model), layers=layers, top=1).score[0])
                     for _ in range(draws)])


def neuron_projections(model: Any, resid: np.ndarray, neurons: pd.DataFrame, target: np.ndarray,
                       entity_type: np.ndarray | None = None) -> pd.DataFrame:
    """Spearman correlation of ``resid @ w_in[:, n]`` with the target, overall and per entity type.

    Parameters
    ----------
    resid : ndarray of shape (n_entities, d_model)
        Residual activations (the layer the neuron reads is the caller's choice).
    neurons : DataFrame with ``layer`` and ``neuron``
    target : ndarray of shape (n_entities,)
    entity_type : ndarray of shape (n_entities,), optional

    Returns
    -------
    DataFrame
        One row per (neuron, type): ``layer``, ``neuron``, ``type`` ("all" for every entity), ``n``, ``spearman``.
    """
    from scipy.stats import spearmanr

    records = []
    for layer, neuron in zip(neurons.layer, neurons.neuron):
        w = model.w_in(int(layer))[:, int(neuron)].detach().double().cpu().numpy()
        projection = np.asarray(resid, np.float64) @ w
        groups = [("all", np.ones(len(target), bool))]
        if entity_type is not None:
            groups += [(str(t), entity_type == t) for t in np.unique(entity_type) if t and (entity_type == t).sum() >= 10]
        for name, rows in groups:
            rho = spearmanr(projection[rows], target[rows]).statistic if rows.sum() > 2 else np.nan
            records.append({"layer": int(layer), "neuron": int(neuron), "type": name, "n": int(rows.sum()),
                            "spearman": float(rho)})
    return pd.DataFrame.from_records(records)


def resid_at_entities(model: Any, dataset: Any, sequences: np.ndarray, positions: np.ndarray, layer: int, *,
                      ablate: Sequence[tuple[int, int]] = (), batch_size: int = 64) -> np.ndarray:
    """``hook_resid_post`` of ``layer`` at one position per sequence, optionally with neurons zeroed.

    Returns
    -------
    ndarray of shape (n, d_model), float32
    """
    from contextlib import nullcontext

    import torch

    from needle.neurons.ablation import ablated

    pad = model.tokenizer.pad_token_id if getattr(model, "tokenizer", None) is not None else 0
    pad = 0 if pad is None else int(pad)
    out = np.zeros((len(sequences), model.d_model), np.float32)
    context = ablated(model, list(ablate), 0.0) if len(ablate) else nullcontext()
    with context:
        for start in range(0, len(sequences), batch_size):
            chunk = np.arange(start, min(start + batch_size, len(sequences)))
            tokens = [dataset.tokens[int(sequences[i])] for i in chunk]
            width = max(len(t) for t in tokens)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, t in enumerate(tokens):
                ids[row, : len(t)] = torch.as_tensor(t, dtype=torch.long)
                mask[row, : len(t)] = 1
            index = torch.as_tensor(positions[chunk], dtype=torch.long)
            taken = model.capture(ids, mask, [layer], site="resid",
                                  reduce=lambda _, a: a[torch.arange(len(chunk)), index.to(a.device)].float().cpu())
            out[chunk] = taken[layer].numpy()
    return out


def ablation_effect(model: Any, dataset: Any, sequences: np.ndarray, positions: np.ndarray, layer: int,
                    probe: Any, target: np.ndarray, neurons: Sequence[tuple[int, int]], *,
                    n_random: int = 3, seed: int = 0) -> pd.DataFrame:
    """How much zeroing ``neurons`` changes a residual probe's held-out predictions, against random neurons.

    Parameters
    ----------
    probe : object with ``predict(X) -> (n, 1)`` (a :class:`~needle.probing.ridge.RidgePath`)
    target : ndarray of shape (n,)
        True values of the entities (for R²).
    neurons : sequence of (layer, neuron)
        Each in a layer ``≤ layer`` (later ones cannot change this residual stream).
    n_random : int, default 3
        Draws of as many random neurons, from the same layers, as controls.

    Returns
    -------
    DataFrame
        One row per condition (``none``, ``aligned``, ``random 1`` …): ``r2``, ``mean_abs_change``
        (mean |Δ prediction|) and ``relative_change`` (that over the std of the unablated predictions).
    """
    neurons = [(int(l), int(n)) for l, n in neurons]
    if any(l > layer for l, _ in neurons):
        raise InputError(f"neurons after layer {layer} cannot change its residual stream; keep layers <= {layer}.")
    rng = np.random.default_rng([seed, 45])
    conditions = [("none", []), ("aligned", neurons)]
    for draw in range(n_random):
        conditions.append((f"random {draw + 1}", [(l, int(rng.integers(model.n_neurons))) for l, _ in neurons]))
    base = None
    records = []
    target = np.asarray(target, np.float64)
    for name, ablate in conditions:
        X = resid_at_entities(model, dataset, sequences, positions, layer, ablate=ablate)
        pred = probe.predict(X)[:, 0]
        if base is None:
            base = pred
        change = np.abs(pred - base)
        r2 = 1 - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2)
        records.append({"condition": name, "neurons": len(ablate), "r2": float(r2),
                        "mean_abs_change": float(change.mean()), "relative_change": float(change.mean() / base.std())})
    return pd.DataFrame.from_records(records)
