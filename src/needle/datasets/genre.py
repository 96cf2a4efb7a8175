"""Genre of a sequence from document-level labels: ``genre:<label>`` features, mean-aggregated.

Our stand-in for the paper's *data subset* collection (which Pile subset a
sequence came from; Appendix A.2.2, "the same random sub-sequencing and mean
aggregation" as natural language). The English Web Treebank's documents come
from five web genres, written at the start of every document and sentence
id::

    # newdoc id = weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713
    # sent_id = weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001

The default recipe reads EWT's train, dev and test files beside the checkout
(:mod:`needle.datasets.shared_data`). Any CoNLL-U corpus whose document ids
carry a label works the same way: ``label_pattern`` says where the label is
(by default the id's first part, before ``-`` or ``_``) and ``genres`` which
labels to keep (``None``: every label found).

Documents are those of :func:`needle.datasets.readers.conllu.read_conllu` (``# newdoc id``,
else the sentence id without its final ``-NNNN``); windows of consecutive
sentences and their examples are made by :mod:`needle.datasets.windows`, and
the group of a window is its document.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from needle.datasets.builder import materialize, source_stems, treebank_or_files
from needle.datasets.format import ProbeDataset
from needle.datasets.readers.conllu import UDDocument, read_conllu
from needle.datasets.shared_data import recorded_sources
from needle.datasets.tokenizer_info import fast_tokenizer
from needle.datasets.windows import LabelledDocument, build_window_collection, check_window_params
from needle.errors import InputError

__all__ = ["DEFAULT_LABEL_PATTERN", "EWT_GENRES", "build_genre", "document_label"]

BUILDER = "genre"
COLLECTION = "genre"

#: The English Web Treebank's five genres, as written in its document ids.
EWT_GENRES = ("weblog", "newsgroup", "email", "reviews", "answers")
#: The label is the document id's first part, before the first ``-`` or ``_``.
DEFAULT_LABEL_PATTERN = r"^(?P<label>[A-Za-z0-9]+)[-_]"

_GLOSS = {
    "weblog": "a blog post",
    "newsgroup": "a newsgroup (Usenet) post",
    "email": "an email",
    "reviews": "a review",
    "answers": "a question or answer from a Q&A site",
}


def document_label(document_id: str, pattern: re.Pattern[str]) -> str | None:
    """The label ``document_id`` carries under ``pattern``: its ``label`` group, else group 1; None without a match."""
    match = pattern.search(document_id)
    if match is None:
        return None
    return match.group("label") if "label" in pattern.groupindex else match.group(1)


def build_genre(
    sources: Any = None,
    tokenizer: Any = "minilm",
    *,
    genres: Sequence[str] | None = EWT_GENRES,
    label_pattern: str = DEFAULT_LABEL_PATTERN,
    context_length: int = 512,
    windows_per_document: int | None = None,
    min_tokens: int = 16,
    max_sequences_per_genre: int | None = None,
    positive_ratio: float | None = None,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
) -> ProbeDataset:
    """Build the ``genre`` collection: which genre (document-level label) a window of text comes from.

    Every window of consecutive sentences of one document is one sequence and
    one example of every ``genre:<label>`` feature: positive for its
    document's label, negative for the others; the example is the mean over
    the window's non-special tokens.

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        CoNLL-U files (plain or gzipped) or directories of them; ``None``
        (default) is EWT's train, dev and test files.
    tokenizer : fast tokenizer or str, default "minilm"
    genres : sequence of str, optional
        Labels to keep, default :data:`EWT_GENRES`; documents with another
        label are skipped (counted in ``extra["skipped_documents"]``).
        ``None`` keeps every label found.
    label_pattern : str, default :data:`DEFAULT_LABEL_PATTERN`
        Regular expression searched in each document id; its ``label`` group
        (or first group) is the document's label.
    context_length : int, default 512
        Most tokens per window, special tokens included.
    windows_per_document : int, optional
        ``None`` (default) tiles each document; ``k`` takes up to ``k``
        random non-overlapping windows per document (``1``: the paper's).
    min_tokens : int, default 16
        Windows with fewer non-special tokens are left out (EWT's shortest
        documents — one-line emails and answers — fall below it).
    max_sequences_per_genre : int, optional
        Keep a seeded random sample of at most this many windows per genre.
    positive_ratio : float, optional
        Target share of positives per feature; ``None`` (default) keeps every
        window (five genres: about 0.2).
    seed : int, default 0
    min_positives : int, default 20
    max_positives : int, optional

    Returns
    -------
    ProbeDataset
        Sequence-level features ``genre:<label>``; groups are documents
        (``<file stem>:<document id>``); ``extra["labels"]`` has per-genre
        counts and ``extra["skipped_documents"]`` the labels of skipped ones.

    Raises
    ------
    InputError
        A missing or malformed source; a treebank whose documents have no ids
        (no ``# newdoc id`` and no ``# sent_id``); an invalid ``label_pattern``;
        a requested genre absent from the sources; no document with a wanted
        label; fewer than two genres; bad parameters.
    """
    tokenizer = fast_tokenizer(tokenizer)
    check_window_params(
        tokenizer,
        context_length=context_length,
        windows_per_document=windows_per_document,
        min_tokens=min_tokens,
        max_sequences_per_label=max_sequences_per_genre,
        min_positives=min_positives,
        positive_ratio=positive_ratio,
        cap_name="max_sequences_per_genre",
    )
    pattern = _compile(label_pattern)
    wanted = _check_genres(genres)
    sources = materialize(sources)
    paths = treebank_or_files(sources, what="CoNLL-U files or directories", directories=True)

    documents: list[LabelledDocument] = []
    found: Counter = Counter()
    skipped: Counter = Counter()
    for path, stem in zip(paths, source_stems(paths)):
        for doc in read_conllu(path):
            _require_id(path, doc)
            label = document_label(doc.id, pattern)
            found[label] += 1
            if label is None or (wanted is not None and label not in wanted):
                skipped[str(label)] += 1
                continue
            documents.append(LabelledDocument(label, f"{stem}:{doc.id}", tuple(s.text for s in doc.sentences)))
    present = {label for label in found if label is not None}
    if not documents:
        raise InputError(
            f"{BUILDER}: no document id carries a wanted label ({', '.join(wanted or ['any'])}) under label_pattern="
            f"{label_pattern!r}; labels found: {', '.join(sorted(present)) or '(none)'}. Check the sources, "
            "genres and label_pattern."
        )
    if wanted is not None:
        absent = [g for g in wanted if g not in present]
        if absent:
            raise InputError(
                f"genres: no document of the sources has the label {', '.join(map(repr, absent))}; labels found: "
                f"{', '.join(sorted(present))}. Pass genres present in the data (or genres=None for all)."
            )
    labels = sorted({doc.label for doc in documents})
    features = {
        label: (
            f"genre:{label}",
            f"the text comes from {_GLOSS.get(label, f'a {label!r} document')}; mean over the window's tokens",
        )
        for label in labels
    }
    params = {
        "sources": recorded_sources("en_ewt" if sources is None else None, paths),
        "genres": list(genres) if genres is not None else None,
        "label_pattern": label_pattern,
        "context_length": context_length,
        "windows_per_document": windows_per_document,
        "min_tokens": min_tokens,
        "max_sequences_per_genre": max_sequences_per_genre,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
    }
    dataset = build_window_collection(
        documents,
        tokenizer,
        builder=BUILDER,
        params=params,
        features=features,
        collection=COLLECTION,
        context_length=context_length,
        windows_per_document=windows_per_document,
        min_tokens=min_tokens,
        max_sequences_per_label=max_sequences_per_genre,
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra["skipped_documents"] = dict(sorted(skipped.items()))
    return dataset


def _compile(label_pattern: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(label_pattern)
    except (re.error, TypeError) as exc:
        raise InputError(f"label_pattern {label_pattern!r} is not a valid regular expression ({exc}).") from None
    if "label" not in pattern.groupindex and pattern.groups < 1:
        raise InputError(f"label_pattern {label_pattern!r} needs a group holding the label, e.g. (?P<label>[a-z]+).")
    return pattern


def _check_genres(genres: Any) -> set[str] | None:
    if genres is None:
        return None
    if isinstance(genres, str):
        genres = [genres]
    items = list(genres)
    if not items or not all(isinstance(g, str) and g for g in items):
        raise InputError(f"genres must be None or a non-empty list of labels; got {genres!r}")
    return set(items)


def _require_id(path: Path, doc: UDDocument) -> None:
    """A document without an id has no label: refuse the treebank rather than guess."""
    if doc.source == "sentence" and doc.sentences[0].sent_id is None:
        raise InputError(
            f"{path}, line {doc.sentences[0].line}: the sentence has no '# sent_id' and no '# newdoc id' precedes "
            "it, so its document (and genre) is unknown; the genre builder needs document ids that carry the label."
        )
