"""Extraction and the ActivationCache: values, layout, resume, atomicity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import FAMILIES, build_model, hand_activations
from needle.activations import extract, load_cache, plan_batches
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import FormatError, InputError, TokenizerMismatchError
from needle.models import adapt


def make_dataset(tokenizer, *, n_sequences=7, seed=0, vocab=None):
    """Random sequences of varied lengths with token and span (mean/max, skip) examples."""
    rng = np.random.default_rng(seed)
    vocab = vocab or len(tokenizer)
    assembler = DatasetAssembler("test", {"seed": seed}, tokenizer_info(tokenizer))
    assembler.add_feature("tok_a")
    assembler.add_feature("tok_b")
    assembler.add_feature("seq_mean", level="sequence")
    assembler.add_feature("seq_max", level="sequence")
    for s in range(n_sequences):
        length = int(rng.integers(4, 30))
        assembler.add_sequence(rng.integers(2, vocab, length), group=f"doc{s // 2}")
        positions = np.arange(length)
        assembler.add_examples("tok_a", s, positions, rng.integers(0, 2, length))
        assembler.add_examples("tok_b", s, positions[::2], positions[::2] % 3 == 0)  # overlaps tok_a's positions
        assembler.add_examples("seq_mean", s, 0, s % 2, end=length, aggregation="mean", skip=1)
        assembler.add_examples("seq_max", s, 1, s % 3 == 0, end=length - 1, aggregation="max")
    return assembler.build(positive_ratio=None)


def expected_rows(adapter, dataset, cache, site):
    """Each cache row recomputed by hand from an unpadded forward pass of its sequence."""
    rows = cache.rows
    per_sequence = {}
    out = {}
    for layer in cache.layers:
        values = np.empty((cache.n_rows, cache.width), np.float32)
        for r in range(cache.n_rows):
            seq = int(rows["sequence"][r])
            key = (seq, layer)
            if key not in per_sequence:
                ids = torch.from_numpy(dataset.tokens[seq].astype(np.int64))[None]
                per_sequence[key] = hand_activations(adapter, ids, layer)[site].numpy()
            acts = per_sequence[key]
            start, end, skip = int(rows["start"][r]), int(rows["end"][r]), int(rows["skip"][r])
            span = acts[start + skip : end]
            values[r] = {"token": span[0] if len(span) else None, "mean": span.mean(0), "max": span.max(0)}[rows["aggregation"][r]]
        out[layer] = values
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_extract_equals_hand_recomputation(tmp_path, bpe_tokenizer, family, padding_side):
    adapter = adapt(build_model(family, len(bpe_tokenizer)), bpe_tokenizer, model_id=f"tiny-{family}")
    dataset = make_dataset(bpe_tokenizer)
    for site in ("post", "pre"):
        cache = extract(adapter, dataset, tmp_path / f"{site}", layers=[0, 2], site=site, dtype="float32",
                        batch_tokens=64, padding_side=padding_side, progress=False)
        want = expected_rows(adapter, dataset, cache, site)
        for layer in (0, 2):
            np.testing.assert_allclose(cache.layer(layer), want[layer], rtol=1e-4, atol=1e-5)


def test_cache_layout_labels_and_fp16(tmp_path, bpe_tokenizer):
    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(bpe_tokenizer)
    full = extract(adapter, dataset, tmp_path / "f32", dtype="float32", progress=False)
    half = extract(adapter, dataset, tmp_path / "f16", progress=False)
    assert half.layer(1).dtype == np.float16 and half.layers == [0, 1, 2]
    np.testing.assert_array_equal(half.layer(1), full.layer(1).astype(np.float16))
    units = dataset.units()
    assert half.n_rows == len(units) < len(dataset.examples)  # shared positions are extracted once
    for name in dataset.feature_names:
        rows, y = half.feature(name)
        ex = dataset.feature_examples(name)
        np.testing.assert_array_equal(y, ex.label)
        # each example's row points at its own (sequence, span)
        np.testing.assert_array_equal(half.rows["sequence"][rows], ex.sequence)
        np.testing.assert_array_equal(half.rows["start"][rows], ex.start)
        np.testing.assert_array_equal(half.rows["end"][rows], ex.end)
        np.testing.assert_array_equal(half.rows["group"][rows], dataset.groups[ex.sequence])
    assert half.manifest["dataset_hash"] == dataset.content_hash()
    assert half.manifest["hook_names"][0] == "blocks.0.mlp.hook_post"
    assert half.manifest["model"]["weights_hash"] == adapter.weights_hash()
    with pytest.raises(InputError, match="unknown feature"):
        half.feature("nope")


def test_resume_is_byte_identical(tmp_path, bpe_tokenizer):
    adapter = adapt(build_model("llama", len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(bpe_tokenizer, n_sequences=12)
    extract(adapter, dataset, tmp_path / "whole", batch_tokens=48, progress=False)

    class Killed(Exception):
        pass

    def kill_after_three(done, total):
        assert total > 4
        if done == 3:
            raise Killed

    with pytest.raises(Killed):
        extract(adapter, dataset, tmp_path / "resumed", batch_tokens=48, progress=False, checkpoint_seconds=0,
                callback=kill_after_three)
    assert not (tmp_path / "resumed").exists()
    with pytest.raises(FormatError, match="resume"):
        load_cache(tmp_path / "resumed")
    seen = []
    extract(adapter, dataset, tmp_path / "resumed", batch_tokens=48, progress=False, callback=lambda d, t: seen.append(d))
    assert seen[0] == 4  # started after the three committed batches
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name

    # With rare checkpoints a killed run redoes the uncommitted batches, over bytes already written.
    with pytest.raises(Killed):
        extract(adapter, dataset, tmp_path / "rare", batch_tokens=48, progress=False, checkpoint_seconds=3600,
                callback=kill_after_three)
    seen.clear()
    extract(adapter, dataset, tmp_path / "rare", batch_tokens=48, progress=False, callback=lambda d, t: seen.append(d))
    assert seen[0] == 1
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "rare" / name).read_bytes(), name
    # a partial run with other settings is not silently mixed in
    with pytest.raises(Killed):
        extract(adapter, dataset, tmp_path / "other", batch_tokens=48, progress=False, checkpoint_seconds=0,
                callback=kill_after_three)
    with pytest.raises(InputError, match="different settings"):
        extract(adapter, dataset, tmp_path / "other", batch_tokens=64, progress=False)


def test_tokenizer_mismatch_is_refused_and_nothing_written(tmp_path, bpe_tokenizer, minilm_tokenizer):
    adapter = adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(minilm_tokenizer, vocab=len(bpe_tokenizer))
    with pytest.raises(TokenizerMismatchError, match="Rebuild the dataset"):
        extract(adapter, dataset, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_input(tmp_path, bpe_tokenizer):
    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(bpe_tokenizer)
    extract(adapter, dataset, tmp_path / "out", layers=[1], progress=False)
    with pytest.raises(InputError, match="already exists"):
        extract(adapter, dataset, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="layers 0..2"):
        extract(adapter, dataset, tmp_path / "x", layers=[5], progress=False)
    with pytest.raises(InputError, match="site"):
        extract(adapter, dataset, tmp_path / "x", site="mlp", progress=False)
    with pytest.raises(FormatError, match="not a directory|not an activation cache"):
        extract(adapter, tmp_path / "missing", tmp_path / "x", progress=False)
    with pytest.raises(InputError, match="layer 0 is not in the cache"):
        load_cache(tmp_path / "out").layer(0)
    long = make_dataset(bpe_tokenizer)
    long.tokens[0] = np.resize(long.tokens[0], 200)
    long.attention_mask[0] = np.ones(200, np.int8)
    with pytest.raises(InputError, match="context-length"):
        extract(adapter, long, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_nan_activations_are_a_clear_error(tmp_path, bpe_tokenizer):
    model = build_model("gpt2", len(bpe_tokenizer))
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.bias[3] = float("nan")
    with pytest.raises(InputError, match="non-finite activation at layer 1"):
        extract(adapt(model, bpe_tokenizer), make_dataset(bpe_tokenizer), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_plan_batches_respects_budget_and_is_deterministic():
    lengths = np.array([5, 30, 12, 30, 1, 7, 19])
    batches = plan_batches(lengths, np.arange(7), batch_tokens=60, max_batch_size=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * lengths[batch].max() <= max(60, lengths[batch].max())
    assert [b.tolist() for b in batches] == [b.tolist() for b in plan_batches(lengths, np.arange(7), 60, 3)]
    assert batches[0].tolist() == [1, 3]  # longest first, ties by id


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_layer_files_equal_a_hand_capture_byte_for_byte(tmp_path, bpe_tokenizer, family, padding_side):
    # One batch (a huge budget): padded by hand, neurons caught by a hook placed by hand, rows reduced by hand.
    adapter = adapt(build_model(family, len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(bpe_tokenizer)
    cache = extract(adapter, dataset, tmp_path / "c", layers=[1], batch_tokens=10**6, padding_side=padding_side,
                    progress=False)
    order = sorted(range(dataset.n_sequences), key=lambda s: (-len(dataset.tokens[s]), s))
    width = len(dataset.tokens[order[0]])
    ids = torch.full((len(order), width), adapter.tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((len(order), width), dtype=torch.long)
    left = {}
    for b, seq in enumerate(order):
        n = len(dataset.tokens[seq])
        left[seq] = width - n if padding_side == "left" else 0
        ids[b, left[seq] : left[seq] + n] = torch.from_numpy(dataset.tokens[seq].astype(np.int64))
        mask[b, left[seq] : left[seq] + n] = 1
    caught = {}
    module = adapter.blocks[1].mlp.c_proj if family == "gpt2" else adapter.blocks[1].mlp.down_proj
    handle = module.register_forward_pre_hook(lambda m, args: caught.setdefault("post", args[0].detach()))
    try:
        with torch.no_grad():
            adapter.forward(ids, mask)
    finally:
        handle.remove()
    acts, rows = caught["post"], cache.rows
    want = np.empty((cache.n_rows, cache.width), np.float16)
    for r in range(cache.n_rows):
        seq = int(rows["sequence"][r])
        b, shift = order.index(seq), left[seq]
        start, end, skip = int(rows["start"][r]) + shift, int(rows["end"][r]) + shift, int(rows["skip"][r])
        how = rows["aggregation"][r]
        value = acts[b, start] if how == "token" else (acts[b, start + skip : end].float().mean(0) if how == "mean"
                                                         else acts[b, start + skip : end].float().amax(0))
        want[r] = value.to(torch.float16).numpy()
    assert cache.layer(1).tobytes() == want.tobytes()


def test_transform_at_extraction_equals_transform_after(tmp_path, bpe_tokenizer):
    from sklearn.decomposition import PCA

    from needle.models import LinearMap

    adapter = adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny-neox")
    dataset = make_dataset(bpe_tokenizer)
    raw = extract(adapter, dataset, tmp_path / "raw", layers=[1], dtype="float32", progress=False)
    assert raw.site == "mlp.hook_post" and raw.basis == "neurons" and raw.transform is None
    x = np.asarray(raw.layer(1), np.float64)
    rotation = LinearMap.rotation(adapter.n_neurons, seed=1)
    pca = PCA(8, random_state=0).fit(x)
    how = raw.rows["aggregation"]
    linear = how != "max"  # token rows, and means (a mean commutes with an affine map)
    for transform, after in ((rotation, x @ rotation.matrix.numpy().astype(np.float64)),
                             (LinearMap.pca(pca), pca.transform(x))):
        cache = extract(adapter, dataset, tmp_path / transform.name, layers=[1], dtype="float32", progress=False,
                        site="post", transform=transform)
        assert cache.site == f"mlp.hook_post+{transform.name}" and cache.basis == transform.name
        assert cache.width == after.shape[1] and cache.transform == {"name": transform.name, "params": transform.params}
        assert cache.manifest["hook_names"] == ["blocks.1.mlp.hook_post"]
        np.testing.assert_allclose(cache.layer(1)[linear], after[linear], rtol=1e-4, atol=1e-4)
        # a span's max is taken over the transformed positions
        for r in np.flatnonzero(~linear):
            seq = int(raw.rows["sequence"][r])
            ids = torch.from_numpy(dataset.tokens[seq].astype(np.int64))[None]
            span = hand_activations(adapter, ids, 1)["post"][int(raw.rows["start"][r]) : int(raw.rows["end"][r])]
            np.testing.assert_allclose(cache.layer(1)[r], transform(span).amax(0).numpy(), rtol=1e-4, atol=1e-5)


def test_every_site_extracts_and_old_caches_read_canonically(tmp_path, bpe_tokenizer):
    import json

    from needle.models import SITES

    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer)
    dataset = make_dataset(bpe_tokenizer, n_sequences=3)
    for name in SITES:
        cache = extract(adapter, dataset, tmp_path / name, layers=[0], dtype="float32", progress=False, site=name)
        assert cache.site == name and cache.width == adapter.site_width(name)
        assert cache.manifest["hook_names"] == [f"blocks.0.{name}"]
    with pytest.raises(InputError, match="use_parallel_residual"):
        extract(adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer), dataset, tmp_path / "mid",
                site="hook_resid_mid", progress=False)
    assert not (tmp_path / "mid").exists() and not (tmp_path / ".mid.partial").exists()
    # a cache written before sites were objects stored a short name and no basis
    old = tmp_path / "hook_resid_post"
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["site"] = "resid"
    del manifest["basis"], manifest["transform"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    cache = load_cache(old)
    assert cache.site == "hook_resid_post" and cache.basis == "residual dimensions" and cache.transform is None
