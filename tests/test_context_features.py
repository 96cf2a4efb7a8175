"""Context features of the text-features collection (the Neuroscope post's regex-checkable features).

Each pattern is checked on hand-written strings against the substrings a
person marks by hand; then, for two real tokenizers, the token labels are
checked to cover exactly the tokens that overlap those substrings.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from needle.datasets.alignment import encode
from needle.datasets.context_features import _PATTERNS, CONTEXT_FEATURES, context_feature_labels
from needle.datasets.text_features import build_text_features
from needle.errors import InputError

CASES = {
    "year": ("In 1999 and 2024, not 12345, 3.1999 or 1499.", ["1999", "2024"]),
    "date": ("Due 2024-05-17 or 5/17/24; met May 17, 2024 and 3 June.", ["2024-05-17", "5/17/24", "May 17, 2024",
                                                                         "3 June"]),
    "phone_number": ("Call (555) 123-4567 or 555-123-4567, not 5551234567 or 12-345-6789.",
                     ["(555) 123-4567", "555-123-4567"]),
    "base64": ("key: QUJDREVGR0hJSktMTU5PUFFSU1RVVldY0123 and abcdefghijklmnopqrstuvwxyz",
               ["QUJDREVGR0hJSktMTU5PUFFSU1RVVldY0123"]),
    "hexadecimal": ("addr 0x1F3a, sha 9f86d081884c7d65, word deadbeef, number 12345678", ["0x1F3a", "9f86d081884c7d65"]),
    "end_of_sentence": ("It works. Then it failed! Is it? e.g. no. Done.", [".", "!", ".", "."]),
    "before_apostrophe_t": ("I don't know, it isn't, can\u2019t say; 't alone", ["don", "isn", "can"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_patterns_match_what_a_person_marks(name):
    text, expected = CASES[name]
    assert [m.group(0) for m in re.finditer(_PATTERNS[name][0], text)] == expected


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("which", ["minilm", "bpe"])
def test_token_labels_cover_exactly_the_tokens_overlapping_a_match(name, which, minilm_tokenizer, bpe_tokenizer):
    tokenizer = minilm_tokenizer if which == "minilm" else bpe_tokenizer
    text, _ = CASES[name]
    encoded = encode(tokenizer, text)
    labels = CONTEXT_FEATURES[name][0](text, encoded)
    spans = [(m.start(), m.end()) for m in re.finditer(_PATTERNS[name][0], text)]
    for i, (begin, end) in enumerate(encoded.offsets.tolist()):
        overlaps = not encoded.special[i] and end > begin and any(begin < e and end > b for b, e in spans)
        assert labels[i] == overlaps, (i, text[begin:end])
    assert labels.any()


def test_start_of_line_and_duplicated_token(bpe_tokenizer, minilm_tokenizer):
    text = "first words\n  second line\n\nthird words"
    for tokenizer in (bpe_tokenizer, minilm_tokenizer):
        encoded = encode(tokenizer, text)
        labels = context_feature_labels(text, encoded)
        column = list(CONTEXT_FEATURES)
        starts = [text[b:e] for (b, e), on in zip(encoded.offsets.tolist(), labels[:, column.index("start_of_line")])
                  if on]
        assert [s.strip()[:1] for s in starts] == ["f", "s", "t"]
        dup = labels[:, column.index("duplicated_token")]
        ids = encoded.ids.tolist()
        expected = [not special and token in [t for t, sp in zip(ids[:i], encoded.special[:i]) if not sp]
                    for i, (token, special) in enumerate(zip(ids, encoded.special.tolist()))]
        np.testing.assert_array_equal(dup, expected)
        assert dup.any() and not labels[encoded.special].any()


def test_builder_adds_context_and_previous_token_features(tmp_path, bpe_tokenizer):
    source = tmp_path / "notes.txt"
    lines = [f"On {1990 + i % 30}-05-17 call (555) 123-{4000 + i:04d}. It isn't 0x{i:04x}ff done." for i in range(60)]
    source.write_text("\n\n".join(lines), encoding="utf-8")
    dataset = build_text_features(source, bpe_tokenizer, context_length=64, min_positives=5,
                                  features="paper,context,previous")
    names = set(dataset.feature_names)
    assert {"date", "phone_number", "before_apostrophe_t", "start_of_line"} <= names
    assert any(name.startswith("prev:") for name in names)
    plain = build_text_features(source, bpe_tokenizer, context_length=64, min_positives=5)
    assert not ({"date", "phone_number"} & set(plain.feature_names))
    assert not any(name.startswith("prev:") for name in plain.feature_names)
    with pytest.raises(InputError, match="features='context,regex'"):
        build_text_features(source, bpe_tokenizer, features="context,regex")


def test_every_context_and_previous_label_of_a_built_dataset(tmp_path, minilm_tokenizer, bpe_tokenizer):
    from needle.datasets.text_features import TEXT_FEATURES, text_feature_labels, token_strings

    source = tmp_path / "notes.txt"
    source.write_text("Met on 2024-05-17. Call (555) 123-4567!\n\nIt isn't 0x1Fff, it's done. done done.",
                      encoding="utf-8")
    for tokenizer in (minilm_tokenizer, bpe_tokenizer):
        dataset = build_text_features(source, tokenizer, min_positives=1, positive_ratio=None,
                                      features="context,previous")
        assert not set(TEXT_FEATURES) & set(dataset.feature_names)  # "paper" was not asked for
        examples = {name: {(int(s), int(t)): int(v) for s, t, v in zip(ex.sequence, ex.start, ex.label)}
                    for name in dataset.feature_names for ex in [dataset.feature_examples(name)]}
        for seq, text in enumerate(dataset.texts):
            encoded = encode(tokenizer, text)
            context = context_feature_labels(text, encoded)
            strings = token_strings(tokenizer, encoded, text)
            previous = (False,) * len(TEXT_FEATURES)
            for position in range(len(encoded)):
                if encoded.special[position]:
                    continue
                for j, name in enumerate(CONTEXT_FEATURES):
                    if name in examples:
                        assert examples[name][(seq, position)] == int(context[position, j])
                for name, value in zip(TEXT_FEATURES, previous):
                    if f"prev:{name}" in examples:
                        assert examples[f"prev:{name}"][(seq, position)] == int(value)
                previous = text_feature_labels(strings[position])
