"""Identity of a tokenizer (what a dataset records so extraction can refuse a mismatch), and resolving one."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from needle.errors import InputError

__all__ = ["fast_tokenizer", "tokenizer_fingerprint", "tokenizer_info"]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's vocabulary (token → id, special tokens included).

    Two tokenizers with the same fingerprint map every string to the same ids
    as far as the vocabulary is concerned; the class name and normalisation
    are recorded beside it in :func:`tokenizer_info`.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase or tokenizers.Tokenizer
    """
    vocab = tokenizer.get_vocab()
    canonical = json.dumps(sorted(vocab.items(), key=lambda item: item[1]), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """What a ProbeDataset records about the tokenizer that made it."""
    return {
        "name_or_path": str(getattr(tokenizer, "name_or_path", "") or ""),
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer.get_vocab()),
        "fingerprint": tokenizer_fingerprint(tokenizer),
    }


def fast_tokenizer(tokenizer: Any) -> Any:
    """A fast tokenizer from a tokenizer object or a model name / path / alias.

    Builders label tokens from character offsets, which only fast (Rust) tokenizers give.

    Raises
    ------
    InputError
        No tokenizer, or a slow one.
    """
    if tokenizer is None:
        raise InputError("tokenizer is required: pass a fast tokenizer or a model name such as 'minilm'.")
    if isinstance(tokenizer, (str, os.PathLike)):
        from needle.models.loading import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; labels need character offsets "
            "(load it with use_fast=True)."
        )
    return tokenizer
