"""The table collection: reading, task inference, positions, truncation, splits, errors, and the cache."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from model_zoo import build_model
from needle.activations import extract, load_cache
from needle.cli import app
from needle.datasets.format import load_dataset
from needle.datasets.registry import build_collection
from needle.datasets.table import MAX_INFERRED_CLASSES, build_table
from needle.errors import InputError
from needle.models import adapt

TEXTS = ["The cat sat", "the cat sat on the mat", "Unbelievably tokenized", "a dog"]
# MiniLM's uncased WordPiece, written out by hand:
#   [CLS] the cat sat [SEP]                                  -> 5 tokens
#   [CLS] the cat sat on the mat [SEP]                       -> 8
#   [CLS] un ##bel ##ie ##va ##bly token ##ized [SEP]        -> 9
#   [CLS] a dog [SEP]                                        -> 4
LAST = [3, 6, 7, 2]
SPAN_END = [4, 7, 8, 3]


def write(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def frame(**extra):
    return pd.DataFrame({"prompt": TEXTS, "target": ["yes", "no", "yes", "no"], **extra})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_every_format_reads_the_same(tmp_path, minilm_tokenizer, suffix):
    path = write(tmp_path, frame(), "data" + suffix)
    dataset = build_table(path, minilm_tokenizer, text_column="prompt", label_column="target")
    assert dataset.feature_names == ["target"] and "task" not in dataset.features[0]
    assert dataset.examples.label.tolist() == [1, 0, 1, 0]  # "yes" is positive
    assert [t.tolist() for t in dataset.tokens][0] == [101, 1996, 4937, 2938, 102]
    assert list(dataset.groups) == ["row0", "row1", "row2", "row3"]  # one group per row
    assert "subsampled" not in dataset.extra and dataset.builder["positive_ratio"] is None


@pytest.mark.parametrize("position", ["last", "first", "mean", "max"])
def test_positions_are_the_hand_computed_tokens(tmp_path, minilm_tokenizer, position):
    dataset = build_table(write(tmp_path, frame()), minilm_tokenizer, text_column="prompt", label_column="target",
                          position=position)
    ex = dataset.examples
    if position == "last":
        assert ex.start.tolist() == LAST and ex.end.tolist() == [s + 1 for s in LAST]
    elif position == "first":
        assert ex.start.tolist() == [1, 1, 1, 1] and ex.end.tolist() == [2, 2, 2, 2]
    else:
        assert ex.start.tolist() == [1, 1, 1, 1] and ex.end.tolist() == SPAN_END
        assert set(ex.aggregation.tolist()) == {["token", "mean", "max"].index(position)}
    assert (ex.skip == 0).all()


def test_truncation_keeps_the_side_the_position_reads(tmp_path, minilm_tokenizer):
    path = write(tmp_path, pd.DataFrame({"prompt": ["the cat sat on the mat", "a dog"], "target": [1, 0]}))
    common = dict(text_column="prompt", label_column="target", context_length=5)
    right = build_table(path, minilm_tokenizer, truncation="right", **common)
    assert right.tokens[0].tolist() == [101, 1996, 4937, 2938, 102]  # [CLS] the cat sat [SEP]
    assert right.texts[0] == "the cat sat"
    left = build_table(path, minilm_tokenizer, truncation="left", **common)
    assert left.tokens[0].tolist() == [101, 2006, 1996, 13523, 102]  # [CLS] on the mat [SEP]
    assert left.texts[0] == "on the mat" and left.extra["table"]["truncated_rows"] == 1
    default_last = build_table(path, minilm_tokenizer, **common)
    assert default_last.tokens[0].tolist() == left.tokens[0].tolist() and default_last.examples.start[0] == 3
    default_first = build_table(path, minilm_tokenizer, position="first", **common)
    assert default_first.tokens[0].tolist() == right.tokens[0].tolist()
    mean = build_table(path, minilm_tokenizer, position="mean", **common)
    assert (mean.examples.start[0], mean.examples.end[0]) == (1, 4)
    assert right.tokens[1].tolist() == [101, 1037, 3899, 102]  # short rows are untouched
    with pytest.raises(InputError, match=r"row 1 has 8 tokens, more than the context of 5"):
        build_table(path, minilm_tokenizer, truncation="error", **common)
    model_max = minilm_tokenizer.model_max_length
    long_text = pd.DataFrame({"prompt": ["word " * (model_max + 20), "a dog"], "target": [1, 0]})
    default_context = build_table(write(tmp_path, long_text, "long.csv"), minilm_tokenizer, text_column="prompt",
                                  label_column="target")
    assert len(default_context.tokens[0]) == model_max and default_context.tokens[0][-1] == 102


def test_task_inference_and_labels(tmp_path, minilm_tokenizer):
    n = 30
    rng = np.random.default_rng(0)
    data = pd.DataFrame({
        "text": [f"row {i}" for i in range(n)],
        "animal": ["cat", "dog"] * (n // 2),
        "flag": [True, False] * (n // 2),
        "zero_one": [0, 1] * (n // 2),
        "topic": ["sport", "art", "news"] * (n // 3),
        "stars": [1, 2, 3, 4, 5] * (n // 5),
        "year": list(range(1990, 1990 + n)),
        "score": rng.normal(size=n),
    })  # fmt: skip
    assert n > MAX_INFERRED_CLASSES
    columns = ["animal", "flag", "zero_one", "topic", "stars", "year", "score"]
    dataset = build_table(write(tmp_path, data, "d.parquet"), minilm_tokenizer, label_columns=columns)
    tasks = {f["name"]: f.get("task", "binary") for f in dataset.features}
    assert tasks == {"animal": "binary", "flag": "binary", "zero_one": "binary", "topic": "multiclass",
                     "stars": "multiclass", "year": "regression", "score": "regression"}  # fmt: skip
    assert all(dataset.extra["table"]["tasks"][c]["inferred"] for c in columns)
    labels = {name: dataset.feature_examples(name).label for name in columns}
    np.testing.assert_array_equal(labels["animal"], data["animal"] == "dog")  # sorted second value
    np.testing.assert_array_equal(labels["flag"], data["flag"])  # true is positive
    np.testing.assert_array_equal(labels["zero_one"], data["zero_one"])
    topic = dataset.features[dataset.feature_index("topic")]
    assert topic["classes"] == ["art", "news", "sport"]
    assert [topic["classes"][int(i)] for i in labels["topic"]] == data["topic"].tolist()
    stars = dataset.features[dataset.feature_index("stars")]
    assert stars["classes"] == ["1", "2", "3", "4", "5"] and labels["stars"].tolist() == (data["stars"] - 1).tolist()
    np.testing.assert_array_equal(labels["score"], data["score"].to_numpy())
    np.testing.assert_array_equal(labels["year"], data["year"].to_numpy(float))
    positive_cat = build_table(write(tmp_path, data, "d.parquet"), minilm_tokenizer, label_column="animal",
                               positive="cat", name="is_cat")
    assert positive_cat.feature_names == ["is_cat"]
    np.testing.assert_array_equal(positive_cat.examples.label, data["animal"] == "cat")
    forced = build_table(write(tmp_path, data, "d.parquet"), minilm_tokenizer, label_column="stars", task="regression")
    assert forced.features[0]["task"] == "regression" and not forced.extra["table"]["tasks"]["stars"]["inferred"]
    with pytest.raises(InputError, match="task=regression needs numbers"):
        build_table(write(tmp_path, data, "d.parquet"), minilm_tokenizer, label_column="topic", task="regression")
    with pytest.raises(InputError, match="task=binary needs two values"):
        build_table(write(tmp_path, data, "d.parquet"), minilm_tokenizer, label_column="topic", task="binary")


def test_groups_and_user_split(tmp_path, minilm_tokenizer):
    data = frame(doc=["d0", "d0", "d1", "d2"], part=["train", "train", "Test", "test"])
    dataset = build_table(write(tmp_path, data), minilm_tokenizer, text_column="prompt", label_column="target",
                          group_column="doc", split_column="part")
    assert list(dataset.groups) == ["d0", "d0", "d1", "d2"]
    assert dataset.examples.split.tolist() == [0, 0, 1, 1]
    assert dataset.counts()["target"] == {"positive": 2, "negative": 2, "train": 2, "test": 2}
    straddling = frame(doc=["d0", "d0", "d1", "d2"], part=["train", "test", "test", "test"])
    with pytest.raises(InputError, match="group 'd0' .* both train and test"):
        build_table(write(tmp_path, straddling), minilm_tokenizer, text_column="prompt", label_column="target",
                    group_column="doc", split_column="part")
    bad = frame(part=["train", "valid", "test", "test"])
    with pytest.raises(InputError, match="'valid' at .*row 2; every value must be train or test"):
        build_table(write(tmp_path, bad), minilm_tokenizer, text_column="prompt", label_column="target",
                    split_column="part")
    with pytest.raises(InputError, match="split column 'part' has no test rows"):
        build_table(write(tmp_path, frame(part=["train"] * 4)), minilm_tokenizer, text_column="prompt",
                    label_column="target", split_column="part")


def test_round_trip_for_each_task(tmp_path, minilm_tokenizer):
    data = frame(topic=["a", "b", "c", "a"], value=[0.5, 1.5, -2.0, 3.25], part=["train", "test", "train", "test"])
    dataset = build_table(write(tmp_path, data), minilm_tokenizer, text_column="prompt",
                          label_columns="[target, topic, value]", split_column="part", position="mean")
    dataset.save(tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded.features == dataset.features and loaded.content_hash() == dataset.content_hash()
    for name in ("label", "split", "start", "end", "aggregation"):
        np.testing.assert_array_equal(getattr(loaded.examples, name), getattr(dataset.examples, name))
    assert loaded.feature_examples("value").label.tolist() == [0.5, 1.5, -2.0, 3.25]
    assert loaded.extra["table"]["tasks"]["topic"]["task"] == "multiclass"


def test_cli_flags_and_subsampling_is_said(tmp_path):
    runner = CliRunner()
    data = pd.DataFrame({"prompt": [f"sentence {i}" for i in range(12)], "target": [1, 1] + [0] * 10})
    path = write(tmp_path, data)
    args = ["dataset", "build", "table", "--source", str(path), "--param", "text_column=prompt",
            "--param", "label_column=target"]  # fmt: skip
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    assert "2 pos" in result.output and "10 neg" in result.output and "subsampled" not in result.output
    result = runner.invoke(app, [*args, "--positive-ratio", "0.5", "--out", str(tmp_path / "half")])
    assert result.exit_code == 0, result.output
    assert "negatives subsampled to 50 % positives for 1 features (pass --positive-ratio 0" in result.output
    dataset = load_dataset(tmp_path / "half")
    assert dataset.extra["subsampled"] == {"target": {"before": {"positive": 2, "negative": 10},
                                                      "after": {"positive": 2, "negative": 2}}}  # fmt: skip
    info = runner.invoke(app, ["dataset", "info", str(tmp_path / "half")])
    assert "negatives subsampled to 50 % positives for 1 features" in info.output
    result = runner.invoke(app, [*args, "--positive-ratio", "0", "--out", str(tmp_path / "zero")])
    assert result.exit_code == 0 and len(load_dataset(tmp_path / "zero").examples) == 12
    result = runner.invoke(app, [*args, "--param", "label_columns=[target]", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "label_column or label_columns, not both" in str(result.exception)


def test_registry_builds_table(tmp_path, minilm_tokenizer):
    dataset = build_collection("table", [str(write(tmp_path, frame()))], minilm_tokenizer, text_column="prompt",
                               label_column="target")
    assert dataset.builder["name"] == "table" and dataset.builder["params"]["sources"] == [str(tmp_path / "data.csv")]


def test_errors_say_what_and_where(tmp_path, minilm_tokenizer):
    def table(path, **params):
        return build_table(path, minilm_tokenizer, **{"text_column": "prompt", "label_column": "target", **params})

    with pytest.raises(InputError, match="missing.csv: no such file"):
        table(tmp_path / "missing.csv")
    good = write(tmp_path, frame())
    with pytest.raises(InputError, match="no column 'label' .*the table has: prompt, target"):
        table(good, label_column="label")
    with pytest.raises(InputError, match="no column 'txt' \\(text_column\\)"):
        table(good, text_column="txt")
    (tmp_path / "header.csv").write_text("prompt,target\n")
    with pytest.raises(InputError, match="empty table"):
        table(tmp_path / "header.csv")
    (tmp_path / "nothing.csv").write_text("")
    with pytest.raises(InputError, match="empty table"):
        table(tmp_path / "nothing.csv")
    with pytest.raises(InputError, match="empty table"):
        table(write(tmp_path, frame().iloc[:0], "empty.parquet"))
    with pytest.raises(InputError, match="'target' has one value \\('yes'\\) in every row"):
        table(write(tmp_path, frame().assign(target="yes"), "one.csv"))
    (tmp_path / "nan.csv").write_text("prompt,target\na,1\nb,\nc,0\nd,\n")
    with pytest.raises(InputError, match="'target' has 2 missing label\\(s\\) \\(rows 2, 4\\)"):
        table(tmp_path / "nan.csv")
    (tmp_path / "notext.csv").write_text("prompt,target\na,1\n,0\n")
    with pytest.raises(InputError, match="'prompt' has 1 missing text\\(s\\) \\(rows 2\\)"):
        table(tmp_path / "notext.csv")
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match="cannot read .xlsx tables; use one of"):
        table(tmp_path / "data.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="bad.parquet: not a readable parquet table"):
        table(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="position must be one of last, first, mean, max"):
        table(good, position="middle")
    with pytest.raises(InputError, match="truncation must be one of"):
        table(good, truncation="middle")
    with pytest.raises(InputError, match="name the label column"):
        table(good, label_column=None)
    with pytest.raises(InputError, match="needs a source"):
        table(None)


def test_hf_source_without_datasets_names_the_install(monkeypatch, minilm_tokenizer):
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it now raises ImportError
    with pytest.raises(InputError, match="pip install datasets"):
        build_table("hf:imdb:train", minilm_tokenizer, label_column="label")


def test_hf_dataset_objects(minilm_tokenizer):
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 0]})
    test = datasets.Dataset.from_dict({"text": ["one more", "and another"], "label": [0, 1]})
    single = build_table(train, minilm_tokenizer, label_column="label")
    assert single.examples.label.tolist() == [1, 0, 1, 0] and (single.examples.split == -1).all()
    assert single.builder["params"]["sources"] == ["<datasets.Dataset>"]
    both = build_table(datasets.DatasetDict({"train": train, "test": test}), minilm_tokenizer, label_column="label")
    assert both.examples.split.tolist() == [0, 0, 0, 0, 1, 1] and both.n_sequences == 6
    with pytest.raises(InputError, match="split 'validation'; every split must be train or test"):
        build_table(datasets.DatasetDict({"train": train, "validation": test}), minilm_tokenizer,
                    label_column="label")
    with pytest.raises(InputError, match="the DatasetDict has no test rows"):
        build_table(datasets.DatasetDict({"train": train}), minilm_tokenizer, label_column="label")


def test_tasks_and_splits_through_extraction(tmp_path, bpe_tokenizer):
    data = pd.DataFrame({
        "text": ["Don't stop believing!", "The quick brown fox", "def function(argument):", "class Example:",
                 "I went to the store", "Numbers 0123456789"],
        "flag": [1, 0, 1, 0, 1, 0],
        "kind": ["x", "y", "z", "x", "y", "z"],
        "value": [0.5, -1.0, 2.0, 3.5, 0.0, 1.25],
        "part": ["train", "train", "train", "test", "test", "test"],
    })  # fmt: skip
    dataset = build_table(data, bpe_tokenizer, label_columns=["flag", "kind", "value"], split_column="part",
                          position="mean")
    dataset.save(tmp_path / "ds")
    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer)
    cache = extract(adapter, load_dataset(tmp_path / "ds"), tmp_path / "cache", layers=[0], progress=False)
    cache = load_cache(tmp_path / "cache")
    assert cache.manifest["format_version"] == 2
    want_split = np.array([False, False, False, True, True, True])
    for name, dtype, want in (("flag", np.int8, data["flag"]), ("kind", np.int64, [0, 1, 2, 0, 1, 2]),
                              ("value", np.float64, data["value"])):  # fmt: skip
        rows, y = cache.feature(name)
        assert y.dtype == dtype
        order = np.argsort(cache.rows["sequence"][rows])
        np.testing.assert_array_equal(y[order], np.asarray(want, dtype))
        np.testing.assert_array_equal(cache.feature_split(name)[order], want_split)
    assert cache.feature_info("flag")["task"] == "binary" and "task" not in dataset.features[0]
    assert cache.feature_info("kind")["classes"] == ["x", "y", "z"]
    assert cache.feature_info("value")["task"] == "regression"
    no_split = build_table(data, bpe_tokenizer, label_column="flag")
    cache2 = extract(adapter, no_split, tmp_path / "cache2", layers=[0], progress=False)
    assert cache2.feature_split("flag") is None

    # A version-1 cache (int8 labels, no split column) still reads.
    labels = pq.read_table(tmp_path / "cache2" / "labels.parquet")
    pq.write_table(pa.table({"feature": labels.column("feature"), "row": labels.column("row"),
                             "label": pa.array(labels.column("label").to_numpy().astype(np.int8))}),
                   tmp_path / "cache2" / "labels.parquet")  # fmt: skip
    manifest_path = tmp_path / "cache2" / "manifest.json"
    # Version-1 caches recorded no file checksums (this one's labels.parquet was just rewritten).
    v1 = {key: value for key, value in json.loads(manifest_path.read_text()).items() if key != "files"}
    manifest_path.write_text(json.dumps({**v1, "format_version": 1}))
    old = load_cache(tmp_path / "cache2")
    rows, y = old.feature("flag")
    assert y.dtype == np.int8 and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert old.feature_split("flag") is None and old.feature_info("flag")["task"] == "binary"
