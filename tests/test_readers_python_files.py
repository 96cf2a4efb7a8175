"""Finding Python files (order, exclusions, stratified sample) and decoding them as the interpreter does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from needle.datasets.readers.python_files import (
    STDLIB_EXCLUDED_DIRS,
    SourceFile,
    find_python_files,
    read_python_source,
)
from needle.errors import InputError

PKG = Path(__file__).parent / "fixtures" / "python" / "pkg"


def test_stdlib_default_excludes_tests_and_samples_spread_out():
    everything = find_python_files(None)
    names = [f.name for f in everything]
    assert names == sorted(names) and len(names) > 300
    assert not any(set(n.split("/")[:-1]) & set(STDLIB_EXCLUDED_DIRS) for n in names)
    assert "json/decoder.py" in names and "os.py" in names
    sample = find_python_files(None, max_files=40, seed=0)
    assert [f.name for f in sample] == [f.name for f in find_python_files(None, max_files=40, seed=0)]
    assert [f.name for f in sample] != [f.name for f in find_python_files(None, max_files=40, seed=1)]
    positions = np.array([names.index(f.name) for f in sample])
    assert len(set(positions)) == 40 and np.all(np.diff(positions) > 0)
    edges = np.arange(41) * len(names) // 40  # one file from each fortieth of the sorted list
    assert np.all((edges[:-1] <= positions) & (positions < edges[1:]))
    assert len({f.name.split("/")[0] if "/" in f.name else f.name[0] for f in sample}) > 15


def test_names_are_relative_to_the_common_parent(tmp_path):
    files = find_python_files(PKG)
    assert [f.name for f in files] == ["__init__.py", "shapes.py", "sub/__init__.py", "sub/util.py"]
    assert files[0] == SourceFile(PKG.resolve() / "__init__.py", "__init__.py")
    root = tmp_path / "a"
    for part in (".hidden", "__pycache__", "sub"):
        (root / part).mkdir(parents=True)
        (root / part / "x.py").write_text("x = 1\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "w.py").write_text("w = 1\n")
    (tmp_path / "b" / "notes.txt").write_text("not python\n")
    # A file is taken whatever its name; directories give their *.py files outside hidden dirs and __pycache__.
    files = find_python_files([root, tmp_path / "b" / "w.py", tmp_path / "b" / "notes.txt"])
    assert [f.name for f in files] == ["a/sub/x.py", "b/notes.txt", "b/w.py"]


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(InputError, match="nowhere does not exist"):
        find_python_files(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"holds no \*\.py files"):
        find_python_files(tmp_path)
    with pytest.raises(InputError, match="sources is empty"):
        find_python_files([])


def test_read_python_source_honours_the_cookie_and_newlines(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes(b"# -*- coding: latin-1 -*-\r\ns = '\xe9t\xe9'\rt = 1\n")
    assert read_python_source(path) == "# -*- coding: latin-1 -*-\ns = 'été'\nt = 1\n"
    (tmp_path / "bad.py").write_bytes(b"s = '\xe9'\n")
    with pytest.raises(SyntaxError, match="encoding"):
        read_python_source(tmp_path / "bad.py")
    assert STDLIB_EXCLUDED_DIRS and np.all([isinstance(d, str) for d in STDLIB_EXCLUDED_DIRS])
