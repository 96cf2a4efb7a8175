"""The next-token builder: the next word's class at the current word's last token."""

from __future__ import annotations

import pytest

from needle.datasets.format import load_dataset
from needle.datasets.next_token import EOS, build_next_token, next_word_classes
from needle.datasets.readers.conllu import read_conllu
from needle.errors import InputError

# "The dog barks. I don't know." — don't is a multiword token (do + n't) whose forms spell it.
TREEBANK = """# newdoc id = doc1
# sent_id = doc1-0001
# text = The dog barks.
1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\tbarks\tbark\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = doc1-0002
# text = I don't know.
1\tI\tI\tPRON\t_\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\t_\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\t_\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t_\t_\t4\tpunct\t_\t_

"""


@pytest.fixture
def treebank(tmp_path):
    path = tmp_path / "toy.conllu"
    path.write_text(TREEBANK, encoding="utf-8")
    return path


def labels_by_position(dataset):
    """{(sequence, token): class} from the positives of every feature."""
    out = {}
    for f, s, t, label in zip(dataset.examples.feature, dataset.examples.sequence, dataset.examples.start,
                              dataset.examples.label):  # fmt: skip
        if label:
            key = (int(s), int(t))
            assert key not in out, "a position has one next-word class"
            out[key] = dataset.feature_names[f].removeprefix("next:")
    return out


def test_next_word_classes(treebank):
    first, second = read_conllu(treebank)[0].sentences
    assert next_word_classes(first) == ["NOUN", "VERB", "PUNCT", EOS]
    assert next_word_classes(second) == ["AUX", "PART", "VERB", "PUNCT", EOS]


def test_labels_by_hand(treebank, minilm_tokenizer):
    tokens = minilm_tokenizer.tokenize("The dog barks. I don't know.")
    assert tokens == ["the", "dog", "bark", "##s", ".", "i", "don", "'", "t", "know", "."]
    dataset = build_next_token(treebank, minilm_tokenizer, min_positives=1, positive_ratio=None)
    assert dataset.n_sequences == 1 and dataset.groups[0] == "toy:doc1"
    # [CLS]=0 the=1 dog=2 bark=3 ##s=4 .=5 i=6 don=7 '=8 t=9 know=10 .=11 [SEP]=12
    assert labels_by_position(dataset) == {
        (0, 1): "NOUN", (0, 2): "VERB",
        (0, 4): "PUNCT",  # "barks" is probed at its last piece
        (0, 5): EOS,
        (0, 6): "AUX",  # "I" is followed by "do", whose first token is "don"
        # "do" ends on "don", where "n't" starts: it shares its last token with the next word, so no label
        (0, 9): "VERB", (0, 10): "PUNCT", (0, 11): EOS,
    }  # fmt: skip
    # one-vs-rest: every labelled position is a negative of every other class
    counts = dataset.counts()
    assert counts["next:VERB"] == {"positive": 2, "negative": 6}
    assert counts["next:eos"] == {"positive": 2, "negative": 6}
    assert dataset.extra["positions"]["words_sharing_a_token_with_the_next"] == 1
    assert dataset.extra["positions"]["labelled"] == 8


def test_bpe_labels_match_a_reference_computed_word_by_word(treebank, bpe_tokenizer):
    from needle.datasets.alignment import encode, tokens_in_span

    dataset = build_next_token(treebank, bpe_tokenizer, min_positives=1, positive_ratio=None)
    sentences = read_conllu(treebank)[0].sentences
    text = " ".join(s.text for s in sentences)
    assert dataset.texts == [text]
    encoded = encode(bpe_tokenizer, text)
    expected, offset = {}, 0
    for sentence in sentences:
        spans = [(b + offset, e + offset) for b, e in zip(sentence.begins, sentence.ends)]
        for i, classes in enumerate(next_word_classes(sentence)):
            (last,) = tokens_in_span(encoded, *spans[i], piece="last")
            if i + 1 < len(spans) and tokens_in_span(encoded, *spans[i + 1], piece="first")[0] <= last:
                continue
            expected[(0, int(last))] = classes
        offset += len(sentence.text) + 1
    assert labels_by_position(dataset) == expected
    assert len(expected) >= 8


def test_classes_and_sequences(treebank, minilm_tokenizer):
    dataset = build_next_token(treebank, minilm_tokenizer, classes=["VERB", "eos"], min_positives=1,
                               positive_ratio=None)  # fmt: skip
    assert dataset.feature_names == ["next:VERB", "next:eos"]
    assert dataset.counts()["next:VERB"] == {"positive": 2, "negative": 6}
    # a context too short for one sentence leaves it out and says so
    short = build_next_token(treebank, minilm_tokenizer, context_length=7, min_positives=1, positive_ratio=None)
    assert short.extra["positions"]["sentences_longer_than_context"] == 1
    assert all(len(t) <= 7 for t in short.tokens)


def test_errors(tmp_path, treebank, minilm_tokenizer):
    with pytest.raises(InputError, match="'ADJ'"):
        build_next_token(treebank, minilm_tokenizer, classes=["ADJ"], min_positives=1)
    untagged = tmp_path / "untagged.conllu"
    untagged.write_text("# sent_id = a-1\n1\tHi\thi\t_\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(InputError, match="UPOS"):
        build_next_token(untagged, minilm_tokenizer, min_positives=1)
    with pytest.raises(InputError, match="no such file"):
        build_next_token(tmp_path / "missing.conllu", minilm_tokenizer)
    with pytest.raises(InputError, match="no feature has at least"):
        build_next_token(treebank, minilm_tokenizer, min_positives=50)
    with pytest.raises(InputError, match="context_length"):
        build_next_token(treebank, minilm_tokenizer, context_length=2)
    malformed = tmp_path / "bad.conllu"
    malformed.write_text("# sent_id = a-1\n1\tHi\thi\tINTJ\n\n")
    with pytest.raises(InputError, match="line 2"):
        build_next_token(malformed, minilm_tokenizer)


def test_cli_build(tmp_path, treebank, monkeypatch, capsys):
    from needle.cli import main

    out = tmp_path / "ds"
    monkeypatch.setattr("sys.argv", ["needle", "dataset", "build", "next-token", "--out", str(out), "--source",
                                     str(treebank), "--param", "min_positives=1"])  # fmt: skip
    try:
        main()
    except SystemExit as exited:
        assert exited.code == 0, capsys.readouterr().err
    dataset = load_dataset(out)
    assert dataset.builder["name"] == "next-token"
    assert "next:PUNCT" in dataset.feature_names
