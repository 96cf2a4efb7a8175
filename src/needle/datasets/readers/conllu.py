"""Reading CoNLL-U treebanks: documents of sentences with each word's character span.

Files are read with the ``conllu`` package (plain or gzipped), with per-line
checks of their own so that a malformed line is reported with its file and
line number. Each sentence's surface text is rebuilt from its tokens
(``SpaceAfter=No`` honoured, multiword tokens written once, empty nodes
skipped) and the character span of every word kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conllu import parser as conllu_parser
from conllu.exceptions import ParseException

from needle.datasets.readers.text import read_text
from needle.errors import InputError

__all__ = [
    "CONLLU_SUFFIXES",
    "UDDocument",
    "UDSentence",
    "find_conllu_files",
    "is_conllu",
    "is_feature_value",
    "read_conllu",
]

#: File name endings of CoNLL-U files, plain or gzipped.
CONLLU_SUFFIXES = (".conllu", ".conllu.gz")

_ID_RE = re.compile(r"^(?:[1-9][0-9]*|[1-9][0-9]*-[1-9][0-9]*|[0-9]+\.[1-9][0-9]*)$")
_FEAT_RE = re.compile(r"^[A-Za-z0-9\[\]:]+=[^|=\s]+$")
_NEWDOC_RE = re.compile(r"^#\s*newdoc(?:\s*[_ ]?id)?\s*(?:=\s*(?P<id>.*?))?\s*$")
_SENT_DOC_RE = re.compile(r"^(?P<doc>.+)-[0-9]+$")
_FIELDS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")


def _keep_raw(line: list[str], index: int) -> str:
    return line[index]


# DEPS is not used and its default parser is the slowest part of ``conllu``.
_FIELD_PARSERS = {"deps": _keep_raw}



def is_conllu(path: str | os.PathLike) -> bool:
    """Whether the file name is that of a CoNLL-U file (``.conllu`` or ``.conllu.gz``)."""
    return os.fspath(path).endswith(CONLLU_SUFFIXES)


def find_conllu_files(directory: str | os.PathLike) -> list[Path]:
    """The CoNLL-U files under ``directory`` (searched recursively), sorted; empty when there are none."""
    return sorted(p for p in Path(directory).rglob("*") if p.is_file() and is_conllu(p.name))


def is_feature_value(item: str) -> bool:
    """Whether ``item`` is a well-formed FEATS item, ``Feature=Value`` (e.g. ``Tense=Past``)."""
    return _FEAT_RE.match(item) is not None


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
    text = read_text(path)
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

