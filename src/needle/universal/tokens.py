"""The token stream that neurons are correlated over: texts packed into BOS-led blocks, one tokenizer for all models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.errors import InputError

__all__ = ["check_same_tokenizer", "newline_token_ids", "pack_texts", "pack_units"]


def pack_texts(texts: Sequence[str], tokenizer: Any, context_length: int, *, max_tokens: int | None = None
               ) -> list[np.ndarray]:
    """Tokenize ``texts`` (each followed by EOS), concatenate and cut into blocks of ``context_length``.

    Every block is the BOS token followed by ``context_length - 1`` tokens of
    the stream, as the toy models are trained (and as TransformerLens feeds
    GPT-2 and Pythia); the tail that fills no block is dropped.

    Parameters
    ----------
    texts : sequence of str
    tokenizer : transformers tokenizer
        Needs an EOS token; its BOS (or, lacking one, its EOS) opens each block.
    context_length : int
        At least 2.
    max_tokens : int, optional
        Stop after this many blocks' worth of tokens.

    Returns
    -------
    list of ndarray of int64, each of shape (context_length,)
    """
    if context_length < 2:
        raise InputError(f"context_length must be at least 2, not {context_length}.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no EOS token to separate texts; use the models' own tokenizer.")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    body = context_length - 1
    limit = None if max_tokens is None else max(1, max_tokens // context_length) * body
    parts: list[np.ndarray] = []
    total = 0
    for text in texts:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        parts.append(np.asarray([*ids, eos], np.int64))
        total += len(parts[-1])
        if limit is not None and total >= limit:
            break
    stream = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if limit is not None:
        stream = stream[:limit]
    n = len(stream) // body
    if n == 0:
        raise InputError(f"the text makes {len(stream)} tokens, fewer than one block of {context_length}; "
                         "give more text or a smaller --context-length.")
    blocks = np.concatenate([np.full((n, 1), bos, np.int64), stream[: n * body].reshape(n, body)], axis=1)
    return list(blocks)


def pack_units(units: Sequence[Any], tokenizer: Any, context_length: int, *, max_tokens: int | None = None
               ) -> tuple[list[np.ndarray], list[str]]:
    """:func:`pack_texts` per source: no block mixes two sources, and each block's source is returned.

    Parameters
    ----------
    units : sequence of TextUnit
        Anything with ``source`` and ``text`` (:class:`needle.toy.corpus.TextUnit`).
    tokenizer, context_length
        As :func:`pack_texts`.
    max_tokens : int, optional
        Shared among the sources in proportion to their characters.

    Returns
    -------
    sequences : list of ndarray of int64, each of shape (context_length,)
    sources : list of str
        The source of each sequence.
    """
    by_source: dict[str, list[str]] = {}
    for unit in units:
        by_source.setdefault(unit.source, []).append(unit.text)
    if not by_source:
        raise InputError("no text units to pack; give some text.")
    chars = {source: sum(len(t) for t in texts) for source, texts in by_source.items()}
    total = sum(chars.values())
    sequences: list[np.ndarray] = []
    labels: list[str] = []
    for source in sorted(by_source):
        share = None if max_tokens is None else max(context_length, int(max_tokens * chars[source] / total))
        try:
            blocks = pack_texts(by_source[source], tokenizer, context_length, max_tokens=share)
        except InputError:
            continue  # a source too short for one block
        sequences += blocks
        labels += [source] * len(blocks)
    if not sequences:
        raise InputError(f"no source has enough text for one block of {context_length} tokens; give more text.")
    return sequences, labels


def newline_token_ids(tokenizer: Any) -> list[int]:
    """Ids of tokens that are only whitespace and contain a line break (``\\n``, ``\\n\\n``, ``  \\n``…)."""
    ids = []
    special = set(tokenizer.all_special_ids)
    for index in range(len(tokenizer)):
        if index in special:
            continue
        text = tokenizer.decode([index])
        if text and not text.strip() and "\n" in text:
            ids.append(index)
    return ids


def check_same_tokenizer(tokenizers: Sequence[Any], names: Sequence[str]) -> None:
    """Refuse models whose tokenizers differ: their neurons would not see the same tokens."""
    reference = tokenizers[0].get_vocab()
    for tokenizer, name in zip(tokenizers[1:], names[1:]):
        if tokenizer.get_vocab() != reference:
            raise InputError(f"{name} tokenizes differently from {names[0]}; correlating neurons needs one "
                             "tokenizer (train toy seeds with needle toy train-seeds, which shares it).")
