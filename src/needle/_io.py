"""Atomic writes: nothing half-written is ever left where a reader looks.

Files are written to a temporary sibling and renamed into place; directories
are built under a temporary sibling name and renamed once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "read_manifest",
    "atomic_file",
    "atomic_directory",
    "write_json_atomic",
    "read_json",
]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; artifacts get the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final location of the directory.
    overwrite : bool, default False
        Replace an existing ``path``. Without it an existing ``path`` is an error.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        from needle.errors import InputError

        raise InputError(f"{path} already exists; choose another --out or pass overwrite=True / --overwrite.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            trash = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    with atomic_file(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is missing or invalid."""
    from needle.errors import FormatError

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FormatError(f"{path} is missing.") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None


def read_manifest(directory: str | os.PathLike, format_name: str, version: int, remedy: str) -> dict:
    """Read ``directory/manifest.json`` and check it names ``format_name`` at ``version``.

    ``remedy`` says what to do about a missing directory or another version
    (e.g. "rebuild the dataset").
    """
    from needle._version import __version__
    from needle.errors import FormatError

    directory = Path(directory)
    if not directory.is_dir():
        raise FormatError(f"{directory} is not a directory; {remedy}.")
    manifest = read_json(directory / "manifest.json")
    if manifest.get("format") != format_name:
        raise FormatError(f"{directory}/manifest.json is not a {format_name} (format={manifest.get('format')!r}).")
    if manifest.get("format_version") != version:
        raise FormatError(
            f"{directory}: format version {manifest.get('format_version')} is not supported by needle "
            f"{__version__} (which reads version {version}); {remedy}."
        )
    return manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
