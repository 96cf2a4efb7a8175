"""Activations to train an SAE on: every token of local text, or the rows of an activation cache.

Text comes from files here — UD treebanks (``.conllu``/``.conllu.gz``: each
sentence's ``# text =`` line), Python sources (``.py``: the file in chunks of
lines) or plain text (one passage per line) — tokenized, cut into windows of
at most ``context`` tokens and run through the model. Special tokens ([CLS],
[SEP], BOS) are left out: their activations are unlike any word's, and the
probes never read them.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.sites import Site, get_site

__all__ = ["read_passages", "text_activations", "cache_activations"]

_TEXT_SUFFIXES = (".conllu", ".conllu.gz", ".py", ".txt", ".md")


def _files(sources: Iterable[str | os.PathLike]) -> list[Path]:
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_TEXT_SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"--text {source}: no such file or folder.")
    if not found:
        raise InputError(f"no text files ({', '.join(_TEXT_SUFFIXES)}) under {', '.join(map(str, sources))}.")
    return found


def read_passages(sources: Iterable[str | os.PathLike], *, lines_per_chunk: int = 20) -> Iterator[str]:
    """Passages of text from files or folders (deterministic order), as described in the module docstring."""
    for path in _files(sources):
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            raise InputError(f"cannot read {path} ({exc}).") from None
        if ".conllu" in path.name:
            yield from (line[len("# text = "):] for line in text.splitlines() if line.startswith("# text = "))
        elif path.suffix == ".py":
            lines = text.splitlines()
            for a in range(0, len(lines), lines_per_chunk):
                chunk = "\n".join(lines[a:a + lines_per_chunk]).strip()
                if chunk:
                    yield chunk
        else:
            yield from (line for line in (raw.strip() for raw in text.splitlines()) if line)


@torch.inference_mode()
def text_activations(model: ModelAdapter, passages: Iterable[str], *, layer: int, site: str | Site = "resid",
                     max_tokens: int = 100_000, context: int = 128, batch_size: int = 32) -> np.ndarray:
    """Activations of ``site`` at ``layer`` for every non-special token of ``passages``, until ``max_tokens``.

    Returns
    -------
    ndarray of shape (n_tokens, width), float32
    """
    if model.tokenizer is None:
        raise InputError(f"{model.model_id} was loaded without a tokenizer; text cannot be run through it.")
    site = get_site(site)
    model.hook_point(site, layer)
    tokenizer = model.tokenizer
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    limit = min(context, model.max_positions or context)
    chunks: list[np.ndarray] = []
    kept = 0
    batch: list[list[int]] = []

    def run(batch: Sequence[list[int]]) -> None:
        nonlocal kept
        width = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        acts = model.capture(ids, mask, [layer], site)[layer].float().cpu()
        keep = mask.bool() & ~torch.isin(ids, special)
        values = acts[keep].numpy()[: max_tokens - kept]
        chunks.append(values)
        kept += len(values)

    for passage in passages:
        ids = tokenizer(passage, truncation=True, max_length=limit)["input_ids"]
        if len(ids) < 2:
            continue
        batch.append(ids)
        if len(batch) == batch_size:
            run(batch)
            batch = []
            if kept >= max_tokens:
                break
    if batch and kept < max_tokens:
        run(batch)
    if not kept:
        raise InputError("the text gave no tokens to train on.")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def cache_activations(path: str | os.PathLike, layer: int) -> np.ndarray:
    """Rows of an (untransformed) activation cache's ``layer``, float32, shape (n_rows, width)."""
    from needle.activations import load_cache

    cache = load_cache(path)
    if cache.transform is not None:
        raise InputError(f"{path} holds a transformed basis ({cache.site}); train an SAE on raw activations.")
    if layer not in cache.layers:
        raise InputError(f"layer {layer} is not in {path} (it has {cache.layers}).")
    return np.asarray(cache.layer(layer), np.float32)
