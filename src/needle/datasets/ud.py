"""Part-of-speech, dependency and morphology features from Universal Dependencies treebanks.

The paper's linguistic collections (Table A.3, Appendix A.2.2) label every
word of the English Web Treebank with its universal part of speech (UPOS),
its dependency relation (DEPREL) and its morphological features (FEATS), then
map the word labels onto the tokens of the model's tokenizer. This module

* reads CoNLL-U files (plain or gzipped) with the ``conllu`` package, with
  its own per-line checks so that a malformed line is reported with its file
  and line number;
* rebuilds each sentence's surface text from its tokens (``SpaceAfter=No``
  honoured, multiword tokens written once, empty nodes skipped) and keeps the
  character span of every word;
* packs the sentences of each document into sequences of at most
  ``context_length`` tokens (special tokens included);
* labels the chosen piece(s) of each word and hands the candidate examples to
  :class:`~needle.datasets.assembler.DatasetAssembler`.

Feature names are ``pos:<UPOS>``, ``dep:<deprel>`` and ``morph:<Feat>=<Value>``.
"""

from __future__ import annotations

import gzip
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conllu import parser as conllu_parser
from conllu.exceptions import ParseException

from needle.datasets.alignment import PIECES, EncodedText, encode, tokens_in_span
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.format import ProbeDataset
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

__all__ = [
    "COLLECTIONS",
    "PAPER_DEPRELS",
    "PAPER_MORPH_FEATURES",
    "Pack",
    "UDDocument",
    "UDSentence",
    "build_ud",
    "pack_texts",
    "read_conllu",
]

#: The collections :func:`build_ud` can label.
COLLECTIONS = ("upos", "deprel", "morph")

#: The 29 dependency relations of the paper's Table A.3 (sorted).
PAPER_DEPRELS = (
    "acl", "acl:relcl", "advcl", "advmod", "amod", "appos", "aux", "aux:pass", "case", "cc",
    "ccomp", "compound", "conj", "cop", "det", "flat", "list", "mark", "nmod", "nmod:poss",
    "nsubj", "nsubj:pass", "nummod", "obj", "obl", "parataxis", "punct", "root", "xcomp",
)  # fmt: skip

#: The UD morphological features among the paper's 22 (Table A.3, ``Tense_Past`` → ``Tense=Past``).
#: Its ``eos_True`` and ``first_eos_True`` are sentence-boundary markers, not UD FEATS, and are left out.
PAPER_MORPH_FEATURES = (
    "Gender=Fem", "Gender=Masc", "Gender=Neut", "Mood=Imp", "NumType=Card", "Number=Plur",
    "Person=1", "Person=2", "Person=3", "PronType=Art", "PronType=Dem", "PronType=Int",
    "PronType=Prs", "PronType=Rel", "Tense=Past", "VerbForm=Fin", "VerbForm=Ger", "VerbForm=Inf",
    "VerbForm=Part", "Voice=Pass",
)  # fmt: skip

_UPOS_GLOSS = {
    "ADJ": "adjective", "ADP": "adposition", "ADV": "adverb", "AUX": "auxiliary",
    "CCONJ": "coordinating conjunction", "DET": "determiner", "INTJ": "interjection", "NOUN": "noun",
    "NUM": "numeral", "PART": "particle", "PRON": "pronoun", "PROPN": "proper noun",
    "PUNCT": "punctuation", "SCONJ": "subordinating conjunction", "SYM": "symbol", "VERB": "verb",
    "X": "other",
}  # fmt: skip

_ID_RE = re.compile(r"^(?:[1-9][0-9]*|[1-9][0-9]*-[1-9][0-9]*|[0-9]+\.[1-9][0-9]*)$")
_FEAT_RE = re.compile(r"^[A-Za-z0-9\[\]:]+=[^|=\s]+$")
_NEWDOC_RE = re.compile(r"^#\s*newdoc(?:\s*[_ ]?id)?\s*(?:=\s*(?P<id>.*?))?\s*$")
_SENT_DOC_RE = re.compile(r"^(?P<doc>.+)-[0-9]+$")
_FIELDS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")


def _keep_raw(line: list[str], index: int) -> str:
    return line[index]


# DEPS is not used and its default parser is the slowest part of ``conllu``.
_FIELD_PARSERS = {"deps": _keep_raw}


# --------------------------------------------------------------------------- reading


@dataclass
class UDSentence:
    """One sentence: its rebuilt surface text and the character span of each word.

    Attributes
    ----------
    text : str
        Surface text rebuilt from the tokens (``SpaceAfter=No`` honoured).
    begins, ends : list of int, length n_words
        Character span ``[begin, end)`` of each syntactic word in ``text``;
        the words of a multiword token whose forms do not spell it (French
        ``du`` = ``de le``) share the multiword token's span.
    forms, upos, deprels : list of str, length n_words
        ``None`` where the column is ``_``.
    feats : list of tuple of str, length n_words
        ``"Feat=Value"`` strings; a multi-valued feature (``PronType=Int,Rel``)
        gives one string per value.
    sent_id : str or None
    line : int
        Line number of the sentence's first line in its file.
    text_matches : bool or None
        Whether ``text`` equals the ``# text`` comment (None when there is none).
    """

    text: str
    begins: list[int]
    ends: list[int]
    forms: list[str]
    upos: list[str | None]
    deprels: list[str | None]
    feats: list[tuple[str, ...]]
    sent_id: str | None
    line: int
    text_matches: bool | None

    @property
    def n_words(self) -> int:
        return len(self.begins)


@dataclass
class UDDocument:
    """Consecutive sentences of one document of a CoNLL-U file."""

    id: str
    sentences: list[UDSentence] = field(default_factory=list)
    source: str = ""
    """How the id was found: ``newdoc``, ``sent_id`` (prefix before ``-NNNN``) or ``sentence``."""


def read_conllu(path: str | os.PathLike) -> list[UDDocument]:
    """Read a CoNLL-U file into documents of sentences with word spans.

    Documents start at ``# newdoc id = …`` (or ``# newdoc = …``). Sentences
    before the first such marker (or in a file without any) take the document
    of their ``sent_id`` with its final ``-NNNN`` removed (the English Web
    Treebank's convention); a sentence without a usable ``sent_id`` is its own
    document.

    Parameters
    ----------
    path : path-like
        A ``.conllu`` file, gzipped or not (recognised by its content).

    Returns
    -------
    list of UDDocument
        In file order.

    Raises
    ------
    InputError
        The file is missing, unreadable, not UTF-8, has a malformed line
        (the message names the line number) or contains no sentence.
    """
    path = Path(path)
    text = _read_text(path)
    documents: list[UDDocument] = []
    newdoc: str | None = None
    pending_newdoc = False
    for first_line, block in _blocks(text):
        marker = _newdoc_marker(block)
        if marker is not None:
            newdoc = marker or f"doc-line{first_line}"
            pending_newdoc = True
        sentence = _parse_block(path, first_line, block)
        if sentence is None:
            continue
        if newdoc is not None:
            doc_id, source = newdoc, "newdoc"
        elif sentence.sent_id and (match := _SENT_DOC_RE.match(sentence.sent_id)):
            doc_id, source = match.group("doc"), "sent_id"
        else:
            doc_id, source = sentence.sent_id or f"sentence-line{first_line}", "sentence"
        if pending_newdoc or not documents or documents[-1].id != doc_id:
            documents.append(UDDocument(doc_id, [], source))
            pending_newdoc = False
        documents[-1].sentences.append(sentence)
    if not documents:
        raise InputError(
            f"{path}: no sentences found (an empty collection); pass a CoNLL-U file with at least one sentence."
        )
    return documents


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path.")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the file ({exc}); is it a complete (gzipped) text file?") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line}: the file is not UTF-8 ({exc.reason}); convert it to UTF-8.") from None


def _blocks(text: str) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """Blank-line separated blocks as (first line number, [(line number, line)])."""
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            block.append((number, line))
        elif block:
            yield block[0][0], block
            block = []
    if block:
        yield block[0][0], block


def _newdoc_marker(block: list[tuple[int, str]]) -> str | None:
    """The block's newdoc id; ``""`` for a bare ``# newdoc``; None without a marker."""
    for _, line in block:
        if line.startswith("#") and (match := _NEWDOC_RE.match(line)):
            return (match.group("id") or "").strip()
    return None


def _fail(path: Path, line: int, problem: str, fix: str) -> InputError:
    return InputError(f"{path}, line {line}: {problem}; {fix}")


def _check_token_line(path: Path, number: int, line: str) -> None:
    """Per-line checks ``conllu`` lets through (it accepts short lines and bare feature names)."""
    columns = line.split("\t")
    if len(columns) != len(_FIELDS):
        raise _fail(
            path, number,
            f"expected {len(_FIELDS)} tab-separated columns ({' '.join(_FIELDS)}) but found {len(columns)}",
            "separate the columns with single tabs (not spaces) and use _ for empty ones",
        )  # fmt: skip
    ident, form, _, upos, _, feats, _, deprel, _, _ = columns
    if not _ID_RE.match(ident):
        raise _fail(path, number, f"invalid ID {ident!r}", "an ID is N, N-M (multiword token) or N.M (empty node)")
    if not form:
        raise _fail(path, number, "empty FORM column", "write the word form (or _)")
    if not upos or not deprel:
        raise _fail(path, number, "empty UPOS or DEPREL column", "write the value or _")
    if feats != "_":
        for item in feats.split("|"):
            if not _FEAT_RE.match(item):
                raise _fail(
                    path, number, f"malformed FEATS item {item!r} in {feats!r}",
                    "FEATS is _ or Feature=Value pairs separated by |",
                )  # fmt: skip


def _parse_block(path: Path, first_line: int, block: list[tuple[int, str]]) -> UDSentence | None:
    token_lines = [(n, line) for n, line in block if not line.startswith("#")]
    for number, line in token_lines:
        _check_token_line(path, number, line)
    try:
        tokens = conllu_parser.parse_token_and_metadata(
            "\n".join(line for _, line in block), field_parsers=_FIELD_PARSERS
        )
    except ParseException as exc:
        raise _locate_parse_error(path, block, exc) from None
    if not token_lines:
        return None
    if len(tokens) != len(token_lines):
        raise _fail(path, first_line, "the sentence could not be split into token lines", "check its tabs and comments")
    return _build_sentence(path, first_line, tokens, [n for n, _ in token_lines])


def _locate_parse_error(path: Path, block: list[tuple[int, str]], exc: Exception) -> InputError:
    for number, line in block:
        if line.startswith("#"):
            continue
        try:
            conllu_parser.parse_token_and_metadata(line, field_parsers=_FIELD_PARSERS)
        except ParseException as line_exc:
            return _fail(path, number, f"cannot parse the token line ({line_exc})", "fix the column named above")
    return _fail(path, block[0][0], f"cannot parse the sentence ({exc})", "check the CoNLL-U syntax of this sentence")


def _space_after(token: Any) -> bool:
    misc = token["misc"]
    return not (misc and misc.get("SpaceAfter") == "No")


def _feat_strings(feats: dict[str, str] | None) -> tuple[str, ...]:
    if not feats:
        return ()
    return tuple(f"{name}={value}" for name, values in feats.items() if values for value in values.split(","))


def _build_sentence(path: Path, first_line: int, tokens: Any, lines: list[int]) -> UDSentence:
    """Rebuild the surface text and word spans of one parsed sentence."""
    parts: list[str] = []
    length = 0
    begins: list[int] = []
    ends: list[int] = []
    forms: list[str] = []
    upos: list[str | None] = []
    deprels: list[str | None] = []
    feats: list[tuple[str, ...]] = []
    expected = 1
    mwt: tuple[int, int, str, bool, int] | None = None  # first, last, form, space after, line
    mwt_words: list[Any] = []

    def emit(surface: str, space: bool) -> int:
        nonlocal length
        begin = length
        parts.append(surface)
        length += len(surface)
        if space:
            parts.append(" ")
            length += 1
        return begin

    def add_word(token: Any, begin: int, end: int) -> None:
        begins.append(begin)
        ends.append(end)
        forms.append(token["form"])
        upos.append(None if token["upos"] in (None, "_") else token["upos"])
        deprels.append(None if token["deprel"] in (None, "_") else token["deprel"])
        feats.append(_feat_strings(token["feats"]))

    for token, number in zip(tokens, lines):
        ident = token["id"]
        if isinstance(ident, tuple) and ident[1] == ".":
            continue  # empty node: no surface form
        if isinstance(ident, tuple):
            first, last = ident[0], ident[2]
            if mwt is not None or first != expected or last < first:
                raise _fail(
                    path, number, f"multiword token {first}-{last} does not start at the next word ({expected})",
                    "a range N-M must precede words N..M and ranges must not overlap",
                )  # fmt: skip
            mwt = (first, last, token["form"], _space_after(token), number)
            mwt_words = []
            continue
        if ident != expected:
            raise _fail(path, number, f"word ID {ident} where {expected} was expected", "number the words 1, 2, 3, …")
        expected += 1
        if mwt is None:
            begin = emit(token["form"], _space_after(token))
            add_word(token, begin, begin + len(token["form"]))
            continue
        mwt_words.append(token)
        if ident == mwt[1]:
            begin = emit(mwt[2], mwt[3])
            _add_mwt_words(mwt[2], begin, mwt_words, add_word)
            mwt = None
    if mwt is not None:
        raise _fail(path, mwt[4], f"multiword token {mwt[0]}-{mwt[1]} covers missing words", "add words up to its last ID")
    text = "".join(parts).rstrip(" ")
    metadata = tokens.metadata
    written = metadata.get("text")
    return UDSentence(
        text=text,
        begins=begins,
        ends=ends,
        forms=forms,
        upos=upos,
        deprels=deprels,
        feats=feats,
        sent_id=metadata.get("sent_id"),
        line=first_line,
        text_matches=None if written is None else written == text,
    )


def _add_mwt_words(surface: str, begin: int, words: list[Any], add_word: Any) -> None:
    """Spans of a multiword token's words: their own where their forms spell it, else the whole token."""
    if "".join(word["form"] for word in words) == surface:
        for word in words:
            add_word(word, begin, begin + len(word["form"]))
            begin += len(word["form"])
    else:
        for word in words:
            add_word(word, begin, begin + len(surface))


# --------------------------------------------------------------------------- packing


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


def _join(texts: Sequence[str], separator: str) -> tuple[tuple[int, ...], str]:
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(separator)
    return tuple(starts), separator.join(texts)


# --------------------------------------------------------------------------- alignment


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


# --------------------------------------------------------------------------- builder


@dataclass
class _Words:
    """Annotations of every word read, indexed by a global word id."""

    upos: list[str | None] = field(default_factory=list)
    deprels: list[str | None] = field(default_factory=list)
    feats: list[tuple[str, ...]] = field(default_factory=list)

    def extend(self, sentence: UDSentence) -> int:
        offset = len(self.upos)
        self.upos.extend(sentence.upos)
        self.deprels.extend(sentence.deprels)
        self.feats.extend(sentence.feats)
        return offset


def build_ud(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any,
    *,
    collections: Sequence[str] = COLLECTIONS,
    context_length: int = 512,
    piece: str = "first",
    positive_ratio: float = 0.2,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
    deprels: Sequence[str] | str | None = None,
    morph_features: Sequence[str] | str | None = None,
) -> ProbeDataset:
    """Build part-of-speech, dependency and morphology features from CoNLL-U treebanks.

    Every syntactic word's chosen token(s) get the word's labels; each label
    value is a one-versus-all binary feature:

    * ``pos:<UPOS>`` (collection ``upos``): every UPOS tag in the data.
      Negatives: all other labelled word positions.
    * ``dep:<deprel>`` (collection ``deprel``): the paper's 29 relations by
      default. A word's relation counts as itself when it is a requested
      feature and as its universal base relation (before ``:``) otherwise, so
      ``obl:tmod`` is an ``obl`` while the paper's own subtypes
      (``nsubj:pass``, ``aux:pass``, ``acl:relcl``, ``nmod:poss``) are classes
      of their own — an ``nsubj:pass`` word is a *negative* of ``dep:nsubj``.
      Negatives: all other labelled word positions.
    * ``morph:<Feat>=<Value>`` (collection ``morph``): the paper's UD features
      by default. Negatives (Appendix A.2.2: "from the same token class") are
      the words without the value whose UPOS is one of the positives' UPOS
      tags (``Tense=Past`` → VERB and AUX words not in the past tense).

    A token position is never both a positive and a negative of one feature:
    when a token carries several words (``don't`` → one token for ``do`` and
    ``n't``) it is positive if any of them is. Features with fewer than
    ``min_positives`` positives (or negatives) are dropped and listed in
    ``dataset.extra["dropped_features"]``.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        CoNLL-U files, plain or gzipped.
    tokenizer : transformers fast tokenizer
        Its special tokens are added to every sequence.
    collections : sequence of {"upos", "deprel", "morph"}
    context_length : int, default 512
        Maximum tokens per sequence, special tokens included. Sentences of one
        document are packed greedily (joined by a space); a sentence longer
        than this on its own is dropped and counted in
        ``dataset.extra["dropped_sentences"]``, never truncated.
    piece : {"first", "last", "all"}, default "first"
        Which token(s) of a multi-token word carry its labels.
    positive_ratio : float or None, default 0.2
        Target share of positives per feature (negatives are subsampled);
        None keeps every negative.
    seed : int, default 0
        Seeds the negative subsampling.
    min_positives : int, default 20
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample; negatives then
        follow ``positive_ratio``). Bounds probing time on large sources.
    deprels : sequence of str or "all", optional
        Relations to probe; default :data:`PAPER_DEPRELS`; ``"all"`` takes
        every relation in the data, subtypes as written.
    morph_features : sequence of str or "all", optional
        ``"Feat=Value"`` strings; default :data:`PAPER_MORPH_FEATURES`;
        ``"all"`` takes every value in the data.

    Returns
    -------
    ProbeDataset
        One sequence per pack (group = ``<file stem>:<document id>``), token
        examples only; ``extra`` records dropped sentences, sentences whose
        rebuilt text differs from ``# text``, the morphology word classes and
        words that no token covers.

    Raises
    ------
    InputError
        Missing, empty or malformed file (with the line number); an unknown
        collection or piece; an explicitly requested relation or feature
        value absent from the data; no feature with enough examples.
    """
    sources = _as_sources(sources)
    paths = [Path(source) for source in sources]
    collections = _check_collections(collections)
    if piece not in PIECES:
        raise InputError(f"piece must be one of {PIECES}, not {piece!r}")
    _check_context_length(tokenizer, context_length)
    if min_positives < 1:
        raise InputError(f"min_positives must be at least 1, not {min_positives}")
    dep_request = _request(deprels, PAPER_DEPRELS, "deprels", "a relation such as 'nsubj' or 'nsubj:pass'")
    morph_request = _request(morph_features, PAPER_MORPH_FEATURES, "morph_features", "a 'Feature=Value' string")
    if isinstance(morph_request, tuple):
        _check_morph_names(morph_request)
    files = [(prefix, read_conllu(path)) for prefix, path in zip(unique_stems(paths), paths)]

    params = {
        "sources": sources,
        "collections": list(collections),
        "context_length": context_length,
        "piece": piece,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
        "deprels": list(dep_request) if isinstance(dep_request, tuple) else dep_request,
        "morph_features": list(morph_request) if isinstance(morph_request, tuple) else morph_request,
    }
    assembler = DatasetAssembler("ud", params, tokenizer_info(tokenizer))
    labelling = _Labelling(assembler, tokenizer, context_length, piece)
    for prefix, documents in files:
        labelling.add_file(prefix, documents)
    pairs = labelling.pairs()
    words = labelling.words
    morph_classes: dict[str, list[str]] = {}
    if "upos" in collections:
        _add_upos(assembler, pairs, words)
    if "deprel" in collections:
        _add_deprels(assembler, pairs, words, dep_request, explicit=deprels is not None)
    if "morph" in collections:
        morph_classes = _add_morph(assembler, pairs, words, morph_request, explicit=morph_features is not None)

    dataset = assembler.build(
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra.update(labelling.report())
    dataset.extra["morph_word_classes"] = {f"morph:{k}": v for k, v in morph_classes.items()}
    return dataset


class _Labelling:
    """Packs each document into sequences and records which words each token position carries."""

    def __init__(self, assembler: DatasetAssembler, tokenizer: Any, context_length: int, piece: str):
        self.assembler = assembler
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.piece = piece
        self.words = _Words()
        self._sequence: list[np.ndarray] = []
        self._token: list[np.ndarray] = []
        self._word: list[np.ndarray] = []
        self.stats: Counter = Counter()
        self.dropped_ids: list[str] = []
        self.mismatched_ids: list[str] = []

    def add_file(self, prefix: str, documents: list[UDDocument]) -> None:
        sentences = [s for doc in documents for s in doc.sentences]
        # One batched call for the length estimates of the whole file.
        lengths = token_counts(self.tokenizer, [s.text for s in sentences])
        cursor = 0
        for doc in documents:
            self._add_document(prefix, doc, lengths[cursor : cursor + len(doc.sentences)])
            cursor += len(doc.sentences)
        for sentence in sentences:
            if sentence.text_matches is False:
                self.mismatched_ids.append(sentence.sent_id or f"{prefix} line {sentence.line}")
        self.stats.update(documents=len(documents), sentences=len(sentences), words=sum(s.n_words for s in sentences))

    def _add_document(self, prefix: str, doc: UDDocument, lengths: np.ndarray) -> None:
        first_word = [self.words.extend(s) for s in doc.sentences]
        texts = [s.text for s in doc.sentences]
        packs, dropped = pack_texts(texts, self.tokenizer, self.context_length, lengths=lengths)
        for index in dropped:
            sentence = doc.sentences[index]
            self.stats.update(dropped_sentences=1, dropped_words=sentence.n_words)
            self.dropped_ids.append(sentence.sent_id or f"{prefix} line {sentence.line}")
        for pack in packs:
            seq = self.assembler.add_sequence(pack.encoded.ids, f"{prefix}:{doc.id}", pack.text)
            units = [doc.sentences[u] for u in pack.units]
            begins = np.concatenate([np.asarray(u.begins, np.int64) + start for u, start in zip(units, pack.starts)])
            ends = np.concatenate([np.asarray(u.ends, np.int64) + start for u, start in zip(units, pack.starts)])
            ids = np.concatenate([np.arange(doc.sentences[u].n_words) + first_word[u] for u in pack.units])
            word, token = word_tokens(pack.encoded, begins, ends, self.piece)
            self.stats["uncovered_words"] += len(ids) - len(np.unique(word))
            self._sequence.append(np.full(len(word), seq, np.int64))
            self._token.append(token)
            self._word.append(ids[word])

    def pairs(self) -> _Pairs:
        empty = [np.zeros(0, np.int64)]
        return _Pairs(*(np.concatenate(parts + empty) for parts in (self._sequence, self._token, self._word)))

    def report(self) -> dict[str, Any]:
        """What ``dataset.extra`` records about the reading and packing."""
        return {
            "documents": self.stats["documents"],
            "sentences": self.stats["sentences"],
            "words": self.stats["words"],
            "dropped_sentences": {
                "count": self.stats["dropped_sentences"],
                "words": self.stats["dropped_words"],
                "reason": f"longer than context_length={self.context_length} tokens on their own",
                "sent_ids": self.dropped_ids[:20],
            },
            "text_mismatches": {
                "count": len(self.mismatched_ids),
                "sent_ids": self.mismatched_ids[:20],
                "note": "the rebuilt text (from forms and SpaceAfter) is used where it differs from # text",
            },
            "uncovered_words": self.stats["uncovered_words"],
        }


class _Pairs:
    """Every (token position, word) pair, with the distinct positions they fall on.

    Parameters
    ----------
    sequence, token, word : ndarray of int64, shape (n_pairs,)
    """

    def __init__(self, sequence: np.ndarray, token: np.ndarray, word: np.ndarray):
        self.word = word
        keys = np.stack([sequence, token], axis=1)
        # One sort for all features; per feature only boolean masks over positions.
        positions, self._position = np.unique(keys, axis=0, return_inverse=True)
        self._position = self._position.reshape(-1)
        self._sequence, self._token = positions[:, 0], positions[:, 1]

    def add(self, assembler: DatasetAssembler, feature: str, positive: np.ndarray, candidate: np.ndarray) -> None:
        """Positions of positive pairs are positives; other candidate positions negatives."""
        is_pos = np.zeros(len(self._sequence), bool)
        is_pos[self._position[positive]] = True
        is_neg = np.zeros(len(self._sequence), bool)
        is_neg[self._position[candidate]] = True
        is_neg &= ~is_pos
        for mask, label in ((is_pos, 1), (is_neg, 0)):
            assembler.add_examples(feature, self._sequence[mask], self._token[mask], label)


def _codes(values: list[str | None], word: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer code of each pair's value (-1 for None) and the sorted distinct values."""
    vocabulary = sorted({v for v in values if v is not None})
    lookup = {v: i for i, v in enumerate(vocabulary)}
    per_word = np.array([lookup.get(v, -1) if v is not None else -1 for v in values], np.int64)
    return (per_word[word] if len(per_word) else np.zeros(len(word), np.int64)), vocabulary


def _add_upos(assembler: DatasetAssembler, pairs: _Pairs, words: _Words) -> None:
    codes, tags = _codes(words.upos, pairs.word)
    candidate = codes >= 0
    for code, tag in enumerate(tags):
        name = f"pos:{tag}"
        gloss = _UPOS_GLOSS.get(tag, tag)
        assembler.add_feature(name, description=f"the word's UPOS is {tag} ({gloss})", collection="upos")
        pairs.add(assembler, name, codes == code, candidate)


def _add_deprels(
    assembler: DatasetAssembler, pairs: _Pairs, words: _Words, request: tuple[str, ...] | str, *, explicit: bool
) -> None:
    present = {d for d in words.deprels if d is not None}
    if request == "all":
        request = tuple(sorted(present))
    else:
        folded = {d if d in request else d.split(":")[0] for d in present}
        if explicit:
            _require_present(request, folded, "dependency relation", "deprels")
    wanted = set(request)
    labels = [None if d is None else d if d in wanted else d.split(":")[0] for d in words.deprels]
    codes, vocabulary = _codes(labels, pairs.word)
    lookup = {v: i for i, v in enumerate(vocabulary)}
    candidate = codes >= 0
    for relation in request:
        name = f"dep:{relation}"
        assembler.add_feature(name, description=f"the word's dependency relation is {relation}", collection="deprel")
        pairs.add(assembler, name, codes == lookup.get(relation, -2), candidate)


def _add_morph(
    assembler: DatasetAssembler, pairs: _Pairs, words: _Words, request: tuple[str, ...] | str, *, explicit: bool
) -> dict[str, list[str]]:
    index: dict[str, list[int]] = {}
    for w, feats in enumerate(words.feats):
        for feat in feats:
            index.setdefault(feat, []).append(w)
    if request == "all":
        request = tuple(sorted(index))
    elif explicit:
        _require_present(request, set(index), "morphological feature value", "morph_features")
    upos_codes, tags = _codes(words.upos, pairs.word)
    classes = {}
    for feat in request:
        has = np.zeros(len(words.feats), bool)
        has[index.get(feat, [])] = True
        positive = has[pairs.word] if len(has) else np.zeros(len(pairs.word), bool)
        in_class = np.unique(upos_codes[positive & (upos_codes >= 0)])
        classes[feat] = [tags[c] for c in in_class]
        name = f"morph:{feat}"
        assembler.add_feature(
            name,
            description=f"the word has {feat}; negatives are {'/'.join(classes[feat]) or 'no'} words without it",
            collection="morph",
        )
        pairs.add(assembler, name, positive, np.isin(upos_codes, in_class) & (upos_codes >= 0))
    return classes


# --------------------------------------------------------------------------- argument checks


def _as_sources(sources: Any) -> list[str]:
    """The source paths as given (one path or an iterable of them), as strings."""
    items = [sources] if isinstance(sources, (str, bytes, os.PathLike)) else list(sources)
    if not items:
        raise InputError("no sources given; pass one or more file paths.")
    return [os.fsdecode(item) for item in items]


def unique_stems(paths: Sequence[os.PathLike | str], suffixes: Sequence[str] = (".gz", ".conllu")) -> list[str]:
    """A group prefix per file: its name without ``suffixes`` (stripped from the end, in order), numbered when
    names collide."""
    stems = []
    for path in paths:
        name = os.path.basename(os.fspath(path))
        for suffix in suffixes:
            name = name.removesuffix(suffix)
        stems.append(name)
    counts = Counter(stems)
    seen: Counter = Counter()
    unique = []
    for stem in stems:
        seen[stem] += 1
        unique.append(stem if counts[stem] == 1 else f"{stem}#{seen[stem]}")
    return unique


def _check_collections(collections: Any) -> tuple[str, ...]:
    collections = (collections,) if isinstance(collections, str) else tuple(collections)
    unknown = [c for c in collections if c not in COLLECTIONS]
    if unknown or not collections:
        raise InputError(f"collections must be a non-empty subset of {COLLECTIONS}; got {collections!r}")
    return tuple(dict.fromkeys(collections))


def _check_context_length(tokenizer: Any, context_length: int) -> None:
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    if not isinstance(context_length, (int, np.integer)) or context_length <= specials + 1:
        raise InputError(
            f"context_length must be an integer above {specials + 1} (the tokenizer adds {specials} "
            f"special tokens); got {context_length!r}"
        )


def _request(value: Any, default: tuple[str, ...], name: str, example: str) -> tuple[str, ...] | str:
    if value is None:
        return default
    if isinstance(value, str):
        if value == "all":
            return "all"
        raise InputError(f"{name} must be None, 'all' or a list of names (each {example}); got {value!r}")
    items = tuple(dict.fromkeys(value))
    if not items or not all(isinstance(item, str) and item for item in items):
        raise InputError(f"{name} must be a non-empty list of names (each {example}); got {value!r}")
    return items


def _check_morph_names(names: tuple[str, ...]) -> None:
    bad = [n for n in names if not _FEAT_RE.match(n)]
    if bad:
        raise InputError(
            f"morph_features must be 'Feature=Value' strings as in CoNLL-U FEATS (e.g. 'Tense=Past'); got {bad}"
        )


def _require_present(requested: tuple[str, ...], present: set[str], what: str, argument: str) -> None:
    """An explicitly requested value that never occurs is almost surely a typo: refuse it."""
    missing = [r for r in requested if r not in present]
    if missing:
        raise InputError(
            f"{argument}: no word in the sources has the {what} {', '.join(map(repr, missing))}, so the feature "
            f"would have no positives; choose from: {', '.join(sorted(present)) or '(none)'}"
        )
