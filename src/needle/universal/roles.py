"""Functional roles from the weights (thesis §3.5.1, Figure 3.6): prediction, suppression and partition neurons.

A neuron's direct effect on the logits is ``W_U w_out``. Its moments over the
vocabulary separate three motifs:

* **prediction** — high kurtosis of ``cos(w_out, W_U)`` (a few tokens boosted,
  the rest untouched) with positive skew;
* **suppression** — high kurtosis with negative skew (a few tokens pushed down);
* **partition** — high variance of ``W_U w_out`` (most of the vocabulary moved,
  one part up and the other down) without the heavy tail.

The thesis reads the motifs off kurtosis > 10 (its Figure 3.6c); the
partition cut is the top ``partition_quantile`` of logit variance over all
neurons, as the thesis gives no number. :func:`role_percentiles_by_layer` is
Figure 3.6a–b's table: per layer, percentiles of kurtosis and skew.

:func:`next_token_firing` is the thesis's check on suppression neurons: they
fire more when the next token *is* in the set they push down (§3.5.1).
A neuron's set is the tail of its vocabulary effect ``cos(w_out, W_U)``
beyond ``z`` standard deviations (below for suppression, above for
prediction neurons).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["ROLES", "classify_roles", "next_token_firing", "role_percentiles_by_layer", "token_sets"]

ROLES = ("prediction", "suppression", "partition", "none")


def classify_roles(weights: Any, *, kurtosis_threshold: float = 10.0, partition_quantile: float = 0.95) -> Any:
    """Add a ``role`` column to :func:`~needle.universal.stats.weight_statistics`' table.

    Parameters
    ----------
    weights : pandas.DataFrame
        With ``wu_kurtosis``, ``wu_skew`` and ``logit_var`` (a causal LM's statistics).
    kurtosis_threshold : float, default 10
    partition_quantile : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        A copy with ``role`` in :data:`ROLES`.
    """
    missing = [c for c in ("wu_kurtosis", "wu_skew", "logit_var") if c not in weights.columns]
    if missing:
        raise InputError(f"the weight table lacks {', '.join(missing)}; roles need a causal LM's unembedding.")
    if not 0 < partition_quantile < 1:
        raise InputError(f"partition_quantile must be in (0, 1), not {partition_quantile}.")
    out = weights.copy()
    heavy = out["wu_kurtosis"].to_numpy() > kurtosis_threshold
    skew = out["wu_skew"].to_numpy()
    wide = out["logit_var"].to_numpy() > np.nanquantile(out["logit_var"].to_numpy(), partition_quantile)
    role = np.full(len(out), "none", dtype=object)
    role[wide & ~heavy] = "partition"
    role[heavy & (skew > 0)] = "prediction"
    role[heavy & (skew < 0)] = "suppression"
    out["role"] = role
    return out


def role_percentiles_by_layer(weights: Any, percentiles: Sequence[float] = (5, 25, 50, 75, 95)) -> Any:
    """Per layer, the given percentiles of ``wu_kurtosis`` and ``wu_skew`` (Figure 3.6a–b), long format.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``statistic``, ``percentile``, ``value``.
    """
    import pandas as pd

    rows = []
    for layer, group in weights.groupby("layer"):
        for statistic in ("wu_kurtosis", "wu_skew"):
            values = group[statistic].to_numpy()
            for q, v in zip(percentiles, np.nanpercentile(values, percentiles)):
                rows.append({"layer": int(layer), "statistic": statistic, "percentile": float(q), "value": float(v)})
    return pd.DataFrame(rows)


def token_sets(model: Any, neurons: Sequence[tuple[int, int, str]], *, z: float = 3.0) -> dict[tuple[int, int], Any]:
    """Each neuron's token set: where its ``cos(w_out, W_U)`` lies beyond ``z`` standard deviations of its mean,
    below for ``suppression`` and above otherwise.

    Parameters
    ----------
    neurons : sequence of (layer, neuron, role)

    Returns
    -------
    dict of (layer, neuron) to ndarray of int
        Token ids, most affected first.
    """
    from needle.universal.stats import _unembed, preprocessed_weights

    w_u = _unembed(model)
    w_u = w_u / w_u.norm(dim=0, keepdim=True).clamp(min=1e-12)
    special = np.array(sorted(model.tokenizer.all_special_ids), np.int64)
    out = {}
    cache: dict[int, torch.Tensor] = {}
    for layer, neuron, role in neurons:
        if layer not in cache:
            cache[layer] = preprocessed_weights(model, layer)["w_out"]
        w = cache[layer][neuron]
        effect = ((w / w.norm().clamp(min=1e-12)) @ w_u).numpy()
        effect[special[special < len(effect)]] = np.nan
        score = (effect - np.nanmean(effect)) / np.nanstd(effect)
        sign = -1.0 if role == "suppression" else 1.0
        chosen = np.nonzero(sign * np.nan_to_num(score) > z)[0]
        out[(int(layer), int(neuron))] = chosen[np.argsort(-sign * score[chosen], kind="stable")]
    return out


@torch.inference_mode()
def next_token_firing(model: Any, sequences: Sequence[np.ndarray], neurons: Sequence[tuple[int, int, str]], *,
                      z: float = 3.0, batch_size: int = 32) -> Any:
    """Does a neuron fire more when the next token is in its token set (:func:`token_sets`)?

    Parameters
    ----------
    model : ModelAdapter
        A causal LM.
    sequences : sequence of ndarray of int
        Equal-length BOS-led sequences; the BOS position is left out.
    neurons : sequence of (layer, neuron, role)
    z : float

    Returns
    -------
    pandas.DataFrame
        One row per neuron: ``layer``, ``neuron``, ``role``, ``set_size``, ``n_in`` / ``n_out`` (positions whose next
        token is / is not in the set), ``mean_in`` / ``mean_out`` (mean activation), ``se_in`` / ``se_out``,
        ``fire_in`` / ``fire_out`` (share of activations > 0).
    """
    import pandas as pd

    if not model.is_causal:
        raise InputError(f"{model.model_id} is an encoder; next-token firing needs a causal LM.")
    if len({len(s) for s in sequences}) != 1:
        raise InputError("give equal-length token sequences (pack_texts makes them).")
    sets = token_sets(model, neurons, z=z)
    ids_all = torch.tensor(np.stack([np.asarray(s, np.int64) for s in sequences]))
    layers = sorted({int(n[0]) for n in neurons})
    sums = {key: np.zeros((2, 3)) for key in sets}  # [in, out] x [count, sum, sum of squares]; and firing
    fires = {key: np.zeros(2) for key in sets}
    member = {key: torch.zeros(len(model.tokenizer), dtype=torch.bool) for key in sets}
    for key, chosen in sets.items():
        member[key][torch.from_numpy(chosen)] = True
    for start in range(0, len(ids_all), batch_size):
        ids = ids_all[start:start + batch_size]
        captured = model.capture(ids, torch.ones_like(ids), layers, site="post")
        following = ids[:, 2:]  # next tokens of positions 1 .. T-2
        for key in sets:
            acts = captured[key[0]][:, 1:-1, key[1]].double().cpu()
            inside = member[key][following]
            for side, mask in ((0, inside), (1, ~inside)):
                values = acts[mask]
                sums[key][side] += [values.numel(), float(values.sum()), float((values ** 2).sum())]
                fires[key][side] += float((values > 0).sum())
    rows = []
    roles = {(int(a), int(b)): r for a, b, r in neurons}
    for key, chosen in sets.items():
        row = {"layer": key[0], "neuron": key[1], "role": roles[key], "set_size": len(chosen)}
        for side, name in ((0, "in"), (1, "out")):
            n, s1, s2 = sums[key][side]
            mean = s1 / n if n else np.nan
            var = s2 / n - mean ** 2 if n > 1 else np.nan
            row.update({f"n_{name}": int(n), f"mean_{name}": mean,
                        f"se_{name}": np.sqrt(max(var, 0) / (n - 1)) if n > 1 else np.nan,
                        f"fire_{name}": fires[key][side] / n if n else np.nan})
        rows.append(row)
    return pd.DataFrame(rows)
