"""The entity-facts collection: table reading, mentions, surname-only labels, three examples per name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from needle.datasets.entity_facts import (
    build_entity_facts,
    find_mentions,
    read_fact_table,
    surname_span,
)
from needle.datasets.format import AGGREGATIONS, load_dataset
from needle.datasets.registry import build_collection
from needle.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "entity_facts"

TABLE = """name,property,value
Ada Quill,gender,female
Ada Quill,occupation,engineer
Bram Otterly,gender,male
Bram Otterly,occupation,engineer
Bram Otterly,occupation,painter
Cora Vane,gender,female
Cora Vane,occupation,painter
Dov Hessel,gender,male
"""
CORPUS = (
    "Ada Quill built a bridge. Later Ada Quill built a tower, and Ada Quill built a dam. "
    "People say Ada Quill never rests.\n"
    "Bram Otterly painted it. Bram  Otterly\nalso drew plans. Cora Vane watched Bram Otterly.\n"
    "Dov Hessel came once. Ada Quillson is someone else.\n"
)


@pytest.fixture
def small(tmp_path):
    (tmp_path / "facts.csv").write_text(TABLE)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "news.txt").write_text(CORPUS)
    return tmp_path


def surnames_of(dataset, tokenizer) -> dict[int, list[str]]:
    """The token strings at the example positions of each sequence."""
    out: dict[int, list[str]] = {}
    ex = dataset.examples
    for s in np.unique(ex.sequence):
        starts = np.unique(ex.start[ex.sequence == s])
        out[int(s)] = tokenizer.convert_ids_to_tokens(dataset.tokens[s][starts].tolist())
    return out


# --------------------------------------------------------------------------- inputs
def test_read_fact_table_long_format_and_multiple_values(small):
    facts = read_fact_table(small / "facts.csv")
    assert facts["Bram Otterly"] == {"gender": {"male"}, "occupation": {"engineer", "painter"}}
    assert facts["Dov Hessel"] == {"gender": {"male"}}


def test_read_fact_table_tsv_and_case_insensitive_header(tmp_path):
    (tmp_path / "t.tsv").write_text("Name\tProperty\tValue\tsource\nAda  Quill\tgender\tfemale\twikidata\n")
    assert read_fact_table(tmp_path / "t.tsv") == {"Ada Quill": {"gender": {"female"}}}


def test_missing_columns_name_the_file_and_what_it_has(tmp_path):
    (tmp_path / "bad.csv").write_text("person,value\nAda Quill,female\n")
    with pytest.raises(InputError, match=r"bad\.csv: missing column\(s\) name, property; found person, value"):
        read_fact_table(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("name,property,value\nAda Quill,gender,female\n,gender,male\n")
    with pytest.raises(InputError, match=r"gap\.csv, line 3: empty name"):
        read_fact_table(tmp_path / "gap.csv")
    with pytest.raises(InputError, match="does not exist"):
        read_fact_table(tmp_path / "none.csv")


# --------------------------------------------------------------------------- mentions
def test_find_mentions_words_whitespace_and_longest_name():
    documents = [("d", "Ada Quill met Ada Quillson and Ada\n  Quill Jr. Later Ada Quill Jr. left; ada quill stayed.")]
    mentions = find_mentions(["Ada Quill", "Ada Quill Jr."], documents)
    text = documents[0][1]
    found = [(m.name, text[m.begin : m.end], text[m.surname[0] : m.surname[1]]) for m in mentions]
    assert found == [
        ("Ada Quill", "Ada Quill", "Quill"),
        ("Ada Quill Jr.", "Ada\n  Quill Jr.", "Quill"),
        ("Ada Quill Jr.", "Ada Quill Jr.", "Quill"),
    ]
    assert len(find_mentions(["Ada Quill"], documents, case_sensitive=False)) == 4


def test_surname_span_skips_suffixes():
    assert surname_span("Marie Curie") == (6, 11)
    assert surname_span("Martin Luther King Jr.") == (14, 18)
    assert surname_span("Plato") == (0, 5)
    assert surname_span("Ingrid Halvorsen-Pike") == (7, 21)


# --------------------------------------------------------------------------- the builder
def test_names_seen_once_are_dropped_and_three_examples_per_name(small, minilm_tokenizer):
    dataset = build_entity_facts(small / "corpus", minilm_tokenizer, table=small / "facts.csv")
    groups = list(dataset.groups)
    assert groups.count("Ada Quill") == 3  # four mentions, capped at three
    assert groups.count("Bram Otterly") == 3
    assert "Dov Hessel" not in groups  # mentioned once
    assert "Cora Vane" not in groups
    assert dataset.extra["names"] == {"in_table": 4, "mentioned": 4, "kept": 2, "mentions_used": 6}
    assert dataset.extra["mentions"] == {"Ada Quill": 4, "Bram Otterly": 3}


def test_only_surname_tokens_are_labelled_and_sequences_end_at_the_name(small, minilm_tokenizer):
    dataset = build_entity_facts(small / "corpus", minilm_tokenizer, table=small / "facts.csv")
    for s, strings in surnames_of(dataset, minilm_tokenizer).items():
        expected = minilm_tokenizer.tokenize(dataset.groups[s].split()[-1])
        assert strings == expected  # e.g. ['otter', '##ly'], never the first name
        last = minilm_tokenizer.convert_ids_to_tokens(dataset.tokens[s][-1 - len(expected) : -1].tolist())
        assert last == expected  # the name ends the sequence, before [SEP]
        assert dataset.texts[s].endswith(dataset.groups[s].split()[-1])


def test_one_vs_rest_labels_per_property_value(small, minilm_tokenizer):
    dataset = build_entity_facts(small / "corpus", minilm_tokenizer, table=small / "facts.csv", min_positives=1)
    facts = read_fact_table(small / "facts.csv")
    ex = dataset.examples
    for index, feature in enumerate(dataset.feature_names):
        prop, value = feature.split(":")
        rows = np.flatnonzero(ex.feature == index)
        for s, label in zip(ex.sequence[rows], ex.label[rows]):
            assert label == int(value in facts[dataset.groups[s]][prop])
    # Bram is both an engineer and a painter: positive for both, so painter has no negative (Ada is an
    # engineer only, so she is a negative of painter).
    counts = dataset.counts()
    ada, bram = (3 * len(minilm_tokenizer.tokenize(surname)) for surname in ("Quill", "Otterly"))
    assert counts["occupation:painter"] == {"positive": bram, "negative": ada}
    # Both kept people are engineers: no negative, so the feature is dropped (and says why).
    assert "occupation:engineer" not in counts
    assert dataset.extra["dropped_features"]["occupation:engineer"] == {"positive": ada + bram, "negative": 0}
    assert counts["gender:female"] == {"positive": ada, "negative": bram}


def test_piece_mean_gives_one_span_per_mention(small, minilm_tokenizer):
    dataset = build_entity_facts(small / "corpus", minilm_tokenizer, table=small / "facts.csv", piece="mean")
    ex = dataset.feature_examples("gender:male")
    assert set(ex.aggregation.tolist()) == {AGGREGATIONS.index("mean")}
    for s, start, end in zip(ex.sequence, ex.start, ex.end):
        pieces = minilm_tokenizer.convert_ids_to_tokens(dataset.tokens[s][start:end].tolist())
        assert pieces == minilm_tokenizer.tokenize(dataset.groups[s].split()[-1])


def test_long_context_is_truncated_from_the_left(tmp_path, minilm_tokenizer):
    filler = " ".join(f"word{i}" for i in range(400))
    (tmp_path / "facts.csv").write_text(TABLE)
    (tmp_path / "long.txt").write_text(
        f"{filler} Ada Quill spoke. {filler} Then Ada Quill left. Bram Otterly, Bram Otterly."
    )
    dataset = build_entity_facts([tmp_path / "long.txt"], minilm_tokenizer, table=tmp_path / "facts.csv",
                                 context_length=32)
    assert list(dataset.groups) == ["Ada Quill", "Ada Quill", "Bram Otterly", "Bram Otterly"]
    for s in range(2):
        assert len(dataset.tokens[s]) == 32
        encoded = minilm_tokenizer(dataset.texts[s])["input_ids"]
        assert encoded == dataset.tokens[s].tolist()
        assert dataset.texts[s].endswith("Ada Quill")


def test_example_fixture_builds_through_the_registry_with_the_table_among_sources(minilm_tokenizer, tmp_path):
    dataset = build_collection(
        "entity-facts", [str(FIXTURES / "people.csv"), str(FIXTURES / "corpus")], minilm_tokenizer
    )
    assert dataset.feature_names == [
        "gender:female", "gender:male",
        "occupation:athlete", "occupation:politician", "occupation:researcher", "occupation:singer",
    ]
    assert dataset.extra["names"] == {"in_table": 18, "mentioned": 17, "kept": 16, "mentions_used": 46}
    assert list(dataset.groups).count("Marisol Quenby") == 3
    assert "Oswin Thackery" not in set(dataset.groups)
    dataset.save(tmp_path / "ds")
    assert load_dataset(tmp_path / "ds").builder["params"]["max_per_name"] == 3


# --------------------------------------------------------------------------- bad input
def test_errors(small, minilm_tokenizer):
    corpus = small / "corpus"
    with pytest.raises(InputError, match="needs one fact table"):
        build_entity_facts(corpus, minilm_tokenizer)
    with pytest.raises(InputError, match="no property 'age'; the table has gender, occupation"):
        build_entity_facts(corpus, minilm_tokenizer, table=small / "facts.csv", properties=["age"])
    with pytest.raises(InputError, match="mentioned at least 5 times"):
        build_entity_facts(corpus, minilm_tokenizer, table=small / "facts.csv", min_mentions=5)
    with pytest.raises(InputError, match="piece must be one of"):
        build_entity_facts(corpus, minilm_tokenizer, table=small / "facts.csv", piece="middle")
    with pytest.raises(InputError, match="needs a corpus"):
        build_entity_facts(None, minilm_tokenizer, table=small / "facts.csv")
