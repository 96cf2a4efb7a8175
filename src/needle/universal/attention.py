"""Attention (de)activation neurons (thesis §3.5.3, Figure 3.8): neurons that switch a later head on or off via BOS.

A head that puts all its attention on the BOS token does (almost) nothing.
A neuron of layer ``l`` can steer how much a head of a later layer ``L``
attends to BOS by writing along the head's query direction for the BOS key:

* :func:`bos_scores` — the heuristic ``h_n = ŵ_outᵀ W_Qᵀ k_BOS`` for every
  neuron and head (``ŵ_out`` the centred, unit-normalised output weight,
  ``W_Q`` the head's query map with the attention norm's gain folded in,
  ``k_BOS`` the head's key at a lone BOS), against the same score of random
  unit directions (Figure 3.8a). Positive: firing raises attention to BOS
  (deactivation). The query's rotary rotation (Pythia-style models) and the
  norm's scale are left out: it is a heuristic.
* :func:`path_ablate_query` — the causal test (Figures 3.8b–c): delete the
  neuron's contribution ``a_n w_out`` from the residual stream that head
  ``(L, h)``'s **query** reads at each position of the second half of the
  context, keeping every key and value as they were, and measure the head's
  attention to BOS and the norm of its output ``‖z W_O‖`` with and without.

Both read a head's queries, keys and values through a transformers attention
function registered as ``needle_probe`` (eager attention with a probe),
switched on for the duration of a call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["attention_module", "bos_scores", "head_query_weights", "path_ablate_query"]

_IMPLEMENTATION = "needle_probe"
_PROBES: dict[int, Any] = {}  # id(attention module) -> probe(module, q, k, v) -> (q, k, v)


class _Stop(Exception):
    pass


def _probe_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention; a probe registered for ``module`` sees (and may replace) its queries, keys and values."""
    probe = _PROBES.get(id(module))
    if probe is not None:
        query, key, value = probe(module, query, key, value)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    weights = _weights(query, key, scaling, attention_mask)
    out = torch.matmul(weights.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), weights


def _weights(query: torch.Tensor, key: torch.Tensor, scaling: float, mask: torch.Tensor | None) -> torch.Tensor:
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
    q_len, k_len = scores.shape[-2:]
    causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
    scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        mask = mask[..., :k_len]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return torch.softmax(scores, -1)


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(_IMPLEMENTATION, _probe_attention)
    AttentionMaskInterface.register(_IMPLEMENTATION, eager_mask)


@contextlib.contextmanager
def _probing(model: Any, probes: dict[int, Any]) -> Iterator[None]:
    """Run ``model`` with the probe attention and ``probes`` (layer -> probe) for the duration."""
    _register()
    configs = {id(c): c for c in (model.model.config, getattr(model.base, "config", None)) if c is not None}
    before = {key: config._attn_implementation for key, config in configs.items()}
    modules = {attention_module(model, layer): probe for layer, probe in probes.items()}
    for config in configs.values():
        config._attn_implementation = _IMPLEMENTATION
    _PROBES.update({id(m): p for m, p in modules.items()})
    try:
        yield
    finally:
        for module in modules:
            _PROBES.pop(id(module), None)
        for key, config in configs.items():
            config._attn_implementation = before[key]


def attention_module(model: Any, layer: int) -> torch.nn.Module:
    """The self-attention module of block ``layer`` (GPT-NeoX ``attention``, GPT-2 ``attn``, Llama ``self_attn``)."""
    block = model.blocks[layer]
    for name in ("attention", "attn", "self_attn"):
        module = getattr(block, name, None)
        if module is not None:
            return module
    raise InputError(f"{model.model_id}: no self-attention module found in block {layer}; attention neurons need a "
                     "GPT-NeoX, GPT-2 or Llama-style model.")


def _attention_norm(model: Any, layer: int) -> torch.nn.Module | None:
    block = model.blocks[layer]
    for name in ("input_layernorm", "ln_1"):
        norm = getattr(block, name, None)
        if norm is not None:
            return norm
    return None


def _heads(model: Any) -> tuple[int, int]:
    config = model.config
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    return int(n_heads), model.d_model // int(n_heads)


def head_query_weights(model: Any, layer: int) -> torch.Tensor:
    """Each head's query map on the residual stream, the attention norm's gain folded in: (heads, d_head, d_model)."""
    n_heads, d_head = _heads(model)
    module = attention_module(model, layer)
    d = model.d_model
    if hasattr(module, "query_key_value"):  # GPT-NeoX: per head [q | k | v] rows
        w = module.query_key_value.weight.detach().view(n_heads, 3 * d_head, d)[:, :d_head]
    elif hasattr(module, "c_attn"):  # GPT-2: Conv1D (d, 3d), q first
        w = module.c_attn.weight.detach()[:, :d].T.reshape(n_heads, d_head, d)
    elif hasattr(module, "q_proj"):
        w = module.q_proj.weight.detach().view(n_heads, d_head, d)
    else:
        raise InputError(f"{model.model_id}: cannot read the query weights of layer {layer}.")
    w = w.double().cpu()
    norm = _attention_norm(model, layer)
    if norm is not None and getattr(norm, "weight", None) is not None:
        w = w * norm.weight.detach().double().cpu()[None, None, :]
    return w


def _output_weights(model: Any, layer: int) -> torch.Tensor:
    """The attention output projection as (d_model in, d_model out): rows of head h are ``h*d_head … (h+1)*d_head``."""
    module = attention_module(model, layer)
    for name in ("dense", "c_proj", "o_proj"):
        projection = getattr(module, name, None)
        if projection is not None:
            return model._linear_weight_in_out(projection).float()
    raise InputError(f"{model.model_id}: cannot read the attention output weights of layer {layer}.")


def _bos_id(model: Any) -> int:
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InputError(f"{model.model_id}: the tokenizer has no BOS (or EOS) token; attention neurons need one.")
    return int(bos)


@torch.inference_mode()
def bos_keys(model: Any, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """Each head's key of a lone BOS token at position 0, per layer: (heads, d_head)."""
    keys: dict[int, torch.Tensor] = {}
    last = max(layers)

    def make(layer):
        def probe(module, q, k, v):
            keys[layer] = k[0, :, 0].detach().double().cpu()
            if layer == last:
                raise _Stop
            return q, k, v
        return probe

    ids = torch.tensor([[_bos_id(model)]])
    with _probing(model, {layer: make(layer) for layer in layers}):
        with contextlib.suppress(_Stop):
            model.forward(ids.to(model.device), torch.ones_like(ids).to(model.device))
    return keys


def bos_scores(model: Any, *, layers: Sequence[int] | None = None, n_random: int | None = None, seed: int = 0
               ) -> tuple[Any, Any]:
    """The heuristic ``h_n`` of every neuron for every head of a later layer, and of random unit directions.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM whose sequences start with BOS.
    layers : sequence of int, optional
        Neuron layers (default: all but the last).
    n_random : int, optional
        Random directions per neuron layer (default: as many as neurons).
    seed : int

    Returns
    -------
    scores : pandas.DataFrame
        ``layer``, ``neuron``, ``head_layer``, ``head``, ``score``.
    baseline : pandas.DataFrame
        ``layer``, ``head_layer``, ``head``, ``score`` of the random directions.
    """
    import pandas as pd

    from needle.universal.stats import preprocessed_weights

    if not model.is_causal:
        raise InputError(f"{model.model_id} is an encoder; attention-deactivation neurons need a causal LM.")
    layers = list(range(model.n_layers - 1)) if layers is None else [int(x) for x in layers]
    if not layers or max(layers) >= model.n_layers - 1:
        raise InputError(f"neuron layers must lie in 0..{model.n_layers - 2}: heads of a later layer are scored.")
    head_layers = list(range(min(layers) + 1, model.n_layers))
    keys = bos_keys(model, head_layers)
    # per head layer: (heads, d_model) = W_Qᵀ k_BOS, centred since the norm removes the mean
    reads = {}
    for L in head_layers:
        r = torch.einsum("hed,he->hd", head_query_weights(model, L), keys[L])
        reads[L] = r - r.mean(1, keepdim=True)
    rng = np.random.default_rng(seed)
    rows, base_rows = [], []
    for layer in layers:
        w = preprocessed_weights(model, layer)["w_out"]  # (n, d), centred
        w = w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)
        n_dir = n_random or w.shape[0]
        r = torch.from_numpy(rng.standard_normal((n_dir, w.shape[1])))
        r = r - r.mean(1, keepdim=True)
        r = r / r.norm(dim=1, keepdim=True)
        for L in head_layers:
            if L <= layer:
                continue
            s = (w @ reads[L].T).numpy()  # (n, heads)
            b = (r @ reads[L].T).numpy()
            heads = np.arange(s.shape[1])
            rows.append(pd.DataFrame({"layer": layer, "neuron": np.repeat(np.arange(s.shape[0]), s.shape[1]),
                                      "head_layer": L, "head": np.tile(heads, s.shape[0]), "score": s.ravel()}))
            base_rows.append(pd.DataFrame({"layer": layer, "head_layer": L, "head": np.tile(heads, b.shape[0]),
                                           "score": b.ravel()}))
    return pd.concat(rows, ignore_index=True), pd.concat(base_rows, ignore_index=True)


@torch.inference_mode()
def path_ablate_query(model: Any, sequences: Sequence[np.ndarray], neuron: tuple[int, int], head: tuple[int, int],
                      *, positions: Sequence[int] | None = None, batch_size: int = 16) -> Any:
    """Zero-path-ablate a neuron's contribution to one head's query; the head's BOS attention and output norm.

    Parameters
    ----------
    model : ModelAdapter
    sequences : sequence of ndarray of int
        Equal-length BOS-led sequences (:func:`needle.universal.tokens.pack_texts`).
    neuron : (layer, index)
    head : (layer, head)
        A head of a later layer than the neuron's.
    positions : sequence of int, optional
        Query positions (default: the second half of the context, as the thesis).
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        One row per (sequence, position): ``sequence``, ``position``, ``activation`` (the neuron's),
        ``bos_attention``, ``bos_attention_ablated``, ``norm``, ``norm_ablated``.
    """
    import pandas as pd

    layer, index = int(neuron[0]), int(neuron[1])
    head_layer, h = int(head[0]), int(head[1])
    n_heads, d_head = _heads(model)
    if not 0 <= layer < head_layer < model.n_layers:
        raise InputError(f"the head's layer ({head_layer}) must come after the neuron's ({layer}) and exist.")
    if not 0 <= h < n_heads or not 0 <= index < model.n_neurons:
        raise InputError(f"head {h} or neuron {index} does not exist ({n_heads} heads, {model.n_neurons} neurons).")
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise InputError("give equal-length token sequences (pack_texts makes them).")
    length = lengths.pop()
    positions = np.arange(length // 2, length) if positions is None else np.asarray(positions, np.int64)
    if len(positions) == 0 or positions.min() < 1 or positions.max() >= length:
        raise InputError(f"positions must lie in 1..{length - 1}.")
    w_out = model.w_out(layer)[index].float()  # (d,)
    w_o = _output_weights(model, head_layer)[h * d_head:(h + 1) * d_head]  # (d_head, d)
    block = model.blocks[head_layer]
    post_module, post_side = model.hook_point("post", layer)
    pos_t = torch.as_tensor(positions, device=model.device)
    ids_all = torch.tensor(np.stack([np.asarray(s, np.int64) for s in sequences]))
    rows = []
    for start in range(0, len(ids_all), batch_size):
        ids = ids_all[start:start + batch_size].to(model.device)
        mask = torch.ones_like(ids)
        seen: dict[str, torch.Tensor] = {}

        def keep_activation(module, args, output):
            value = args[0] if post_side == "input" else output
            seen["act"] = (value[0] if isinstance(value, (tuple, list)) else value)[..., index].detach().float()

        def clean_probe(module, q, k, v):
            seen["q"], seen["k"], seen["v"] = q[:, h].detach(), k[:, h].detach(), v[:, h].detach()
            raise _Stop

        def patched_probe(module, q, k, v):
            seen["q_ablated"] = q[:, h].detach()
            raise _Stop

        def subtract(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            x = x.clone()
            x[:, pos_t] -= seen["act"][:, pos_t, None] * w_out.to(x.dtype)
            if args:
                return (x, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": x}

        if post_side == "input":
            handle = post_module.register_forward_pre_hook(lambda m, a: keep_activation(m, a, None))
        else:
            handle = post_module.register_forward_hook(keep_activation)
        try:
            with _probing(model, {head_layer: clean_probe}), contextlib.suppress(_Stop):
                model.forward(ids, mask)
        finally:
            handle.remove()
        patch = block.register_forward_pre_hook(subtract, with_kwargs=True)
        try:
            with _probing(model, {head_layer: patched_probe}), contextlib.suppress(_Stop):
                model.forward(ids, mask)
        finally:
            patch.remove()
        module = attention_module(model, head_layer)
        scaling = getattr(module, "scaling", d_head ** -0.5)
        measured = {}
        for name, q in (("", seen["q"]), ("_ablated", seen["q_ablated"])):
            weights = _weights(q, seen["k"], scaling, None)  # (b, T, T), causal
            z = weights.to(seen["v"].dtype) @ seen["v"]  # (b, T, d_head)
            measured["bos_attention" + name] = weights[:, pos_t, 0]
            measured["norm" + name] = (z[:, pos_t].float() @ w_o.to(z.device)).norm(dim=-1)
        act = seen["act"][:, pos_t]
        b = ids.shape[0]
        frame = {"sequence": np.repeat(np.arange(start, start + b), len(positions)),
                 "position": np.tile(positions, b), "activation": act.reshape(-1).cpu().numpy()}
        frame.update({k: v.reshape(-1).cpu().numpy() for k, v in measured.items()})
        rows.append(pd.DataFrame(frame))
    table = pd.concat(rows, ignore_index=True)
    return table[["sequence", "position", "activation", "bos_attention", "bos_attention_ablated", "norm",
                  "norm_ablated"]]
