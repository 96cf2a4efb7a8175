"""A small causal language model with learned weights, trained here on local text.

No pretrained causal LM can be downloaded in every environment, and random
weights have no features. ``needle.toy`` trains a Pythia-architecture
(GPT-NeoX) model of a few layers on the Python standard library and the
sentences of the Universal Dependencies treebanks, with its own byte-level BPE
tokenizer, and saves it in Hugging Face format so that
:func:`needle.models.load_model` loads it like Pythia.

>>> from needle.toy import gather_corpus, train_toy_model
>>> corpus = gather_corpus(ud="../shared/data/ud")          # doctest: +SKIP
>>> trained = train_toy_model("/tmp/toy", corpus)            # doctest: +SKIP
>>> trained.summary["heldout_loss"]                          # doctest: +SKIP
"""

from needle.toy.config import ToySize, gpt_neox_config
from needle.toy.corpus import (
                               TextUnit,
                               ToyCorpus,
                               gather_corpus,
                               language_of_treebank,
                               python_units,
                               split_units,
                               ud_units,
)
from needle.toy.seeds import FAMILY_FILE, shared_tokenizer, train_seed_family, write_family
from needle.toy.tokenizer import EOS_TOKEN, PAD_TOKEN, load_tokenizer_dir, tokenizer_fingerprint, train_tokenizer
from needle.toy.train import (
                               DEFAULT_MAX_MINUTES,
                               TrainedToy,
                               TrainSettings,
                               train_toy_model,
)

__all__ = [
    "DEFAULT_MAX_MINUTES",
    "EOS_TOKEN",
    "FAMILY_FILE",
    "PAD_TOKEN",
    "TextUnit",
    "ToyCorpus",
    "ToySize",
    "TrainSettings",
    "TrainedToy",
    "gather_corpus",
    "gpt_neox_config",
    "language_of_treebank",
    "load_tokenizer_dir",
    "python_units",
    "shared_tokenizer",
    "split_units",
    "tokenizer_fingerprint",
    "train_seed_family",
    "train_tokenizer",
    "train_toy_model",
    "ud_units",
    "write_family",
]
