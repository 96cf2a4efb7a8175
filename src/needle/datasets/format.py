"""The ProbeDataset: tokenized sequences plus labelled examples of features.

On disk a ProbeDataset is a directory (format documented in ``docs/formats.md``)::

    manifest.json       format name and version, builder, tokenizer identity,
                        feature list, counts, content hash
    sequences.parquet   one row per sequence: tokens, attention mask, group, text
    examples.parquet    one row per (feature, example): sequence, span, aggregation,
                        skip, label, split

An *example* is either one token position (``aggregation="token"``, the span
``[start, start + 1)``) or a span ``[start, end)`` reduced by ``mean`` or
``max`` after skipping its first ``skip`` tokens. Several features may label
the same position; :meth:`ProbeDataset.units` deduplicates them so that each
activation is extracted once.

A feature is ``binary`` (labels 0/1; the default, stored without a ``task``
key), ``multiclass`` (label ``i`` means ``feature["classes"][i]``) or
``regression`` (a real-valued label). Examples may carry a user's train/test
split (``split``: -1 not given, 0 train, 1 test), all of a feature's or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from needle._io import atomic_directory, read_json, read_manifest, write_json_atomic
from needle._version import __version__
from needle.errors import FormatError, InputError

__all__ = [
    "AGGREGATIONS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SPLIT_NONE",
    "SPLIT_TEST",
    "SPLIT_TRAIN",
    "TASKS",
    "Examples",
    "feature_task",
    "ProbeDataset",
    "Units",
    "load_dataset",
]

FORMAT_NAME = "needle.ProbeDataset"
FORMAT_VERSION = 2
#: Versions :func:`load_dataset` reads (version 1: int8 labels, no split column).
READABLE_VERSIONS = (1, 2)
#: Aggregation codes as stored on disk: index in this tuple.
AGGREGATIONS = ("token", "mean", "max")
#: What a feature's label means; a feature dict without ``task`` is ``binary``.
TASKS = ("binary", "multiclass", "regression")
#: Codes of :attr:`Examples.split`.
SPLIT_NONE, SPLIT_TRAIN, SPLIT_TEST = -1, 0, 1


def feature_task(feature: dict[str, Any]) -> str:
    """The task of a feature dict: its ``task`` entry, ``"binary"`` when absent."""
    return feature.get("task", "binary")


@dataclass(frozen=True)
class Examples:
    """Labelled examples as parallel arrays (one entry per example).

    Attributes
    ----------
    feature : ndarray of shape (n_examples,), int32
        Index into :attr:`ProbeDataset.features`.
    sequence : ndarray of shape (n_examples,), int32
    start, end : ndarray of shape (n_examples,), int32
        Token span ``[start, end)``; ``end == start + 1`` for token examples.
    aggregation : ndarray of shape (n_examples,), int8
        Index into :data:`AGGREGATIONS`.
    skip : ndarray of shape (n_examples,), int32
        Leading tokens of the span left out of the aggregate.
    label : ndarray of shape (n_examples,), float64
        Binary features: 1 for a positive example, 0 for a negative one;
        multiclass: the class index ``0 … C-1``; regression: the value.
    split : ndarray of shape (n_examples,), int8
        The user's split: -1 not given, 0 train, 1 test. Defaults to all -1.
    """

    feature: np.ndarray
    sequence: np.ndarray
    start: np.ndarray
    end: np.ndarray
    aggregation: np.ndarray
    skip: np.ndarray
    label: np.ndarray
    split: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", np.asarray(self.label, np.float64))
        split = np.full(len(self.label), SPLIT_NONE, np.int8) if self.split is None else np.asarray(self.split, np.int8)
        object.__setattr__(self, "split", split)

    def __len__(self) -> int:
        return len(self.feature)

    @classmethod
    def empty(cls) -> Examples:
        return cls(*(np.zeros(0, dtype) for dtype in _EXAMPLE_DTYPES.values()))

    def take(self, index: np.ndarray) -> Examples:
        return Examples(**{name: getattr(self, name)[index] for name in _EXAMPLE_DTYPES})


_EXAMPLE_DTYPES = {
    "feature": np.int32,
    "sequence": np.int32,
    "start": np.int32,
    "end": np.int32,
    "aggregation": np.int8,
    "skip": np.int32,
    "label": np.float64,
    "split": np.int8,
}
#: The columns and dtypes that version 1 hashed, kept so binary datasets without splits keep their hash.
_V1_HASH_DTYPES = {**{k: v for k, v in _EXAMPLE_DTYPES.items() if k != "split"}, "label": np.int8}


@dataclass(frozen=True)
class Units:
    """The distinct activation rows a dataset needs, one per (sequence, span, aggregation, skip).

    Sorted by sequence, then start, end, aggregation, skip. ``example_unit[i]``
    is the unit of example ``i``.
    """

    sequence: np.ndarray
    start: np.ndarray
    end: np.ndarray
    aggregation: np.ndarray
    skip: np.ndarray
    example_unit: np.ndarray

    def __len__(self) -> int:
        return len(self.sequence)


@dataclass
class ProbeDataset:
    """Tokenized sequences and labelled examples of features.

    Build one with a builder (:mod:`needle.datasets`) or
    :class:`needle.datasets.assembler.DatasetAssembler`; load one with
    :func:`load_dataset`.

    Attributes
    ----------
    tokens : list of ndarray of int32
        Token ids of each sequence, special tokens included, unpadded.
    attention_mask : list of ndarray of int8
        1 where the model attends; same shapes as ``tokens``.
    groups : ndarray of str, shape (n_sequences,)
        Source document of each sequence; train/test splits are by group.
    features : list of dict
        One dict per feature: ``name``, ``description``, ``collection`` and
        ``level`` (``token`` or ``sequence``); optionally ``task`` (see
        :data:`TASKS`; absent means binary) and, for multiclass, ``classes``.
    examples : Examples
    tokenizer : dict
        See :func:`needle.datasets.tokenizer_info.tokenizer_info`.
    builder : dict
        ``name`` and ``params`` of the builder that made the dataset.
    texts : list of str or None
        Source text of each sequence, when the builder kept it.
    extra : dict
        Builder-specific facts worth keeping (e.g. dropped features and why).
    """

    tokens: list[np.ndarray]
    attention_mask: list[np.ndarray]
    groups: np.ndarray
    features: list[dict[str, Any]]
    examples: Examples
    tokenizer: dict[str, Any]
    builder: dict[str, Any]
    texts: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ access
    @property
    def n_sequences(self) -> int:
        return len(self.tokens)

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.features]

    @property
    def n_tokens(self) -> int:
        return int(sum(len(t) for t in self.tokens))

    def feature_index(self, name: str) -> int:
        """Index of feature ``name``; the error lists the available names."""
        try:
            return self.feature_names.index(name)
        except ValueError:
            raise InputError(
                f"unknown feature {name!r}; this dataset has: {', '.join(self.feature_names)}"
            ) from None

    def feature_examples(self, name: str) -> Examples:
        """The examples of one feature."""
        return self.examples.take(np.flatnonzero(self.examples.feature == self.feature_index(name)))

    def units(self) -> Units:
        """Deduplicated (sequence, span, aggregation, skip) rows, and each example's row."""
        ex = self.examples
        if len(ex) == 0:
            empty = np.zeros(0, np.int64)
            return Units(empty, empty, empty, empty, empty, empty)
        columns = (ex.sequence, ex.start, ex.end, ex.aggregation, ex.skip)
        order = np.lexsort(columns[::-1])  # sorts by sequence first; far faster than np.unique(axis=0)
        ordered = [c[order] for c in columns]
        new_unit = np.ones(len(order), bool)
        new_unit[1:] = np.any([c[1:] != c[:-1] for c in ordered], axis=0)
        unit_of_sorted = np.cumsum(new_unit) - 1
        inverse = np.empty(len(order), np.int64)
        inverse[order] = unit_of_sorted
        first = np.flatnonzero(new_unit)
        return Units(
            sequence=ordered[0][first].astype(np.int32),
            start=ordered[1][first].astype(np.int32),
            end=ordered[2][first].astype(np.int32),
            aggregation=ordered[3][first].astype(np.int8),
            skip=ordered[4][first].astype(np.int32),
            example_unit=inverse,
        )

    def feature_task(self, name: str) -> str:
        """Task of feature ``name`` (``binary``, ``multiclass`` or ``regression``)."""
        return feature_task(self.features[self.feature_index(name)])

    def counts(self) -> dict[str, dict[str, Any]]:
        """Example counts per feature.

        Binary features: ``positive`` and ``negative``; multiclass: ``examples``
        and ``classes`` (class name → count); regression: ``examples``. With a
        user split, also ``train`` and ``test``.
        """
        out: dict[str, dict[str, Any]] = {}
        for index, info in enumerate(self.features):
            rows = self.examples.feature == index
            labels = self.examples.label[rows]
            task = feature_task(info)
            if task == "binary":
                count: dict[str, Any] = {"positive": int((labels == 1).sum()), "negative": int((labels == 0).sum())}
            elif task == "multiclass":
                per_class = np.bincount(labels.astype(np.int64), minlength=len(info["classes"]))
                count = {"examples": len(labels), "classes": dict(zip(info["classes"], per_class.tolist()))}
            else:
                count = {"examples": len(labels)}
            split = self.examples.split[rows]
            if (split != SPLIT_NONE).any():
                count.update(train=int((split == SPLIT_TRAIN).sum()), test=int((split == SPLIT_TEST).sum()))
            out[info["name"]] = count
        return out

    # ------------------------------------------------------------ integrity
    def content_hash(self) -> str:
        """SHA-256 over everything that defines the dataset's content.

        Tokens, masks, groups, features, examples and the tokenizer fingerprint;
        not the builder parameters or the texts (which do not change what is
        extracted). A dataset of binary features without a user split hashes
        exactly as format version 1 did (labels as int8, no split), so old
        hashes recorded in caches still match.
        """
        digest = hashlib.sha256()
        lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)
        digest.update(lengths.tobytes())
        if len(self.tokens):
            digest.update(np.concatenate(self.tokens).astype(np.int32).tobytes())
            digest.update(np.concatenate(self.attention_mask).astype(np.int8).tobytes())
        digest.update(json.dumps([str(g) for g in self.groups]).encode())
        digest.update(json.dumps(self.features, sort_keys=True).encode())
        legacy = all(feature_task(f) == "binary" for f in self.features) and (self.examples.split == SPLIT_NONE).all()
        for name, dtype in (_V1_HASH_DTYPES if legacy else _EXAMPLE_DTYPES).items():
            digest.update(np.ascontiguousarray(getattr(self.examples, name), dtype=dtype).tobytes())
        digest.update(str(self.tokenizer.get("fingerprint", "")).encode())
        return digest.hexdigest()

    def validate(self, source: str = "dataset") -> None:
        """Check internal consistency; raise :class:`FormatError` naming the first problem."""
        n = self.n_sequences
        if n == 0:
            raise FormatError(f"{source}: the dataset has no sequences (an empty collection).")
        if len(self.attention_mask) != n or len(self.groups) != n:
            raise FormatError(f"{source}: tokens, attention_mask and groups have different lengths.")
        if self.texts is not None and len(self.texts) != n:
            raise FormatError(f"{source}: texts has {len(self.texts)} entries for {n} sequences.")
        lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)
        for i, (tok, mask) in enumerate(zip(self.tokens, self.attention_mask)):
            if len(tok) != len(mask):
                raise FormatError(f"{source}: sequence {i} has {len(tok)} tokens but {len(mask)} mask entries.")
        if (lengths == 0).any():
            raise FormatError(f"{source}: sequence {int(np.argmax(lengths == 0))} is empty.")
        vocab_size = self.tokenizer.get("vocab_size")
        if vocab_size:
            top = max(int(t.max()) for t in self.tokens)
            if top >= vocab_size or min(int(t.min()) for t in self.tokens) < 0:
                raise FormatError(f"{source}: token id {top} outside the tokenizer's vocabulary of {vocab_size}.")
        if not self.features:
            raise FormatError(f"{source}: the dataset has no features (an empty collection).")
        names = self.feature_names
        if len(set(names)) != len(names):
            raise FormatError(f"{source}: duplicate feature names.")
        ex = self.examples
        sizes = {len(getattr(ex, name)) for name in _EXAMPLE_DTYPES}
        if len(sizes) != 1:
            raise FormatError(f"{source}: example columns have different lengths.")
        if len(ex) == 0:
            raise FormatError(f"{source}: the dataset has no labelled examples.")
        bad = (ex.feature < 0) | (ex.feature >= len(names))
        _fail_rows(bad, f"{source}: example feature index out of range")
        bad = (ex.sequence < 0) | (ex.sequence >= n)
        _fail_rows(bad, f"{source}: example sequence index out of range")
        seq_len = lengths[np.clip(ex.sequence, 0, n - 1)]
        _fail_rows((ex.start < 0) | (ex.end > seq_len) | (ex.start >= ex.end), f"{source}: example span outside its sequence")
        _fail_rows((ex.aggregation < 0) | (ex.aggregation >= len(AGGREGATIONS)), f"{source}: unknown aggregation code")
        is_token = ex.aggregation == 0
        _fail_rows(is_token & ((ex.end != ex.start + 1) | (ex.skip != 0)), f"{source}: a token example must span one token with skip 0")
        _fail_rows(~is_token & ((ex.skip < 0) | (ex.start + ex.skip >= ex.end)), f"{source}: span example skips all of its tokens")
        _fail_rows((ex.split < SPLIT_NONE) | (ex.split > SPLIT_TEST), f"{source}: split must be -1 (none), 0 (train) or 1 (test)")
        for index, info in enumerate(self.features):
            rows = ex.feature == index
            self._validate_feature(info, ex.label[rows], ex.split[rows], np.flatnonzero(rows), source)

    @staticmethod
    def _validate_feature(info: dict[str, Any], label: np.ndarray, split: np.ndarray, rows: np.ndarray, source: str) -> None:
        name, task = info["name"], feature_task(info)
        if task not in TASKS:
            raise FormatError(f"{source}: feature {name!r} has unknown task {task!r}; use one of {', '.join(TASKS)}.")
        given = split != SPLIT_NONE
        if given.any() and not given.all():
            raise FormatError(
                f"{source}: feature {name!r} gives a train/test split for {int(given.sum())} of its {len(split)} "
                f"examples (e.g. none for example row {int(rows[np.argmin(given)])}); give one for all or none."
            )
        if task == "binary":
            _fail_rows_at(rows, (label != 0) & (label != 1), f"{source}: feature {name!r}: binary labels must be 0 or 1")
            if not (label == 1).any():
                raise FormatError(f"{source}: feature {name!r} has no positive examples; drop it or add data.")
            if not (label == 0).any():
                raise FormatError(f"{source}: feature {name!r} has no negative examples; a probe needs both classes.")
        elif task == "multiclass":
            classes = info.get("classes")
            if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
                raise FormatError(f"{source}: multiclass feature {name!r} needs 'classes', a list of at least two class names.")
            _fail_rows_at(
                rows,
                ~np.isfinite(label) | (label != np.round(label)) | (label < 0) | (label >= len(classes)),
                f"{source}: feature {name!r}: multiclass labels must be class indices 0…{len(classes) - 1}",
            )
            if len(np.unique(label)) < 2:
                raise FormatError(f"{source}: multiclass feature {name!r} has examples of only one class; a probe needs two.")
        else:
            _fail_rows_at(rows, ~np.isfinite(label), f"{source}: feature {name!r}: regression labels must be finite")
            if len(label) == 0 or np.ptp(label) == 0:
                raise FormatError(f"{source}: regression feature {name!r} has a constant label; a probe needs variation.")

    # ------------------------------------------------------------------ disk
    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "needle_version": __version__,
            "builder": self.builder,
            "tokenizer": self.tokenizer,
            "features": self.features,
            "counts": self.counts(),
            "n_sequences": self.n_sequences,
            "n_tokens": self.n_tokens,
            "n_examples": len(self.examples),
            "content_hash": self.content_hash(),
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Validate and write the dataset to directory ``path`` atomically."""
        self.validate()
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite, kind=FORMAT_NAME) as tmp:
            sequences = pa.table(
                {
                    "sequence": pa.array(np.arange(self.n_sequences, dtype=np.int32)),
                    "group": pa.array([str(g) for g in self.groups], pa.string()),
                    "tokens": pa.array([np.asarray(t, np.int32) for t in self.tokens], pa.list_(pa.int32())),
                    "attention_mask": pa.array(
                        [np.asarray(m, np.int8) for m in self.attention_mask], pa.list_(pa.int8())
                    ),
                    "text": pa.array(self.texts if self.texts is not None else [None] * self.n_sequences, pa.string()),
                }
            )
            pq.write_table(sequences, tmp / "sequences.parquet")
            ex = self.examples
            names = np.array(self.feature_names, dtype=object)
            examples = pa.table(
                {
                    "feature": pa.array(names[ex.feature].tolist(), pa.string()).dictionary_encode(),
                    "sequence": pa.array(ex.sequence.astype(np.int32)),
                    "start": pa.array(ex.start.astype(np.int32)),
                    "end": pa.array(ex.end.astype(np.int32)),
                    "aggregation": pa.array(np.array(AGGREGATIONS)[ex.aggregation].tolist(), pa.string()).dictionary_encode(),
                    "skip": pa.array(ex.skip.astype(np.int32)),
                    "label": pa.array(ex.label.astype(np.float64)),
                    "split": pa.array(ex.split.astype(np.int8)),
                }
            )
            pq.write_table(examples, tmp / "examples.parquet")
            write_json_atomic(tmp / "manifest.json", self.manifest())
        return path


def load_dataset(path: str | os.PathLike, *, verify_hash: bool = True) -> ProbeDataset:
    """Load and validate a ProbeDataset directory.

    Parameters
    ----------
    path : path-like
        A directory written by :meth:`ProbeDataset.save` (``needle dataset build``).
    verify_hash : bool, default True
        Recompute the content hash and compare it with the manifest's.

    Raises
    ------
    FormatError
        The directory is missing, is not a ProbeDataset, has an unsupported
        format version, or its content is inconsistent or corrupt.
    """
    path = Path(path)
    manifest = _read_manifest(path, FORMAT_NAME, FORMAT_VERSION, READABLE_VERSIONS, _REMEDY)
    try:
        sequences = pq.read_table(path / "sequences.parquet")
        examples = pq.read_table(path / "examples.parquet")
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"{path}: cannot read the dataset tables ({str(exc).splitlines()[0][:160]}).") from None
    missing = [c for c in ("tokens", "attention_mask", "group", "text") if c not in sequences.column_names] + \
        [c for c in ("feature", "sequence", "start", "end", "aggregation", "skip", "label")
         if c not in examples.column_names]
    if missing:
        raise FormatError(f"{path}: the dataset tables lack columns {missing}; {_REMEDY}.")
    tokens = _list_column(sequences, "tokens", np.int32)
    masks = _list_column(sequences, "attention_mask", np.int8)
    texts = sequences.column("text").to_pylist()
    features = manifest["features"]
    feature_codes = _category_codes(examples, "feature", [f["name"] for f in features], path)
    aggregation_codes = _category_codes(examples, "aggregation", list(AGGREGATIONS), path)
    dataset = ProbeDataset(
        tokens=tokens,
        attention_mask=masks,
        groups=np.array(sequences.column("group").to_pylist(), dtype=object),
        features=features,
        examples=Examples(
            feature=feature_codes.astype(np.int32),
            sequence=examples.column("sequence").to_numpy().astype(np.int32),
            start=examples.column("start").to_numpy().astype(np.int32),
            end=examples.column("end").to_numpy().astype(np.int32),
            aggregation=aggregation_codes.astype(np.int8),
            skip=examples.column("skip").to_numpy().astype(np.int32),
            label=examples.column("label").to_numpy().astype(np.float64),
            split=examples.column("split").to_numpy().astype(np.int8) if "split" in examples.column_names else None,
        ),
        tokenizer=manifest["tokenizer"],
        builder=manifest["builder"],
        texts=None if all(t is None for t in texts) else texts,
        extra=manifest.get("extra", {}),
    )
    dataset.validate(source=str(path))
    _check_counts(manifest, dataset, path)
    if verify_hash and dataset.content_hash() != manifest.get("content_hash"):
        raise FormatError(f"{path}: content hash does not match the manifest; the files were changed or corrupted.")
    return dataset


_REMEDY = "build the dataset again with `needle dataset build`"
#: Manifest keys every reader relies on.
_REQUIRED = ("builder", "tokenizer", "features", "n_sequences", "n_tokens", "n_examples", "content_hash")


def _read_manifest(path: Path, name: str, current: int, readable: tuple[int, ...], remedy: str) -> dict:
    """:func:`needle._io.read_manifest` accepting any of the ``readable`` format versions."""
    version = current
    if (path / "manifest.json").is_file():
        found = read_json(path / "manifest.json")
        if isinstance(found, dict) and found.get("format_version") in readable:
            version = found["format_version"]
    manifest = read_manifest(path, name, version, remedy, required=_REQUIRED)
    bad = [f for f in manifest["features"] if not isinstance(f, dict) or not isinstance(f.get("name"), str)]
    if not isinstance(manifest["features"], list) or bad:
        raise FormatError(f"{path}/manifest.json: 'features' must be a list of objects with a 'name'; {remedy}.")
    return manifest


def _check_counts(manifest: dict, dataset: ProbeDataset, path: Path) -> None:
    """The manifest's sizes must describe the tables beside it (an edited or mismatched manifest fails here)."""
    found = {"n_sequences": dataset.n_sequences, "n_tokens": dataset.n_tokens, "n_examples": len(dataset.examples)}
    wrong = {key: (manifest[key], value) for key, value in found.items() if manifest[key] != value}
    if wrong:
        detail = ", ".join(f"{key} {want} but the tables hold {got}" for key, (want, got) in wrong.items())
        raise FormatError(f"{path}/manifest.json says {detail}: the manifest and the data do not belong together; "
                          f"{_REMEDY}.")


def _category_codes(table: pa.Table, column: str, categories: list[str], path: Path) -> np.ndarray:
    """Codes of a (dictionary-encoded) string column against ``categories``, without Python strings per row."""
    array = table.column(column).combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = array.dictionary_encode()
    dictionary = array.dictionary.to_pylist()
    lookup = {name: i for i, name in enumerate(categories)}
    unknown = sorted(set(dictionary) - lookup.keys())
    if unknown:
        raise FormatError(f"{path}/examples.parquet has unknown {column} values {unknown[:5]}; the manifest lists {categories[:5]}…")
    mapping = np.array([lookup[name] for name in dictionary], np.int64)
    indices = array.indices.to_numpy(zero_copy_only=False)
    return mapping[indices] if len(indices) else np.zeros(0, np.int64)


def _list_column(table: pa.Table, name: str, dtype: type) -> list[np.ndarray]:
    column = table.column(name).combine_chunks()
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]


def _fail_rows_at(rows: np.ndarray, bad: np.ndarray, message: str) -> None:
    """:func:`_fail_rows` for a subset of examples: ``rows[i]`` is the example row of ``bad[i]``."""
    if bad.any():
        found = rows[bad]
        raise FormatError(f"{message} (example rows {found[:5].tolist()}{'…' if len(found) > 5 else ''}).")


def _fail_rows(bad: np.ndarray, message: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        raise FormatError(f"{message} (example rows {rows[:5].tolist()}{'…' if len(rows) > 5 else ''}).")
