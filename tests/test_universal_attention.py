"""Attention (de)activation neurons: the BOS score and the query path ablation against a hand-patched forward
computed from the weights (random-weight models: plumbing, not findings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_zoo import build_model
from needle.errors import InputError
from needle.models import adapt
from needle.universal.attention import bos_scores, path_ablate_query


@pytest.fixture(scope="module")
def gpt2(bpe_tokenizer):
    return adapt(build_model("gpt2", len(bpe_tokenizer), seed=3, n_layers=3), bpe_tokenizer)


def _block_input(model, ids, layer):
    seen = {}

    def hook(module, args, kwargs):
        seen["x"] = (args[0] if args else kwargs["hidden_states"]).detach()

    handle = model.blocks[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model.forward(ids, torch.ones_like(ids))
    finally:
        handle.remove()
    return seen["x"]


def _hand_head(model, x_query, x_kv, layer, head):
    """GPT-2 head ``head`` of block ``layer`` written out: queries from ``x_query``, keys and values from ``x_kv``."""
    block = model.blocks[layer]
    d = model.d_model
    d_head = d // 4
    w, b = block.attn.c_attn.weight.detach(), block.attn.c_attn.bias.detach()  # Conv1D: x @ w + b

    def ln(x):
        return F.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)

    cols = slice(head * d_head, (head + 1) * d_head)
    q = (ln(x_query) @ w[:, :d] + b[:d])[..., cols]
    k = (ln(x_kv) @ w[:, d:2 * d] + b[d:2 * d])[..., cols]
    v = (ln(x_kv) @ w[:, 2 * d:] + b[2 * d:])[..., cols]
    t = x_kv.shape[1]
    scores = q @ k.transpose(-1, -2) / np.sqrt(d_head)
    scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    attn = scores.softmax(-1)
    out = (attn @ v) @ block.attn.c_proj.weight.detach()[cols]
    return attn[..., 0], out.norm(dim=-1)


@torch.no_grad()
def test_query_path_ablation_matches_a_hand_patched_forward(gpt2):
    rng = np.random.default_rng(0)
    sequences = [np.concatenate([[0], rng.integers(2, len(gpt2.tokenizer), 19)]) for _ in range(5)]
    neuron, head = (0, 7), (2, 1)
    table = path_ablate_query(gpt2, sequences, neuron, head, batch_size=2)
    ids = torch.tensor(np.stack(sequences))
    x = _block_input(gpt2, ids, head[0])
    act = gpt2.capture(ids, torch.ones_like(ids), [neuron[0]], site="post")[neuron[0]][..., neuron[1]]
    positions = np.arange(10, 20)
    patched = x.clone()
    patched[:, positions] -= act[:, positions, None] * gpt2.w_out(neuron[0])[neuron[1]]
    bos, norm = _hand_head(gpt2, x, x, *head)
    bos_ablated, norm_ablated = _hand_head(gpt2, patched, x, *head)
    assert list(table["position"][:10]) == list(positions) and len(table) == 5 * 10
    for column, expected in (("bos_attention", bos), ("norm", norm), ("bos_attention_ablated", bos_ablated),
                             ("norm_ablated", norm_ablated), ("activation", act)):
        np.testing.assert_allclose(table[column].to_numpy(), expected[:, positions].reshape(-1).numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=column)
    assert (table["bos_attention"] != table["bos_attention_ablated"]).mean() > 0.5  # the ablation did something
    with pytest.raises(InputError, match="after the neuron"):
        path_ablate_query(gpt2, sequences, (2, 0), (1, 0))


@torch.no_grad()
def test_bos_score_is_the_query_read_of_the_bos_key(gpt2):
    scores, baseline = bos_scores(gpt2, n_random=50)
    bos = torch.tensor([[0]])
    layer, head, neuron = 1, 2, 5
    x = _block_input(gpt2, bos, layer)[0, 0]
    block = gpt2.blocks[layer]
    d, d_head = gpt2.d_model, gpt2.d_model // 4
    w = block.attn.c_attn.weight.detach().double()
    ln_x = F.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps).double()
    cols = slice(head * d_head, (head + 1) * d_head)
    k = (ln_x @ w[:, d:2 * d] + block.attn.c_attn.bias.detach().double()[d:2 * d])[cols]
    u = gpt2.w_out(0)[neuron].double()
    u = u - u.mean()
    u = u / u.norm()
    expected = float((((block.ln_1.weight.detach().double() * u) @ w[:, :d])[cols]) @ k)
    got = scores.query("layer == 0 and neuron == @neuron and head_layer == @layer and head == @head")["score"]
    assert float(got.iloc[0]) == pytest.approx(expected, rel=1e-6)
    assert set(scores["head_layer"]) == {1, 2} and set(scores.query("layer == 1")["head_layer"]) == {2}
    assert len(baseline.query("layer == 0 and head_layer == 1")) == 50 * 4


def test_probe_attention_agrees_with_the_models_own_on_a_rotary_model(bpe_tokenizer):
    model = adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=1, n_layers=2), bpe_tokenizer)
    rng = np.random.default_rng(1)
    sequences = [np.concatenate([[0], rng.integers(2, len(bpe_tokenizer), 15)]) for _ in range(3)]
    table = path_ablate_query(model, sequences, (0, 3), (1, 2))
    ids = torch.tensor(np.stack(sequences))
    model.model.config._attn_implementation = "eager"
    with torch.no_grad():
        attentions = model.model(input_ids=ids, output_attentions=True).attentions
    model.model.config._attn_implementation = "sdpa"
    expected = attentions[1][:, 2, 8:, 0].reshape(-1).numpy()
    np.testing.assert_allclose(table["bos_attention"].to_numpy(), expected, rtol=1e-4, atol=1e-6)


def test_next_token_firing_counts_against_a_direct_tally(bpe_tokenizer):
    from needle.universal.roles import next_token_firing, token_sets

    model = adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=5, n_layers=2), bpe_tokenizer)
    rng = np.random.default_rng(2)
    sequences = [np.concatenate([[0], rng.integers(2, len(bpe_tokenizer), 23)]) for _ in range(6)]
    neurons = [(1, 4, "suppression"), (0, 9, "prediction")]
    table = next_token_firing(model, sequences, neurons, z=2.0, batch_size=4)
    sets = token_sets(model, neurons, z=2.0)
    ids = torch.tensor(np.stack(sequences))
    for (layer, neuron, _), row in zip(neurons, table.itertuples()):
        acts = model.capture(ids, torch.ones_like(ids), [layer], site="post")[layer][:, 1:-1, neuron].numpy()
        inside = np.isin(ids[:, 2:].numpy(), sets[(layer, neuron)])
        assert row.n_in == inside.sum() and row.n_out == (~inside).sum() and row.set_size > 0
        assert row.mean_out == pytest.approx(acts[~inside].mean(), rel=1e-5)
        assert row.fire_out == pytest.approx((acts[~inside] > 0).mean())
        if inside.any():
            assert row.mean_in == pytest.approx(acts[inside].mean(), rel=1e-5)
