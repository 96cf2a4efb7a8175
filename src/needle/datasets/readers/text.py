"""Reading plain text: whole files, paragraphs, non-empty lines, and directories of ``*.txt`` documents.

Every reader decodes UTF-8 (a byte-order mark is dropped) and reports a file
it cannot use with an :class:`~needle.errors.InputError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable
from pathlib import Path

from needle.errors import InputError

__all__ = ["normalize_newlines", "read_lines", "read_paragraphs", "read_text", "read_text_documents"]

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def read_text(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file, gzipped or not (recognised by its content), line ends as written.

    Raises
    ------
    InputError
        The file is missing, unreadable, a truncated gzip file, or not UTF-8
        (the message names the line).
    """
    path = Path(path)
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


def normalize_newlines(text: str) -> str:
    """``text`` with ``\\r\\n`` and lone ``\\r`` line ends written as ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_paragraphs(path: str | os.PathLike) -> list[str]:
    """The paragraphs of a text file (see :func:`read_text`): split at blank lines, empty ones left out.

    Returns
    -------
    list of str
        Each paragraph without the newlines around it; inner line ends are ``\\n``
        (or a lone ``\\r`` as written).
    """
    text = read_text(path).replace("\r\n", "\n")
    paragraphs = [p.strip("\n") for p in _BLANK_LINE.split(text)]
    return [p for p in paragraphs if p.strip()]


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """The non-empty lines of a text file (see :func:`read_text`), stripped, with their 1-based numbers.

    Lines are split as :meth:`str.splitlines` splits them.

    Returns
    -------
    list of (int, str)
    """
    text = read_text(path)
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_text_documents(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """The documents of a corpus: ``[(name, text)]``, one per file, sorted by path.

    Files are taken as given; directories are searched recursively for
    ``*.txt``. Names are posix paths relative to the common parent directory
    of the files. Texts are UTF-8 with ``\\n`` line ends.

    Raises
    ------
    InputError
        No sources, a missing source, no ``.txt`` file, or a file that is not UTF-8.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise InputError("no corpus given; pass text files or directories of *.txt files.")
    paths: dict[Path, None] = {}
    for item in items:
        root = Path(item).expanduser()
        if not root.exists():
            raise InputError(f"corpus source {root} does not exist; pass text files or directories of *.txt files.")
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*.txt") if p.is_file())
        paths.update(dict.fromkeys(p.resolve() for p in found))
    if not paths:
        raise InputError(f"no .txt files under {', '.join(map(str, items))}; the corpus must be plain text files.")
    base = Path(os.path.commonpath([p.parent for p in paths]))
    documents = []
    for p in sorted(paths):
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{p}: not UTF-8 ({exc.reason} at byte {exc.start}); convert the corpus to UTF-8."
            ) from None
        documents.append((p.relative_to(base).as_posix(), normalize_newlines(text)))
    return documents
