"""Natural-language identity of a sequence: ``is_<language>`` features, mean-aggregated.

The paper's *natural language* collection (Appendix A.2.2) takes a random
contiguous sequence of each Europarl document and probes the mean activation
over its tokens for the document's language. Here any labelled corpora will
do; the default recipe reads the dev and test files of the ten Universal
Dependencies treebanks beside the checkout (English EWT and the paper's other
eight languages: fr_gsd, de_gsd, es_gsd, it_isdt, pt_bosque, nl_alpino,
sv_talbanken, el_gdt — see :mod:`needle.datasets.shared_data`).

Sources and their labels:

* a UD file named like ``fr_gsd-ud-dev.conllu[.gz]`` (or a directory of such
  files) is labelled by the language code before the underscore;
* ``"LABEL=PATH"`` (also on the command line: ``--source fr=path``) or a
  mapping ``{label: path or paths}`` labels any CoNLL-U or plain-text file;
  a plain-text file is one document whose units are its non-empty lines.

A label that is a known ISO 639-1 code becomes the language's English name
(``fr`` → ``is_french``); any other label of lower-case letters, digits and
underscores is used as written (``klingon`` → ``is_klingon``), except an
unknown two-letter code, refused as a probable typo.

Windows of consecutive sentences are made by :mod:`needle.datasets.windows`.
UD documents are those of :func:`needle.datasets.readers.conllu.read_conllu`; a treebank
without document markup (the GSD and Alpino treebanks give every sentence an
id of its own) is read as a stream of sentences in file order, and each of its
windows is its own group.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from needle.datasets.builder import materialize, source_stems
from needle.datasets.format import ProbeDataset
from needle.datasets.readers.conllu import find_conllu_files, is_conllu, read_conllu
from needle.datasets.readers.text import read_lines
from needle.datasets.shared_data import ud_treebank_files
from needle.datasets.tokenizer_info import fast_tokenizer
from needle.datasets.windows import LabelledDocument, build_window_collection, check_window_params
from needle.errors import InputError

__all__ = ["LANGUAGE_NAMES", "UD_RECIPE", "build_natural_language", "language_feature", "language_sources"]

BUILDER = "natural-language"
COLLECTION = "natural_language"

#: The default recipe: language code -> UD treebank, read from its dev and test files.
UD_RECIPE: dict[str, str] = {
    "en": "en_ewt", "fr": "fr_gsd", "de": "de_gsd", "es": "es_gsd", "it": "it_isdt",
    "pt": "pt_bosque", "nl": "nl_alpino", "sv": "sv_talbanken", "el": "el_gdt",
}  # fmt: skip
_RECIPE_SPLITS = ("dev", "test")

#: ISO 639-1 codes of common languages (those with sizeable UD treebanks) -> English name.
LANGUAGE_NAMES: dict[str, str] = {
    "af": "afrikaans", "ar": "arabic", "be": "belarusian", "bg": "bulgarian", "ca": "catalan", "cs": "czech",
    "cy": "welsh", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "et": "estonian", "eu": "basque", "fa": "persian", "fi": "finnish", "fo": "faroese", "fr": "french",
    "ga": "irish", "gd": "scottish_gaelic", "gl": "galician", "he": "hebrew", "hi": "hindi", "hr": "croatian",
    "hu": "hungarian", "hy": "armenian", "id": "indonesian", "is": "icelandic", "it": "italian", "ja": "japanese",
    "ko": "korean", "la": "latin", "lt": "lithuanian", "lv": "latvian", "mt": "maltese", "nl": "dutch",
    "no": "norwegian", "nb": "norwegian_bokmaal", "nn": "norwegian_nynorsk", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sk": "slovak", "sl": "slovenian", "sr": "serbian", "sv": "swedish",
    "ta": "tamil", "te": "telugu", "th": "thai", "tr": "turkish", "uk": "ukrainian", "ur": "urdu",
    "vi": "vietnamese", "wo": "wolof", "zh": "chinese",
}  # fmt: skip

_UD_NAME_RE = re.compile(r"^(?P<code>[a-z]{2,3})_[A-Za-z0-9]+-ud-[A-Za-z0-9]+\.conllu(?:\.gz)?$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def language_feature(label: str) -> str:
    """Feature name of a language label: ``fr`` → ``is_french``, ``klingon`` → ``is_klingon``.

    Raises
    ------
    InputError
        The label is not lower-case letters, digits and underscores, or it is
        a two-letter code not in :data:`LANGUAGE_NAMES`.
    """
    if not isinstance(label, str) or not _LABEL_RE.match(label):
        raise InputError(
            f"language label {label!r} must be lower-case letters, digits or underscores, starting with a letter "
            "(an ISO 639-1 code such as 'fr' or a name such as 'french')"
        )
    if label in LANGUAGE_NAMES:
        return f"is_{LANGUAGE_NAMES[label]}"
    if len(label) == 2:
        raise InputError(
            f"unknown language code {label!r}; known codes: {', '.join(sorted(LANGUAGE_NAMES))}. "
            f"Write the language's name instead (e.g. {label}=… → klingon=…)."
        )
    return f"is_{label}"


def language_sources(sources: Any) -> list[tuple[str, Path]]:
    """``(label, file)`` pairs from the ``sources`` argument of :func:`build_natural_language`.

    Parameters
    ----------
    sources : None, path-like, ``"LABEL=PATH"`` string, mapping or iterable of these
        ``None`` is the default recipe (:data:`UD_RECIPE`).

    Raises
    ------
    InputError
        A missing path, an empty directory, a file whose language cannot be
        told from its name, or an unknown language code.
    """
    if sources is None:
        return [
            (code, path) for code, treebank in UD_RECIPE.items() for path in ud_treebank_files(treebank, _RECIPE_SPLITS)
        ]
    if isinstance(sources, Mapping):
        pairs: list[tuple[str | None, Any]] = []
        for label, paths in sources.items():
            items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            pairs.extend((str(label), item) for item in items)
    else:
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        pairs = [_split_label(item) for item in items]
    if not pairs:
        raise InputError(
            "no sources given; pass labelled files (e.g. fr=corpus.txt) or UD files such as fr_gsd-ud-dev.conllu."
        )
    out: list[tuple[str, Path]] = []
    for label, item in pairs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory; check the path.")
        files = _conllu_files(path) if path.is_dir() else [path]
        for file in files:
            out.append((label if label is not None else _label_from_name(file), file))
    for label, _ in out:
        language_feature(label)  # refuse a bad label before reading anything
    return out


def _split_label(item: Any) -> tuple[str | None, Any]:
    text = os.fspath(item)
    if isinstance(text, str) and "=" in text and not Path(text).exists():
        label, path = text.split("=", 1)
        return label.strip(), path
    return None, item


def _conllu_files(directory: Path) -> list[Path]:
    files = find_conllu_files(directory)
    if not files:
        raise InputError(f"{directory}: no .conllu or .conllu.gz file in this directory; pass files or LABEL=PATH.")
    return files


def _label_from_name(path: Path) -> str:
    match = _UD_NAME_RE.match(path.name)
    if not match:
        raise InputError(
            f"{path}: cannot tell the language from the file name; pass it as LABEL=PATH (e.g. fr={path}) or use a "
            "UD file name such as fr_gsd-ud-dev.conllu."
        )
    code = match.group("code")
    if code not in LANGUAGE_NAMES:
        raise InputError(
            f"{path}: unknown language code {code!r} in the file name; pass it as NAME=PATH with the language's "
            f"name (e.g. klingon={path})."
        )
    return code


def _read_documents(label: str, path: Path, stem: str) -> list[LabelledDocument]:
    if is_conllu(path.name):
        documents = read_conllu(path)
        if all(doc.source == "sentence" for doc in documents):
            sentences = [s for doc in documents for s in doc.sentences]
            ids = tuple(s.sent_id or f"line{s.line}" for s in sentences)
            return [LabelledDocument(label, stem, tuple(s.text for s in sentences), ids, stream=True)]
        return [
            LabelledDocument(label, f"{stem}:{doc.id}", tuple(s.text for s in doc.sentences)) for doc in documents
        ]
    lines = read_lines(path)
    if not lines:
        raise InputError(f"{path}: the file holds no text (an empty source); remove it or add text.")
    return [
        LabelledDocument(label, stem, tuple(line for _, line in lines), tuple(f"line{n}" for n, _ in lines))
    ]


def build_natural_language(
    sources: Any = None,
    tokenizer: Any = "minilm",
    *,
    context_length: int = 512,
    windows_per_document: int | None = None,
    min_tokens: int = 16,
    max_sequences_per_language: int | None = None,
    positive_ratio: float | None = None,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
) -> ProbeDataset:
    """Build the ``natural-language`` collection: which language a window of text is in.

    Every window of consecutive sentences (see :mod:`needle.datasets.windows`)
    is one sequence and one example of every ``is_<language>`` feature:
    positive for its own language, negative for the others; the example is the
    mean over the window's non-special tokens.

    Parameters
    ----------
    sources : None, path-like, "LABEL=PATH", mapping or iterable of these
        See the module docstring; ``None`` (default) is the ten-treebank UD
        recipe (dev and test files).
    tokenizer : fast tokenizer or str, default "minilm"
        A ``transformers`` fast tokenizer, or a model name / path / alias.
    context_length : int, default 512
        Most tokens per window, special tokens included.
    windows_per_document : int, optional
        ``None`` (default) tiles every document with consecutive windows;
        ``k`` takes up to ``k`` non-overlapping windows at random positions
        per document (``1`` is the paper's one random contiguous sequence per
        document — few examples on treebanks of short documents).
    min_tokens : int, default 16
        Windows with fewer non-special tokens are left out (counted in
        ``extra["labels"]``).
    max_sequences_per_language : int, optional
        Keep a seeded random sample of at most this many windows per language
        (balances languages and bounds extraction time).
    positive_ratio : float, optional
        Target share of positives per feature; ``None`` (default) keeps every
        window as a negative of the other languages (the paper's 0.11 with
        nine languages is the natural ratio).
    seed : int, default 0
        Seeds the random windows, the per-language sample and the negative subsampling.
    min_positives : int, default 20
        Features with fewer positive (or negative) examples are dropped and
        listed in ``extra["dropped_features"]``.
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample).

    Returns
    -------
    ProbeDataset
        Sequence-level features ``is_<language>``; groups are documents
        (``<file stem>:<document id>``), or single windows of a stream;
        ``extra["labels"]`` has per-language counts.

    Raises
    ------
    InputError
        A missing or unreadable source, a file of unknown language, an
        unknown language code, fewer than two languages, bad parameters, or
        no window / no feature with enough examples.
    """
    tokenizer = fast_tokenizer(tokenizer)
    check_window_params(
        tokenizer,
        context_length=context_length,
        windows_per_document=windows_per_document,
        min_tokens=min_tokens,
        max_sequences_per_label=max_sequences_per_language,
        min_positives=min_positives,
        positive_ratio=positive_ratio,
        cap_name="max_sequences_per_language",
    )
    sources = materialize(sources)
    pairs = language_sources(sources)
    documents = [
        doc
        for (label, path), stem in zip(pairs, source_stems([p for _, p in pairs]))
        for doc in _read_documents(label, path, stem)
    ]
    features = {}
    for label in sorted({label for label, _ in pairs}):
        name = language_feature(label)
        language = name.removeprefix("is_").replace("_", " ")
        features[label] = (name, f"the text is in {language} (label {label!r}); mean over the window's tokens")
    params = {
        "sources": _recorded_sources(sources, pairs),
        "context_length": context_length,
        "windows_per_document": windows_per_document,
        "min_tokens": min_tokens,
        "max_sequences_per_language": max_sequences_per_language,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
    }
    return build_window_collection(
        documents,
        tokenizer,
        builder=BUILDER,
        params=params,
        features=features,
        collection=COLLECTION,
        context_length=context_length,
        windows_per_document=windows_per_document,
        min_tokens=min_tokens,
        max_sequences_per_label=max_sequences_per_language,
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        max_positives=max_positives,
    )


def _recorded_sources(sources: Any, pairs: list[tuple[str, Path]]) -> Any:
    """What the dataset records: the recipe's name or the labelled files actually read."""
    files = [f"{label}={path}" for label, path in pairs]
    return {"recipe": "ud-ten-treebanks", "files": files} if sources is None else files
