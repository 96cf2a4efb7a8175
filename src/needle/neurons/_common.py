"""What the analyses share: parsing neuron lists and streaming a corpus's activations at them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter, normalize_site
from needle.models.sites import Site, get_site
from needle.neurons.corpus import Batch, Corpus
from needle.neurons.ids import NeuronLike, format_neuron_id, parse_neurons

__all__ = ["NeuronLike", "parse_neurons", "NeuronSet", "stream_activations"]

@dataclass(frozen=True)
class NeuronSet:
    """Neurons grouped by layer, with the column of each neuron in the concatenated activations.

    Attributes
    ----------
    neurons : list of (int, int)
    layers : list of int
        Distinct layers, ascending.
    index : dict of int to LongTensor
        Neuron indices to read at each layer.
    """

    neurons: list[tuple[int, int]]
    layers: list[int]
    index: dict[int, torch.Tensor]

    @classmethod
    def build(cls, model: ModelAdapter, neurons: NeuronLike | Sequence[NeuronLike],
              site: str | Site = "post") -> NeuronSet:
        neurons = parse_neurons(neurons)
        width = model.site_width(site)
        for layer, index in neurons:
            model._check_layer(layer)
            if not 0 <= index < width:
                raise InputError(f"neuron {format_neuron_id(layer, index)} does not exist; {model.model_id} has neurons "
                                 f"0..{width - 1} per layer at site {normalize_site(site)!r}.")
        layers = sorted({layer for layer, _ in neurons})
        # Columns are laid out layer by layer in the order of ``neurons`` within each layer.
        ordered = [n for layer in layers for n in neurons if n[0] == layer]
        index = {layer: torch.tensor([i for l, i in ordered if l == layer], dtype=torch.long) for layer in layers}
        return cls(ordered, layers, index)

    def __len__(self) -> int:
        return len(self.neurons)

    def concat(self, captured: dict[int, torch.Tensor]) -> torch.Tensor:
        """Captured per-layer tensors (…, n_layer_neurons) to one (…, n_neurons) tensor in :attr:`neurons` order."""
        return torch.cat([captured[layer] for layer in self.layers], dim=-1)


def unit_site(site: str | Site, what: str) -> Site:
    """The :class:`Site` whose columns ``what`` reads: neurons (``post``, ``pre``), or any site's transformed latents.

    The residual stream's own dimensions are refused (they are no units to zoom in on); a transformed
    residual stream (an SAE's latents) is accepted.
    """
    resolved = get_site(site)
    if resolved.transform is None and resolved.name == "hook_resid_post":
        raise InputError(f"{what} reads neurons or latents: use site 'post' or 'pre', or a transform's latents, "
                         "not 'resid'.")
    return resolved


def stream_activations(model: ModelAdapter, corpus: Corpus, neurons: NeuronSet, *, site: str | Site = "post",
                       batch_tokens: int = 8192, max_batch_size: int = 64, sequences: Sequence[int] | None = None,
                       progress: bool = False, desc: str = "activations",
                       layer_rank: bool = False) -> Iterator[tuple[Batch, torch.Tensor]]:
    """Run the model over the corpus and yield each batch with its activations at ``neurons``.

    Parameters
    ----------
    layer_rank : bool, default False
        Also yield, for each neuron and token, its activation's rank among
        all neurons of its layer on that token (1: the layer's most active).

    Yields
    ------
    batch : Batch
    acts : Tensor of float32 on the CPU, shape (batch, pos, n_neurons)
        Columns in ``neurons.neurons`` order; padding positions hold garbage
        (mask them with ``batch.valid``).
    ranks : LongTensor of shape (batch, pos, n_neurons), only with ``layer_rank``
        One plus the number of the layer's neurons with a strictly larger activation.
    """
    from tqdm.auto import tqdm

    corpus.check_model(model)
    site = get_site(site)  # a Site keeps its transform: an SAE's latents stream like neurons
    total = corpus.n_tokens if sequences is None else int(corpus.lengths[np.unique(sequences)].sum())
    device = model.device

    def reduce(layer: int, acts: torch.Tensor):
        chosen = acts[..., neurons.index[layer].to(device)].float()
        if not layer_rank:
            return chosen.cpu()
        ordered = acts.float().sort(dim=-1).values.contiguous()
        at_most = torch.searchsorted(ordered, chosen.contiguous(), right=True)
        return chosen.cpu(), (acts.shape[-1] - at_most + 1).cpu()

    with tqdm(total=total, unit="tok", unit_scale=True, desc=desc, disable=not progress) as bar:
        for batch in corpus.batches(batch_tokens, max_batch_size, sequences):
            captured = model.capture(batch.input_ids, batch.attention_mask, neurons.layers, site, reduce=reduce)
            if layer_rank:
                yield (batch, neurons.concat({layer: c[0] for layer, c in captured.items()}),
                       neurons.concat({layer: c[1] for layer, c in captured.items()}))
            else:
                yield batch, neurons.concat(captured)
            bar.update(int(batch.attention_mask.sum()))


def excluded_ids(corpus: Corpus, exclude_special: bool) -> torch.Tensor:
    """Token ids a corpus pass leaves out: the tokenizer's special tokens, or none."""
    return torch.from_numpy(corpus.special_ids()) if exclude_special else torch.zeros(0, dtype=torch.long)


def group_codes(corpus: Corpus) -> np.ndarray:
    """An int64 code (>= 0) per sequence for its group (document), for per-document bookkeeping."""
    import pandas as pd

    return pd.factorize(corpus.groups)[0].astype(np.int64)


def context_window(tokens: np.ndarray, position: int, context: tuple[int, int]) -> tuple[int, int]:
    """Token range ``[a, b)`` around ``position``: ``context[0]`` tokens before, ``context[1]`` after."""
    before, after = context
    return max(0, position - before), min(len(tokens), position + after + 1)


def check_context(context: Any) -> tuple[int, int]:
    try:
        before, after = (int(v) for v in context)
    except (TypeError, ValueError):
        raise InputError(f"context must be (tokens_before, tokens_after), got {context!r}.") from None
    if before < 0 or after < 0:
        raise InputError(f"context must be non-negative, got {context!r}.")
    return before, after
