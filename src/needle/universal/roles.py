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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.errors import InputError

__all__ = ["ROLES", "classify_roles", "role_percentiles_by_layer"]

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
