"""The compound-words builder: bigram statistics, the paper's filter, 1:2:2 examples ending at the bigram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from needle.datasets.compound_words import (
    PAPER_COMPOUNDS,
    build_compound_words,
    count_bigrams,
    discover_compounds,
    read_corpus,
)
from needle.datasets.format import load_dataset
from needle.errors import InputError


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Two "social security" (XY), five "social W" (XW), five "Z security" (ZY), one unrelated line.
SECURITY = [
    "my social security number",
    "the social media team",
    "his social life",
    "social clubs",
    "our social worker",
    "social skills matter",
    "national security matters",
    "home security systems",
    "job security",
    "border security",
    "data security",
    "we paid social security today",
    "nothing else here",
]


def test_bigram_statistics_by_hand(tmp_path):
    path = write(tmp_path, "c.txt", ["a b c", "a b", "x b, a c", "a 1 b"])
    counts = count_bigrams(read_corpus([path]))
    # alphabetic bigrams: (a,b) (b,c) | (a,b) | (x,b) (a,c) — the comma and the digit break bigrams
    assert sorted(zip(np.array(counts.vocabulary)[counts.first], np.array(counts.vocabulary)[counts.second])) == [
        ("a", "b"), ("a", "b"), ("a", "c"), ("b", "c"), ("x", "b"),
    ]  # fmt: skip
    stats = counts.statistics("a", "b")
    assert stats == {"count": 2, "p_x_given_y": 2 / 3, "p_y_given_x": 2 / 3}
    assert counts.statistics("a", "zzz") == {"count": 0, "p_x_given_y": 0.0, "p_y_given_x": 0.0}


def test_discovery_applies_the_papers_filter(tmp_path):
    lines = (
        ["coffee cup"] * 4
        + ["coffee bean", "coffee shop", "coffee break"] * 4  # P(cup | coffee) = 4/16
        + ["tea cup", "paper cup", "world cup"] * 4  # P(coffee | cup) = 4/16
        + ["ice cream"] * 4  # P(cream | ice) = 1: given away by its first word
        + ["the cup"] * 4  # a stop word
    )
    # two documents (files) with the same lines
    counts = count_bigrams(read_corpus([write(tmp_path, "a.txt", lines), write(tmp_path, "b.txt", lines)]))
    assert discover_compounds(counts, top=10, min_count=8) == [("coffee", "cup")]
    assert discover_compounds(counts, top=10, min_count=9) == []
    # the bound is strict ("below 0.3"): P = 0.25 fails a bound of 0.25, and P = 1 ("coffee bean") any bound
    assert discover_compounds(counts, top=10, min_count=8, max_conditional=0.25) == []
    assert discover_compounds(counts, top=10, min_count=8, max_conditional=0.26) == [("coffee", "cup")]
    assert discover_compounds(counts, top=10, min_count=8, max_conditional=1.0) == [("coffee", "cup")]
    assert discover_compounds(counts, top=10, min_count=8, exclude=[("coffee", "cup")]) == []
    # a bigram of one document cannot be split by document: it needs min_documents documents
    assert discover_compounds(counts, top=10, min_count=8, min_documents=3) == []
    single = count_bigrams(read_corpus([write(tmp_path, "a.txt", lines)]))
    assert discover_compounds(single, top=10, min_count=4) == []
    assert discover_compounds(single, top=10, min_count=4, min_documents=1) == [("coffee", "cup")]


def test_nominal_filter_uses_upos(tmp_path):
    def sentence(i, words):
        rows = [f"{j}\t{w}\t{w}\t{u}\t_\t_\t0\troot\t_\t_" for j, (w, u) in enumerate(words, 1)]
        return f"# sent_id = s-{i}\n" + "\n".join(rows) + "\n\n"

    text = "# newdoc id = d\n"
    for i in range(3):
        text += sentence(5 * i, [("credit", "NOUN"), ("card", "NOUN")])
        text += sentence(5 * i + 1, [("runs", "VERB"), ("quickly", "ADV")])
        text += sentence(5 * i + 2, [("credit", "NOUN"), ("union", "NOUN"), ("runs", "VERB"), ("slowly", "ADV")])
        text += sentence(5 * i + 3, [("gift", "NOUN"), ("card", "NOUN"), ("runs", "VERB"), ("far", "ADV")])
        text += sentence(5 * i + 4, [("walks", "VERB"), ("quickly", "ADV")])
    # credit card and runs quickly: both conditionals 1/2 or 1/3; every other bigram has one of 1
    path = tmp_path / "t.conllu"
    path.write_text(text)
    counts = count_bigrams(read_corpus([path]))
    assert counts.tagged
    assert discover_compounds(counts, top=5, min_count=3, max_conditional=0.6, min_documents=1) == [("credit", "card")]
    everything = discover_compounds(counts, top=5, min_count=3, max_conditional=0.6, min_documents=1,
                                    nominal_only=False)  # fmt: skip
    assert everything == [("credit", "card"), ("runs", "quickly")]


@pytest.mark.parametrize("which", ["minilm", "bpe"])
def test_examples_end_at_the_bigram_in_paper_proportions(which, tmp_path, minilm_tokenizer, bpe_tokenizer):
    tokenizer = minilm_tokenizer if which == "minilm" else bpe_tokenizer
    path = write(tmp_path, "c.txt", SECURITY)
    dataset = build_compound_words(path, tokenizer, compounds=["social security"], discover=0,
                                   context_length=64, min_positives=1)  # fmt: skip
    assert dataset.feature_names == ["compound:social_security"]
    ex = dataset.feature_examples("compound:social_security")
    report = dataset.extra["compounds"]["compound:social_security"]
    assert (report["positive"], report["xw"], report["zy"]) == (2, 4, 4)  # 1 : 2 : 2
    assert report["origin"] == "curated" and report["count"] == 2
    for s, token, label in zip(ex.sequence, ex.start, ex.label):
        words = dataset.texts[s].split()
        x, y = words[-2], words[-1]
        if label:
            assert (x, y) == ("social", "security")
        else:
            assert (x == "social") != (y == "security")  # XW or ZY, never both, never neither
        # the example is the sequence's last non-special token, which ends the text
        special = tokenizer.get_special_tokens_mask(dataset.tokens[s].tolist(), already_has_special_tokens=True)
        assert token == np.flatnonzero(np.array(special) == 0)[-1]
    # the context runs back over earlier lines of the document
    longest = max((dataset.texts[s] for s, label in zip(ex.sequence, ex.label) if label), key=len)
    assert longest.endswith("we paid social security") and "border security" in longest


def test_short_negatives_are_filled_by_the_other_kind(tmp_path, minilm_tokenizer):
    others = ("home", "job", "data", "cyber", "port", "bank", "food", "farm")
    lines = ["social security", "social security", "social club"] + [f"{w} security" for w in others]
    dataset = build_compound_words(write(tmp_path, "c.txt", lines), minilm_tokenizer, compounds=["social_security"],
                                   discover=0, min_positives=1)  # fmt: skip
    report = dataset.extra["compounds"]["compound:social_security"]
    assert (report["positive"], report["xw"], report["zy"]) == (2, 1, 7)
    everything = build_compound_words(write(tmp_path, "c.txt", lines), minilm_tokenizer, compounds=["social-security"],
                                      discover=0, min_positives=1, positive_ratio=None)  # fmt: skip
    report = everything.extra["compounds"]["compound:social_security"]
    assert (report["positive"], report["xw"], report["zy"]) == (2, 1, 8)


def test_context_is_cut_on_the_left(tmp_path, minilm_tokenizer):
    long_line = " ".join(["alpha", "beta", "gamma", "delta"] * 10) + " social security"
    path = write(tmp_path, "c.txt", [long_line, "national security", "social media", "social club", "job security",
                                     "home security", "social life", "data security", "social work"])  # fmt: skip
    dataset = build_compound_words(path, minilm_tokenizer, compounds=["social security"], discover=0,
                                   context_length=8, min_positives=1)  # fmt: skip
    ex = dataset.feature_examples("compound:social_security")
    words = ["alpha", "beta", "gamma", "delta", "social", "security"]
    assert minilm_tokenizer.tokenize(" ".join(words)) == words
    (s,) = ex.sequence[ex.label == 1]
    assert len(dataset.tokens[s]) == 8  # [CLS] + the last 6 tokens + [SEP]
    assert dataset.texts[s] == "alpha beta gamma delta social security"
    assert all(len(t) <= 8 for t in dataset.tokens)


def test_sequences_are_shared_between_compounds(tmp_path, minilm_tokenizer):
    path = write(tmp_path, "c.txt", SECURITY)
    dataset = build_compound_words(path, minilm_tokenizer, compounds=["social security", "national security"],
                                   discover=0, min_positives=1, positive_ratio=None)  # fmt: skip
    # "national security" is a positive of one compound and a ZY negative of the other, on one sequence
    texts = [t for t in dataset.texts if t.endswith("national security")]
    assert len(texts) == 1
    assert len(set(dataset.texts)) == dataset.n_sequences


def test_errors(tmp_path, minilm_tokenizer):
    path = write(tmp_path, "c.txt", SECURITY)
    with pytest.raises(InputError, match="two alphabetic words"):
        build_compound_words(path, minilm_tokenizer, compounds=["security"])
    with pytest.raises(InputError, match="two alphabetic words"):
        build_compound_words(path, minilm_tokenizer, compounds=["covid 19"])
    with pytest.raises(InputError, match="no compound to build"):
        build_compound_words(path, minilm_tokenizer, compounds=[], discover=5, min_count=50)
    with pytest.raises(InputError, match="empty source"):
        build_compound_words(write(tmp_path, "e.txt", ["", "  "]), minilm_tokenizer)
    with pytest.raises(InputError, match="no such file"):
        build_compound_words(tmp_path / "missing.txt", minilm_tokenizer)
    with pytest.raises(InputError, match="no compound has 5 positive"):
        build_compound_words(path, minilm_tokenizer, compounds=["social security"], discover=0, min_positives=5)
    with pytest.raises(InputError, match="max_conditional"):
        build_compound_words(path, minilm_tokenizer, max_conditional=0)


def test_paper_list_is_the_default(tmp_path, minilm_tokenizer):
    assert len(PAPER_COMPOUNDS) == 21 and "social security" in PAPER_COMPOUNDS
    dataset = build_compound_words(write(tmp_path, "c.txt", SECURITY), minilm_tokenizer, discover=0, min_positives=1)
    # "the social media team" is the paper's "social media"; the other nineteen have no examples here
    assert dataset.feature_names == ["compound:social_media", "compound:social_security"]
    assert len(dataset.extra["compounds"]) == 21
    assert dataset.extra["dropped_features"]["compound:prime_factors"] == {"positive": 0, "negative": 0}
    assert set(dataset.examples.sequence.tolist()) == set(range(dataset.n_sequences))  # no sequence left unused


def test_cli_build(tmp_path, monkeypatch, capsys):
    from needle.cli import main

    path = write(tmp_path, "c.txt", SECURITY)
    out = tmp_path / "ds"
    monkeypatch.setattr("sys.argv", ["needle", "dataset", "build", "compound-words", "--out", str(out), "--source",
                                     str(path), "--param", 'compounds=["social security"]', "--param", "discover=0",
                                     "--param", "min_positives=1"])  # fmt: skip
    try:
        main()
    except SystemExit as exited:
        assert exited.code == 0, capsys.readouterr().err
    dataset = load_dataset(out)
    assert dataset.builder["params"]["compounds"] == ["social security"]
    assert dataset.counts() == {"compound:social_security": {"positive": 2, "negative": 8}}
