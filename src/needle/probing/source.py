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

__all__ = ["ProbeSource", "ArraySource"]


@runtime_checkable
class ProbeSource(Protocol):
    """What :func:`needle.probing.sweep` reads.

    Attributes
    ----------
    layers : list of int
        Layers available; :meth:`layer` accepts exactly these.
    feature_names : list of str
        Binary features available; :meth:`feature` accepts exactly these.
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
        y : ndarray of shape (n_examples,), int8
            1 for a positive example, 0 for a negative one.
        """
        ...

    def feature_info(self, name: str) -> dict[str, Any]:
        """Description of a feature: at least ``collection`` and ``level``."""
        ...


class ArraySource:
    """An in-memory :class:`ProbeSource`, for tests and for users with their own matrices.

    Parameters
    ----------
    layers : mapping of int to array-like of shape (n_rows, n_neurons)
        One activation matrix per layer (any float dtype; kept as given).
        All layers must have the same number of rows; the number of columns
        may differ between layers.
    features : mapping of str to (rows, y)
        For each feature, ``rows`` (int indices into the layer matrices) and
        ``y`` (0/1 labels), both of shape (n_examples,).
    groups : array-like of shape (n_rows,), optional
        Group of each row (e.g. the document it came from). Default: every
        row is its own group, which is only right when rows are independent.
    manifest : dict, optional
        Provenance; ``model_id``, ``dataset_hash`` and ``site`` default to
        ``"arrays"``, a hash of the labels and groups, and ``"custom"``.
    feature_info : mapping of str to dict, optional
        Per-feature description; ``collection`` defaults to ``"custom"`` and
        ``level`` to ``"token"``.

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
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (rows, y) in features.items():
            rows = np.asarray(rows, dtype=np.int64).ravel()
            y = np.asarray(y).ravel()
            if rows.shape != y.shape:
                raise InputError(f"feature {name!r}: rows has {rows.size} entries but y has {y.size}.")
            if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
                raise InputError(f"feature {name!r}: row indices must lie in [0, {self.n_rows}).")
            if not np.isin(y, (0, 1)).all():
                raise InputError(f"feature {name!r}: labels must be 0 or 1, got values {np.unique(y)[:5].tolist()}.")
            self._features[str(name)] = (rows, y.astype(np.int8))
        if groups is None:
            groups = np.arange(self.n_rows)
        self.row_groups = np.asarray(groups).astype(str)
        if self.row_groups.shape != (self.n_rows,):
            raise InputError(f"groups must have shape ({self.n_rows},), got {self.row_groups.shape}.")
        self._info = {name: dict(info) for name, info in (feature_info or {}).items()}
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
        info = {"name": name, "collection": "custom", "level": "token"}
        info.update(self._info.get(name, {}))
        return info

    def _content_hash(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        for name in sorted(self._features):
            rows, y = self._features[name]
            digest.update(name.encode())
            digest.update(rows.tobytes())
            digest.update(y.tobytes())
        digest.update("\0".join(self.row_groups.tolist()).encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        widths = {l: m.shape[1] for l, m in sorted(self._layers.items())}
        return f"ArraySource(rows={self.n_rows}, layers={widths}, features={len(self._features)})"
