"""Token features that need the text around the token: the Neuroscope post's regex-checkable features.

The Neuroscope post lists, as its open problems 9.13–9.19, 9.31 and 9.44,
features that a regular expression can check in the text. A neuron that
fires on them is easy to verify, so they make good automatic explanations.
Unlike :data:`~needle.datasets.text_features.TEXT_FEATURES`, these are not
predicates on one token's string: a year is four digits with no digit on
either side, a start of line depends on the newline before it, and a
duplicated token on the rest of the sequence.

Each feature maps a text and its tokenization (with character offsets) to
one label per token. For the pattern features, a token is positive when
its characters overlap a match of the pattern. Special tokens are never
positive.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from needle.datasets.alignment import EncodedText, tokens_in_span

__all__ = ["CONTEXT_FEATURES", "context_feature_labels"]

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_PATTERNS: dict[str, tuple[str, str]] = {
    "year": (r"(?<![\d.,])(?:1[5-9]\d\d|20\d\d)(?![\d.,]\d)(?!\d)",
             "a year from 1500 to 2099: four digits with no digit or decimal point next to them"),
    "date": (rf"(?<!\d)(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}/\d{{2,4}})(?!\d)"
             rf"|\b{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?(?:, \d{{4}})?\b|\b\d{{1,2}} {_MONTH}(?: \d{{4}})?\b",
             "a date: 2024-05-17, 5/17/24, May 17, 17 May 2024"),
    "phone_number": (r"(?<![\d+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)",
                     "a North-American style phone number: (555) 123-4567, 555-123-4567, +1 555.123.4567"),
    "base64": (r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z])"
               r"[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])",
               "a base64 run: 20 or more base64 characters mixing digits, lower and upper case"),
    "hexadecimal": (r"\b0[xX][0-9a-fA-F]+\b|(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}(?![0-9A-Za-z])",
                    "a hexadecimal literal (0x1F) or a lowercase hex run of 8 or more mixing digits and a-f"),
    "end_of_sentence": (r"(?<=[\w)\]\"'])[.!?]+(?=[\"')\]]*(?:\s+[\"'(\[]?[A-Z]|\s*\n|\s*\Z))",
                        "sentence-final . ! or ? after a word, before a capital, a newline or the end"),
    "before_apostrophe_t": (r"[A-Za-z]+(?=['\u2019]t\b)", "the word right before 't (don't, can't, isn't)"),
}


def _pattern_feature(pattern: str) -> Callable[[str, EncodedText], np.ndarray]:
    compiled = re.compile(pattern)

    def label(text: str, encoded: EncodedText) -> np.ndarray:
        out = np.zeros(len(encoded), bool)
        for match in compiled.finditer(text):
            out[tokens_in_span(encoded, match.start(), match.end(), piece="all")] = True
        return out

    return label


def _start_of_line(text: str, encoded: EncodedText) -> np.ndarray:
    """The token holding the first visible character of each line (the text's first line included)."""
    out = np.zeros(len(encoded), bool)
    for match in re.finditer(r"(?:^|\n)[^\S\n]*(\S)", text):
        begin = match.start(1)
        out[tokens_in_span(encoded, begin, begin + 1, piece="first")] = True
    return out


def _duplicated_token(text: str, encoded: EncodedText) -> np.ndarray:
    """A token whose id already occurred earlier in the same sequence (special tokens aside)."""
    out = np.zeros(len(encoded), bool)
    seen: set[int] = set()
    for i, (token_id, special) in enumerate(zip(encoded.ids.tolist(), encoded.special.tolist())):
        if special:
            continue
        out[i] = token_id in seen
        seen.add(token_id)
    return out


#: name → (labeller of a text and its tokens, description).
CONTEXT_FEATURES: dict[str, tuple[Callable[[str, EncodedText], np.ndarray], str]] = {
    **{name: (_pattern_feature(pattern), description) for name, (pattern, description) in _PATTERNS.items()},
    "start_of_line": (_start_of_line, "the first visible token of a line"),
    "duplicated_token": (_duplicated_token, "the same token id occurred earlier in the sequence"),
}


def context_feature_labels(text: str, encoded: EncodedText) -> np.ndarray:
    """Every :data:`CONTEXT_FEATURES` label of every token of one text.

    Parameters
    ----------
    text : str
    encoded : EncodedText
        ``text`` tokenized with character offsets (:func:`needle.datasets.alignment.encode`).

    Returns
    -------
    ndarray of bool, shape (n_tokens, len(CONTEXT_FEATURES))
        Special tokens are False everywhere.
    """
    labels = np.stack([labeller(text, encoded) for labeller, _ in CONTEXT_FEATURES.values()], axis=1)
    labels[encoded.special] = False
    return labels
