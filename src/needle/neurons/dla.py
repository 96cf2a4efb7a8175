"""Examples ranked by direct logit attribution: where a neuron most raises, or lowers, the logit of the true next token.

Max-activating examples show where a neuron fires. They do not show what
the firing does. The Neuroscope post's open problems 9.49–9.50 ask for the
dataset positions ranked by the neuron's direct contribution to the
**correct** next token's logit instead. At position ``t`` the neuron adds
``a_t · w_out`` to the residual stream. With the final norm linearised
there, that is the norm's scale ``σ_t`` frozen at its value on the
unchanged input, the neuron raises the logit of token ``v`` by::

    attribution_t = a_t · W_U[:, v] · (γ ⊙ P w_out) / σ_t

``γ`` is the norm's elementwise scale. ``P`` centres a vector for a
LayerNorm and is the identity for an RMSNorm. ``v`` is the token that
really follows position ``t``. This is exactly the change in that logit
when ``a_t · w_out`` is taken out of the final residual stream with
``σ_t`` held fixed. Paths through later layers are left out: it is the
*direct* effect. The tests check it against that patched computation from
the weights.

One streaming pass keeps, per neuron, the largest and the most negative
attributions (one per document by default, as for max-activating
examples). It also keeps the mean attribution over every token with a next
token. A neuron whose mean is negative systematically lowers the correct
token: :func:`logit_attribution` lists those in its summary.

Latents of a transformed site (an SAE's) are attributed the same way with
their write direction in place of ``w_out``: the decoder row ``d_j`` for a
residual-stream SAE, ``d_j · W_out`` for one of the MLP neurons
(:func:`needle.neurons.logits.latent_write_directions`)::

    attribution_t = z_t · W_U[:, v] · (γ ⊙ P d_j) / σ_t

``z_t`` is the latent's activation. Without the centring ``P`` and the
``1 / σ_t`` this is ``z_t`` times the latent's logit effect on ``v``
(:func:`needle.neurons.latent_logit_effects`). It is the latent's direct
share of the SAE's *reconstruction*: the reconstruction error, which no
latent writes, is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter, normalize_site
from needle.models.sites import Site, get_site
from needle.neurons._common import NeuronLike, NeuronSet, check_context, excluded_ids, group_codes
from needle.neurons.corpus import Corpus
from needle.neurons.ids import parse_neurons
from needle.neurons.logits import _check_causal, final_norm_scale, latent_write_directions
from needle.neurons.top import TOP_COLUMNS, _Extremes, _with_context

__all__ = ["LogitAttribution", "logit_attribution", "ATTRIBUTION_COLUMNS", "SUMMARY_COLUMNS", "overlap"]

#: Columns of :attr:`LogitAttribution.examples`: the max-activating table's, then the attribution's own.
ATTRIBUTION_COLUMNS = TOP_COLUMNS + ["attribution", "next_token_id", "next_token"]
#: Columns of :attr:`LogitAttribution.summary`.
SUMMARY_COLUMNS = ["layer", "neuron", "n_tokens", "mean_attribution", "fraction_negative", "lowers_correct_token"]


@dataclass(frozen=True)
class LogitAttribution:
    """Examples ranked by direct logit attribution, and each neuron's mean attribution.

    Attributes
    ----------
    examples : DataFrame
        Columns :data:`ATTRIBUTION_COLUMNS`. ``kind`` is ``"raises"`` (the
        largest attributions, rank 0 first) or ``"lowers"`` (the most
        negative). ``activation`` is the neuron's activation at the token and
        ``attribution`` its direct effect on the next token's logit.
    summary : DataFrame
        Columns :data:`SUMMARY_COLUMNS`, one row per neuron: tokens with a
        next token, their mean attribution, the fraction below zero, and
        ``lowers_correct_token`` (mean attribution < 0).
    """

    examples: pd.DataFrame
    summary: pd.DataFrame


def _norm_kind(norm: torch.nn.Module) -> tuple[str, float]:
    """``("layer", eps)`` for a LayerNorm, ``("rms", eps)`` for an RMSNorm."""
    if isinstance(norm, torch.nn.LayerNorm):
        return "layer", float(norm.eps)
    name = type(norm).__name__.lower()
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if "rms" in name and eps is not None:
        return "rms", float(eps)
    raise InputError(f"logit attribution does not know the final norm {type(norm).__name__}; "
                     "supported: LayerNorm and RMSNorm.")


def _output_directions(model: ModelAdapter, nset: NeuronSet, kind: str, site: Site) -> torch.Tensor:
    """``γ ⊙ P w`` of every unit, shape (n_units, d_model), float64, in :attr:`NeuronSet.neurons` order.

    ``w`` is the neuron's ``w_out``, or a latent's write direction (its decoder row, through ``W_out`` for a
    latent of the neurons).
    """
    gamma = final_norm_scale(model).double()
    rows = []
    for layer in nset.layers:
        if site.transform is None:
            w_out = model.w_out(layer).double().cpu()[nset.index[layer]]
        else:
            w_out = latent_write_directions(model, site, layer).double()[nset.index[layer]]
        if kind == "layer":
            w_out = w_out - w_out.mean(dim=1, keepdim=True)
        rows.append(w_out * gamma)
    return torch.cat(rows)


@torch.inference_mode()
def _forward(model: ModelAdapter, batch, nset: NeuronSet, site: Site, kind: str, eps: float):
    """Unit activations (batch, pos, n_units) and the final norm's scale σ (batch, pos), in one full pass.

    A transformed site's latents are its transform applied to the site's activations inside the hook.
    """
    captured: dict[int, torch.Tensor] = {}
    scale: list[torch.Tensor] = []
    handles = []

    def keep_neurons(layer: int):
        def hook(value):
            tensor = (value[0] if isinstance(value, (tuple, list)) else value).detach()
            if site.transform is not None:
                tensor = site.transform(tensor)
            captured[layer] = tensor[..., nset.index[layer].to(tensor.device)].float().cpu()
        return hook

    def keep_scale(module, args, kwargs):
        x = (args[0] if args else kwargs["hidden_states"]).detach().double()
        if kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        scale.append((x.pow(2).mean(-1) + eps).sqrt().cpu())

    try:
        for layer in nset.layers:
            module, side = model.hook_point(site, layer)
            store = keep_neurons(layer)
            if side == "input":
                handles.append(module.register_forward_pre_hook(
                    lambda m, args, kwargs, store=store: store(args[0] if args else kwargs["hidden_states"]),
                    with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda m, args, out, store=store: store(out)))
        handles.append(model.final_norm().register_forward_pre_hook(keep_scale, with_kwargs=True))
        model.forward(batch.input_ids.to(model.device), batch.attention_mask.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    return nset.concat(captured), scale[0]


def logit_attribution(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    site: str | Site = "post",
    n_top: int = 20,
    context: tuple[int, int] = (16, 4),
    one_per_group: bool = True,
    exclude_special: bool = True,
    batch_tokens: int = 8192,
    progress: bool = False,
) -> LogitAttribution:
    """The positions where neurons (or a transform's latents) most raise and most lower the logit of the true
    next token.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM with its head and a LayerNorm or RMSNorm before it.
    corpus : Corpus
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
        Neurons, or latents of ``site``'s transform.
    site : "post" or Site, default "post"
        The neuron's activation (its output side: what ``w_out`` multiplies), or a :class:`Site` with a
        transform (``get_site("resid", sae)``): its latents, each attributed through its decoder row (module
        docstring).
    n_top : int, default 20
        Positions kept at each end per neuron.
    context : (int, int), default (16, 4)
        Tokens shown before and after the chosen one.
    one_per_group : bool, default True
        At most one position per corpus group (document) at each end.
    exclude_special : bool, default True
        Skip positions whose token or next token is a special token.
    batch_tokens : int, default 8192
    progress : bool, default False

    Returns
    -------
    LogitAttribution

    Raises
    ------
    InputError
        An encoder, a model without its head, an untransformed site other than ``post``, a transform without
        decoder directions, or an unknown final norm.
    """
    _check_causal(model)
    resolved = get_site(site)
    if resolved.transform is None and normalize_site(resolved) != "post":
        raise InputError(f"logit attribution multiplies w_out by the neuron's output: use site 'post', not {site!r}.")
    from needle.models.solu import SOLU_ACTIVATION

    if getattr(model, "activation", None) == SOLU_ACTIVATION and resolved.width_of == "n_neurons":
        raise InputError(f"{model.model_id} is a SoLU model: its neurons are read before the LayerNorm that w_out "
                         "reads, so activation × w_out is not their direct effect; logit attribution is for GELU/ReLU.")
    if int(n_top) < 0:
        raise InputError(f"n_top must be >= 0, got {n_top}.")
    context = check_context(context)
    kind, eps = _norm_kind(model.final_norm())
    nset = NeuronSet.build(model, parse_neurons(neurons), resolved)
    corpus.check_model(model)
    n = len(nset)
    directions = _output_directions(model, nset, kind, resolved)  # (n, d_model)
    unembed = model.unembed().double().cpu()  # (d_model, vocab)
    raises = _Extremes(n, int(n_top), one_per_group=one_per_group)
    lowers = _Extremes(n, int(n_top), one_per_group=one_per_group)
    total = torch.zeros(n, dtype=torch.float64)
    negative = torch.zeros(n, dtype=torch.float64)
    count = 0
    special = excluded_ids(corpus, exclude_special)
    group_code = group_codes(corpus)

    from tqdm.auto import tqdm

    with tqdm(total=corpus.n_tokens, unit="tok", unit_scale=True, desc="logit attribution",
              disable=not progress) as bar:
        for batch in corpus.batches(batch_tokens, 64):
            acts, sigma = _forward(model, batch, nset, resolved, kind, eps)
            ids = batch.input_ids
            following = torch.full_like(ids, -1)
            following[:, :-1] = ids[:, 1:]
            has_next = batch.valid.clone()
            has_next[:, :-1] &= batch.valid[:, 1:]
            has_next[:, -1] = False
            keep = has_next & ~torch.isin(ids, special) & ~torch.isin(following, special)
            rows, pos = torch.nonzero(keep, as_tuple=True)
            next_ids = following[rows, pos]
            # The logit of the true next token per unit of activation, through the frozen norm: (tokens, n).
            per_unit = (unembed[:, next_ids].T @ directions.T) / sigma[rows, pos][:, None]
            attribution = acts[rows, pos].double() * per_unit
            seq = batch.sequences[rows.numpy()]
            position = pos.numpy().astype(np.int64)
            raises.push(attribution, seq, position, group_code[seq])
            lowers.push(-attribution, seq, position, group_code[seq])
            total += attribution.sum(0)
            negative += (attribution < 0).double().sum(0)
            count += attribution.shape[0]
            bar.update(int(batch.attention_mask.sum()))

    records = []
    for j, (layer, index) in enumerate(nset.neurons):
        for kind_name, buf, sign in (("raises", raises, 1.0), ("lowers", lowers, -1.0)):
            for rank, (v, s, p) in buf.entries(j):
                records.append((j, layer, index, kind_name, "", np.nan, np.nan, rank, np.nan, int(s), int(p), sign * v))
    frame = pd.DataFrame(records, columns=["column", "layer", "neuron", "kind", "band", "band_low", "band_high",
                                           "rank", "activation", "sequence", "position", "attribution"])
    attribution_values = frame["attribution"].to_numpy()
    examples = _with_context(model, corpus, nset, resolved, frame.drop(columns="attribution"), context,
                             batch_tokens)
    examples["activation"] = [float(a[f]) for a, f in zip(examples["context_activations"], examples["focus"])]
    examples["attribution"] = attribution_values
    examples["next_token_id"] = [int(corpus.tokens[s][p + 1]) for s, p in zip(examples["sequence"],
                                                                               examples["position"])]
    examples["next_token"] = [corpus.names(t) for t in examples["next_token_id"]]
    mean = (total / max(count, 1)).numpy()
    summary = pd.DataFrame({"layer": [l for l, _ in nset.neurons], "neuron": [i for _, i in nset.neurons],
                            "n_tokens": count, "mean_attribution": mean,
                            "fraction_negative": (negative / max(count, 1)).numpy(),
                            "lowers_correct_token": mean < 0})
    return LogitAttribution(examples[ATTRIBUTION_COLUMNS].reset_index(drop=True), summary[SUMMARY_COLUMNS])


def overlap(examples: pd.DataFrame, top: pd.DataFrame, layer: int, neuron: int) -> dict[str, int]:
    """How many of a neuron's top-attribution positions are also among its max-activating ones.

    Parameters
    ----------
    examples : DataFrame
        :attr:`LogitAttribution.examples`.
    top : DataFrame
        :func:`needle.neurons.top_activations`'s table.
    layer, neuron : int

    Returns
    -------
    dict
        ``shared`` positions (same sequence and token) among ``raises`` and ``top``, and the size of each list.
    """
    def positions(table: pd.DataFrame, kind: str) -> set[tuple[int, int]]:
        part = table[(table["layer"] == layer) & (table["neuron"] == neuron) & (table["kind"] == kind)]
        return set(zip(part["sequence"].astype(int), part["position"].astype(int)))

    raised, activated = positions(examples, "raises"), positions(top, "top")
    return {"shared": len(raised & activated), "raises": len(raised), "top": len(activated)}
