"""Output-side and causal analyses, checked against weights patched by hand and manual forward passes.

Ablating neuron i to a value v is the same model as one whose output
projection has column i zeroed and ``v · W_out[:, i]`` added to its bias
(or, at ``pre``, whose input row i is zeroed and bias set to v), so the
expected losses come from a patched copy of the model run through Hugging
Face's own loss — no hooks involved.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.stats
import torch

from model_zoo import build_model, hand_activations
from needle.errors import InputError
from needle.models import adapt
from needle.neurons import Corpus, ablate, ablated, ablation_losses, logit_effects, logit_statistics, weight_statistics

TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog.",
         "class Point:\n    x = 1\n", "I went to the store, and they said we're closed.", "return None  # ok"]
LABELS = ["code", "english", "code", "english", "code"]


@pytest.fixture(scope="module")
def neox(bpe_tokenizer):
    model = build_model("gpt_neox", len(bpe_tokenizer), seed=2)
    with torch.no_grad():  # a non-trivial final norm scale, so forgetting it would show
        model.gpt_neox.final_layer_norm.weight.uniform_(0.5, 1.5)
    return adapt(model, bpe_tokenizer, model_id="tiny-neox")


@pytest.fixture(scope="module")
def corpus(bpe_tokenizer):
    return Corpus.from_texts(TEXTS, bpe_tokenizer, context_length=10, labels=LABELS)


def patched(adapter, neurons_values, site="post"):
    """A copy of the HF model with each neuron fixed to its value through its weights."""
    model = copy.deepcopy(adapter.model)
    with torch.no_grad():
        for (layer, index), value in neurons_values.items():
            mlp = model.gpt_neox.layers[layer].mlp
            if site == "post":
                mlp.dense_4h_to_h.bias += value * mlp.dense_4h_to_h.weight[:, index]
                mlp.dense_4h_to_h.weight[:, index] = 0
            else:
                mlp.dense_h_to_4h.weight[index, :] = 0
                mlp.dense_h_to_4h.bias[index] = value
    return model


def hf_loss(model, tokens):
    ids = torch.from_numpy(tokens)[None]
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


def hand_means(adapter, corpus, neurons, site="post"):
    acts = {n: [] for n in neurons}
    for tokens in corpus.tokens:
        for layer, index in neurons:
            hand = hand_activations(adapter, torch.from_numpy(tokens)[None], layer)
            acts[(layer, index)].append(hand[site][:, index])
    return {n: float(torch.cat(v).double().mean()) for n, v in acts.items()}


@pytest.mark.parametrize("mode", ["zero", "mean", 0.7])
def test_ablation_equals_a_forward_pass_with_patched_weights(neox, corpus, mode):
    neurons = [(1, 5), (0, 9), (1, 11)]
    values = {"zero": {n: 0.0 for n in neurons}, "mean": hand_means(neox, corpus, neurons)}.get(
        mode, {n: 0.7 for n in neurons})
    model = patched(neox, values)
    per_seq = ablation_losses(neox, corpus, neurons, mode=mode, batch_tokens=25)
    assert per_seq["sequence"].tolist() == list(range(len(corpus)))
    for row in per_seq.itertuples():
        tokens = corpus.tokens[row.sequence]
        assert row.n_tokens == len(tokens) - 1
        assert row.loss_clean == pytest.approx(hf_loss(neox.model, tokens), rel=1e-4, abs=1e-5)
        assert row.loss_ablated == pytest.approx(hf_loss(model, tokens), rel=1e-4, abs=1e-5)
    assert (per_seq["delta"].abs() > 1e-4).any()  # the ablation changed something

    table = ablate(neox, corpus, neurons, mode=mode, batch_tokens=25)
    assert table["label"].tolist() == ["code", "english", "(all)"]
    for label in ("code", "english"):
        seqs = [s for s in range(len(corpus)) if corpus.labels[s] == label]
        n = np.array([len(corpus.tokens[s]) - 1 for s in seqs])
        clean = np.array([hf_loss(neox.model, corpus.tokens[s]) for s in seqs])
        hurt = np.array([hf_loss(model, corpus.tokens[s]) for s in seqs])
        row = table[table["label"] == label].iloc[0]
        assert row["n_tokens"] == n.sum() and row["n_sequences"] == len(seqs)
        assert row["delta"] == pytest.approx(np.sum((hurt - clean) * n) / n.sum(), rel=1e-3, abs=1e-5)
        assert row["delta_se"] == pytest.approx(np.std(hurt - clean, ddof=1) / np.sqrt(len(seqs)), rel=1e-3, abs=1e-5)


def test_pre_site_ablation_fixes_the_input(neox, corpus):
    neurons = [(2, 4)]
    model = patched(neox, {(2, 4): -0.3}, site="pre")
    per_seq = ablation_losses(neox, corpus, neurons, mode=-0.3, site="pre")
    for row in per_seq.itertuples():
        assert row.loss_ablated == pytest.approx(hf_loss(model, corpus.tokens[row.sequence]), rel=1e-4, abs=1e-5)


def test_ablated_context_restores_the_model(neox, corpus):
    ids = torch.from_numpy(corpus.tokens[0])[None]
    before = neox.capture(ids, torch.ones_like(ids), [1])[1]
    with ablated(neox, [(1, 3), (1, 8)], [2.0, -1.0]):
        during = neox.capture(ids, torch.ones_like(ids), [1])[1]
    after = neox.capture(ids, torch.ones_like(ids), [1])[1]
    assert torch.equal(before, after)
    assert torch.all(during[..., 3] == 2.0) and torch.all(during[..., 8] == -1.0)
    assert torch.equal(during[..., :3], before[..., :3])


def test_logit_effect_equals_hand_product(neox):
    model = neox.model
    layer, neuron = 1, 17
    w_out = model.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight[:, neuron].detach()
    gamma = model.gpt_neox.final_layer_norm.weight.detach()
    want = (model.lm_head.weight.detach() @ (w_out * gamma)).numpy()
    got = logit_effects(neox, layer, neuron, top=5)
    np.testing.assert_allclose(got.effects, want, rtol=1e-5, atol=1e-6)
    order = np.argsort(-want, kind="stable")
    top = got.table[got.table["kind"] == "top"]
    assert top["token_id"].tolist() == order[:5].tolist()
    assert got.table[got.table["kind"] == "bottom"]["token_id"].tolist() == order[::-1][:5].tolist()
    assert got.variance == pytest.approx(np.var(want), rel=1e-4)
    assert got.skew == pytest.approx(scipy.stats.skew(want), rel=1e-3, abs=1e-6)
    assert got.kurtosis == pytest.approx(scipy.stats.kurtosis(want, fisher=False), rel=1e-3)
    stats = logit_statistics(neox, [layer], chunk=7)
    assert len(stats) == neox.n_neurons
    row = stats[stats["neuron"] == neuron].iloc[0]
    assert row["kurtosis"] == pytest.approx(got.kurtosis, rel=1e-6) and row["max_effect"] == pytest.approx(want.max())


def test_encoders_have_no_logit_effects_or_loss(bpe_tokenizer, corpus):
    bert = adapt(build_model("bert", len(bpe_tokenizer)), bpe_tokenizer)
    with pytest.raises(InputError, match="encoder"):
        logit_effects(bert, 0, 0)
    with pytest.raises(InputError, match="encoder"):
        ablate(bert, corpus, [(0, 0)])


def test_weight_statistics_recomputed(neox):
    table = weight_statistics(neox, layers=[0, 2])
    assert len(table) == 2 * neox.n_neurons
    for layer in (0, 2):
        mlp = neox.model.gpt_neox.layers[layer].mlp
        for neuron in (0, 13, 63):
            w_in = mlp.dense_h_to_4h.weight[neuron].detach().double()
            b = float(mlp.dense_h_to_4h.bias[neuron].detach())
            w_out = mlp.dense_4h_to_h.weight[:, neuron].detach().double()
            row = table[(table["layer"] == layer) & (table["neuron"] == neuron)].iloc[0]
            cos = float(w_in @ w_out / (w_in.norm() * w_out.norm()))
            np.testing.assert_allclose(
                row[["w_in_norm", "b_in", "norm_times_bias", "w_out_norm", "cos_in_out", "weight_decay"]].astype(float),
                [float(w_in.norm()), b, float(w_in.norm()) * b, float(w_out.norm()), cos,
                 float(w_in.norm() ** 2 + w_out.norm() ** 2)], rtol=1e-6)


def test_bad_ablation_requests(neox, corpus):
    with pytest.raises(InputError, match="mode"):
        ablate(neox, corpus, [(0, 0)], mode="median")
    with pytest.raises(InputError, match="'post' or 'pre'"):
        with ablated(neox, [(0, 0)], site="resid"):
            pass
