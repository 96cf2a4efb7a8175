"""Cutting texts into sequences that fit a model's context, and mapping words onto tokens.

Three ways to make sequences of at most ``context_length`` tokens (special
tokens included), each tokenizing every sequence again on its own so that
its ids are exactly what the tokenizer makes of its text:

* :func:`pack_texts` packs consecutive text units (sentences, paragraphs) of
  one document greedily, never cutting a unit (:func:`pack_documents`: of
  each of several documents);
* :func:`split_long_units` first cuts units too long on their own at
  whitespace, for collections whose labels need no context;
* :func:`pack_lines` cuts a text (source code, LaTeX) at line ends, and an
  over-long line at token starts.

:func:`word_tokens` finds the tokens that carry each word's label.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from needle.datasets.alignment import EncodedText, encode, tokens_in_span

__all__ = [
    "Pack",
    "encoded_length",
    "pack_documents",
    "pack_lines",
    "pack_texts",
    "split_long_units",
    "token_counts",
    "word_tokens",
]


@dataclass(frozen=True)
class Pack:
    """One sequence made of consecutive text units (sentences, paragraphs) of a document.

    Attributes
    ----------
    units : tuple of int
        Indices of the units, in order.
    starts : tuple of int
        Character offset of each unit in ``text``.
    text : str
        The units joined by the separator.
    encoded : EncodedText
        ``text`` tokenized with special tokens; ``len(encoded) <= context_length``.
    """

    units: tuple[int, ...]
    starts: tuple[int, ...]
    text: str
    encoded: EncodedText


def token_counts(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Number of tokens of each text without special tokens, shape (n_texts,)."""
    if not texts:
        return np.zeros(0, np.int64)
    ids = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    return np.array([len(row) for row in ids], np.int64)


def pack_texts(
    texts: Sequence[str],
    tokenizer: Any,
    context_length: int,
    *,
    separator: str = " ",
    lengths: Sequence[int] | None = None,
) -> tuple[list[Pack], list[int]]:
    """Greedily pack consecutive texts into sequences of at most ``context_length`` tokens.

    Units are joined with ``separator``; the length estimate is the sum of the
    units' own token counts plus the special tokens. Since joining can change
    the tokenization at a boundary, every pack is tokenized again and its last
    unit moved to the next pack while it is too long.

    Parameters
    ----------
    texts : sequence of str, length n_units
    tokenizer : fast tokenizer
    context_length : int
        Maximum tokens per sequence, special tokens included.
    separator : str
    lengths : sequence of int, length n_units, optional
        Token counts without special tokens (see :func:`token_counts`).

    Returns
    -------
    packs : list of Pack
    dropped : list of int
        Units that alone exceed ``context_length`` (never truncated).
    """
    lengths = token_counts(tokenizer, texts) if lengths is None else np.asarray(lengths)
    budget = context_length - tokenizer.num_special_tokens_to_add(pair=False)
    packs: list[Pack] = []
    dropped: list[int] = []
    i, n = 0, len(texts)
    while i < n:
        if lengths[i] > budget:
            dropped.append(i)
            i += 1
            continue
        j, total = i + 1, int(lengths[i])
        while j < n and total + lengths[j] <= budget:
            total += int(lengths[j])
            j += 1
        while True:
            starts, text = _join(texts[i:j], separator)
            encoded = encode(tokenizer, text)
            if len(encoded) <= context_length or j == i + 1:
                break
            j -= 1
        if len(encoded) > context_length:
            dropped.append(i)
        else:
            packs.append(Pack(tuple(range(i, j)), starts, text, encoded))
        i = j
    return packs, dropped


def pack_documents(
    documents: Sequence[Sequence[str]], tokenizer: Any, context_length: int, *, separator: str = " "
) -> Iterator[tuple[list[Pack], list[int]]]:
    """:func:`pack_texts` for each document in turn, with one batched token count for all their units.

    Parameters
    ----------
    documents : sequence of sequence of str, length n_documents
        The text units of each document, in order.
    tokenizer : fast tokenizer
    context_length : int
        Maximum tokens per sequence, special tokens included.
    separator : str

    Yields
    ------
    packs : list of Pack
        The document's sequences; ``units`` index into its own units.
    dropped : list of int
        Its units that alone exceed ``context_length``.
    """
    # Tokenizing every unit in one call is much faster than one call per document.
    lengths = token_counts(tokenizer, [text for document in documents for text in document])
    cursor = 0
    for document in documents:
        yield pack_texts(
            document, tokenizer, context_length, separator=separator, lengths=lengths[cursor : cursor + len(document)]
        )
        cursor += len(document)


def _join(texts: Sequence[str], separator: str) -> tuple[tuple[int, ...], str]:
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(separator)
    return tuple(starts), separator.join(texts)


def split_long_units(texts: list[str], tokenizer: Any, budget: int) -> tuple[list[str], np.ndarray, int]:
    """Cut units longer than ``budget`` tokens at whitespace before a token.

    A cut falls at the last whitespace before a token start that keeps the
    piece within ``budget`` (at the budget itself when there is none); pieces
    are right-stripped at the cut and whitespace-only pieces dropped.

    Parameters
    ----------
    texts : list of str, length n_units
    tokenizer : fast tokenizer
    budget : int
        Most tokens per unit, without special tokens.

    Returns
    -------
    units : list of str, length n_out
        ``texts`` itself when no unit is too long.
    lengths : ndarray of int64, shape (n_out,)
        Token counts of ``units`` without special tokens.
    cuts : int
        Number of cuts made.
    """
    lengths = token_counts(tokenizer, texts)
    if not (lengths > budget).any():
        return texts, lengths, 0
    out: list[str] = []
    cuts = 0
    for text, length in zip(texts, lengths):
        if length <= budget:
            out.append(text)
            continue
        starts = encode(tokenizer, text, add_special_tokens=False).offsets[:, 0]
        begin, first = 0, 0
        while len(starts) - first > budget:
            window = range(first + budget, first, -1)
            cut = next((k for k in window if text[starts[k] - 1].isspace()), first + budget)
            out.append(text[begin : starts[cut]].rstrip())
            begin, first = int(starts[cut]), cut
            cuts += 1
        out.append(text[begin:])
    out = [t for t in out if t.strip()]
    return out, token_counts(tokenizer, out), cuts


def word_tokens(encoded: EncodedText, begins: np.ndarray, ends: np.ndarray, piece: str) -> tuple[np.ndarray, np.ndarray]:
    """Token positions carrying each word's label, as (word index, token index) pairs.

    Vectorised :func:`~needle.datasets.alignment.tokens_in_span`: the same
    tokens for every word, found by binary search over the token offsets.

    Parameters
    ----------
    encoded : EncodedText
    begins, ends : ndarray of int, shape (n_words,)
        Character spans of the words in the encoded text.
    piece : {"first", "last", "all"}

    Returns
    -------
    word, token : ndarray of int64, shape (n_pairs,)
        Words no token overlaps (whitespace, characters the tokenizer drops) have no pair.
    """
    begins = np.asarray(begins, np.int64)
    ends = np.asarray(ends, np.int64)
    starts_t, ends_t = encoded.offsets[:, 0], encoded.offsets[:, 1]
    valid = np.flatnonzero(~encoded.special & (ends_t > starts_t))
    vs, ve = starts_t[valid], ends_t[valid]
    if np.any(np.diff(vs) < 0) or np.any(np.diff(ve) < 0):
        return _word_tokens_slow(encoded, begins, ends, piece)
    first = np.searchsorted(ve, begins, side="right")
    last = np.searchsorted(vs, ends, side="left") - 1
    hit = first <= last
    words = np.flatnonzero(hit)
    first, last = first[hit], last[hit]
    if piece == "first":
        return words, valid[first]
    if piece == "last":
        return words, valid[last]
    counts = last - first + 1
    word = np.repeat(words, counts)
    offsets = np.arange(len(word)) - np.repeat(np.cumsum(counts) - counts, counts)
    return word, valid[np.repeat(first, counts) + offsets]


def _word_tokens_slow(encoded: EncodedText, begins: np.ndarray, ends: np.ndarray, piece: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(w, t) for w, (b, e) in enumerate(zip(begins, ends)) for t in tokens_in_span(encoded, b, e, piece)]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    word, token = np.array(pairs, np.int64).T
    return word, token


class _LineLengths:
    """Token counts of a text's lines (each line encoded alone), computed in blocks on demand."""

    _BLOCK = 64

    def __init__(self, tokenizer: Any, lines: list[str]):
        self.tokenizer = tokenizer
        self.lines = lines
        self.counts: list[int] = []

    def __getitem__(self, i: int) -> int:
        while len(self.counts) <= i:
            block = self.lines[len(self.counts) : len(self.counts) + self._BLOCK]
            ids = self.tokenizer(block, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
            self.counts += [len(x) for x in ids]
        return self.counts[i]


def pack_lines(
    text: str, tokenizer: Any, context_length: int, *, n_special: int, max_sequences: int | None = None
) -> list[tuple[int, int, EncodedText]]:
    """Cut ``text`` into pieces that each encode to at most ``context_length`` tokens.

    Pieces end at line ends (``\\n``), except inside a line that alone is too
    long, which is cut at token starts. Pieces are consecutive from 0.

    Parameters
    ----------
    n_special : int
        Special tokens the tokenizer adds to every sequence.
    max_sequences : int, optional
        Stop after this many pieces (the top of the text).

    Returns
    -------
    list of (begin, end, EncodedText)
        Character span of each piece in ``text`` and its encoding (special
        tokens included).
    """
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    bounds = np.concatenate([[0], np.cumsum([len(line) for line in lines], dtype=np.int64)]).tolist()
    estimate = _LineLengths(tokenizer, lines)
    budget = context_length - n_special
    pieces: list[tuple[int, int, EncodedText]] = []
    i = 0
    while i < len(lines) and (max_sequences is None or len(pieces) < max_sequences):
        j, total = i, 0
        while j < len(lines) and total + estimate[j] <= budget:
            total += estimate[j]
            j += 1
        if j == i or (j < len(lines) and not text[bounds[i] : bounds[j]].strip()):
            # Line j does not fit: cut it at token starts, with the blank lines before it.
            j += 1
            room = None if max_sequences is None else max_sequences - len(pieces)
            spans = _split_line(text, bounds[i], bounds[j], tokenizer, context_length, n_special, room)
            pieces += [(b, e, encode(tokenizer, text[b:e])) for b, e in spans]
            i = j
            continue
        encoded = encode(tokenizer, text[bounds[i] : bounds[j]])
        if len(encoded) > context_length:
            # Byte-level BPE can merge or split tokens across line ends: the estimate was short.
            while j > i + 1 and encoded_length(tokenizer, text[bounds[i] : bounds[j]]) > context_length:
                j -= 1
            encoded = encode(tokenizer, text[bounds[i] : bounds[j]])
        pieces.append((bounds[i], bounds[j], encoded))
        i = j
    return pieces[:max_sequences]


def encoded_length(tokenizer: Any, text: str) -> int:
    """Length of ``text``'s encoding, special tokens included."""
    return len(tokenizer(text, return_attention_mask=False, verbose=False)["input_ids"])


def _split_line(
    text: str, begin: int, end: int, tokenizer: Any, context_length: int, n_special: int, limit: int | None
) -> list[tuple[int, int]]:
    """Cut ``text[begin:end]`` (an over-long line) at token starts so that each piece fits."""
    line = text[begin:end]
    offsets = tokenizer(line, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    # Cut before visible characters only, so that whitespace stays with the text before it.
    starts = (b + len(line[b:e]) - len(line[b:e].lstrip()) for b, e in offsets)
    cuts = sorted({0, len(line), *(b for b in starts if 0 < b < len(line) and not line[b].isspace())})
    spans, k = [], 0
    while k < len(cuts) - 1 and (limit is None or len(spans) < limit):
        e = min(k + context_length - n_special, len(cuts) - 1)
        while e > k + 1:
            excess = encoded_length(tokenizer, line[cuts[k] : cuts[e]]) - context_length
            if excess <= 0:
                break
            e = max(k + 1, e - excess)
        spans.append((begin + cuts[k], begin + cuts[e]))
        k = e
    return spans
