"""The ActivationCache: activations of one model at a dataset's labelled examples.

On disk (format documented in ``docs/formats.md``)::

    manifest.json        model, site, layers, dtype, dataset hash, features, parameters
    rows.parquet         row → (sequence, start, end, aggregation, skip, group)
    labels.parquet       (feature, row, label, split): each example of each feature
    layer_{l:03d}.npy    (n_rows, width) matrix per layer, memory-mappable

A cache is written under a temporary name and renamed when complete, so a
directory with this layout is always whole. Its manifest records every
file's size and SHA-256 (``files``): :func:`load_cache` checks the sizes and
each layer file's header against the manifest (free), :func:`verify_cache`
the digests (one read of every byte; ``needle cache verify``).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from needle._checksums import check_sizes, read_parquet, verify_files
from needle._io import read_json, read_manifest
from needle.errors import FormatError, InputError
from needle.models.sites import get_site, site_id

__all__ = ["ActivationCache", "load_cache", "verify_cache", "CACHE_FORMAT", "CACHE_FORMAT_VERSION", "layer_file"]

CACHE_FORMAT = "needle.ActivationCache"
CACHE_FORMAT_VERSION = 2
#: Versions :func:`load_cache` reads (version 1: int8 labels, no split column).
_READABLE_VERSIONS = (1, 2)
#: dtype of ``feature(name)[1]`` per task.
_LABEL_DTYPES = {"binary": np.int8, "multiclass": np.int64, "regression": np.float64}
#: Manifest keys every reader relies on.
_REQUIRED = ("model_id", "model", "site", "layers", "dtype", "width", "n_rows", "dataset_hash", "dataset", "features")
_REMEDY = "extract the activations again"


def layer_file(layer: int) -> str:
    return f"layer_{layer:03d}.npy"


class ActivationCache:
    """Read access to an extracted cache; implements :class:`needle.probing.ProbeSource`.

    Use :func:`load_cache` to open one.

    Attributes
    ----------
    path : Path
    manifest : dict
        Includes ``model_id``, ``dataset_hash``, ``site`` (the site id), ``basis``,
        ``transform``, ``layers``, ``model`` (full description), ``dataset``,
        ``features`` and ``params``.
    """

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    # ----------------------------------------------------------- shape
    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def site(self) -> str:
        """Id of the site, e.g. ``mlp.hook_post`` or ``mlp.hook_post+pca16-…`` (canonical also for old caches)."""
        return site_id(self.manifest["site"])

    @property
    def transform(self) -> dict[str, Any] | None:
        """``{"name", "params"}`` of the transform applied at extraction, or None."""
        return self.manifest.get("transform")

    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def width(self) -> int:
        """Columns per layer matrix (n_neurons, d_model, n_heads·d_head or the transform's output width)."""
        return int(self.manifest["width"])

    @property
    def basis(self) -> str:
        """What the columns are: ``neurons``, ``residual dimensions``, ``attention head dimensions`` or the
        transform's name."""
        if "basis" in self.manifest:
            return self.manifest["basis"]
        return get_site(self.site).basis  # caches from before the basis was recorded have no transform

    def layer(self, layer: int) -> np.ndarray:
        """The activations of ``layer``, shape (n_rows, width), memory-mapped read-only."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} is not in the cache {self.path}; it has layers {self.layers}.")
        try:
            array = np.load(self.path / layer_file(layer), mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise FormatError(f"{self.path / layer_file(layer)} is not a readable layer matrix ({exc}); "
                              f"{_REMEDY}.") from None
        if array.shape != (self.n_rows, self.width):
            raise FormatError(f"{self.path / layer_file(layer)} has shape {array.shape}, expected {(self.n_rows, self.width)}.")
        return array

    # ------------------------------------------------------------ rows
    @cached_property
    def rows(self) -> dict[str, np.ndarray]:
        """Row table as arrays: ``sequence``, ``start``, ``end``, ``aggregation`` (str), ``skip``, ``group``."""
        table = read_parquet(self.path / "rows.parquet", "row table", _REMEDY)
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}

    @property
    def row_groups(self) -> np.ndarray:
        """Group (source document) of each row, shape (n_rows,)."""
        return self.rows["group"]

    # -------------------------------------------------------- features
    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.manifest["features"]]

    def feature_info(self, name: str) -> dict[str, Any]:
        """The feature's dict from the dataset, always with its ``task`` (``"binary"`` when the dataset omits it)."""
        for feature in self.manifest["features"]:
            if feature["name"] == name:
                return {"task": "binary", **feature}
        raise InputError(f"unknown feature {name!r}; the cache {self.path} has: {', '.join(self.feature_names)}")

    @cached_property
    def _labels(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        table = read_parquet(self.path / "labels.parquet", "label table", _REMEDY)
        feature = table.column("feature").combine_chunks()
        if not pa.types.is_dictionary(feature.type):
            feature = feature.dictionary_encode()
        # Group by dictionary code, not by string: no Python object per example.
        codes = feature.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = feature.dictionary.to_pylist()
        rows = table.column("row").to_numpy().astype(np.int64)
        labels = table.column("label").to_numpy().astype(np.float64)
        if "split" in table.column_names:
            splits = table.column("split").to_numpy().astype(np.int8)
        else:
            splits = np.full(len(rows), -1, np.int8)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        out = {}
        for c in range(len(names)):
            if bounds[c + 1] > bounds[c]:
                take = order[bounds[c] : bounds[c + 1]]
                out[names[c]] = (rows[take], labels[take], splits[take])
        return out

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows and labels of a feature's examples.

        Returns
        -------
        rows : ndarray of int64, shape (n_examples,)
            Indices into :meth:`layer` matrices.
        y : ndarray, shape (n_examples,)
            Typed by the feature's task: binary int8 (1 positive, 0 negative),
            multiclass int64 (index into ``feature_info(name)["classes"]``),
            regression float64.
        """
        task = self.feature_info(name)["task"]
        rows, labels, _ = self._labels[name]
        return rows, labels.astype(_LABEL_DTYPES[task])

    def feature_split(self, name: str) -> np.ndarray | None:
        """The user's train/test split of a feature's examples, aligned with :meth:`feature`.

        Returns
        -------
        ndarray of bool, shape (n_examples,), or None
            True for test examples; None when the dataset gave no split.
        """
        self.feature_info(name)
        split = self._labels[name][2]
        if (split == -1).all():
            return None
        return split == 1

    def dataset(self) -> Any:
        """Load the ProbeDataset this cache was extracted from (if its recorded path still exists)."""
        from needle.datasets.format import load_dataset

        path = self.manifest["dataset"].get("path")
        if not path or not Path(path).is_dir():
            raise InputError(f"the dataset of {self.path} is not at its recorded path {path!r}; load it yourself.")
        dataset = load_dataset(path)
        if dataset.content_hash() != self.manifest["dataset_hash"]:
            raise FormatError(f"the dataset at {path} has changed since {self.path} was extracted from it.")
        return dataset

    def __repr__(self) -> str:
        return (f"ActivationCache({str(self.path)!r}, model={self.manifest['model_id']!r}, site={self.site!r}, "
                f"layers={self.layers}, rows={self.n_rows}, width={self.width} {self.basis})")


def load_cache(path: str | os.PathLike) -> ActivationCache:
    """Open an ActivationCache directory written by :func:`needle.extract`.

    Raises
    ------
    FormatError
        Not a cache, an unsupported version, or files missing.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if not path.is_dir() and partial.exists():
        raise FormatError(f"{path} is not an activation cache yet: an interrupted extraction is waiting at "
                          f"{partial}; run extract again to resume.")
    version = CACHE_FORMAT_VERSION
    if (path / "manifest.json").is_file():
        found = read_json(path / "manifest.json")
        if isinstance(found, dict) and found.get("format_version") in _READABLE_VERSIONS:
            version = found["format_version"]
    manifest = read_manifest(path, CACHE_FORMAT, version, _REMEDY, required=_REQUIRED)
    names = ["rows.parquet", "labels.parquet", *(layer_file(l) for l in manifest["layers"])]
    for name in names:
        if not (path / name).is_file():
            raise FormatError(f"{path} is incomplete: {name} is missing.")
    if "files" in manifest:  # caches extracted before needle recorded checksums have none
        check_sizes(path, manifest["files"], _REMEDY)
    _check_structure(path, manifest)
    return ActivationCache(path, manifest)


def verify_cache(path: str | os.PathLike) -> list[str]:
    """Check every byte of a cache against the checksums its manifest recorded at extraction.

    Returns
    -------
    list of str
        One line per damaged or missing file; empty when everything matches.

    Raises
    ------
    FormatError
        Not a cache, damaged beyond opening, or extracted before needle
        recorded checksums (nothing to verify against).
    """
    cache = load_cache(path)
    files = cache.manifest.get("files")
    if not files:
        raise FormatError(f"{cache.path} records no checksums (it was extracted before needle recorded checksums), "
                          "so its bytes cannot be verified; extract it again to get them.")
    return verify_files(cache.path, files)


def _check_structure(path: Path, manifest: dict[str, Any]) -> None:
    """The cheap checks: each layer file's header and size match the manifest, and each table's footer reads."""
    shape = (int(manifest["n_rows"]), int(manifest["width"]))
    for layer in manifest["layers"]:
        file = path / layer_file(layer)
        try:
            with open(file, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                header = read_header(handle)
                offset = handle.tell()
        except (OSError, ValueError) as exc:
            raise FormatError(f"{file} has no valid .npy header ({exc}); {_REMEDY}.") from None
        found_shape, _, dtype = header
        if tuple(found_shape) != shape or dtype != np.dtype(manifest["dtype"]):
            raise FormatError(f"{file} holds a {found_shape} {dtype} matrix but the manifest says {shape} "
                              f"{manifest['dtype']}; {_REMEDY}.")
        expected = offset + shape[0] * shape[1] * dtype.itemsize
        if file.stat().st_size != expected:
            raise FormatError(f"{file} is {file.stat().st_size} bytes, but a {shape} {dtype} matrix takes {expected}: "
                              f"it was truncated; {_REMEDY}.")
    for name in ("rows.parquet", "labels.parquet"):
        try:
            pq.read_metadata(path / name)
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(f"{path / name} is not a readable table ({str(exc).splitlines()[0][:120]}); "
                              f"{_REMEDY}.") from None
