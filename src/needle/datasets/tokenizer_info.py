"""Identity of a tokenizer: what a dataset records so extraction can refuse a mismatch."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["tokenizer_fingerprint", "tokenizer_info"]


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
