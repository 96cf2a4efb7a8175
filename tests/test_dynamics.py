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
