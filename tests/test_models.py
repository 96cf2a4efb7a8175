"""Model loading and adapters: neurons equal their hand recomputation, for every family."""

from __future__ import annotations

import pytest
import torch

from model_zoo import FAMILIES, build_model, hand_activations
from needle.errors import InputError
from needle.models import adapt, load_model, normalize_site, site_hook_name, supported_model_types


@pytest.fixture(scope="module")
def zoo(bpe_tokenizer):
    return {family: adapt(build_model(family, len(bpe_tokenizer)), bpe_tokenizer, model_id=f"tiny-{family}")
            for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("site", ["pre", "post"])
def test_capture_equals_hand_recomputation_with_padding(zoo, family, site):
    adapter = zoo[family]
    torch.manual_seed(1)
    short = torch.randint(2, 400, (1, 5))
    long = torch.randint(2, 400, (1, 9))
    for side in ("right", "left"):
        ids = torch.ones(2, 9, dtype=torch.long)
        mask = torch.zeros(2, 9, dtype=torch.long)
        ids[1], mask[1] = long[0], 1
        sl = slice(4, 9) if side == "left" else slice(0, 5)
        ids[0, sl], mask[0, sl] = short[0], 1
        got = adapter.capture(ids, mask, [0, 2], site)
        for layer in (0, 2):
            want_short = hand_activations(adapter, short, layer)[site]
            want_long = hand_activations(adapter, long, layer)[site]
            torch.testing.assert_close(got[layer][0, sl], want_short, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got[layer][1], want_long, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_post_is_the_layer_output(zoo, family):
    adapter = zoo[family]
    ids = torch.randint(2, 400, (1, 7))
    got = adapter.capture(ids, torch.ones_like(ids), [0], "resid")[0][0]
    torch.testing.assert_close(got, hand_activations(adapter, ids, 0)["resid"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_have_documented_shapes(zoo, family):
    adapter = zoo[family]
    d, n = adapter.d_model, adapter.n_neurons
    assert adapter.w_in(1).shape == (d, n)
    assert adapter.b_in(1).shape == (n,)
    assert adapter.w_out(1).shape == (n, d)
    assert adapter.n_layers == 3
    if adapter.is_causal:
        assert adapter.unembed().shape == (d, adapter.model.config.vocab_size)
        assert adapter.final_norm() is not None
    else:
        with pytest.raises(InputError, match="no unembedding"):
            adapter.unembed()


def test_w_out_is_what_a_neuron_writes(zoo):
    # One neuron's activation times its w_out row is its contribution to the MLP output.
    adapter = zoo["gpt_neox"]
    mlp = adapter.blocks[0].mlp
    activation = torch.zeros(1, adapter.n_neurons)
    activation[0, 7] = 2.0
    out = mlp.dense_4h_to_h(activation) - mlp.dense_4h_to_h(torch.zeros_like(activation))
    torch.testing.assert_close(out[0], 2.0 * adapter.w_out(0)[7])


def test_site_names_follow_transformer_lens():
    assert site_hook_name("post", 3) == "blocks.3.mlp.hook_post"
    assert site_hook_name("pre", 0) == "blocks.0.mlp.hook_pre"
    assert site_hook_name("resid", 11) == "blocks.11.hook_resid_post"
    assert normalize_site("blocks.4.mlp.hook_post") == "post"
    with pytest.raises(InputError, match="unknown site"):
        normalize_site("attn")


def test_unknown_layer_is_a_clear_error(zoo):
    with pytest.raises(InputError, match="layers 0..2"):
        zoo["gpt2"].capture(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), [3])


def test_unsupported_architecture_lists_supported_ones():
    from transformers import T5Config, T5Model

    model = T5Model(T5Config(vocab_size=50, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8))
    with pytest.raises(InputError) as info:
        adapt(model)
    for family in ("gpt_neox", "gpt2", "llama", "bert"):
        assert family in str(info.value)
    assert "t5" in str(info.value)
    assert "llama" in supported_model_types()


def test_load_model_from_saved_directory(tmp_path, bpe_tokenizer, zoo):
    model = build_model("gpt_neox", len(bpe_tokenizer), seed=3)
    model.save_pretrained(tmp_path)
    bpe_tokenizer.save_pretrained(tmp_path)
    adapter = load_model(tmp_path)
    assert adapter.family == "gpt_neox" and adapter.model_id == str(tmp_path.resolve())
    ids = torch.randint(2, 400, (1, 6))
    torch.testing.assert_close(adapter.capture(ids, torch.ones_like(ids), [1])[1],
                               adapt(model, bpe_tokenizer).capture(ids, torch.ones_like(ids), [1])[1])
    assert adapter.weights_hash() == load_model(tmp_path).weights_hash()


def test_hub_name_takes_the_hub_path_and_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="Hugging Face hub"):
        load_model("EleutherAI/pythia-70m")


def test_bad_directory_and_dtype(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="dtype"):
        load_model("minilm", dtype="int3")


@pytest.mark.slow
def test_minilm_neurons_equal_hand_recomputation(minilm_tokenizer):
    adapter = load_model("minilm")
    assert (adapter.family, adapter.n_layers, adapter.n_neurons, adapter.d_model) == ("bert", 6, 1536, 384)
    text = minilm_tokenizer(["The cat sat on the mat.", "Neurons in a haystack, found by sparse probing!"],
                            padding=True, return_tensors="pt")
    got = adapter.capture(text["input_ids"], text["attention_mask"], [0, 5], "post")
    for row in range(2):
        n = int(text["attention_mask"][row].sum())
        ids = text["input_ids"][row : row + 1, :n]
        for layer in (0, 5):
            torch.testing.assert_close(got[layer][row, :n], hand_activations(adapter, ids, layer)["post"],
                                       rtol=1e-4, atol=1e-4)
