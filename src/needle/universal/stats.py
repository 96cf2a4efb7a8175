"""Per-neuron statistics of activations and weights (thesis §3.4.2, Figure 3.3), and how universal neurons differ.

Activations, streamed over a token stream in mergeable power sums
(:class:`PowerSums`): the **pre-activation** mean, skew and kurtosis (Pearson's,
3 for a Gaussian) and the **activation frequency**, the share of tokens whose
neuron value (after the nonlinearity) is above zero.

Weights, after the thesis's preprocessing (B.2.1, as TransformerLens does it):
the layer norm before the MLP is folded into ``w_in`` (``diag(γ) w_in``, bias
``b_in + βᵀ w_in``) where the block has one, ``w_in`` and ``w_out`` are
centred over the residual dimensions (a layer norm projects the all-ones
direction out), the final norm's ``γ`` is folded into ``W_U`` and ``W_U`` is
centred over the residual dimensions and over the vocabulary (softmax ignores
a shift). Then per neuron: the input bias, ``cos(w_in, w_out)``, the
weight-decay penalty ``‖w_in‖² + ‖w_out‖²``, and the moments over the
vocabulary of ``cos(w_out, W_U)`` (kurtosis, skew) and of the logit effect
``W_U w_out`` (variance) — the prediction / suppression / partition scores
of §3.5.1.

:func:`layer_percentiles` turns every column into its percentile within the
neuron's layer (the thesis's normalisation), and :func:`compare_universal`
summarises universal against other neurons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["PowerSums", "activation_statistics", "compare_universal", "layer_percentiles", "weight_statistics",
           "preprocessed_weights"]

#: Columns of :func:`activation_statistics` and :func:`weight_statistics` (what the percentiles are taken of).
ACTIVATION_COLUMNS = ("pre_mean", "pre_skew", "pre_kurtosis", "activation_frequency")
WEIGHT_COLUMNS = ("input_bias", "cos_in_out", "weight_norm", "wu_kurtosis", "wu_skew", "logit_var")


class PowerSums:
    """Mergeable sums of the first four powers of shifted values, per variable, in float64.

    The shift (the first batch's mean) keeps the sums small, so the central
    moments formed at the end do not cancel.

    Parameters
    ----------
    p : int
    """

    def __init__(self, p: int) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sums = torch.zeros(4, p, dtype=torch.float64)
        self.positive = torch.zeros(p, dtype=torch.float64)

    def update(self, values: torch.Tensor, positive: torch.Tensor | None = None) -> None:
        """Add a batch of shape (n, p); ``positive`` (n, p) booleans are counted for the frequency."""
        values = values.double().cpu()
        if self.shift is None:
            self.shift = values.mean(0)
        x = values - self.shift
        power = torch.ones_like(x)
        for k in range(4):
            power = power * x
            self.sums[k] += power.sum(0)
        if positive is not None:
            self.positive += positive.double().sum(0).cpu()
        self.n += values.shape[0]

    def merge(self, other: PowerSums) -> PowerSums:
        """Add another state with the same shift (shards of one stream), or into an empty one."""
        if self.n == 0:
            self.n, self.shift, self.sums, self.positive = other.n, other.shift, other.sums.clone(), other.positive.clone()
            return self
        if not torch.equal(self.shift, other.shift):
            raise InputError("PowerSums merge needs the same shift; update shards with the first shard's shift.")
        self.n += other.n
        self.sums += other.sums
        self.positive += other.positive
        return self

    def moments(self) -> dict[str, np.ndarray]:
        """``mean``, ``variance`` (population), ``skew``, ``kurtosis`` (Pearson, not excess) and ``frequency``."""
        if self.n < 2:
            raise InputError("neuron statistics need at least two tokens.")
        n = self.n
        m1, m2, m3, m4 = (self.sums[k] / n for k in range(4))
        var = m2 - m1 ** 2
        mu3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
        mu4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
        safe = torch.where(var > 0, var, torch.ones_like(var))
        skew = torch.where(var > 0, mu3 / safe ** 1.5, torch.full_like(var, float("nan")))
        kurt = torch.where(var > 0, mu4 / safe ** 2, torch.full_like(var, float("nan")))
        return {"mean": (self.shift + m1).numpy(), "variance": var.clamp(min=0).numpy(), "skew": skew.numpy(),
                "kurtosis": kurt.numpy(), "frequency": (self.positive / n).numpy()}


def activation_statistics(model: Any, sequences: Sequence[np.ndarray], *, layers: Sequence[int] | None = None,
                          exclude_token_ids: Sequence[int] = (), skip_first: bool = True, pad_id: int = 0,
                          batch_tokens: int = 8192) -> Any:
    """Pre-activation moments and activation frequency of every neuron, streamed over ``sequences``.

    The same tokens count as in :func:`~needle.universal.correlate.correlate_models`
    (BOS, padding and ``exclude_token_ids`` left out).

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``neuron``, ``pre_mean``, ``pre_skew``, ``pre_kurtosis``,
        ``activation_frequency`` (share of tokens with ``mlp.hook_post > 0``), ``n_tokens``.
    """
    import pandas as pd

    from needle.activations.stream import plan_batches, stream_batches

    sequences = [np.asarray(s, np.int64) for s in sequences if len(s)]
    if not sequences:
        raise InputError("no token sequences to stream; give some text.")
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    plan = plan_batches(np.array([len(s) for s in sequences]), np.arange(len(sequences)), batch_tokens, 256)
    excluded = torch.tensor(sorted(set(int(t) for t in exclude_token_ids)), dtype=torch.long)
    sums = {layer: PowerSums(model.n_neurons) for layer in layers}
    for batch in stream_batches(sequences, None, plan, pad_id=pad_id):
        keep = batch.attention_mask.bool()
        if skip_first:
            keep[:, 0] = False
        if len(excluded):
            keep &= ~torch.isin(batch.input_ids, excluded)
        pre = model.capture(batch.input_ids, batch.attention_mask, layers, site="pre")
        post = model.capture(batch.input_ids, batch.attention_mask, layers, site="post")
        keep = keep.to(model.device)
        for layer in layers:
            sums[layer].update(pre[layer][keep], post[layer][keep] > 0)
    frames = []
    for layer in layers:
        moments = sums[layer].moments()
        frames.append(pd.DataFrame({"layer": layer, "neuron": np.arange(model.n_neurons),
                                    "pre_mean": moments["mean"], "pre_skew": moments["skew"],
                                    "pre_kurtosis": moments["kurtosis"],
                                    "activation_frequency": moments["frequency"], "n_tokens": sums[layer].n}))
    return pd.concat(frames, ignore_index=True)


def _mlp_norm(model: Any, layer: int) -> Any:
    block = model.blocks[layer]
    for name in ("post_attention_layernorm", "ln_2"):  # GPT-NeoX and Llama-style, GPT-2
        norm = getattr(block, name, None)
        if norm is not None and getattr(norm, "weight", None) is not None:
            return norm
    return None


def preprocessed_weights(model: Any, layer: int) -> dict[str, torch.Tensor]:
    """``w_in`` (d_model, n), ``b_in`` (n,) and ``w_out`` (n, d_model) after folding and centring (float64)."""
    w_in = model.w_in(layer).double().cpu()
    b_in = model.b_in(layer).double().cpu()
    norm = _mlp_norm(model, layer)
    if norm is not None:
        gamma = norm.weight.detach().double().cpu()
        beta = getattr(norm, "bias", None)
        if beta is not None:
            b_in = b_in + beta.detach().double().cpu() @ w_in
        w_in = gamma[:, None] * w_in
    w_in = w_in - w_in.mean(0, keepdim=True)
    w_out = model.w_out(layer).double().cpu()
    w_out = w_out - w_out.mean(1, keepdim=True)
    return {"w_in": w_in, "b_in": b_in, "w_out": w_out}


def _unembed(model: Any) -> torch.Tensor:
    w_u = model.unembed().double().cpu()  # (d_model, vocab)
    norm = model.final_norm()
    if norm is not None and getattr(norm, "weight", None) is not None:
        w_u = norm.weight.detach().double().cpu()[:, None] * w_u
    w_u = w_u - w_u.mean(0, keepdim=True)
    return w_u - w_u.mean(1, keepdim=True)


def _moments_over_rows(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Variance, skew and Pearson kurtosis of each row of (n, vocab)."""
    centred = values - values.mean(1, keepdim=True)
    var = (centred ** 2).mean(1)
    return var, (centred ** 3).mean(1) / var ** 1.5, (centred ** 4).mean(1) / var ** 2


def weight_statistics(model: Any, *, layers: Sequence[int] | None = None) -> Any:
    """Per-neuron weight statistics (see the module docstring); W_U columns need a causal LM.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``neuron``, ``input_bias``, ``cos_in_out``, ``weight_norm``,
        and for causal LMs ``wu_kurtosis``, ``wu_skew`` (of ``cos(w_out, W_U)``
        over the vocabulary) and ``logit_var`` (variance of ``W_U w_out``).
    """
    import pandas as pd

    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    w_u = _unembed(model) if getattr(model, "is_causal", False) else None
    if w_u is not None:
        w_u_unit = w_u / w_u.norm(dim=0, keepdim=True).clamp(min=1e-12)
    frames = []
    for layer in layers:
        w = preprocessed_weights(model, layer)
        w_in, w_out = w["w_in"].T, w["w_out"]  # both (n, d_model)
        cos = (w_in * w_out).sum(1) / (w_in.norm(dim=1) * w_out.norm(dim=1)).clamp(min=1e-12)
        columns = {"layer": layer, "neuron": np.arange(w_out.shape[0]), "input_bias": w["b_in"].numpy(),
                   "cos_in_out": cos.numpy(), "weight_norm": (w_in.norm(dim=1) ** 2 + w_out.norm(dim=1) ** 2).numpy()}
        if w_u is not None:
            unit_out = w_out / w_out.norm(dim=1, keepdim=True).clamp(min=1e-12)
            _, skew, kurt = _moments_over_rows(unit_out @ w_u_unit)
            logit_var, _, _ = _moments_over_rows(w_out @ w_u)
            columns.update({"wu_kurtosis": kurt.numpy(), "wu_skew": skew.numpy(), "logit_var": logit_var.numpy()})
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def layer_percentiles(table: Any, columns: Sequence[str] | None = None) -> Any:
    """Each column as the neuron's percentile (0–100) within its layer; ties share their mean rank."""
    columns = [c for c in (columns or (*ACTIVATION_COLUMNS, *WEIGHT_COLUMNS)) if c in table.columns]
    out = table[["layer", "neuron"]].copy()
    for column in columns:
        out[column] = table.groupby("layer")[column].rank(pct=True, method="average") * 100
    return out


def compare_universal(table: Any, universal: Any, columns: Sequence[str] | None = None) -> Any:
    """Mean layer percentile of each statistic for universal and other neurons, with standard errors.

    Parameters
    ----------
    table : pandas.DataFrame
        Statistics with ``layer`` and ``neuron`` columns (e.g. activation and weight statistics merged).
    universal : pandas.Series of bool, or DataFrame of (layer, neuron)
        Which neurons are universal (aligned with ``table``), or the universal neurons' rows.

    Returns
    -------
    pandas.DataFrame
        One row per statistic: ``statistic``, ``universal_mean``, ``universal_se``, ``n_universal``,
        ``other_mean``, ``other_se``, ``n_other`` (percentiles; 50 is the layer's median).
    """
    import pandas as pd

    pct = layer_percentiles(table, columns)
    if isinstance(universal, pd.DataFrame):
        keys = set(zip(universal["layer"], universal["neuron"]))
        flag = np.array([(a, b) in keys for a, b in zip(table["layer"], table["neuron"])])
    else:
        flag = np.asarray(universal, bool)
    rows = []
    for column in pct.columns[2:]:
        values = pct[column].to_numpy()
        row = {"statistic": column}
        for name, mask in (("universal", flag), ("other", ~flag)):
            v = values[mask & ~np.isnan(values)]
            row[f"{name}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{name}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
            row[f"n_{name}"] = int(len(v))
        rows.append(row)
    return pd.DataFrame(rows)
