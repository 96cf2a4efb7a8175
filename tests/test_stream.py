"""The shared streamer: padding, resuming a plan, and the one model/input compatibility check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model
from needle.activations.stream import check_model_inputs, pad_batch, plan_batches, stream_batches
from needle.errors import InputError, TokenizerMismatchError
from needle.models import adapt
from needle.neurons.corpus import Corpus


def test_pad_batch_on_both_sides():
    tokens = [np.array([5, 6]), np.array([7, 8, 9])]
    masks = [np.array([1, 0]), np.array([1, 1, 1])]
    ids, mask, left = pad_batch(tokens, masks, np.array([1, 0]), pad_id=3, side="left")
    assert ids.tolist() == [[7, 8, 9], [3, 5, 6]] and mask.tolist() == [[1, 1, 1], [0, 1, 0]]
    assert left.tolist() == [0, 1] and ids.dtype == mask.dtype == torch.long
    ids, mask, left = pad_batch(tokens, None, np.array([0, 1]), pad_id=3)
    assert ids.tolist() == [[5, 6, 3], [7, 8, 9]] and mask.tolist() == [[1, 1, 0], [1, 1, 1]] and left.tolist() == [0, 0]
    with pytest.raises(InputError, match="padding_side"):
        pad_batch(tokens, None, np.array([0]), pad_id=0, side="middle")


def test_stream_resumes_a_plan_and_corpus_batches_use_it():
    tokens = [np.arange(1, n + 1) for n in (4, 9, 2, 9, 5)]
    plan = plan_batches(np.array([len(t) for t in tokens]), np.arange(5), batch_tokens=20, max_batch_size=4)
    streamed = list(stream_batches(tokens, None, plan, pad_id=0, start=1))
    assert [p.index for p in streamed] == list(range(1, len(plan)))
    assert [p.sequences.tolist() for p in streamed] == [b.tolist() for b in plan[1:]]
    corpus = Corpus(tokens, groups=[str(i) for i in range(5)])
    for batch, padded in zip(corpus.batches(20, 4), stream_batches(tokens, None, plan, pad_id=0)):
        assert batch.sequences.tolist() == padded.sequences.tolist()
        assert torch.equal(batch.input_ids, padded.input_ids) and torch.equal(batch.attention_mask, padded.attention_mask)


def test_one_compatibility_check_for_datasets_and_corpora(bpe_tokenizer):
    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny")
    vocab = adapter.model.get_input_embeddings().num_embeddings
    with pytest.raises(TokenizerMismatchError, match=f"the dataset has token id {vocab} but tiny embeds only"):
        check_model_inputs(adapter, [np.array([1, vocab])], what="dataset", shorten="x")
    with pytest.raises(InputError, match="the corpus has token id"):
        Corpus([np.array([1, vocab])], groups=["a"]).check_model(adapter)
    with pytest.raises(InputError, match="takes at most 128; use a smaller context_length"):
        Corpus([np.ones(129, np.int64)], groups=["a"]).check_model(adapter)
    with pytest.raises(InputError, match="rebuild it with --context-length 128 or less"):
        check_model_inputs(adapter, [np.ones(129, np.int64)], what="dataset",
                           shorten="rebuild it with --context-length {max} or less")
    check_model_inputs(adapter, [np.ones(128, np.int64)], what="dataset", shorten="x")
