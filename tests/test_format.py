"""ProbeDataset format, assembler and alignment helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from needle.datasets.alignment import encode, tokens_in_span
from needle.datasets.assembler import DatasetAssembler, subsample_negatives
from needle.datasets.format import load_dataset
from needle.datasets.tokenizer_info import tokenizer_fingerprint, tokenizer_info
from needle.errors import FormatError, InputError


def small_dataset(tokenizer, seed=0, ratio=0.2):
    assembler = DatasetAssembler("unit", {"a": 1}, tokenizer_info(tokenizer))
    assembler.add_feature("even", collection="toy")
    assembler.add_feature("doc", collection="toy", level="sequence")
    for s in range(6):
        ids = encode(tokenizer, f"sentence number {s} has a few words in it").ids
        assembler.add_sequence(ids, group=f"g{s % 3}", text=f"text {s}")
        positions = np.arange(1, len(ids) - 1)
        assembler.add_examples("even", s, positions, positions % 4 == 0)
        assembler.add_examples("doc", s, 0, s % 2, end=len(ids), aggregation="mean", skip=1)
    return assembler.build(positive_ratio=ratio, seed=seed)


def test_round_trip_preserves_everything(tmp_path, minilm_tokenizer):
    dataset = small_dataset(minilm_tokenizer)
    dataset.save(tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded.content_hash() == dataset.content_hash()
    assert loaded.feature_names == ["even", "doc"] and loaded.texts == dataset.texts
    for a, b in zip(loaded.tokens, dataset.tokens):
        np.testing.assert_array_equal(a, b)
    for name in ("feature", "sequence", "start", "end", "aggregation", "skip", "label"):
        np.testing.assert_array_equal(getattr(loaded.examples, name), getattr(dataset.examples, name))
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["tokenizer"]["fingerprint"] == tokenizer_fingerprint(minilm_tokenizer)
    assert manifest["builder"]["params"] == {"a": 1}


def test_negative_subsampling_hits_the_ratio_and_is_seeded():
    label = np.r_[np.ones(50), np.zeros(1000)].astype(np.int8)
    keep = subsample_negatives(label, 0.2, np.random.default_rng(0))
    assert label[keep].sum() == 50 and (label[keep] == 0).sum() == 200
    np.testing.assert_array_equal(keep, subsample_negatives(label, 0.2, np.random.default_rng(0)))
    assert len(subsample_negatives(label, None, np.random.default_rng(0))) == 1050


def test_same_seed_same_dataset_other_seed_other_sample(minilm_tokenizer):
    a, b, c = (small_dataset(minilm_tokenizer, seed=s, ratio=0.5) for s in (0, 0, 1))
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_features_with_too_few_examples_are_dropped_and_recorded(minilm_tokenizer):
    assembler = DatasetAssembler("unit", {}, tokenizer_info(minilm_tokenizer))
    assembler.add_feature("common")
    assembler.add_feature("never")
    assembler.add_sequence([101, 2000, 2001, 102], group="g")
    assembler.add_examples("common", 0, [1, 2], [1, 0])
    assembler.add_examples("never", 0, [1, 2], [0, 0])
    dataset = assembler.build(positive_ratio=None)
    assert dataset.feature_names == ["common"]
    assert dataset.extra["dropped_features"] == {"never": {"positive": 0, "negative": 2}}
    only_never = DatasetAssembler("unit", {}, tokenizer_info(minilm_tokenizer))
    only_never.add_feature("never")
    only_never.add_sequence([101, 2000, 102], group="g")
    only_never.add_examples("never", 0, [1], [0])
    with pytest.raises(InputError, match="empty collection"):
        only_never.build()


def test_validation_names_the_problem(tmp_path, minilm_tokenizer):
    dataset = small_dataset(minilm_tokenizer)
    dataset.examples.end[0] = 10_000
    with pytest.raises(FormatError, match="span outside its sequence"):
        dataset.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing half-written
    dataset = small_dataset(minilm_tokenizer)
    dataset.examples.label[dataset.examples.feature == 0] = 0
    with pytest.raises(FormatError, match="'even' has no positive examples"):
        dataset.validate()


def test_load_rejects_foreign_corrupt_or_newer(tmp_path, minilm_tokenizer):
    with pytest.raises(FormatError, match="not a directory"):
        load_dataset(tmp_path / "missing")
    small_dataset(minilm_tokenizer).save(tmp_path / "ds")
    manifest_path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(FormatError, match="version 99"):
        load_dataset(tmp_path / "ds")
    manifest_path.write_text(json.dumps({**manifest, "content_hash": "0" * 64}))
    with pytest.raises(FormatError, match="content hash"):
        load_dataset(tmp_path / "ds")
    manifest_path.write_text("{not json")
    with pytest.raises(FormatError, match="line 1"):
        load_dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="already exists"):
        small_dataset(minilm_tokenizer).save(tmp_path / "ds")


def test_units_deduplicate_shared_positions(minilm_tokenizer):
    dataset = small_dataset(minilm_tokenizer, ratio=None)
    units = dataset.units()
    keys = set(zip(dataset.examples.sequence, dataset.examples.start, dataset.examples.end,
                   dataset.examples.aggregation, dataset.examples.skip))
    assert len(units) == len(keys)
    ex = dataset.examples
    np.testing.assert_array_equal(units.sequence[units.example_unit], ex.sequence)
    np.testing.assert_array_equal(units.start[units.example_unit], ex.start)


@pytest.mark.parametrize("which", ["minilm_tokenizer", "bpe_tokenizer"])
def test_alignment_offsets_cover_words(request, which):
    tokenizer = request.getfixturevalue(which)
    text = "Don't stop, naïve café-goers!"
    encoded = encode(tokenizer, text)
    for begin, end in ((0, 5), (12, 17), (18, 29)):
        first, last = tokens_in_span(encoded, begin, end, "first"), tokens_in_span(encoded, begin, end, "last")
        every = tokens_in_span(encoded, begin, end, "all")
        assert first[0] == every[0] and last[0] == every[-1]
        for token in every:
            a, b = encoded.offsets[token]
            assert begin <= a < b <= end and not text[a].isspace()
    assert len(tokens_in_span(encoded, 5, 6, "all")) == 0  # a space has no token
    with pytest.raises(ValueError, match="piece"):
        tokens_in_span(encoded, 0, 3, "middle")
