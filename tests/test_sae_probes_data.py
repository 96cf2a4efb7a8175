"""sae-probes' data files as sources: the shared reader, source=sae-probes of three builders, the table preset.

A tiny wheel laid out like sae-probes 0.4's is built in each test; one test reads the real wheel when it is
installed or named by $NEEDLE_SAE_PROBES (skipped otherwise).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from needle.datasets.code_language import build_code_language
from needle.datasets.compound_words import build_compound_words
from needle.datasets.entity_facts import build_entity_facts
from needle.datasets.registry import build_collection
from needle.datasets.sae_probes_data import SaeProbesFiles, read_sae_probes_file, sae_probes_index
from needle.datasets.table import build_table
from needle.errors import InputError

PREFIX = "sae_probes/data/cleaned_data/"


def _zst(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(frame.to_csv(index=False).encode())
    return sink.getvalue().to_pybytes()


def make_wheel(path, files: dict[str, pd.DataFrame], kinds: dict[str, str] | None = None):
    """A wheel laid out like sae-probes 0.4's: the data files and, given ``kinds``, the MASTER index."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("sae_probes/__init__.py", "raise ImportError('needle must not import sae_probes')\n")
        for stem, frame in files.items():
            wheel.writestr(f"{PREFIX}{stem}.csv.zst", _zst(frame))
        if kinds is not None:
            index = pd.DataFrame({"Dataset Tag": [s.split("_", 1)[1] for s in kinds],
                                  "Dataset save name": [f"cleaned_data/{s}.csv" for s in kinds],
                                  "Data type": list(kinds.values())})
            wheel.writestr("sae_probes/data/probing_datasets_MASTER.csv.zst", _zst(index))
    return path


def _rows(rows):
    return pd.DataFrame(rows, columns=["prompt", "target"])


def _examples(dataset, feature):
    mine = dataset.examples.feature == dataset.feature_names.index(feature)
    return {dataset.texts[s]: label for s, label in zip(dataset.examples.sequence[mine], dataset.examples.label[mine])}


@pytest.fixture
def compound_wheel(tmp_path):
    rows = [("we met in high school", "bigram"), ("the best high school", "bigram"),
            ("a high school", "bigram"), ("she finished high school", "bigram"),
            ("he went to the school", "not_bigram"), ("a very high level", "not_bigram"),
            ("prices are high today", "not_bigram"), ("we met in high school", "bigram"),   # a copy: merged
            ("odd one out", "bigram"), ("odd one out", "not_bigram")]                      # contradicts: left out
    card = [("pay by credit card", "bigram"), ("a credit card", "bigram"), ("the report card", "not_bigram"),
            ("good credit score", "not_bigram"), ("we met in high school", "not_bigram")]
    return make_wheel(tmp_path / "w.whl", {"65_high-school": _rows(rows), "68_credit-card": _rows(card)})


def test_compound_words_from_sae_probes(compound_wheel, minilm_tokenizer):
    dataset = build_compound_words(None, minilm_tokenizer, source="sae-probes", sae_probes=compound_wheel,
                                   compounds=["high school", "credit card"], min_positives=1)
    school = _examples(dataset, "compound:high_school")
    assert school == {"we met in high school": 1, "the best high school": 1, "a high school": 1,
                      "she finished high school": 1, "he went to the school": 0, "a very high level": 0,
                      "prices are high today": 0}
    # A prompt in two files is one sequence; every example is the sequence's last text token.
    assert dataset.texts.count("we met in high school") == 1
    assert _examples(dataset, "compound:credit_card")["we met in high school"] == 0
    for s, start in zip(dataset.examples.sequence, dataset.examples.start):
        assert minilm_tokenizer.decode(dataset.tokens[s][start]) == dataset.texts[s].split()[-1]
    report = dataset.extra["compounds"]["compound:high_school"]
    assert (report["positive"], report["zy"], report["xw"], report["other"]) == (4, 1, 2, 0)
    assert dataset.extra["sae_probes"]["features"]["compound:high_school"]["duplicate_rows"] == 2
    assert dataset.extra["sae_probes"]["features"]["compound:high_school"]["contradicting_prompts"] == 1
    assert len(set(dataset.groups)) == dataset.n_sequences  # every prompt its own group
    with pytest.raises(InputError, match="no compound file for living room"):
        build_compound_words(None, minilm_tokenizer, source="sae-probes", sae_probes=compound_wheel,
                             compounds=["living room"])


def test_context_length_cuts_the_left_and_keeps_the_last_token(compound_wheel, minilm_tokenizer):
    dataset = build_compound_words(None, minilm_tokenizer, source="sae-probes", sae_probes=compound_wheel,
                                   compounds=["high school"], min_positives=1, context_length=4)
    assert max(len(t) for t in dataset.tokens) == 4  # [CLS] two words [SEP]
    assert "she finished high school" not in dataset.texts and "high school" in dataset.texts
    for s, start in zip(dataset.examples.sequence, dataset.examples.start):
        assert start == len(dataset.tokens[s]) - 2


def test_entity_facts_from_sae_probes_group_by_name(tmp_path, minilm_tokenizer):
    gender = _rows([("a film directed by Anna Boden", "female"), ("an interview with Anna Boden", "female"),
                    ("songs by Chaka Khan", "female"), ("a speech by Nelson Rockefeller", "male"),
                    ("later Nelson Rockefeller", "male"), ("a book by Henry James", "male")])
    alive = _rows([("a film directed by Anna Boden", True), ("a speech by Nelson Rockefeller", False),
                   ("songs by Chaka Khan", True), ("a book by Henry James", False)])
    wheel = make_wheel(tmp_path / "w.whl", {"56_wikidatasex_or_gender": gender, "57_wikidatais_alive": alive})
    dataset = build_entity_facts(None, minilm_tokenizer, source="sae-probes", sae_probes=wheel,
                                 properties="gender,is_alive", min_positives=1)
    assert dataset.feature_names == ["gender:male", "is_alive:true"]
    assert _examples(dataset, "gender:male") == {p: float(t == "male") for p, t in gender.itertuples(index=False)}
    assert _examples(dataset, "is_alive:true") == {p: float(t) for p, t in alive.itertuples(index=False)}
    group = dict(zip(dataset.texts, dataset.groups))
    assert group["a film directed by Anna Boden"] == group["an interview with Anna Boden"]
    assert group["a speech by Nelson Rockefeller"] == group["later Nelson Rockefeller"]
    assert len(set(dataset.groups)) == 4
    with pytest.raises(InputError, match="no property 'religion'"):
        build_entity_facts(None, minilm_tokenizer, source="sae-probes", sae_probes=wheel, properties="religion")


def test_code_language_from_sae_probes_means_after_skip(tmp_path, minilm_tokenizer):
    python = "def f(x):\n    return x + 1\n" * 2
    c = "int main(void) { return 0; }\n" * 2
    html = "<p>hello</p>"  # shorter than skip_tokens: its mean keeps the last text token
    files = {"158_code_C": _rows([(c, 1), (python, 0), (html, 0)]),
             "159_code_Python": _rows([(python, 1), (c, 0)]),
             "160_code_HTML": _rows([(html, 1), (c, 0)])}
    wheel = make_wheel(tmp_path / "w.whl", files)
    dataset = build_code_language(None, minilm_tokenizer, source="sae-probes", sae_probes=wheel, skip_tokens=8,
                                  context_length=64, min_files=1)
    assert dataset.feature_names == ["is_c", "is_python", "is_html"]
    assert dataset.n_sequences == 3
    assert _examples(dataset, "is_python") == {python: 1, c: 0}  # exactly its own file's rows
    for s, start, end, skip in zip(dataset.examples.sequence, dataset.examples.start, dataset.examples.end,
                                   dataset.examples.skip):
        n_tokens = len(minilm_tokenizer(dataset.texts[s])["input_ids"])  # [CLS] … [SEP]
        assert (start, end) == (1, n_tokens - 1)
        assert start + skip == (8 if end > 8 else end - 1)
    with pytest.raises(InputError, match="no java files"):
        build_code_language(None, minilm_tokenizer, source="sae-probes", sae_probes=wheel, languages="c,java")


def test_table_preset_takes_binary_tasks_by_tag_or_seeded_sample(tmp_path, minilm_tokenizer):
    kinds = {f"{i}_task{i}": "Binary Classification" for i in range(1, 7)}
    kinds["7_many"] = "Multiclass Classification"
    files = {stem: _rows([(f"{stem} row {j}", j % 2) for j in range(6)]) for stem in kinds}
    wheel = make_wheel(tmp_path / "w.whl", files, kinds)
    index = sae_probes_index(wheel)
    assert list(index["stem"]) == list(kinds) and list(index["kind"]) == ["binary"] * 6 + ["multiclass"]
    everything = build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel)
    assert everything.feature_names == [f"task{i}" for i in range(1, 7)]  # the multiclass file is left out
    picked = build_collection("table", None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, tasks="task2,3_task3")
    assert picked.feature_names == ["task2", "task3"]
    assert _examples(picked, "task3") == {f"3_task3 row {j}": float(j % 2) for j in range(6)}
    a = build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, n_tasks=3, seed=4)
    b = build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, n_tasks=3, seed=4)
    assert a.feature_names == b.feature_names and len(a.feature_names) == 3
    rows = build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, tasks="task1", max_rows=4)
    assert len(rows.examples.label) == 4
    with pytest.raises(InputError, match="no binary dataset 'many'"):
        build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, tasks="many")
    with pytest.raises(InputError, match="n_tasks must be an integer from 1 to 6"):
        build_table(None, minilm_tokenizer, preset="sae-probes", sae_probes=wheel, n_tasks=9)


def test_reader_agrees_between_wheel_and_directory(compound_wheel, tmp_path):
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(compound_wheel).extractall(unpacked)
    from_wheel = read_sae_probes_file("65_high-school", compound_wheel)
    from_dir = read_sae_probes_file("65_high-school", unpacked)
    pd.testing.assert_frame_equal(from_wheel, from_dir)
    assert SaeProbesFiles(unpacked).stems() == ["65_high-school", "68_credit-card"]
    with pytest.raises(InputError, match="has no sae_probes/data/cleaned_data/99_x.csv.zst"):
        read_sae_probes_file("99_x", compound_wheel)


@pytest.mark.parametrize("build", [
    lambda tok: build_compound_words(None, tok, source="sae-probes"),
    lambda tok: build_entity_facts(None, tok, source="sae-probes"),
    lambda tok: build_code_language(None, tok, source="sae-probes"),
    lambda tok: build_table(None, tok, preset="sae-probes"),
])
def test_absent_package_is_a_one_line_error(build, minilm_tokenizer, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sae_probes" else real(name, *a))
    with pytest.raises(InputError, match="pip install --no-deps sae-probes") as caught:
        build(minilm_tokenizer)
    assert "\n" not in str(caught.value)


def test_bad_source_is_refused(minilm_tokenizer):
    with pytest.raises(InputError, match="source must be 'sae-probes'"):
        build_compound_words(None, minilm_tokenizer, source="pile")


def _real_wheel():
    given = os.environ.get("NEEDLE_SAE_PROBES")
    if given:
        return given
    import importlib.util

    return None if importlib.util.find_spec("sae_probes") is None else "installed"


@pytest.mark.skipif(_real_wheel() is None, reason="sae-probes not installed and $NEEDLE_SAE_PROBES not set")
def test_the_real_wheel(minilm_tokenizer):
    location = None if _real_wheel() == "installed" else _real_wheel()
    index = sae_probes_index(location)
    binary = set(index.loc[index["kind"] == "binary", "tag"])
    assert {"high-school", "code_Python", "wikidatasex_or_gender", "glue_cola"} <= binary and len(binary) >= 100
    compounds = build_compound_words(None, minilm_tokenizer, source="sae-probes", sae_probes=location, max_rows=30,
                                     min_positives=2)
    assert len(compounds.feature_names) == 21
    positives = compounds.examples.label == 1
    last = [minilm_tokenizer.decode(compounds.tokens[s][t]) for s, t in
            zip(compounds.examples.sequence[positives], compounds.examples.start[positives])]
    assert np.mean([w.isalpha() for w in last]) > 0.95
    facts = build_entity_facts(None, minilm_tokenizer, source="sae-probes", sae_probes=location, max_rows=20,
                               properties="gender,occupation")
    assert len(facts.feature_names) == 7
    code = build_code_language(None, minilm_tokenizer, source="sae-probes", sae_probes=location, max_rows=10,
                               context_length=64, min_files=2)
    assert code.feature_names == ["is_c", "is_python", "is_html"]
