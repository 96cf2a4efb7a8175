"""How often a neuron fires over a whole corpus, and the histogram of all its activations.

The per-class histograms of a neuron page show its activations on one
feature's labelled examples. These show all of them: every non-special
token of the corpus. That is the picture Neuroscope and Neuronpedia lead
with. A neuron *fires* on a token when its activation exceeds
``threshold`` (0 by default, the usual choice for GELU and ReLU neurons).
The firing density is the fraction of tokens on which it fires. The
frequency is the same thing per thousand tokens.

Two streaming passes keep memory at ``O(n_neurons × bins)``. The first
counts tokens and firings and finds each neuron's range. The second fills
``bins`` equal-width bins over that range, so the histogram is exact, not
estimated from a sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.sites import Site
from needle.neurons._common import NeuronLike, NeuronSet, excluded_ids, stream_activations, unit_site
from needle.neurons.corpus import Corpus
from needle.neurons.ids import parse_neurons

__all__ = ["firing_statistics", "FIRING_COLUMNS"]

FIRING_COLUMNS = ["layer", "neuron", "n_tokens", "n_firing", "firing_density", "per_thousand", "mean", "std",
                  "min", "max", "edges", "counts"]


def firing_statistics(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    site: str | Site = "post",
    threshold: float = 0.0,
    bins: int = 40,
    exclude_special: bool = True,
    batch_tokens: int = 8192,
    progress: bool = False,
    known_range: Mapping[tuple[int, int], tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Firing density and the whole-corpus activation histogram of each neuron.

    Parameters
    ----------
    model : ModelAdapter
    corpus : Corpus
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    site : {"post", "pre"} or Site, default "post"
        A Site with a transform (an SAE's latents) reads its latents as neurons.
    threshold : float, default 0.0
        A neuron fires on a token when its activation is strictly above this.
    bins : int, default 40
        Equal-width histogram bins between the neuron's smallest and largest activation.
    exclude_special : bool, default True
        Leave out the tokenizer's special tokens.
    batch_tokens : int, default 8192
    progress : bool, default False
    known_range : mapping of (layer, neuron) to (min, max), optional
        Each neuron's smallest and largest activation on this corpus, already
        known from another pass (e.g. :func:`~needle.neurons.top_activations`
        with the same ``exclude_special``). The histogram is then filled in
        the first pass. If the pass finds other extremes, it falls back to a
        second pass, so the result is the same either way.

    Returns
    -------
    DataFrame
        Columns :data:`FIRING_COLUMNS`, one row per neuron. ``edges`` (``bins + 1``
        floats) and ``counts`` (``bins`` ints, summing to ``n_tokens``) are lists;
        the last bin includes its right edge.
    """
    site = unit_site(site, "firing_statistics")
    if int(bins) < 1:
        raise InputError(f"bins must be at least 1, got {bins}.")
    nset = NeuronSet.build(model, parse_neurons(neurons), site)
    n = len(nset)
    special = excluded_ids(corpus, exclude_special)

    def tokens():
        for batch, acts in stream_activations(model, corpus, nset, site=site, batch_tokens=batch_tokens,
                                              progress=progress, desc="firing"):
            yield acts[batch.valid & ~torch.isin(batch.input_ids, special)].double()  # (n_tokens, n)

    bins = int(bins)
    guess = None
    if known_range is not None and all(ref in known_range for ref in nset.neurons):
        guess = torch.tensor([known_range[ref] for ref in nset.neurons], dtype=torch.float64).reshape(n, 2)

    def histogram(values, low, width, counts):
        index = ((values - low) / width).floor().clamp(0, bins - 1).long()  # the top edge joins the last bin
        counts.scatter_add_(1, index.T, torch.ones_like(values.T))

    def bin_width(low, high):
        return torch.where(high > low, (high - low) / bins, torch.ones_like(high))

    count = 0
    firing = torch.zeros(n, dtype=torch.float64)
    total = torch.zeros(n, dtype=torch.float64)
    squares = torch.zeros(n, dtype=torch.float64)
    low = torch.full((n,), torch.inf, dtype=torch.float64)
    high = torch.full((n,), -torch.inf, dtype=torch.float64)
    counts = torch.zeros((n, bins), dtype=torch.float64)
    for values in tokens():
        count += values.shape[0]
        firing += (values > threshold).double().sum(0)
        total += values.sum(0)
        squares += (values**2).sum(0)
        if values.shape[0]:
            low = torch.minimum(low, values.min(0).values)
            high = torch.maximum(high, values.max(0).values)
            if guess is not None:
                histogram(values, guess[:, 0], bin_width(guess[:, 0], guess[:, 1]), counts)
    width = bin_width(low, high)
    if count and (guess is None or not (torch.equal(guess[:, 0], low) and torch.equal(guess[:, 1], high))):
        counts.zero_()  # the range was not known (or not right): bin every token again on the true one
        for values in tokens():
            histogram(values, low, width, counts)
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean**2).clamp(min=0).sqrt()
    rows = []
    for j, (layer, index) in enumerate(nset.neurons):
        edges = (low[j] + width[j] * torch.arange(bins + 1, dtype=torch.float64)).tolist() if count else []
        density = float(firing[j]) / count if count else float("nan")
        rows.append((layer, index, count, int(firing[j]), density, 1000.0 * density, float(mean[j]), float(std[j]),
                     float(low[j]) if count else float("nan"), float(high[j]) if count else float("nan"),
                     edges, counts[j].long().tolist()))
    return pd.DataFrame(rows, columns=FIRING_COLUMNS)
