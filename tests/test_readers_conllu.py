"""Reading CoNLL-U: rebuilt sentence texts, word spans, documents, and errors that name the line."""

from __future__ import annotations

import gzip

import pytest

from needle.datasets.readers.conllu import UDSentence, find_conllu_files, is_conllu, is_feature_value, read_conllu
from needle.errors import InputError
from ud_fixtures import ud_fixture_dir

FIXTURES = ud_fixture_dir()
TRICKY = FIXTURES / "tricky.conllu"
SENT_IDS = FIXTURES / "sent_ids.conllu"


def test_rebuilt_text_equals_text_comment_and_spans_are_the_forms():
    documents = read_conllu(TRICKY)
    assert [d.id for d in documents] == ["doc-a", "doc-b", "doc-c"]
    assert [len(d.sentences) for d in documents] == [3, 2, 1]
    for doc in documents:
        for sentence in doc.sentences:
            assert sentence.text_matches is True
            for begin, end, form in zip(sentence.begins, sentence.ends, sentence.forms):
                if form not in ("de", "le"):
                    assert sentence.text[begin:end] == form
    first = documents[0].sentences[0]
    assert first.text == "I don't like naïve café-style cappuccinos."
    assert [first.text[b:e] for b, e in zip(first.begins[1:3], first.ends[1:3])] == ["do", "n't"]
    french = documents[1].sentences[0]
    assert french.text == "Il parle du café à Zürich."
    assert [french.text[b:e] for b, e in zip(french.begins[2:4], french.ends[2:4])] == ["du", "du"]
    assert documents[1].sentences[1].feats[0] == ("PronType=Int", "PronType=Rel")


def test_empty_nodes_are_skipped():
    sentence = read_conllu(TRICKY)[0].sentences[1]
    assert sentence.text == "Mary drank tea and John coffee."
    assert sentence.forms == ["Mary", "drank", "tea", "and", "John", "coffee", "."]


def test_documents_from_sent_id_prefix_without_newdoc():
    documents = read_conllu(SENT_IDS)
    assert [(d.id, len(d.sentences), d.source) for d in documents] == [
        ("weblog-blog.example.com_post-one", 2, "sent_id"),
        ("email-enron_x", 1, "sent_id"),
    ]


def test_newdoc_markers_start_documents_and_sentences_keep_their_lines(tmp_path):
    line = "1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_"
    path = tmp_path / "docs.conllu"
    path.write_text(f"# newdoc id = a\n# text = Hi\n{line}\n\n# text = Hi\n{line}\n\n# newdoc\n{line}\n")
    documents = read_conllu(path)
    assert [(d.id, d.source, len(d.sentences)) for d in documents] == [("a", "newdoc", 2), ("doc-line8", "newdoc", 1)]
    assert [s.line for d in documents for s in d.sentences] == [1, 5, 8]
    assert [s.text_matches for d in documents for s in d.sentences] == [True, True, None]
    assert isinstance(documents[0].sentences[0], UDSentence) and documents[0].sentences[0].n_words == 1


def test_gzipped_file_reads_as_plain(tmp_path):
    packed = tmp_path / "tricky.conllu.gz"
    packed.write_bytes(gzip.compress(TRICKY.read_bytes()))
    assert read_conllu(packed) == read_conllu(TRICKY)


def test_malformed_line_is_reported_by_the_reader(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("1\tHi\thi\tINTJ\t_\tTense\t0\troot\t_\t_\n")
    with pytest.raises(InputError, match=r"bad\.conllu, line 1: malformed FEATS item 'Tense'"):
        read_conllu(path)
    with pytest.raises(InputError, match=r"nope\.conllu: no such file"):
        read_conllu(tmp_path / "nope.conllu")


def test_name_and_feature_checks():
    assert is_conllu("a/b.conllu") and is_conllu("b.conllu.gz") and not is_conllu("b.txt")
    assert is_feature_value("Tense=Past") and is_feature_value("Number[psor]=Sing")
    assert not is_feature_value("Tense") and not is_feature_value("Tense=Past|Mood=Ind")


def test_find_conllu_files(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/x-ud-dev.conllu.gz", "a.conllu", "notes.txt", "b/y.conllu"):
        (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in find_conllu_files(tmp_path)] == [
        "a.conllu", "b/deep/x-ud-dev.conllu.gz", "b/y.conllu"
    ]
    assert find_conllu_files(tmp_path / "b" / "deep" / "none") == []
