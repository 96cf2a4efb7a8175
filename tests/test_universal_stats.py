"""Neuron statistics (thesis Figure 3.3): streamed moments against scipy, the weight preprocessing against a forward
pass, percentiles within layers, and the universal-versus-other comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from model_zoo import build_model
from needle.errors import InputError
from needle.models import adapt
from needle.universal.stats import (
    PowerSums,
    activation_statistics,
    compare_universal,
    layer_percentiles,
    preprocessed_weights,
    weight_statistics,
)
from needle.universal.tokens import pack_texts


def test_power_sums_match_scipy_on_data_with_a_large_mean_and_merge():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.gamma(2.0, 1.0, (4000, 3)), rng.standard_normal((4000, 2))], 1) + 5e3
    whole = PowerSums(5)
    for i in range(0, 4000, 333):
        whole.update(torch.from_numpy(x[i:i + 333]), torch.from_numpy(x[i:i + 333] > 5001.0))
    m = whole.moments()
    np.testing.assert_allclose(m["mean"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m["skew"], sps.skew(x, axis=0), atol=1e-8)
    np.testing.assert_allclose(m["kurtosis"], sps.kurtosis(x, axis=0, fisher=False), atol=1e-7)
    np.testing.assert_allclose(m["frequency"], (x > 5001.0).mean(0))
    first = PowerSums(5)
    first.update(torch.from_numpy(x[:1000]))
    second = PowerSums(5)
    second.shift = first.shift
    second.update(torch.from_numpy(x[1000:]))
    np.testing.assert_allclose(first.merge(second).moments()["kurtosis"], m["kurtosis"], atol=1e-9)
    other = PowerSums(5)
    other.update(torch.from_numpy(x[:10] + 1))
    with pytest.raises(InputError, match="same shift"):
        first.merge(other)


@pytest.fixture(scope="module")
def neox(bpe_tokenizer):
    return bpe_tokenizer, adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=2, n_layers=2), bpe_tokenizer)


def test_activation_statistics_match_captured_activations(neox):
    tokenizer, model = neox
    sequences = pack_texts(["The cat sat on the mat. Again, the dog.\n"] * 20, tokenizer, 20)
    table = activation_statistics(model, sequences, batch_tokens=60)
    ids = torch.tensor(np.stack(sequences))
    pre = model.capture(ids, torch.ones_like(ids), [1], site="pre")[1][:, 1:].reshape(-1, model.n_neurons)
    post = model.capture(ids, torch.ones_like(ids), [1], site="post")[1][:, 1:].reshape(-1, model.n_neurons)
    layer1 = table[table["layer"] == 1]
    assert (layer1["n_tokens"] == len(pre)).all()  # BOS positions left out
    np.testing.assert_allclose(layer1["pre_mean"], pre.double().mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(layer1["pre_skew"], sps.skew(pre.double().numpy(), axis=0), atol=1e-5)
    np.testing.assert_allclose(layer1["pre_kurtosis"], sps.kurtosis(pre.double().numpy(), axis=0, fisher=False),
                               atol=1e-4)
    np.testing.assert_allclose(layer1["activation_frequency"], (post > 0).double().mean(0).numpy())


def test_folded_weights_give_the_models_pre_activations(neox):
    tokenizer, model = neox
    ids = torch.tensor([tokenizer("Some text to run through the model.")["input_ids"]])
    captured = {}
    block = model.blocks[1]
    handle = block.post_attention_layernorm.register_forward_hook(
        lambda module, args, output: captured.__setitem__("x", args[0]))
    pre = model.capture(ids, torch.ones_like(ids), [1], site="pre")[1][0].double()
    handle.remove()
    x = captured["x"][0].double()
    plain = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) +
                                                         block.post_attention_layernorm.eps)
    w = preprocessed_weights(model, 1)
    torch.testing.assert_close(plain @ w["w_in"] + w["b_in"], pre, rtol=1e-4, atol=1e-4)
    assert torch.allclose(w["w_out"].sum(1), torch.zeros(model.n_neurons, dtype=torch.float64), atol=1e-10)


def test_weight_statistics_follow_their_definitions(neox):
    _, model = neox
    table = weight_statistics(model)
    w = preprocessed_weights(model, 0)
    w_in, w_out = w["w_in"].T.numpy(), w["w_out"].numpy()
    row = table[table["layer"] == 0]
    cos = (w_in * w_out).sum(1) / np.linalg.norm(w_in, axis=1) / np.linalg.norm(w_out, axis=1)
    np.testing.assert_allclose(row["cos_in_out"], cos, atol=1e-10)
    np.testing.assert_allclose(row["weight_norm"], (w_in ** 2).sum(1) + (w_out ** 2).sum(1), rtol=1e-10)
    w_u = model.unembed().double().numpy() * model.final_norm().weight.detach().double().numpy()[:, None]
    w_u = w_u - w_u.mean(0, keepdims=True)
    w_u = w_u - w_u.mean(1, keepdims=True)
    cos_u = (w_out / np.linalg.norm(w_out, axis=1, keepdims=True)) @ (w_u / np.linalg.norm(w_u, axis=0))
    np.testing.assert_allclose(row["wu_kurtosis"], sps.kurtosis(cos_u, axis=1, fisher=False), rtol=1e-8)
    np.testing.assert_allclose(row["wu_skew"], sps.skew(cos_u, axis=1), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(row["logit_var"], (w_out @ w_u).var(1), rtol=1e-10)


def test_percentiles_and_the_universal_comparison():
    table = pd.DataFrame({"layer": [0] * 4 + [1] * 4, "neuron": list(range(4)) * 2,
                          "pre_skew": [1.0, 3.0, 2.0, 2.0, 10.0, 20.0, 30.0, 40.0]})
    pct = layer_percentiles(table, ["pre_skew"])
    np.testing.assert_allclose(pct["pre_skew"], [25, 100, 62.5, 62.5, 25, 50, 75, 100])
    universal = pd.DataFrame({"layer": [0, 1], "neuron": [1, 3]})
    comparison = compare_universal(table, universal, ["pre_skew"]).iloc[0]
    assert comparison["n_universal"] == 2 and comparison["universal_mean"] == 100.0
    assert comparison["other_mean"] == pytest.approx(np.mean([25, 62.5, 62.5, 25, 50, 75]))
    assert comparison["universal_se"] == 0.0


def test_roles_follow_the_moments_of_the_logit_effects():
    from needle.universal.roles import classify_roles, role_percentiles_by_layer

    table = pd.DataFrame({"layer": [0, 0, 1, 1, 1], "neuron": [0, 1, 0, 1, 2],
                          "wu_kurtosis": [30.0, 25.0, 3.0, 2.9, 3.1], "wu_skew": [2.0, -1.5, 0.1, 0.0, 0.0],
                          "logit_var": [1.0, 1.0, 9.0, 1.0, 1.0]})
    roles = classify_roles(table, partition_quantile=0.8)
    assert list(roles["role"]) == ["prediction", "suppression", "partition", "none", "none"]
    pct = role_percentiles_by_layer(table, (50,))
    assert pct.query("layer == 1 and statistic == 'wu_kurtosis'")["value"].item() == 3.0
    with pytest.raises(InputError, match="lacks"):
        classify_roles(table.drop(columns="logit_var"))


def test_a_neuron_built_to_predict_one_token_is_a_prediction_neuron(neox):
    from needle.universal.roles import classify_roles

    _, model = neox
    w_u = model.unembed()  # (d_model, vocab)
    with torch.no_grad():  # write along token 7's unembedding column only: a textbook prediction neuron
        model.mlp_out(1).weight[:, 3] = w_u[:, 7] * 5
        model.mlp_out(1).weight[:, 4] = -w_u[:, 9] * 5
    stats = weight_statistics(model, layers=[1]).set_index("neuron")
    # at width 32 random cosines are wide, so no absolute kurtosis cut fits: the two built neurons stand out most
    assert set(stats["wu_kurtosis"].nlargest(2).index) == {3, 4}
    assert stats.loc[3, "wu_skew"] > 0 > stats.loc[4, "wu_skew"]
    cut = stats.loc[[3, 4], "wu_kurtosis"].min() - 1e-9
    roles = classify_roles(stats.reset_index(), kurtosis_threshold=cut).set_index("neuron")["role"]
    assert roles[3] == "prediction" and roles[4] == "suppression" and (roles.drop([3, 4]) != "prediction").all()


def test_fixing_a_neuron_equals_a_hand_patched_forward(neox):
    """The intervention hook against the same model with the neuron's output folded into the MLP's bias."""
    import copy

    import torch.nn.functional as F

    from needle.universal.entropy import antipodal_pairs, fixed_activation_sweep

    tokenizer, model = neox
    sequences = pack_texts(["The cat sat on the mat. Again, the dog.\n"] * 6, tokenizer, 16)
    sweep = fixed_activation_sweep(model, sequences, (1, 7), [0.0, 4.0], batch_size=4)
    assert np.isnan(sweep["value"].iloc[0]) and list(sweep["value"].iloc[1:]) == [0.0, 4.0]
    patched = copy.deepcopy(model.model)
    out = patched.gpt_neox.layers[1].mlp.dense_4h_to_h
    with torch.no_grad():  # activation fixed at 4: its column's contribution becomes a constant bias
        out.bias += 4.0 * out.weight[:, 7]
        out.weight[:, 7] = 0
    ids = torch.tensor(np.stack(sequences))
    with torch.no_grad():
        logits = patched(input_ids=ids).logits[:, 1:-1]
    logp = F.log_softmax(logits, -1)
    loss = -logp.gather(-1, ids[:, 2:, None])[..., 0].mean()
    entropy = -(logp.exp() * logp).sum(-1).mean()
    row = sweep.iloc[2]
    assert row["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert row["entropy"] == pytest.approx(float(entropy), rel=1e-5)
    assert row["n_tokens"] == len(sequences) * 14  # 16 positions, minus the last and the BOS prediction
    assert sweep.iloc[0]["loss"] != pytest.approx(row["loss"], rel=1e-6)  # the intervention changed something
    # antipodal pairs: make neuron 2 write exactly against neuron 1 in layer 0
    with torch.no_grad():
        model.mlp_out(0).weight[:, 2] = -0.5 * model.mlp_out(0).weight[:, 1]
    pairs = antipodal_pairs(model, layers=[0], threshold=-0.99)
    assert (pairs.iloc[0][["layer", "neuron", "other_layer", "other_neuron"]].tolist() == [0, 1, 0, 2])
    assert pairs.iloc[0]["cos"] == pytest.approx(-1.0)
