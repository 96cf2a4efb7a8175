"""Every site of every family equals a recomputation anchored on the model's hidden states and weights.

The residual sites are compared with ``output_hidden_states``; the MLP output
with the hand-computed neurons times ``w_out``; attention's output with what
is left of the block's update once the MLP's is removed; ``attn.hook_z``
through the output projection (square and full rank in these models, so it
pins ``z`` down). BERT (post-LayerNorm) is checked through its LayerNorms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_zoo import FAMILIES, build_model, hand_activations
from needle.errors import InputError
from needle.models import SITES, LinearMap, adapt, get_site, normalize_site, site_hook_name, site_id

TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def zoo(bpe_tokenizer):
    return {family: adapt(build_model(family, len(bpe_tokenizer)), bpe_tokenizer, model_id=f"tiny-{family}")
            for family in FAMILIES}


def sites_of(adapter):
    return [name for name in SITES if not (name == "hook_resid_mid" and adapter.family == "gpt_neox")]


def capture_all(adapter, ids, layer):
    return {name: adapter.capture(ids, torch.ones_like(ids), [layer], name)[layer][0] for name in sites_of(adapter)}


def out_projection(adapter, layer):
    """(W_O as (in, out), b_O) of the attention output projection, read from the HF module by its name."""
    block = adapter.blocks[layer]
    module = {"gpt_neox": lambda: block.attention.dense, "gpt2": lambda: block.attn.c_proj,
              "gated_mlp": lambda: block.self_attn.o_proj, "bert": lambda: block.attention.output.dense}[adapter.family]()
    weight = module.weight.detach() if adapter.family == "gpt2" else module.weight.detach().T
    bias = module.bias.detach() if module.bias is not None else torch.zeros(weight.shape[1])
    return weight, bias


def mlp_out_bias(adapter, layer):
    bias = getattr(adapter.mlp_out(layer), "bias", None)
    return torch.zeros(adapter.d_model) if bias is None else bias.detach()


def layer_norm(x, norm):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", [0, 1])
def test_every_site_equals_its_recomputation(zoo, family, layer):
    adapter = zoo[family]
    torch.manual_seed(layer)
    ids = torch.randint(2, 400, (1, 8))
    got = capture_all(adapter, ids, layer)
    with torch.no_grad():
        hidden = adapter.base(input_ids=ids, output_hidden_states=True).hidden_states
    resid_pre, resid_post = hidden[layer][0], hidden[layer + 1][0]
    hand = hand_activations(adapter, ids, layer)
    w_o, b_o = out_projection(adapter, layer)
    assert w_o.shape[0] == w_o.shape[1] == got["attn.hook_z"].shape[-1] and torch.linalg.matrix_rank(w_o) == w_o.shape[0]

    torch.testing.assert_close(got["hook_resid_pre"], resid_pre, **TOL)
    torch.testing.assert_close(got["hook_resid_post"], resid_post, **TOL)
    torch.testing.assert_close(got["mlp.hook_pre"], hand["pre"], **TOL)
    torch.testing.assert_close(got["mlp.hook_post"], hand["post"], **TOL)
    mlp_out = hand["post"] @ adapter.w_out(layer) + mlp_out_bias(adapter, layer)
    torch.testing.assert_close(got["hook_mlp_out"], mlp_out, **TOL)
    if family == "bert":
        block = adapter.blocks[layer]
        mid = got["hook_resid_mid"]
        # post-LN: the layer's output is LayerNorm(resid_mid + mlp_out), and resid_mid is LayerNorm(resid_pre + attn_out)
        torch.testing.assert_close(layer_norm(mid + mlp_out, block.output.LayerNorm), resid_post, **TOL)
        torch.testing.assert_close(layer_norm(resid_pre + got["hook_attn_out"], block.attention.output.LayerNorm), mid,
                                   **TOL)
        attn_out = got["hook_attn_out"]
    else:
        attn_out = resid_post - resid_pre - mlp_out  # pre-LN (and parallel) blocks add both sublayers' outputs
        torch.testing.assert_close(got["hook_attn_out"], attn_out, **TOL)
        if family != "gpt_neox":
            torch.testing.assert_close(got["hook_resid_mid"], resid_pre + attn_out, **TOL)
    torch.testing.assert_close(got["attn.hook_z"] @ w_o + b_o, attn_out, **TOL)


def test_gpt_neox_without_parallel_residual_has_resid_mid(bpe_tokenizer):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(5)
    config = GPTNeoXConfig(vocab_size=len(bpe_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64, use_parallel_residual=False)
    adapter = adapt(GPTNeoXForCausalLM(config).eval(), bpe_tokenizer)
    ids = torch.randint(2, 400, (1, 6))
    got = adapter.capture(ids, torch.ones_like(ids), [0], "hook_resid_mid")[0][0]
    with torch.no_grad():
        hidden = adapter.base(input_ids=ids, output_hidden_states=True).hidden_states
        block = adapter.blocks[0]
        pre = layer_norm(got, block.post_attention_layernorm) @ adapter.w_in(0) + adapter.b_in(0)
        post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
        mlp_out = post @ adapter.w_out(0) + mlp_out_bias(adapter, 0)
    # sequential residual: resid_post = resid_mid + MLP(LN(resid_mid)), resid_mid = resid_pre + attn_out
    torch.testing.assert_close(got + mlp_out, hidden[1][0], **TOL)
    attn_out = adapter.capture(ids, torch.ones_like(ids), [0], "hook_attn_out")[0][0]
    torch.testing.assert_close(hidden[0][0] + attn_out, got, **TOL)


def test_parallel_residual_refuses_resid_mid(zoo):
    with pytest.raises(InputError, match="use_parallel_residual=True"):
        zoo["gpt_neox"].capture(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), [0],
                                "hook_resid_mid")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_is_unchanged_by_padding(zoo, family):
    adapter = zoo[family]
    torch.manual_seed(2)
    short, long = torch.randint(2, 400, (1, 4)), torch.randint(2, 400, (1, 7))
    ids = torch.ones(2, 7, dtype=torch.long)
    mask = torch.zeros(2, 7, dtype=torch.long)
    ids[0, 3:], mask[0, 3:] = short[0], 1  # left-padded
    ids[1], mask[1] = long[0], 1
    for name in sites_of(adapter):
        got = adapter.capture(ids, mask, [1], name)[1]
        torch.testing.assert_close(got[0, 3:], adapter.capture(short, torch.ones_like(short), [1], name)[1][0], **TOL)
        torch.testing.assert_close(got[1], adapter.capture(long, torch.ones_like(long), [1], name)[1][0], **TOL)


def test_widths_and_names(zoo):
    adapter = zoo["llama"]
    widths = {name: adapter.site_width(name) for name in SITES}
    assert widths["mlp.hook_post"] == widths["mlp.hook_pre"] == adapter.n_neurons == 48
    assert widths["hook_resid_pre"] == widths["hook_mlp_out"] == adapter.d_model == 32
    assert widths["attn.hook_z"] == 4 * 8  # n_heads · d_head (not the 2 key-value heads)
    assert get_site("post").name == "mlp.hook_post" and get_site("resid").name == "hook_resid_post"
    assert get_site("blocks.7.attn.hook_z").name == "attn.hook_z"
    assert site_hook_name("hook_resid_pre", 2) == "blocks.2.hook_resid_pre"
    assert normalize_site("mlp.hook_pre") == "pre" and normalize_site("hook_mlp_out") == "hook_mlp_out"
    assert get_site("hook_attn_out").basis == "residual dimensions"
    assert get_site("attn.hook_z").basis == "attention head dimensions"
    with pytest.raises(InputError, match="unknown site 'attn'.*hook_resid_pre"):
        get_site("attn")
    with pytest.raises(InputError, match="transformed basis"):
        get_site("mlp.hook_post+pca4-0000")
    # recorded names compare canonically: old short names, full hook names, transformed ids, non-sites
    assert site_id("post") == site_id("blocks.0.mlp.hook_post") == "mlp.hook_post"
    assert site_id("pre+pca4-0000") == "mlp.hook_pre+pca4-0000" and site_id("custom") == "custom"


def test_transformed_site_has_its_own_id_and_width(zoo):
    adapter = zoo["gpt2"]
    rotation = LinearMap.rotation(adapter.n_neurons, seed=3)
    q = rotation.matrix.numpy().astype(np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(adapter.n_neurons), atol=1e-5)
    site = get_site("post", rotation)
    assert site.id == f"mlp.hook_post+{rotation.name}" and rotation.name.startswith("rot128-")
    assert LinearMap.rotation(adapter.n_neurons, seed=4).name != rotation.name
    assert site.width(adapter) == adapter.n_neurons == 128 and site.basis == rotation.name
    ids = torch.randint(2, 400, (1, 5))
    raw = adapter.capture(ids, torch.ones_like(ids), [0], "post")[0]
    torch.testing.assert_close(adapter.capture(ids, torch.ones_like(ids), [0], site)[0], raw @ rotation.matrix, **TOL)
    with pytest.raises(InputError, match="takes 128 columns but the site has 32"):
        get_site("resid", rotation).width(adapter)
