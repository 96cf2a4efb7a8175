"""Where the probing engine reads ``X`` and ``y`` from: the :class:`ProbeSource` protocol.

The engine is blind to what the columns of ``X`` are: MLP neurons of a
transformer (the :class:`needle.activations.ActivationCache` implements this
protocol), residual-stream coordinates, sparse-autoencoder latents, or any
matrix a user brings (:class:`ArraySource`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from needle.errors import InputError

__all__ = ["ProbeSource", "ArraySource", "feature_task", "feature_split"]

_TASKS = ("binary", "multiclass", "regression")


@runtime_checkable
class ProbeSource(Protocol):
    """What :func:`needle.probing.sweep` reads.

    Attributes
    ----------
    layers : list of int
        Layers available; :meth:`layer` accepts exactly these.
    feature_names : list of str
        Features available; :meth:`feature` accepts exactly these.
    row_groups : ndarray of shape (n_rows,), str
        The group (source document or file) of every row of the layer
        matrices. Train/test splits never put one group on both sides.
    manifest : dict
        Provenance, at least ``model_id``, ``dataset_hash`` and ``site``
        (e.g. ``"post"``); the sweep records it with every result.
    """

    layers: list[int]
    feature_names: list[str]
    row_groups: np.ndarray
    manifest: dict[str, Any]

    def layer(self, layer: int) -> np.ndarray:
        """Activations of one layer.

        Returns
        -------
        ndarray of shape (n_rows, n_neurons)
            Usually float16 and memory-mapped; the engine reads the rows of
            one feature at a time and converts them to float32.
        """
        ...

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The examples of one feature.

        Returns
        -------
        rows : ndarray of shape (n_examples,), int64
            Indices into the rows of :meth:`layer` matrices (rows may repeat
            across features).
        y : ndarray of shape (n_examples,)
            The targets of the feature's task: int8 0/1 (binary), int64 class
            codes (multiclass), float64 values (regression).
        """
        ...

    def feature_info(self, name: str) -> dict[str, Any]:
        """Description of a feature: at least ``collection`` and ``level``; ``task`` (default
        ``"binary"``) and, for multiclass features, ``classes`` (the name of each code)."""
        ...


def feature_task(source: ProbeSource, name: str) -> str:
    """The task of a source's feature: its ``feature_info``'s ``task``, binary when absent."""
    task = str(source.feature_info(name).get("task", "binary") or "binary")
    if task not in _TASKS:
        raise InputError(f"feature {name!r} has task {task!r}; tasks are {', '.join(_TASKS)}.")
    return task


def feature_split(source: ProbeSource, name: str) -> np.ndarray | None:
    """A source's own train/test split of a feature (True for test examples), or None.

    Sources may implement ``feature_split(name)``; those that do not (or
    return None) let the sweep draw a split by group.
    """
    method = getattr(source, "feature_split", None)
    if method is None:
        return None
    split = method(name)
    return None if split is None else np.asarray(split, dtype=bool).ravel()


class ArraySource:
    """An in-memory :class:`ProbeSource`, for tests and for users with their own matrices.

    Parameters
    ----------
    layers : mapping of int to array-like of shape (n_rows, n_neurons)
        One activation matrix per layer (any float dtype; kept as given).
        All layers must have the same number of rows; the number of columns
        may differ between layers.
    features : mapping of str to (rows, y) or (rows, y, split)
        For each feature, ``rows`` (int indices into the layer matrices) and
        ``y``, both of shape (n_examples,): 0/1 labels for a binary feature,
        class codes 0..C-1 for a multiclass one, values for a regression one
        (say which in ``feature_info``: ``{"task": "regression"}``; default
        binary). An optional ``split`` of shape (n_examples,) ("train"/"test",
        or True for test) is used by the sweep instead of drawing one.
    groups : array-like of shape (n_rows,), optional
        Group of each row (e.g. the document it came from). Default: every
        row is its own group, which is only right when rows are independent.
    manifest : dict, optional
        Provenance; ``model_id``, ``dataset_hash`` and ``site`` default to
        ``"arrays"``, a hash of the labels and groups, and ``"custom"``.
    feature_info : mapping of str to dict, optional
        Per-feature description; ``collection`` defaults to ``"custom"``,
        ``level`` to ``"token"`` and ``task`` to ``"binary"``; multiclass
        features may name their classes (``classes``).

    Examples
    --------
    >>> import numpy as np
    >>> from needle.probing import ArraySource
    >>> X = np.random.default_rng(0).normal(size=(100, 16)).astype(np.float16)
    >>> y = (X[:, 3] > 0).astype(np.int8)
    >>> source = ArraySource({0: X}, {"f": (np.arange(100), y)}, groups=np.arange(100) // 5)
    >>> source.layer(0).shape
    (100, 16)
    """

    def __init__(
        self,
        layers: Mapping[int, Any],
        features: Mapping[str, tuple[Any, Any]],
        *,
        groups: Sequence[Any] | np.ndarray | None = None,
        manifest: Mapping[str, Any] | None = None,
        feature_info: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        if not layers:
            raise InputError("ArraySource needs at least one layer matrix.")
        self._layers = {int(l): np.asarray(m) for l, m in layers.items()}
        n_rows = {m.shape[0] for m in self._layers.values()}
        if len(n_rows) != 1 or any(m.ndim != 2 for m in self._layers.values()):
            shapes = {l: m.shape for l, m in self._layers.items()}
            raise InputError(f"every layer matrix must be 2-D with the same number of rows; got shapes {shapes}.")
        self.n_rows = n_rows.pop()
        self._info = {name: dict(info) for name, info in (feature_info or {}).items()}
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._splits: dict[str, np.ndarray] = {}
        for name, spec in features.items():
            rows, y, *rest = spec
            rows = np.asarray(rows, dtype=np.int64).ravel()
            y = np.asarray(y).ravel()
            if rows.shape != y.shape:
                raise InputError(f"feature {name!r}: rows has {rows.size} entries but y has {y.size}.")
            if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
                raise InputError(f"feature {name!r}: row indices must lie in [0, {self.n_rows}).")
            task = self._info.get(name, {}).get("task", "binary")
            self._features[str(name)] = (rows, _typed_target(name, y, task))
            if rest and rest[0] is not None:
                self._splits[str(name)] = _as_is_test(name, rest[0], rows.size)
        if groups is None:
            groups = np.arange(self.n_rows)
        self.row_groups = np.asarray(groups).astype(str)
        if self.row_groups.shape != (self.n_rows,):
            raise InputError(f"groups must have shape ({self.n_rows},), got {self.row_groups.shape}.")
        manifest = dict(manifest or {})
        manifest.setdefault("model_id", "arrays")
        manifest.setdefault("dataset_hash", self._content_hash())
        manifest.setdefault("site", "custom")
        self.manifest = manifest

    @property
    def layers(self) -> list[int]:
        return sorted(self._layers)

    @property
    def feature_names(self) -> list[str]:
        return list(self._features)

    def layer(self, layer: int) -> np.ndarray:
        try:
            return self._layers[int(layer)]
        except KeyError:
            raise InputError(f"layer {layer} is not in this source; it has layers {self.layers}.") from None

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self._features[name]
        except KeyError:
            raise InputError(f"unknown feature {name!r}; this source has: {', '.join(self.feature_names)}") from None

    def feature_info(self, name: str) -> dict[str, Any]:
        self.feature(name)
        info = {"name": name, "collection": "custom", "level": "token", "task": "binary"}
        info.update(self._info.get(name, {}))
        return info

    def feature_split(self, name: str) -> np.ndarray | None:
        """The feature's given split (True for test examples), or None to let the sweep draw one."""
        self.feature(name)
        return self._splits.get(name)

    def _content_hash(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        for name in sorted(self._features):
            rows, y = self._features[name]
            digest.update(name.encode())
            digest.update(rows.tobytes())
            digest.update(y.tobytes())
            if name in self._splits:
                digest.update(self._splits[name].tobytes())
        digest.update("\0".join(self.row_groups.tolist()).encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        widths = {l: m.shape[1] for l, m in sorted(self._layers.items())}
        return f"ArraySource(rows={self.n_rows}, layers={widths}, features={len(self._features)})"


def _typed_target(name: str, y: np.ndarray, task: str) -> np.ndarray:
    """``y`` checked for ``task`` and cast to its dtype (int8, int64 codes, float64)."""
    if task == "binary":
        if not np.isin(y, (0, 1)).all():
            raise InputError(f"feature {name!r}: labels must be 0 or 1, got values {np.unique(y)[:5].tolist()}.")
        return y.astype(np.int8)
    if task == "multiclass":
        codes = np.asarray(y, dtype=np.float64)
        if not (np.all(np.isfinite(codes)) and np.all(codes == np.round(codes)) and codes.min(initial=0) >= 0):
            raise InputError(f"feature {name!r}: multiclass labels must be class codes 0, 1, 2, …")
        return codes.astype(np.int64)
    if task == "regression":
        values = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InputError(f"feature {name!r}: regression targets must be finite numbers.")
        return values
    raise InputError(f"feature {name!r}: unknown task {task!r}; tasks are {', '.join(_TASKS)}.")


def _as_is_test(name: str, split: Any, n: int) -> np.ndarray:
    split = np.asarray(split).ravel()
    if split.shape != (n,):
        raise InputError(f"feature {name!r}: split has {split.size} entries for {n} examples.")
    if split.dtype.kind in "US" or split.dtype == object:
        values = set(np.unique(split.astype(str)).tolist())
        if not values <= {"train", "test"}:
            raise InputError(f"feature {name!r}: split values must be 'train' or 'test', got {sorted(values)[:5]}.")
        return split.astype(str) == "test"
    return split.astype(bool)
