"""The corpus the neuron analyses stream over: token-id sequences with a group and an optional label.

A :class:`Corpus` is deliberately simpler than a
:class:`~needle.datasets.format.ProbeDataset`: it has no labelled examples,
only sequences, each with the document it came from (``group``) and, when
known, a sequence label (a language, a genre, a file type) that analyses can
break their results down by.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["Corpus", "Batch", "TokenNames", "special_affixes"]


@dataclass(frozen=True)
class Batch:
    """A right-padded batch of corpus sequences.

    Attributes
    ----------
    sequences : ndarray of int64, shape (batch,)
        Corpus indices of the rows.
    input_ids, attention_mask : Tensor of int64, shape (batch, pos)
    """

    sequences: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """Bool tensor of shape (batch, pos): True at real (non-padding) tokens."""
        return self.attention_mask.bool()


@dataclass
class Corpus:
    """Token-id sequences, each with a group and an optional label.

    Attributes
    ----------
    tokens : list of ndarray of int64
        Token ids of each sequence, special tokens included, unpadded.
    groups : ndarray of str, shape (n_sequences,)
        Source document of each sequence.
    labels : ndarray of str, shape (n_sequences,), or None
        Sequence label (e.g. the language) used by ``by_label`` breakdowns.
    tokenizer : tokenizer, optional
        Used to show tokens as text and to know the special and padding ids.
    texts : list of str, optional
        Source text of each sequence, when known.
    """

    tokens: list[np.ndarray]
    groups: np.ndarray
    labels: np.ndarray | None = None
    tokenizer: Any = None
    texts: list[str] | None = None
    _names: TokenNames | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tokens = [np.asarray(t, dtype=np.int64).ravel() for t in self.tokens]
        self.groups = np.asarray([str(g) for g in self.groups], dtype=object)
        if len(self.groups) != len(self.tokens):
            raise InputError(f"the corpus has {len(self.tokens)} sequences but {len(self.groups)} groups.")
        if self.labels is not None:
            self.labels = np.asarray([None if v is None else str(v) for v in self.labels], dtype=object)
            if len(self.labels) != len(self.tokens):
                raise InputError(f"the corpus has {len(self.tokens)} sequences but {len(self.labels)} labels.")
        empty = [i for i, t in enumerate(self.tokens) if len(t) == 0]
        if empty:
            raise InputError(f"corpus sequences {empty[:5]} are empty; drop them before building the corpus.")

    # ------------------------------------------------------------ builders
    @classmethod
    def from_dataset(cls, dataset: Any, label: str | Sequence[str] | Callable[[str], str] | None = None,
                     *, tokenizer: Any = None) -> Corpus:
        """The sequences of a ProbeDataset (its labelled examples are ignored).

        Parameters
        ----------
        dataset : ProbeDataset or path-like
        label : None, "group", "features", sequence of str, or callable
            ``None``: no labels. ``"group"``: the group is the label.
            ``"features"``: each sequence is labelled with the name of the
            sequence-level feature that has a positive example spanning it
            (e.g. the language of a natural-language dataset); sequences with
            none get ``None``. A sequence gives one label per sequence; a
            callable maps a group to its label.
        tokenizer : tokenizer, optional
            For showing tokens; default: loaded from the dataset's recorded
            tokenizer name when that works offline.
        """
        from needle.datasets.format import ProbeDataset, load_dataset

        if not isinstance(dataset, ProbeDataset):
            dataset = load_dataset(dataset)
        groups = np.asarray([str(g) for g in dataset.groups], dtype=object)
        if label is None:
            labels = None
        elif isinstance(label, str) and label == "group":
            labels = groups.copy()
        elif isinstance(label, str) and label == "features":
            labels = _labels_from_sequence_features(dataset)
        elif isinstance(label, str):
            raise InputError(f"label={label!r}: use None, 'group', 'features', a list of labels or a function.")
        elif callable(label):
            labels = np.asarray([label(g) for g in groups], dtype=object)
        else:
            labels = np.asarray(list(label), dtype=object)
        if tokenizer is None:
            tokenizer = _try_load_tokenizer(dataset.tokenizer.get("name_or_path"))
        tokens = [np.asarray(t, np.int64)[np.asarray(m, bool)] for t, m in zip(dataset.tokens, dataset.attention_mask)]
        return cls(tokens, groups, labels, tokenizer, dataset.texts)

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer: Any, context_length: int, *,
                   labels: Sequence[str] | None = None, groups: Sequence[str] | None = None,
                   max_sequences: int | None = None) -> Corpus:
        """Tokenize texts and cut each into sequences of at most ``context_length`` tokens.

        Each chunk gets the tokenizer's special tokens (``[CLS] … [SEP]`` for
        BERT, nothing for GPT-NeoX) and inherits its text's label and group.

        Parameters
        ----------
        texts : sequence of str
        tokenizer : a fast Hugging Face tokenizer
        context_length : int
            Tokens per sequence, special tokens included.
        labels, groups : sequence of str, optional
            One per text; groups default to the text's index.
        max_sequences : int, optional
            Stop after this many sequences.
        """
        if context_length < 2:
            raise InputError(f"context_length must be at least 2, got {context_length}.")
        prefix, suffix = special_affixes(tokenizer)
        n_special = len(prefix) + len(suffix)
        body = context_length - n_special
        if body < 1:
            raise InputError(f"context_length {context_length} leaves no room beside {n_special} special tokens.")
        if labels is not None and len(labels) != len(texts):
            raise InputError(f"{len(labels)} labels for {len(texts)} texts.")
        if groups is not None and len(groups) != len(texts):
            raise InputError(f"{len(groups)} groups for {len(texts)} texts.")
        tokens, out_groups, out_labels, chunks = [], [], [], []
        for i, text in enumerate(texts):
            ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            for start in range(0, len(ids), body):
                piece = ids[start : start + body]
                tokens.append(np.asarray(prefix + list(piece) + suffix, np.int64))
                out_groups.append(str(i) if groups is None else str(groups[i]))
                out_labels.append(None if labels is None else labels[i])
                chunks.append(tokenizer.decode(piece))
                if max_sequences is not None and len(tokens) >= max_sequences:
                    break
            if max_sequences is not None and len(tokens) >= max_sequences:
                break
        if not tokens:
            raise InputError("the texts produced no tokens; the corpus would be empty.")
        return cls(tokens, np.asarray(out_groups, dtype=object),
                   None if labels is None else np.asarray(out_labels, dtype=object), tokenizer, chunks)

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], tokenizer: Any, context_length: int, *,
                   labels: Sequence[str] | Callable[[Path], str] | None = None,
                   max_sequences: int | None = None) -> Corpus:
        """Read UTF-8 text files; each file is one group, cut into sequences as in :meth:`from_texts`.

        Parameters
        ----------
        paths : sequence of path-like
        labels : sequence of str (one per file), or callable ``path -> label``, optional
            e.g. ``lambda p: p.suffix`` to label by file type.
        """
        paths = [Path(p) for p in paths]
        texts = []
        for path in paths:
            if not path.is_file():
                raise InputError(f"{path} does not exist or is not a file.")
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
        if callable(labels):
            labels = [labels(p) for p in paths]
        return cls.from_texts(texts, tokenizer, context_length, labels=labels, groups=[str(p) for p in paths],
                              max_sequences=max_sequences)

    # ------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence, shape (n_sequences,)."""
        return np.array([len(t) for t in self.tokens], np.int64)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def label_names(self) -> list[str]:
        """Distinct labels, sorted (empty without labels)."""
        if self.labels is None:
            return []
        return sorted({str(v) for v in self.labels if v is not None})

    def subset(self, index: Sequence[int] | np.ndarray) -> Corpus:
        """The corpus restricted to some sequences (in the given order)."""
        index = np.asarray(index, np.int64)
        return Corpus([self.tokens[i] for i in index], self.groups[index],
                      None if self.labels is None else self.labels[index], self.tokenizer,
                      None if self.texts is None else [self.texts[i] for i in index])

    @property
    def names(self) -> TokenNames:
        """Token ids to readable strings (cached)."""
        if self._names is None:
            self._names = TokenNames(self.tokenizer)
        return self._names

    def special_ids(self) -> np.ndarray:
        """Ids of the tokenizer's special tokens (BOS, CLS, SEP, padding…), sorted."""
        ids = getattr(self.tokenizer, "all_special_ids", None) or []
        return np.asarray(sorted(set(int(i) for i in ids)), np.int64)

    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def batches(self, batch_tokens: int = 8192, max_batch_size: int = 64,
                sequences: Sequence[int] | None = None) -> Iterator[Batch]:
        """Right-padded batches of at most ``batch_tokens`` padded tokens, longest sequences first.

        Parameters
        ----------
        batch_tokens : int, default 8192
        max_batch_size : int, default 64
        sequences : sequence of int, optional
            Only these sequences (default all).
        """
        from needle.activations.stream import plan_batches, stream_batches

        lengths = self.lengths
        wanted = np.arange(len(self)) if sequences is None else np.unique(np.asarray(sequences, np.int64))
        plan = plan_batches(lengths, wanted, batch_tokens, max_batch_size)
        for padded in stream_batches(self.tokens, None, plan, pad_id=self.pad_id()):
            yield Batch(padded.sequences, padded.input_ids, padded.attention_mask)

    def check_model(self, model: Any) -> None:
        """Refuse token ids the model cannot embed and sequences longer than its positions."""
        from needle.activations.stream import check_model_inputs

        check_model_inputs(model, self.tokens, what="corpus", shorten="use a smaller context_length",
                           vocab_error=InputError)

    def __repr__(self) -> str:
        labels = f", labels={self.label_names[:6]}" if self.labels is not None else ""
        return f"Corpus(sequences={len(self)}, tokens={self.n_tokens}{labels})"


class TokenNames:
    """Readable strings of token ids, cached, written so that joining them gives the text back.

    Byte-level BPE pieces decode with their own leading space (``" word"``);
    WordPiece word starts get a leading space and continuations lose their
    ``##`` (``" play"``, ``"ing"``); SentencePiece's ``▁`` becomes a space.
    Special tokens read as themselves (``" [CLS]"`` for WordPiece).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
        self._wordpiece = type(model).__name__ == "WordPiece"

    def __call__(self, token_id: int) -> str:
        token_id = int(token_id)
        name = self._cache.get(token_id)
        if name is None:
            name = self._name(token_id)
            self._cache[token_id] = name
        return name

    def _name(self, token_id: int) -> str:
        if self.tokenizer is None:
            return f"<{token_id}>"
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return f"<{token_id}>"
        if self._wordpiece:
            return piece[2:] if piece.startswith("##") else " " + piece
        if piece.startswith("▁"):
            return " " + piece[1:]
        return self.tokenizer.decode([token_id], clean_up_tokenization_spaces=False)

    def many(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self(i) for i in ids]

    def entry(self, token_id: int) -> str:
        """The token as a table lists it, one distinct string per id where the vocabulary allows.

        A readable name drops what tells a word start from a continuation
        (WordPiece's ``"5"`` and ``"##5"`` read ``" 5"`` and ``"5"``, alike once
        a table trims spaces), so a table shows WordPiece's own piece, ``##``
        kept, and any other tokenizer's name with a leading space drawn as
        ``␣``.
        """
        if self._wordpiece and self.tokenizer is not None:
            piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
            if piece is not None:
                return piece
        name = self(token_id)
        return "␣" + name[1:] if name.startswith(" ") and name.strip() else name


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence (``[CLS]``, ``[SEP]``; none for GPT-NeoX)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain) :])
    raise InputError("cannot tell where the tokenizer puts its special tokens; build the Corpus from token ids.")


def _labels_from_sequence_features(dataset: Any) -> np.ndarray:
    labels = np.full(dataset.n_sequences, None, dtype=object)
    ex = dataset.examples
    levels = {i: f.get("level") for i, f in enumerate(dataset.features)}
    found = False
    for i in np.flatnonzero(ex.label == 1):
        feature = int(ex.feature[i])
        if levels.get(feature) != "sequence":
            continue
        found = True
        seq = int(ex.sequence[i])
        name = dataset.features[feature]["name"]
        if labels[seq] is not None and labels[seq] != name:
            raise InputError(f"sequence {seq} is a positive example of both {labels[seq]!r} and {name!r}; "
                             "label='features' needs one sequence-level feature per sequence.")
        labels[seq] = name
    if not found:
        raise InputError("label='features': the dataset has no positive sequence-level examples; "
                         "pass labels yourself.")
    return labels


def _try_load_tokenizer(name: str | None) -> Any:
    if not name:
        return None
    try:
        from needle.models.loading import load_tokenizer

        return load_tokenizer(name)
    except Exception:  # no tokenizer offline: tokens are shown by id
        return None
