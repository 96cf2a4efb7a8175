"""The python-code feature collection: labels from tokenize/ast, packing, sampling, bad input."""

from __future__ import annotations

import ast
import builtins
import io
import json
import keyword
import platform
import sysconfig
import tokenize
from pathlib import Path

import numpy as np
import pytest

from needle.datasets.alignment import encode
from needle.datasets.format import load_dataset
from needle.datasets.python_code import FEATURES, build_python_code, label_model_tokens, label_python_source
from needle.datasets.readers.python_files import find_python_files, read_python_source
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "python"
PKG = FIXTURES / "pkg"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
TOKENIZERS = ["minilm_tokenizer", "bpe_tokenizer"]

BASIC = 'def f(x):  # hi\n    return len("s") + 1\n'


@pytest.fixture(params=TOKENIZERS)
def tokenizer(request):
    return request.getfixturevalue(request.param)


def spans_of(text: str, *pieces: str | tuple[str, int]) -> list[tuple[int, int]]:
    """Character spans of substrings of ``text``; ``(s, n)`` is the n-th occurrence (0-based)."""
    spans = []
    for piece in pieces:
        string, occurrence = piece if isinstance(piece, tuple) else (piece, 0)
        at = -1
        for _ in range(occurrence + 1):
            at = text.index(string, at + 1)
        spans.append((at, at + len(string)))
    return spans


def model_positives(tokenizer, text: str, feature: str, piece: str = "all") -> tuple[np.ndarray, np.ndarray, object]:
    encoded = encode(tokenizer, text)
    positive, negative = label_model_tokens(encoded, (0, len(text)), label_python_source(text), piece)
    column = list(FEATURES).index(feature)
    return positive[:, column], negative[:, column], encoded


def overlapping(encoded, spans) -> np.ndarray:
    """Boolean mask of the non-special, non-blank model tokens overlapping any of ``spans``."""
    begin, end = encoded.offsets[:, 0], encoded.offsets[:, 1]
    hit = np.zeros(len(begin), bool)
    for b, e in spans:
        hit |= (begin < e) & (end > b)
    return hit & ~encoded.special & (end > begin)


# --------------------------------------------------------------------------- labels of Python tokens
def test_basic_snippet_labels_python_tokens():
    labels = label_python_source(BASIC)
    expected = {
        "comment": ["# hi"],
        "docstring": [],
        "string": ['"s"'],
        "keyword": ["def", "return"],
        "builtin_name": ["len"],
        "defined_name": ["f", "x"],
        "number": ["1"],
        "operator": ["+"],
        "decorator": [],
        "in_brackets": ["x", '"s"'],
        "indent_ge2": [],
    }
    assert {name: labels.strings_of(name) for name in FEATURES} == expected
    assert [BASIC[b:e] for b, e in zip(labels.start, labels.end)] == labels.string


def test_docstrings_are_not_strings():
    text = (
        '"""Module."""\n'
        "x = 'plain'\n"
        "class C:\n"
        "    'Class.'\n"
        "    def m(self):\n"
        '        """Method."""\n'
        "        return 'r'\n"
        "async def g():\n"
        "    '''Async.''' 'joined'\n"
        "def h():\n"
        "    f'not a docstring'\n"
        "def k():\n"
        "    x = 1\n"
        "    'not first'\n"
    )
    labels = label_python_source(text)
    assert labels.strings_of("docstring") == ['"""Module."""', "'Class.'", '"""Method."""', "'''Async.'''", "'joined'"]
    assert labels.strings_of("string") == ["'plain'", "'r'", "f'not a docstring'", "'not first'"]


def test_fstrings_and_bytes_are_single_string_tokens():
    text = 'y = f"a{len(z)!r:>{w}}b" + b"\\x00" + rb"raw"\n'
    labels = label_python_source(text)
    assert labels.strings_of("string") == ['f"a{len(z)!r:>{w}}b"', 'b"\\x00"', 'rb"raw"']
    assert labels.strings_of("builtin_name") == []  # len inside the f-string belongs to the string
    assert labels.strings_of("in_brackets") == []


def test_keywords_and_soft_keywords():
    text = (
        "match = 1\n"
        "match command:\n"
        "    case [1, _]:\n"
        "        pass\n"
        "    case ('go' | 'run') if True:\n"
        "        x = None\n"
        "    case _:\n"
        "        pass\n"
        "_ = case = re.match\n"
    )
    labels = label_python_source(text)
    assert labels.strings_of("keyword") == [
        "match", "case", "_", "pass", "case", "if", "True", "None", "case", "_", "pass",
    ]  # fmt: skip
    assert labels.strings_of("defined_name") == ["match", "x", "_", "case"]


def test_builtin_names_are_loads_of_builtins_only():
    text = "print(len(x), obj.len, f(type=1), ValueError, __name__)\nlen = 3\ndef open(): pass\n"
    labels = label_python_source(text)
    assert labels.strings_of("builtin_name") == ["print", "len", "ValueError", "__name__"]
    assert labels.strings_of("defined_name") == ["len", "open"]


def test_defined_names_rule():
    text = (
        "import os.path, sys as system\n"
        "from . import (a as b, c)\n"
        "from m import *\n"
        "@dec\n"
        "async def fn(p, /, q: int = 0, *args, r, **kw) -> None:\n"
        "    global g\n"
        "    t, [u, *v] = w.attr = z[0] = 1, 2\n"
        "    n += 1\n"
        "    ann: int\n"
        "    for i in range(3): pass\n"
        "    with open(p) as fh: pass\n"
        "    [e for e in q]\n"
        "    (walrus := 5)\n"
        "    try: pass\n"
        "    except (KeyError, OSError) as exc: pass\n"
        "    lam = lambda s, *more: s\n"
        "    match p:\n"
        "        case {'k': cap, **rest}: pass\n"
        "        case Point(x=0) as pt: pass\n"
        "        case [*items]: pass\n"
        "    del t\n"
        "class K(Base, metaclass=Meta): pass\n"
    )
    labels = label_python_source(text)
    assert labels.strings_of("defined_name") == [
        "os", "system", "b", "c", "fn", "p", "q", "args", "r", "kw", "t", "u", "v", "n", "ann", "i",
        "fh", "e", "walrus", "exc", "lam", "s", "more", "cap", "rest", "pt", "items", "K",
    ]  # fmt: skip


def test_operators_exclude_punctuation_and_decorator_at():
    text = "@d\ndef f(a, *b, c=1, **d) -> int:\n    return -a @ b[1:2] <= c != (d ** 2) // 3, x.y, ...\nm @= n\n"
    labels = label_python_source(text)
    assert labels.strings_of("operator") == ["*", "=", "**", "-", "@", "<=", "!=", "**", "//", "@="]


def test_decorator_lines():
    text = (
        "@simple\n"
        "@pkg.deco(1,\n"
        "          key=[2])  # trailing\n"
        "# between\n"
        "@(lambda f: f)\n"
        "class C:\n"
        "    @property\n"
        "    def p(self): return 1 @ 2\n"
    )
    labels = label_python_source(text)
    assert labels.strings_of("decorator") == [
        "@", "simple", "@", "pkg", ".", "deco", "(", "1", ",", "key", "=", "[", "2", "]", ")",
        "@", "(", "lambda", "f", ":", "f", ")", "@", "property",
    ]  # fmt: skip
    assert labels.strings_of("operator") == ["=", "@"]  # the matmul, not the decorators'


def test_nested_brackets():
    text = "a = f(b, [c, {d: (e)}], g)\nh = (\n    i  # note\n)\n"
    labels = label_python_source(text)
    assert labels.strings_of("in_brackets") == [
        "b", ",", "[", "c", ",", "{", "d", ":", "(", "e", ")", "}", "]", ",", "g", "i", "# note",
    ]  # fmt: skip


def test_indentation_level_two_or_more():
    text = (
        "class A:\n"
        "    x = 1\n"
        "    def m(self):\n"
        "        y = [1,\n"
        "  2]\n"
        "        # alone\n"
        "        if y:\n"
        "            z = 3  # deep\n"
        "    # back at one\n"
        "    w = 4\n"
        "v = 5\n"
    )
    labels = label_python_source(text)
    assert labels.strings_of("indent_ge2") == [
        "y", "=", "[", "1", ",", "2", "]", "if", "y", ":", "z", "=", "3", "# deep",
    ]  # fmt: skip
    column = list(FEATURES).index("indent_ge2")
    ineligible = [s for s, ok in zip(labels.string, labels.eligible[:, column]) if not ok]
    assert ineligible == ["# alone", "# back at one"]
    assert labels.eligible[:, [i for i in range(len(FEATURES)) if i != column]].all()


def test_non_ascii_columns():
    text = "s = 'héllo wörld'; ünï = len(s)  # ça\nprint(ünï)\n"
    labels = label_python_source(text)
    assert labels.strings_of("defined_name") == ["s", "ünï"]
    assert labels.strings_of("builtin_name") == ["len", "print"]
    assert labels.strings_of("comment") == ["# ça"]


# --------------------------------------------------------------------------- labels of model tokens
def test_basic_snippet_minilm_tokens(minilm_tokenizer):
    expected = {
        "comment": ["#", "hi"],
        "string": ['"', "s", '"'],
        "keyword": ["def", "return"],
        "builtin_name": ["len"],
        "defined_name": ["f", "x"],
        "number": ["1"],
        "operator": ["+"],
        "in_brackets": ["x", '"', "s", '"'],
        "docstring": [],
        "decorator": [],
        "indent_ge2": [],
    }
    for feature, strings in expected.items():
        positive, negative, encoded = model_positives(minilm_tokenizer, BASIC, feature)
        assert [BASIC[b:e] for b, e in encoded.offsets[positive]] == strings, feature
        # Every real token is an example: here no token is left out.
        assert (positive | negative).sum() == len(encoded) - 2
        assert not (positive & negative).any()


@pytest.mark.parametrize(
    "feature, pieces",
    [
        ("comment", ["# hi"]),
        ("string", ['"s"']),
        ("keyword", ["def", "return"]),
        ("builtin_name", ["len"]),
        ("defined_name", [("f", 1), "x"]),  # the f of def comes first
        ("number", ["1"]),
        ("operator", ["+"]),
        ("in_brackets", ["x", '"s"']),
    ],
)
def test_positives_are_the_tokens_overlapping_the_construct(tokenizer, feature, pieces):
    positive, negative, encoded = model_positives(tokenizer, BASIC, feature)
    assert np.array_equal(positive, overlapping(encoded, spans_of(BASIC, *pieces)))
    everything = overlapping(encoded, [(0, len(BASIC))])
    assert np.array_equal(positive | negative, everything)


@pytest.mark.parametrize("piece", ["first", "last"])
def test_first_and_last_piece(minilm_tokenizer, piece):
    text = "x = 1  # hello wonderful world\n"
    positive, negative, encoded = model_positives(minilm_tokenizer, text, "comment", piece)
    strings = [text[b:e] for b, e in encoded.offsets]
    comment = overlapping(encoded, spans_of(text, "# hello wonderful world"))
    chosen = np.flatnonzero(comment)[0 if piece == "first" else -1]
    assert np.flatnonzero(positive).tolist() == [chosen]
    assert strings[chosen] == ("#" if piece == "first" else "world")
    assert not (negative & comment).any()  # the other pieces are no example at all
    assert np.array_equal(negative, overlapping(encoded, [(0, len(text))]) & ~comment)


def test_piece_first_needs_the_start_inside_the_sequence(minilm_tokenizer):
    text = 'x = 1\n"""a docstring\nthat spans lines"""\n'
    labels = label_python_source(text)
    begin = text.index("that")
    encoded = encode(minilm_tokenizer, text[begin:])
    column = list(FEATURES).index("string")
    first, _ = label_model_tokens(encoded, (begin, len(text)), labels, "first")
    last, _ = label_model_tokens(encoded, (begin, len(text)), labels, "last")
    every, _ = label_model_tokens(encoded, (begin, len(text)), labels, "all")
    assert not first[:, column].any()
    assert last[:, column].sum() == 1 and every[:, column].sum() > 1


def test_labels_match_tokenize_on_a_stdlib_file():
    path = STDLIB / "textwrap.py"
    text = read_python_source(path)
    labels = label_python_source(text)
    rows = list(tokenize.generate_tokens(io.StringIO(text).readline))
    lines = text.split("\n")
    offset = np.cumsum([0] + [len(line) + 1 for line in lines])

    def spans(kind, test=lambda tok: True):
        return [
            (offset[t.start[0] - 1] + t.start[1], offset[t.end[0] - 1] + t.end[1])
            for t in rows
            if t.type == kind and test(t)
        ]

    def labelled(feature):
        column = labels.positive[:, list(FEATURES).index(feature)]
        return list(zip(labels.start[column].tolist(), labels.end[column].tolist()))

    assert labelled("comment") == spans(tokenize.COMMENT)
    assert labelled("number") == spans(tokenize.NUMBER)
    assert labelled("keyword") == spans(tokenize.NAME, lambda t: keyword.iskeyword(t.string))
    assert sorted(labelled("string") + labelled("docstring")) == spans(tokenize.STRING)
    docs = [
        node.body[0].value
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node, clean=False)
    ]
    assert [text[b:e] for b, e in labelled("docstring")] == sorted(
        (ast.get_source_segment(text, doc) for doc in docs), key=text.index
    )
    loads = {
        (node.lineno, node.col_offset)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in dir(builtins)
    }
    found = {(t.start[0], t.start[1]) for t in rows if t.type == tokenize.NAME} & loads
    assert len(labelled("builtin_name")) == len(found) == len(loads) > 10


def test_model_token_labels_match_tokenize_across_sequences(minilm_tokenizer):
    path = STDLIB / "textwrap.py"
    text = read_python_source(path)
    dataset = build_python_code([path], minilm_tokenizer, context_length=96, positive_ratio=None, min_positives=1)
    assert "".join(dataset.texts) == text  # consecutive pieces, nothing lost
    comments = [
        (t.start, t.end) for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT
    ]
    lines = text.split("\n")
    offset = np.cumsum([0] + [len(line) + 1 for line in lines])
    comment_spans = [(offset[s[0] - 1] + s[1], offset[e[0] - 1] + e[1]) for s, e in comments]
    examples = dataset.feature_examples("comment")
    begin = 0
    for sequence, piece_text in enumerate(dataset.texts):
        encoded = encode(minilm_tokenizer, piece_text)
        assert np.array_equal(encoded.ids, dataset.tokens[sequence])
        shifted = [(b - begin, e - begin) for b, e in comment_spans]
        expected = np.flatnonzero(overlapping(encoded, shifted))
        mine = examples.start[(examples.sequence == sequence) & (examples.label == 1)]
        assert mine.tolist() == expected.tolist()
        begin += len(piece_text)


# --------------------------------------------------------------------------- packing and sampling
@pytest.mark.parametrize("context_length", [24, 64])
def test_sequences_fit_and_groups_are_files(tokenizer, context_length):
    dataset = build_python_code(PKG, tokenizer, context_length=context_length, min_positives=1)
    assert max(len(t) for t in dataset.tokens) <= context_length
    assert set(dataset.groups) == {"__init__.py", "shapes.py", "sub/util.py"}
    for group in set(dataset.groups):
        texts = [t for t, g in zip(dataset.texts, dataset.groups) if g == group]
        assert "".join(texts) == read_python_source(PKG / group)
        if context_length == 64:  # no line is longer: every cut is at a line end
            assert all(t.endswith("\n") for t in texts)
    assert dataset.extra["files"] == {"considered": 4, "used": 3, "empty": ["sub/__init__.py"], "skipped": {}}


def test_max_sequences_per_file_keeps_the_top(minilm_tokenizer):
    dataset = build_python_code(str(PKG), minilm_tokenizer, context_length=24, max_sequences_per_file=2, min_positives=1)
    groups, counts = np.unique(dataset.groups.astype(str), return_counts=True)
    assert counts.max() == 2
    shapes = [t for t, g in zip(dataset.texts, dataset.groups) if g == "shapes.py"]
    assert read_python_source(PKG / "shapes.py").startswith("".join(shapes))


def test_build_is_deterministic(bpe_tokenizer):
    first = build_python_code(PKG, bpe_tokenizer, context_length=48, min_positives=2, seed=3)
    again = build_python_code(PKG, bpe_tokenizer, context_length=48, min_positives=2, seed=3)
    other = build_python_code(PKG, bpe_tokenizer, context_length=48, min_positives=2, seed=4)
    assert first.content_hash() == again.content_hash()
    assert first.content_hash() != other.content_hash()
    counts = first.counts()
    assert counts["comment"]["negative"] == 4 * counts["comment"]["positive"]


def test_stdlib_build_records_its_parameters(bpe_tokenizer):
    dataset = build_python_code(None, bpe_tokenizer, max_files=4, max_sequences_per_file=1, min_positives=1)
    params = dataset.builder["params"]
    assert dataset.builder["name"] == "python_code"
    assert params["sources"] == "stdlib" and params["stdlib_path"] == sysconfig.get_paths()["stdlib"]
    assert params["python_version"] == platform.python_version()
    assert params["max_files"] == 4 and params["max_sequences_per_file"] == 1 and params["piece"] == "all"
    assert params["seed"] == 0 and params["positive_ratio"] == 0.2 and params["context_length"] == 512
    assert set(dataset.groups) <= {f.name for f in find_python_files(None, max_files=4)}
    assert all(f["collection"] == "python" for f in dataset.features)
    json.dumps(dataset.manifest())


# --------------------------------------------------------------------------- bad input
def test_missing_source_is_named(minilm_tokenizer, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere.*does not exist"):
        build_python_code([PKG, missing], minilm_tokenizer)


def test_directory_without_python_files(minilm_tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError, match=r"no \*\.py files"):
        build_python_code(tmp_path, minilm_tokenizer)


def test_bad_files_are_skipped_and_counted(minilm_tokenizer, tmp_path):
    (tmp_path / "good.py").write_text(BASIC * 3)
    (tmp_path / "py2.py").write_text('print "hello"\n')
    (tmp_path / "latin.py").write_bytes(b"s = '\xe9t\xe9'\n")  # no coding cookie: not UTF-8
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    dataset = build_python_code(tmp_path, minilm_tokenizer, min_positives=1)
    files = dataset.extra["files"]
    assert files["used"] == 1 and set(dataset.groups) == {"good.py"}
    assert set(files["skipped"]) == {"py2.py", "latin.py", "nul.py"}
    assert "SyntaxError" in files["skipped"]["py2.py"]
    assert files["skipped"]["latin.py"].startswith("cannot decode")


def test_coding_cookie_is_honoured(minilm_tokenizer, tmp_path):
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\ns = '\xe9t\xe9'  # \xe9\n" * 3)
    dataset = build_python_code(tmp_path, minilm_tokenizer, min_positives=1)
    assert "'été'" in dataset.texts[0]


def test_failed_builds_write_nothing(minilm_tokenizer, tmp_path):
    (tmp_path / "py2.py").write_text('print "hello"\n')
    (tmp_path / "empty.py").write_text("\n\n")
    def listing():
        return sorted(tmp_path.rglob("*")) + sorted(PKG.rglob("*"))

    before = listing()
    with pytest.raises(InputError, match="none of the 2 source files"):
        build_python_code(tmp_path, minilm_tokenizer)
    with pytest.raises(InputError, match="empty collection"):
        build_python_code(PKG, minilm_tokenizer, min_positives=10_000)
    assert listing() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"context_length": 4}, "context_length"),
        ({"context_length": 1024}, "model_max_length 512"),
        ({"max_files": 0}, "max_files"),
        ({"max_sequences_per_file": 0}, "max_sequences_per_file"),
        ({"piece": "middle"}, "piece"),
        ({"positive_ratio": 1.5}, "positive_ratio"),
    ],
)
def test_bad_parameters(minilm_tokenizer, kwargs, message):
    with pytest.raises(InputError, match=message):
        build_python_code(PKG, minilm_tokenizer, **kwargs)


def test_tokenizer_by_name_and_sources_from_an_iterator(minilm_tokenizer):
    dataset = build_python_code(iter([PKG / "sub"]), "minilm", min_positives=1)
    assert dataset.tokenizer["fingerprint"] == tokenizer_info(minilm_tokenizer)["fingerprint"]
    assert set(dataset.groups) == {"util.py"}
    assert dataset.builder["params"]["sources"] == [str(PKG / "sub")]


def test_empty_source_list(minilm_tokenizer):
    with pytest.raises(InputError, match="sources is empty"):
        build_python_code([], minilm_tokenizer)


# --------------------------------------------------------------------------- on disk
def test_save_load_round_trip(bpe_tokenizer, tmp_path):
    dataset = build_python_code(PKG, bpe_tokenizer, context_length=64, min_positives=1, piece="first")
    loaded = load_dataset(dataset.save(tmp_path / "python"))
    assert loaded.content_hash() == dataset.content_hash()
    assert loaded.texts == dataset.texts
    assert loaded.groups.tolist() == dataset.groups.tolist()
    assert loaded.builder == json.loads(json.dumps(dataset.builder))
    assert loaded.extra == json.loads(json.dumps(dataset.extra))
    assert loaded.counts() == dataset.counts()
