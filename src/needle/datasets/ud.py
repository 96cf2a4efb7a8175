"""Part-of-speech, dependency and morphology features from Universal Dependencies treebanks.

The paper's linguistic collections (Table A.3, Appendix A.2.2) label every
word of the English Web Treebank with its universal part of speech (UPOS),
its dependency relation (DEPREL) and its morphological features (FEATS), then
map the word labels onto the tokens of the model's tokenizer. This module

* reads CoNLL-U files with :func:`needle.datasets.readers.conllu.read_conllu`
  (each sentence's surface text rebuilt from its tokens, with the character
  span of every word; a malformed line reported with its file and line);
* packs the sentences of each document into sequences of at most
  ``context_length`` tokens, special tokens included
  (:func:`needle.datasets.packing.pack_texts`);
* labels the chosen piece(s) of each word and hands the candidate examples to
  :class:`~needle.datasets.assembler.DatasetAssembler`.

Feature names are ``pos:<UPOS>``, ``dep:<deprel>`` and ``morph:<Feat>=<Value>``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import PIECES
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import as_source_list, check_context_length, check_min_positives, unique_stems
from needle.datasets.format import ProbeDataset
from needle.datasets.packing import Pack, pack_documents, word_tokens
from needle.datasets.readers.conllu import UDDocument, UDSentence, is_feature_value, read_conllu
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

__all__ = [
    "COLLECTIONS",
    "PAPER_DEPRELS",
    "PAPER_MORPH_FEATURES",
    "build_ud",
]

#: The collections :func:`build_ud` can label.
COLLECTIONS = ("upos", "deprel", "morph")

#: The 29 dependency relations of the paper's Table A.3 (sorted).
PAPER_DEPRELS = (
    "acl", "acl:relcl", "advcl", "advmod", "amod", "appos", "aux", "aux:pass", "case", "cc",
    "ccomp", "compound", "conj", "cop", "det", "flat", "list", "mark", "nmod", "nmod:poss",
    "nsubj", "nsubj:pass", "nummod", "obj", "obl", "parataxis", "punct", "root", "xcomp",
)  # fmt: skip

#: The UD morphological features among the paper's 22 (Table A.3, ``Tense_Past`` → ``Tense=Past``).
#: Its ``eos_True`` and ``first_eos_True`` are sentence-boundary markers, not UD FEATS, and are left out.
PAPER_MORPH_FEATURES = (
    "Gender=Fem", "Gender=Masc", "Gender=Neut", "Mood=Imp", "NumType=Card", "Number=Plur",
    "Person=1", "Person=2", "Person=3", "PronType=Art", "PronType=Dem", "PronType=Int",
    "PronType=Prs", "PronType=Rel", "Tense=Past", "VerbForm=Fin", "VerbForm=Ger", "VerbForm=Inf",
    "VerbForm=Part", "Voice=Pass",
)  # fmt: skip

_UPOS_GLOSS = {
    "ADJ": "adjective", "ADP": "adposition", "ADV": "adverb", "AUX": "auxiliary",
    "CCONJ": "coordinating conjunction", "DET": "determiner", "INTJ": "interjection", "NOUN": "noun",
    "NUM": "numeral", "PART": "particle", "PRON": "pronoun", "PROPN": "proper noun",
    "PUNCT": "punctuation", "SCONJ": "subordinating conjunction", "SYM": "symbol", "VERB": "verb",
    "X": "other",
}  # fmt: skip


# --------------------------------------------------------------------------- builder


@dataclass
class _Words:
    """Annotations of every word read, indexed by a global word id."""

    upos: list[str | None] = field(default_factory=list)
    deprels: list[str | None] = field(default_factory=list)
    feats: list[tuple[str, ...]] = field(default_factory=list)

    def extend(self, sentence: UDSentence) -> int:
        offset = len(self.upos)
        self.upos.extend(sentence.upos)
        self.deprels.extend(sentence.deprels)
        self.feats.extend(sentence.feats)
        return offset


def build_ud(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any,
    *,
    collections: Sequence[str] = COLLECTIONS,
    context_length: int = 512,
    piece: str = "first",
    positive_ratio: float = 0.2,
    seed: int = 0,
    min_positives: int = 20,
    max_positives: int | None = None,
    deprels: Sequence[str] | str | None = None,
    morph_features: Sequence[str] | str | None = None,
) -> ProbeDataset:
    """Build part-of-speech, dependency and morphology features from CoNLL-U treebanks.

    Every syntactic word's chosen token(s) get the word's labels; each label
    value is a one-versus-all binary feature:

    * ``pos:<UPOS>`` (collection ``upos``): every UPOS tag in the data.
      Negatives: all other labelled word positions.
    * ``dep:<deprel>`` (collection ``deprel``): the paper's 29 relations by
      default. A word's relation counts as itself when it is a requested
      feature and as its universal base relation (before ``:``) otherwise, so
      ``obl:tmod`` is an ``obl`` while the paper's own subtypes
      (``nsubj:pass``, ``aux:pass``, ``acl:relcl``, ``nmod:poss``) are classes
      of their own — an ``nsubj:pass`` word is a *negative* of ``dep:nsubj``.
      Negatives: all other labelled word positions.
    * ``morph:<Feat>=<Value>`` (collection ``morph``): the paper's UD features
      by default. Negatives (Appendix A.2.2: "from the same token class") are
      the words without the value whose UPOS is one of the positives' UPOS
      tags (``Tense=Past`` → VERB and AUX words not in the past tense).

    A token position is never both a positive and a negative of one feature:
    when a token carries several words (``don't`` → one token for ``do`` and
    ``n't``) it is positive if any of them is. Features with fewer than
    ``min_positives`` positives (or negatives) are dropped and listed in
    ``dataset.extra["dropped_features"]``.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        CoNLL-U files, plain or gzipped.
    tokenizer : transformers fast tokenizer
        Its special tokens are added to every sequence.
    collections : sequence of {"upos", "deprel", "morph"}
    context_length : int, default 512
        Maximum tokens per sequence, special tokens included. Sentences of one
        document are packed greedily (joined by a space); a sentence longer
        than this on its own is dropped and counted in
        ``dataset.extra["dropped_sentences"]``, never truncated.
    piece : {"first", "last", "all"}, default "first"
        Which token(s) of a multi-token word carry its labels.
    positive_ratio : float or None, default 0.2
        Target share of positives per feature (negatives are subsampled);
        None keeps every negative.
    seed : int, default 0
        Seeds the negative subsampling.
    min_positives : int, default 20
    max_positives : int, optional
        Cap on positive examples per feature (a seeded sample; negatives then
        follow ``positive_ratio``). Bounds probing time on large sources.
    deprels : sequence of str or "all", optional
        Relations to probe; default :data:`PAPER_DEPRELS`; ``"all"`` takes
        every relation in the data, subtypes as written.
    morph_features : sequence of str or "all", optional
        ``"Feat=Value"`` strings; default :data:`PAPER_MORPH_FEATURES`;
        ``"all"`` takes every value in the data.

    Returns
    -------
    ProbeDataset
        One sequence per pack (group = ``<file stem>:<document id>``), token
        examples only; ``extra`` records dropped sentences, sentences whose
        rebuilt text differs from ``# text``, the morphology word classes and
        words that no token covers.

    Raises
    ------
    InputError
        Missing, empty or malformed file (with the line number); an unknown
        collection or piece; an explicitly requested relation or feature
        value absent from the data; no feature with enough examples.
    """
    sources = as_source_list(sources, empty="no sources given; pass one or more file paths.")
    paths = [Path(source) for source in sources]
    collections = _check_collections(collections)
    if piece not in PIECES:
        raise InputError(f"piece must be one of {PIECES}, not {piece!r}")
    check_context_length(tokenizer, context_length)
    check_min_positives(min_positives)
    dep_request = _request(deprels, PAPER_DEPRELS, "deprels", "a relation such as 'nsubj' or 'nsubj:pass'")
    morph_request = _request(morph_features, PAPER_MORPH_FEATURES, "morph_features", "a 'Feature=Value' string")
    if isinstance(morph_request, tuple):
        _check_morph_names(morph_request)
    files = [(prefix, read_conllu(path)) for prefix, path in zip(unique_stems(paths), paths)]

    params = {
        "sources": sources,
        "collections": list(collections),
        "context_length": context_length,
        "piece": piece,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
        "deprels": list(dep_request) if isinstance(dep_request, tuple) else dep_request,
        "morph_features": list(morph_request) if isinstance(morph_request, tuple) else morph_request,
    }
    assembler = DatasetAssembler("ud", params, tokenizer_info(tokenizer))
    labelling = _Labelling(assembler, tokenizer, context_length, piece)
    for prefix, documents in files:
        labelling.add_file(prefix, documents)
    pairs = labelling.pairs()
    words = labelling.words
    morph_classes: dict[str, list[str]] = {}
    if "upos" in collections:
        _add_upos(assembler, pairs, words)
    if "deprel" in collections:
        _add_deprels(assembler, pairs, words, dep_request, explicit=deprels is not None)
    if "morph" in collections:
        morph_classes = _add_morph(assembler, pairs, words, morph_request, explicit=morph_features is not None)

    dataset = assembler.build(
        positive_ratio=positive_ratio,
        seed=seed,
        min_positives=min_positives,
        min_negatives=min_positives,
        max_positives=max_positives,
    )
    dataset.extra.update(labelling.report())
    dataset.extra["morph_word_classes"] = {f"morph:{k}": v for k, v in morph_classes.items()}
    return dataset


class _Labelling:
    """Packs each document into sequences and records which words each token position carries."""

    def __init__(self, assembler: DatasetAssembler, tokenizer: Any, context_length: int, piece: str):
        self.assembler = assembler
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.piece = piece
        self.words = _Words()
        self._sequence: list[np.ndarray] = []
        self._token: list[np.ndarray] = []
        self._word: list[np.ndarray] = []
        self.stats: Counter = Counter()
        self.dropped_ids: list[str] = []
        self.mismatched_ids: list[str] = []

    def add_file(self, prefix: str, documents: list[UDDocument]) -> None:
        sentences = [s for doc in documents for s in doc.sentences]
        texts = [[s.text for s in doc.sentences] for doc in documents]
        for doc, (packs, dropped) in zip(documents, pack_documents(texts, self.tokenizer, self.context_length)):
            self._add_document(prefix, doc, packs, dropped)
        for sentence in sentences:
            if sentence.text_matches is False:
                self.mismatched_ids.append(sentence.sent_id or f"{prefix} line {sentence.line}")
        self.stats.update(documents=len(documents), sentences=len(sentences), words=sum(s.n_words for s in sentences))

    def _add_document(self, prefix: str, doc: UDDocument, packs: list[Pack], dropped: list[int]) -> None:
        first_word = [self.words.extend(s) for s in doc.sentences]
        for index in dropped:
            sentence = doc.sentences[index]
            self.stats.update(dropped_sentences=1, dropped_words=sentence.n_words)
            self.dropped_ids.append(sentence.sent_id or f"{prefix} line {sentence.line}")
        for pack in packs:
            seq = self.assembler.add_sequence(pack.encoded.ids, f"{prefix}:{doc.id}", pack.text)
            units = [doc.sentences[u] for u in pack.units]
            begins = np.concatenate([np.asarray(u.begins, np.int64) + start for u, start in zip(units, pack.starts)])
            ends = np.concatenate([np.asarray(u.ends, np.int64) + start for u, start in zip(units, pack.starts)])
            ids = np.concatenate([np.arange(doc.sentences[u].n_words) + first_word[u] for u in pack.units])
            word, token = word_tokens(pack.encoded, begins, ends, self.piece)
            self.stats["uncovered_words"] += len(ids) - len(np.unique(word))
            self._sequence.append(np.full(len(word), seq, np.int64))
            self._token.append(token)
            self._word.append(ids[word])

    def pairs(self) -> _Pairs:
        empty = [np.zeros(0, np.int64)]
        return _Pairs(*(np.concatenate(parts + empty) for parts in (self._sequence, self._token, self._word)))

    def report(self) -> dict[str, Any]:
        """What ``dataset.extra`` records about the reading and packing."""
        return {
            "documents": self.stats["documents"],
            "sentences": self.stats["sentences"],
            "words": self.stats["words"],
            "dropped_sentences": {
                "count": self.stats["dropped_sentences"],
                "words": self.stats["dropped_words"],
                "reason": f"longer than context_length={self.context_length} tokens on their own",
                "sent_ids": self.dropped_ids[:20],
            },
            "text_mismatches": {
                "count": len(self.mismatched_ids),
                "sent_ids": self.mismatched_ids[:20],
                "note": "the rebuilt text (from forms and SpaceAfter) is used where it differs from # text",
            },
            "uncovered_words": self.stats["uncovered_words"],
        }


class _Pairs:
    """Every (token position, word) pair, with the distinct positions they fall on.

    Parameters
    ----------
    sequence, token, word : ndarray of int64, shape (n_pairs,)
    """

    def __init__(self, sequence: np.ndarray, token: np.ndarray, word: np.ndarray):
        self.word = word
        keys = np.stack([sequence, token], axis=1)
        # One sort for all features; per feature only boolean masks over positions.
        positions, self._position = np.unique(keys, axis=0, return_inverse=True)
        self._position = self._position.reshape(-1)
        self._sequence, self._token = positions[:, 0], positions[:, 1]

    def add(self, assembler: DatasetAssembler, feature: str, positive: np.ndarray, candidate: np.ndarray) -> None:
        """Positions of positive pairs are positives; other candidate positions negatives."""
        is_pos = np.zeros(len(self._sequence), bool)
        is_pos[self._position[positive]] = True
        is_neg = np.zeros(len(self._sequence), bool)
        is_neg[self._position[candidate]] = True
        is_neg &= ~is_pos
        for mask, label in ((is_pos, 1), (is_neg, 0)):
            assembler.add_examples(feature, self._sequence[mask], self._token[mask], label)


def _codes(values: list[str | None], word: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer code of each pair's value (-1 for None) and the sorted distinct values."""
    vocabulary = sorted({v for v in values if v is not None})
    lookup = {v: i for i, v in enumerate(vocabulary)}
    per_word = np.array([lookup.get(v, -1) if v is not None else -1 for v in values], np.int64)
    return (per_word[word] if len(per_word) else np.zeros(len(word), np.int64)), vocabulary


def _add_upos(assembler: DatasetAssembler, pairs: _Pairs, words: _Words) -> None:
    codes, tags = _codes(words.upos, pairs.word)
    candidate = codes >= 0
    for code, tag in enumerate(tags):
        name = f"pos:{tag}"
        gloss = _UPOS_GLOSS.get(tag, tag)
        assembler.add_feature(name, description=f"the word's UPOS is {tag} ({gloss})", collection="upos")
        pairs.add(assembler, name, codes == code, candidate)


def _add_deprels(
    assembler: DatasetAssembler, pairs: _Pairs, words: _Words, request: tuple[str, ...] | str, *, explicit: bool
) -> None:
    present = {d for d in words.deprels if d is not None}
    if request == "all":
        request = tuple(sorted(present))
    else:
        folded = {d if d in request else d.split(":")[0] for d in present}
        if explicit:
            _require_present(request, folded, "dependency relation", "deprels")
    wanted = set(request)
    labels = [None if d is None else d if d in wanted else d.split(":")[0] for d in words.deprels]
    codes, vocabulary = _codes(labels, pairs.word)
    lookup = {v: i for i, v in enumerate(vocabulary)}
    candidate = codes >= 0
    for relation in request:
        name = f"dep:{relation}"
        assembler.add_feature(name, description=f"the word's dependency relation is {relation}", collection="deprel")
        pairs.add(assembler, name, codes == lookup.get(relation, -2), candidate)


def _add_morph(
    assembler: DatasetAssembler, pairs: _Pairs, words: _Words, request: tuple[str, ...] | str, *, explicit: bool
) -> dict[str, list[str]]:
    index: dict[str, list[int]] = {}
    for w, feats in enumerate(words.feats):
        for feat in feats:
            index.setdefault(feat, []).append(w)
    if request == "all":
        request = tuple(sorted(index))
    elif explicit:
        _require_present(request, set(index), "morphological feature value", "morph_features")
    upos_codes, tags = _codes(words.upos, pairs.word)
    classes = {}
    for feat in request:
        has = np.zeros(len(words.feats), bool)
        has[index.get(feat, [])] = True
        positive = has[pairs.word] if len(has) else np.zeros(len(pairs.word), bool)
        in_class = np.unique(upos_codes[positive & (upos_codes >= 0)])
        classes[feat] = [tags[c] for c in in_class]
        name = f"morph:{feat}"
        assembler.add_feature(
            name,
            description=f"the word has {feat}; negatives are {'/'.join(classes[feat]) or 'no'} words without it",
            collection="morph",
        )
        pairs.add(assembler, name, positive, np.isin(upos_codes, in_class) & (upos_codes >= 0))
    return classes


# --------------------------------------------------------------------------- argument checks


def _check_collections(collections: Any) -> tuple[str, ...]:
    collections = (collections,) if isinstance(collections, str) else tuple(collections)
    unknown = [c for c in collections if c not in COLLECTIONS]
    if unknown or not collections:
        raise InputError(f"collections must be a non-empty subset of {COLLECTIONS}; got {collections!r}")
    return tuple(dict.fromkeys(collections))


def _request(value: Any, default: tuple[str, ...], name: str, example: str) -> tuple[str, ...] | str:
    if value is None:
        return default
    if isinstance(value, str):
        if value == "all":
            return "all"
        raise InputError(f"{name} must be None, 'all' or a list of names (each {example}); got {value!r}")
    items = tuple(dict.fromkeys(value))
    if not items or not all(isinstance(item, str) and item for item in items):
        raise InputError(f"{name} must be a non-empty list of names (each {example}); got {value!r}")
    return items


def _check_morph_names(names: tuple[str, ...]) -> None:
    bad = [n for n in names if not is_feature_value(n)]
    if bad:
        raise InputError(
            f"morph_features must be 'Feature=Value' strings as in CoNLL-U FEATS (e.g. 'Tense=Past'); got {bad}"
        )


def _require_present(requested: tuple[str, ...], present: set[str], what: str, argument: str) -> None:
    """An explicitly requested value that never occurs is almost surely a typo: refuse it."""
    missing = [r for r in requested if r not in present]
    if missing:
        raise InputError(
            f"{argument}: no word in the sources has the {what} {', '.join(map(repr, missing))}, so the feature "
            f"would have no positives; choose from: {', '.join(sorted(present)) or '(none)'}"
        )
