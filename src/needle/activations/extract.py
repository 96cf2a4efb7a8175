"""Extraction: run a model over a ProbeDataset and keep only the activations the probes need.

Sequences are batched by length (longest first, under a token budget; see
:mod:`needle.activations.stream`), run through the model with hooks on the
requested layers only, and reduced to one row per distinct labelled unit (a
token position, or a span's mean/max). Rows are laid out in batch order, so each batch fills one contiguous block of
every layer file: memory stays bounded by the batch, and an interrupted run
resumes after its last completed batch with byte-identical results.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from needle._checksums import file_records, write_parquet
from needle._io import check_replaceable, read_json, replace_path, write_json_atomic
from needle._locks import exclusive_lock
from needle._version import __version__
from needle.activations.cache import CACHE_FORMAT, CACHE_FORMAT_VERSION, ActivationCache, layer_file, load_cache
from needle.activations.shard import SHARD_FORMAT, load_shard, shard_plan
from needle.activations.stream import check_model_inputs, plan_batches, stream_batches
from needle.datasets.format import AGGREGATIONS, ProbeDataset, load_dataset
from needle.datasets.tokenizer_info import tokenizer_fingerprint
from needle.errors import InputError, TokenizerMismatchError
from needle.models.base import ModelAdapter
from needle.models.sites import Site, Transform, get_site

__all__ = ["extract", "plan_batches"]

_CACHE_DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class _Plan:
    batches: list[np.ndarray]
    """Sequence ids of each batch, longest first."""
    unit_order: np.ndarray
    """Unit index of each row (rows are in batch order)."""
    batch_row_bounds: np.ndarray
    """Rows ``[bounds[i], bounds[i + 1])`` belong to batch ``i``."""


def extract(
    model: ModelAdapter | str,
    dataset: ProbeDataset | str | os.PathLike,
    out: str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    site: str | Site = "post",
    transform: Transform | None = None,
    batch_tokens: int = 8192,
    max_batch_size: int = 64,
    dtype: str = "float16",
    padding_side: str = "right",
    device: str | None = None,
    overwrite: bool = False,
    check_tokenizer: bool = True,
    progress: bool = True,
    checkpoint_seconds: float = 30.0,
    callback: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> ActivationCache:
    """Extract activations at a dataset's labelled examples into an ActivationCache.

    Parameters
    ----------
    model : ModelAdapter or str
        An adapter (:func:`needle.load_model`) or a name to load.
    dataset : ProbeDataset or path-like
        A dataset or the directory of a saved one (the path is recorded).
    out : path-like
        Directory of the cache to write. Work in progress lives in
        ``.<name>.partial`` beside it; calling again with the same arguments
        resumes there.
    layers : sequence of int, optional
        Layers to keep (default: all).
    site : str or Site, default "post"
        Where to read (:mod:`needle.models.sites`): ``mlp.hook_post`` (the
        neurons; short name ``post``), ``mlp.hook_pre`` (``pre``),
        ``hook_resid_post`` (``resid``), ``hook_resid_pre``, ``hook_resid_mid``,
        ``attn.hook_z``, ``hook_attn_out`` or ``hook_mlp_out``.
    transform : Transform, optional
        Applied to every position's activations inside the capture, before
        span aggregation and storage (e.g. ``LinearMap.pca(fitted)``). The
        cache's site id gets the transform's name as a suffix and the
        manifest records its parameters.
    batch_tokens : int, default 8192
        Padded tokens per forward pass (bounds memory).
    max_batch_size : int, default 64
    dtype : {"float16", "float32"}
        Storage type of the layer matrices; aggregates are computed in float32 first.
    padding_side : {"right", "left"}
        Both give the same activations (positions come from the mask).
    device : str, optional
        Moves the model there when given.
    overwrite : bool, default False
        Replace an existing cache at ``out`` (and discard any partial run).
    check_tokenizer : bool, default True
        Refuse a dataset whose tokenizer fingerprint differs from the model's.
    progress : bool, default True
        Show a progress bar with tokens/s.
    checkpoint_seconds : float, default 30.0
        Commit progress (``fsync`` the layer files, then record the batches
        done) at most this often, and at the end. A resumed run redoes the
        batches after the last commit, which rewrites the same bytes; 0
        commits after every batch.
    callback : callable, optional
        Called as ``callback(batches_done, n_batches)`` after each batch is
        written (used to report or to interrupt).
    shard : (int, int), optional
        ``(i, n)``: extract only shard ``i`` of ``n`` (its sequences, whole
        batches of the full plan) into an ``ActivationShard`` at ``out``,
        resumable like a whole extraction; :func:`needle.activations.shard.merge_shards`
        joins the ``n`` shards into the cache this call would write without it, byte for byte.

    Returns
    -------
    ActivationCache
        (An :class:`~needle.activations.shard.ActivationShard` when ``shard`` is given.)
    """
    if isinstance(model, (str, os.PathLike)):
        from needle.models import load_model

        model = load_model(model, device=device or "cpu")
    else:
        if not isinstance(model, ModelAdapter):  # a HookedTransformer, an nnsight model, a bare transformers model
            from needle.models import adapt

            model = adapt(model)
        if device is not None:
            model.model.to(device)
    dataset_path = None
    if not isinstance(dataset, ProbeDataset):
        dataset_path = str(Path(dataset).resolve())
        dataset = load_dataset(dataset)
    site = get_site(site, transform)
    layers = list(range(model.n_layers)) if layers is None else sorted(set(int(l) for l in layers))
    for layer in layers:
        model.hook_point(site, layer)  # refuses missing layers and sites the architecture lacks, before any work
    if dtype not in _CACHE_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(_CACHE_DTYPES)}, not {dtype!r}.")
    if padding_side not in ("right", "left"):
        raise InputError(f"padding_side must be 'right' or 'left', not {padding_side!r}.")
    if batch_tokens < 1 or max_batch_size < 1:
        raise InputError("batch_tokens and max_batch_size must be positive.")
    _check_compatible(model, dataset, check_tokenizer)

    out = Path(out)
    # One extraction per destination: a second one would replace the first's finished cache at its final rename.
    with exclusive_lock(out, what="an extraction"):
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise InputError(f"{out} already exists; choose another --out or pass overwrite=True / --overwrite.")
            check_replaceable(out, CACHE_FORMAT if shard is None else SHARD_FORMAT)
        partial = out.with_name(f".{out.name}.partial")
        units = dataset.units()
        lengths = np.array([len(t) for t in dataset.tokens], np.int64)
        plan = _make_plan(units, lengths, batch_tokens, max_batch_size)
        width = site.width(model)
        manifest = _manifest(model, dataset, dataset_path, site, layers, dtype, width, len(units),
                             {"batch_tokens": batch_tokens, "max_batch_size": max_batch_size,
                              "padding_side": padding_side})
        signature = {key: manifest[key] for key in ("model", "dataset_hash", "site", "transform", "layers", "dtype",
                                                    "params", "n_rows", "needle_version")}
        part = plan  # the batches this call runs: all, or one shard's (rows, tables and layout stay the full plan's)
        if shard is not None:
            part, manifest["shard"] = shard_plan(plan, lengths, shard)
            signature["shard"] = manifest["shard"]
            manifest["format"] = SHARD_FORMAT

        n_part = len(part.unit_order)
        done = _prepare_partial(partial, signature, overwrite,
                                lambda: _start(partial, plan, units, dataset, layers, width, dtype, n_part),
                                n_part * width * np.dtype(_CACHE_DTYPES[dtype]).itemsize * len(layers))
        _run_batches(model, dataset, part, units, partial, layers, site, dtype, width, padding_side, done, signature,
                     progress, checkpoint_seconds, callback)

        names = ["rows.parquet", "labels.parquet", *(layer_file(layer) for layer in layers)]
        manifest["files"] = file_records(partial, names)  # checked by `needle cache verify`; sizes on every load
        write_json_atomic(partial / "manifest.json", manifest)
        (partial / "state.json").unlink()
        replace_path(partial, out)
        return load_cache(out) if shard is None else load_shard(out)


# ---------------------------------------------------------------- checks
def _check_compatible(model: ModelAdapter, dataset: ProbeDataset, check_tokenizer: bool) -> None:
    if check_tokenizer:
        if model.tokenizer is None:
            raise TokenizerMismatchError(
                f"{model.model_id} was loaded without a tokenizer, so the dataset's tokenizer cannot be checked; "
                "load it with its tokenizer or pass check_tokenizer=False."
            )
        ours = tokenizer_fingerprint(model.tokenizer)
        theirs = dataset.tokenizer.get("fingerprint")
        if ours != theirs:
            raise TokenizerMismatchError(
                f"the dataset was tokenized with {dataset.tokenizer.get('name_or_path') or 'another tokenizer'} "
                f"(vocabulary fingerprint {str(theirs)[:12]}…), which is not {model.model_id}'s tokenizer "
                f"(fingerprint {ours[:12]}…). Rebuild the dataset with --model {_model_name(model)}."
            )
    check_model_inputs(model, dataset.tokens, what="dataset", shorten="rebuild it with --context-length {max} or less")


def _model_name(model: ModelAdapter) -> str:
    """What to pass as ``--model`` to get ``model`` again: its alias when it has one (a hub id fails offline)."""
    from needle.models.loading import ALIASES

    return next((alias for alias, (_, hub_id) in ALIASES.items() if hub_id == model.model_id), model.model_id)


# -------------------------------------------------------------- planning
def _make_plan(units, lengths: np.ndarray, batch_tokens: int, max_batch_size: int) -> _Plan:
    needed = np.unique(units.sequence).astype(np.int64)
    batches = plan_batches(lengths, needed, batch_tokens, max_batch_size)
    # Units are sorted by sequence: each sequence's units are one contiguous slice.
    first = np.searchsorted(units.sequence, needed, side="left")
    last = np.searchsorted(units.sequence, needed, side="right")
    slices = {int(s): (int(a), int(b)) for s, a, b in zip(needed, first, last)}
    order, bounds = [], [0]
    for batch in batches:
        for seq in batch:
            a, b = slices[int(seq)]
            order.append(np.arange(a, b))
        bounds.append(bounds[-1] + sum(slices[int(s)][1] - slices[int(s)][0] for s in batch))
    return _Plan(batches, np.concatenate(order) if order else np.zeros(0, np.int64), np.asarray(bounds, np.int64))


def _manifest(model, dataset, dataset_path, site, layers, dtype, width, n_rows, params) -> dict[str, Any]:
    import transformers

    description = model.describe()
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "needle_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "model_id": description["model_id"],
        "model": description,
        "site": site.id,
        "basis": site.basis,
        "transform": site.describe()["transform"],
        "hook_names": [site.hook_name(layer) for layer in layers],
        "layers": layers,
        "dtype": dtype,
        "width": width,
        "n_rows": n_rows,
        "dataset_hash": dataset.content_hash(),
        "dataset": {
            "path": dataset_path,
            "builder": dataset.builder,
            "tokenizer": dataset.tokenizer,
            "n_sequences": dataset.n_sequences,
        },
        "features": dataset.features,
        "params": params,
    }


# ---------------------------------------------------------- partial state
def _prepare_partial(partial: Path, signature: dict, overwrite: bool, start: Callable[[], None],
                     layer_bytes: int) -> int:
    """Return the number of batches already done in ``partial`` (starting it if needed).

    Refuses to start (or resume) when the disk lacks room for the rest of the
    layer files (``layer_bytes`` in all), rather than filling it up over a long run.
    """
    state_path = partial / "state.json"
    if partial.exists() and not overwrite and state_path.is_file():
        state = read_json(state_path)
        if state.get("signature") == signature:
            written = sum(f.stat().st_blocks * 512 for f in partial.glob("layer_*.npy"))  # the files are sparse
            _check_space(partial, layer_bytes - written, resuming=True)
            return int(state["batches_done"])
        raise InputError(
            f"an interrupted extraction with different settings is at {partial}; "
            "delete it, or pass overwrite=True / --overwrite to start again."
        )
    if partial.exists():
        shutil.rmtree(partial)
    _check_space(partial.parent, layer_bytes, resuming=False)
    partial.mkdir(parents=True)
    start()
    write_json_atomic(state_path, {"signature": signature, "batches_done": 0})
    return 0


def _check_space(where: Path, needed: int, *, resuming: bool) -> None:
    """Refuse to extract when the file system at ``where`` has less free space than ``needed`` bytes (plus 1 %)."""
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if needed > 0 and free < needed * 1.01:
        state = f"the interrupted extraction at {where} needs" if resuming else "the activation cache needs"
        raise InputError(f"not enough disk space: {state} {_gib(needed)} more and {where} has {_gib(free)} free. "
                         "Free some space, extract fewer --layers, or choose another --out.")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def _start(partial: Path, plan: _Plan, units, dataset: ProbeDataset, layers, width: int, dtype: str,
           n_layer_rows: int) -> None:
    """Write the row and label tables of the whole ``plan`` and size the layer files for ``n_layer_rows`` rows."""
    rows_units = plan.unit_order
    seq = units.sequence[rows_units]
    write_parquet(
        pa.table({
            "row": pa.array(np.arange(len(rows_units), dtype=np.int64)),
            "sequence": pa.array(seq.astype(np.int32)),
            "start": pa.array(units.start[rows_units].astype(np.int32)),
            "end": pa.array(units.end[rows_units].astype(np.int32)),
            "aggregation": pa.array(np.asarray(AGGREGATIONS, dtype=object)[units.aggregation[rows_units]].tolist(), pa.string()),
            "skip": pa.array(units.skip[rows_units].astype(np.int32)),
            "group": pa.array([str(g) for g in dataset.groups[seq]], pa.string()),
        }),
        partial / "rows.parquet",
    )
    unit_row = np.empty(len(rows_units), np.int64)
    unit_row[rows_units] = np.arange(len(rows_units))
    example_rows = unit_row[units.example_unit]
    names = np.asarray(dataset.feature_names, dtype=object)
    write_parquet(
        pa.table({
            "feature": pa.array(names[dataset.examples.feature].tolist(), pa.string()).dictionary_encode(),
            "row": pa.array(example_rows),
            "label": pa.array(dataset.examples.label.astype(np.float64)),
            "split": pa.array(dataset.examples.split.astype(np.int8)),
        }),
        partial / "labels.parquet",
    )
    for layer in layers:
        _allocate_npy(partial / layer_file(layer), (n_layer_rows, width), _CACHE_DTYPES[dtype])


def _allocate_npy(path: Path, shape: tuple[int, int], dtype: type) -> None:
    """Write a .npy header and size the file for ``shape``; rows are filled in later."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                       "fortran_order": False, "shape": shape})
        header = handle.tell()
        handle.truncate(header + shape[0] * shape[1] * np.dtype(dtype).itemsize)


def _data_offset(path: Path) -> int:
    with open(path, "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        return handle.tell()


# -------------------------------------------------------------- the loop
def _run_batches(model, dataset, plan, units, partial, layers, site, dtype, width, padding_side, done, signature,
                 progress, checkpoint_seconds, callback) -> None:
    import time

    from tqdm.auto import tqdm

    torch_dtype = torch.float16 if dtype == "float16" else torch.float32
    row_bytes = width * torch.tensor([], dtype=torch_dtype).element_size()
    offsets = {layer: _data_offset(partial / layer_file(layer)) for layer in layers}
    pad_id = getattr(model.tokenizer, "pad_token_id", None) or 0
    lengths = np.array([len(t) for t in dataset.tokens], np.int64)
    batch_tokens = np.array([int(lengths[b].sum()) for b in plan.batches], np.int64)
    bar = tqdm(total=int(batch_tokens.sum()), initial=int(batch_tokens[:done].sum()), unit="tok", unit_scale=True,
               desc=f"extract {site.id} L{layers[0]}–{layers[-1]}", disable=not progress, smoothing=0.1)
    handles = {layer: open(partial / layer_file(layer), "r+b") for layer in layers}

    def commit(batches_done: int) -> None:
        for handle in handles.values():
            os.fsync(handle.fileno())
        write_json_atomic(partial / "state.json", {"signature": signature, "batches_done": batches_done})

    last_commit = time.monotonic()
    try:
        for padded in stream_batches(dataset.tokens, dataset.attention_mask, plan.batches, pad_id=pad_id,
                                     side=padding_side, start=done):
            index = padded.index
            row_a, row_b = plan.batch_row_bounds[index], plan.batch_row_bounds[index + 1]
            gather = _Gather(padded.sequences, padded.pad_left, units, plan.unit_order[row_a:row_b], torch_dtype)
            rows = model.capture(padded.input_ids, padded.attention_mask, layers, site, reduce=gather)
            for layer in layers:
                values, storable = rows[layer]
                if not bool(storable.all()):
                    bad = int(gather.units_in_rows[int(torch.nonzero(~storable)[0, 0])])
                    raise InputError(
                        f"non-finite activation at layer {layer}, sequence {int(units.sequence[bad])}"
                        + (" (too large for float16: pass dtype='float32')" if dtype == "float16" else "")
                        + "; the model or its dtype is at fault."
                    )
                os.pwrite(handles[layer].fileno(), memoryview(values.numpy()).cast("B"),
                          offsets[layer] + int(row_a) * row_bytes)
            if index + 1 == len(plan.batches) or time.monotonic() - last_commit >= checkpoint_seconds:
                commit(index + 1)
                last_commit = time.monotonic()
            bar.update(int(batch_tokens[index]))
            if callback is not None:
                callback(index + 1, len(plan.batches))
    finally:
        for handle in handles.values():
            handle.close()
        bar.close()


class _Gather:
    """Reduces one layer's (batch, pos, width) activations to the batch's rows, inside the hook.

    Token units are one fancy-indexing gather; span units are reduced one by
    one (there is one per sequence at most, in practice). Aggregates are
    computed in float32, then cast to the storage dtype on the CPU.
    """

    def __init__(self, batch: np.ndarray, pad_left: np.ndarray, units, units_in_rows: np.ndarray, dtype: torch.dtype):
        slot = np.empty(int(batch.max()) + 1, np.int64)
        slot[batch] = np.arange(len(batch))
        self.units_in_rows = units_in_rows
        self.dtype = dtype
        b = slot[units.sequence[units_in_rows]]
        start = units.start[units_in_rows].astype(np.int64) + pad_left[b]
        is_token = units.aggregation[units_in_rows] == 0
        self.token_rows = torch.from_numpy(np.flatnonzero(is_token))
        self.token_b = torch.from_numpy(b[is_token])
        self.token_pos = torch.from_numpy(start[is_token])
        self.all_tokens = bool(is_token.all())
        self.spans = [
            (int(i), int(b[i]), int(start[i] + units.skip[units_in_rows[i]]),
             int(units.end[units_in_rows[i]] + pad_left[b[i]]), AGGREGATIONS[units.aggregation[units_in_rows[i]]])
            for i in np.flatnonzero(~is_token)
        ]

    def __call__(self, layer: int, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of this batch (storage dtype, CPU) and whether each is finite once stored."""
        device = acts.device
        tokens = acts[self.token_b.to(device), self.token_pos.to(device)]
        if self.all_tokens:
            out = tokens
        else:
            out = torch.empty((len(self.units_in_rows), acts.shape[-1]), dtype=torch.float32, device=device)
            out[self.token_rows.to(device)] = tokens.float()
            for row, b, a, z, how in self.spans:
                span = acts[b, a:z].float()
                out[row] = span.mean(0) if how == "mean" else span.amax(0)
        # Checked before the cast (float16 arithmetic is slow on CPUs); NaN fails the comparison.
        largest = out.abs().amax(dim=1).float()
        storable = largest <= torch.finfo(self.dtype).max
        return out.to("cpu", self.dtype), storable.cpu()
