"""Map character spans of a text to the tokenizer's pieces through offsets.

Builders label *characters* (a UD word, a Python comment, a LaTeX fraction);
the model sees *tokens*. These helpers encode a text with character offsets
and say which tokens cover a character span, so every builder aligns labels
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EncodedText", "encode", "tokens_in_span", "PIECES"]

#: Which pieces of a multi-piece word carry the word's label.
PIECES = ("first", "last", "all")


@dataclass(frozen=True)
class EncodedText:
    """A text tokenized with character offsets.

    Attributes
    ----------
    ids : ndarray of int32, shape (n_tokens,)
        Token ids, special tokens included.
    offsets : ndarray of int64, shape (n_tokens, 2)
        Character span ``[begin, end)`` of each token in the text; special
        tokens have ``begin == end``.
    special : ndarray of bool, shape (n_tokens,)
    """

    ids: np.ndarray
    offsets: np.ndarray
    special: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer: Any, text: str, *, add_special_tokens: bool = True) -> EncodedText:
    """Tokenize ``text`` with a fast tokenizer, keeping character offsets.

    Byte-level BPE tokenizers report a token's offsets including a leading
    space it absorbed (``"Ġword"`` covers ``" word"``); the leading whitespace
    is trimmed here so a token's span starts at its first visible character.
    """
    encoding = tokenizer(
        text,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        truncation=False,
        verbose=False,
    )
    ids = np.asarray(encoding["input_ids"], np.int32)
    offsets = np.asarray(encoding["offset_mapping"], np.int64).reshape(-1, 2)
    special = np.asarray(encoding["special_tokens_mask"], bool)
    offsets = offsets.copy()
    starts_with_space = [i for i, (begin, end) in enumerate(offsets.tolist()) if begin < end and text[begin].isspace()]
    for i in starts_with_space:
        begin, end = offsets[i]
        while begin < end and text[begin].isspace():
            begin += 1
        offsets[i, 0] = begin
    offsets[special] = 0
    return EncodedText(ids=ids, offsets=offsets, special=special)


def tokens_in_span(encoded: EncodedText, begin: int, end: int, piece: str = "first") -> np.ndarray:
    """Indices of the tokens that carry the label of characters ``[begin, end)``.

    A token belongs to the span when its character range overlaps it.

    Parameters
    ----------
    piece : {"first", "last", "all"}
        Which of the overlapping tokens to return.

    Returns
    -------
    ndarray of int64
        Empty when no token overlaps (e.g. the span was whitespace).
    """
    if piece not in PIECES:
        raise ValueError(f"piece must be one of {PIECES}, not {piece!r}")
    starts, ends = encoded.offsets[:, 0], encoded.offsets[:, 1]
    hit = np.flatnonzero(~encoded.special & (starts < end) & (ends > begin) & (ends > starts))
    if len(hit) == 0 or piece == "all":
        return hit
    return hit[:1] if piece == "first" else hit[-1:]
