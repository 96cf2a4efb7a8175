"""Per-token statistics: for every vocabulary token, how often it occurs and how the neuron fires on it.

The middle panel of the paper's Figure 2.3 (the activation on ``return`` per
programming language) is this table with ``by_label=True``. Sums, counts and
maxima are accumulated per (token id, label) on the fly, so memory is
``vocab × labels × neurons`` floats whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.sites import Site
from needle.neurons._common import NeuronLike, NeuronSet, stream_activations, unit_site
from needle.neurons.corpus import Corpus
from needle.neurons.ids import parse_neurons

__all__ = ["token_statistics"]


def token_statistics(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    site: str | Site = "post",
    by_label: bool = False,
    min_count: int = 1,
    batch_tokens: int = 8192,
    progress: bool = False,
) -> pd.DataFrame:
    """Count, mean and max activation of each neuron on each vocabulary token (optionally per label).

    Parameters
    ----------
    model : ModelAdapter
    corpus : Corpus
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    site : {"post", "pre"} or Site, default "post"
        A Site with a transform (an SAE's latents) reads its latents as neurons.
    by_label : bool, default False
        Break the statistics down by the corpus's sequence labels (which it
        must have); sequences without a label are left out.
    min_count : int, default 1
        Drop (token, label) rows seen fewer times.
    batch_tokens : int, default 8192
    progress : bool, default False

    Returns
    -------
    DataFrame
        Columns ``layer, neuron, token_id, token, entry, [label,] count,
        mean, std, max, min``, sorted by neuron, then mean activation
        descending. ``token`` is the readable string, ``entry`` the string a
        table shows (:meth:`TokenNames.entry`: WordPiece's ``##`` kept, so
        ``"5"`` and ``"##5"`` stay apart). ``std`` is the population
        standard deviation.
    """
    site = unit_site(site, "token_statistics")
    if by_label and corpus.labels is None:
        raise InputError("by_label=True needs a corpus with labels (build it with labels=…).")
    nset = NeuronSet.build(model, parse_neurons(neurons), site)
    vocab = int(model.model.get_input_embeddings().num_embeddings)
    label_names = corpus.label_names if by_label else ["_"]
    n_labels = len(label_names)
    code = {name: i for i, name in enumerate(label_names)}
    seq_label = (np.asarray([code.get(v, -1) if v is not None else -1 for v in corpus.labels], np.int64)
                 if by_label else np.zeros(len(corpus), np.int64))
    slots, n = vocab * n_labels, len(nset)
    total = torch.zeros((slots, n), dtype=torch.float64)
    squares = torch.zeros((slots, n), dtype=torch.float64)
    count = torch.zeros(slots, dtype=torch.float64)
    high = torch.full((slots, n), -torch.inf, dtype=torch.float32)
    low = torch.full((slots, n), torch.inf, dtype=torch.float32)

    for batch, acts in stream_activations(model, corpus, nset, site=site, batch_tokens=batch_tokens,
                                          progress=progress, desc="token statistics"):
        labels = torch.from_numpy(seq_label[batch.sequences])[:, None].expand_as(batch.input_ids)
        keep = batch.valid & (labels >= 0)
        values = acts[keep]  # (n_tokens, n_neurons)
        slot = batch.input_ids[keep] * n_labels + labels[keep]
        total.index_add_(0, slot, values.double())
        squares.index_add_(0, slot, values.double() ** 2)
        count.index_add_(0, slot, torch.ones(len(slot), dtype=torch.float64))
        index = slot[:, None].expand_as(values)
        high.scatter_reduce_(0, index, values, reduce="amax")
        low.scatter_reduce_(0, index, values, reduce="amin")

    seen = torch.nonzero(count >= max(1, int(min_count))).ravel()
    c = count[seen][:, None]
    mean = total[seen] / c
    std = (squares[seen] / c - mean**2).clamp(min=0).sqrt()
    token_ids = (seen // n_labels).numpy()
    label_of = np.asarray(label_names, dtype=object)[(seen % n_labels).numpy()]
    names = corpus.names
    token_strings = np.asarray([names(t) for t in token_ids], dtype=object)
    entries = np.asarray([names.entry(t) for t in token_ids], dtype=object)
    frames = []
    for j, (layer, index) in enumerate(nset.neurons):
        part = {"layer": layer, "neuron": index, "token_id": token_ids, "token": token_strings, "entry": entries}
        if by_label:
            part["label"] = label_of
        part.update(count=count[seen].numpy().astype(np.int64), mean=mean[:, j].numpy(), std=std[:, j].numpy(),
                    max=high[seen, j].double().numpy(), min=low[seen, j].double().numpy())
        frames.append(pd.DataFrame(part))
    columns = ["layer", "neuron", "token_id", "token", "entry"] + (["label"] if by_label else []) + \
        ["count", "mean", "std", "max", "min"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values(["layer", "neuron", "mean", "token_id"], ascending=[True, True, False, True], kind="stable")
    return out[columns].reset_index(drop=True)
