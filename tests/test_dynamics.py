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


def test_pipeline_plumbing_on_a_random_tiny_model(tmp_path, bpe_tokenizer):
    import torch
    from sklearn.metrics import r2_score

    from model_zoo import build_model
    from needle.activations import extract
    from needle.models import load_model
    from needle.sindy.lm import predicted_series, probe_layers

    model = build_model("gpt_neox", len(bpe_tokenizer))
    model.save_pretrained(tmp_path / "model")
    bpe_tokenizer.save_pretrained(tmp_path / "model")
    ds = build_dynamics(None, bpe_tokenizer, n_trajectories=6, length=10)
    cache = extract(load_model(tmp_path / "model"), ds, tmp_path / "cache", site="resid", dtype="float32",
                    progress=False)
    rows, y = cache.feature("current")
    # the cache holds the model's own residual stream (block 1's output; HF's last hidden state is normed) there
    seq, start = cache.rows["sequence"][rows[0]], cache.rows["start"][rows[0]]
    with torch.no_grad():
        h = model(input_ids=torch.as_tensor(ds.tokens[seq][None].astype(np.int64)),
                  output_hidden_states=True).hidden_states[2][0, start].numpy()
    np.testing.assert_allclose(cache.layer(1)[rows[0]], h, rtol=1e-5, atol=1e-5)
    out = probe_layers(cache, "current")
    test = cache.feature_split("current")
    assert [r["layer"] for r in out] == [0, 1, 2] and all(r["n_test"] == test.sum() for r in out)
    for r in out:
        assert r["r2"] == pytest.approx(r2_score(y[test], r["prediction"]))
    # one series per trajectory, in time order: the labels of the test steps are the later values of each
    series = predicted_series(cache, out[0]["rows"], y[test])
    x, _ = logistic_trajectories(6, 10, seed=0)
    cut = ds.extra["dynamics"]["cut"]
    assert sorted(series) == list(range(6))
    for s, values in series.items():
        np.testing.assert_allclose(values, np.round(x[s, cut:-1], 2))


def test_probe_layers_refuses_a_dataset_without_a_split(tmp_path, bpe_tokenizer):
    from model_zoo import build_model
    from needle.activations import extract
    from needle.errors import InputError
    from needle.models import load_model
    from needle.sindy.lm import probe_layers

    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(tmp_path / "model")
    bpe_tokenizer.save_pretrained(tmp_path / "model")
    ds = build_dynamics(None, bpe_tokenizer, n_trajectories=4, length=6, split="trajectory")
    cache = extract(load_model(tmp_path / "model"), ds, tmp_path / "cache", site="resid", progress=False)
    with pytest.raises(InputError, match="split='time'"):
        probe_layers(cache, "current")


def _exhaustive_map(x, k):
    from itertools import combinations

    theta = np.stack([x[:-1] ** p for p in range(4)], axis=1)
    best = (np.inf, None)
    for support in combinations(range(4), k):
        c, *_ = np.linalg.lstsq(theta[:, support], x[1:], rcond=None)
        r = np.sum((theta[:, support] @ c - x[1:]) ** 2)
        if r < best[0]:
            xi = np.zeros(4)
            xi[list(support)] = c
            best = (r, xi)
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_map_equals_exhaustive_best_subset_on_noisy_series(seed):
    from needle.sindy.lm import fit_map

    x, r = logistic_trajectories(1, 30, seed=seed)
    noisy = x[0] + np.random.default_rng(seed).normal(0, 0.01, 30)
    np.testing.assert_allclose(fit_map(noisy, k=2, alpha=1e-9), _exhaustive_map(noisy, 2), rtol=1e-4, atol=1e-6)
    clean = fit_map(x[0], k=2)
    np.testing.assert_allclose(clean, [0, r[0], -r[0], 0], atol=1e-4)
    np.testing.assert_allclose(fit_map(x[0], optimizer="stlsq", alpha=0.0), [0, r[0], -r[0], 0], atol=1e-6)


@pytest.mark.parametrize("optimizer", ["miosr", "stlsq"])
def test_fit_flow_recovers_lorenz_from_clean_trajectories(optimizer):
    from needle.sindy.lm import LORENZ_COEF, fit_flow, recovery

    states = lorenz_trajectories(4, 400, dt=0.002, seed=0)
    coef = fit_flow(list(states), 0.002, optimizer=optimizer)
    scores = recovery(coef, LORENZ_COEF)
    assert scores["exact"] == 1.0 and scores["tpr"] == 1.0 and scores["fpr"] == 0.0
    assert scores["coef_error"] < 0.01


def test_recovery_counts_by_hand():
    from needle.sindy.lm import recovery

    true = np.array([[1.0, 0.0, 2.0, 0.0]])
    scores = recovery(np.array([[1.1, 0.5, 0.0, 0.0]]), true)
    assert scores == {"tpr": 0.5, "fpr": 0.5, "exact": 0.0,
                      "coef_error": pytest.approx(np.linalg.norm([0.1, 0.5, -2.0, 0]) / np.sqrt(5))}
