"""Atomic writes: nothing half-written is ever left where a reader looks.

Files are written to a temporary sibling and renamed into place; directories
are built under a temporary sibling name and renamed once complete, under the
destination's lock (:mod:`needle._locks`), and ``overwrite`` replaces only a
needle artefact of the same kind. Temporary siblings carry their writer's pid
(``.<name>.<pid>.<random>.tmp``, ``.<name>.old-<pid>``), so that the next
write to the same destination removes those a killed process left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
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
    "artefact_kind",
    "check_replaceable",
    "remove_leftovers",
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
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    The destination's lock is held throughout, so a second writer fails at
    once (:class:`~needle.errors.BusyError`) instead of replacing the first's
    work.

    Parameters
    ----------
    path : path-like
        Final location of the directory.
    overwrite : bool, default False
        Replace an existing ``path``, which must be an empty directory or a
        needle artefact of ``kind`` (see :func:`check_replaceable`). Without
        it an existing ``path`` is an error.
    kind : str, optional
        The ``format`` of the artefact written (e.g. ``"needle.ProbeDataset"``);
        None: any needle artefact may be replaced.
    """
    from needle._locks import exclusive_lock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path, what=f"writing {kind or 'an artefact'}"):
        if path.exists() or path.is_symlink():
            if not overwrite:
                from needle.errors import InputError

                raise InputError(f"{path} already exists; choose another --out or pass overwrite=True / --overwrite.")
            check_replaceable(path, kind)
        remove_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
            replace_path(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def replace_path(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``, first moving an existing ``path`` aside (file or directory) and then removing it."""
    if path.exists() or path.is_symlink():
        trash = path.with_name(f".{path.name}.old-{os.getpid()}")
        _remove(trash)
        os.replace(path, trash)
        os.replace(new, path)
        _remove(trash)
    else:
        os.replace(new, path)


def artefact_kind(path: str | os.PathLike) -> str | None:
    """The needle format of the directory at ``path`` (its ``manifest.json``'s or toy model's ``training.json``'s
    ``format``), or None when it is not a needle artefact."""
    path = Path(path)
    if not path.is_dir():
        return None
    for name in ("manifest.json", "training.json"):
        try:
            with open(path / name, encoding="utf-8") as handle:
                found = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(found, dict) and isinstance(found.get("format"), str) and found["format"].startswith("needle"):
            return found["format"]
    return None


def check_replaceable(path: str | os.PathLike, kind: str | None) -> None:
    """Refuse to replace ``path`` unless it is an empty directory or a needle artefact of ``kind`` (any, if None).

    ``--overwrite`` is for redoing needle's own work; it must never delete a
    folder of someone's files that happens to sit at ``--out``.
    """
    from needle.errors import InputError

    path = Path(path)
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    found = artefact_kind(path) if path.is_dir() and not path.is_symlink() else None
    if found is not None and (kind is None or found == kind):
        return
    what = "a link" if path.is_symlink() else "a file" if not path.is_dir() else \
        f"a {found}, not a {kind}" if found else "a directory that is not a needle artefact"
    raise InputError(f"{path} is {what}; --overwrite replaces only {'a ' + kind if kind else 'needle artefacts'}. "
                     "Choose another --out, or remove it yourself if it can go.")


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:(?P<pid>\d+)\.[^.]+\.tmp|old-(?P<old>\d+))")


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` that dead processes left behind; return what was removed.

    Only names this module makes, carrying a pid (``.<name>.<pid>.<random>.tmp``
    and ``.<name>.old-<pid>``), and only when no process with that pid is alive,
    so a concurrent writer's work in progress is never touched.
    """
    path = Path(path)
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = _LEFTOVER.fullmatch(sibling.name)
        if not match or match["name"] != path.name:
            continue
        if not _alive(int(match["pid"] or match["old"])):
            _remove(sibling)
            removed.append(sibling)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError as exc:  # pragma: no cover
        return exc.errno != errno.ESRCH
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


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
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path} is not UTF-8 text (byte {exc.start}); it is corrupt or not a needle file.") from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a directory, not a JSON file.") from None


def read_manifest(directory: str | os.PathLike, format_name: str, version: int, remedy: str,
                  required: tuple[str, ...] = ()) -> dict:
    """Read ``directory/manifest.json`` and check it names ``format_name`` at ``version`` and has the ``required`` keys.

    ``remedy`` says what to do about a missing directory, another version or
    a damaged manifest (e.g. "rebuild the dataset").
    """
    from needle._version import __version__
    from needle.errors import FormatError

    directory = Path(directory)
    if not directory.is_dir():
        raise FormatError(f"{directory} is not a directory; {remedy}.")
    manifest = read_json(directory / "manifest.json")
    if not isinstance(manifest, dict):
        raise FormatError(f"{directory}/manifest.json is not a JSON object; {remedy}.")
    if manifest.get("format") != format_name:
        raise FormatError(f"{directory}/manifest.json is not a {format_name} (format={manifest.get('format')!r}).")
    if manifest.get("format_version") != version:
        raise FormatError(
            f"{directory}: format version {manifest.get('format_version')} is not supported by needle "
            f"{__version__} (which reads version {version}); {remedy}."
        )
    missing = [key for key in required if key not in manifest]
    if missing:
        raise FormatError(f"{directory}/manifest.json lacks {', '.join(missing)}: it was edited or damaged; {remedy}.")
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
