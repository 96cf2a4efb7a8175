"""ProbeDataset format, assembler and alignment helpers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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


# ----------------------------------------------------------- tasks, splits, format version 2
def v1_content_hash(dataset):
    """The content hash as format version 1 computed it, re-implemented independently."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(np.array([len(t) for t in dataset.tokens], np.int64).tobytes())
    digest.update(np.concatenate(dataset.tokens).astype(np.int32).tobytes())
    digest.update(np.concatenate(dataset.attention_mask).astype(np.int8).tobytes())
    digest.update(json.dumps([str(g) for g in dataset.groups]).encode())
    digest.update(json.dumps(dataset.features, sort_keys=True).encode())
    ex = dataset.examples
    for values, dtype in ((ex.feature, np.int32), (ex.sequence, np.int32), (ex.start, np.int32), (ex.end, np.int32),
                          (ex.aggregation, np.int8), (ex.skip, np.int32), (ex.label, np.int8)):  # fmt: skip
        digest.update(np.ascontiguousarray(values, dtype=dtype).tobytes())
    digest.update(str(dataset.tokenizer.get("fingerprint", "")).encode())
    return digest.hexdigest()


def task_dataset(tokenizer, *, split=True):
    """Six sequences with a binary, a multiclass and a regression feature (mean over each sequence)."""
    assembler = DatasetAssembler("unit", {}, tokenizer_info(tokenizer))
    assembler.add_feature("flag", level="sequence")
    assembler.add_feature("kind", level="sequence", task="multiclass", classes=["red", "green", "blue"])
    assembler.add_feature("size", level="sequence", task="regression")
    for s in range(6):
        ids = encode(tokenizer, f"sequence {s} of the test").ids
        assembler.add_sequence(ids, group=f"g{s}")
        where = dict(end=len(ids), aggregation="mean", split=("test" if s >= 4 else "train") if split else None)
        assembler.add_examples("flag", s, 1, s % 2, **where)
        assembler.add_examples("kind", s, 1, s % 3, **where)
        assembler.add_examples("size", s, 1, 0.5 * s - 1, **where)
    return assembler.build(positive_ratio=None)


def test_binary_hash_is_version_1s(minilm_tokenizer):
    dataset = small_dataset(minilm_tokenizer)
    assert dataset.examples.label.dtype == np.float64 and (dataset.examples.split == -1).all()
    assert "task" not in dataset.features[0]
    assert dataset.content_hash() == v1_content_hash(dataset)
    with_split = task_dataset(minilm_tokenizer)
    assert with_split.content_hash() != v1_content_hash(with_split)
    no_split = task_dataset(minilm_tokenizer, split=False)
    assert no_split.content_hash() != with_split.content_hash()  # the split is part of the content


def test_round_trip_of_every_task_with_split(tmp_path, minilm_tokenizer):
    dataset = task_dataset(minilm_tokenizer)
    assert [f.get("task") for f in dataset.features] == [None, "multiclass", "regression"]
    dataset.save(tmp_path / "ds")
    table = pq.read_table(tmp_path / "ds" / "examples.parquet")
    assert table.schema.field("label").type == pa.float64() and table.schema.field("split").type == pa.int8()
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["format_version"] == 2
    loaded = load_dataset(tmp_path / "ds")
    assert loaded.features == dataset.features and loaded.content_hash() == dataset.content_hash()
    assert loaded.feature_examples("size").label.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    assert loaded.feature_examples("kind").label.tolist() == [0, 1, 2, 0, 1, 2]
    assert loaded.feature_examples("flag").split.tolist() == [0, 0, 0, 0, 1, 1]
    assert loaded.feature_task("kind") == "multiclass" and loaded.feature_task("flag") == "binary"
    assert loaded.counts()["kind"] == {"examples": 6, "classes": {"red": 2, "green": 2, "blue": 2}, "train": 4, "test": 2}


def test_version_1_dataset_loads(tmp_path, minilm_tokenizer):
    """A dataset as format version 1 wrote it: int8 labels, no split column, version 1 in the manifest."""
    dataset = small_dataset(minilm_tokenizer)
    dataset.save(tmp_path / "ds")
    examples = pq.read_table(tmp_path / "ds" / "examples.parquet")
    v1 = examples.drop(["split"]).set_column(
        examples.column_names.index("label"), "label", pa.array(dataset.examples.label.astype(np.int8))
    )
    pq.write_table(v1, tmp_path / "ds" / "examples.parquet")
    manifest_path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 1, "content_hash": v1_content_hash(dataset)}))
    loaded = load_dataset(tmp_path / "ds")  # the hash is verified
    assert loaded.examples.label.dtype == np.float64 and (loaded.examples.split == -1).all()
    np.testing.assert_array_equal(loaded.examples.label, dataset.examples.label)


def test_validation_per_task(minilm_tokenizer):
    import dataclasses

    def broken(feature=None, label=None, split=None):
        dataset = task_dataset(minilm_tokenizer)
        if feature is not None:
            dataset.features[1] = feature
        ex = dataset.examples
        return dataclasses.replace(dataset, examples=dataclasses.replace(
            ex, label=ex.label if label is None else label(ex.label.copy(), ex.feature),
            split=ex.split if split is None else split(ex.split.copy(), ex.feature)))

    def set_at(feature, row, value):
        def change(values, features):
            values[np.flatnonzero(features == feature)[row]] = value
            return values
        return change

    task_dataset(minilm_tokenizer).validate()
    cases = [
        (broken(label=set_at(0, 0, 0.5)), "'flag': binary labels must be 0 or 1"),
        (broken(feature={"name": "kind", "task": "multiclass"}), "needs 'classes'"),
        (broken(feature={"name": "kind", "task": "ordinal"}), "unknown task 'ordinal'"),
        (broken(label=set_at(1, 0, 3)), "multiclass labels must be class indices 0…2"),
        (broken(label=set_at(1, 0, 1.5)), "multiclass labels must be class indices"),
        (broken(label=lambda v, f: np.where(f == 1, 2.0, v)), "'kind' has examples of only one class"),
        (broken(label=set_at(2, 3, np.nan)), "'size': regression labels must be finite"),
        (broken(label=lambda v, f: np.where(f == 2, 4.0, v)), "'size' has a constant label"),
        (broken(split=set_at(2, 1, -1)), "'size' gives a train/test split for 5 of its 6 examples"),
        (broken(split=set_at(0, 1, 2)), "split must be -1 \\(none\\), 0 \\(train\\) or 1 \\(test\\)"),
    ]
    for dataset, message in cases:
        with pytest.raises(FormatError, match=message):
            dataset.validate()


def test_assembler_tasks_caps_and_what_subsampling_removed(minilm_tokenizer):
    assembler = DatasetAssembler("unit", {}, tokenizer_info(minilm_tokenizer))
    assembler.add_feature("rare")
    assembler.add_feature("kind", task="multiclass", classes=["a", "b"])
    assembler.add_feature("size", task="regression")
    assembler.add_sequence(np.r_[101, np.arange(2000, 2040), 102], group="g")
    positions = np.arange(1, 41)
    assembler.add_examples("rare", 0, positions, positions <= 4, split=positions > 30)
    assembler.add_examples("kind", 0, positions, positions % 4 == 0, split=np.where(positions > 30, "test", "train"))
    assembler.add_examples("size", 0, positions, positions / 7.0, split=(positions > 30).astype(int))
    dataset = assembler.build(positive_ratio=0.2, seed=3)
    counts = dataset.counts()
    assert counts["rare"]["positive"] == 4 and counts["rare"]["negative"] == 16
    assert counts["kind"]["examples"] == 40 and counts["size"]["examples"] == 40  # never negative-subsampled
    assert dataset.extra["subsampled"] == {"rare": {"before": {"positive": 4, "negative": 36},
                                                    "after": {"positive": 4, "negative": 16}}}  # fmt: skip
    for name in ("rare", "kind", "size"):
        ex = dataset.feature_examples(name)
        np.testing.assert_array_equal(ex.split, ex.start > 30)
    everything = assembler.build(positive_ratio=0, seed=3)
    assert len(everything.examples) == 120 and "subsampled" not in everything.extra
    capped = assembler.build(positive_ratio=None, seed=3, max_positives=5)
    kind = capped.feature_examples("kind")
    assert np.bincount(kind.label.astype(int)).tolist() == [5, 5] and len(capped.feature_examples("size")) == 5
    assert capped.extra["subsampled"]["kind"] == {"before": {"a": 30, "b": 10}, "after": {"a": 5, "b": 5}}
    assert capped.extra["subsampled"]["size"] == {"before": {"examples": 40}, "after": {"examples": 5}}
    again = assembler.build(positive_ratio=None, seed=3, max_positives=5)
    assert again.content_hash() == capped.content_hash()
    with pytest.raises(InputError, match="split value 'valid' is neither 'train' nor 'test'"):
        assembler.add_examples("size", 0, [1], [1.0], split="valid")
    with pytest.raises(ValueError, match="classes must be given"):
        assembler.add_feature("bad", task="multiclass")
