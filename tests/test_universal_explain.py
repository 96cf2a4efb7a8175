"""Neuron families by variance reduction (Eq. 3.4): the score against its definition, streamed against batch,
the vocabulary labellings, and a neuron built to fire on one token found by its unigram test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model
from needle.errors import InputError
from needle.models import adapt
from needle.universal.explain import (
    VarianceReduction,
    explain_neurons,
    family_of,
    variance_reduction,
    vocabulary_labels,
)
from needle.universal.tokens import pack_texts


def test_variance_reduction_is_its_definition_and_streams():
    rng = np.random.default_rng(0)
    n = 3000
    labels = rng.random((n, 4)) < [0.1, 0.5, 0.0, 0.3]
    values = rng.standard_normal((n, 3)) + 1e3
    values[:, 0] += 5 * labels[:, 0]  # neuron 0 is explained by label 0
    by_definition = variance_reduction(values, labels)
    # Eq. 3.4 written out for one pair, with numpy's population variances
    y, v = labels[:, 0], values[:, 0]
    beta = y.mean()
    assert by_definition[0, 0] == pytest.approx(1 - ((1 - beta) * v[~y].var() + beta * v[y].var()) / v.var())
    assert by_definition[0, 0] > 0.6 and abs(by_definition[1, 0]) < 0.01 and (by_definition[2] == 0).all()
    streamed = VarianceReduction(4, 3)
    for i in range(0, n, 250):
        streamed.update(torch.from_numpy(values[i:i + 250]), torch.from_numpy(labels[i:i + 250]))
    np.testing.assert_allclose(streamed.scores(), by_definition, atol=1e-9)
    with pytest.raises(InputError, match="two tokens"):
        VarianceReduction(1, 1).scores()


def test_vocabulary_labels_read_the_token_strings(bpe_tokenizer):
    names, table = vocabulary_labels(bpe_tokenizer, unigram_ids=[5])
    ids = {t: bpe_tokenizer.convert_tokens_to_ids(t) for t in ("a", "Ġthe", "5", "The")}
    col = {n: table[:, j] for j, n in enumerate(names)}
    assert col["is_letter_a"][ids["a"]] and not col["is_letter_a"][ids["Ġthe"]]
    assert col["begins_with_t"][ids["Ġthe"]] and col["begins_with_t"][ids["The"]]
    assert col["leading_space"][ids["Ġthe"]] and not col["leading_space"][ids["The"]]
    assert col["contains_digit"][ids["5"]] and not col["contains_digit"][ids["a"]]
    assert col[f"unigram:{bpe_tokenizer.decode([5])!r}"].sum() == 1
    assert not table[bpe_tokenizer.eos_token_id].any()  # specials have no property
    assert family_of("prev:is_letter_a") == "previous-token" and family_of("is_letter_a") == "alphabet"
    assert family_of("unigram:'x'") == "unigram" and family_of("contains_digit") == "vocabulary"


def test_a_neuron_wired_to_one_token_is_explained_by_its_unigram(bpe_tokenizer):
    tokenizer = bpe_tokenizer
    model = adapt(build_model("gpt_neox", len(tokenizer), seed=4, n_layers=1), tokenizer)
    the = tokenizer.convert_tokens_to_ids("Ġthe")
    with torch.no_grad():  # make layer 0 neuron 5 read (almost only) the embedding of " the"
        embedding = model.model.get_input_embeddings().weight
        mlp_in = model.mlp_in(0)
        direction = embedding[the] - embedding.mean(0)
        mlp_in.weight[5] = 60 * direction / direction.norm()
        mlp_in.bias[5] = -3.0
    texts = ["the cat and the dog saw the bird in the tree by the lake. A fox ran past a house."] * 12
    table = explain_neurons(model, pack_texts(texts, tokenizer, 32), n_unigrams=30, top=2)
    best = table[(table["neuron"] == 5) & (table["rank"] == 0)].iloc[0]
    assert best["test"] == "unigram:' the'" and best["family"] == "unigram" and best["score"] > 0.5
    assert set(table["rank"]) == {0, 1} and len(table) == 2 * model.n_neurons
