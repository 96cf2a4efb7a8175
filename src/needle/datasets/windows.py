"""Sequence-level examples: windows of consecutive sentences of labelled documents, mean-aggregated.

The paper's sequence-level collections (natural language, data subset) label
a whole sequence by where it came from and probe the mean activation over its
tokens (Appendix A.2.2). Their documents were longer than the context, so each
example was "a random contiguous sequence from the document", which also hides
the document's opening. This module does that for any documents made of text
units (sentences, lines):

* a *window* is a run of consecutive units of one document, as many as fit in
  ``context_length`` tokens (special tokens included); units are joined by a
  space and never cut, and a unit longer than the context on its own is left
  out (counted);
* ``windows_per_document=None`` tiles each document with consecutive
  non-overlapping windows (every unit is used once); ``windows_per_document=k``
  draws up to ``k`` non-overlapping windows at random positions instead, each
  as long as the context allows — ``k = 1`` is the paper's sampling;
* each window is one sequence and one example per feature: the span of its
  non-special tokens with ``mean`` aggregation, positive for the feature of its
  document's label and negative for every other feature (one-vs-rest);
* the group of a window is its document, so a document never straddles the
  train/test split. Units marked as a *stream* (a treebank without document
  markup, whose sentences are separate documents of one sentence) are read in
  file order and each window becomes its own group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import check_context_length, check_positive_ratio
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import Pack, pack_texts, token_counts
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

__all__ = [
    "LabelledDocument",
    "build_window_collection",
    "check_window_params",
    "document_windows",
    "random_window_bounds",
]


@dataclass(frozen=True)
class LabelledDocument:
    """Consecutive text units of one document and the document's label.

    Attributes
    ----------
    label : str
        The document's class (a language code, a genre…).
    group : str
        The document's identity; the group of its windows.
    texts : tuple of str, length n_units
        The units (sentences, lines) in order.
    unit_ids : tuple of str, length n_units
        A name per unit (sentence id, ``line N``), used for the groups of a stream.
    stream : bool
        The units are not one document but unrelated units in file order (a
        treebank without document markup): each window is its own group.
    """

    label: str
    group: str
    texts: tuple[str, ...]
    unit_ids: tuple[str, ...] = ()
    stream: bool = False

    def __post_init__(self) -> None:
        if self.unit_ids and len(self.unit_ids) != len(self.texts):
            raise ValueError("unit_ids must name every unit")


# --------------------------------------------------------------------------- windows


def random_window_bounds(
    lengths: Sequence[int], budget: int, count: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping random windows ``[begin, end)`` of units fitting in ``budget`` tokens.

    A window starts at a unit and takes the following units while their
    summed token counts stay within ``budget``. Only *full* windows are
    candidates — ones stopped by the budget, or the single longest window that
    reaches the end of the document — so that a window placed near the end is
    not needlessly short. Candidates are visited in random order and kept when
    they overlap no kept window.

    Parameters
    ----------
    lengths : sequence of int, length n_units
        Token count of each unit (no special tokens).
    budget : int
        Token budget of a window (the context length minus special tokens).
    count : int
        Most windows to return.
    rng : numpy.random.Generator

    Returns
    -------
    list of (int, int)
        Sorted by start; units longer than ``budget`` are in no window.
    """
    lengths = np.asarray(lengths, np.int64)
    n = len(lengths)
    ends = np.zeros(n, np.int64)
    for begin in range(n):
        if lengths[begin] > budget:
            continue
        end, total = begin + 1, int(lengths[begin])
        while end < n and total + lengths[end] <= budget:
            total += int(lengths[end])
            end += 1
        ends[begin] = end
    usable = np.flatnonzero(ends > 0)
    reaching_end = usable[ends[usable] == n]
    candidates = [int(b) for b in usable if ends[b] < n]
    if len(reaching_end):
        candidates.append(int(reaching_end[0]))
    taken = np.zeros(n, bool)
    kept: list[tuple[int, int]] = []
    for begin in rng.permutation(np.array(sorted(candidates), np.int64)):
        end = int(ends[begin])
        if len(kept) == count:
            break
        if not taken[begin:end].any():
            taken[begin:end] = True
            kept.append((int(begin), end))
    return sorted(kept)


def document_windows(
    texts: Sequence[str],
    tokenizer: Any,
    context_length: int,
    *,
    per_document: int | None = None,
    rng: np.random.Generator | None = None,
    lengths: Sequence[int] | None = None,
) -> tuple[list[Pack], list[int]]:
    """Windows of consecutive ``texts`` of one document, each at most ``context_length`` tokens.

    Parameters
    ----------
    texts : sequence of str, length n_units
    tokenizer : fast tokenizer
    context_length : int
        Most tokens per window, special tokens included.
    per_document : int, optional
        ``None`` tiles the document with consecutive windows (greedy packing);
        ``k`` draws up to ``k`` non-overlapping windows at random positions
        (:func:`random_window_bounds`).
    rng : numpy.random.Generator, optional
        Required when ``per_document`` is given.
    lengths : sequence of int, length n_units, optional
        Token counts of the texts without special tokens (computed when absent).

    Returns
    -------
    windows : list of Pack
        ``units`` index into ``texts``; sorted by first unit.
    too_long : list of int
        Units longer than ``context_length`` on their own (in no window).
    """
    lengths = token_counts(tokenizer, texts) if lengths is None else np.asarray(lengths, np.int64)
    if per_document is None:
        return pack_texts(texts, tokenizer, context_length, lengths=lengths)
    if rng is None:
        raise ValueError("rng is required when per_document is given")
    budget = context_length - tokenizer.num_special_tokens_to_add(pair=False)
    too_long = [int(i) for i in np.flatnonzero(lengths > budget)]
    windows = []
    for begin, end in random_window_bounds(lengths, budget, per_document, rng):
        # The estimate (sum of unit lengths) can miss by a token where joining changes the
        # tokenization; pack_texts re-tokenizes and shortens the run when it must.
        packs, _ = pack_texts(texts[begin:end], tokenizer, context_length, lengths=lengths[begin:end])
        if packs:
            first = packs[0]
            windows.append(Pack(tuple(u + begin for u in first.units), first.starts, first.text, first.encoded))
    return windows, too_long


# --------------------------------------------------------------------------- assembly


@dataclass
class _LabelStats:
    documents: int = 0
    units: int = 0
    windows: int = 0
    kept: int = 0
    tokens: int = 0
    too_long_units: int = 0
    short_windows: int = 0
    capped_windows: int = 0


def build_window_collection(
    documents: Sequence[LabelledDocument],
    tokenizer: Any,
    *,
    builder: str,
    params: dict[str, Any],
    features: Mapping[str, tuple[str, str]],
    collection: str,
    context_length: int,
    windows_per_document: int | None,
    min_tokens: int,
    max_sequences_per_label: int | None,
    positive_ratio: float | None,
    seed: int,
    min_positives: int,
    max_positives: int | None,
) -> ProbeDataset:
    """Turn labelled documents into a ProbeDataset of mean-aggregated window examples.

    Parameters
    ----------
    documents : sequence of LabelledDocument
    tokenizer : fast tokenizer
    builder : str
        Builder name recorded in the dataset.
    params : dict
        The builder's parameters (recorded).
    features : mapping of str to (str, str)
        ``label -> (feature name, description)``; every document label must appear.
    collection : str
        Collection name recorded in each feature.
    context_length : int
        Most tokens per window, special tokens included.
    windows_per_document : int, optional
        See :func:`document_windows` (a stream is always tiled).
    min_tokens : int
        Windows with fewer non-special tokens are left out (counted).
    max_sequences_per_label : int, optional
        Keep a seeded random sample of at most this many windows per label.
    positive_ratio, seed, min_positives, max_positives
        Passed to :meth:`DatasetAssembler.build` (``min_negatives = min_positives``).

    Returns
    -------
    ProbeDataset
        One sequence per window (``texts`` holds the window's text); one
        example per window and feature, spanning the window's non-special
        tokens with ``mean`` aggregation. ``extra["labels"]`` holds per label
        the documents, units, windows made and kept, tokens kept, units too
        long for the context, windows below ``min_tokens`` and windows cut by
        ``max_sequences_per_label``.
    """
    labels = sorted({doc.label for doc in documents})
    missing = [label for label in labels if label not in features]
    if missing:
        raise ValueError(f"no feature declared for labels {missing}")
    if len(labels) < 2:
        raise InputError(
            f"{builder}: the sources hold only the label {labels[0] if labels else '(none)'}; one-vs-rest "
            "features need documents of at least two labels."
        )
    rng = np.random.default_rng(seed)
    all_texts = [text for doc in documents for text in doc.texts]
    lengths = token_counts(tokenizer, all_texts)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    stats: dict[str, _LabelStats] = defaultdict(_LabelStats)
    # label -> [(group, Pack)]
    made: dict[str, list[tuple[str, Pack]]] = defaultdict(list)
    cursor = 0
    for doc in documents:
        doc_lengths = lengths[cursor : cursor + len(doc.texts)]
        cursor += len(doc.texts)
        per_document = None if doc.stream else windows_per_document
        packs, too_long = document_windows(
            doc.texts, tokenizer, context_length, per_document=per_document, rng=rng, lengths=doc_lengths
        )
        label_stats = stats[doc.label]
        label_stats.documents += 1
        label_stats.units += len(doc.texts)
        label_stats.too_long_units += len(too_long)
        label_stats.windows += len(packs)
        for pack in packs:
            if int((~pack.encoded.special).sum()) < min_tokens:
                label_stats.short_windows += 1
                continue
            made[doc.label].append((_window_group(doc, pack), pack))
    kept: list[tuple[str, str, Pack]] = []
    for label in labels:
        windows = made[label]
        if max_sequences_per_label is not None and len(windows) > max_sequences_per_label:
            chosen = np.sort(rng.choice(len(windows), max_sequences_per_label, replace=False))
            stats[label].capped_windows = len(windows) - max_sequences_per_label
            windows = [windows[i] for i in chosen]
        kept.extend((label, group, pack) for group, pack in windows)

    assembler = DatasetAssembler(builder, params, tokenizer_info(tokenizer))
    for label in labels:
        name, description = features[label]
        assembler.add_feature(name, description=description, collection=collection, level="sequence")
    sequence, start, end, window_label = [], [], [], []
    for label, group, pack in kept:
        content = np.flatnonzero(~pack.encoded.special)
        sequence.append(assembler.add_sequence(pack.encoded.ids, group, pack.text))
        start.append(int(content[0]))
        end.append(int(content[-1]) + 1)
        window_label.append(label)
        stats[label].kept += 1
        stats[label].tokens += len(content)
    if not kept:
        raise InputError(
            f"{builder}: no window of at least min_tokens={min_tokens} tokens could be made from the sources "
            f"(units longer than context_length={context_length} are left out); check the sources or lower min_tokens."
        )
    window_label_array = np.array(window_label, dtype=object)
    for label in labels:
        name, _ = features[label]
        assembler.add_examples(name, sequence, start, window_label_array == label, end=end, aggregation="mean")
    dataset = assembler.build(
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra["labels"] = {
        label: {
            "feature": features[label][0],
            "documents": stats[label].documents,
            "units": stats[label].units,
            "windows": stats[label].windows,
            "windows_kept": stats[label].kept,
            "tokens_kept": stats[label].tokens,
            "units_longer_than_context": stats[label].too_long_units,
            "windows_below_min_tokens": stats[label].short_windows,
            "windows_over_cap": stats[label].capped_windows,
        }
        for label in labels
    }
    dataset.extra["special_tokens_per_sequence"] = n_special
    return dataset


def _window_group(doc: LabelledDocument, pack: Pack) -> str:
    if not doc.stream:
        return doc.group
    first = pack.units[0]
    name = doc.unit_ids[first] if doc.unit_ids else f"unit{first}"
    return f"{doc.group}:{name}"


# --------------------------------------------------------------------------- checks


def check_window_params(
    tokenizer: Any,
    *,
    context_length: Any,
    windows_per_document: Any,
    min_tokens: Any,
    max_sequences_per_label: Any,
    min_positives: Any,
    positive_ratio: Any,
    cap_name: str = "max_sequences_per_label",
) -> None:
    """Refuse parameter values the window builders cannot use, naming the parameter."""
    check_context_length(tokenizer, context_length)
    if windows_per_document is not None and (not _is_int(windows_per_document) or windows_per_document < 1):
        raise InputError(f"windows_per_document must be None (tile each document) or a positive integer; "
                         f"got {windows_per_document!r}")
    if not _is_int(min_tokens) or min_tokens < 1:
        raise InputError(f"min_tokens must be a positive integer; got {min_tokens!r}")
    if max_sequences_per_label is not None and (not _is_int(max_sequences_per_label) or max_sequences_per_label < 1):
        raise InputError(f"{cap_name} must be None or a positive integer; got {max_sequences_per_label!r}")
    if not _is_int(min_positives) or min_positives < 1:
        raise InputError(f"min_positives must be a positive integer; got {min_positives!r}")
    check_positive_ratio(positive_ratio)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
