"""Features of the *next* word: ``next:<UPOS>`` and ``next:eos``, probed at the current word's last token.

Beyond the paper: its Section 2.6.4 proposes probing for what a model is
about to output. A causal language model predicts the next token at every
position, so neurons implicated in predicting "a noun comes next" or "the
sentence ends here" should be readable at the token before. This builder
labels, from a Universal Dependencies treebank,

* the **last** model token of every word with the part of speech (UPOS) of
  the word that follows it in the sentence — feature ``next:<UPOS>``
  (``next:NOUN``, ``next:VERB``, ``next:PUNCT``…);
* the last token of a sentence's last word with ``next:eos`` (the sentence
  ends there; what follows is the next sentence or the end of the sequence).

Each labelled position has exactly one class, so every feature is
one-versus-rest over the labelled positions. A word that shares its last
token with the next word (a contraction the tokenizer keeps whole, French
``du`` = ``de le``) is not labelled: the token that follows it is not the next
word's. A word no token covers is not labelled, nor is the word before it.

For an encoder such as MiniLM (bidirectional attention) the next word is in
plain view, so there these features measure "the model encodes its right
neighbour's class", not prediction; the reading as prediction needs a causal
model.

Sentences of one document are packed into sequences of at most
``context_length`` tokens as in :func:`needle.datasets.ud.build_ud`; groups are
documents.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import (
    check_context_length,
    check_positive_ratio,
    materialize,
    source_stems,
    treebank_or_files,
)
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import pack_documents, word_tokens
from needle.datasets.readers.conllu import UDSentence, read_conllu
from needle.datasets.shared_data import recorded_sources
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = ["EOS", "build_next_token", "next_word_classes"]

BUILDER = "next-token"
COLLECTION = "next_token"
#: The class of a sentence's last word: nothing follows it in the sentence.
EOS = "eos"


def next_word_classes(sentence: UDSentence) -> list[str | None]:
    """The class of the word after each word of ``sentence``: its UPOS, ``"eos"`` after the last, None if unknown.

    Returns
    -------
    list of str or None, length n_words
    """
    classes: list[str | None] = list(sentence.upos[1:]) + [EOS]
    return classes[: sentence.n_words]


def build_next_token(
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    tokenizer: Any = "minilm",
    *,
    classes: Sequence[str] | None = None,
    context_length: int = 512,
    positive_ratio: float | None = 0.2,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
) -> ProbeDataset:
    """Build the ``next-token`` collection: the class of the next word, at the current word's last token.

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        CoNLL-U files (plain or gzipped); ``None`` (default) is EWT's train,
        dev and test files (:mod:`needle.datasets.shared_data`).
    tokenizer : fast tokenizer or str, default "minilm"
    classes : sequence of str, optional
        Classes to make features of: UPOS tags and/or ``"eos"``; default every
        class in the data. Positions of other classes remain negatives.
    context_length : int, default 512
        Most tokens per sequence, special tokens included; a sentence longer
        than this on its own is left out (counted in ``extra``).
    positive_ratio : float or None, default 0.2
        Target share of positives per feature (negatives subsampled).
    seed : int, default 0
    min_positives : int, default 20
        Features with fewer positives (or negatives) are dropped and listed
        in ``extra["dropped_features"]``.
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample).

    Returns
    -------
    ProbeDataset
        Token features ``next:<class>``; groups ``<file stem>:<document id>``;
        ``extra`` counts the labelled positions and the words left unlabelled
        and why.

    Raises
    ------
    InputError
        A missing or malformed source, a treebank without UPOS tags, a
        requested class absent from the data, bad parameters, or no feature
        with enough examples.
    """
    tokenizer = fast_tokenizer(tokenizer)
    _check_parameters(tokenizer, context_length, min_positives, positive_ratio)
    sources = materialize(sources)
    paths = treebank_or_files(sources, what="one or more CoNLL-U files")
    request = _check_classes(classes)

    stats: Counter = Counter()
    sequence_parts, token_parts, class_parts = [], [], []
    params = {
        "sources": recorded_sources("en_ewt" if sources is None else None, paths),
        "classes": list(request) if request is not None else None,
        "context_length": context_length,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
    }
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    for path, stem in zip(paths, source_stems(paths)):
        documents = read_conllu(path)
        sentences = [s for doc in documents for s in doc.sentences]
        if not any(tag is not None for s in sentences for tag in s.upos):
            raise InputError(f"{path}: no word has a UPOS tag (the column is _ everywhere); next-token needs UPOS.")
        texts = [[s.text for s in doc.sentences] for doc in documents]
        for doc, (packs, dropped) in zip(documents, pack_documents(texts, tokenizer, context_length)):
            stats["sentences_longer_than_context"] += len(dropped)
            for pack in packs:
                seq = assembler.add_sequence(pack.encoded.ids, f"{stem}:{doc.id}", pack.text)
                for unit, offset in zip(pack.units, pack.starts):
                    tokens, labels = _label_sentence(pack.encoded, doc.sentences[unit], offset, stats)
                    sequence_parts.append(np.full(len(tokens), seq, np.int64))
                    token_parts.append(tokens)
                    class_parts.append(labels)
    sequence = np.concatenate(sequence_parts) if sequence_parts else np.zeros(0, np.int64)
    token = np.concatenate(token_parts) if token_parts else np.zeros(0, np.int64)
    label = np.concatenate(class_parts) if class_parts else np.zeros(0, object)
    present = sorted(set(label.tolist()))
    if request is not None:
        absent = [c for c in request if c not in present]
        if absent:
            raise InputError(
                f"classes: no labelled position has the next-word class {', '.join(map(repr, absent))}; classes in "
                f"the data: {', '.join(present) or '(none)'}"
            )
    for cls in request if request is not None else present:
        name = f"next:{cls}"
        what = "the sentence ends after this word" if cls == EOS else f"the next word's UPOS is {cls}"
        assembler.add_feature(name, description=f"{what} (probed at the word's last token)", collection=COLLECTION)
        is_class = label == cls
        assembler.add_examples(name, sequence[is_class], token[is_class], 1)
        assembler.add_examples(name, sequence[~is_class], token[~is_class], 0)
    dataset = assembler.build(
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra["positions"] = {
        "labelled": len(label),
        "by_class": dict(sorted(Counter(label.tolist()).items())),
        "words_sharing_a_token_with_the_next": stats["shared_token"],
        "words_without_tokens": stats["uncovered"],
        "words_before_an_unknown_class": stats["unknown_next"],
        "sentences_longer_than_context": stats["sentences_longer_than_context"],
    }
    return dataset


def _label_sentence(encoded: Any, sentence: UDSentence, offset: int, stats: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Token positions (last token of each labellable word) and the next word's class."""
    begins = np.asarray(sentence.begins, np.int64) + offset
    ends = np.asarray(sentence.ends, np.int64) + offset
    n = sentence.n_words
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    word, tok = word_tokens(encoded, begins, ends, "first")
    first[word] = tok
    word, tok = word_tokens(encoded, begins, ends, "last")
    last[word] = tok
    classes = next_word_classes(sentence)
    tokens, labels = [], []
    for i in range(n):
        if last[i] < 0:
            stats["uncovered"] += 1
            continue
        if i + 1 < n:
            if first[i + 1] < 0 or classes[i] is None:
                stats["unknown_next"] += 1
                continue
            if first[i + 1] <= last[i]:
                stats["shared_token"] += 1
                continue
        tokens.append(last[i])
        labels.append(classes[i])
    return np.asarray(tokens, np.int64), np.asarray(labels, dtype=object)


def _check_parameters(tokenizer: Any, context_length: Any, min_positives: Any, positive_ratio: Any) -> None:
    check_context_length(tokenizer, context_length)
    if not isinstance(min_positives, (int, np.integer)) or min_positives < 1:
        raise InputError(f"min_positives must be a positive integer; got {min_positives!r}")
    check_positive_ratio(positive_ratio)


def _check_classes(classes: Any) -> tuple[str, ...] | None:
    if classes is None:
        return None
    items = [classes] if isinstance(classes, str) else list(classes)
    if not items or not all(isinstance(c, str) and c for c in items):
        raise InputError(f"classes must be None or a non-empty list of UPOS tags and/or 'eos'; got {classes!r}")
    return tuple(dict.fromkeys(items))
