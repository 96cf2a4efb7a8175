"""Entropy neurons (thesis §3.5.2, Figure 3.7): fix a neuron's activation, watch the final norm and the prediction.

An entropy neuron writes a large vector almost orthogonal to the
unembedding: fixing its activation high inflates the final layer norm's
scale ``sqrt(Var(x) + ε)``, which shrinks every logit alike and raises the
next-token entropy while leaving the ranking of the tokens nearly unchanged.
:func:`fixed_activation_sweep` measures, per fixed value, the mean norm scale,
the mean entropy of the next-token distribution, the mean rank of the true
next token (0 = top) and the mean loss; :func:`antipodal_pairs` finds neurons
writing in opposite directions (``cos(w_out, w_out') ≈ −1``), the thesis's
entropy / anti-entropy pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["antipodal_pairs", "entropy_candidates", "fixed_activation_sweep", "random_neurons"]


@torch.inference_mode()
def _measure(model: Any, ids: torch.Tensor, skip_first: bool) -> dict[str, float]:
    import torch.nn.functional as F

    norm = model.final_norm()
    if norm is None:
        raise InputError(f"{model.model_id} has no final norm before its unembedding; the sweep needs a causal LM.")
    seen = {}
    handle = norm.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0]))
    try:
        logits = model.model(input_ids=ids.to(model.device)).logits.float()
    finally:
        handle.remove()
    x = seen["x"].float()
    eps = getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5))
    scale = torch.sqrt(x.var(-1, unbiased=False) + eps)[:, :-1]  # positions that predict a next token
    logits, targets = logits[:, :-1], ids[:, 1:].to(logits.device)
    logp = F.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    true = logits.gather(-1, targets[..., None])
    rank = (logits > true).sum(-1).float()
    loss = -logp.gather(-1, targets[..., None])[..., 0]
    start = 1 if skip_first else 0  # the prediction made at the BOS
    return {name: value[:, start:].reshape(-1) for name, value in
            (("norm_scale", scale), ("entropy", entropy), ("true_rank", rank), ("loss", loss))}


def fixed_activation_sweep(model: Any, sequences: Sequence[np.ndarray], neuron: tuple[int, int],
                           values: Sequence[float], *, skip_first: bool = True, batch_size: int = 16) -> Any:
    """Next-token statistics with ``neuron`` (layer, index) fixed at each of ``values``, and unpatched.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM.
    sequences : sequence of ndarray of int
        Equal-length token sequences (e.g. :func:`needle.universal.tokens.pack_texts`).
    neuron : (int, int)
    values : sequence of float
        Activations to fix the neuron's ``mlp.hook_post`` at, at every position.
    skip_first : bool
        Leave out the prediction made at the first position (the BOS).

    Returns
    -------
    pandas.DataFrame
        One row per value (``value`` NaN for the unpatched model): ``layer``, ``neuron``, ``value``,
        ``norm_scale``, ``entropy``, ``true_rank``, ``loss`` (means over predicted tokens), ``n_tokens``.
    """
    import pandas as pd

    from needle.neurons.ablation import ablated

    if not model.is_causal:
        raise InputError(f"{model.model_id} is an encoder; the entropy sweep needs a causal LM.")
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1 or min(lengths) < 2:
        raise InputError("give equal-length token sequences of at least 2 tokens (pack_texts makes them).")
    ids = torch.tensor(np.stack([np.asarray(s, np.int64) for s in sequences]))
    layer, index = int(neuron[0]), int(neuron[1])
    rows = []
    for value in [None, *values]:
        totals: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            if value is None:
                measured = _measure(model, batch, skip_first)
            else:
                with ablated(model, [(layer, index)], float(value)):
                    measured = _measure(model, batch, skip_first)
            for name, tensor in measured.items():
                totals.setdefault(name, []).append(tensor.cpu())
        means = {name: float(torch.cat(parts).double().mean()) for name, parts in totals.items()}
        rows.append({"layer": layer, "neuron": index, "value": np.nan if value is None else float(value), **means,
                     "n_tokens": int(torch.cat(totals["loss"]).numel())})
    return pd.DataFrame(rows)


def antipodal_pairs(model: Any, *, layers: Sequence[int] | None = None, threshold: float = -0.8) -> Any:
    """Pairs of neurons whose (centred) output weights point in nearly opposite directions.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``neuron``, ``other_layer``, ``other_neuron``, ``cos`` (≤ ``threshold``), most opposite first.
    """
    import pandas as pd

    from needle.universal.stats import preprocessed_weights

    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    outs = [preprocessed_weights(model, layer)["w_out"] for layer in layers]
    ids = [(layer, i) for layer, w in zip(layers, outs) for i in range(w.shape[0])]
    w = torch.cat(outs)
    unit = w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cos = unit @ unit.T
    first, second = torch.nonzero(torch.triu(cos <= threshold, diagonal=1), as_tuple=True)
    rows = [{"layer": ids[a][0], "neuron": ids[a][1], "other_layer": ids[b][0], "other_neuron": ids[b][1],
             "cos": float(cos[a, b])} for a, b in zip(first.tolist(), second.tolist())]
    table = pd.DataFrame(rows, columns=["layer", "neuron", "other_layer", "other_neuron", "cos"])
    return table.sort_values("cos", ignore_index=True)


def entropy_candidates(model: Any, weights: Any, *, last: int = 2) -> list[tuple[int, int, str]]:
    """The thesis's entropy neuron and its antipode: in the last ``last`` layers, the neuron of large weight norm and
    small logit-effect variance, and the neuron of those layers whose ``w_out`` points most nearly opposite.

    The first is the neuron maximising ``pct(weight_norm) − pct(logit_var)`` (percentiles over the last layers'
    neurons): the thesis's L23.945 was the 15th largest norm with the smallest logit variance.

    Parameters
    ----------
    model : ModelAdapter
    weights : pandas.DataFrame
        :func:`~needle.universal.stats.weight_statistics` of ``model`` (with ``logit_var``).
    last : int

    Returns
    -------
    list of (layer, neuron, label)
        ``label`` ``"entropy candidate"`` then ``"antipode (cos …)"``.
    """
    from needle.universal.stats import preprocessed_weights

    if "logit_var" not in weights.columns:
        raise InputError("the weight table has no logit_var; entropy neurons need a causal LM's unembedding.")
    if not 1 <= last <= model.n_layers:
        raise InputError(f"last must be between 1 and {model.n_layers}, not {last}.")
    layers = list(range(model.n_layers - last, model.n_layers))
    part = weights[weights["layer"].isin(layers)]
    score = part["weight_norm"].rank(pct=True) - part["logit_var"].rank(pct=True)
    best = part.loc[score.idxmax()]
    chosen = [(int(best["layer"]), int(best["neuron"]), "entropy candidate")]
    outs = {layer: preprocessed_weights(model, layer)["w_out"] for layer in layers}
    w = outs[chosen[0][0]][chosen[0][1]]
    w = w / w.norm().clamp(min=1e-12)
    best_cos, best_key = 0.0, None
    for layer, out in outs.items():
        cos = (out / out.norm(dim=1, keepdim=True).clamp(min=1e-12)) @ w
        index = int(cos.argmin())
        if float(cos[index]) < best_cos:
            best_cos, best_key = float(cos[index]), (layer, index)
    if best_key is not None:
        chosen.append((*best_key, f"antipode (cos {best_cos:.2f})"))
    return chosen


def random_neurons(model: Any, n: int = 20, *, last: int = 2, seed: int = 0,
                   exclude: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """``n`` distinct neurons drawn uniformly from the last ``last`` layers (seeded), none of ``exclude``."""
    layers = list(range(max(model.n_layers - last, 0), model.n_layers))
    pool = [(layer, i) for layer in layers for i in range(model.n_neurons)
            if (layer, i) not in {tuple(e) for e in exclude}]
    if n > len(pool):
        raise InputError(f"cannot draw {n} random neurons from {len(pool)}; ask for fewer.")
    picks = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    return [pool[i] for i in sorted(picks)]
