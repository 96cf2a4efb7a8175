"""Sharded extraction: one dataset's sequences split into shards, extracted apart, merged into one ActivationCache.

Extraction lays rows out in the order of its batch plan (longest sequences
first, :mod:`needle.activations.stream`). Shard ``i`` of ``n`` is a
contiguous run of that plan's batches, cut so that every shard holds about
``1/n`` of the tokens: its sequences are whole, its batches are padded
exactly as in a single run, so its rows are the same bytes as the single
run's rows ``[a_i, b_i)``. A shard directory (``needle.ActivationShard``)
holds the full row and label tables, its block of every layer matrix, and the
full cache's manifest plus ``shard`` (index, count, rows, batches); it is
written and resumed like a cache (``.<name>.partial``).

:func:`merge_shards` checks that the shards are one extraction's (same
manifest, same tables, every index once) and writes the blocks end to end:
the result is byte-identical to ``extract`` without shards. It needs neither
the model nor Ray (``needle cache merge``), so shards may come from several
machines. :func:`extract_sharded` runs the shards here one after another, or
as Ray tasks (one GPU or one CPU each), then merges them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from needle._checksums import check_sizes, file_records
from needle._io import check_replaceable, read_json, read_manifest, replace_path, write_json_atomic
from needle.errors import FormatError, InputError

__all__ = ["SHARD_FORMAT", "ActivationShard", "load_shard", "shard_plan", "merge_shards", "extract_sharded",
           "shard_dir"]

SHARD_FORMAT = "needle.ActivationShard"
_REMEDY = "extract that shard again"
_CHUNK = 1 << 24  # bytes copied per read when merging


@dataclasses.dataclass(frozen=True)
class ActivationShard:
    """A finished shard directory: its manifest (the full cache's, with ``shard`` and this shard's ``files``)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        return int(self.manifest["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.manifest["shard"]["count"])

    @property
    def rows(self) -> tuple[int, int]:
        """Rows ``[a, b)`` of the full cache this shard holds."""
        a, b = self.manifest["shard"]["rows"]
        return int(a), int(b)


def shard_plan(plan, lengths: np.ndarray, shard: tuple[int, int]):
    """The part of an extraction plan that shard ``(i, n)`` runs, and its ``shard`` record.

    Parameters
    ----------
    plan : extraction plan
        ``batches`` (sequence ids per batch), ``unit_order`` and ``batch_row_bounds`` of the full run.
    lengths : ndarray of shape (n_sequences,)
        Tokens per sequence (the shards balance tokens, the forward passes' cost).
    shard : (int, int)
        ``(index, count)``, ``0 <= index < count``.

    Returns
    -------
    part : extraction plan
        Batches ``[p, q)`` of ``plan``, with rows counted from the shard's first.
    record : dict
        ``{"index", "count", "rows": [a, b], "batches": [p, q]}``.
    """
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise InputError(f"shard must be (index, count), e.g. (0, 4), not {shard!r}.") from None
    n_batches = len(plan.batches)
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: the index must be in 0..count-1 and count >= 1.")
    if count > n_batches:
        raise InputError(f"{count} shards of a dataset of {n_batches} batches: every shard needs one; use at most "
                         f"{n_batches} shards, or a smaller batch_tokens.")
    tokens = np.array([int(lengths[b].sum()) for b in plan.batches], np.int64)
    cum = np.concatenate([[0], np.cumsum(tokens)])
    cuts = np.searchsorted(cum, cum[-1] * np.arange(count + 1) / count, side="left")
    # At least one batch per shard, in order: cut k lies in [k, n_batches - count + k].
    cuts = np.clip(cuts, np.arange(count + 1), n_batches - count + np.arange(count + 1))
    cuts = np.maximum.accumulate(cuts)
    cuts[0], cuts[-1] = 0, n_batches
    p, q = int(cuts[index]), int(cuts[index + 1])
    bounds = plan.batch_row_bounds
    a, b = int(bounds[p]), int(bounds[q])
    part = dataclasses.replace(plan, batches=plan.batches[p:q], unit_order=plan.unit_order[a:b],
                               batch_row_bounds=bounds[p : q + 1] - a)
    return part, {"index": index, "count": count, "rows": [a, b], "batches": [p, q]}


def shard_dir(out: str | os.PathLike, index: int, count: int) -> Path:
    """Where :func:`extract_sharded` keeps shard ``index`` of the cache ``out``: ``<out>.shards/shard-00i-of-00n``."""
    out = Path(out)
    return out.with_name(f"{out.name}.shards") / f"shard-{index:03d}-of-{count:03d}"


def load_shard(path: str | os.PathLike) -> ActivationShard:
    """Open a finished shard (cheap checks: manifest, file sizes).

    Raises
    ------
    FormatError
        Not a shard, or files missing or of the wrong size.
    """
    from needle.activations.cache import CACHE_FORMAT_VERSION

    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if not path.is_dir() and partial.exists():
        raise FormatError(f"{path} is not finished: an interrupted shard extraction is waiting at {partial}; run "
                          "the same extraction again to resume it.")
    manifest = read_manifest(path, SHARD_FORMAT, CACHE_FORMAT_VERSION, _REMEDY, required=("shard", "files", "layers"))
    check_sizes(path, manifest["files"], _REMEDY)
    return ActivationShard(path, manifest)


def _whole_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a shard's manifest says of the whole cache (without its own ``shard`` and ``files``)."""
    return {k: v for k, v in manifest.items() if k not in ("shard", "files")}


def merge_shards(shards: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                 verify: bool = True):
    """Join the shards of one extraction into its ActivationCache (byte-identical to a single run's).

    Parameters
    ----------
    shards : sequence of path-like
        Every shard directory of the extraction, in any order.
    out : path-like
        The cache directory to write (atomically: ``.<name>.partial``, then renamed).
    overwrite : bool, default False
        Replace an existing cache at ``out``.
    verify : bool, default True
        Check each shard file's SHA-256 against its manifest while copying (no extra read).

    Returns
    -------
    ActivationCache

    Raises
    ------
    InputError
        Shards of different extractions, a shard missing or given twice, or ``out`` exists.
    FormatError
        A damaged shard.
    """
    from needle._locks import exclusive_lock
    from needle.activations.cache import CACHE_FORMAT, layer_file, load_cache
    from needle.activations.extract import _allocate_npy, _data_offset

    if not shards:
        raise InputError("no shards given: pass every shard directory of the extraction.")
    opened = sorted((load_shard(p) for p in shards), key=lambda s: s.index)
    first = opened[0]
    whole = _whole_manifest(first.manifest)
    for shard in opened[1:]:
        other = _whole_manifest(shard.manifest)
        if other != whole:
            keys = sorted(k for k in set(whole) | set(other) if whole.get(k) != other.get(k))
            raise InputError(f"{shard.path} and {first.path} are shards of different extractions (they differ in "
                             f"{', '.join(keys)}); merge the shards of one extraction only.")
        for name in ("rows.parquet", "labels.parquet"):
            if shard.manifest["files"][name] != first.manifest["files"][name]:
                raise InputError(f"{shard.path / name} differs from {first.path / name}: not shards of one "
                                 "extraction.")
    count = first.count
    indices = [s.index for s in opened]
    if len(opened) != count or indices != list(range(count)) or any(s.count != count for s in opened):
        missing = sorted(set(range(count)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise InputError(f"an extraction in {count} shards needs each of 0..{count - 1} once; "
                         + (f"missing {missing}" if missing else "") + (" " if missing and repeated else "")
                         + (f"given twice: {repeated}" if repeated else "")
                         + ("counts differ between the shards" if not missing and not repeated else "") + ".")
    n_rows, width = int(whole["n_rows"]), int(whole["width"])
    ends = [s.rows for s in opened]
    if ends[0][0] != 0 or ends[-1][1] != n_rows or any(a[1] != b[0] for a, b in zip(ends, ends[1:])):
        raise FormatError(f"the shards' rows {ends} do not tile the cache's {n_rows} rows; {_REMEDY}s.")

    out = Path(out)
    dtype = np.dtype(whole["dtype"])
    with exclusive_lock(out, what="a merge of shards"):
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise InputError(f"{out} already exists; choose another --out or pass overwrite=True / --overwrite.")
            check_replaceable(out, CACHE_FORMAT)
        partial = out.with_name(f".{out.name}.partial")
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        try:
            for name in ("rows.parquet", "labels.parquet"):
                _copy_checked(first.path / name, partial / name, first.manifest["files"][name], verify)
            for layer in whole["layers"]:
                name = layer_file(layer)
                target = partial / name
                _allocate_npy(target, (n_rows, width), dtype.type)
                base = _data_offset(target)
                with open(target, "r+b") as handle:
                    for shard in opened:
                        handle.seek(base + shard.rows[0] * width * dtype.itemsize)
                        _append_block(shard.path / name, handle, shard.manifest["files"][name], verify)
                    os.fsync(handle.fileno())
            manifest = dict(whole, format=CACHE_FORMAT)
            names = ["rows.parquet", "labels.parquet", *(layer_file(layer) for layer in whole["layers"])]
            manifest["files"] = file_records(partial, names)
            write_json_atomic(partial / "manifest.json", manifest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        replace_path(partial, out)
    return load_cache(out)


def _copy_checked(source: Path, target: Path, record: dict[str, Any], verify: bool) -> None:
    with open(target, "wb") as handle:
        _append_block(source, handle, record, verify, skip_header=False)


def _append_block(source: Path, handle, record: dict[str, Any], verify: bool, *, skip_header: bool = True) -> None:
    """Write ``source``'s bytes (after its .npy header, when ``skip_header``) at ``handle``'s position, hashing all of
    the file on the way when ``verify``."""
    from needle.activations.extract import _data_offset

    digest = hashlib.sha256()
    start = _data_offset(source) if skip_header else 0
    with open(source, "rb") as src:
        position = 0
        while chunk := src.read(_CHUNK):
            if verify:
                digest.update(chunk)
            if position + len(chunk) > start:
                handle.write(chunk[max(0, start - position):])
            position += len(chunk)
    if verify and digest.hexdigest() != record["sha256"]:
        raise FormatError(f"{source} does not match the checksum its shard recorded: it is damaged; {_REMEDY}.")


def extract_sharded(model: str, dataset, out: str | os.PathLike, *, shards: int, engine: str = "local",
                    address: str | None = None, device: str | None = None, model_dtype: str | None = None,
                    keep_shards: bool = False, overwrite: bool = False, **options: Any):
    """Extract in ``shards`` shards (here, or one Ray task each) and merge them into the cache ``out``.

    Parameters
    ----------
    model : str
        Name, directory or hub id: every worker loads the model itself.
    dataset : ProbeDataset or path-like
        With Ray, a path must be readable at the same place on every node; a
        ProbeDataset object is put into the object store once.
    out : path-like
        The cache to write; shards are kept in ``<out>.shards`` (:func:`shard_dir`) until merged.
    shards : int
        Number of shards.
    engine : {"local", "ray"}
        ``"local"`` runs the shards one after another in this process; ``"ray"``
        runs each as a Ray task needing one GPU (``device`` cuda…) or one CPU.
    address : str, optional
        The Ray cluster (see :func:`needle.probing.engines.connect`).
    device, model_dtype : str, optional
        Passed to :func:`needle.load_model` (``model_dtype``: float32, float16, bfloat16).
    keep_shards : bool, default False
        Keep the shard directories after the merge.
    overwrite : bool, default False
        Replace an existing cache at ``out`` and extract every shard afresh.
    **options
        Further :func:`needle.extract` arguments (layers, site, dtype, batch_tokens, …).

    Returns
    -------
    ActivationCache

    Notes
    -----
    Rerunning after an interruption reuses every finished shard and resumes each interrupted one (a
    finished shard is not re-checked against the settings before the merge, which refuses shards of
    different extractions; pass ``overwrite=True`` after changing settings).
    """
    from needle.probing.engines import ENGINES

    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}.")
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InputError(f"shards must be an integer >= 1, got {shards!r}.")
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass overwrite=True / --overwrite.")
    if not isinstance(model, (str, os.PathLike)):
        raise InputError("extract_sharded needs the model's name or directory (every shard loads it), not a loaded "
                         "model.")
    options = {**options, "progress": options.get("progress", engine == "local"), "overwrite": overwrite}
    dirs = [shard_dir(out, i, shards) for i in range(int(shards))]
    args = (str(model), device, model_dtype, dataset, options)
    if engine == "local":
        for i, where in enumerate(dirs):
            _one_shard(*args, where, (i, int(shards)))
    else:
        from needle.probing.engines import connect, import_ray

        ray = import_ray()
        own = connect(address, None)
        refs = []
        try:
            if not isinstance(dataset, (str, os.PathLike)):
                args = (*args[:3], ray.put(dataset), options)
            gpu = str(device or "cpu").startswith("cuda")
            remote = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=3,
                                retry_exceptions=False)(_one_shard)
            refs = [remote.remote(*args, str(where), (i, int(shards))) for i, where in enumerate(dirs)]
            ray.get(refs)  # a lost worker's shard is retried by Ray and resumes from its last commit
        finally:
            from needle.probing.engines import cancel

            cancel(ray, refs)
            if own:
                ray.shutdown()
    cache = merge_shards(dirs, out, overwrite=overwrite)
    if not keep_shards:
        shutil.rmtree(dirs[0].parent, ignore_errors=True)
    return cache


def _one_shard(model: str, device, model_dtype, dataset, options: dict[str, Any], where, shard) -> str:
    """Extract one shard unless it is finished already (same settings); return its directory."""
    from needle.activations.extract import extract
    from needle.models import load_model

    where = Path(where)
    if not options.get("overwrite") and where.is_dir() and (where / "manifest.json").is_file():
        found = read_json(where / "manifest.json")
        if isinstance(found, dict) and found.get("format") == SHARD_FORMAT:
            return str(where)  # finished: a merge checks it belongs with the others
    adapter = load_model(model, device=device or "cpu", dtype=model_dtype)
    extract(adapter, dataset, where, shard=tuple(shard), **options)
    return str(where)
