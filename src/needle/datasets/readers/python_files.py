"""Finding and decoding Python source files.

Files are found in a deterministic order (and optionally sampled) so that a
collection built from them is reproducible, and decoded the way the
interpreter decodes them (PEP 263 cookie or UTF-8, universal newlines).
"""

from __future__ import annotations

import io
import os
import sysconfig
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.errors import InputError

__all__ = ["STDLIB_EXCLUDED_DIRS", "SourceFile", "find_python_files", "read_python_source"]

#: Directory names left out of the default (standard library) source, at any depth.
STDLIB_EXCLUDED_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test", "encodings")


@dataclass(frozen=True)
class SourceFile:
    """A Python file and its name in a dataset (the group of its sequences)."""

    path: Path
    name: str


def find_python_files(
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    *,
    max_files: int | None = None,
    seed: int = 0,
) -> list[SourceFile]:
    """The Python files of ``sources``, in a deterministic order, optionally sampled.

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        Files (taken whatever their suffix) and directories (searched
        recursively for ``*.py``, skipping ``__pycache__`` and hidden
        directories). ``None``: the standard library, without
        :data:`STDLIB_EXCLUDED_DIRS`.
    max_files : int, optional
        Keep a stratified sample of this many files: the ordered list is cut
        into ``max_files`` equal strata and one file is drawn from each.
    seed : int
        Seeds the sample.

    Returns
    -------
    list of SourceFile
        Sorted by ``name``, the posix path relative to the common parent of the
        sources (a directory source counts as its own parent).

    Raises
    ------
    InputError
        A source does not exist, or a directory holds no ``*.py`` file.
    """
    roots, excluded = _source_roots(sources)
    paths: dict[Path, None] = {}
    for root in roots:
        if root.is_file():
            paths[root] = None
            continue
        found = list(_walk_python_files(root, excluded))
        if not found:
            raise InputError(f"source directory {root} holds no *.py files; pass a directory of Python code.")
        paths.update(dict.fromkeys(found))
    base = Path(os.path.commonpath([root if root.is_dir() else root.parent for root in roots]))
    files = sorted((SourceFile(p, p.relative_to(base).as_posix()) for p in paths), key=lambda s: s.name)
    if max_files is not None and max_files < len(files):
        files = [files[i] for i in _stratified_sample(len(files), max_files, seed)]
    return files


def _source_roots(sources: Any) -> tuple[list[Path], frozenset[str]]:
    if sources is None:
        return [Path(sysconfig.get_paths()["stdlib"]).resolve()], frozenset(STDLIB_EXCLUDED_DIRS)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    roots = [Path(s).expanduser() for s in sources]
    if not roots:
        raise InputError("sources is empty; pass Python files or directories, or None for the standard library.")
    for root in roots:
        if not root.exists():
            raise InputError(f"source {root} does not exist; pass existing Python files or directories.")
    return [root.resolve() for root in roots], frozenset()


def _walk_python_files(root: Path, excluded: frozenset[str]) -> Iterator[Path]:
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in excluded and d != "__pycache__" and not d.startswith("."))
        for name in sorted(names):
            if name.endswith(".py"):
                yield Path(directory, name)


def _stratified_sample(n: int, k: int, seed: int) -> list[int]:
    """One index drawn from each of ``k`` equal strata of ``range(n)``; shape (k,), increasing."""
    edges = (np.arange(k + 1) * n) // k
    rng = np.random.default_rng(seed)
    return [int(rng.integers(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def read_python_source(path: str | os.PathLike) -> str:
    """Decode a Python file as the interpreter would, with ``\\n`` line ends.

    Raises
    ------
    SyntaxError, UnicodeDecodeError, LookupError, OSError
        Bad coding cookie, undecodable bytes, unknown encoding, unreadable file.
    """
    data = Path(path).read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    return text.replace("\r\n", "\n").replace("\r", "\n")
