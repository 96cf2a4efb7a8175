"""Universal neurons: streamed moments against numpy, merged shards, the tiled correlator against brute force,
the rotation baseline, resuming, models end to end, seed families and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model_zoo import build_model
from needle.cli import app
from needle.errors import InputError
from needle.models import adapt
from needle.universal import HUB_FAMILIES, resolve_family
from needle.universal.correlate import (
    UniversalCorrelations,
    correlate_activations,
    correlate_models,
    random_basis,
)
from needle.universal.moments import CrossMoments, shifted
from needle.universal.tokens import newline_token_ids, pack_texts


def _correlated(n, p, q, *, mean_x=0.0, mean_y=0.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, p)) + 0.5 * rng.standard_normal((n, p)) + mean_x
    y = z @ rng.standard_normal((3, q)) + 0.5 * rng.standard_normal((n, q)) + mean_y
    return x.astype(np.float32), y.astype(np.float32)


def _stream(x, y, batch, state=None):
    state = state or CrossMoments(x.shape[1], y.shape[1])
    for i in range(0, len(x), batch):
        state.update(torch.from_numpy(x[i:i + batch]), torch.from_numpy(y[i:i + batch]))
    return state


# ------------------------------------------------------------------------------------------- moments


def test_streamed_correlations_match_numpy_on_data_with_a_large_mean():
    x, y = _correlated(6000, 9, 7, mean_x=1e4, mean_y=-3e3)
    reference = np.corrcoef(x.astype(np.float64), y.astype(np.float64), rowvar=False)[:9, 9:]
    streamed = _stream(x, y, batch=512).correlation().numpy()
    assert np.abs(streamed - reference).max() < 1e-5
    # the same data summed raw in float32 (x·y − n x̄ ȳ) is meaningless: the test data has teeth
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    n = len(x)
    c = X.T @ Y - torch.outer(X.sum(0), Y.sum(0)) / n
    naive = c / torch.sqrt(torch.outer((X * X).sum(0) - X.sum(0) ** 2 / n, (Y * Y).sum(0) - Y.sum(0) ** 2 / n))
    assert not np.abs(np.nan_to_num(naive.numpy(), nan=9.0) - reference).max() < 1e-2
    # means and centred second moments too
    state = _stream(x, y, batch=1000)
    np.testing.assert_allclose(state.x.mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(state.y.m2.numpy(), ((y.astype(np.float64) - y.mean(0, dtype=np.float64)) ** 2).sum(0),
                               rtol=1e-5)


def test_shards_merge_into_one_pass():
    x, y = _correlated(5000, 6, 4, mean_x=300.0, mean_y=5.0, seed=1)
    one = _stream(x, y, batch=700)
    cuts = [0, 1234, 1235, 4100, 5000]  # uneven shards, one of a single token
    shards = [_stream(x[a:b] + 0, y[a:b] + 0, batch=400) for a, b in zip(cuts[:-1], cuts[1:])]
    left = CrossMoments(6, 4)
    for shard in shards:
        left.merge(shard)
    right = CrossMoments.from_state(shards[-1].state())
    for shard in reversed(shards[:-1]):
        right = CrossMoments.from_state(shard.state()).merge(right)
    for merged in (left, right):
        assert merged.n == one.n == 5000
        np.testing.assert_allclose(merged.comoment().numpy(), one.comoment().numpy(), rtol=1e-6, atol=1e-3)
        np.testing.assert_allclose(merged.x.mean.numpy(), one.x.mean.numpy(), rtol=1e-12)
        # the shards' float32 products round differently from one pass's: agreement to float32 precision
        np.testing.assert_allclose(merged.correlation().numpy(), one.correlation().numpy(), atol=1e-6)
    assert CrossMoments(6, 4).merge(one).n == one.n  # an empty state is the identity
    # where float32 rounds nothing (small integers, a zero shift), merging is exact to the last bit
    ints = np.random.default_rng(2).integers(0, 16, (3000, 5)).astype(np.float32)
    zero = torch.zeros(5)

    def exact(rows):
        state = CrossMoments(5, 5)
        for i in range(0, len(rows), 256):
            batch = shifted(torch.from_numpy(rows[i:i + 256]), zero)
            state.update(batch, batch)
        return state

    whole = exact(ints)
    merged = exact(ints[:1000]).merge(exact(ints[1000:2999])).merge(exact(ints[2999:]))
    assert torch.equal(merged.sxy, whole.sxy) and torch.equal(merged.x.s1, whole.x.s1)
    assert torch.equal(whole.sxy, torch.from_numpy(ints.astype(np.float64).T @ ints.astype(np.float64)))
    with pytest.raises(InputError, match="shapes"):
        CrossMoments(6, 5).merge(one)


def test_constant_variables_give_nan_not_garbage():
    x, y = _correlated(300, 3, 2)
    x[:, 1] = 7.0
    rho = _stream(x, y, batch=100).correlation().numpy()
    assert np.isnan(rho[1]).all() and np.isfinite(rho[[0, 2]]).all()


# ---------------------------------------------------------------------------------------- the correlator


def _family_activations(n=2400, d=12, n_layers=3, n_models=3, seed=0):
    """Activations of 'models' sharing latent features, with large per-model offsets."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 10))
    acts = {}
    for m in range(n_models):
        for layer in range(n_layers):
            mixing = rng.standard_normal((10, d)) * (rng.random((10, d)) < 0.3)
            acts[(m, layer)] = (z @ mixing + rng.standard_normal((n, d)) + 40.0 * m - 5 * layer).astype(np.float32)
    return acts


def _source(acts, batch, fail_after=None):
    n = len(next(iter(acts.values())))

    def batches(blocks, start):
        for i, first in enumerate(range(start * batch, n, batch)):
            if fail_after is not None and i >= fail_after:
                raise KeyboardInterrupt  # an interrupted run
            yield {b: torch.from_numpy(acts[b][first:first + batch]) for b in blocks}
    return batches


def _run(acts, **kwargs):
    widths = {b: a.shape[1] for b, a in acts.items()}
    names = [f"s{m}" for m in range(1 + max(m for m, _ in acts))]
    kwargs.setdefault("progress", False)
    batch = kwargs.pop("batch", 300)
    return correlate_activations(_source(acts, batch), widths, names=names, **kwargs)


def test_tiled_correlations_match_brute_force():
    acts = _family_activations()
    d, n_layers = 12, 3
    result = _run(acts, top_k=3, bins=40, max_tile_bytes=d * d * 8 * 2)  # two layer pairs per pass
    assert result.params["n_passes"] == 9
    a = np.concatenate([acts[(0, layer)] for layer in range(n_layers)], 1).astype(np.float64)
    neurons = result.neurons
    assert list(neurons["id"][:2]) == ["L0.N0", "L0.N1"] and len(neurons) == n_layers * d
    excess = np.zeros(n_layers * d)
    for m, name in ((1, "s1"), (2, "s2")):
        b = np.concatenate([acts[(m, layer)] for layer in range(n_layers)], 1).astype(np.float64)
        rho = np.corrcoef(a, b, rowvar=False)[: n_layers * d, n_layers * d:]
        np.testing.assert_allclose(neurons[f"{name}_max_corr"], rho.max(1), atol=1e-6)
        np.testing.assert_allclose(neurons[f"{name}_min_corr"], rho.min(1), atol=1e-6)
        best = rho.argmax(1)
        assert list(neurons[f"{name}_partner"]) == [f"L{j // d}.N{j % d}" for j in best]
        rotated = np.concatenate([b[:, layer * d:(layer + 1) * d] @ random_basis(d, "haar", m * 1009 + layer).T
                                  for layer in range(n_layers)], 1)
        base = np.corrcoef(a, rotated, rowvar=False)[: n_layers * d, n_layers * d:].max(1)
        np.testing.assert_allclose(neurons[f"{name}_baseline"], base, atol=1e-6)
        excess += (rho.max(1) - base) / 2
        top = result.partners[result.partners["model"] == name]
        np.testing.assert_allclose(top["corr"].to_numpy().reshape(-1, 3), -np.sort(-rho, 1)[:, :3], atol=1e-6)
        counts = result.histograms.query("model == @name and kind == 'neurons'")["count"].to_numpy()
        np.testing.assert_array_equal(counts, np.histogram(rho, bins=40, range=(-1, 1))[0])
    np.testing.assert_allclose(neurons["excess"], excess, atol=1e-6)
    np.testing.assert_allclose(neurons["max_minus_min"],
                               neurons[["s1_max_corr", "s2_max_corr"]].max(axis=1) -
                               neurons[["s1_max_corr", "s2_max_corr"]].min(axis=1), atol=1e-12)
    pairs = result.layer_pairs.pivot(index="layer", columns="partner_layer", values="fraction").to_numpy()
    expected = np.zeros((n_layers, n_layers))
    for m in (1, 2):
        b = np.concatenate([acts[(m, layer)] for layer in range(n_layers)], 1).astype(np.float64)
        best_layer = np.corrcoef(a, b, rowvar=False)[: n_layers * d, n_layers * d:].argmax(1) // d
        for layer_a in range(n_layers):
            expected[layer_a] += np.bincount(best_layer[layer_a * d:(layer_a + 1) * d], minlength=n_layers) / d / 2
    np.testing.assert_allclose(pairs, expected, atol=1e-12)
    np.testing.assert_allclose(pairs.sum(1), 1.0)


def test_one_pass_and_many_passes_agree_and_gaussian_baseline_is_the_papers():
    acts = _family_activations(n=900, d=8, n_layers=2, n_models=2, seed=3)
    one = _run(acts, max_tile_bytes=1 << 30)
    many = _run(acts, max_tile_bytes=1, batch=97)
    assert one.params["n_passes"] == 1 and many.params["n_passes"] == 4
    np.testing.assert_allclose(one.neurons["excess"], many.neurons["excess"], atol=1e-6)
    assert list(one.neurons["s1_partner"]) == list(many.neurons["s1_partner"])
    gaussian = _run(acts, baseline="gaussian", seed=5)
    a = np.concatenate([acts[(0, layer)] for layer in range(2)], 1).astype(np.float64)
    rotated = np.concatenate([acts[(1, layer)].astype(np.float64) @
                              random_basis(8, "gaussian", 5 * 1_000_003 + 1009 + layer).T for layer in range(2)], 1)
    base = np.corrcoef(a, rotated, rowvar=False)[:16, 16:].max(1)
    np.testing.assert_allclose(gaussian.neurons["s1_baseline"], base, atol=1e-6)
    with pytest.raises(InputError, match="baseline"):
        _run(acts, baseline="uniform")


def test_random_basis_is_orthogonal_and_seeded():
    r = random_basis(50, "haar", 7)
    np.testing.assert_allclose(r @ r.T, np.eye(50), atol=1e-10)
    np.testing.assert_array_equal(r, random_basis(50, "haar", 7))
    assert not np.allclose(r, random_basis(50, "haar", 8))
    g = random_basis(50, "gaussian", 7)
    assert np.abs(g @ g.T - np.diag(np.diag(g @ g.T))).max() > 1  # the paper's matrix is not a rotation
    # Haar: the diagonal of Q has mean 0 over draws (QR without the sign fix would bias it positive)
    assert abs(np.mean([random_basis(6, "haar", s)[0, 0] for s in range(400)])) < 0.06


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    acts = _family_activations(n=1200, d=8, n_layers=2, n_models=2, seed=4)
    widths = {b: a.shape[1] for b, a in acts.items()}
    common = dict(names=["s0", "s1"], progress=False, max_tile_bytes=8 * 8 * 8 * 2, fingerprint="abc",
                  work_dir=tmp_path / "work", checkpoint_seconds=0.0)
    with pytest.raises(KeyboardInterrupt):
        correlate_activations(_source(acts, 100, fail_after=5), widths, **common)
    saved = torch.load(tmp_path / "work" / "checkpoint.pt", weights_only=False)
    assert saved["done_passes"] == 0 and saved["current"]["batch"] == 5
    calls = []

    def counting(blocks, start):
        calls.append(start)
        return _source(acts, 100)(blocks, start)

    resumed = correlate_activations(counting, widths, **common)
    assert calls == [5, 0]  # the first pass resumes at batch 5, the second starts afresh
    fresh = _run(acts, max_tile_bytes=8 * 8 * 8 * 2, batch=100)
    np.testing.assert_allclose(resumed.neurons["excess"], fresh.neurons["excess"], atol=1e-9)
    with pytest.raises(InputError, match="different run"):
        correlate_activations(_source(acts, 100), widths, **{**common, "fingerprint": "other"})


def test_non_finite_activations_are_refused():
    acts = _family_activations(n=200, d=4, n_layers=1, n_models=2)
    acts[(1, 0)][17, 2] = np.nan
    with pytest.raises(InputError, match="not finite"):
        _run(acts)


def test_results_round_trip_through_disk(tmp_path):
    result = _run(_family_activations(n=300, d=4, n_layers=2, n_models=2))
    result.save(tmp_path / "out")
    again = UniversalCorrelations.load(tmp_path / "out")
    assert again.neurons.equals(result.neurons) and again.partners.equals(result.partners)
    assert again.params["models"] == ["s0", "s1"]
    with pytest.raises(InputError, match="already exists"):
        result.save(tmp_path / "out")


# ---------------------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def neox_pair(bpe_tokenizer):
    tokenizer = bpe_tokenizer
    models = [adapt(build_model("gpt_neox", len(tokenizer), seed=s, n_layers=2), tokenizer, model_id=f"m{s}")
              for s in (0, 1)]
    return tokenizer, models


def test_models_end_to_end_against_captured_activations(neox_pair):
    tokenizer, models = neox_pair
    texts = ["The quick brown fox.\nJumps over the lazy dog.\n\nAgain and again.", "def f(x):\n    return x\n"] * 6
    sequences = pack_texts(texts, tokenizer, 24)
    assert all(s[0] == tokenizer.bos_token_id and len(s) == 24 for s in sequences)
    newlines = newline_token_ids(tokenizer)
    assert newlines and all("\n" in tokenizer.decode([i]) for i in newlines)
    # a model against itself: every neuron's best partner is itself, with correlation 1
    same = correlate_models([models[0], models[0]], sequences, names=["a", "b"], progress=False)
    live = same.neurons["b_max_corr"].notna()
    assert live.mean() > 0.9
    np.testing.assert_allclose(same.neurons.loc[live, "b_max_corr"], 1.0, atol=1e-5)
    assert (same.neurons.loc[live, "b_partner"] == same.neurons.loc[live, "id"]).all()
    # two models, newlines and BOS left out: against numpy on the captured activations
    result = correlate_models(models, sequences[:5] + [sequences[5][:9]], names=["a", "b"],
                              exclude_token_ids=newlines, pad_id=1, batch_tokens=48, progress=False)
    acts = {m: [] for m in range(2)}
    for seq in sequences[:5] + [sequences[5][:9]]:
        ids = torch.tensor(seq)[None]
        keep = ~np.isin(seq, newlines)
        keep[0] = False
        for m, model in enumerate(models):
            captured = model.capture(ids, torch.ones_like(ids), [0, 1])
            acts[m].append(torch.cat([captured[0][0], captured[1][0]], 1).numpy()[keep])
    a, b = (np.concatenate(acts[m]).astype(np.float64) for m in range(2))
    assert result.params["n_tokens"] == len(a)
    rho = np.corrcoef(a, b, rowvar=False)[: a.shape[1], a.shape[1]:]
    np.testing.assert_allclose(result.neurons["b_max_corr"], np.nanmax(rho, 1), atol=1e-5)


# -------------------------------------------------------------------------------------------- families


def test_families_resolve_from_names_lists_and_directories(tmp_path):
    crfm = resolve_family("stanford-crfm-gpt2-medium")
    assert [m.model for m in crfm][0] == "stanford-crfm/arwen-gpt2-medium-x21" and len(crfm) == 5
    assert [m.model for m in resolve_family("polypythia-160m")][:2] == ["EleutherAI/pythia-160m",
                                                                         "EleutherAI/pythia-160m-seed1"]
    assert set(HUB_FAMILIES) >= {"stanford-crfm-gpt2-small", "polypythia-70m"}
    assert [m.model for m in resolve_family("org/x, org/y")] == ["org/x", "org/y"]
    (tmp_path / "fam" / "seed-0").mkdir(parents=True)
    (tmp_path / "fam" / "family.json").write_text(json.dumps({"format": "needle-seed-family", "members": [
        {"name": "seed-0", "model": "seed-0"}, {"name": "b", "model": "org/b"}]}))
    members = resolve_family(tmp_path / "fam")
    assert members[0].model == str(tmp_path / "fam" / "seed-0") and members[1].model == "org/b"
    for bad, message in (("nothing-known", "not a family"), ("org/only", "not a family"),
                         (str(tmp_path), "no family.json")):
        with pytest.raises(InputError, match=message):
            resolve_family(bad)


def test_cli_correlates_a_toy_family_and_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from needle.toy import TextUnit, ToySize, TrainSettings, split_units, train_seed_family

    units = [TextUnit("en", f"u{i}", "The cat sat on the mat.\nThe dog sat on the log.\n" * 3) for i in range(8)]
    corpus = split_units(units, heldout_fraction=0.25)
    tiny = ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=24, context_length=16)
    train_seed_family(tmp_path / "fam", corpus, [0, 1], size=tiny, echo=None,
                      settings=TrainSettings(steps=2, max_minutes=None, batch_size=2, vocab_size=280, threads=1))
    (tmp_path / "text.txt").write_text("The cat sat on the log.\nA dog.\n" * 40)
    out = tmp_path / "corr"
    result = CliRunner().invoke(app, ["universal", "correlate", "--family", str(tmp_path / "fam"), "--out", str(out),
                                      "--text", str(tmp_path / "text.txt"), "--exclude-newlines", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "excess correlation > 0.5" in result.output
    loaded = UniversalCorrelations.load(out)
    assert len(loaded.neurons) == 2 * 24 and loaded.params["exclude_newlines"]
    assert loaded.params["members"][0].endswith("seed-0")
    assert not (tmp_path / "corr.work").exists()  # the checkpoint is removed after success
    stats = CliRunner().invoke(app, ["universal", "stats", "--model", str(tmp_path / "fam"), "--out",
                                     str(tmp_path / "stats"), "--text", str(tmp_path / "text.txt"),
                                     "--correlations", str(out), "--threshold", "0.0"])
    assert stats.exit_code == 0, stats.output
    import pandas as pd

    table = pd.read_parquet(tmp_path / "stats" / "statistics.parquet")
    assert len(table) == 2 * 24 and {"pre_kurtosis", "cos_in_out", "role", "excess", "universal"} <= set(table)
    np.testing.assert_allclose(table["excess"], loaded.neurons["excess"])
    comparison = pd.read_csv(tmp_path / "stats" / "comparison.csv")
    assert (comparison["n_universal"] + comparison["n_other"] == 48).all()
    assert (tmp_path / "stats" / "universal_percentiles.png").stat().st_size > 1000
    explained = CliRunner().invoke(app, ["universal", "explain", "--model", str(tmp_path / "fam"), "--out",
                                         str(tmp_path / "explain.parquet"), "--text", str(tmp_path / "text.txt"),
                                         "--correlations", str(out), "--threshold", "-1", "--unigrams", "10"])
    assert explained.exit_code == 0, explained.output
    families = pd.read_csv(tmp_path / "explain_families.csv", index_col="layer")
    assert families.to_numpy().sum() == 48  # every neuron is "universal" at threshold -1 and gets one family

    from needle.cli import main

    def run(*args):
        capsys.readouterr()  # drop what training wrote
        monkeypatch.setattr("sys.argv", ["needle", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code, capsys.readouterr().err

    for args, message in (
        (["--family", "nope-family", "--out", str(tmp_path / "x"), "--text", str(tmp_path / "text.txt")],
         "not a family"),
        (["--family", str(tmp_path / "fam"), "--out", str(out), "--text", str(tmp_path / "text.txt")],
         "already exists"),
        (["--family", str(tmp_path / "fam"), "--out", str(tmp_path / "y"), "--baseline", "uniform"], "--baseline"),
        (["--family", "stanford-crfm-gpt2-small", "--out", str(tmp_path / "z"), "--text",
          str(tmp_path / "text.txt"), "--device", "cpu"], "hub"),
    ):
        code, err = run("universal", "correlate", *args)
        assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_benchmark_references_are_pearson_correlations():
    from benchmark_scripts import load_benchmark

    bench = load_benchmark("correlate.py")
    acts = bench.gaussian_activations(2, 2, 16, 500)
    a, b = bench.stacked(acts, 0).astype(np.float64), bench.stacked(acts, 1).astype(np.float64)
    expected = np.corrcoef(a, b, rowvar=False)[:32, 32:]
    np.testing.assert_allclose(bench.run_paper(acts, 128)[1], expected, atol=1e-10)
    np.testing.assert_allclose(bench.run_numpy(acts)[1], expected, atol=1e-12)
    result = bench.run_needle(acts, 128, 1 << 20)
    np.testing.assert_allclose(result.neurons["m1_max_corr"], expected.max(1), atol=1e-6)
