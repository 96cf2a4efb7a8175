"""The ``latex`` feature collection: where a token of a LaTeX source sits (math, fraction parts, title…).

The features of Table A.3 of the paper, labelled from regular expressions and
a small state machine over ``.tex`` sources (Appendix A.2.2):

``is_inline_math``
    inside ``$…$``, ``\\(…\\)`` or a ``math`` environment;
``is_display_math``
    inside ``$$…$$``, ``\\[…\\]`` or a display environment (``equation``,
    ``align``, ``gather``, ``multline``, ``eqnarray``, ``displaymath``,
    ``flalign``, ``alignat``, starred or not);
``is_math``
    inside either;
``is_superscript``, ``is_subscript``
    inside the argument of ``^`` or ``_`` in math: the brace group
    ``^{…}``, else the single control sequence (``^\\prime``) or character
    (``x^2``) that follows;
``is_numerator``, ``is_denominator``, ``is_frac``
    inside the first, the second, or either argument of ``\\frac``
    (``\\dfrac``, ``\\tfrac``, ``\\cfrac``), each a brace group or a single
    character or control sequence (``\\frac12``);
``is_title``, ``is_author``
    inside the argument of ``\\title{…}`` / ``\\author{…}`` (after optional
    ``[…]`` arguments);
``is_abstract``
    inside the ``abstract`` environment;
``is_reference``
    inside the argument of a citation or cross-reference command
    (``\\cite``, ``\\citep``, ``\\citet``, ``\\ref``, ``\\eqref``, ``\\autoref``,
    ``\\cref``, ``\\pageref``…: :data:`REFERENCE_COMMANDS`). The paper does not
    define this feature; this is our reading.

**Containment** (the paper's policy): the tokens *inside* a construct are
positives, the tokens that delimit it are not: for ``x_{ij}`` the ``i`` and
``j`` are subscript, ``_``, ``{`` and ``}`` are not; for ``$a$`` the ``a`` is
math, the dollars are not. Labels are computed on characters, then carried to
the model's tokens through their character offsets: a token is a positive
when all of its non-space characters are inside, a candidate negative when
none is, and no example of that feature when it straddles the boundary
(a byte-level token such as ``{x`` that merges a delimiter with content).
Comments (``%`` to the end of the line) are parsed as nothing and their
tokens are never examples.

**Negatives** follow the paper: where a feature has a natural complement
(:data:`COMPLEMENTS`: numerator ↔ denominator, superscript ↔ subscript,
inline ↔ display math, a fraction ↔ other math), half of the negatives are
drawn from tokens of the complement and the other half at random from all
candidate negatives; otherwise all negatives are random.

Not handled (documented limits of a small state machine): ``\\verb`` and
verbatim environments, ``$`` inside ``\\text{…}`` within ``$…$`` math, and
macros that expand to math. A file with unbalanced braces or unterminated
math is skipped and listed in ``dataset.extra["files"]["skipped"]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import EncodedText
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import (
    FileReport,
    cap_positives,
    check_min_positives,
    check_positive_ratio,
    find_files,
    name_seed,
)
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import pack_lines
from needle.datasets.readers.text import normalize_newlines
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = [
    "BUILDER",
    "COLLECTION",
    "COMPLEMENTS",
    "FEATURES",
    "REFERENCE_COMMANDS",
    "LatexError",
    "LatexLabels",
    "build_latex",
    "find_tex_files",
    "label_latex",
    "label_tokens",
]

BUILDER = "latex"
COLLECTION = "latex"

#: Feature name → description, in dataset order (Table A.3).
FEATURES: dict[str, str] = {
    "is_superscript": "inside a superscript in math (^{...} or ^x)",
    "is_subscript": "inside a subscript in math (_{...} or _x)",
    "is_inline_math": "inside inline math ($...$, \\(...\\), math environment)",
    "is_display_math": "inside display math ($$...$$, \\[...\\], equation, align...)",
    "is_math": "inside inline or display math",
    "is_frac": "inside an argument of \\frac",
    "is_numerator": "inside the first argument of \\frac",
    "is_denominator": "inside the second argument of \\frac",
    "is_title": "inside \\title{...}",
    "is_abstract": "inside the abstract environment",
    "is_author": "inside \\author{...}",
    "is_reference": "inside the argument of a citation or cross-reference command",
}
_INDEX = {name: i for i, name in enumerate(FEATURES)}

#: Feature → the feature whose positives are its natural negatives (half of them).
COMPLEMENTS: dict[str, str] = {
    "is_numerator": "is_denominator",
    "is_denominator": "is_numerator",
    "is_superscript": "is_subscript",
    "is_subscript": "is_superscript",
    "is_inline_math": "is_display_math",
    "is_display_math": "is_inline_math",
    "is_frac": "is_math",
}

REFERENCE_COMMANDS = frozenset((
    "cite", "citep", "citet", "citealp", "citealt", "citeauthor", "citeyear", "citeyearpar", "nocite",
    "parencite", "textcite", "autocite", "ref", "eqref", "autoref", "cref", "Cref", "pageref", "nameref", "vref",
))
_FRAC_COMMANDS = frozenset(("frac", "dfrac", "tfrac", "cfrac"))
_DISPLAY_ENVIRONMENTS = frozenset(
    name + star
    for name in ("equation", "align", "alignat", "gather", "multline", "flalign", "eqnarray", "displaymath")
    for star in ("", "*")
)
_INLINE_ENVIRONMENTS = frozenset(("math",))
_WHITESPACE_CODES = np.array([ord(c) for c in map(chr, range(0x3001)) if c.isspace()], np.uint32)
# One lexeme: a control word (letters, optional star) or symbol, $$, a special character, or a comment.
_LEXEME = re.compile(r"\\(?:[A-Za-z@]+\*?|.)|\$\$|[${}^_\[\]]|%[^\n]*", re.DOTALL)


class LatexError(ValueError):
    """A LaTeX source the labeller cannot parse (unbalanced braces, unterminated math)."""


@dataclass(frozen=True)
class LatexLabels:
    """Character-level labels of a LaTeX text.

    Attributes
    ----------
    positive : ndarray of shape (n_chars, n_features), bool
        ``positive[c, j]``: character ``c`` is inside a construct of feature
        ``features[j]`` (comments excluded).
    comment : ndarray of shape (n_chars,), bool
        Characters of comments (``%`` to the end of the line).
    visible : ndarray of shape (n_chars,), bool
        Characters that are not whitespace.
    features : tuple of str
        Column names, :data:`FEATURES` order.
    """

    positive: np.ndarray
    comment: np.ndarray
    visible: np.ndarray
    features: tuple[str, ...] = tuple(FEATURES)

    def spans(self, text: str, feature: str) -> list[str]:
        """The maximal runs of ``text`` positive for ``feature`` (handy in tests)."""
        column = self.positive[:, self.features.index(feature)].astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], column, [0]])))
        return [text[b:e] for b, e in zip(edges[::2], edges[1::2])]


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # "cs" (control sequence), "comment" or the character(s) themselves
    start: int
    end: int
    name: str  # the control sequence's name without the backslash


def _lex(text: str) -> list[_Lexeme]:
    lexemes = []
    for match in _LEXEME.finditer(text):
        s = match.group(0)
        if s.startswith("\\"):
            lexemes.append(_Lexeme("cs", match.start(), match.end(), s[1:]))
        elif s.startswith("%"):
            lexemes.append(_Lexeme("comment", match.start(), match.end(), ""))
        else:
            lexemes.append(_Lexeme(s, match.start(), match.end(), ""))
    return lexemes


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


class _Parser:
    """The lexemes of a text, their brace matching, and argument lookup."""

    def __init__(self, text: str):
        self.text = text
        lexemes = _lex(text)
        self.lexemes = [lx for lx in lexemes if lx.kind != "comment"]
        self.comments = [lx for lx in lexemes if lx.kind == "comment"]
        self.at = {lx.start: i for i, lx in enumerate(self.lexemes)}
        self.match: dict[int, int] = {}
        stack: list[int] = []
        for i, lx in enumerate(self.lexemes):
            if lx.kind == "{":
                stack.append(i)
            elif lx.kind == "}":
                if not stack:
                    raise LatexError(f"line {_line(text, lx.start)}: '}}' closes no open brace")
                self.match[stack.pop()] = i
        if stack:
            raise LatexError(f"line {_line(text, self.lexemes[stack[-1]].start)}: '{{' is never closed")

    def next_visible(self, offset: int) -> int:
        """The first offset at or after ``offset`` that is not whitespace (or a comment); ``len(text)`` at the end."""
        text = self.text
        while offset < len(text):
            if text[offset].isspace():
                offset += 1
            elif text[offset] == "%" and (offset == 0 or text[offset - 1] != "\\"):
                newline = text.find("\n", offset)
                offset = len(text) if newline < 0 else newline + 1
            else:
                return offset
        return offset

    def argument(self, offset: int) -> tuple[int, int, int] | None:
        """The argument starting at the first visible character from ``offset``.

        Returns ``(content_begin, content_end, after)``: a brace group's
        inside, or a single control sequence or character; ``after`` is where
        the argument ends. None at the end of the text or before a closing brace.
        """
        p = self.next_visible(offset)
        if p >= len(self.text) or self.text[p] in "}":
            return None
        i = self.at.get(p)
        if i is not None and self.lexemes[i].kind == "{":
            close = self.lexemes[self.match[i]]
            return p + 1, close.start, close.end
        if i is not None and self.lexemes[i].kind == "cs":
            return p, self.lexemes[i].end, self.lexemes[i].end
        return p, p + 1, p + 1

    def group_after(self, offset: int) -> tuple[int, int, int] | None:
        """The brace group after optional ``[...]`` arguments from ``offset``: (begin, end, after) or None."""
        p = self.next_visible(offset)
        while p < len(self.text) and self.text[p] == "[":
            close = self._bracket_end(p)
            if close is None:
                return None
            p = self.next_visible(close + 1)
        i = self.at.get(p)
        if i is None or self.lexemes[i].kind != "{":
            return None
        close = self.lexemes[self.match[i]]
        return p + 1, close.start, close.end

    def _bracket_end(self, p: int) -> int | None:
        depth = 0
        i = self.at.get(p)
        if i is None:
            return None
        for lx in self.lexemes[i:]:
            if lx.kind == "{":
                depth += 1
            elif lx.kind == "}":
                depth -= 1
            elif lx.kind == "]" and depth == 0:
                return lx.start
        return None

    def environment_name(self, i: int) -> tuple[str, int] | None:
        """For ``\\begin``/``\\end`` at lexeme ``i``: the environment's name and the offset after ``{name}``."""
        group = self.group_after(self.lexemes[i].end)
        if group is None:
            return None
        begin, end, after = group
        return self.text[begin:end].strip(), after


def label_latex(text: str) -> LatexLabels:
    """Label every character of a LaTeX source with the :data:`FEATURES`.

    Parameters
    ----------
    text : str
        A LaTeX source (whole document or a fragment).

    Returns
    -------
    LatexLabels

    Raises
    ------
    LatexError
        Unbalanced braces, math that is never closed, or an ``abstract``
        environment that is never closed; the message gives the line.
    """
    parser = _Parser(text)
    n = len(text)
    positive = np.zeros((n, len(FEATURES)), bool)
    math = _math_regions(parser)
    for begin, end, kind in math:
        positive[begin:end, _INDEX["is_inline_math" if kind == "inline" else "is_display_math"]] = True
    positive[:, _INDEX["is_math"]] = positive[:, _INDEX["is_inline_math"]] | positive[:, _INDEX["is_display_math"]]
    in_math = positive[:, _INDEX["is_math"]]
    lexemes = parser.lexemes
    for i, lx in enumerate(lexemes):
        if lx.kind in ("^", "_") and in_math[lx.start]:
            arg = parser.argument(lx.end)
            if arg is not None:
                positive[arg[0] : arg[1], _INDEX["is_superscript" if lx.kind == "^" else "is_subscript"]] = True
        elif lx.kind == "cs" and lx.name in _FRAC_COMMANDS and in_math[lx.start]:
            numerator = parser.argument(lx.end)
            denominator = parser.argument(numerator[2]) if numerator is not None else None
            if denominator is not None:
                positive[numerator[0] : numerator[1], _INDEX["is_numerator"]] = True
                positive[denominator[0] : denominator[1], _INDEX["is_denominator"]] = True
        elif lx.kind == "cs" and (lx.name in ("title", "author") or lx.name in REFERENCE_COMMANDS):
            group = parser.group_after(lx.end)
            if group is not None:
                feature = {"title": "is_title", "author": "is_author"}.get(lx.name, "is_reference")
                positive[group[0] : group[1], _INDEX[feature]] = True
        elif lx.kind == "cs" and lx.name == "begin":
            env = parser.environment_name(i)
            if env is not None and env[0] == "abstract":
                end = _environment_end(parser, i + 1, "abstract")
                positive[env[1] : end, _INDEX["is_abstract"]] = True
    positive[:, _INDEX["is_frac"]] = positive[:, _INDEX["is_numerator"]] | positive[:, _INDEX["is_denominator"]]
    comment = np.zeros(n, bool)
    for lx in parser.comments:
        comment[lx.start : lx.end] = True
    positive[comment] = False
    visible = ~np.isin(np.frombuffer(text.encode("utf-32-le"), np.uint32), _WHITESPACE_CODES)
    return LatexLabels(positive=positive, comment=comment, visible=visible)


def _environment_end(parser: _Parser, first: int, name: str) -> int:
    """Offset of the ``\\end{name}`` closing an environment whose body starts at lexeme ``first``."""
    for j in range(first, len(parser.lexemes)):
        lx = parser.lexemes[j]
        if lx.kind == "cs" and lx.name == "end":
            env = parser.environment_name(j)
            if env is not None and env[0] == name:
                return lx.start
    raise LatexError(f"line {_line(parser.text, parser.lexemes[first - 1].start)}: \\begin{{{name}}} is never closed")


def _math_regions(parser: _Parser) -> list[tuple[int, int, str]]:
    """The state machine over math delimiters: ``(content_begin, content_end, "inline"|"display")``."""
    regions = []
    closer: tuple[str, str] | None = None  # (lexeme kind or environment, name) that ends the open math
    opened_at = content = 0
    kind = ""
    lexemes = parser.lexemes
    for i, lx in enumerate(lexemes):
        if closer is None:
            opening = None
            if lx.kind == "$$":
                opening = ("$$", ""), "display", lx.end
            elif lx.kind == "$":
                opening = ("$", ""), "inline", lx.end
            elif lx.kind == "cs" and lx.name in ("(", "["):
                opening = ("cs", ")" if lx.name == "(" else "]"), "inline" if lx.name == "(" else "display", lx.end
            elif lx.kind == "cs" and lx.name == "begin":
                env = parser.environment_name(i)
                if env is not None and env[0] in _DISPLAY_ENVIRONMENTS | _INLINE_ENVIRONMENTS:
                    mode = "inline" if env[0] in _INLINE_ENVIRONMENTS else "display"
                    opening = ("env", env[0]), mode, env[1]
            if opening is not None:
                closer, kind, content = opening
                opened_at = lx.start
            continue
        if closer[0] == "$" and lx.kind == "$$":  # ``$a$$b$``: one inline formula closes, the next opens
            regions.append((content, lx.start, kind))
            content, opened_at = lx.end, lx.start + 1
            continue
        ends = (
            (closer[0] in ("$", "$$") and lx.kind == closer[0])
            or (closer[0] == "cs" and lx.kind == "cs" and lx.name == closer[1])
            or (closer[0] == "env" and lx.kind == "cs" and lx.name == "end" and _names(parser, i, closer[1]))
        )
        if ends:
            regions.append((content, lx.start, kind))
            closer = None
    if closer is not None:
        raise LatexError(f"line {_line(parser.text, opened_at)}: math opened here is never closed")
    return regions


def _names(parser: _Parser, i: int, name: str) -> bool:
    env = parser.environment_name(i)
    return env is not None and env[0] == name


# ---------------------------------------------------------------------------------------------
# Model tokens
# ---------------------------------------------------------------------------------------------
def label_tokens(
    encoded: EncodedText, text: str, offset: int, labels: LatexLabels
) -> tuple[np.ndarray, np.ndarray]:
    """Positives and candidate negatives among a sequence's model tokens.

    Parameters
    ----------
    encoded : EncodedText
        The sequence, with offsets into its own text.
    text : str
        The whole labelled source text.
    offset : int
        Where the sequence's text starts in ``text``.
    labels : LatexLabels
        Labels of ``text``.

    Returns
    -------
    positive, negative : ndarray of shape (n_model_tokens, n_features), bool
        A token is positive when all its non-space characters are inside,
        negative when none is; comment and special tokens are neither.
    """
    n_tokens, n_features = len(encoded), labels.positive.shape[1]
    positive = np.zeros((n_tokens, n_features), bool)
    negative = np.zeros_like(positive)
    if len(text) == 0:
        return positive, negative
    visible = labels.visible
    zero = np.zeros((1, n_features), np.int64)
    inside = np.concatenate([zero, np.cumsum(labels.positive & visible[:, None], axis=0)])
    n_visible = np.concatenate([[0], np.cumsum(visible)])
    n_comment = np.concatenate([[0], np.cumsum(labels.comment & visible)])
    begin = encoded.offsets[:, 0] + offset
    end = encoded.offsets[:, 1] + offset
    usable = ~encoded.special & (end > begin)
    count = n_visible[end] - n_visible[begin]
    usable &= (count > 0) & (n_comment[end] - n_comment[begin] == 0)
    hits = inside[end] - inside[begin]
    positive[usable] = hits[usable] == count[usable, None]
    negative[usable] = hits[usable] == 0
    return positive, negative


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def find_tex_files(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """The ``.tex`` files of ``sources`` (files as given, directories searched recursively), with unique names.

    Names are posix paths relative to the common parent of the files, sorted;
    files under hidden directories are left out (see
    :func:`needle.datasets.builder.find_files`).

    Raises
    ------
    InputError
        No sources, a missing source, or no ``.tex`` file.
    """
    return find_files(sources, ".tex", what=".tex files or directories holding them", skip_hidden=True)


def build_latex(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any = "minilm",
    *,
    context_length: int = 512,
    max_sequences_per_file: int | None = None,
    positive_ratio: float | None = 0.2,
    min_positives: int = 5,
    max_positives: int | None = None,
    seed: int = 0,
) -> ProbeDataset:
    """Build the ``latex`` collection: token features of LaTeX sources (Table A.3).

    See the module docstring for the features, the containment rule and
    the negatives.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        ``.tex`` files and directories (searched recursively for ``*.tex``).
    tokenizer : fast tokenizer or str, default "minilm"
    context_length : int, default 512
        Most tokens per sequence, special tokens included; each file is cut
        into consecutive sequences at line ends.
    max_sequences_per_file : int, optional
        Keep only the first sequences of each file (the paper kept the first
        1024 tokens of each paper).
    positive_ratio : float or None, default 0.2
        Target share of positives per feature (the paper's 0.26 was what its
        data gave); ``None`` keeps every candidate negative.
    min_positives : int, default 5
        Features with fewer positives are dropped (listed in
        ``extra["dropped_features"]``).
    max_positives : int, optional
        Cap on positives per feature (a seeded sample).
    seed : int, default 0
        Seeds the negative (and positive) sampling.

    Returns
    -------
    ProbeDataset
        Token-level features; groups are file names. ``extra["files"]``
        lists used and skipped files (with the reason);
        ``extra["complement_negatives"]`` how many negatives of each feature
        came from its complement.

    Raises
    ------
    InputError
        Missing sources, no ``.tex`` file, bad parameters, no file that could
        be parsed, or no feature with enough examples.
    """
    if sources is None:
        raise InputError("latex needs sources: pass .tex files or directories (no LaTeX ships with a machine).")
    tokenizer = fast_tokenizer(tokenizer)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    if not isinstance(context_length, (int, np.integer)) or context_length < n_special + 8:
        raise InputError(f"context_length must be an integer of at least {n_special + 8}, not {context_length!r}.")
    if max_sequences_per_file is not None and (
        not isinstance(max_sequences_per_file, (int, np.integer)) or max_sequences_per_file < 1
    ):
        raise InputError(f"max_sequences_per_file must be a positive integer or None, not {max_sequences_per_file!r}.")
    check_positive_ratio(positive_ratio)
    check_min_positives(min_positives)
    files = find_tex_files(sources)
    source_list = [os.fspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]
    params = {
        "sources": source_list,
        "context_length": context_length,
        "max_sequences_per_file": max_sequences_per_file,
        "positive_ratio": positive_ratio,
        "min_positives": min_positives,
        "max_positives": max_positives,
        "seed": seed,
    }
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    for name, description in FEATURES.items():
        assembler.add_feature(name, description=description, collection=COLLECTION, level="token")
    positives, negatives, complements, places = [], [], [], []
    report = FileReport(len(files))
    for path, name in files:
        try:
            text = normalize_newlines(path.read_text(encoding="utf-8"))
            labels = label_latex(text)
        except (OSError, UnicodeDecodeError, LatexError) as exc:
            report.skip(name, f"{type(exc).__name__}: {exc}")
            continue
        pieces = pack_lines(text, tokenizer, context_length, n_special=n_special, max_sequences=max_sequences_per_file)
        added = 0
        for begin, stop, encoded in pieces:
            positive, negative = label_tokens(encoded, text, begin, labels)
            if not (positive.any() or negative.any()):
                continue
            sequence = assembler.add_sequence(encoded.ids, name, text[begin:stop])
            positives.append(positive)
            negatives.append(negative)
            complements.append(_complement_columns(positive, negative))
            places.append(np.stack([np.full(len(encoded), sequence), np.arange(len(encoded))], axis=1))
            added += 1
        if added:
            report.used.append(name)
    report.require_some_used(BUILDER, ".tex files could be used", empty_note="all empty", fix=".")
    positive, negative = np.concatenate(positives), np.concatenate(negatives)
    complement, place = np.concatenate(complements), np.concatenate(places)
    from_complement = {}
    for j, feature in enumerate(FEATURES):
        chosen_pos, chosen_neg, n_complement = _sample(
            positive[:, j], negative[:, j], complement[:, j], positive_ratio, max_positives,
            np.random.default_rng([seed, name_seed(feature)]),
        )
        from_complement[feature] = n_complement
        rows = np.concatenate([chosen_pos, chosen_neg])
        labels_ = np.concatenate([np.ones(len(chosen_pos), np.int8), np.zeros(len(chosen_neg), np.int8)])
        order = np.argsort(rows, kind="stable")
        assembler.add_examples(feature, place[rows[order], 0], place[rows[order], 1], labels_[order])
    dataset = assembler.build(positive_ratio=None, seed=seed, min_positives=min_positives)
    # Sampling was done here (half the negatives from the complement): record the ratio asked for.
    dataset.builder["positive_ratio"] = positive_ratio
    dataset.extra["files"] = {"considered": report.considered, "used": report.used, "skipped": report.skipped}
    dataset.extra["complement_negatives"] = {f: n for f, n in from_complement.items() if f in dataset.feature_names}
    return dataset


def _complement_columns(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """``complement[t, j]``: token ``t`` is a negative of feature ``j`` and a positive of its complement."""
    complement = np.zeros_like(negative)
    for feature, other in COMPLEMENTS.items():
        j, k = _INDEX[feature], _INDEX[other]
        complement[:, j] = negative[:, j] & positive[:, k]
    return complement


def _sample(
    positive: np.ndarray,
    negative: np.ndarray,
    complement: np.ndarray,
    positive_ratio: float | None,
    max_positives: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows kept as positives and negatives; half the negatives from the complement where it has enough.

    Returns positive rows, negative rows (both increasing) and how many
    negatives came from the complement.
    """
    pos = np.flatnonzero(positive)
    pos = cap_positives(pos, max_positives, rng)
    neg = np.flatnonzero(negative)
    if positive_ratio is None:
        return pos, neg, int(complement.sum())
    n_neg = min(round(len(pos) * (1 - positive_ratio) / positive_ratio), len(neg))
    pool = np.flatnonzero(complement)
    from_pool = rng.choice(pool, min(len(pool), n_neg // 2), replace=False) if len(pool) else pool
    rest = np.setdiff1d(neg, from_pool, assume_unique=True)
    from_rest = rng.choice(rest, n_neg - len(from_pool), replace=False)
    return pos, np.sort(np.concatenate([from_pool, from_rest])), len(from_pool)
