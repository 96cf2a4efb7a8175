"""The toy model's training text: Python source files and UD treebank sentences, split train/held-out by unit.

A *unit* is the smallest piece of text that goes wholly to one side of the
split:

* a **Python file** (its first ``max_chars_per_file`` characters, cut at a line
  end), named by its path relative to its source root;
* a run of **consecutive sentences of one CoNLL-U file** of at most
  ``unit_chars`` characters. Sentences of one document are joined with a
  space and documents with a blank line; a document longer than
  ``unit_chars`` is cut at sentence boundaries, and short documents (most of
  the GSD and Alpino treebanks mark no documents, so every sentence is its
  own) are merged with their neighbours. The unit is named
  ``<file>:<first line>``. Cutting by characters keeps treebanks whose whole
  file is one or two documents (Italian ISDT, Swedish Talbanken) splittable;
  the price is that the two halves of a long document can land on different
  sides.

Each source (``python`` or a language code such as ``fr``) is capped at
``max_chars_per_source`` characters, taken from its units in file order
(Python files in a seeded random order, so the cap samples the whole
library). Held-out units are drawn per source by a seeded hash of their name,
so a source's split does not depend on which other sources are present.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from needle.errors import InputError

__all__ = [
    "TextUnit",
    "ToyCorpus",
    "dynamics_corpus",
    "gather_corpus",
    "language_of_treebank",
    "python_units",
    "split_units",
    "ud_units",
]


@dataclass(frozen=True)
class TextUnit:
    """A piece of training text that is never split between train and held-out.

    Attributes
    ----------
    source : str
        ``python`` or a language code (``en``, ``fr``…): what the per-source
        losses and the case study's labels are grouped by.
    name : str
        Unique within its source (a file path, or ``<file>:<line>``).
    text : str
    """

    source: str
    name: str
    text: str


@dataclass
class ToyCorpus:
    """Training and held-out units, with what made them.

    Attributes
    ----------
    train, heldout : list of TextUnit
    params : dict
        The settings that produced the split (recorded in ``training.json``).
    """

    train: list[TextUnit]
    heldout: list[TextUnit]
    params: dict = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        """The sources present, sorted."""
        return sorted({u.source for u in self.train} | {u.source for u in self.heldout})

    def chars(self, split: str = "train") -> dict[str, int]:
        """Characters per source in ``split`` (``train`` or ``heldout``)."""
        counts: dict[str, int] = {}
        for unit in getattr(self, split):
            counts[unit.source] = counts.get(unit.source, 0) + len(unit.text)
        return dict(sorted(counts.items()))

    def texts(self, split: str = "heldout", source: str | None = None) -> list[str]:
        """The texts of ``split``, optionally of one source only."""
        return [u.text for u in getattr(self, split) if source is None or u.source == source]


def language_of_treebank(name: str) -> str:
    """The language code of a UD treebank directory or file name: ``fr_gsd`` → ``fr``."""
    return Path(name).name.split("_", 1)[0].split("-", 1)[0].lower()


# ----------------------------------------------------------------------------------------- python


def python_units(
    roots: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    max_chars: int | None = 1_200_000,
    max_chars_per_file: int = 6_000,
    seed: int = 0,
) -> list[TextUnit]:
    """Python files as units, in a seeded random order, until ``max_chars`` characters.

    Parameters
    ----------
    roots : path-like or sequence of path-like, optional
        Files and directories of Python code; ``None`` is the running
        interpreter's standard library without its test suites, third-party
        packages and codec tables (the python-code collection's exclusions).
    max_chars : int or None
        Stop adding files once the units hold this many characters.
    max_chars_per_file : int
        Keep the head of each file, cut at the last line end before this many
        characters, so that many files contribute.
    seed : int
        Seeds the file order.

    Raises
    ------
    InputError
        A root does not exist or holds no readable Python file.
    """
    from needle.datasets.readers.python_files import find_python_files, read_python_source

    if max_chars_per_file < 1:
        raise InputError(f"max_chars_per_file must be at least 1, not {max_chars_per_file}.")
    if roots is not None and not isinstance(roots, (str, os.PathLike)):
        roots = list(roots)
    files = find_python_files(roots)
    order = np.random.default_rng(seed).permutation(len(files))
    units: list[TextUnit] = []
    total = 0
    for index in order:
        source = files[index]
        try:
            text = read_python_source(source.path)
        except (SyntaxError, UnicodeDecodeError, LookupError, OSError):
            continue  # an undecodable file is no training text; the python-code collection lists such files
        text = _head(text, max_chars_per_file).strip("\n")
        if not text.strip():
            continue
        units.append(TextUnit("python", source.name, text + "\n"))
        total += len(units[-1].text)
        if max_chars is not None and total >= max_chars:
            break
    if not units:
        where = "the standard library" if roots is None else roots
        raise InputError(f"no readable Python file in {where}; pass a directory of Python code.")
    return units


def _head(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut + 1] if cut > 0 else text[:limit]


# -------------------------------------------------------------------------------------------- ud


def ud_units(
    root: str | os.PathLike,
    *,
    languages: Iterable[str] | None = None,
    max_chars_per_language: int | None = 300_000,
    unit_chars: int = 2_000,
) -> list[TextUnit]:
    """UD treebank sentences as units of consecutive sentences, one source per language.

    Parameters
    ----------
    root : path-like
        A directory of treebank directories (``en_ewt/``, ``fr_gsd/``…) holding
        ``*.conllu`` or ``*.conllu.gz`` files, or one treebank directory.
    languages : iterable of str, optional
        Language codes to keep (default: every treebank found).
    max_chars_per_language : int or None
        Stop reading a language's files once this many characters are taken
        (files in sorted order: dev, test, train).
    unit_chars : int
        Most characters of a unit (a single longer sentence is a unit alone).

    Raises
    ------
    InputError
        ``root`` is missing or holds no CoNLL-U file, or a requested language
        has no treebank.
    """
    if unit_chars < 1:
        raise InputError(f"unit_chars must be at least 1, not {unit_chars}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"UD directory {root} does not exist; pass the directory holding the treebanks "
                         "(e.g. ../shared/data/ud), or leave UD out.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".conllu", ".conllu.gz")))
    if not files:
        raise InputError(f"{root} holds no *.conllu or *.conllu.gz file; pass a directory of UD treebanks.")
    by_language: dict[str, list[Path]] = {}
    for path in files:
        by_language.setdefault(language_of_treebank(path.parent.name if path.parent != root else path.name),
                               []).append(path)
    if languages is not None:
        wanted = [language.lower() for language in languages]
        missing = sorted(set(wanted) - set(by_language))
        if missing:
            raise InputError(f"no treebank for language(s) {', '.join(missing)} under {root}; "
                             f"found {', '.join(sorted(by_language))}.")
        by_language = {language: by_language[language] for language in wanted}
    units: list[TextUnit] = []
    for language in sorted(by_language):
        taken = 0
        for path in by_language[language]:
            for unit in _conllu_units(path, language, unit_chars):
                units.append(unit)
                taken += len(unit.text)
                if max_chars_per_language is not None and taken >= max_chars_per_language:
                    break
            if max_chars_per_language is not None and taken >= max_chars_per_language:
                break
    return units


def _conllu_units(path: Path, language: str, unit_chars: int) -> Iterable[TextUnit]:
    label = path.name.removesuffix(".gz").removesuffix(".conllu")
    parts: list[str] = []
    size = 0
    first_line = 0
    for document in _conllu_documents(path):
        separator = "\n\n"
        for line, text in document:
            if parts and size + len(separator) + len(text) > unit_chars:
                yield TextUnit(language, f"{label}:{first_line}", "".join(parts) + "\n")
                parts, size = [], 0
            if not parts:
                first_line = line
                parts.append(text)
                size = len(text)
            else:
                parts.append(separator + text)
                size += len(separator) + len(text)
            separator = " "
    if parts:
        yield TextUnit(language, f"{label}:{first_line}", "".join(parts) + "\n")


def _conllu_documents(path: Path) -> list[list[tuple[int, str]]]:
    """Documents as lists of (first line, sentence text).

    The ``# text = …`` comments are the sentences' text; reading only them
    is some twenty times faster than parsing every token line. A file in
    which some sentence has no such comment is parsed in full by
    :func:`needle.datasets.readers.conllu.read_conllu`, which rebuilds the text from the
    tokens (and reports malformed lines).
    """
    from needle.datasets.readers.conllu import read_conllu

    documents: list[list[tuple[int, str]]] = []
    has_doc_markers = False
    sentence_start: int | None = None
    text: str | None = None
    for number, raw in enumerate(_read_utf8(path).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if sentence_start is not None:
                if text is None:
                    return [[(s.line, s.text.strip()) for s in d.sentences if s.text.strip()]
                            for d in read_conllu(path)]
                if not documents or not has_doc_markers:
                    documents.append([])  # without markers every sentence is its own document
                if text:
                    documents[-1].append((sentence_start, text))
            sentence_start, text = None, None
            continue
        if sentence_start is None:
            sentence_start = number
        if line.startswith("#"):
            if _NEWDOC.match(line):
                has_doc_markers = True
                documents.append([])
            elif line.startswith("# text ="):
                text = line[len("# text ="):].strip()
    if sentence_start is not None:
        if text is None:
            return [[(s.line, s.text.strip()) for s in d.sentences if s.text.strip()] for d in read_conllu(path)]
        if not documents or not has_doc_markers:
            documents.append([])
        if text:
            documents[-1].append((sentence_start, text))
    return [d for d in documents if d]


_NEWDOC = re.compile(r"^#\s*newdoc\b")


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the file ({exc}); is it a complete (gzipped) text file?") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the file is not UTF-8 ({exc.reason}); convert it to UTF-8.") from None


# ----------------------------------------------------------------------------------------- split


def split_units(units: Sequence[TextUnit], heldout_fraction: float = 0.1, seed: int = 0) -> ToyCorpus:
    """Split units into train and held-out by a seeded hash of (source, name).

    Each source holds out its ``round(heldout_fraction * n_units)`` units with
    the smallest hashes, and at least one unit on each side when it has two.

    Parameters
    ----------
    units : sequence of TextUnit
    heldout_fraction : float
        Share of each source's units held out, in ``[0, 1)``.
    seed : int

    Raises
    ------
    InputError
        No units, a bad fraction, or duplicate unit names within a source.
    """
    if not 0 <= heldout_fraction < 1:
        raise InputError(f"heldout_fraction must be in [0, 1), not {heldout_fraction}.")
    if not units:
        raise InputError("no training text: every source was empty; pass Python files or UD treebanks.")
    by_source: dict[str, list[TextUnit]] = {}
    for unit in units:
        by_source.setdefault(unit.source, []).append(unit)
    train: list[TextUnit] = []
    heldout: list[TextUnit] = []
    for source, members in by_source.items():
        names = [u.name for u in members]
        if len(set(names)) != len(names):
            raise InputError(f"source {source!r} has units with the same name; unit names must be unique.")
        scores = np.array([_hash_fraction(seed, source, name) for name in names])
        n_held = round(heldout_fraction * len(members))
        if heldout_fraction > 0 and len(members) >= 2:
            n_held = min(max(n_held, 1), len(members) - 1)
        held = np.zeros(len(members), bool)
        held[np.argsort(scores, kind="stable")[:n_held]] = True
        train += [u for u, h in zip(members, held) if not h]
        heldout += [u for u, h in zip(members, held) if h]
    return ToyCorpus(train, heldout, {"heldout_fraction": heldout_fraction, "split_seed": seed})


def _hash_fraction(seed: int, source: str, name: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{source}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ---------------------------------------------------------------------------------------- gather


def gather_corpus(
    *,
    python: str | os.PathLike | Sequence[str | os.PathLike] | None | bool = None,
    ud: str | os.PathLike | None = None,
    languages: Iterable[str] | None = None,
    max_chars_python: int | None = 1_200_000,
    max_chars_per_language: int | None = 300_000,
    max_chars_per_file: int = 6_000,
    unit_chars: int = 2_000,
    heldout_fraction: float = 0.1,
    seed: int = 0,
) -> ToyCorpus:
    """Gather the toy model's text and split it into train and held-out units.

    Parameters
    ----------
    python : path-like, sequence of path-like, None or False
        Python sources; ``None`` is the standard library, ``False`` no Python.
    ud : path-like, optional
        Directory of UD treebanks (e.g. ``../shared/data/ud``); ``None`` for none.
    languages : iterable of str, optional
        Language codes to keep from ``ud`` (default: all).
    max_chars_python, max_chars_per_language : int or None
        Character caps per source.
    max_chars_per_file : int
        Characters kept from the head of each Python file.
    unit_chars : int
        Size of the sentence runs that UD text is split into.
    heldout_fraction : float
        Share of each source's units held out.
    seed : int
        Seeds the Python file order and the split.

    Raises
    ------
    InputError
        No source at all, or a source that is missing or empty.
    """
    if python is False and ud is None:
        raise InputError("no text sources: pass Python sources (or the standard library) and/or a UD directory.")
    units: list[TextUnit] = []
    if python is not False:
        units += python_units(None if python is True else python, max_chars=max_chars_python,
                              max_chars_per_file=max_chars_per_file, seed=seed)
    if ud is not None:
        units += ud_units(ud, languages=languages, max_chars_per_language=max_chars_per_language,
                          unit_chars=unit_chars)
    corpus = split_units(units, heldout_fraction, seed)
    corpus.params.update({
        "python": "stdlib" if python is None or python is True else (False if python is False else
                                                                     [os.fspath(p) for p in _as_list(python)]),
        "stdlib": sysconfig.get_paths()["stdlib"] if python is None or python is True else None,
        "ud": None if ud is None else os.fspath(ud),
        "languages": None if languages is None else list(languages),
        "max_chars_python": max_chars_python,
        "max_chars_per_language": max_chars_per_language,
        "max_chars_per_file": max_chars_per_file,
        "unit_chars": unit_chars,
    })
    return corpus


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def dynamics_corpus(
    system: str = "logistic",
    *,
    n_trajectories: int = 2_000,
    length: int = 40,
    decimals: int = 2,
    heldout_fraction: float = 0.1,
    seed: int = 0,
) -> ToyCorpus:
    """Trajectory strings of ``system`` (see :mod:`needle.datasets.dynamics`), one unit each.

    Whole trajectories are held out (the last ``heldout_fraction`` of them), so
    the probes of the held-out strings read text the model never trained on.
    """
    from needle.datasets.dynamics import SYSTEMS, logistic_trajectories, lorenz_trajectories, trajectory_text

    if system not in SYSTEMS:
        raise InputError(f"dynamics corpus: system must be one of {SYSTEMS}, not {system!r}.")
    if system == "logistic":
        values = logistic_trajectories(n_trajectories, length, seed=seed)[0]
    else:
        values = lorenz_trajectories(n_trajectories, length, seed=seed)[..., 0]
    units = [TextUnit(system, f"trajectory:{i}", trajectory_text(v, decimals)[0]) for i, v in enumerate(values)]
    n_test = max(1, int(round(heldout_fraction * n_trajectories)))
    params = {"dynamics": system, "n_trajectories": n_trajectories, "length": length, "decimals": decimals,
              "heldout_fraction": heldout_fraction, "seed": seed}  # fmt: skip
    return ToyCorpus(train=units[:-n_test], heldout=units[-n_test:], params=params)
