"""A byte-level BPE tokenizer like GPT-NeoX's, trained with ``tokenizers`` on the toy corpus."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from needle.errors import InputError

__all__ = ["EOS_TOKEN", "PAD_TOKEN", "load_tokenizer_dir", "tokenizer_fingerprint", "train_tokenizer"]

#: GPT-NeoX's special tokens, with Pythia's ids (0 and 1).
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, *, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    As in GPT-NeoX: no prefix space, byte-level decoding, ``<|endoftext|>`` as
    the BOS, EOS and unknown token (id 0), ``<|padding|>`` as padding (id 1);
    no special tokens are added when encoding.

    Parameters
    ----------
    texts : iterable of str
    vocab_size : int, default 4096
        Final vocabulary size, the 256 byte symbols and the 2 special tokens
        included.
    min_frequency : int, default 2
        A pair seen fewer times is not merged.

    Returns
    -------
    transformers.PreTrainedTokenizerFast

    Raises
    ------
    InputError
        ``vocab_size`` below 258 (the bytes plus the special tokens) or no text.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    minimum = 256 + 2
    if vocab_size < minimum:
        raise InputError(f"vocab_size must be at least {minimum} (256 bytes + 2 special tokens), not {vocab_size}.")
    texts = [t for t in texts if t]
    if not texts:
        raise InputError("cannot train a tokenizer on no text; pass at least one non-empty text.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1 << 30,
        clean_up_tokenization_spaces=False,
    )


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the tokenizer's full serialisation (vocabulary, merges, normaliser, specials).

    Two models whose fingerprints agree tokenize every text identically, which
    is what correlating their neurons token by token needs.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"{type(tokenizer).__name__} is not a fast tokenizer; needle needs one.")
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def load_tokenizer_dir(path: str | os.PathLike):
    """A toy tokenizer saved with ``save_pretrained`` (a tokenizer directory or a toy model directory).

    Raises
    ------
    InputError
        ``path`` holds no ``tokenizer.json``, or the tokenizer lacks the toy's special tokens.
    """
    from transformers import PreTrainedTokenizerFast

    path = Path(path).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise InputError(f"{path} holds no tokenizer.json; pass a directory written by a toy training run "
                         "(or by --tokenizer on a first run), or a new directory to train the tokenizer into.")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    ids = tokenizer.convert_tokens_to_ids([EOS_TOKEN, PAD_TOKEN])
    if ids != [0, 1] or tokenizer.eos_token_id != 0 or tokenizer.pad_token_id != 1:
        raise InputError(f"the tokenizer in {path} does not have the toy's special tokens "
                         f"({EOS_TOKEN} = 0, {PAD_TOKEN} = 1); train one with needle toy train.")
    return tokenizer
