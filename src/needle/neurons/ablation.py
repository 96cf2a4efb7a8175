"""Causal effect: ablate neurons during the forward pass and measure the change in next-token loss.

The right panel of the paper's Figure 2.3: zeroing a French neuron raises
the loss on French text and leaves other languages alone. Ablation sets the
chosen neurons' activations (at ``blocks.{l}.mlp.hook_post`` by default) to
zero, to their mean over a corpus, or to a fixed value, through a forward
hook on the same hook point the activations are read from; the model's
weights are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Iterator, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from needle.errors import InputError
from needle.models.base import ModelAdapter, normalize_site
from needle.neurons._common import NeuronLike, NeuronSet, stream_activations
from needle.neurons.corpus import Corpus
from needle.neurons.ids import format_neuron_id, parse_neurons

__all__ = ["ablate", "ablation_losses", "ablated", "neuron_means", "AblationMode"]

#: ``"zero"``, ``"mean"`` or a fixed activation value.
AblationMode = Union[str, float]


def neuron_means(model: ModelAdapter, corpus: Corpus, neurons: NeuronLike | Sequence[NeuronLike], *,
                 site: str = "post", batch_tokens: int = 8192) -> dict[tuple[int, int], float]:
    """Mean activation of each neuron over every token of a corpus (special tokens included)."""
    nset = NeuronSet.build(model, parse_neurons(neurons), site)
    total = torch.zeros(len(nset), dtype=torch.float64)
    count = 0
    for batch, acts in stream_activations(model, corpus, nset, site=site, batch_tokens=batch_tokens):
        total += acts[batch.valid].double().sum(0)
        count += int(batch.valid.sum())
    return {n: float(v) for n, v in zip(nset.neurons, total / max(count, 1))}


def _values(model, corpus, nset: NeuronSet, mode: AblationMode, site: str, mean_corpus: Corpus | None,
            batch_tokens: int) -> torch.Tensor:
    if isinstance(mode, str):
        if mode == "zero":
            return torch.zeros(len(nset))
        if mode == "mean":
            means = neuron_means(model, mean_corpus if mean_corpus is not None else corpus, nset.neurons,
                                 site=site, batch_tokens=batch_tokens)
            return torch.tensor([means[n] for n in nset.neurons], dtype=torch.float32)
        raise InputError(f"mode must be 'zero', 'mean' or a number, not {mode!r}.")
    try:
        return torch.full((len(nset),), float(mode))
    except (TypeError, ValueError):
        raise InputError(f"mode must be 'zero', 'mean' or a number, not {mode!r}.") from None


@contextmanager
def ablated(model: ModelAdapter, neurons: NeuronLike | Sequence[NeuronLike], values: Sequence[float] | float = 0.0,
            *, site: str = "post") -> Iterator[None]:
    """Within the block, the model runs with ``neurons`` fixed to ``values`` at ``site``.

    Parameters
    ----------
    model : ModelAdapter
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    values : float or sequence of float (one per neuron, in the order given)
    site : {"post", "pre"}, default "post"
        Fixing ``pre`` fixes the neuron's input, and so its output to ``act(value)``.
    """
    site = normalize_site(site)
    if site == "resid":
        raise InputError("ablation acts on neurons: use site 'post' or 'pre'.")
    given = parse_neurons(neurons)
    try:
        values = np.broadcast_to(np.asarray(values, np.float64), (len(given),))
    except ValueError:
        raise InputError(f"give one value for all neurons or one per neuron ({len(given)}), not {values!r}.") from None
    by_neuron = dict(zip(given, values.tolist()))
    parsed = NeuronSet.build(model, given, site)
    handles = []

    def patch(x: torch.Tensor, layer: int) -> torch.Tensor:
        x = x.clone()
        index = parsed.index[layer].to(x.device)
        fill = torch.tensor([by_neuron[(layer, int(i))] for i in parsed.index[layer]], dtype=x.dtype, device=x.device)
        x[..., index] = fill
        return x

    try:
        for layer in parsed.layers:
            module, side = model.hook_point(site, layer)
            if side == "input":
                def pre_hook(module, args, layer=layer):
                    return (patch(args[0], layer),) + tuple(args[1:])
                handles.append(module.register_forward_pre_hook(pre_hook))
            else:
                def post_hook(module, args, output, layer=layer):
                    if isinstance(output, tuple):
                        return (patch(output[0], layer),) + tuple(output[1:])
                    return patch(output, layer)
                handles.append(module.register_forward_hook(post_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_lm(model: ModelAdapter) -> None:
    if not model.is_causal:
        raise InputError(f"{model.model_id} is an encoder ({model.family}); next-token loss needs a causal LM.")
    if model.model.get_output_embeddings() is None:
        raise InputError(f"{model.model_id} was loaded without its language-modelling head; load it with the head "
                         "(load_model on a *ForCausalLM checkpoint) to measure next-token loss.")


@torch.inference_mode()
def _token_losses(model: ModelAdapter, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of each position, shape (batch, pos - 1); padding targets hold 0."""
    device = model.device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
    loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
    valid = mask[:, 1:].bool() & mask[:, :-1].bool()
    return torch.where(valid, loss, torch.zeros_like(loss)).cpu()


def ablation_losses(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    mode: AblationMode = "zero",
    site: str = "post",
    mean_corpus: Corpus | None = None,
    batch_tokens: int = 4096,
    progress: bool = False,
) -> pd.DataFrame:
    """Mean next-token loss of every sequence with and without the ablation.

    Parameters
    ----------
    model : ModelAdapter
        A causal LM loaded with its head.
    corpus : Corpus
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    mode : "zero", "mean" or float, default "zero"
        What the neurons are set to. ``"mean"`` uses each neuron's mean
        activation over ``mean_corpus`` (default: ``corpus``).
    site : {"post", "pre"}, default "post"
    mean_corpus : Corpus, optional
    batch_tokens : int, default 4096
    progress : bool, default False

    Returns
    -------
    DataFrame
        One row per sequence (with at least two tokens): ``sequence, group,
        label, n_tokens`` (predicted tokens), ``loss_clean, loss_ablated``
        (mean cross-entropy in nats per token) and ``delta``.
    """
    from tqdm.auto import tqdm

    _check_lm(model)
    corpus.check_model(model)
    site = normalize_site(site)
    nset = NeuronSet.build(model, parse_neurons(neurons), site)
    values = _values(model, corpus, nset, mode, site, mean_corpus, batch_tokens)
    records = []
    with tqdm(total=corpus.n_tokens, unit="tok", unit_scale=True, desc="ablation", disable=not progress) as bar:
        for batch in corpus.batches(batch_tokens):
            clean = _token_losses(model, batch.input_ids, batch.attention_mask)
            with ablated(model, nset.neurons, values.tolist(), site=site):
                hurt = _token_losses(model, batch.input_ids, batch.attention_mask)
            n = (batch.attention_mask.sum(1) - 1).clamp(min=0)
            for row, seq in enumerate(batch.sequences):
                if int(n[row]) < 1:
                    continue
                c, h = float(clean[row].double().sum()), float(hurt[row].double().sum())
                records.append((int(seq), int(n[row]), c / int(n[row]), h / int(n[row])))
            bar.update(int(batch.attention_mask.sum()))
    frame = pd.DataFrame(records, columns=["sequence", "n_tokens", "loss_clean", "loss_ablated"])
    frame = frame.sort_values("sequence", kind="stable").reset_index(drop=True)
    frame.insert(1, "group", corpus.groups[frame["sequence"].to_numpy(np.int64)] if len(frame) else [])
    labels = corpus.labels[frame["sequence"].to_numpy(np.int64)] if corpus.labels is not None else None
    frame.insert(2, "label", labels if labels is not None else None)
    frame["delta"] = frame["loss_ablated"] - frame["loss_clean"]
    return frame


def ablate(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    mode: AblationMode = "zero",
    site: str = "post",
    by_label: bool = True,
    mean_corpus: Corpus | None = None,
    batch_tokens: int = 4096,
    progress: bool = False,
) -> pd.DataFrame:
    """Change in next-token loss when neurons are ablated, broken down by sequence label.

    Parameters
    ----------
    model, corpus, neurons, mode, site, mean_corpus, batch_tokens, progress
        As in :func:`ablation_losses`.
    by_label : bool, default True
        One row per corpus label (a corpus without labels gives one row).

    Returns
    -------
    DataFrame
        One row per label, then a row ``label="(all)"``: ``label,
        n_sequences, n_tokens, loss_clean, loss_ablated`` (token-weighted
        mean cross-entropy, nats per token), ``delta`` (ablated − clean),
        ``delta_se`` (standard error of the per-sequence deltas, NaN for one
        sequence), ``relative`` (delta / loss_clean), and ``neurons``, ``mode``.
    """
    per_seq = ablation_losses(model, corpus, neurons, mode=mode, site=site, mean_corpus=mean_corpus,
                              batch_tokens=batch_tokens, progress=progress)
    if not len(per_seq):
        raise InputError("the corpus has no sequence of two or more tokens; there is no next token to predict.")
    parts = []
    if by_label and corpus.labels is not None:
        for name, frame in per_seq.groupby(per_seq["label"].astype(str), sort=True):
            parts.append((name, frame))
    parts.append(("(all)", per_seq))
    rows = []
    for name, frame in parts:
        w = frame["n_tokens"].to_numpy(np.float64)
        clean = float(np.sum(frame["loss_clean"] * w) / w.sum())
        hurt = float(np.sum(frame["loss_ablated"] * w) / w.sum())
        se = float(frame["delta"].std(ddof=1) / np.sqrt(len(frame))) if len(frame) > 1 else np.nan
        rows.append((name, len(frame), int(w.sum()), clean, hurt, hurt - clean, se, (hurt - clean) / clean))
    out = pd.DataFrame(rows, columns=["label", "n_sequences", "n_tokens", "loss_clean", "loss_ablated", "delta",
                                      "delta_se", "relative"])
    out["neurons"] = " ".join(format_neuron_id(l, i) for l, i in NeuronSet.build(model, parse_neurons(neurons), site).neurons)
    out["mode"] = str(mode)
    return out
