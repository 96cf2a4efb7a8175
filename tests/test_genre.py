"""The genre builder: labels from document ids, windows within documents, errors for unusable treebanks."""

from __future__ import annotations

import re

import pytest

from conftest import SHARED_DATA
from needle.datasets.format import AGGREGATIONS, load_dataset
from needle.datasets.genre import DEFAULT_LABEL_PATTERN, build_genre, document_label
from needle.errors import InputError

# Five MiniLM tokens each (checked below): context_length=12 holds two per window.
SENTENCES = ["the cat sat down .", "a dog ran home .", "we like red apples .", "she reads old books ."]


def block(sent_id: str | None, text: str) -> str:
    lines = [f"# sent_id = {sent_id}"] if sent_id else []
    lines.append(f"# text = {text}")
    for i, form in enumerate(text.split(), start=1):
        lines.append(f"{i}\t{form}\t{form}\t{'PUNCT' if form == '.' else 'NOUN'}\t_\t_\t0\troot\t_\t_")
    return "\n".join(lines) + "\n\n"


def document(doc_id: str, n: int, newdoc: bool = True) -> str:
    head = f"# newdoc id = {doc_id}\n" if newdoc else ""
    return head + "".join(block(f"{doc_id}-{i:04d}", SENTENCES[(i - 1) % 4]) for i in range(1, n + 1))


@pytest.fixture
def ewt_like(tmp_path):
    """EWT-style ids: three weblog sentences, then one or two of each other genre, and an unknown genre."""
    path = tmp_path / "en_toy-ud-train.conllu"
    path.write_text(
        document("weblog-blogspot.com_a_2004", 3)
        + document("email-enronsent01_01", 2)
        + document("reviews-001325", 1)
        + document("answers-20111108104253AApoNrv_ans", 2)
        + document("newsgroup-groups.google.com_x_2", 2)
        + document("forum-abc", 1),
        encoding="utf-8",
    )
    return path


def build_all(sources, tokenizer, **kwargs):
    kwargs = {"context_length": 12, "min_tokens": 1, "min_positives": 1, "positive_ratio": None, **kwargs}
    return build_genre(sources, tokenizer, **kwargs)


def labelled(dataset):
    names = dataset.feature_names
    out = {}
    for f, s, label in zip(dataset.examples.feature, dataset.examples.sequence, dataset.examples.label):
        if label:
            out[int(s)] = names[f]
    return sorted((dataset.groups[s], dataset.texts[s], name) for s, name in out.items())


def test_labels_groups_and_windows_by_hand(ewt_like, minilm_tokenizer):
    for sentence in SENTENCES:
        assert len(minilm_tokenizer.tokenize(sentence)) == 5
    dataset = build_all(ewt_like, minilm_tokenizer)
    s = SENTENCES
    stem = "en_toy-ud-train"
    assert labelled(dataset) == sorted([
        (f"{stem}:weblog-blogspot.com_a_2004", f"{s[0]} {s[1]}", "genre:weblog"),
        (f"{stem}:weblog-blogspot.com_a_2004", s[2], "genre:weblog"),
        (f"{stem}:email-enronsent01_01", f"{s[0]} {s[1]}", "genre:email"),
        (f"{stem}:reviews-001325", s[0], "genre:reviews"),
        (f"{stem}:answers-20111108104253AApoNrv_ans", f"{s[0]} {s[1]}", "genre:answers"),
        (f"{stem}:newsgroup-groups.google.com_x_2", f"{s[0]} {s[1]}", "genre:newsgroup"),
    ])  # fmt: skip
    assert sorted(dataset.feature_names) == ["genre:answers", "genre:email", "genre:newsgroup", "genre:reviews",
                                             "genre:weblog"]  # fmt: skip
    assert dataset.extra["skipped_documents"] == {"forum": 1}
    assert set(dataset.examples.aggregation.tolist()) == {AGGREGATIONS.index("mean")}
    assert dataset.counts()["genre:weblog"] == {"positive": 2, "negative": 4}
    assert dataset.builder["params"]["genres"] == ["weblog", "newsgroup", "email", "reviews", "answers"]


def test_every_label_and_sent_id_documents(tmp_path, minilm_tokenizer):
    # No newdoc lines: the document is the sentence id without its final -NNNN (EWT's convention).
    path = tmp_path / "toy.conllu"
    path.write_text(document("email-x", 2, newdoc=False) + document("forum-y", 2, newdoc=False))
    dataset = build_all(path, minilm_tokenizer, genres=None)
    assert labelled(dataset) == [
        ("toy:email-x", f"{SENTENCES[0]} {SENTENCES[1]}", "genre:email"),
        ("toy:forum-y", f"{SENTENCES[0]} {SENTENCES[1]}", "genre:forum"),
    ]


def test_label_pattern():
    pattern = re.compile(DEFAULT_LABEL_PATTERN)
    assert document_label("weblog-blogspot.com_x", pattern) == "weblog"
    assert document_label("reviews-001325", pattern) == "reviews"
    assert document_label("-odd", pattern) is None
    assert document_label("news/2001/a", re.compile(r"^([a-z]+)/")) == "news"


def test_custom_pattern(tmp_path, minilm_tokenizer):
    path = tmp_path / "toy.conllu"
    path.write_text(document("a.news", 2) + document("b.fiction", 2))
    dataset = build_all(path, minilm_tokenizer, genres=None, label_pattern=r"\.(?P<label>\w+)$")
    assert sorted(dataset.feature_names) == ["genre:fiction", "genre:news"]


def test_treebank_without_ids_is_refused(tmp_path, minilm_tokenizer):
    path = tmp_path / "noids.conllu"
    path.write_text(block(None, SENTENCES[0]) + block(None, SENTENCES[1]))
    with pytest.raises(InputError, match=r"noids.conllu, line 1: .*no '# sent_id'"):
        build_all(path, minilm_tokenizer)


def test_other_errors(tmp_path, ewt_like, minilm_tokenizer):
    with pytest.raises(InputError, match="'blog'"):
        build_all(ewt_like, minilm_tokenizer, genres=["weblog", "blog"])
    french = tmp_path / "fr.conllu"
    french.write_text(document("fr-ud-dev_00001", 1, newdoc=False))
    with pytest.raises(InputError, match="labels found: fr"):
        build_all(french, minilm_tokenizer)
    with pytest.raises(InputError, match="at least two labels"):
        build_all(ewt_like, minilm_tokenizer, genres=["email"])
    with pytest.raises(InputError, match="not a valid regular expression"):
        build_all(ewt_like, minilm_tokenizer, label_pattern="(")
    with pytest.raises(InputError, match="needs a group"):
        build_all(ewt_like, minilm_tokenizer, label_pattern="^[a-z]+-")
    with pytest.raises(InputError, match="no such file"):
        build_all(tmp_path / "missing.conllu", minilm_tokenizer)
    empty = tmp_path / "empty.conllu"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no sentences"):
        build_all(empty, minilm_tokenizer)
    with pytest.raises(InputError, match="max_sequences_per_genre"):
        build_all(ewt_like, minilm_tokenizer, max_sequences_per_genre=0)


def test_bpe_windows_stay_within_documents(ewt_like, bpe_tokenizer):
    dataset = build_all(ewt_like, bpe_tokenizer, context_length=16)
    for group, text, name in labelled(dataset):
        assert name == f"genre:{group.split(':')[1].split('-')[0]}"
        assert any(text == " ".join(SENTENCES[i:j]) for i in range(4) for j in range(i + 1, 5))
    assert all(len(t) <= 16 for t in dataset.tokens)


@pytest.mark.skipif(not (SHARED_DATA / "ud" / "en_ewt").is_dir(), reason="the shared EWT treebank is not here")
def test_ewt_dev_ids_carry_the_five_genres(minilm_tokenizer):
    dataset = build_genre(SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu.gz", minilm_tokenizer,
                          context_length=64, max_sequences_per_genre=30, min_positives=5)  # fmt: skip
    assert sorted(dataset.feature_names) == ["genre:answers", "genre:email", "genre:newsgroup", "genre:reviews",
                                             "genre:weblog"]  # fmt: skip
    assert dataset.extra["skipped_documents"] == {}
    for group, _, name in labelled(dataset):
        assert group.startswith("en_ewt-ud-dev:") and name == "genre:" + group.split(":", 1)[1].split("-")[0]
    assert sorted(n["positive"] for n in dataset.counts().values()) == [30] * 5


def test_cli_build(tmp_path, ewt_like, monkeypatch, capsys):
    from needle.cli import main

    out = tmp_path / "ds"
    monkeypatch.setattr("sys.argv", ["needle", "dataset", "build", "genre", "--out", str(out), "--source",
                                     str(ewt_like), "--context-length", "12", "--param", "min_positives=1",
                                     "--param", "min_tokens=1"])  # fmt: skip
    try:
        main()
    except SystemExit as exited:
        assert exited.code == 0, capsys.readouterr().err
    dataset = load_dataset(out)
    assert dataset.builder["name"] == "genre" and dataset.n_sequences == 6
