"""The ``code-language`` feature collection: which programming language a source file is written in.

A sequence-level collection (the paper's "code language", Appendix A.2.2):
each example is the start of one source file, represented by the *mean* of
its tokens' activations after skipping the first 50 tokens (licence headers,
copyright lines and imports are mostly alike across languages); one feature
``is_<language>`` per language, one-vs-rest.

How a dataset is made
---------------------
1. **Files.** ``sources`` are directories (searched recursively; hidden
   directories and ``__pycache__`` skipped), single files, or ``.zip``
   archives (their members are files, e.g. a JDK's ``src.zip``). A file's
   language comes from its suffix (:data:`LANGUAGES`), with a content check
   for the ambiguous cases: a ``.h`` header is C++ when it uses C++-only
   syntax (``namespace``, ``template <``, ``class X {``, ``std::``…), else C;
   a file without a suffix is a script of the language named on its ``#!``
   line, or a C++ header (libstdc++'s ``<vector>``…) when it holds
   preprocessor lines and C++ syntax; anything else is not used.
   ``sources=None`` is the recipe :func:`machine_sources`: what a stock
   machine has (the Python standard library, C/C++ headers, node's global
   modules, a JDK's ``src.zip``, documentation HTML/XML, Perl's library…).
2. **Sampling.** Candidate files are visited in a seeded random order until
   ``max_files_per_language`` usable files of each language are found, so
   the sample spreads over every directory. Only the first ``max_bytes`` of
   a file are read.
3. **Content check.** A file is skipped, with the reason counted in
   ``dataset.extra["languages"]``, when it is binary (a NUL byte or control
   characters), not UTF-8, mostly licence text (:func:`licence_share` of the
   text read above ``max_licence_share``), minified or generated (median line
   longer than 200 characters), too short (fewer than ``skip_tokens +
   min_tokens`` tokens), markup without tags (HTML/XML), or an exact
   duplicate of a file already taken (copies under several directories
   would put the same text on both sides of a train/test split).
4. **Sequences.** One sequence per file: its first at most
   ``context_length`` tokens, special tokens included, cut at a line end
   (:func:`needle.datasets.packing.pack_lines`). Its example is the span
   from the first token to the last non-special token, aggregated by
   ``mean`` after skipping ``skip_tokens`` tokens (special tokens count).
   The group is the file, so a file never straddles a train/test split.
5. **Languages.** A language with fewer than ``min_files`` usable files is
   dropped and listed in ``dataset.extra["dropped_languages"]`` (with a
   warning). Every kept file is a positive of its own language and a
   negative of every other kept language.

The paper's own code samples are in the data files of the PyPI package
``sae-probes`` (:data:`SAE_PROBES_FILES`: ``158_code_C``, ``159_code_Python``,
``160_code_HTML``; 2,000 snippets of the language and 2,000 of others each,
about 7,000 distinct snippets in all). ``source="sae-probes"`` builds the
collection from them (``pip install --no-deps sae-probes``, or
``sae_probes=PATH.whl``): one sequence per distinct snippet, its first
``context_length`` tokens, the example the mean over them after
``skip_tokens`` (a snippet shorter than that keeps its last token); each
feature labels exactly the rows of its own file, as sae-probes does (a
snippet in no file is no example of that feature), and every snippet is its
own group. A language with fewer than ``min_files`` snippets of either
class is dropped.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import sysconfig
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import as_source_list, check_model_max_length, check_positive_ratio
from needle.datasets.builder import progress as progress_bar
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import pack_lines
from needle.datasets.readers.python_files import STDLIB_EXCLUDED_DIRS
from needle.datasets.sae_probes_data import PromptTask, SaeProbesFiles, build_prompt_dataset, source_param
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = [
    "BUILDER",
    "COLLECTION",
    "LANGUAGES",
    "MACHINE_DIRECTORIES",
    "SAE_PROBES_FILES",
    "CodeFile",
    "Language",
    "SkippedFile",
    "build_code_language",
    "classify",
    "decode_text",
    "find_code_files",
    "licence_share",
    "machine_sources",
]

BUILDER = "code_language"
COLLECTION = "code_language"
#: source="sae-probes": language → its file (1: a snippet of the language, 0: of another)
SAE_PROBES_FILES = {"c": "158_code_C", "python": "159_code_Python", "html": "160_code_HTML"}


@dataclass(frozen=True)
class Language:
    """A programming language: its display name, file suffixes and ``#!`` interpreters."""

    display: str
    suffixes: tuple[str, ...]
    interpreters: tuple[str, ...] = ()


#: Feature suffix → language. The paper's nine first (Table A.3), then others a machine commonly has.
LANGUAGES: dict[str, Language] = {
    "python": Language("Python", (".py", ".pyw"), ("python", "python2", "python3")),
    "c": Language("C", (".c", ".h")),
    "cpp": Language("C++", (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".tcc", ".ipp")),
    "java": Language("Java", (".java",)),
    "javascript": Language("JavaScript", (".js", ".mjs", ".cjs"), ("node", "nodejs")),
    "html": Language("HTML", (".html", ".htm", ".xhtml")),
    "xml": Language("XML", (".xml", ".xsd", ".xsl", ".xslt")),
    "go": Language("Go", (".go",)),
    "php": Language("PHP", (".php",), ("php",)),
    "shell": Language("shell", (".sh", ".bash"), ("sh", "bash", "dash", "zsh", "ksh")),
    "perl": Language("Perl", (".pl", ".pm"), ("perl",)),
    "ruby": Language("Ruby", (".rb",), ("ruby",)),
    "rust": Language("Rust", (".rs",)),
    "typescript": Language("TypeScript", (".ts", ".mts", ".cts")),
    "css": Language("CSS", (".css",)),
    "tcl": Language("Tcl", (".tcl",), ("tclsh", "wish")),
    "lua": Language("Lua", (".lua",), ("lua",)),
}

_BY_SUFFIX = {suffix: name for name, lang in LANGUAGES.items() for suffix in lang.suffixes}
_BY_INTERPRETER = {interp: name for name, lang in LANGUAGES.items() for interp in lang.interpreters}
#: What a file without a suffix may turn out to be: a script named by its ``#!`` line, or a C++ header.
_SNIFFED = frozenset(_BY_INTERPRETER.values()) | {"cpp"}
# A `.h` header using any of these is C++ (C has none of them; `extern "C"` guards are not matched).
_CPP_SYNTAX = re.compile(
    r"^\s*(?:namespace\s+[\w:]*\s*\{|template\s*<|class\s+\w+[^;(]*\{|using\s+namespace\s)|std::|"
    r"^\s*(?:public|private|protected)\s*:",
    re.MULTILINE,
)
_PREPROCESSOR = re.compile(r"^\s*#\s*(?:include|pragma|ifndef|define)\b", re.MULTILINE)
_SHEBANG = re.compile(r"#!\s*(\S+)(?:\s+(\S+))?")
_TAG = re.compile(r"<\s*[A-Za-z!?/]")
_WHITESPACE_CODES = np.array([ord(c) for c in map(chr, range(0x3001)) if c.isspace()], np.uint32)
_CONTROL = re.compile(r"[\x01-\x08\x0e-\x1f\x7f-\x9f]")

# Licence text: comment blocks that use at least two of these words.
_LICENCE_WORDS = re.compile(
    r"licen[cs]|copyright|warrant|redistribut|merchantab|liabilit|free software|general public|"
    r"apache|spdx|all rights reserved|permission is hereby|without limitation|provided that|"
    r"express or implied|gnu\b",
    re.IGNORECASE,
)
_BLOCK_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)|<!--.*?(?:-->|\Z)", re.DOTALL)
_LINE_COMMENT = re.compile(
    r"^[ \t]*(?://|#(?!\s*(?:include|define|if|ifdef|ifndef|endif|else|elif|pragma|undef|error|import)\b)"
    r"|--|;|%|\*|dnl\b|REM\b).*$",
    re.MULTILINE,
)

#: Where :func:`machine_sources` looks, besides the standard library, node's modules and a JDK.
MACHINE_DIRECTORIES = (
    "/usr/include",
    "/usr/local/include",
    "/usr/share/javascript",
    "/usr/share/doc",
    "/usr/share/xml",
    "/usr/share/mime",
    "/usr/share/perl",
    "/usr/share/perl5",
    "/usr/lib/x86_64-linux-gnu/perl",
    "/usr/lib/x86_64-linux-gnu/perl-base",
    "/usr/lib/aarch64-linux-gnu/perl",
    "/usr/lib/aarch64-linux-gnu/perl-base",
    "/usr/share/tcltk",
    "/usr/share/php",
    "/usr/lib/go/src",
    "/usr/local/go/src",
    "/usr/lib/ruby",
)
_NODE_MODULE_DIRECTORIES = ("/usr/lib/node_modules", "/usr/local/lib/node_modules", "/usr/share/nodejs")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeFile:
    """A candidate source file: on disk, or a member of a zip archive.

    Attributes
    ----------
    name : str
        Unique name, the group of its sequence: the absolute posix path, or
        ``archive!/member`` for a zip member.
    path : Path
        The file, or the archive holding it.
    member : str or None
        The member's name inside the archive.
    languages : frozenset of str
        The languages its name allows (more than one for ``.h`` and files
        without a suffix; :func:`classify` decides from the content), whether
        requested or not: a C++ ``.h`` stays C++ when only C is requested.
    """

    name: str
    path: Path
    member: str | None
    languages: frozenset[str]

    def read(self, max_bytes: int, archives: dict[Path, zipfile.ZipFile] | None = None) -> bytes:
        """The first ``max_bytes`` bytes of the file.

        ``archives`` caches open zip archives between calls (opening one reads
        its whole directory); the caller closes them.
        """
        if self.member is None:
            with open(self.path, "rb") as handle:
                return handle.read(max_bytes)
        if archives is None:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as handle:
                return handle.read(max_bytes)
        if self.path not in archives:
            archives[self.path] = zipfile.ZipFile(self.path)
        with archives[self.path].open(self.member) as handle:
            return handle.read(max_bytes)


def _candidate_languages(filename: str) -> frozenset[str] | None:
    """The languages a file name allows, or None when the name rules the file out."""
    base = filename.rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:  # no suffix (or a dotfile such as ``.bashrc``)
        return None if base.startswith(".") else _SNIFFED
    suffix = "." + suffix.lower()
    if suffix == ".h":
        return frozenset(("c", "cpp"))
    language = _BY_SUFFIX.get(suffix)
    return frozenset((language,)) if language else None


def machine_sources() -> list[str]:
    """The recipe's sources: what a stock machine has, existing directories only.

    The Python standard library (without :data:`STDLIB_EXCLUDED_DIRS`), node's
    global modules (``/usr/lib/node_modules``…), one JDK ``src.zip``
    (``$JAVA_HOME`` first, else the first under ``/usr/lib/jvm``), and
    :data:`MACHINE_DIRECTORIES` (headers, documentation, Perl and Tcl
    libraries, Go and PHP sources where installed).
    """
    found = [sysconfig.get_paths()["stdlib"]]
    found += [d for d in _NODE_MODULE_DIRECTORIES if Path(d).is_dir()]
    jdk = _jdk_source_zip()
    if jdk is not None:
        found.append(str(jdk))
    found += [d for d in MACHINE_DIRECTORIES if Path(d).is_dir()]
    return found


def _jdk_source_zip() -> Path | None:
    homes = [os.environ["JAVA_HOME"]] if os.environ.get("JAVA_HOME") else []
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        homes += [str(p) for p in sorted(jvm.iterdir()) if not p.is_symlink()]
    for home in homes:
        for candidate in (Path(home, "lib", "src.zip"), Path(home, "src.zip")):
            if candidate.is_file():
                return candidate
    return None


def find_code_files(sources: Iterable[str | os.PathLike], *, languages: Iterable[str] | None = None) -> list[CodeFile]:
    """Every candidate source file under ``sources``, sorted by name.

    Parameters
    ----------
    sources : iterable of path-like
        Directories (walked recursively, hidden directories and
        ``__pycache__`` skipped; under the standard library also
        :data:`STDLIB_EXCLUDED_DIRS`), files, and ``.zip`` archives.
    languages : iterable of str, optional
        Keep only files that may be of these languages (default: all of
        :data:`LANGUAGES`).

    Returns
    -------
    list of CodeFile
        Files reached twice (overlapping directories, symbolic links) are listed once.

    Raises
    ------
    InputError
        A source does not exist.
    """
    wanted = frozenset(LANGUAGES) if languages is None else frozenset(languages)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files: dict[str, CodeFile] = {}
    for source in sources:
        root = Path(source).expanduser()
        if not root.exists():
            raise InputError(f"source {root} does not exist; pass existing directories, files or .zip archives.")
        root = root.resolve()
        if root.is_file() and root.suffix.lower() == ".zip":
            entries = _zip_members(root)
        elif root.is_file():
            entries = iter([(root.as_posix(), root, None)])
        else:
            excluded = frozenset(STDLIB_EXCLUDED_DIRS) if root == stdlib else frozenset()
            entries = ((p.as_posix(), p, None) for p in _walk(root, excluded))
        for name, path, member in entries:
            allowed = _candidate_languages(member or name)
            if allowed is None or not allowed & wanted or name in files:
                continue
            files[name] = CodeFile(name, path, member, allowed)
    return sorted(files.values(), key=lambda f: f.name)


def _walk(root: Path, excluded: frozenset[str]) -> Iterator[Path]:
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in excluded and d != "__pycache__" and not d.startswith("."))
        for name in sorted(names):
            path = Path(directory, name)
            if not path.is_symlink() and path.is_file():
                yield path


def _zip_members(archive: Path) -> Iterator[tuple[str, Path, str]]:
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [info.filename for info in opened.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc}); pass a directory or a valid .zip.") from None
    for member in sorted(members):
        yield f"{archive.as_posix()}!/{member}", archive, member


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------
class SkippedFile(Exception):
    """A file that is not used; the message is the reason (counted per language in the dataset)."""


def decode_text(data: bytes, *, truncated: bool) -> str:
    """Decode the bytes of a source file as UTF-8 text with ``\\n`` line ends.

    Raises ``SkippedFile`` for binary data (a NUL byte, or more than 1% control
    characters) and for bytes that are not UTF-8. ``truncated``: the bytes are
    a prefix of the file, so a character cut at the end is dropped.
    """
    if b"\x00" in data:
        raise SkippedFile("binary")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=not truncated)
    except UnicodeDecodeError:
        raise SkippedFile("not UTF-8") from None
    if len(_CONTROL.findall(text)) > 0.01 * max(len(text), 1):
        raise SkippedFile("binary")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def classify(candidates: frozenset[str], text: str) -> str:
    """The language of a file whose name allows ``candidates``, decided from its ``text``.

    Raises ``SkippedFile`` when the content fits none of them (a file without a
    suffix and without a ``#!`` line or C++ syntax, HTML/XML without tags).
    """
    if len(candidates) == 1:
        (language,) = candidates
    elif candidates == {"c", "cpp"}:
        language = "cpp" if _CPP_SYNTAX.search(text) else "c"
    else:
        language = _sniff(text)
        if language is None or language not in candidates:
            raise SkippedFile("unrecognised")
    if language in ("html", "xml") and not _TAG.search(text):
        raise SkippedFile("no markup")
    return language


def _sniff(text: str) -> str | None:
    """A file without a suffix: the language of its ``#!`` interpreter, or C++ for a C++ header."""
    first = text.split("\n", 1)[0]
    match = _SHEBANG.match(first)
    if match:
        program = match.group(1).rsplit("/", 1)[-1]
        if program == "env" and match.group(2):
            program = match.group(2)
        return _BY_INTERPRETER.get(re.sub(r"[\d.]+$", "", program)) or _BY_INTERPRETER.get(program)
    if _PREPROCESSOR.search(text) and _CPP_SYNTAX.search(text):
        return "cpp"
    return None


def licence_share(text: str) -> float:
    """Fraction of the non-whitespace characters of ``text`` that are licence text.

    Licence text is a comment block (a ``/* … */`` or ``<!-- … -->`` comment, or
    a run of consecutive line comments starting with ``//``, ``#``, ``--``,
    ``;``, ``%`` or ``*``) that uses at least two distinct licence words
    (licence, copyright, warranty, redistribution, SPDX, …). A heuristic, used
    to skip files that are mostly a licence header.

    Returns
    -------
    float in [0, 1]
        0 for a text without non-whitespace characters.
    """
    mask = np.zeros(len(text) + 1, np.int8)
    spans = [m.span() for m in _BLOCK_COMMENT.finditer(text)] + [m.span() for m in _LINE_COMMENT.finditer(text)]
    for begin, end in spans:
        mask[begin] += 1
        mask[end] -= 1
    in_comment = np.cumsum(mask)[:-1] > 0
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    visible = ~np.isin(codes, _WHITESPACE_CODES)
    total = int(visible.sum())
    if total == 0:
        return 0.0
    # Comment blocks: maximal runs of comment characters, whitespace between comments joining them.
    joined = in_comment | ~visible
    edges = np.flatnonzero(np.diff(np.concatenate([[0], joined.astype(np.int8), [0]])))
    licence = 0
    for begin, end in zip(edges[::2], edges[1::2]):
        block = text[begin:end]
        words = {m.group(0).lower()[:5] for m in _LICENCE_WORDS.finditer(block)}
        if len(words) >= 2:
            licence += int((visible[begin:end] & in_comment[begin:end]).sum())
    return licence / total


def _median_line_length(text: str) -> float:
    lengths = [len(line) for line in text.split("\n") if line.strip()]
    return float(np.median(lengths)) if lengths else 0.0


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def build_code_language(
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    tokenizer: Any = "minilm",
    *,
    languages: Iterable[str] | None = None,
    context_length: int = 512,
    max_files_per_language: int | None = 500,
    min_files: int = 20,
    skip_tokens: int = 50,
    min_tokens: int = 32,
    max_licence_share: float = 0.5,
    max_bytes: int = 65536,
    positive_ratio: float | None = None,
    max_positives: int | None = None,
    seed: int = 0,
    progress: bool = False,
    source: str | None = None,
    sae_probes: str | os.PathLike | None = None,
    max_rows: int | None = None,
) -> ProbeDataset:
    """Build the ``code_language`` collection: ``is_<language>`` of whole source files.

    See the module docstring for how files are found, checked and cut.

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        Directories, files and ``.zip`` archives. ``None`` (default):
        :func:`machine_sources`, what this machine has.
    tokenizer : fast tokenizer or str, default "minilm"
        A ``transformers`` fast tokenizer or a model name / alias.
    languages : iterable of str, optional
        Languages to use (names of :data:`LANGUAGES`: ``python``, ``cpp``…);
        default all.
    context_length : int, default 512
        Most tokens per sequence (one sequence per file), special tokens included.
    max_files_per_language : int or None, default 500
        Stop collecting a language at this many usable files.
    min_files : int, default 20
        Languages with fewer usable files are dropped.
    skip_tokens : int, default 50
        Leading tokens of each sequence left out of the mean (the paper's 50).
    min_tokens : int, default 32
        Files whose sequence has fewer tokens after the skipped ones are skipped.
    max_licence_share : float, default 0.5
        Files more than this share licence text (of the first ``max_bytes``)
        are skipped.
    max_bytes : int, default 65536
        Bytes read from the start of each file.
    positive_ratio : float or None, default None
        Target share of positives per feature; ``None`` keeps every file as
        a negative of every other language (the paper's one-vs-rest).
    max_positives : int, optional
        Cap on positives per feature.
    seed : int, default 0
        Seeds the order in which files are visited and the subsampling.
    progress : bool, default False
        Show a progress bar.
    source : {"sae-probes"}, optional
        Build from the paper's snippets in the sae-probes data files instead
        of ``sources`` (module docstring); ``languages`` then picks among c, python, html.
    sae_probes : path-like, optional
        ``source="sae-probes"``: the wheel or unpacked package; default the installed package.
    max_rows : int, optional
        ``source="sae-probes"``: a seeded sample of at most this many rows per file.

    Returns
    -------
    ProbeDataset
        One sequence per file (group: the file's name), features
        ``is_<language>`` (level ``sequence``, mean aggregation, skip
        ``skip_tokens``). ``extra["languages"]`` holds, per language, the
        candidate, used and skipped file counts (skips by reason) and
        whether it was kept; ``extra["dropped_languages"]`` the languages
        with fewer than ``min_files`` usable files (and how many they had);
        ``extra["undecided_files"]`` the skip reasons of ``.h`` and
        suffix-less files whose language was not decided.

    Raises
    ------
    InputError
        A missing source, an unknown language, bad parameters, no candidate
        file of any requested language, or fewer than two languages with
        enough files.
    """
    tokenizer = fast_tokenizer(tokenizer)
    if source_param(source) == "sae-probes":
        return _from_sae_probes(sources, tokenizer, languages, sae_probes, context_length, skip_tokens,
                                positive_ratio, max_positives, max_rows, seed, min_files)
    wanted = _check_languages(languages)
    n_special = _check_parameters(
        tokenizer, context_length, max_files_per_language, min_files, skip_tokens, min_tokens, max_licence_share,
        max_bytes, positive_ratio,
    )
    recipe = sources is None
    source_list = machine_sources() if recipe else as_source_list(
        sources, empty="sources is empty; pass directories, files or .zip archives, or None for this machine's."
    )
    files = find_code_files(source_list, languages=wanted)
    if not files:
        raise InputError(
            f"{BUILDER}: no source files of the requested languages ({', '.join(wanted)}) under "
            f"{', '.join(source_list)}; known suffixes: {', '.join(sorted(_BY_SUFFIX))}."
        )
    params = {
        "sources": "machine" if recipe else source_list,
        "resolved_sources": source_list,
        "languages": list(wanted),
        "context_length": context_length,
        "max_files_per_language": max_files_per_language,
        "min_files": min_files,
        "skip_tokens": skip_tokens,
        "min_tokens": min_tokens,
        "max_licence_share": max_licence_share,
        "max_bytes": max_bytes,
        "positive_ratio": positive_ratio,
        "max_positives": max_positives,
        "seed": seed,
    }
    collected, stats, undecided = _collect(
        files, wanted, tokenizer, context_length, n_special, max_files_per_language, skip_tokens, min_tokens,
        max_licence_share, max_bytes, seed, progress,
    )
    kept = [name for name in wanted if len(collected[name]) >= min_files]
    dropped = {name: len(collected[name]) for name in wanted if name not in kept}
    for name in wanted:
        stats[name]["kept"] = name in kept
    if len(kept) < 2:
        raise InputError(
            f"{BUILDER}: {len(kept)} language(s) have at least min_files={min_files} usable files "
            f"(usable per language: { {n: len(collected[n]) for n in wanted} }); a probe needs two. "
            "Add sources or lower min_files."
        )
    found_dropped = {name: n for name, n in dropped.items() if stats[name]["candidates"] > 0}
    if found_dropped:
        warnings.warn(
            f"{BUILDER}: dropped languages with fewer than {min_files} usable files: "
            + ", ".join(f"{name} ({n})" for name, n in found_dropped.items()),
            UserWarning,
            stacklevel=2,
        )
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    for name in kept:
        assembler.add_feature(
            f"is_{name}", description=f"a {LANGUAGES[name].display} source file", collection=COLLECTION,
            level="sequence",
        )
    rows = sorted((item for name in kept for item in collected[name]), key=lambda item: item[0])
    for file_name, language, ids, text, end in rows:
        sequence = assembler.add_sequence(ids, file_name, text)
        for name in kept:
            assembler.add_examples(
                f"is_{name}", sequence, 0, int(name == language), end=end, aggregation="mean", skip=skip_tokens
            )
    dataset = assembler.build(positive_ratio=positive_ratio, seed=seed, max_positives=max_positives)
    dataset.extra["languages"] = stats
    dataset.extra["dropped_languages"] = dropped
    dataset.extra["undecided_files"] = undecided
    return dataset


def _from_sae_probes(sources, tokenizer, languages, sae_probes, context_length, skip_tokens, positive_ratio,
                     max_positives, max_rows, seed, min_files) -> ProbeDataset:
    """The collection from sae-probes' code files (see the module docstring)."""
    if sources is not None:
        raise InputError(f"{BUILDER}: source=sae-probes reads the package's files; drop the --source paths.")
    wanted = tuple(SAE_PROBES_FILES) if languages is None else _check_languages(languages)
    unknown = [name for name in wanted if name not in SAE_PROBES_FILES]
    if unknown:
        raise InputError(f"source=sae-probes has no {', '.join(unknown)} files; its languages are "
                         f"{', '.join(SAE_PROBES_FILES)}.")
    if not isinstance(skip_tokens, (int, np.integer)) or skip_tokens < 0:
        raise InputError(f"skip_tokens must be an integer of at least 0, not {skip_tokens!r}.")
    check_model_max_length(tokenizer, context_length)
    check_positive_ratio(positive_ratio)
    files = SaeProbesFiles(sae_probes, needed_by=f"{BUILDER} with source=sae-probes")
    tasks = [PromptTask(f"is_{name}", SAE_PROBES_FILES[name], "1",
                        f"a {LANGUAGES[name].display} snippet (sae-probes {SAE_PROBES_FILES[name]})") for name in wanted]
    params = {"source": "sae-probes", "sae_probes": None if sae_probes is None else os.fspath(sae_probes),
              "languages": list(wanted), "context_length": context_length, "skip_tokens": skip_tokens,
              "positive_ratio": positive_ratio, "max_positives": max_positives, "max_rows": max_rows,
              "seed": seed}  # fmt: skip
    return build_prompt_dataset(tasks, tokenizer, builder=BUILDER, params=params, collection=COLLECTION, files=files,
                                level="sequence", position="mean", context_length=context_length,
                                skip_tokens=skip_tokens, max_rows=max_rows, seed=seed, positive_ratio=positive_ratio,
                                min_positives=min_files, max_positives=max_positives)  # fmt: skip


def _collect(
    files: list[CodeFile],
    wanted: tuple[str, ...],
    tokenizer: Any,
    context_length: int,
    n_special: int,
    max_files: int | None,
    skip_tokens: int,
    min_tokens: int,
    max_licence_share: float,
    max_bytes: int,
    seed: int,
    progress: bool,
) -> tuple[dict[str, list[tuple[str, str, np.ndarray, str, int]]], dict[str, dict[str, Any]], dict[str, int]]:
    """Visit files in a seeded order until every language is full.

    Returns the usable files per language (name, language, ids, text, span
    end), per-language counts (``candidates``: files seen to be of the
    language, ``used``, ``skipped`` by reason) and the skip reasons of files
    whose language was never decided (a ``.h`` or suffix-less file that could
    not be read, or is none of the requested languages).
    """
    wanted_set = frozenset(wanted)
    collected: dict[str, list[tuple[str, str, np.ndarray, str, int]]] = {name: [] for name in wanted}
    stats: dict[str, dict[str, Any]] = {name: {"candidates": 0, "used": 0, "skipped": Counter()} for name in wanted}
    undecided: Counter = Counter()
    for f in files:
        if len(f.languages) == 1:
            stats[next(iter(f.languages))]["candidates"] += 1
    seen: set[str] = set()
    order = np.random.default_rng(seed).permutation(len(files))

    def full(name: str) -> bool:
        return max_files is not None and len(collected[name]) >= max_files

    bar = progress_bar(total=len(files), enabled=progress, desc="code files")
    archives: dict[Path, zipfile.ZipFile] = {}
    try:
        for index in order:
            bar.update(1)
            f = files[index]
            if all(full(name) for name in f.languages & wanted_set):
                if all(full(name) for name in wanted):
                    break
                continue
            skipped = stats[next(iter(f.languages))]["skipped"] if len(f.languages) == 1 else undecided
            try:
                data = f.read(max_bytes, archives)
                text = decode_text(data, truncated=len(data) == max_bytes)
                language = classify(f.languages, text)
            except SkippedFile as skip:
                skipped[str(skip)] += 1
                continue
            except (OSError, zipfile.BadZipFile):
                skipped["unreadable"] += 1
                continue
            if language not in wanted_set:
                undecided[f"not requested ({language})"] += 1
                continue
            if len(f.languages) > 1:
                stats[language]["candidates"] += 1
            if full(language):
                continue
            try:
                ids, window, end = _sequence(
                    text, tokenizer, context_length, n_special, skip_tokens, min_tokens, max_licence_share
                )
            except SkippedFile as skip:
                stats[language]["skipped"][str(skip)] += 1
                continue
            digest = hashlib.sha256(window.encode()).hexdigest()
            if digest in seen:
                stats[language]["skipped"]["duplicate"] += 1
                continue
            seen.add(digest)
            collected[language].append((f.name, language, ids, window, end))
            stats[language]["used"] += 1
    finally:
        bar.close()
        for archive in archives.values():
            archive.close()
    for name in wanted:
        stats[name]["skipped"] = dict(sorted(stats[name]["skipped"].items()))
    return collected, stats, dict(sorted(undecided.items()))


def _sequence(
    text: str,
    tokenizer: Any,
    context_length: int,
    n_special: int,
    skip_tokens: int,
    min_tokens: int,
    max_licence_share: float,
) -> tuple[np.ndarray, str, int]:
    """The first sequence of a file: ids, its text, and the end of its span (last non-special token + 1)."""
    if not text.strip():
        raise SkippedFile("empty")
    if _median_line_length(text) > 200:
        raise SkippedFile("minified or generated")
    # Judged on the file (as far as read), not the sequence: a long licence header followed by
    # code is common and fine (the skipped tokens absorb part of it); a file that is little else is not.
    if licence_share(text) > max_licence_share:
        raise SkippedFile("mostly licence text")
    begin, stop, encoded = pack_lines(text, tokenizer, context_length, n_special=n_special, max_sequences=1)[0]
    window = text[begin:stop]
    content = np.flatnonzero(~encoded.special)
    end = int(content[-1]) + 1 if len(content) else 0
    if end - skip_tokens < min_tokens:
        raise SkippedFile("too short")
    return encoded.ids, window, end


def _check_languages(languages: Iterable[str] | None) -> tuple[str, ...]:
    if languages is None:
        return tuple(LANGUAGES)
    if isinstance(languages, str):
        languages = [part.strip() for part in languages.split(",") if part.strip()]
    names = tuple(dict.fromkeys(languages))
    unknown = [name for name in names if name not in LANGUAGES]
    if unknown:
        raise InputError(f"unknown language(s) {', '.join(map(repr, unknown))}; known: {', '.join(LANGUAGES)}.")
    if len(names) < 2:
        raise InputError(f"languages must name at least two languages (one-vs-rest needs a rest); got {names!r}.")
    return names


def _check_parameters(
    tokenizer: Any,
    context_length: int,
    max_files: int | None,
    min_files: int,
    skip_tokens: int,
    min_tokens: int,
    max_licence_share: float,
    max_bytes: int,
    positive_ratio: float | None,
) -> int:
    """Validate the parameters; return the number of special tokens per sequence."""
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    for name, value, low in (("skip_tokens", skip_tokens, 0), ("min_tokens", min_tokens, 1),
                             ("min_files", min_files, 1), ("max_bytes", max_bytes, 1024)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name} must be an integer of at least {low}, not {value!r}.")
    least = n_special + skip_tokens + min_tokens
    if not isinstance(context_length, (int, np.integer)) or context_length < least:
        raise InputError(
            f"context_length must be an integer of at least {least} (special tokens + skip_tokens + min_tokens), "
            f"not {context_length!r}."
        )
    check_model_max_length(tokenizer, context_length)
    if max_files is not None and (not isinstance(max_files, (int, np.integer)) or max_files < 1):
        raise InputError(f"max_files_per_language must be a positive integer or None, not {max_files!r}.")
    if not 0 < max_licence_share <= 1:
        raise InputError(f"max_licence_share must be in (0, 1], not {max_licence_share!r}.")
    check_positive_ratio(positive_ratio)
    return n_special
