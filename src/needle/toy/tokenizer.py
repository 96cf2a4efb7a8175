"""A byte-level BPE tokenizer like GPT-NeoX's, trained with ``tokenizers`` on the toy corpus."""

from __future__ import annotations

from collections.abc import Iterable

from needle.errors import InputError

__all__ = ["EOS_TOKEN", "PAD_TOKEN", "train_tokenizer"]

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
