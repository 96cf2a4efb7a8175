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


def read_text_documents(files: Iterable[tuple[str | os.PathLike, str]]) -> list[tuple[str, str]]:
    """The documents of a corpus: ``[(name, text)]``, one per file, in the order given.

    Parameters
    ----------
    files : iterable of (path-like, str)
        Each file and its name, as :func:`needle.datasets.builder.find_files` lists them.

    Returns
    -------
    list of (str, str)
        Names and texts (UTF-8, a byte-order mark dropped, ``\\n`` line ends).

    Raises
    ------
    InputError
        A file that is not UTF-8 (the message gives the byte) or cannot be read.
    """
    documents = []
    for path, name in files:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); convert the corpus to UTF-8."
            ) from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read the file ({exc}).") from None
        documents.append((name, normalize_newlines(text)))
    return documents
