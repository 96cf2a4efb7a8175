"""The ``dynamics`` collection: targets against a hand recomputation, splits that never leak."""

import numpy as np
import pytest

from needle.datasets.dynamics import build_dynamics, logistic_trajectories, lorenz_trajectories
from needle.datasets.registry import get_builder


def _labels(ds, name):
    f = [x["name"] for x in ds.features].index(name)
    keep = ds.examples.feature == f
    return ds.examples.sequence[keep], ds.examples.start[keep], ds.examples.label[keep], ds.examples.split[keep]


def test_logistic_targets_follow_the_map():
    x, r = logistic_trajectories(3, 12, seed=1)
    for t in range(11):
        np.testing.assert_allclose(x[:, t + 1], r * x[:, t] * (1 - x[:, t]))
    ds = build_dynamics(None, "minilm", system="logistic", n_trajectories=3, length=12, seed=1)
    seq, start, cur, _ = _labels(ds, "current")
    _, _, nxt, _ = _labels(ds, "next")
    for s in range(3):
        np.testing.assert_allclose(cur[seq == s], np.round(x[s, :-1], 2))
        np.testing.assert_allclose(nxt[seq == s], np.round(x[s, 1:], 2))
        # each example sits on a comma token
        text = ds.texts[s]
        assert text.count(",") == (seq == s).sum()
    assert get_builder("dynamics") is build_dynamics


def test_lorenz_rk4_step_and_hidden_targets():
    s = lorenz_trajectories(2, 5, dt=0.01, burn_in=0, seed=2)

    def f(v):
        x, y, z = v
        return np.array([10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z])

    v = s[0, 0]
    k1 = f(v); k2 = f(v + 0.005 * k1); k3 = f(v + 0.005 * k2); k4 = f(v + 0.01 * k3)  # noqa: E702
    np.testing.assert_allclose(s[0, 1], v + 0.01 / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    ds = build_dynamics(None, "minilm", system="lorenz", n_trajectories=2, length=8, seed=2)
    assert {x["name"] for x in ds.features} == {"current", "next", "y", "z"}
    states = lorenz_trajectories(2, 8, seed=2)
    seq, _, y, _ = _labels(ds, "y")
    np.testing.assert_allclose(y[seq == 1], states[1, :-1, 1])


def test_time_split_never_leaks():
    ds = build_dynamics(None, "minilm", n_trajectories=4, length=20, train_fraction=0.6)
    seq, start, _, split = _labels(ds, "current")
    for s in range(4):
        tr, te = start[(seq == s) & (split == 0)], start[(seq == s) & (split == 1)]
        assert tr.size and te.size and tr.max() < te.min()


def test_bad_input():
    from needle.errors import InputError

    with pytest.raises(InputError, match="system"):
        build_dynamics(None, "minilm", system="rossler")


def test_dynamics_corpus_holds_out_whole_trajectories():
    from needle.toy.corpus import dynamics_corpus

    corpus = dynamics_corpus("lorenz", n_trajectories=10, length=6, heldout_fraction=0.2, seed=3)
    assert len(corpus.train) == 8 and len(corpus.heldout) == 2
    assert not {u.name for u in corpus.train} & {u.name for u in corpus.heldout}
    x = lorenz_trajectories(10, 6, seed=3)[9, :, 0]
    assert corpus.heldout[-1].text == ", ".join(f"{v:.2f}" for v in x)


def test_pipeline_plumbing_on_a_random_tiny_model():
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from needle.sindy.lm import logistic_map_fit, probe_layers, separator_states

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=32))
    ds = build_dynamics(None, "minilm", n_trajectories=6, length=12)
    states, y, split = separator_states(model, ds, "current")
    assert states.shape[:2] == (3, len(y))
    # the state at the first example is the model's own hidden state at that token
    ids = torch.as_tensor(ds.tokens[0][None].astype(np.int64))
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[2][0, ds.examples.start[0]].numpy()
    np.testing.assert_allclose(states[2, 0], h, rtol=1e-5, atol=1e-6)
    rows = probe_layers(states, y, split)
    assert [r["layer"] for r in rows] == [0, 1, 2] and all(r["n_test"] == (split == 1).sum() for r in rows)
    x, r = logistic_trajectories(1, 50, seed=4)
    xi = logistic_map_fit(x[0, :-1], x[0, 1:])
    np.testing.assert_allclose(xi, [0, r[0], -r[0], 0], atol=1e-8)
