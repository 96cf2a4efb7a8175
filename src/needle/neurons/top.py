"""Max-activating examples: the top, the bottom and random samples from quantile bands, in one pass.

For each neuron a bounded buffer keeps the ``n_top`` largest activations seen
so far (and another the ``n_bottom`` smallest): each batch's own top
candidates are merged into it and the buffer is cut back to size, so memory
is ``O(n_neurons × n_top)`` however long the corpus — a heap per neuron,
vectorised over neurons. Looking only at the top 20 invites the
*interpretability illusion* (a neuron that looks monosemantic at its maximum
and does something else most of the time), so the same pass also keeps a
uniform random sample of tokens (reservoir sampling with random keys, shared
by all neurons); each neuron's activation quantiles are estimated from it,
and ``per_band`` tokens are drawn at random from each quantile band.

Contexts (the tokens around each chosen one and the neuron's activation on
them) are recomputed afterwards with a second forward pass over only the
sequences that hold a chosen token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.sites import Site
from needle.neurons._common import (
    NeuronLike,
    NeuronSet,
    check_context,
    context_window,
    excluded_ids,
    group_codes,
    stream_activations,
    unit_site,
)
from needle.neurons.corpus import Corpus
from needle.neurons.ids import parse_neurons

__all__ = ["top_activations", "DEFAULT_BANDS", "TOP_COLUMNS"]

#: Quantile bands sampled by default: the bulk, the shoulder, the upper tail, the top percent.
DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.5), (0.5, 0.9), (0.9, 0.99), (0.99, 1.0))

TOP_COLUMNS = ["layer", "neuron", "kind", "band", "band_low", "band_high", "rank", "activation", "layer_rank",
               "sequence", "position", "token_id", "token", "group", "label", "context_tokens", "context_activations",
               "focus"]


class _Extremes:
    """The ``size`` largest values per neuron with their (sequence, position), ordered by value then token.

    With ``one_per_group``, a group (a document, file or text of the corpus)
    holds at most one place: its largest value, ties going to the first token
    by (sequence, position). Each batch is first reduced to its per-group
    maxima, and the buffer keeps the best entry of each group, so the result
    is exactly the ``size`` groups with the largest maxima, however the
    groups fall across batches.
    """

    def __init__(self, n_neurons: int, size: int, *, one_per_group: bool = False):
        self.size = size
        self.one_per_group = one_per_group
        self.value = np.full((n_neurons, size), -np.inf, np.float64)
        self.seq = np.full((n_neurons, size), np.iinfo(np.int64).max, np.int64)
        self.pos = np.full((n_neurons, size), np.iinfo(np.int64).max, np.int64)
        self.group = np.full((n_neurons, size), -1, np.int64)

    def entries(self, j: int):
        """``(rank, value, sequence, position)`` of neuron ``j``'s kept entries, the most extreme first."""
        filled = np.isfinite(self.value[j])
        return enumerate(zip(self.value[j][filled], self.seq[j][filled], self.pos[j][filled]))

    def push(self, values: torch.Tensor, seq: np.ndarray, pos: np.ndarray, group: np.ndarray) -> None:
        """Merge a batch: ``values`` of shape (n_tokens, n_neurons); ``seq``, ``pos``, ``group`` of shape (n_tokens,).

        ``group`` holds integer group codes (>= 0) of the tokens' sequences.
        """
        if self.size == 0 or values.shape[0] == 0:
            return
        if self.one_per_group:
            # A batch holds few groups: keep all their maxima, so that ties at the cut-off go to the first token.
            cand_value, cand_seq, cand_pos, cand_group = _group_maxima(values, seq, pos, group)
        else:
            k = min(self.size, values.shape[0])
            cand_value, cand_index = torch.topk(values.T, k, dim=1, sorted=False)
            cand_index = cand_index.numpy()
            cand_seq, cand_pos, cand_group = seq[cand_index], pos[cand_index], group[cand_index]
        value = np.concatenate([self.value, cand_value.double().numpy()], axis=1)
        s = np.concatenate([self.seq, cand_seq], axis=1)
        p = np.concatenate([self.pos, cand_pos], axis=1)
        g = np.concatenate([self.group, cand_group], axis=1)
        if self.one_per_group:
            value, s, p, g = _best_per_group(value, s, p, g)
        order = np.lexsort((p, s, -value), axis=-1)[:, : self.size]
        self.value = np.take_along_axis(value, order, 1)
        self.seq = np.take_along_axis(s, order, 1)
        self.pos = np.take_along_axis(p, order, 1)
        self.group = np.take_along_axis(g, order, 1)


def _group_maxima(values: torch.Tensor, seq: np.ndarray, pos: np.ndarray, group: np.ndarray):
    """Each group's largest value per neuron in one batch, and the first token (by sequence, position) holding it.

    values (n_tokens, n_neurons); seq, pos, group (n_tokens,). Returns values of shape (n_neurons, n_groups)
    and the seq, pos and group of each, as int64 arrays of the same shape.
    """
    n_tokens, n_neurons = values.shape
    codes, inverse = np.unique(group, return_inverse=True)
    order = np.lexsort((pos, seq))
    token_rank = np.empty(n_tokens, np.int64)
    token_rank[order] = np.arange(n_tokens)
    index = torch.from_numpy(inverse.astype(np.int64))[:, None].expand(n_tokens, n_neurons)
    maxima = torch.full((codes.size, n_neurons), -torch.inf, dtype=values.dtype)
    maxima.scatter_reduce_(0, index, values, reduce="amax")
    at_max = values == maxima.gather(0, index)
    rank = torch.from_numpy(token_rank)[:, None].expand(n_tokens, n_neurons)
    first = torch.full((codes.size, n_neurons), n_tokens, dtype=torch.int64)
    first.scatter_reduce_(0, index, torch.where(at_max, rank, n_tokens), reduce="amin")
    token = order[first.T.numpy()]  # (n_neurons, n_groups)
    return maxima.T.contiguous(), seq[token], pos[token], np.broadcast_to(codes, token.shape)


def _best_per_group(value: np.ndarray, seq: np.ndarray, pos: np.ndarray, group: np.ndarray):
    """Keep, in every row, only the best entry (value, then first token) of each group; the others become empty."""
    order = np.lexsort((pos, seq, -value, group), axis=-1)
    sorted_group = np.take_along_axis(group, order, 1)
    repeat = np.zeros(sorted_group.shape, bool)
    repeat[:, 1:] = sorted_group[:, 1:] == sorted_group[:, :-1]
    drop = np.zeros(value.shape, bool)
    np.put_along_axis(drop, order, repeat, 1)
    drop &= group >= 0
    empty = np.iinfo(np.int64).max
    return (np.where(drop, -np.inf, value), np.where(drop, empty, seq), np.where(drop, empty, pos),
            np.where(drop, -1, group))


class _Reservoir:
    """A uniform random sample of ``size`` tokens (smallest random keys), with every neuron's activation."""

    def __init__(self, n_neurons: int, size: int, seed: int):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.key = np.zeros(0)
        self.seq = np.zeros(0, np.int64)
        self.pos = np.zeros(0, np.int64)
        self.acts = np.zeros((0, n_neurons), np.float64)

    def push(self, values: torch.Tensor, seq: np.ndarray, pos: np.ndarray) -> None:
        if self.size == 0 or values.shape[0] == 0:
            return
        key = np.concatenate([self.key, self.rng.random(values.shape[0])])
        seq = np.concatenate([self.seq, seq])
        pos = np.concatenate([self.pos, pos])
        acts = np.concatenate([self.acts, values.double().numpy()])
        if len(key) > self.size:
            keep = np.argpartition(key, self.size - 1)[: self.size]
            key, seq, pos, acts = key[keep], seq[keep], pos[keep], acts[keep]
        self.key, self.seq, self.pos, self.acts = key, seq, pos, acts


def top_activations(
    model: ModelAdapter,
    corpus: Corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    site: str | Site = "post",
    n_top: int = 20,
    n_bottom: int = 20,
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    per_band: int = 5,
    band_pool: int = 4096,
    context: tuple[int, int] = (16, 4),
    exclude_special: bool = True,
    one_per_group: bool = True,
    batch_tokens: int = 8192,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Max- and min-activating tokens of many neurons, and random tokens from activation quantile bands.

    One streaming pass over the corpus with bounded buffers per neuron, then
    a short second pass to read the contexts of the chosen tokens.

    Parameters
    ----------
    model : ModelAdapter
    corpus : Corpus
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    site : {"post", "pre"} or Site, default "post"
        A Site with a transform (an SAE's latents) reads its latents as neurons.
    n_top, n_bottom : int, default 20
        Largest and smallest activations kept per neuron.
    bands : sequence of (float, float), default :data:`DEFAULT_BANDS`
        Quantile bands ``[low, high)`` of each neuron's activation
        distribution (the last band that ends at 1 includes the maximum).
    per_band : int, default 5
        Random tokens drawn from each band.
    band_pool : int, default 4096
        Size of the uniform token sample from which quantiles are estimated
        and band members drawn (shared by all neurons; memory
        ``band_pool × n_neurons`` floats). A band's tokens are a uniform
        random sample of the corpus tokens whose activation falls in the
        band's estimated range.
    context : (int, int), default (16, 4)
        Tokens shown before and after the chosen one.
    exclude_special : bool, default True
        Skip the tokenizer's special tokens ([CLS], [SEP], BOS…), whose
        activations are often extreme and uninformative.
    one_per_group : bool, default True
        At most one top and one bottom example per corpus group (a document,
        file or text): its most extreme token. Without it, a long document
        whose tokens all fire fills the list with overlapping windows of one
        passage. False keeps the plain top-``n_top`` tokens. Band samples
        are random tokens either way.
    batch_tokens : int, default 8192
        Padded tokens per forward pass.
    seed : int, default 0
        Seed of the band sampling (deterministic for a given corpus).
    progress : bool, default False

    Returns
    -------
    DataFrame
        Columns :data:`TOP_COLUMNS`: ``layer, neuron``; ``kind`` ("top",
        "bottom" or "band"); ``band`` (e.g. ``"q0.9-0.99"``, empty for
        top/bottom) with its estimated activation range ``band_low,
        band_high``; ``rank`` (0 = most extreme; for bands, draw order);
        ``activation``; ``layer_rank``, the activation's rank among all
        neurons of the layer on that token (1: no neuron of the layer is more
        active there — the Neuroscope question of whether a neuron's top
        example is also the layer's top neuron); ``sequence, position,
        token_id, token`` (readable
        string); ``group, label`` of the sequence; ``context_tokens`` (list of
        str), ``context_activations`` (list of float, the neuron on each
        context token) and ``focus`` (index of the chosen token in the
        context). Rows of one kind are ordered by activation, then by
        (sequence, position); which of several exactly equal activations at
        the cut-off is kept is not specified. With ``one_per_group`` the
        ``group`` column has no repeats within one neuron's top (or bottom)
        rows.
    """
    site = unit_site(site, "top_activations")
    for name, value in (("n_top", n_top), ("n_bottom", n_bottom), ("per_band", per_band), ("band_pool", band_pool)):
        if int(value) < 0:
            raise InputError(f"{name} must be >= 0, got {value}.")
    bands = _check_bands(bands)
    context = check_context(context)
    nset = NeuronSet.build(model, parse_neurons(neurons), site)
    n = len(nset)
    top = _Extremes(n, int(n_top), one_per_group=one_per_group)
    bottom = _Extremes(n, int(n_bottom), one_per_group=one_per_group)
    group_code = group_codes(corpus)
    pool = _Reservoir(n, int(band_pool) if bands and per_band else 0, seed)
    special = excluded_ids(corpus, exclude_special)

    for batch, acts in stream_activations(model, corpus, nset, site=site, batch_tokens=batch_tokens,
                                          progress=progress, desc="top activations"):
        keep = batch.valid & ~torch.isin(batch.input_ids, special)
        rows, pos = torch.nonzero(keep, as_tuple=True)
        values = acts[rows, pos]  # (n_tokens, n_neurons)
        seq = batch.sequences[rows.numpy()]
        pos = pos.numpy().astype(np.int64)
        top.push(values, seq, pos, group_code[seq])
        bottom.push(-values, seq, pos, group_code[seq])
        pool.push(values, seq, pos)

    records = []
    for j, (layer, index) in enumerate(nset.neurons):
        for kind, buf, sign in (("top", top, 1.0), ("bottom", bottom, -1.0)):
            for rank, (v, s, p) in buf.entries(j):
                records.append((j, layer, index, kind, "", np.nan, np.nan, rank, sign * v, int(s), int(p)))
        if len(pool.key) and per_band:
            records += _band_rows(j, layer, index, pool, bands, int(per_band), seed)
    frame = pd.DataFrame(records, columns=["column", "layer", "neuron", "kind", "band", "band_low", "band_high",
                                           "rank", "activation", "sequence", "position"])
    return _with_context(model, corpus, nset, site, frame, context, batch_tokens)


def _check_bands(bands: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for band in bands or ():
        try:
            low, high = (float(v) for v in band)
        except (TypeError, ValueError):
            raise InputError(f"band {band!r}: give (low, high) quantiles such as (0.9, 0.99).") from None
        if not 0.0 <= low < high <= 1.0:
            raise InputError(f"band {band!r}: need 0 <= low < high <= 1.")
        out.append((low, high))
    return out


def _band_rows(j: int, layer: int, index: int, pool: _Reservoir, bands, per_band: int, seed: int) -> list[tuple]:
    values = pool.acts[:, j]
    # The pool is in arbitrary order; sort by token so that draws depend only on the seed and the corpus.
    order = np.lexsort((pool.pos, pool.seq))
    values, seqs, poss = values[order], pool.seq[order], pool.pos[order]
    rng = np.random.default_rng([seed, layer, index])
    rows = []
    for low, high in bands:
        q_low, q_high = np.quantile(values, [low, high])
        inside = (values >= q_low) & ((values <= q_high) if high == 1.0 else (values < q_high))
        members = np.flatnonzero(inside)
        chosen = rng.choice(members, size=min(per_band, members.size), replace=False) if members.size else []
        for rank, m in enumerate(chosen):
            rows.append((j, layer, index, "band", f"q{low:g}-{high:g}", float(q_low), float(q_high), rank,
                         float(values[m]), int(seqs[m]), int(poss[m])))
    return rows


def _with_context(model, corpus: Corpus, nset: NeuronSet, site: Site, frame: pd.DataFrame,
                  context: tuple[int, int], batch_tokens: int) -> pd.DataFrame:
    """Add token strings, group, label and the context columns (second forward pass over the chosen sequences)."""
    names = corpus.names
    frame["token_id"] = [int(corpus.tokens[s][p]) for s, p in zip(frame["sequence"], frame["position"])]
    frame["token"] = [names(t) for t in frame["token_id"]]
    frame["group"] = [corpus.groups[s] for s in frame["sequence"]]
    frame["label"] = [None if corpus.labels is None else corpus.labels[s] for s in frame["sequence"]]
    needed = np.unique(frame["sequence"].to_numpy(np.int64)) if len(frame) else np.zeros(0, np.int64)
    seq_acts: dict[int, np.ndarray] = {}
    seq_ranks: dict[int, np.ndarray] = {}
    if needed.size:
        for batch, acts, ranks in stream_activations(model, corpus, nset, site=site, batch_tokens=batch_tokens,
                                                     sequences=needed, layer_rank=True):
            lengths = batch.attention_mask.sum(1)
            for row, seq in enumerate(batch.sequences):
                seq_acts[int(seq)] = acts[row, : int(lengths[row])].numpy()
                seq_ranks[int(seq)] = ranks[row, : int(lengths[row])].numpy()
    frame["layer_rank"] = np.asarray([int(seq_ranks[int(s)][int(p), int(c)])
                                      for c, s, p in zip(frame["column"], frame["sequence"], frame["position"])],
                                     dtype=np.int64)
    tokens_col, acts_col, focus_col = [], [], []
    for column, seq, pos in zip(frame["column"], frame["sequence"], frame["position"]):
        a, b = context_window(corpus.tokens[seq], int(pos), context)
        tokens_col.append(names.many(corpus.tokens[seq][a:b]))
        acts_col.append(seq_acts[int(seq)][a:b, int(column)].astype(float).tolist())
        focus_col.append(int(pos) - a)
    frame["context_tokens"] = tokens_col
    frame["context_activations"] = acts_col
    frame["focus"] = focus_col
    return frame[TOP_COLUMNS].reset_index(drop=True)
