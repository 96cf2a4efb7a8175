"""Reading plain text: whole files (gzipped or not), paragraphs, lines and directories of documents."""

from __future__ import annotations

import gzip

import pytest

from needle.datasets.builder import find_files
from needle.datasets.readers.text import (
    normalize_newlines,
    read_lines,
    read_paragraphs,
    read_text,
    read_text_documents,
)
from needle.errors import InputError


def test_read_text_plain_gzipped_and_bad(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_bytes("\ufeffcafé\r\nline two\n".encode())
    packed = tmp_path / "a.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_text(plain) == read_text(packed) == "café\r\nline two\n"
    (tmp_path / "latin.txt").write_bytes("ok\ncaf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.txt, line 2: the file is not UTF-8"):
        read_text(tmp_path / "latin.txt")
    with pytest.raises(InputError, match="nope.txt: no such file"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "cut.gz").write_bytes(packed.read_bytes()[:-6])
    with pytest.raises(InputError, match="cannot read the file"):
        read_text(tmp_path / "cut.gz")


def test_paragraphs_and_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("First para\nstill first.\n  \t\n\nSecond.\r\n\r\n\n  Third  \n")
    assert read_paragraphs(path) == ["First para\nstill first.", "Second.", "  Third  "]
    assert read_lines(path) == [(1, "First para"), (2, "still first."), (5, "Second."), (8, "Third")]
    assert normalize_newlines("a\r\nb\rc\n") == "a\nb\nc\n"


def test_text_documents_are_named_relative_to_their_common_parent(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee\r\n")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "c.md").write_text("not a .txt file")
    assert read_text_documents(find_files(tmp_path, ".txt", what="-")) == [("a.txt", "ay"), ("sub/b.txt", "bee\n")]
    assert read_text_documents([(tmp_path / "c.md", "c")]) == [("c", "not a .txt file")]
    with pytest.raises(InputError, match="does not exist"):
        find_files(tmp_path / "nowhere", ".txt", what="-")
    with pytest.raises(InputError, match="no sources given"):
        find_files([], ".txt", what="-")


def test_read_text_documents_errors(tmp_path):
    with pytest.raises(InputError, match="no .txt files"):
        read_text_documents(find_files(tmp_path, ".txt", what="text files"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.txt: not UTF-8"):
        read_text_documents(find_files(tmp_path, ".txt", what="text files"))
