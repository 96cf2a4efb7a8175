"""What every feature-collection builder does around its own labelling.

A builder module reads its sources with :mod:`needle.datasets.readers`,
cuts them into sequences with :mod:`needle.datasets.packing`, labels tokens
its own way and hands the examples to a
:class:`~needle.datasets.assembler.DatasetAssembler`. The steps in between are
the same everywhere and live here:

* taking the ``sources`` argument (one path or many; an iterator is read once,
  before its names are recorded) and naming each file's groups
  (:func:`as_source_list`, :func:`materialize`, :func:`unique_stems`);
* finding files in directories (:func:`find_files`) and the default recipe
  "the EWT treebank unless files are given" (:func:`treebank_or_files`);
* checking the parameters every builder shares (:func:`check_context_length`,
  :func:`check_min_positives`, :func:`check_model_max_length`,
  :func:`check_positive_ratio`);
* recording parameters as plain JSON values (:func:`plain_params`);
* a progress bar over files (:func:`progress`) and the report of files used,
  empty or skipped with their reason (:class:`FileReport`);
* capping positives by a seeded sample whose draw depends only on the seed and
  the feature's name (:func:`name_seed`, :func:`cap_positives`), for builders
  that sample examples themselves.

Adding a collection
-------------------
A new collection is one module ``needle/datasets/<name>.py`` holding a
function ``build_<name>(sources, tokenizer, *, context_length, positive_ratio,
seed, min_positives, max_positives, …) -> ProbeDataset`` that

1. takes the tokenizer (``needle.datasets.tokenizer_info.fast_tokenizer``) and
   checks its parameters with the checks here plus its own;
2. lists its files (:func:`find_files`, :func:`treebank_or_files`, or a reader's
   own finder) and reads them with a reader of :mod:`needle.datasets.readers`
   (a new source format gets a new reader module there, not code in the
   builder);
3. records its parameters, including the sources as given, in a
   :class:`~needle.datasets.assembler.DatasetAssembler`, declares its features
   and cuts each document into sequences with :mod:`needle.datasets.packing`;
4. labels token positions (or spans) and adds them as examples, then returns
   ``assembler.build(positive_ratio=…, seed=…, min_positives=…,
   max_positives=…)`` with whatever it counted in ``dataset.extra``.

It is registered by name in :mod:`needle.datasets.registry` (which the CLI
reads) and tested in ``tests/test_<name>.py``. Builder modules import the
readers, :mod:`~needle.datasets.packing`, this module and
:mod:`~needle.datasets.windows` (for sequence-level window collections), never
another builder's private helpers (``tests/test_builder.py`` checks).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.readers.conllu import find_conllu_files
from needle.datasets.shared_data import ud_treebank_files
from needle.errors import InputError

__all__ = [
    "FileReport",
    "as_source_list",
    "cap_positives",
    "find_files",
    "check_context_length",
    "check_min_positives",
    "check_model_max_length",
    "check_positive_ratio",
    "materialize",
    "name_seed",
    "plain_params",
    "progress",
    "source_stems",
    "treebank_or_files",
    "unique_stems",
]

#: The splits of EWT that the default recipes of the EWT builders read.
EWT_SPLITS = ("train", "dev", "test")


# --------------------------------------------------------------------------- sources


def materialize(sources: Any) -> Any:
    """``sources`` with an iterable (other than a path or a mapping) turned into a list.

    An iterator would be used up by reading before its names are recorded in
    the dataset; ``None``, a single path and a mapping are returned as given.
    """
    if isinstance(sources, Iterable) and not isinstance(sources, (str, bytes, os.PathLike, Mapping)):
        return list(sources)
    return sources


def as_source_list(sources: Any, *, empty: str) -> list[str]:
    """The source paths as given (one path or an iterable of them), as strings.

    Parameters
    ----------
    sources : path-like or iterable of path-like
    empty : str
        The error message when there is no source (says what to pass).

    Raises
    ------
    InputError
        No source.
    """
    items = [sources] if isinstance(sources, (str, bytes, os.PathLike)) else list(sources)
    if not items:
        raise InputError(empty)
    return [os.fsdecode(item) for item in items]


def unique_stems(paths: Sequence[os.PathLike | str], suffixes: Sequence[str] = (".gz", ".conllu")) -> list[str]:
    """A group prefix per file: its name without ``suffixes``, numbered (``name#1``, ``name#2``) when names collide.

    Parameters
    ----------
    paths : sequence of path-like, length n_files
    suffixes : sequence of str
        Stripped from the end of each file name, in this order.

    Returns
    -------
    list of str, length n_files
    """
    stems = []
    for path in paths:
        name = os.path.basename(os.fspath(path))
        for suffix in suffixes:
            name = name.removesuffix(suffix)
        stems.append(name)
    counts = Counter(stems)
    seen: Counter = Counter()
    unique = []
    for stem in stems:
        seen[stem] += 1
        unique.append(stem if counts[stem] == 1 else f"{stem}#{seen[stem]}")
    return unique


def source_stems(paths: Sequence[os.PathLike | str]) -> list[str]:
    """A group prefix per file: its name without ``.gz``/``.conllu``/``.txt``, numbered when names collide."""
    return unique_stems(paths, (".gz", ".conllu", ".txt"))


def find_files(sources: Any, suffix: str, *, what: str, skip_hidden: bool = False) -> list[tuple[Path, str]]:
    """Files as given and the ``*<suffix>`` files under directories, each with a unique name.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        Files (taken whatever their name) and directories (searched recursively).
    suffix : str
        File name ending looked for in directories (``".tex"``).
    what : str
        What to pass, for the errors ("text files or directories of *.txt files").
    skip_hidden : bool
        Leave out files under hidden directories (``.git``…) of a directory source.

    Returns
    -------
    list of (Path, str)
        Resolved paths, each listed once, and their names: posix paths relative
        to the common parent directory of the files; sorted by name.

    Raises
    ------
    InputError
        No sources, a missing source, or no file at all.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise InputError(f"no sources given; pass {what}.")
    roots = [Path(item).expanduser() for item in items]
    paths: dict[Path, None] = {}
    for root in roots:
        if not root.exists():
            raise InputError(f"source {root} does not exist; pass {what}.")
        if root.is_file():
            paths[root.resolve()] = None
            continue
        found = (p for p in root.rglob(f"*{suffix}") if p.is_file())
        if skip_hidden:
            found = (p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))
        paths.update(dict.fromkeys(sorted(p.resolve() for p in found)))
    if not paths:
        raise InputError(f"no {suffix} files under {', '.join(map(str, roots))}; pass {what}.")
    base = Path(os.path.commonpath([p.parent for p in paths]))
    return sorted(((p, p.relative_to(base).as_posix()) for p in paths), key=lambda item: item[1])


def treebank_or_files(
    sources: Any,
    *,
    what: str,
    treebank: str = "en_ewt",
    splits: tuple[str, ...] = EWT_SPLITS,
    directories: bool = False,
) -> list[Path]:
    """The files to read: a UD treebank's (``sources=None``, the default recipe) or the files given.

    Parameters
    ----------
    sources : None, path-like or iterable of path-like
    what : str
        What the files are, for the error without sources ("CoNLL-U files").
    treebank, splits
        The default recipe (:func:`needle.datasets.shared_data.ud_treebank_files`).
    directories : bool
        Also take directories, for the CoNLL-U files under them (sorted).

    Raises
    ------
    InputError
        No source, a missing file, a directory without CoNLL-U files, or a
        missing treebank file.
    """
    if sources is None:
        return ud_treebank_files(treebank, splits)
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise InputError(f"no sources given; pass {what}.")
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if directories and path.is_dir():
            found = find_conllu_files(path)
            if not found:
                raise InputError(f"{path}: no .conllu or .conllu.gz file in this directory.")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise InputError(f"{path}: no such file{' or directory' if directories else ''}; check the path.")
    return paths


# --------------------------------------------------------------------------- parameters


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_context_length(tokenizer: Any, context_length: Any) -> int:
    """Refuse a context too short for one token besides the special tokens; return the special token count."""
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    if not _is_int(context_length) or context_length <= specials + 1:
        raise InputError(
            f"context_length must be an integer above {specials + 1} (the tokenizer adds {specials} special "
            f"tokens); got {context_length!r}"
        )
    return specials


def check_min_positives(min_positives: Any) -> None:
    """Refuse a minimum of positives per feature below one."""
    if min_positives < 1:
        raise InputError(f"min_positives must be at least 1, not {min_positives}.")


def check_model_max_length(tokenizer: Any, context_length: int) -> None:
    """Refuse a context longer than the model behind ``tokenizer`` can read (when the tokenizer says)."""
    model_max = getattr(tokenizer, "model_max_length", None)
    # Tokenizers that know no limit report a huge sentinel (int(1e30)).
    if isinstance(model_max, int) and model_max < 10**9 and context_length > model_max:
        raise InputError(
            f"context_length {context_length} exceeds the tokenizer's model_max_length {model_max}; "
            f"the model could not read such sequences. Use context_length <= {model_max}."
        )


def check_positive_ratio(positive_ratio: Any) -> None:
    """Refuse a target share of positives outside (0, 1) (``None`` keeps every negative)."""
    if positive_ratio is not None and not (isinstance(positive_ratio, (int, float)) and 0 < positive_ratio < 1):
        raise InputError(f"positive_ratio must be None or in (0, 1); got {positive_ratio!r}")


def plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with NumPy scalars as Python numbers, so that the dataset can record them as JSON."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


# --------------------------------------------------------------------------- files


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(items: Iterable[Any] | None = None, *, enabled: bool, desc: str, total: int | None = None,
             unit: str = "file") -> Any:
    """A progress bar on stderr: over ``items``, or one to ``update`` by hand up to ``total``.

    Parameters
    ----------
    items : iterable, optional
        What to iterate over; without it the bar is advanced with ``update(n)``
        and ended with ``close()``.
    enabled : bool
        Off: ``items`` itself (or a bar whose ``update``/``close`` do nothing),
        so that no bar library is imported.
    desc, unit : str
        The bar's label and what it counts.
    total : int, optional
        Length of a bar without ``items``.
    """
    if not enabled:
        return _NoBar() if items is None else items
    from tqdm.auto import tqdm

    if items is None:
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr)


@dataclass
class FileReport:
    """Which source files a build used, found empty, or skipped and why (for ``dataset.extra["files"]``).

    Attributes
    ----------
    considered : int
        Files the build looked at.
    used : list of str
    empty : list of str
    skipped : dict of str to str
        File name → the reason it was not used.
    """

    considered: int
    used: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, name: str, reason: str) -> None:
        """Record a file that could not be used."""
        self.skipped[name] = reason

    def require_some_used(self, builder: str, files: str, *, empty_note: str, fix: str = "") -> None:
        """Refuse a build in which no file was used, quoting the first reasons.

        Parameters
        ----------
        builder : str
            Builder name, first in the message.
        files : str
            What the files are ("source files", ".tex files").
        empty_note : str
            Said in place of the reasons when no file was skipped (all were empty).
        fix : str
            Appended to the message (how to fix it).
        """
        if self.used:
            return
        reasons = "; ".join(f"{name}: {why}" for name, why in list(self.skipped.items())[:5])
        raise InputError(f"{builder}: none of the {self.considered} {files} ({reasons or empty_note}){fix}")


# --------------------------------------------------------------------------- sampling


def name_seed(name: str) -> int:
    """A 64-bit integer fixed by ``name``: with the build's seed, it seeds one feature's own draws."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def cap_positives(positives: np.ndarray, max_positives: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_positives`` of ``positives`` (a seeded sample, increasing); all of them when fewer.

    Parameters
    ----------
    positives : ndarray of int, shape (n,)
    max_positives : int or None
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int, shape (min(n, max_positives),)
    """
    if max_positives is not None and len(positives) > max_positives:
        return np.sort(rng.choice(positives, max_positives, replace=False))
    return positives
