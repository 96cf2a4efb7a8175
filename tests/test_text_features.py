"""The plain-text token features: token strings for both tokenizer families, regex labels, sources."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from needle.datasets.alignment import encode
from needle.datasets.format import load_dataset
from needle.datasets.text_features import (
    TEXT_FEATURES,
    build_text_features,
    text_feature_labels,
    token_strings,
    token_style,
)
from needle.errors import InputError
from ud_fixtures import ud_fixture_dir

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "text" / "sample.txt"
TRICKY = ud_fixture_dir() / "tricky.conllu"
NAMES = list(TEXT_FEATURES)


def features_of(string):
    return {name for name, value in zip(NAMES, text_feature_labels(string)) if value}


@pytest.mark.parametrize(
    ("string", "expected"),
    [
        (" Hello", {"leading_capital", "has_leading_space", "contains_whitespace", "contains_capital"}),
        ("Hello", {"leading_capital", "contains_capital"}),
        ("NASA", {"leading_capital", "all_capitals", "contains_capital"}),
        (" NASA", {"leading_capital", "all_capitals", "contains_capital", "has_leading_space", "contains_whitespace"}),
        (" I", {"leading_capital", "contains_capital", "has_leading_space", "contains_whitespace"}),
        ("A", {"leading_capital", "contains_capital"}),
        ("2023", {"all_digits", "contains_digit"}),
        (" 12", {"all_digits", "contains_digit", "has_leading_space", "contains_whitespace"}),
        ("x86", {"contains_digit"}),
        ("\n\n", {"contains_all_whitespace", "contains_whitespace", "is_not_alphanumeric"}),
        (" ", {"contains_all_whitespace", "contains_whitespace", "is_not_alphanumeric", "has_leading_space"}),
        ("café", {"is_not_ascii", "no_leading_space_and_loweralpha"}),
        ("ing", {"no_leading_space_and_loweralpha"}),
        (" ing", {"has_leading_space", "contains_whitespace"}),
        (",", {"is_not_alphanumeric"}),
        (" —", {"is_not_alphanumeric", "is_not_ascii", "has_leading_space", "contains_whitespace"}),
        ("_", set()),
        ("\ufffd", {"is_not_ascii", "is_not_alphanumeric"}),
        ("", set()),
    ],
)
def test_regex_labels_on_hand_picked_strings(string, expected):
    assert features_of(string) == expected


def test_token_style(minilm_tokenizer, bpe_tokenizer):
    assert token_style(minilm_tokenizer) == "wordpiece"
    assert token_style(bpe_tokenizer) == "byte_level"


def test_wordpiece_token_strings(minilm_tokenizer):
    text = "Hello world, don't stop\n\nrunning 2023 NASA"
    encoded = encode(minilm_tokenizer, text)
    strings = token_strings(minilm_tokenizer, encoded, text)
    assert strings[0] == strings[-1] == ""  # [CLS], [SEP]
    pieces = minilm_tokenizer.convert_ids_to_tokens(encoded.ids.tolist())
    got = dict(zip(pieces[1:-1], strings[1:-1]))
    assert strings[1:-1] == [
        "hello", " world", ",", " don", "'", "t", " stop", " running", " 202", "3", " nasa",
    ]  # fmt: skip
    assert got["##3"] == "3"


def test_byte_level_token_strings(bpe_tokenizer):
    text = "The lazy dog said:  'we're closed'\n\n123 THE END"
    encoded = encode(bpe_tokenizer, text)
    strings = token_strings(bpe_tokenizer, encoded, text)
    assert "".join(strings) == text  # byte-level tokens partition the text, leading spaces included
    pieces = bpe_tokenizer.convert_ids_to_tokens(encoded.ids.tolist())
    for piece, string in zip(pieces, strings):
        assert string.startswith(" ") == piece.startswith("Ġ")
    text = "Zürich"
    strings = token_strings(bpe_tokenizer, encode(bpe_tokenizer, text), text)
    assert "\ufffd" in strings  # a piece of the two-byte ü


def labelled(dataset, name):
    ex = dataset.feature_examples(name)
    return {(int(s), int(t)): int(label) for s, t, label in zip(ex.sequence, ex.start, ex.label)}


def test_labels_in_a_built_dataset(minilm_tokenizer, bpe_tokenizer):
    for tokenizer in (minilm_tokenizer, bpe_tokenizer):
        dataset = build_text_features(SAMPLE, tokenizer, min_positives=1, positive_ratio=None)
        n_positions = sum(int((~encode(tokenizer, t).special).sum()) for t in dataset.texts)
        for name in dataset.feature_names:  # every non-special token is an example of every feature
            assert len(dataset.feature_examples(name)) == n_positions
        for seq, text in enumerate(dataset.texts):
            encoded = encode(tokenizer, text)
            assert np.array_equal(encoded.ids, dataset.tokens[seq])
            for position, string in enumerate(token_strings(tokenizer, encoded, text)):
                if encoded.special[position]:
                    continue
                for name, value in zip(NAMES, text_feature_labels(string)):
                    if name in dataset.feature_names:
                        assert labelled(dataset, name)[(seq, position)] == int(value)
    # Hand-picked tokens.
    dataset = build_text_features(SAMPLE, minilm_tokenizer, min_positives=1, positive_ratio=None)
    pieces = minilm_tokenizer.convert_ids_to_tokens(dataset.tokens[0].tolist())
    three = pieces.index("##3")
    assert labelled(dataset, "all_digits")[(0, three)] == 1
    assert labelled(dataset, "has_leading_space")[(0, three)] == 0
    assert labelled(dataset, "has_leading_space")[(0, pieces.index("brown"))] == 1
    assert labelled(dataset, "has_leading_space")[(0, 1)] == 0  # the first word of the text
    dataset = build_text_features(SAMPLE, bpe_tokenizer, min_positives=1, positive_ratio=None)
    pieces = bpe_tokenizer.convert_ids_to_tokens(dataset.tokens[0].tolist())
    assert pieces[0] == "The" and labelled(dataset, "leading_capital")[(0, 0)] == 1
    assert labelled(dataset, "has_leading_space")[(0, 0)] == 0
    brown = pieces.index("Ġbrown")
    assert labelled(dataset, "has_leading_space")[(0, brown)] == 1
    assert labelled(dataset, "no_leading_space_and_loweralpha")[(0, brown)] == 0
    newline = pieces.index("Ċ")
    assert labelled(dataset, "contains_all_whitespace")[(0, newline)] == 1
    assert labelled(dataset, "has_leading_space")[(0, newline)] == 0


def test_uncased_tokenizer_drops_what_cannot_occur(minilm_tokenizer, bpe_tokenizer):
    dataset = build_text_features(SAMPLE, minilm_tokenizer, min_positives=1)
    dropped = dataset.extra["dropped_features"]
    assert {"contains_capital", "all_capitals", "leading_capital", "contains_all_whitespace"} == set(dropped)
    assert all(counts["positive"] == 0 for counts in dropped.values())
    assert dataset.extra["token_style"] == "wordpiece"
    assert set(build_text_features(SAMPLE, bpe_tokenizer, min_positives=1).feature_names) == set(NAMES)


def test_conllu_source_groups_documents(bpe_tokenizer):
    dataset = build_text_features(TRICKY, bpe_tokenizer, min_positives=1)
    assert list(dataset.groups) == ["tricky:doc-a", "tricky:doc-b", "tricky:doc-c"]
    assert dataset.texts[1] == "Il parle du café à Zürich. Qui est là ?"


def test_long_paragraphs_are_cut_and_sequences_capped(tmp_path, minilm_tokenizer, bpe_tokenizer):
    words = [f"word{i}" for i in range(400)]
    path = tmp_path / "long.txt"
    path.write_text(" ".join(words) + "\n\nA short paragraph.\n\nAnother one.\n")
    for tokenizer in (minilm_tokenizer, bpe_tokenizer):
        dataset = build_text_features(path, tokenizer, context_length=64, min_positives=1)
        assert max(len(t) for t in dataset.tokens) <= 64
        assert dataset.extra["split_units"] > 0 and dataset.extra["dropped_units"] == 0
        assert " ".join(dataset.texts).split() == " ".join(words).split() + "A short paragraph. Another one.".split()
        assert set(dataset.groups) == {"long.txt"}
        capped = build_text_features(path, tokenizer, context_length=64, min_positives=1, max_sequences=2)
        assert capped.n_sequences == 2 and capped.texts == dataset.texts[:2]


def test_bad_input(tmp_path, minilm_tokenizer):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    cases = [
        ((tmp_path / "missing.txt",), {}, "missing.txt: no such file"),
        ((empty,), {}, "empty.txt: the file has no text"),
        ((SAMPLE,), {"max_sequences": 0}, "max_sequences"),
        ((SAMPLE,), {"context_length": 1}, "context_length"),
        ((SAMPLE,), {"min_positives": 10**6}, "empty collection"),
        ((ud_fixture_dir() / "bad_columns.conllu",), {}, "line 10"),
    ]
    out = tmp_path / "out"
    for args, kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            build_text_features(*args, minilm_tokenizer, **kwargs).save(out)
    assert not out.exists()


def test_gzip_determinism_and_round_trip(tmp_path, bpe_tokenizer):
    gz = tmp_path / "sample.txt.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    plain = build_text_features(SAMPLE, bpe_tokenizer, min_positives=1, seed=1)
    assert build_text_features(gz, bpe_tokenizer, min_positives=1, seed=1).content_hash() == plain.content_hash()
    assert build_text_features(SAMPLE, bpe_tokenizer, min_positives=1, seed=2).content_hash() != plain.content_hash()
    loaded = load_dataset(plain.save(tmp_path / "text"))
    assert loaded.content_hash() == plain.content_hash()
    assert loaded.texts == plain.texts and loaded.extra == plain.extra


def test_other_tokenizers_read_strings_from_offsets():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "Hello": 1, "world": 2, ",": 3, "!": 4}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert token_style(tokenizer) == "offsets"
    text = "Hello  world, Foo!"
    strings = token_strings(tokenizer, encode(tokenizer, text), text)
    assert strings == ["Hello", "  world", ",", " Foo", "!"]
