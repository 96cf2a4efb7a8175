"""Plain-text features of single tokens (Table A.3 of the paper): case, digits, whitespace, ASCII.

Each feature is a predicate on a token's *string* — the text the token stands
for in the model's input — so a probe could in principle read it off the
token id alone; the collection measures how (and how sparsely) the model
keeps such surface facts in its neurons.

The string of a token (:func:`token_strings`) depends on how the tokenizer
represents text:

``byte_level`` (GPT-2, GPT-NeoX/Pythia, …)
    The token's own bytes, decoded: ``"Ġthe"`` is ``" the"``, ``"Ċ"`` is
    ``"\\n"``. A leading space is part of the token. A token holding part of
    a multi-byte character decodes to ``"\\ufffd"`` (hence not ASCII).
``wordpiece`` (BERT, MiniLM)
    The vocabulary entry without its ``##`` continuation prefix, preceded by
    one space when whitespace (of any kind: the tokenizer discards which)
    separates it from the previous token in the text. A ``##`` piece
    therefore never has a leading space; a word-initial piece after a space
    or newline has one; a piece after punctuation (``t`` in ``don't``) has
    none. The entry is what the model sees, so an uncased tokenizer has no
    capitals (``contains_capital`` and friends get no positives and are
    dropped). ``[UNK]`` takes the normalised text it covers.
``offsets`` (anything else)
    The text from the end of the previous token to the end of this one, as
    written (whitespace before the token included, case preserved).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import EncodedText
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import as_source_list, check_context_length, check_min_positives, unique_stems
from needle.datasets.context_features import CONTEXT_FEATURES, context_feature_labels
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import pack_texts, split_long_units
from needle.datasets.readers.conllu import is_conllu, read_conllu
from needle.datasets.readers.text import read_paragraphs
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

__all__ = ["TEXT_FEATURES", "build_text_features", "token_strings", "token_style", "text_feature_labels"]

_DIGITS = re.compile(r"\s?\d+")
_DIGIT = re.compile(r"\d")
_WHITESPACE = re.compile(r"\s")
_ALL_WHITESPACE = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[\W]+")  # no letter, digit or underscore anywhere


def _strip_space(s: str) -> str:
    return s[1:] if s.startswith(" ") else s


def _all_capitals(s: str) -> bool:
    body = s.lstrip()
    # The paper leaves out the one-letter words "I" and "A", which are capitals for another reason.
    return body not in ("", "I", "A") and all(c.isalpha() and c.isupper() for c in body)


#: name → (predicate on the token string, description). Order and names as in Table A.3.
TEXT_FEATURES: dict[str, tuple[Callable[[str], bool], str]] = {
    "leading_capital": (
        lambda s: _strip_space(s)[:1].isupper(),
        "the first character after an optional leading space is an uppercase letter",
    ),
    "all_digits": (lambda s: _DIGITS.fullmatch(s) is not None, "digits only, after an optional leading whitespace"),
    "is_not_ascii": (lambda s: not s.isascii(), "contains a character outside ASCII"),
    "has_leading_space": (lambda s: s.startswith(" "), "starts with a space"),
    "contains_all_whitespace": (lambda s: _ALL_WHITESPACE.fullmatch(s) is not None, "whitespace only"),
    "all_capitals": (_all_capitals, "uppercase letters only (after leading whitespace), not the words I or A"),
    "is_not_alphanumeric": (
        lambda s: _NOT_ALNUM.fullmatch(s) is not None,
        "no letter, digit or underscore (punctuation, symbols, whitespace)",
    ),
    "contains_whitespace": (lambda s: _WHITESPACE.search(s) is not None, "contains a whitespace character"),
    "contains_capital": (lambda s: any(c.isupper() for c in s), "contains an uppercase letter"),
    "contains_digit": (lambda s: _DIGIT.search(s) is not None, "contains a digit"),
    "no_leading_space_and_loweralpha": (
        lambda s: s.isalpha() and s.islower(),
        "lowercase letters only, no leading space (a word continuation)",
    ),
}


def text_feature_labels(string: str) -> tuple[bool, ...]:
    """The value of every :data:`TEXT_FEATURES` predicate on one token string, in order."""
    if not string:
        return (False,) * len(TEXT_FEATURES)
    return tuple(bool(predicate(string)) for predicate, _ in TEXT_FEATURES.values())


# --------------------------------------------------------------------------- token strings


def _component(tokenizer: Any, name: str) -> Any:
    """The JSON description of one backend component (decoder, pre_tokenizer), or None."""
    component = getattr(getattr(tokenizer, "backend_tokenizer", None), name, None)
    return json.loads(component.__getstate__()) if component is not None else None


def _has_type(spec: Any, name: str) -> bool:
    if isinstance(spec, dict):
        return spec.get("type") == name or any(_has_type(v, name) for v in spec.values())
    if isinstance(spec, list):
        return any(_has_type(v, name) for v in spec)
    return False


def token_style(tokenizer: Any) -> str:
    """How :func:`token_strings` reads this tokenizer: ``byte_level``, ``wordpiece`` or ``offsets``."""
    if _has_type(_component(tokenizer, "decoder"), "ByteLevel") or _has_type(
        _component(tokenizer, "pre_tokenizer"), "ByteLevel"
    ):
        return "byte_level"
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return "wordpiece" if type(model).__name__ == "WordPiece" else "offsets"


class _TokenStrings:
    """Computes token strings for one tokenizer, caching what depends on the id alone."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.style = token_style(tokenizer)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        model = getattr(backend, "model", None)
        self.prefix = getattr(model, "continuing_subword_prefix", None) or "##"
        self.unk = getattr(model, "unk_token", None)
        self.decoder = backend.decoder if backend is not None else None
        self.normalizer = backend.normalizer if backend is not None else None
        self._by_id: dict[int, str] = {}

    def _vocab_string(self, token_id: int) -> str:
        if token_id not in self._by_id:
            piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
            self._by_id[token_id] = self.decoder.decode([piece]) if self.style == "byte_level" else piece
        return self._by_id[token_id]

    def __call__(self, encoded: EncodedText, text: str) -> list[str]:
        strings = []
        previous_end = 0
        for token_id, (begin, end), special in zip(encoded.ids.tolist(), encoded.offsets.tolist(), encoded.special):
            if special:
                strings.append("")
                continue
            strings.append(self._one(token_id, begin, end, previous_end, text))
            previous_end = max(previous_end, end)
        return strings

    def _one(self, token_id: int, begin: int, end: int, previous_end: int, text: str) -> str:
        if self.style == "byte_level":
            return self._vocab_string(token_id)
        if self.style == "offsets":
            return text[previous_end:end] if end > previous_end else self._vocab_string(token_id)
        piece = self._vocab_string(token_id)
        if piece.startswith(self.prefix):
            return piece[len(self.prefix) :]
        # WordPiece drops whitespace; all the model can know is that some separated this piece.
        leading = " " if begin > previous_end and text[begin - 1].isspace() else ""
        if piece == self.unk:
            covered = text[begin:end]
            piece = self.normalizer.normalize_str(covered).strip() if self.normalizer is not None else covered
        return leading + piece


def token_strings(tokenizer: Any, encoded: EncodedText, text: str) -> list[str]:
    """The string each token stands for (see the module docstring); ``""`` for special tokens.

    Parameters
    ----------
    tokenizer : fast tokenizer
    encoded : EncodedText
        ``text`` encoded with :func:`needle.datasets.alignment.encode`.
    text : str

    Returns
    -------
    list of str, length n_tokens
    """
    return _TokenStrings(tokenizer)(encoded, text)


# --------------------------------------------------------------------------- sources


def _documents(paths: list[Path]) -> Iterator[tuple[str, list[str], str]]:
    """(group, text units, separator) per document, in source order."""
    for stem, path in zip(unique_stems(paths), paths):
        if is_conllu(path):
            for doc in read_conllu(path):
                yield f"{stem}:{doc.id}", [s.text for s in doc.sentences], " "
        else:
            paragraphs = read_paragraphs(path)
            if not paragraphs:
                raise InputError(f"{path}: the file has no text (an empty collection); pass a non-empty text file.")
            yield stem, paragraphs, "\n\n"


# --------------------------------------------------------------------------- builder

#: Feature sets of :func:`build_text_features`, in the order their columns are laid out.
FEATURE_SETS = ("paper", "context", "previous")


def _feature_sets(features: str) -> tuple[str, ...]:
    asked = [part.strip() for part in str(features).split(",") if part.strip()]
    unknown = [part for part in asked if part not in FEATURE_SETS]
    if unknown or not asked:
        raise InputError(f"features={features!r}: give a comma-separated choice of {', '.join(FEATURE_SETS)} "
                         "(e.g. features=paper,context).")
    return tuple(name for name in FEATURE_SETS if name in asked)


def _feature_descriptions(chosen: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, description) of every feature of the chosen sets, in column order."""
    out = []
    if "paper" in chosen:
        out += [(name, f"the token's string: {description}") for name, (_, description) in TEXT_FEATURES.items()]
    if "context" in chosen:
        out += [(name, f"in context: {description}") for name, (_, description) in CONTEXT_FEATURES.items()]
    if "previous" in chosen:
        out += [(f"prev:{name}", f"the previous token's string: {description}")
                for name, (_, description) in TEXT_FEATURES.items()]
    return out



def build_text_features(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any,
    *,
    context_length: int = 512,
    positive_ratio: float = 0.2,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
    max_sequences: int | None = None,
    features: str = "paper",
) -> ProbeDataset:
    """Build the 11 plain-text token features of the paper from any text, and optionally context features.

    Every non-special token is labelled by each predicate of
    :data:`TEXT_FEATURES` applied to its string (:func:`token_strings`):
    positives where it holds, negatives (subsampled to ``positive_ratio``)
    everywhere else. A feature that cannot occur for this tokenizer (capitals
    for an uncased one, whitespace tokens for WordPiece) has no positives and
    is dropped, listed in ``dataset.extra["dropped_features"]``.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        CoNLL-U files (``.conllu``, ``.conllu.gz``: sentence texts, group =
        document) or any other text file, gzipped or not (paragraphs split
        at blank lines, group = file).
    tokenizer : transformers fast tokenizer
    context_length : int, default 512
        Maximum tokens per sequence, special tokens included. Units
        (sentences, paragraphs) of one document are packed greedily; a unit
        longer than this is cut at whitespace (these labels need no context
        beyond the token), counted in ``dataset.extra["split_units"]``.
    positive_ratio : float, default 0.2
    seed : int, default 0
    min_positives : int, default 20
        Features with fewer positives (or negatives) are dropped.
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample; negatives then
        follow ``positive_ratio``). Bounds probing time on large sources.
    max_sequences : int, optional
        Stop after this many sequences (in source order).
    features : str, default "paper"
        Comma-separated feature sets: ``paper`` (the 11 of
        :data:`TEXT_FEATURES`), ``context`` (the Neuroscope post's
        regex-checkable features of
        :data:`~needle.datasets.context_features.CONTEXT_FEATURES`: year,
        date, phone number, base64, hexadecimal, end of sentence, the word
        before 't, start of line, duplicated token) and ``previous`` (each
        paper feature of the *previous* token, ``prev:<name>``, for
        previous-token neurons).

    Returns
    -------
    ProbeDataset
        Token examples of the chosen features (collection ``text``);
        ``extra["token_style"]`` says how token strings were read.

    Raises
    ------
    InputError
        A missing, empty, unreadable or malformed source; bad parameters; no
        feature with enough examples.
    """
    sources = as_source_list(sources, empty="no sources given; pass one or more file paths.")
    paths = [Path(source) for source in sources]
    check_context_length(tokenizer, context_length)
    check_min_positives(min_positives)
    if max_sequences is not None and max_sequences < 1:
        raise InputError(f"max_sequences must be at least 1 (or None for all), not {max_sequences}")
    chosen = _feature_sets(features)
    strings = _TokenStrings(tokenizer)
    params = {
        "sources": sources,
        "context_length": context_length,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
        "max_sequences": max_sequences,
        "token_style": strings.style,
        **({} if chosen == ("paper",) else {"features": ",".join(chosen)}),
    }
    assembler = DatasetAssembler("text_features", params, tokenizer_info(tokenizer))
    names = []
    for name, description in _feature_descriptions(chosen):
        assembler.add_feature(name, description=description, collection="text")
        names.append(name)
    budget = context_length - tokenizer.num_special_tokens_to_add(pair=False)
    cache: dict[str, tuple[bool, ...]] = {}
    sequences, positions, labels = [], [], []
    split_units = dropped_units = 0
    for group, units, separator in _documents(paths):
        if max_sequences is not None and assembler.n_sequences >= max_sequences:
            break
        units, lengths, cuts = split_long_units(units, tokenizer, budget)
        split_units += cuts
        packs, dropped = pack_texts(units, tokenizer, context_length, separator=separator, lengths=lengths)
        dropped_units += len(dropped)
        for pack in packs[: None if max_sequences is None else max_sequences - assembler.n_sequences]:
            seq = assembler.add_sequence(pack.encoded.ids, group, pack.text)
            context = context_feature_labels(pack.text, pack.encoded) if "context" in chosen else None
            previous = (False,) * len(TEXT_FEATURES)
            for position, string in enumerate(strings(pack.encoded, pack.text)):
                if pack.encoded.special[position]:
                    continue
                if string not in cache:
                    cache[string] = text_feature_labels(string)
                row = cache[string] if "paper" in chosen else ()
                if context is not None:
                    row = row + tuple(context[position].tolist())
                if "previous" in chosen:
                    row = row + previous
                previous = cache[string]
                sequences.append(seq)
                positions.append(position)
                labels.append(row)
    if not labels:
        raise InputError(f"{', '.join(map(str, paths))}: no token to label (an empty collection).")
    sequences_a = np.array(sequences, np.int32)
    positions_a = np.array(positions, np.int32)
    labels_a = np.array(labels, bool)
    for index, name in enumerate(names):
        assembler.add_examples(name, sequences_a, positions_a, labels_a[:, index])
    dataset = assembler.build(
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra.update({"token_style": strings.style, "split_units": split_units, "dropped_units": dropped_units})
    return dataset
