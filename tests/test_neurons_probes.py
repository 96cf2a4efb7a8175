"""Neuron analyses tied to features and probes: class distributions, the error browser, superposition checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model, hand_activations
from needle.activations import extract
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError
from needle.models import adapt
from needle.neurons import class_distributions, compound_activation, probe_errors, rotation_comparison
from needle.probing import ArraySource, load_splits, splits_path, sweep


def make_dataset(tokenizer, n_sequences=24, seed=0):
    rng = np.random.default_rng(seed)
    assembler = DatasetAssembler("test", {"seed": seed}, tokenizer_info(tokenizer))
    assembler.add_feature("tok_a")
    assembler.add_feature("seq_mean", level="sequence")
    for s in range(n_sequences):
        length = int(rng.integers(6, 20))
        tokens = rng.integers(2, len(tokenizer), length)
        assembler.add_sequence(tokens, group=f"doc{s // 2}")
        positions = np.arange(length)
        assembler.add_examples("tok_a", s, positions, tokens % 3 == 0)  # a token-identity feature
        assembler.add_examples("seq_mean", s, 0, s % 2, end=length, aggregation="mean", skip=1)
    return assembler.build(positive_ratio=None)


@pytest.fixture(scope="module")
def setup(bpe_tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probes")
    adapter = adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=4), bpe_tokenizer, model_id="tiny-neox")
    dataset = make_dataset(bpe_tokenizer)
    cache = extract(adapter, dataset, tmp / "cache", layers=[1], dtype="float32", progress=False)
    out = tmp / "results.parquet"
    results = sweep(cache, out=out, features=["tok_a"], methods=("mean_diff",), ks=(1, 2), baselines=False,
                    progress=False, prefilter=16)
    return adapter, dataset, cache, out, results


def test_class_distributions_equal_hand_activations(setup):
    adapter, dataset, *_ = setup
    neurons = [(1, 2), (0, 7)]
    table = class_distributions(adapter, dataset, "seq_mean", neurons)
    ex = dataset.feature_examples("seq_mean")
    assert len(table) == len(neurons) * 2 * len(ex)
    for (layer, index) in neurons:
        for site in ("pre", "post"):
            got = table[(table["layer"] == layer) & (table["neuron"] == index) & (table["site"] == site)]
            got = got.sort_values("sequence")
            assert got["y"].tolist() == [int(v) for v in ex.label[np.argsort(ex.sequence)]]
            for row in got.itertuples():
                acts = hand_activations(adapter, torch.from_numpy(dataset.tokens[row.sequence].astype(np.int64))[None],
                                        layer)[site][:, index]
                assert row.activation == pytest.approx(float(acts[1:].mean()), rel=1e-4, abs=1e-5)


def test_probe_errors_are_exactly_the_misclassified_test_examples(setup):
    adapter, dataset, cache, out, results = setup
    splits = load_splits(splits_path(out))
    for _, result in results.iterrows():
        table = probe_errors(cache, result, splits, dataset=dataset, context=(2, 1))
        everything = probe_errors(cache, result, splits_path(out), dataset=dataset, include_correct=True)
        # Independent recomputation: hand activations of every test example, the probe applied by hand.
        test = splits[(splits["feature"] == "tok_a") & (splits["split"] == "test")]
        wrong = set()
        for row, y in zip(test["row"], test["y"]):
            seq, pos = int(cache.rows["sequence"][row]), int(cache.rows["start"][row])
            acts = hand_activations(adapter, torch.from_numpy(dataset.tokens[seq].astype(np.int64))[None], 1)["post"]
            neurons = [int(v) for v in result["neurons"]]
            score = float(acts[pos, neurons].double() @ torch.tensor(list(result["coef"]))) + result["intercept"]
            if (score > 0) != bool(y):
                wrong.add(int(row))
        assert wrong and set(table["row"]) == wrong
        assert set(table["outcome"]) <= {"false_positive", "false_negative"}
        # ... and agree with the precision and recall the sweep recorded.
        counts = everything["outcome"].value_counts()
        tp, fp, fn = (int(counts.get(k, 0)) for k in ("true_positive", "false_positive", "false_negative"))
        assert tp + fn == result["n_test_pos"] and len(everything) == result["n_test"]
        assert tp / max(tp + fp, 1) == pytest.approx(result["precision"])
        assert tp / (tp + fn) == pytest.approx(result["recall"])
        fps = table[table["outcome"] == "false_positive"]["score"]
        assert fps.is_monotonic_decreasing  # most confident mistakes first
        for row in table.itertuples():
            assert row.context_tokens[row.focus] == row.token
            assert row.y == int(row.outcome == "false_negative")


def test_probe_errors_refuse_a_mismatched_result(setup):
    _, dataset, cache, out, results = setup
    bad = results.iloc[0].copy()
    bad["dataset_hash"] = "0" * 64
    with pytest.raises(InputError, match="dataset"):
        probe_errors(cache, bad, splits_path(out), dataset=dataset)


def test_rotation_comparison_prefers_the_neuron_basis_on_a_planted_feature():
    rng = np.random.default_rng(0)
    n, d = 600, 24
    y = (rng.random(n) < 0.3).astype(np.int8)
    X = rng.normal(size=(n, d))
    X[:, 5] += 3.0 * y  # the feature lives in neuron 5 only
    source = ArraySource({0: X}, {"f": (np.arange(n), y)}, groups=np.arange(n) // 6)
    table = rotation_comparison(source, "f", 0, n_candidates=10, n_report=5, ks=(1, 2), n_rotations=3)
    singles = table[table["probe"] == "single"]
    best_neuron = singles[(singles["basis"] == "neuron") & (singles["rank"] == 0)].iloc[0]
    assert best_neuron["dimensions"] == [5]
    best_random = singles[(singles["basis"] == "random") & (singles["rank"] == 0)]
    assert len(best_random) == 3
    assert (best_neuron["f1"] > best_random["f1"] + 0.1).all()
    sparse = table[(table["probe"] == "sparse") & (table["k"] == 1)]
    assert sparse[sparse["basis"] == "neuron"]["f1"].iloc[0] > sparse[sparse["basis"] == "random"]["f1"].max()
    gaussian = rotation_comparison(source, "f", 0, n_candidates=5, n_report=5, n_rotations=1, rotation="gaussian")
    assert set(gaussian["basis"]) == {"neuron", "random"}


def test_compound_activation_sums_neurons_at_the_last_token(setup, bpe_tokenizer):
    adapter = setup[0]
    texts = {"compound": ["the quick brown fox"], "lookalike": ["the lazy brown dog", "a quick fox"]}
    neurons = [(1, 3), (0, 9)]
    table = compound_activation(adapter, texts, neurons, weights=[1.0, -2.0])
    assert table["class"].tolist() == ["compound", "lookalike", "lookalike"]
    for row in table.itertuples():
        ids = torch.tensor([bpe_tokenizer(row.text)["input_ids"]])
        a = float(hand_activations(adapter, ids, 1)["post"][-1, 3])
        b = float(hand_activations(adapter, ids, 0)["post"][-1, 9])
        assert row.activation == pytest.approx(a - 2.0 * b, rel=1e-4, abs=1e-5)
        assert row.position == ids.shape[1] - 1
    with pytest.raises(InputError, match="weights"):
        compound_activation(adapter, texts, neurons, weights=[1.0])
