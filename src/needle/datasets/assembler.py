"""Shared assembly of a ProbeDataset from a builder's sequences and candidate examples.

A builder only says *what* is labelled: it adds tokenized sequences and, per
feature, every candidate positive and negative example it finds. The assembler
does what every collection shares: subsampling negatives to a target positive
ratio (Table A.2 of the paper), dropping features with too few examples (and
recording them), and producing a validated :class:`ProbeDataset`.

Features are binary by default; multiclass and regression features are never
negative-subsampled. Whatever subsampling removes is recorded in
``dataset.extra["subsampled"]`` so that nobody mistakes a sample for the source.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from needle.datasets.format import AGGREGATIONS, SPLIT_NONE, SPLIT_TEST, SPLIT_TRAIN, TASKS, Examples, ProbeDataset
from needle.errors import InputError

__all__ = ["DatasetAssembler", "subsample_negatives"]


class DatasetAssembler:
    """Collects sequences and labelled examples, then builds a ProbeDataset.

    Parameters
    ----------
    builder : str
        Name of the builder (recorded in the dataset).
    params : dict
        The builder's parameters (recorded; must be JSON-serialisable).
    tokenizer : dict
        :func:`needle.datasets.tokenizer_info.tokenizer_info` of the tokenizer used.
    """

    def __init__(self, builder: str, params: dict[str, Any], tokenizer: dict[str, Any]):
        self.builder = builder
        self.params = params
        self.tokenizer = tokenizer
        self._tokens: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._groups: list[str] = []
        self._texts: list[str | None] = []
        self._features: dict[str, dict[str, Any]] = {}
        self._chunks: dict[str, list[tuple[np.ndarray, ...]]] = {}

    @property
    def n_sequences(self) -> int:
        return len(self._tokens)

    def add_sequence(self, tokens: Any, group: str, text: str | None = None, attention_mask: Any = None) -> int:
        """Add one tokenized sequence; return its index."""
        tokens = np.asarray(tokens, dtype=np.int32)
        mask = np.ones(len(tokens), np.int8) if attention_mask is None else np.asarray(attention_mask, np.int8)
        self._tokens.append(tokens)
        self._masks.append(mask)
        self._groups.append(str(group))
        self._texts.append(text)
        return len(self._tokens) - 1

    def add_feature(
        self,
        name: str,
        *,
        description: str = "",
        collection: str = "",
        level: str = "token",
        task: str = "binary",
        classes: Any = None,
    ) -> None:
        """Declare a feature (idempotent).

        Parameters
        ----------
        name : str
        description, collection : str
        level : {"token", "sequence"}
        task : {"binary", "multiclass", "regression"}, default "binary"
            What the labels of :meth:`add_examples` mean.
        classes : sequence of str, optional
            Multiclass only (and required there): label ``i`` means ``classes[i]``.
        """
        if level not in ("token", "sequence"):
            raise ValueError(f"level must be 'token' or 'sequence', not {level!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        if (task == "multiclass") != (classes is not None):
            raise ValueError("classes must be given for a multiclass feature, and only for one")
        info: dict[str, Any] = {"name": name, "description": description, "collection": collection, "level": level}
        if task != "binary":  # binary features stay as version 1 wrote them, so their hashes do not change
            info["task"] = task
        if classes is not None:
            info["classes"] = [str(c) for c in classes]
        self._features.setdefault(name, info)
        self._chunks.setdefault(name, [])

    def add_examples(
        self,
        feature: str,
        sequence: Any,
        start: Any,
        label: Any,
        *,
        end: Any = None,
        aggregation: str = "token",
        skip: Any = 0,
        split: Any = None,
    ) -> None:
        """Add candidate examples of ``feature`` (arrays broadcast against ``start``).

        Parameters
        ----------
        feature : str
            A feature declared with :meth:`add_feature`.
        sequence, start : array-like of int
            Sequence index and first token of each example.
        label : array-like of float
            Binary: {0, 1} or bool; multiclass: class index; regression: value.
        end : array-like of int, optional
            Exclusive span end; defaults to ``start + 1`` (token examples).
        aggregation : {"token", "mean", "max"}
        skip : int or array-like of int
            Leading tokens of the span left out of the aggregate.
        split : str, int, bool or array-like of these, optional
            The user's train/test split: ``"train"``/``"test"``, 0/1, or a
            bool that is True for test examples. ``None`` (default): no split.
        """
        if feature not in self._features:
            raise KeyError(f"feature {feature!r} was not declared with add_feature")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        start = np.atleast_1d(np.asarray(start, np.int32))
        n = len(start)
        sequence = np.broadcast_to(np.asarray(sequence, np.int32), (n,))
        end = start + 1 if end is None else np.broadcast_to(np.asarray(end, np.int32), (n,))
        label = np.broadcast_to(np.asarray(label).astype(np.float64), (n,))
        skip = np.broadcast_to(np.asarray(skip, np.int32), (n,))
        agg = np.full(n, AGGREGATIONS.index(aggregation), np.int8)
        split = np.broadcast_to(_split_codes(split, feature), (n,))
        self._chunks[feature].append(
            (sequence.copy(), start, np.asarray(end, np.int32).copy(), agg, skip.copy(), label.copy(), split.copy())
        )

    def build(
        self,
        *,
        positive_ratio: float | None = 0.2,
        seed: int = 0,
        min_positives: int = 1,
        min_negatives: int = 1,
        max_positives: int | None = None,
    ) -> ProbeDataset:
        """Subsample, drop small features and return a validated :class:`ProbeDataset`.

        Parameters
        ----------
        positive_ratio : float or None, default 0.2
            Target fraction of positives per binary feature: negatives are
            subsampled to ``n_pos * (1 - r) / r`` when more are available.
            ``None`` (or 0) keeps every example. Multiclass and regression
            features are never negative-subsampled.
        seed : int
            Seeds the subsampling; each feature's draw depends only on the seed
            and the feature's name, not on the order features were added.
        min_positives, min_negatives : int
            Binary features with fewer examples of a class are dropped and
            listed in ``dataset.extra["dropped_features"]`` with their counts;
            a multiclass feature is dropped when fewer than two classes have
            ``min_positives`` examples, a regression feature when it has fewer
            than ``min_positives`` examples or a constant label.
        max_positives : int, optional
            Cap on positives per binary feature, on examples per class of a
            multiclass feature and on examples of a regression feature (seeded
            samples).

        Notes
        -----
        Each feature whose examples were subsampled has an entry
        ``dataset.extra["subsampled"][name] = {"before": counts, "after": counts}``.
        """
        if self.n_sequences == 0:
            raise InputError(f"{self.builder}: no sequences were produced; the source is empty.")
        if positive_ratio == 0:
            positive_ratio = None
        if positive_ratio is not None and not 0 < positive_ratio < 1:
            raise InputError(f"positive_ratio must be in (0, 1), not {positive_ratio}")
        kept: list[dict[str, Any]] = []
        dropped: dict[str, dict[str, Any]] = {}
        subsampled: dict[str, dict[str, dict[str, int]]] = {}
        columns: list[list[np.ndarray]] = [[] for _ in range(8)]
        for name, info in self._features.items():
            chunks = self._chunks[name]
            if chunks:
                seq, start, end, agg, skip, label, split = (np.concatenate(c) for c in zip(*chunks))
            else:
                seq = start = end = skip = np.zeros(0, np.int32)
                agg = split = np.zeros(0, np.int8)
                label = np.zeros(0, np.float64)
            task = info.get("task", "binary")
            # Counts before subsampling decide (and are recorded): they say what the source had.
            before = _label_counts(info, label)
            if _too_small(task, label, before, min_positives, min_negatives):
                dropped[name] = before
                continue
            rng = np.random.default_rng([seed, _stable_int(name)])
            if task == "binary":
                keep = subsample_negatives(label, positive_ratio, rng, max_positives=max_positives)
            else:
                keep = _cap_examples(label if task == "multiclass" else np.zeros(len(label)), max_positives, rng)
            if len(keep) < len(label):
                subsampled[name] = {"before": before, "after": _label_counts(info, label[keep])}
            index = len(kept)
            kept.append(info)
            keep = np.sort(keep)
            values = (np.full(len(keep), index, np.int32), seq[keep], start[keep], end[keep], agg[keep], skip[keep],
                      label[keep], split[keep])  # fmt: skip
            for column, value in zip(columns, values):
                column.append(value)
        if not kept:
            raise InputError(
                f"{self.builder}: no feature has at least {min_positives} positive and {min_negatives} negative "
                f"examples (an empty collection); use more data or lower min_positives. Counts: {dropped}"
            )
        examples = Examples(*(np.concatenate(c) for c in columns))
        texts = None if all(t is None for t in self._texts) else [t or "" for t in self._texts]
        dataset = ProbeDataset(
            tokens=self._tokens,
            attention_mask=self._masks,
            groups=np.array(self._groups, dtype=object),
            features=kept,
            examples=examples,
            tokenizer=self.tokenizer,
            builder={"name": self.builder, "params": self.params, "seed": seed, "positive_ratio": positive_ratio},
            texts=texts,
            extra={**({"dropped_features": dropped} if dropped else {}), **({"subsampled": subsampled} if subsampled else {})},
        )
        dataset.validate(source=self.builder)
        return dataset


def subsample_negatives(
    label: np.ndarray,
    positive_ratio: float | None,
    rng: np.random.Generator,
    *,
    max_positives: int | None = None,
) -> np.ndarray:
    """Indices to keep so that positives make up about ``positive_ratio`` of the examples.

    All positives are kept (up to ``max_positives``); negatives are drawn
    without replacement. Returns indices in increasing order.
    """
    label = np.asarray(label)
    pos = np.flatnonzero(label == 1)
    neg = np.flatnonzero(label == 0)
    if max_positives is not None and len(pos) > max_positives:
        pos = np.sort(rng.choice(pos, max_positives, replace=False))
    if positive_ratio is not None:
        n_neg = int(round(len(pos) * (1 - positive_ratio) / positive_ratio))
        if len(neg) > n_neg:
            neg = np.sort(rng.choice(neg, n_neg, replace=False))
    return np.sort(np.concatenate([pos, neg]))


def _split_codes(split: Any, feature: str) -> np.ndarray:
    """``add_examples``' split argument as int8 codes (-1 none, 0 train, 1 test)."""
    if split is None:
        return np.array(SPLIT_NONE, np.int8)
    values = np.asarray(split)
    if values.dtype == bool:
        return values.astype(np.int8)
    if values.dtype.kind in "US" or values.dtype == object:
        words = np.char.lower(np.char.strip(values.astype(str)))
        bad = ~np.isin(words, ["train", "test"])
        if bad.any():
            raise InputError(
                f"feature {feature!r}: split value {str(values[bad].ravel()[0])!r} is neither 'train' nor 'test'."
            )
        return np.where(words == "test", SPLIT_TEST, SPLIT_TRAIN).astype(np.int8)
    if not np.isin(values, [SPLIT_TRAIN, SPLIT_TEST]).all():
        raise InputError(f"feature {feature!r}: split codes must be 0 (train) or 1 (test).")
    return values.astype(np.int8)


def _label_counts(info: dict[str, Any], label: np.ndarray) -> dict[str, int]:
    """Per-class counts (binary: positive/negative; multiclass: class names) or the example count."""
    task = info.get("task", "binary")
    if task == "binary":
        return {"positive": int((label == 1).sum()), "negative": int((label == 0).sum())}
    if task == "multiclass":
        return {c: int((label == i).sum()) for i, c in enumerate(info["classes"])}
    return {"examples": len(label)}


def _too_small(task: str, label: np.ndarray, counts: dict[str, int], min_positives: int, min_negatives: int) -> bool:
    if task == "binary":
        return counts["positive"] < min_positives or counts["negative"] < min_negatives
    if task == "multiclass":
        return sum(count >= max(min_positives, 1) for count in counts.values()) < 2
    return len(label) < max(min_positives, 2) or np.ptp(label) == 0


def _cap_examples(strata: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``cap`` examples of each value of ``strata`` (all of them when ``cap`` is None)."""
    if cap is None:
        return np.arange(len(strata))
    keep = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        keep.append(members if len(members) <= cap else rng.choice(members, cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
