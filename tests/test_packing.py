"""Packing texts into sequences that fit the context, cutting long units and lines, and word → token pairs."""

from __future__ import annotations

import numpy as np
import pytest

from needle.datasets.alignment import encode, tokens_in_span
from needle.datasets.packing import (
    encoded_length,
    pack_documents,
    pack_lines,
    pack_texts,
    split_long_units,
    token_counts,
    word_tokens,
)
from needle.datasets.python_code import build_python_code
from needle.datasets.readers.conllu import read_conllu
from needle.datasets.readers.python_files import read_python_source
from ud_fixtures import ud_fixture_dir

TRICKY = ud_fixture_dir() / "tricky.conllu"


@pytest.fixture(params=["minilm", "bpe"])
def tokenizer(request, minilm_tokenizer, bpe_tokenizer):
    return minilm_tokenizer if request.param == "minilm" else bpe_tokenizer


def test_word_tokens_matches_tokens_in_span(tokenizer):
    for sentence in [s for d in read_conllu(TRICKY) for s in d.sentences]:
        encoded = encode(tokenizer, sentence.text)
        for piece in ("first", "last", "all"):
            word, token = word_tokens(encoded, np.array(sentence.begins), np.array(sentence.ends), piece)
            expected = [(w, int(t)) for w in range(sentence.n_words) for t in tokens_in_span(encoded, sentence.begins[w], sentence.ends[w], piece)]
            assert list(zip(word.tolist(), token.tolist())) == expected


def test_pack_texts_moves_the_last_unit_out_when_the_estimate_is_wrong(tokenizer):
    texts = [f"Sentence number {i} is here." for i in range(12)]
    context = 2 * len(encode(tokenizer, texts[0])) + 2
    packs, dropped = pack_texts(texts, tokenizer, context, lengths=[1] * len(texts))  # a gross underestimate
    assert not dropped
    assert [u for p in packs for u in p.units] == list(range(12))
    assert all(len(p.encoded) <= context for p in packs)
    assert max(len(p.units) for p in packs) == 2
    for pack in packs:
        assert pack.text == " ".join(texts[u] for u in pack.units)
        assert all(pack.text[s:].startswith(texts[u]) for u, s in zip(pack.units, pack.starts))


def test_pack_texts_drops_a_unit_too_long_alone_and_keeps_order(tokenizer):
    texts = ["Short one.", "word " * 80, "Another short one.", "And a third."]
    packs, dropped = pack_texts(texts, tokenizer, 24, separator="\n\n")
    assert dropped == [1]
    assert [u for p in packs for u in p.units] == [0, 2, 3]
    for pack in packs:
        assert pack.text == "\n\n".join(texts[u] for u in pack.units)
        assert np.array_equal(pack.encoded.ids, encode(tokenizer, pack.text).ids)


def test_token_counts_and_encoded_length(tokenizer):
    texts = ["Hello there.", "", "Numbers 12345"]
    counts = token_counts(tokenizer, texts)
    assert counts.tolist() == [len(encode(tokenizer, t, add_special_tokens=False)) for t in texts]
    assert token_counts(tokenizer, []).shape == (0,)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    assert encoded_length(tokenizer, "Hello there.") == counts[0] + n_special


def test_split_long_units_cuts_at_whitespace_and_keeps_the_text(tokenizer):
    long = " ".join(f"w{i}" for i in range(120))
    units, lengths, cuts = split_long_units(["short text", long], tokenizer, 20)
    assert cuts >= 3 and units[0] == "short text"
    assert all(length <= 20 for length in lengths)
    assert lengths.tolist() == token_counts(tokenizer, units).tolist()
    assert " ".join(units[1:]).split() == long.split()
    same, _, none = split_long_units(["short text"], tokenizer, 20)
    assert same == ["short text"] and none == 0


def test_a_long_line_is_cut_at_token_boundaries(tokenizer, tmp_path):
    source = tmp_path / "long.py"
    source.write_text("x = [" + ", ".join(f"'item{i}'" for i in range(300)) + "]\ny = 1\n")
    text = read_python_source(source)
    n_special = len(encode(tokenizer, "").ids)
    pieces = pack_lines(text, tokenizer, 40, n_special=n_special)
    assert len(pieces) > 10
    assert "".join(text[b:e] for b, e, _ in pieces) == text
    assert all(len(enc) <= 40 for _, _, enc in pieces)
    for b, e, enc in pieces:
        assert np.array_equal(enc.ids, encode(tokenizer, text[b:e]).ids)
    dataset = build_python_code(source, tokenizer, context_length=40, min_positives=1)
    assert max(len(t) for t in dataset.tokens) <= 40


def test_pack_documents_equals_pack_texts_per_document(tokenizer):
    documents = [[f"Doc {d} sentence {s} is here." for s in range(n)] for d, n in enumerate([5, 0, 1, 9])]
    documents[3][4] = "long " * 60
    together = list(pack_documents(documents, tokenizer, 24))
    assert len(together) == len(documents)
    for document, (packs, dropped) in zip(documents, together):
        alone, alone_dropped = pack_texts(document, tokenizer, 24)
        assert dropped == alone_dropped
        assert [(p.units, p.starts, p.text, p.encoded.ids.tolist()) for p in packs] == [
            (p.units, p.starts, p.text, p.encoded.ids.tolist()) for p in alone
        ]
    assert together[3][1] == [4] and together[1] == ([], [])
