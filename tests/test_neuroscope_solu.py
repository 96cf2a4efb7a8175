"""SoLU in the toy model: the forward against numpy, the neuron read before the norm, one seed for every activation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model_zoo import hand_activations
from needle.cli import app
from needle.errors import InputError
from needle.models import load_model
from needle.models.solu import SoLULayerNorm
from needle.toy import TextUnit, ToySize, TrainSettings, split_units, train_toy_model
from needle.toy.train import initial_model

TINY_SOLU = ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=32, context_length=16, activation="solu")
TEXTS = ["The cat sat on the mat. The dog sat on the log.", "def add(a, b):\n    return a + b\n",
         "Le chat est sur le tapis. Le chien dort.", "Der Hund schläft. Die Katze schläft auch."]


def numpy_solu(x: np.ndarray) -> np.ndarray:
    """x · softmax(x) over the last axis, in float64."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return x * e / e.sum(-1, keepdims=True)


def numpy_layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def test_solu_forward_equals_a_hand_computation():
    x = np.random.default_rng(0).normal(scale=3.0, size=(3, 5, 40))
    out = SoLULayerNorm()(torch.tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, numpy_layer_norm(numpy_solu(x)), rtol=1e-4, atol=1e-5)
    # A worked case: softmax([0, ln 3]) = [1/4, 3/4], so mid = [0, 0.75 ln 3] and LN gives [-1, 1] (up to eps).
    mid = numpy_solu(np.array([0.0, np.log(3)]))
    np.testing.assert_allclose(mid, [0.0, 0.75 * np.log(3)], atol=1e-12)
    np.testing.assert_allclose(SoLULayerNorm(eps=0.0)(torch.tensor([0.0, np.log(3)])).numpy(), [-1, 1], atol=1e-6)


@pytest.fixture(scope="module")
def solu_model(tmp_path_factory):
    units = [TextUnit(s, f"{s}-{i}", t) for i in range(6) for s, t in zip(["en", "python", "fr", "de"], TEXTS)]
    corpus = split_units(units, heldout_fraction=0.2, seed=0)
    settings = TrainSettings(steps=5, max_minutes=None, batch_size=4, vocab_size=300, seed=0, threads=1)
    out = tmp_path_factory.mktemp("solu") / "model"
    return train_toy_model(out, corpus, size=TINY_SOLU, settings=settings, echo=None)


def test_post_site_is_the_solu_product_before_the_norm(solu_model):
    adapter = load_model(solu_model.path)
    assert adapter.model.config.hidden_act == "solu_ln" and adapter.activation == "solu_ln"
    ids = torch.tensor([solu_model.tokenizer(TEXTS[0])["input_ids"][:16]])
    mask = torch.ones_like(ids)
    post = adapter.capture(ids, mask, [0, 1], site="post")
    mlp_out = adapter.capture(ids, mask, [0, 1], site="hook_mlp_out")
    for layer in (0, 1):
        pre = hand_activations(adapter, ids, layer)["pre"].double().numpy()  # LN(h) @ w_in + b_in, by hand
        mid = numpy_solu(pre)
        np.testing.assert_allclose(post[layer][0].double().numpy(), mid, rtol=1e-4, atol=1e-5)
        # ...and the MLP writes W_out · LN(mid) + b_out: the norm sits between the neuron and W_out.
        w_out = adapter.w_out(layer).double().numpy()
        b_out = adapter.mlp_out(layer).bias.detach().double().numpy()
        np.testing.assert_allclose(mlp_out[layer][0].double().numpy(), numpy_layer_norm(mid) @ w_out + b_out,
                                   rtol=1e-4, atol=1e-4)


def test_one_seed_gives_every_activation_the_same_initial_weights():
    states = {act: initial_model(ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=32,
                                         context_length=16, activation=act), 300, seed=3).state_dict()
              for act in ("gelu", "solu", "relu")}
    assert list(states["gelu"]) == list(states["solu"]) == list(states["relu"])
    for name, tensor in states["gelu"].items():
        assert torch.equal(tensor, states["solu"][name]) and torch.equal(tensor, states["relu"][name]), name
    other = initial_model(ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=32, context_length=16),
                          300, seed=4).state_dict()
    assert not torch.equal(other["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"],
                           states["gelu"]["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"])


def test_cli_activation_flag_and_its_error(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    for i in range(6):
        (code / f"m{i}.py").write_text(TEXTS[1] * 20)
    args = ["toy", "train", "--steps", "2", "--python", str(code), "--no-ud", "--vocab-size", "280",
            "--hidden-size", "16", "--layers", "1", "--heads", "2", "--neurons", "32", "--context-length", "16",
            "--batch-size", "2", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "m"), "--activation", "solu"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["hidden_act"] == "solu_ln"
    assert json.loads((tmp_path / "m" / "training.json").read_text())["size"]["activation"] == "solu"
    with pytest.raises(InputError, match="activation must be one of gelu, solu, relu"):
        ToySize(activation="tanh").check()


def test_logit_attribution_refuses_a_solu_model(solu_model):
    from needle.neurons import Corpus, logit_attribution

    adapter = load_model(solu_model.path)
    corpus = Corpus.from_texts(TEXTS, adapter.tokenizer, 16)
    with pytest.raises(InputError, match="SoLU"):
        logit_attribution(adapter, corpus, [(0, 1)])
