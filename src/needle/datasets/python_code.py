"""The ``python`` feature collection: Python source code labelled by ``tokenize`` and ``ast``.

Every label comes from Python's own tokenizer and parser, so the labels are
exact (gold) and need no data from outside: by default the source is the
running interpreter's standard library.

How a dataset is made
---------------------
1. **Files.** ``sources`` are files or directories (searched recursively for
   ``*.py``; ``__pycache__`` and hidden directories are skipped). The default
   is the standard library of the running interpreter
   (``sysconfig.get_paths()["stdlib"]``) without the directories named in
   :data:`STDLIB_EXCLUDED_DIRS`: third-party code (``site-packages``), test
   suites (``test``, ``tests``, ``idle_test``: a third of the library, full of
   deliberately odd code) and ``encodings`` (about 120 near-identical
   generated codec tables, which would fill a sixth of any sample and put
   near-duplicates on both sides of a train/test split). Files are ordered by
   their posix path relative to the common parent of the sources (a single
   directory source: relative to it, e.g. ``json/decoder.py``); that path is
   the sequences' *group*, so a file never straddles a train/test split.
   ``max_files`` keeps a seeded stratified sample: the ordered list is cut
   into ``max_files`` equal strata and one file is drawn from each, so the
   sample spreads over the whole library (the first files alphabetically
   would all be ``__future__``, ``_abc``…). Empty files are listed in
   ``dataset.extra["files"]["empty"]``.
2. **Parsing.** A file is decoded as Python would (PEP 263 cookie or UTF-8,
   universal newlines) and parsed with :func:`ast.parse` and
   :func:`tokenize.generate_tokens`. A file that fails (undecodable, Python 2
   syntax, null bytes…) is skipped and listed with the reason in
   ``dataset.extra["files"]["skipped"]``; it never stops the build.
3. **Sequences.** Each file is cut into sequences of at most
   ``context_length`` tokens, special tokens included, at line boundaries; a
   single line longer than that is cut at token boundaries. Each sequence's
   text is re-encoded on its own, so its ids are exactly what the tokenizer
   makes of the stored ``text``. Pieces are consecutive, so a file's texts
   concatenate back to the file (less whitespace-only pieces, which are
   dropped). ``max_sequences_per_file`` keeps the first sequences of a file
   (the top of a file: licence comments, module docstring, imports, first
   definitions, so docstrings and comments weigh more than in the whole
   library), so that no big file dominates.
4. **Labels** (see :data:`FEATURES` and :func:`label_python_source`). Labels
   are attached to *Python tokens* (the tokens of :mod:`tokenize`, with an
   f-string counted as one ``STRING`` token on every Python version). A model
   token overlapping the characters of a positive Python token is a positive
   (``piece="all"``); with ``piece="first"`` (``"last"``) only the first
   (last) model token of each positive Python token is a positive, and its
   other model tokens are left out of that feature. Every other model token
   that overlaps some Python token is a candidate negative; the assembler
   subsamples negatives to ``positive_ratio``. Model tokens that overlap no
   Python token (whitespace, newlines, indentation runs, backslash
   continuations) and special tokens are never examples.

Labelling rules
---------------
``comment``
    ``COMMENT`` tokens (``#`` to the end of the line).
``docstring``
    ``STRING`` tokens of an expression statement made of a ``str`` constant
    that is the first statement of a module, class or (async) function body
    (the rule of :func:`ast.get_docstring`; f-strings and bytes are not
    docstrings).
``string``
    All other ``STRING`` tokens: str and bytes literals, f-strings whole
    (prefix, quotes and replacement fields included).
``keyword``
    ``NAME`` tokens for which :func:`keyword.iskeyword` is true (``True``,
    ``None``, ``async``… included), plus soft keywords where the parser uses
    them as keywords: ``match`` opening a match statement, ``case`` opening a
    case clause, the wildcard pattern ``_``, and ``type`` opening a type alias
    statement (Python 3.12+). A soft keyword used as a plain name is not a
    keyword.
``builtin_name``
    Identifiers read as names (``ast.Name`` in load context) listed by
    ``dir(builtins)`` of the running interpreter (``len``, ``print``,
    ``ValueError``, ``__name__``, and the ``site`` helpers such as ``exit``;
    ``_`` excluded). Attribute names (``obj.len``), keyword
    argument names (``f(type=1)``) and names being bound are not. Shadowing is
    not resolved: a local variable called ``type`` read later still counts.
``defined_name``
    The identifier a construct binds: the name after ``def``/``class``;
    ``ast.Name`` in store context (assignment, augmented and annotated
    assignment, ``for``/``with``/comprehension/walrus targets, ``type X =``);
    function and lambda parameters (the name, not ``*``/``**`` or the
    annotation); the name an import binds (the ``as`` name, else the first
    component of ``import a.b``, else the imported name of ``from m import
    n``); the ``as`` name of an ``except`` clause; capture names in ``match``
    patterns (``case [x, *rest]``, ``case {**kw}``, ``case P() as p``); type
    parameter names (3.12+). Not: ``global``/``nonlocal`` names, ``del``
    targets, attribute or subscript targets.
``number``
    ``NUMBER`` tokens (a sign is an operator).
``operator``
    ``OP`` tokens that are arithmetic, bitwise, comparison, assignment,
    augmented-assignment or walrus operators: ``+ - * / // % ** @ << >> & |
    ^ ~ < > <= >= == != = := += -= …``. The star of ``*args`` and the ``=`` of a
    keyword argument count (same token). Not: brackets, ``, : ; . ... ->``,
    the ``@`` that opens a decorator and the ``*`` of ``except*``.
``decorator``
    Every token of a decorator's logical line from the ``@`` to the end of
    its expression (possibly over several physical lines), except comments.
``in_brackets``
    Tokens enclosed by at least one pair of ``()``, ``[]`` or ``{}``: an
    opening bracket counts the brackets open before it, a closing one those
    still open after it, so the outermost pair itself is not inside.
``indent_ge2``
    Tokens of a logical line whose indentation level (the number of open
    ``INDENT`` blocks) is at least 2, e.g. a method body or the body of an
    ``if`` in a function, continuation lines included. A comment alone on its
    line belongs to no logical line (``tokenize`` reports it before the
    ``DEDENT`` that follows it), so it is neither positive nor negative here.
"""

from __future__ import annotations

import ast
import bisect
import builtins
import io
import keyword
import os
import platform
import sysconfig
import token as token_module
import tokenize
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from needle.datasets.alignment import PIECES, EncodedText
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import (
    FileReport,
    check_min_positives,
    check_model_max_length,
    check_positive_ratio,
    materialize,
    plain_params,
)
from needle.datasets.builder import progress as progress_bar
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import encoded_length, pack_lines
from needle.datasets.readers.python_files import (
    STDLIB_EXCLUDED_DIRS,
    SourceFile,
    find_python_files,
    read_python_source,
)
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = [
    "BUILDER",
    "COLLECTION",
    "FEATURES",
    "STDLIB_EXCLUDED_DIRS",
    "PythonTokenLabels",
    "build_python_code",
    "label_model_tokens",
    "label_python_source",
]

BUILDER = "python_code"
COLLECTION = "python"

#: Feature name → description, in the order features appear in a dataset.
FEATURES: dict[str, str] = {
    "comment": "inside a # comment",
    "docstring": "a module, class or function docstring",
    "string": "a string literal that is not a docstring (f-strings and bytes included)",
    "keyword": "a keyword, or a soft keyword used as one",
    "builtin_name": "a name read from builtins (len, print, ValueError...)",
    "defined_name": "the name a def, class, assignment, parameter, import, except or pattern binds",
    "number": "a numeric literal",
    "operator": "an arithmetic, comparison, bitwise or assignment operator",
    "decorator": "part of a decorator (@ to the end of its expression)",
    "in_brackets": "enclosed by at least one (), [] or {}",
    "indent_ge2": "on a logical line at indentation level 2 or more",
}
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}

_OPERATOR_NAMES = (
    "PLUS MINUS STAR SLASH DOUBLESLASH PERCENT DOUBLESTAR AT VBAR AMPER CIRCUMFLEX TILDE "
    "LEFTSHIFT RIGHTSHIFT LESS GREATER LESSEQUAL GREATEREQUAL EQEQUAL NOTEQUAL EQUAL COLONEQUAL "
    "PLUSEQUAL MINEQUAL STAREQUAL SLASHEQUAL DOUBLESLASHEQUAL PERCENTEQUAL DOUBLESTAREQUAL ATEQUAL "
    "VBAREQUAL AMPEREQUAL CIRCUMFLEXEQUAL LEFTSHIFTEQUAL RIGHTSHIFTEQUAL"
).split()
_OPERATORS = frozenset(getattr(token_module, name) for name in _OPERATOR_NAMES)
_OPENERS = frozenset((token_module.LPAR, token_module.LSQB, token_module.LBRACE))
_CLOSERS = frozenset((token_module.RPAR, token_module.RSQB, token_module.RBRACE))
_SKIPPED_TYPES = frozenset(
    (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING)
)
# f-strings (3.12+) and t-strings (3.14+) arrive as START, MIDDLE/inner tokens, END.
_STRING_STARTS = frozenset(getattr(token_module, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(token_module, n))
_STRING_ENDS = frozenset(getattr(token_module, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(token_module, n))
# ``_`` is only bound in interactive sessions; the rest is fixed by the Python version.
_BUILTIN_NAMES = frozenset(name for name in dir(builtins) if name != "_" and not keyword.iskeyword(name))
_SCOPES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_TYPE_PARAMS = tuple(getattr(ast, n) for n in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(ast, n))
_TYPE_ALIAS = getattr(ast, "TypeAlias", None)


# ---------------------------------------------------------------------------------------------
# Labelling one source text
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PythonTokenLabels:
    """The Python tokens of a source text and the features each one carries.

    Attributes
    ----------
    start, end : ndarray of shape (n_tokens,), int64
        Character span ``[start, end)`` of each token in the text; sorted and
        non-overlapping. Layout tokens (``NEWLINE``, ``NL``, ``INDENT``,
        ``DEDENT``, ``ENDMARKER``) are not included.
    string : list of str
        The token strings (``text[start:end]``).
    positive : ndarray of shape (n_tokens, n_features), bool
        ``positive[i, j]``: token ``i`` is an instance of feature ``features[j]``.
    eligible : ndarray of shape (n_tokens, n_features), bool
        Whether the token may serve as a negative of the feature (false only
        for comment-only lines in ``indent_ge2``).
    features : tuple of str
        Column names, :data:`FEATURES` order.
    """

    start: np.ndarray
    end: np.ndarray
    string: list[str]
    positive: np.ndarray
    eligible: np.ndarray
    features: tuple[str, ...] = tuple(FEATURES)

    def __len__(self) -> int:
        return len(self.start)

    def strings_of(self, feature: str) -> list[str]:
        """The strings of the tokens positive for ``feature``, in order (handy in tests)."""
        column = self.positive[:, self.features.index(feature)]
        return [s for s, hit in zip(self.string, column) if hit]


@dataclass
class _Token:
    type: int
    exact_type: int
    string: str
    start: tuple[int, int]
    end: tuple[int, int]
    level: int
    depth: int
    comment_only: bool  # a comment alone on its line, outside brackets
    decorator: bool  # on a decorator's logical line
    first: bool  # the first token of its logical line


def label_python_source(text: str, *, stop_line: int | None = None) -> PythonTokenLabels:
    """Label the Python tokens of ``text`` with every feature of :data:`FEATURES`.

    Parameters
    ----------
    text : str
        Python source with ``\\n`` line ends (as :func:`read_python_source` returns).
    stop_line : int, optional
        Only tokens starting on lines ``<= stop_line`` (1-based) are returned;
        the rest of the file is still parsed. Saves time when only the top of
        a big file is used.

    Returns
    -------
    PythonTokenLabels

    Raises
    ------
    SyntaxError, ValueError, tokenize.TokenError
        The text is not valid Python for this interpreter.
    """
    with warnings.catch_warnings():
        # Invalid escape sequences and the like warn while parsing; they change no label.
        warnings.simplefilter("ignore")
        tree = ast.parse(text)
        tokens = list(_scan_tokens(text, stop_line))
    lines = text.split("\n")
    line_starts = np.concatenate([[0], np.cumsum([len(line) + 1 for line in lines])])
    start = np.array([line_starts[t.start[0] - 1] + t.start[1] for t in tokens], np.int64)
    end = np.array([line_starts[t.end[0] - 1] + t.end[1] for t in tokens], np.int64)
    positive = np.zeros((len(tokens), len(FEATURES)), bool)
    eligible = np.ones_like(positive)
    _label_from_tokens(tokens, positive, eligible)
    _label_from_tree(_walk(tree, stop_line), _Positions(tokens, lines), positive)
    positive[:, _FEATURE_INDEX["string"]] &= ~positive[:, _FEATURE_INDEX["docstring"]]
    return PythonTokenLabels(start, end, [t.string for t in tokens], positive, eligible)


def _raw_tokens(text: str) -> Iterator[tokenize.TokenInfo]:
    """``tokenize`` tokens with each f-string/t-string merged into one ``STRING`` token."""
    stream = tokenize.generate_tokens(io.StringIO(text).readline)
    nesting, first, lines = 0, None, None
    for tok in stream:
        if tok.type in _STRING_STARTS:
            nesting += 1
            first = first or tok
        elif tok.type in _STRING_ENDS:
            nesting -= 1
            if nesting == 0:
                lines = lines or text.split("\n")
                string = _text_between(lines, first.start, tok.end)
                yield tokenize.TokenInfo(tokenize.STRING, string, first.start, tok.end, first.line)
                first = None
        elif nesting == 0:
            yield tok


def _text_between(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """The text between two tokenize positions (1-based rows, 0-based character columns)."""
    rows = lines[start[0] - 1 : end[0]]
    if len(rows) == 1:
        return rows[0][start[1] : end[1]]
    return "\n".join([rows[0][start[1] :], *rows[1:-1], rows[-1][: end[1]]])


def _scan_tokens(text: str, stop_line: int | None) -> Iterator[_Token]:
    """Visible tokens with their indentation level, bracket depth and line role."""
    level = depth = 0
    line_open = decorator = False  # a logical line has started / it is a decorator line
    pending: _Token | None = None  # a comment waits to learn whether NL (own line) follows
    for tok in _raw_tokens(text):
        if pending is not None:
            pending.comment_only = tok.type == tokenize.NL and not line_open and depth == 0
            yield pending
            pending = None
        if stop_line is not None and tok.start[0] > stop_line:
            return
        if tok.type == tokenize.INDENT:
            level += 1
        elif tok.type == tokenize.DEDENT:
            level -= 1
        elif tok.type == tokenize.NEWLINE:
            line_open = decorator = False
        if tok.type in _SKIPPED_TYPES or not tok.string.strip():
            continue
        exact = tok.exact_type
        if tok.type == tokenize.COMMENT:
            pending = _Token(tok.type, exact, tok.string, tok.start, tok.end, level, depth, False, False, False)
            continue
        first = not line_open
        if first:
            line_open, decorator = True, exact == token_module.AT
        if exact in _CLOSERS:
            depth = max(depth - 1, 0)
        yield _Token(tok.type, exact, tok.string, tok.start, tok.end, level, depth, False, decorator, first)
        if exact in _OPENERS:
            depth += 1
    if pending is not None:
        yield pending


def _label_from_tokens(tokens: list[_Token], positive: np.ndarray, eligible: np.ndarray) -> None:
    """The features that the token stream alone decides (columns of ``positive``, ``eligible``)."""
    f = _FEATURE_INDEX
    kind = np.array([t.type for t in tokens], np.int16)
    exact = np.array([t.exact_type for t in tokens], np.int16)
    strings = [t.string for t in tokens]
    comment_only = np.array([t.comment_only for t in tokens], bool)
    decorator = np.array([t.decorator for t in tokens], bool)
    opens_decorator = decorator & np.array([t.first for t in tokens], bool)
    after_except = np.array([False] + [s == "except" for s in strings[:-1]])[: len(tokens)]
    positive[:, f["comment"]] = kind == tokenize.COMMENT
    positive[:, f["string"]] = kind == tokenize.STRING
    positive[:, f["number"]] = kind == tokenize.NUMBER
    positive[:, f["keyword"]] = (kind == tokenize.NAME) & np.array([keyword.iskeyword(s) for s in strings], bool)
    positive[:, f["decorator"]] = decorator
    positive[:, f["operator"]] = (
        (kind == tokenize.OP)
        & np.isin(exact, list(_OPERATORS))
        & ~opens_decorator
        & ~((exact == token_module.STAR) & after_except)
    )
    positive[:, f["in_brackets"]] = np.array([t.depth >= 1 for t in tokens], bool)
    positive[:, f["indent_ge2"]] = np.array([t.level >= 2 for t in tokens], bool) & ~comment_only
    eligible[:, f["indent_ge2"]] = ~comment_only


class _Positions:
    """Finds the token at an ``ast`` position (whose columns count UTF-8 bytes)."""

    def __init__(self, tokens: list[_Token], lines: list[str]):
        self.tokens = tokens
        self.lines = lines
        self.starts = [t.start for t in tokens]
        self.by_start = {t.start: i for i, t in enumerate(tokens)}

    def position(self, lineno: int, byte_col: int) -> tuple[int, int]:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        if line.isascii():
            return lineno, byte_col
        return lineno, len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def at(self, node: Any) -> int | None:
        """Index of the token starting where ``node`` starts, if it was scanned."""
        return self.by_start.get(self.position(node.lineno, node.col_offset))

    def span(self, node: Any) -> range:
        """Indices of the tokens within ``node``'s span."""
        begin = bisect.bisect_left(self.starts, self.position(node.lineno, node.col_offset))
        end = bisect.bisect_left(self.starts, self.position(node.end_lineno, node.end_col_offset))
        return range(begin, end)

    def names_in(self, node: Any, name: str) -> list[int]:
        return [i for i in self.span(node) if self.tokens[i].type == tokenize.NAME and self.tokens[i].string == name]


def _walk(tree: ast.AST, stop_line: int | None) -> Iterator[ast.AST]:
    """Every node of ``tree`` (in no particular order) except subtrees starting after ``stop_line``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if stop_line is not None and _first_line(node) > stop_line:
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _first_line(node: ast.AST) -> int:
    # Decorators come before the line where a def/class node starts.
    decorators = getattr(node, "decorator_list", None)
    first = getattr(node, "lineno", 0)
    return min([first, *(d.lineno for d in decorators)]) if decorators else first


def _label_from_tree(nodes: Iterable[ast.AST], where: _Positions, positive: np.ndarray) -> None:
    """The features that need the parse tree: docstrings, soft keywords, builtin and defined names."""
    f = _FEATURE_INDEX
    marks: dict[str, list[int | None]] = {"docstring": [], "keyword": [], "builtin_name": [], "defined_name": []}
    for node in nodes:
        if isinstance(node, _SCOPES):
            marks["docstring"] += _docstring_tokens(node, where)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            marks["defined_name"].append(_def_name(node, where))
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                marks["defined_name"].append(where.at(node))
            elif isinstance(node.ctx, ast.Load) and node.id in _BUILTIN_NAMES:
                marks["builtin_name"].append(where.at(node))
        elif isinstance(node, ast.arg):
            marks["defined_name"].append(where.at(node))
        elif isinstance(node, ast.alias):
            marks["defined_name"].append(_alias_name(node, where))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            marks["defined_name"].append(_after_as(node, where))
        elif isinstance(node, (ast.MatchAs, ast.MatchStar, ast.MatchMapping)):
            name = node.rest if isinstance(node, ast.MatchMapping) else node.name
            if name:
                marks["defined_name"].append((where.names_in(node, name) or [None])[-1])
            elif isinstance(node, ast.MatchAs) and node.pattern is None:
                marks["keyword"].append(where.at(node))  # the wildcard ``_``
        elif isinstance(node, _TYPE_PARAMS):
            marks["defined_name"].append((where.names_in(node, node.name) or [None])[0])
        elif isinstance(node, ast.Match):
            marks["keyword"].append(where.at(node))
            marks["keyword"] += [_case_keyword(case, where) for case in node.cases]
        elif _TYPE_ALIAS is not None and isinstance(node, _TYPE_ALIAS):
            marks["keyword"].append(where.at(node))
    for feature, indices in marks.items():
        hits = [i for i in indices if i is not None]
        positive[hits, f[feature]] = True


def _docstring_tokens(node: Any, where: _Positions) -> list[int]:
    body = node.body
    if not body or not isinstance(body[0], ast.Expr):
        return []
    value = body[0].value
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return []
    return [i for i in where.span(body[0]) if where.tokens[i].type == tokenize.STRING]


def _def_name(node: Any, where: _Positions) -> int | None:
    """The name token after ``def``/``class`` (the node starts at ``async``, ``def`` or ``class``)."""
    i = where.at(node)
    if i is None:
        return None
    if where.tokens[i].string == "async":
        i += 1
    return i + 1 if i + 1 < len(where.tokens) else None


def _alias_name(node: ast.alias, where: _Positions) -> int | None:
    if node.name == "*":
        return None
    names = [i for i in where.span(node) if where.tokens[i].type == tokenize.NAME and where.tokens[i].string != "as"]
    if not names:
        return None
    return names[-1] if node.asname else names[0]


def _after_as(node: ast.ExceptHandler, where: _Positions) -> int | None:
    """The name after ``as`` in an ``except … as name:`` header."""
    header_end = where.position(node.body[0].lineno, node.body[0].col_offset)
    for i in where.span(node):
        if where.tokens[i].start >= header_end:
            break
        if where.tokens[i].type == tokenize.NAME and where.tokens[i].string == "as":
            return i + 1 if i + 1 < len(where.tokens) and where.tokens[i + 1].string == node.name else None
    return None


def _case_keyword(case: ast.match_case, where: _Positions) -> int | None:
    """The ``case`` token: ``match_case`` has no position, its pattern does (only brackets between)."""
    pattern = case.pattern
    i = bisect.bisect_left(where.starts, where.position(pattern.lineno, pattern.col_offset)) - 1
    while i >= 0 and where.tokens[i].type == tokenize.OP:
        i -= 1
    if i >= 0 and where.tokens[i].string == "case":
        return i
    return None


# ---------------------------------------------------------------------------------------------
# Model tokens
# ---------------------------------------------------------------------------------------------
def label_model_tokens(
    encoded: EncodedText, span: tuple[int, int], labels: PythonTokenLabels, piece: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """Positives and candidate negatives among a sequence's model tokens.

    Parameters
    ----------
    encoded : EncodedText
        The sequence, encoded with offsets into its own text.
    span : (begin, end)
        Where the sequence's text lies in the labelled source text.
    labels : PythonTokenLabels
        Labels of the whole source text.
    piece : {"all", "first", "last"}
        Which model tokens of a positive Python token are positives; the
        others are no example of that feature. ``first`` (``last``) needs the
        Python token to start (end) inside this sequence.

    Returns
    -------
    positive, negative : ndarray of shape (n_model_tokens, n_features), bool
    """
    n_tokens, n_features = len(encoded), labels.positive.shape[1]
    positive = np.zeros((n_tokens, n_features), bool)
    negative = np.zeros_like(positive)
    begin = encoded.offsets[:, 0] + span[0]
    end = encoded.offsets[:, 1] + span[0]
    usable = np.flatnonzero(~encoded.special & (end > begin))
    if len(usable) == 0 or len(labels) == 0:
        return positive, negative
    begin, end = begin[usable], end[usable]
    lo = np.searchsorted(labels.end, begin, side="right")  # Python tokens [lo, hi) overlap each model token
    hi = np.searchsorted(labels.start, end, side="left")
    touches_positive = _any_in_ranges(labels.positive, lo, hi)
    touches_eligible = _any_in_ranges(labels.eligible, lo, hi)
    negative[usable] = touches_eligible & ~touches_positive
    if piece == "all":
        positive[usable] = touches_positive
        return positive, negative
    for j in range(n_features):
        chosen = _chosen_pieces(labels, j, begin, end, piece, span)
        positive[usable[chosen], j] = True
    return positive, negative


def _any_in_ranges(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``flags[lo[i]:hi[i]].any(axis=0)`` for every ``i``; shape (len(lo), flags.shape[1])."""
    cumulative = np.concatenate([np.zeros((1, flags.shape[1]), np.int64), np.cumsum(flags, axis=0)])
    return (cumulative[hi] - cumulative[lo]) > 0


def _chosen_pieces(
    labels: PythonTokenLabels, feature: int, begin: np.ndarray, end: np.ndarray, piece: str, window: tuple[int, int]
) -> np.ndarray:
    """Indices (into the usable model tokens) of the first/last piece of each positive Python token."""
    rows = np.flatnonzero(labels.positive[:, feature])
    p_begin, p_end = labels.start[rows], labels.end[rows]
    if piece == "first":
        keep = p_begin >= window[0]
        index = np.searchsorted(end, p_begin, side="right")
        valid = index < len(begin)
        valid[valid] &= begin[index[valid]] < p_end[valid]
    else:
        keep = p_end <= window[1]
        index = np.searchsorted(begin, p_end, side="left") - 1
        valid = index >= 0
        valid[valid] &= end[index[valid]] > p_begin[valid]
    return np.unique(index[keep & valid])


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def build_python_code(
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    tokenizer: Any = "minilm",
    *,
    context_length: int = 512,
    max_files: int | None = None,
    max_sequences_per_file: int | None = None,
    piece: str = "all",
    positive_ratio: float | None = 0.2,
    min_positives: int = 20,
    max_positives: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ProbeDataset:
    """Build the ``python`` feature collection: token features of Python code, labelled exactly.

    See the module docstring for the labelling rules and how files become
    sequences.

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        Python files and directories; ``None`` (default) is the running
        interpreter's standard library without :data:`STDLIB_EXCLUDED_DIRS`.
    tokenizer : fast tokenizer or str, default "minilm"
        A ``transformers`` fast tokenizer, or a model name / path / alias
        given to :func:`needle.models.loading.load_tokenizer`.
    context_length : int, default 512
        Most tokens per sequence, special tokens included.
    max_files : int, optional
        Use a seeded stratified sample of this many files (spread over the
        sorted file list).
    max_sequences_per_file : int, optional
        Keep only the first this many sequences of each file.
    piece : {"all", "first", "last"}, default "all"
        Which model tokens of a labelled Python token are positives.
    positive_ratio : float or None, default 0.2
        Target share of positives per feature (negatives are subsampled).
    min_positives : int, default 20
        Features with fewer positives are dropped (listed in
        ``dataset.extra["dropped_features"]``).
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample; negatives then
        follow ``positive_ratio``). Bounds probing time on large sources.
    seed : int, default 0
        Seeds the file sample and the negative subsampling.
    progress : bool, default False
        Show a progress bar over files.

    Returns
    -------
    ProbeDataset
        Groups are file names; ``texts`` holds each sequence's source text;
        ``extra["files"]`` holds the number of files considered (after
        sampling) and used, the empty ones, and the skipped ones with the
        reason.

    Raises
    ------
    InputError
        A missing source, a directory without Python files, bad parameters,
        no file that could be used, or no feature with enough examples.
    """
    tokenizer = fast_tokenizer(tokenizer)
    n_special = _check_parameters(
        tokenizer, context_length, max_files, max_sequences_per_file, piece, min_positives, positive_ratio
    )
    sources = materialize(sources)
    files = find_python_files(sources, max_files=max_files, seed=seed)
    params = _builder_params(
        sources,
        context_length=context_length,
        max_files=max_files,
        max_sequences_per_file=max_sequences_per_file,
        piece=piece,
        positive_ratio=positive_ratio,
        min_positives=min_positives,
        max_positives=max_positives,
        seed=seed,
    )
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    for name, description in FEATURES.items():
        assembler.add_feature(name, description=description, collection=COLLECTION, level="token")
    report = FileReport(len(files))
    for source in progress_bar(files, enabled=progress, desc="python files"):
        try:
            added = _add_file(assembler, source, tokenizer, context_length, n_special, max_sequences_per_file, piece)
        except _Unusable as exc:
            report.skip(source.name, str(exc))
            continue
        (report.used if added else report.empty).append(source.name)
    report.require_some_used(
        BUILDER, "source files holds usable Python code", empty_note="all are empty", fix="; pass other sources."
    )
    dataset = assembler.build(
        positive_ratio=positive_ratio, seed=seed, min_positives=min_positives, max_positives=max_positives
    )
    dataset.extra["files"] = {
        "considered": report.considered, "used": len(report.used), "empty": report.empty, "skipped": report.skipped
    }
    return dataset


class _Unusable(Exception):
    """A source file that cannot be decoded or parsed."""


def _add_file(
    assembler: DatasetAssembler,
    source: SourceFile,
    tokenizer: Any,
    context_length: int,
    n_special: int,
    max_sequences: int | None,
    piece: str,
) -> int:
    """Add the sequences and examples of one file; return how many sequences it gave."""
    try:
        text = read_python_source(source.path)
    except (SyntaxError, UnicodeError, LookupError, OSError) as exc:
        raise _Unusable(f"cannot decode: {type(exc).__name__}: {exc}") from None
    if not text.strip():
        return 0
    pieces = pack_lines(text, tokenizer, context_length, n_special=n_special, max_sequences=max_sequences)
    stop_line = text.count("\n", 0, pieces[-1][1]) + 1
    try:
        labels = label_python_source(text, stop_line=stop_line)
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError, MemoryError) as exc:
        raise _Unusable(f"cannot parse: {type(exc).__name__}: {exc}") from None
    added = 0
    for begin, end, encoded in pieces:
        positive, negative = label_model_tokens(encoded, (begin, end), labels, piece)
        if not (positive.any() or negative.any()):
            continue  # whitespace only
        sequence = assembler.add_sequence(encoded.ids, source.name, text[begin:end])
        for j, name in enumerate(FEATURES):
            where = np.flatnonzero(positive[:, j] | negative[:, j])
            assembler.add_examples(name, sequence, where, positive[where, j])
        added += 1
    return added


def _check_parameters(
    tokenizer: Any,
    context_length: int,
    max_files: int | None,
    max_sequences_per_file: int | None,
    piece: str,
    min_positives: int,
    positive_ratio: float | None,
) -> int:
    """Validate the builder's parameters; return the number of special tokens per sequence."""
    n_special = encoded_length(tokenizer, "")
    if not isinstance(context_length, (int, np.integer)) or context_length < n_special + 8:
        raise InputError(f"context_length must be an integer of at least {n_special + 8}, not {context_length!r}.")
    check_model_max_length(tokenizer, context_length)
    for name, value in (("max_files", max_files), ("max_sequences_per_file", max_sequences_per_file)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{name} must be a positive integer or None, not {value!r}.")
    if piece not in PIECES:
        raise InputError(f"piece must be one of {', '.join(PIECES)}, not {piece!r}.")
    check_min_positives(min_positives)
    check_positive_ratio(positive_ratio)
    return n_special


def _builder_params(sources: Any, **settings: Any) -> dict[str, Any]:
    """What the dataset records about how it was made (JSON-ready)."""
    if sources is None:
        source_list: list[str] | str = "stdlib"
    elif isinstance(sources, (str, os.PathLike)):
        source_list = [os.fspath(sources)]
    else:
        source_list = [os.fspath(s) for s in sources]
    plain = plain_params(settings)
    return {
        "sources": source_list,
        "stdlib_path": sysconfig.get_paths()["stdlib"] if sources is None else None,
        "excluded_dirs": list(STDLIB_EXCLUDED_DIRS) if sources is None else [],
        # tokenize/ast (and the stdlib's text) change between versions: the labels depend on it.
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        **plain,
    }
