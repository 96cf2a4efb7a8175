"""Syntax tests for neuron families (thesis §3.4.3): variance reduction under gold UD labels.

The thesis labels its text with spaCy's part of speech, dependency role and
morphology; here the labels are gold ones, from Universal Dependencies
treebanks, built by :func:`needle.datasets.ud.build_ud` (``pos:<UPOS>``,
``dep:<deprel>``, ``morph:<Feat>=<Value>``; a word's first token carries its
labels). Each feature's test is Eq. 3.4 over that feature's own examples —
its positives against its negatives (every other labelled word for ``pos``
and ``dep``, the same word class for ``morph``) — so a test says how much of
a neuron's variance *among words* the label explains.

Every packed UD sequence is fed BOS-led, as the toy models were trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["ud_variance_reduction"]


def ud_variance_reduction(model: Any, sources: str | os.PathLike | Iterable[str | os.PathLike], *,
                          layers: Sequence[int] | None = None, context_length: int | None = None,
                          max_positives: int | None = 2000, min_positives: int = 20, batch_size: int = 32
                          ) -> tuple[list[str], dict[int, np.ndarray], dict[str, int]]:
    """Eq. 3.4 of every neuron under every UD part-of-speech, dependency and morphology feature.

    Parameters
    ----------
    model : ModelAdapter
    sources : path-like or iterable of path-like
        CoNLL-U files (plain or gzipped).
    layers : sequence of int, optional
    context_length : int, optional
        Tokens per fed sequence, BOS included (default: the model's positions, at most 512).
    max_positives, min_positives : int
        Passed to :func:`~needle.datasets.ud.build_ud` (a seeded cap on positives per feature; features with
        fewer are left out).
    batch_size : int

    Returns
    -------
    names : list of str
        The features.
    scores : dict of int to ndarray, shape (n_features, p)
        Per layer.
    counts : dict of str to int
        Examples per feature.
    """
    from needle.datasets.ud import build_ud
    from needle.universal.explain import variance_reduction

    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InputError("the tokenizer has no BOS or EOS token to open each UD sequence with.")
    length = context_length or min(model.max_positions or 512, 512)
    adds_bos = tokenizer.num_special_tokens_to_add(pair=False) > 0
    dataset = build_ud(sources, tokenizer, context_length=length if adds_bos else length - 1, positive_ratio=None,
                       max_positives=max_positives, min_positives=min_positives)
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    ex = dataset.examples
    shift = 0 if adds_bos else 1
    # The distinct positions the examples sit on, and each example's row among them.
    keys = ex.sequence.astype(np.int64) * (length + 1) + ex.start + shift
    positions, row = np.unique(keys, return_inverse=True)
    seq_of, tok_of = positions // (length + 1), positions % (length + 1)
    values = {layer: np.zeros((len(positions), model.n_neurons), np.float32) for layer in layers}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, dataset.n_sequences, batch_size):
        chunk = range(start, min(start + batch_size, dataset.n_sequences))
        seqs = [np.concatenate([[bos], dataset.tokens[i]]) if shift else np.asarray(dataset.tokens[i])
                for i in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = torch.from_numpy(np.asarray(s, np.int64))
            mask[j, :len(s)] = 1
        here = np.nonzero((seq_of >= start) & (seq_of < chunk.stop))[0]
        captured = model.capture(ids, mask, layers, site="post")
        for layer in layers:
            acts = captured[layer].float().cpu()
            values[layer][here] = acts[torch.from_numpy(seq_of[here] - start), torch.from_numpy(tok_of[here])].numpy()
    names = dataset.feature_names
    scores = {layer: np.zeros((len(names), model.n_neurons)) for layer in layers}
    counts = {}
    for f, name in enumerate(names):
        rows = np.nonzero(ex.feature == f)[0]
        counts[name] = len(rows)
        labels = (ex.label[rows] > 0.5)[:, None]
        for layer in layers:
            scores[layer][f] = variance_reduction(values[layer][row[rows]], labels)[0]
    return list(names), scores, counts
