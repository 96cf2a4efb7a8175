"""The UD builder: CoNLL-U reading, text rebuilding, packing and word → token labels."""

from __future__ import annotations

import gzip
import re
import shutil
import unicodedata

import numpy as np
import pytest

from conftest import SHARED_DATA
from needle.datasets.alignment import encode, tokens_in_span
from needle.datasets.format import load_dataset
from needle.datasets.readers.conllu import read_conllu
from needle.datasets.ud import PAPER_DEPRELS, PAPER_MORPH_FEATURES, build_ud
from needle.errors import InputError
from ud_fixtures import ud_fixture_dir

FIXTURES = ud_fixture_dir()
TRICKY = FIXTURES / "tricky.conllu"
SENT_IDS = FIXTURES / "sent_ids.conllu"
EWT_DEV = SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu.gz"


@pytest.fixture(params=["minilm", "bpe"])
def tokenizer(request, minilm_tokenizer, bpe_tokenizer):
    return minilm_tokenizer if request.param == "minilm" else bpe_tokenizer


def build_all(tokenizer, path=TRICKY, **kwargs):
    """Keep every example (no subsampling, nothing dropped) so labels can be compared exactly."""
    kwargs.setdefault("min_positives", 1)
    kwargs.setdefault("positive_ratio", None)
    return build_ud(path, tokenizer, **kwargs)


def example_sets(dataset, name):
    ex = dataset.feature_examples(name)
    pairs = list(zip(ex.sequence.tolist(), ex.start.tolist()))
    positives = {p for p, label in zip(pairs, ex.label) if label == 1}
    negatives = {p for p, label in zip(pairs, ex.label) if label == 0}
    return positives, negatives


def reference_words(dataset, tokenizer, path, piece):
    """Every word of ``path`` with its (sequence, token) positions, found independently.

    Relies on each document fitting one sequence (sentences joined by a space)
    and uses the reference ``tokens_in_span`` instead of the builder's search.
    """
    words = []
    for doc in read_conllu(path):
        sequence = [i for i, g in enumerate(dataset.groups) if g == f"{path.name.split('.')[0]}:{doc.id}"]
        assert len(sequence) == 1, "the fixture's documents each fit one sequence"
        seq = sequence[0]
        text = dataset.texts[seq]
        assert text == " ".join(s.text for s in doc.sentences)
        encoded = encode(tokenizer, text)
        offset = 0
        for sentence in doc.sentences:
            for w in range(sentence.n_words):
                begin, end = sentence.begins[w] + offset, sentence.ends[w] + offset
                tokens = tokens_in_span(encoded, begin, end, piece)
                words.append(
                    {
                        "positions": {(seq, int(t)) for t in tokens},
                        "span": (begin, end),
                        "text": text,
                        "encoded": encoded,
                        "upos": sentence.upos[w],
                        "deprel": sentence.deprels[w],
                        "feats": set(sentence.feats[w]),
                    }
                )
            offset += len(sentence.text) + 1
    return words


def normalise(text, tokenizer):
    """What a token's text looks like to the tokenizer: MiniLM lowercases and strips accents."""
    if tokenizer.backend_tokenizer.normalizer is None:
        return text
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


# --------------------------------------------------------------------------- reading


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("piece", ["first", "last", "all"])
def test_labels_equal_independent_reference(tokenizer, piece):
    dataset = build_all(tokenizer, piece=piece)
    words = reference_words(dataset, tokenizer, TRICKY, piece)
    labelled = set().union(*(w["positions"] for w in words))
    for name in dataset.feature_names:
        kind, value = name.split(":", 1)
        if kind == "pos":
            has = [w["upos"] == value for w in words]
            candidates = labelled
        elif kind == "dep":
            has = [w["deprel"] == value or (w["deprel"] not in PAPER_DEPRELS and w["deprel"].split(":")[0] == value) for w in words]
            candidates = labelled
        else:
            has = [value in w["feats"] for w in words]
            word_class = {w["upos"] for w, h in zip(words, has) if h}
            candidates = set().union(*(w["positions"] for w in words if w["upos"] in word_class))
        positives = set().union(*(w["positions"] for w, h in zip(words, has) if h))
        got_pos, got_neg = example_sets(dataset, name)
        assert got_pos == positives, name
        assert got_neg == candidates - positives, name
        assert not got_pos & got_neg


def test_every_labelled_token_covers_its_word(tokenizer):
    dataset = build_all(tokenizer, piece="all")
    for word in reference_words(dataset, tokenizer, TRICKY, "all"):
        begin, end = word["span"]
        encoded, text = word["encoded"], word["text"]
        assert word["positions"], f"no token for {text[begin:end]!r}"
        for _, t in word["positions"]:
            t_begin, t_end = encoded.offsets[t]
            assert t_begin < end and t_end > begin
            piece = tokenizer.convert_ids_to_tokens(int(encoded.ids[t]))
            if tokenizer.backend_tokenizer.normalizer is not None:  # WordPiece: the piece spells its characters
                assert piece.removeprefix("##") in (normalise(text[t_begin:t_end], tokenizer), "[UNK]")
            else:  # byte-level: the piece's bytes are the characters' (or part of one multi-byte character)
                decoded = tokenizer.backend_tokenizer.decoder.decode([piece]).strip()
                assert decoded == text[t_begin:t_end] or decoded == "\ufffd"


def test_pieces_first_last_all(tokenizer):
    datasets = {piece: build_all(tokenizer, piece=piece, collections=["upos"]) for piece in ("first", "last", "all")}
    text = datasets["first"].texts[2]
    begin = text.index("antidisestablishmentarianism")
    encoded = encode(tokenizer, text)
    pieces = tokens_in_span(encoded, begin, begin + len("antidisestablishmentarianism"), "all")
    assert len(pieces) > 2
    first, last, everything = (example_sets(datasets[p], "pos:NOUN")[0] for p in ("first", "last", "all"))
    assert (2, pieces[0]) in first and (2, pieces[-1]) not in first
    assert (2, pieces[-1]) in last and (2, pieces[0]) not in last
    assert {(2, int(p)) for p in pieces} <= everything


def test_multiword_tokens_label_the_right_tokens(minilm_tokenizer, bpe_tokenizer):
    # MiniLM: "don't" → don ' t, so do (AUX) and n't (PART) both start on "don".
    dataset = build_all(minilm_tokenizer)
    encoded = encode(minilm_tokenizer, dataset.texts[0])
    don = int(np.flatnonzero(encoded.ids == minilm_tokenizer.convert_tokens_to_ids("don"))[0])
    for name in ("pos:AUX", "pos:PART"):
        positives, negatives = example_sets(dataset, name)
        assert (0, don) in positives and (0, don) not in negatives
    # Byte-level BPE: "do" → Ġdo, "n't" → n 't.
    dataset = build_all(bpe_tokenizer)
    encoded = encode(bpe_tokenizer, dataset.texts[0])
    pieces = bpe_tokenizer.convert_ids_to_tokens(encoded.ids.tolist())
    do, n = pieces.index("Ġdo"), pieces.index("Ġdo") + 1
    assert pieces[n] == "n"
    assert (0, do) in example_sets(dataset, "pos:AUX")[0] and (0, do) in example_sets(dataset, "pos:PART")[1]
    assert (0, n) in example_sets(dataset, "pos:PART")[0] and (0, n) in example_sets(dataset, "pos:AUX")[1]
    # French "du" = de + le: both words on the token(s) of "du".
    for tokenizer in (minilm_tokenizer, bpe_tokenizer):
        dataset = build_all(tokenizer)
        text = dataset.texts[1]
        begin = text.index(" du ") + 1
        du = tokens_in_span(encode(tokenizer, text), begin, begin + 2, "first")
        assert (1, int(du[0])) in example_sets(dataset, "pos:ADP")[0]
        assert (1, int(du[0])) in example_sets(dataset, "pos:DET")[0]


def test_empty_node_gets_no_label(tokenizer):
    dataset = build_all(tokenizer)
    # Tense=Past words: drank, said, left, was, reviewed — and not the empty node 5.1 (a copy of "drank").
    positives, _ = example_sets(dataset, "morph:Tense=Past")
    assert len(positives) == 5
    assert sum(len(example_sets(dataset, n)[0]) for n in dataset.feature_names if n.startswith("pos:")) == 49  # one per word


def test_morph_negatives_from_the_same_word_class(tokenizer):
    dataset = build_all(tokenizer)
    classes = dataset.extra["morph_word_classes"]
    assert classes["morph:Tense=Past"] == ["AUX", "VERB"]
    assert classes["morph:PronType=Art"] == ["DET"]
    words = reference_words(dataset, tokenizer, TRICKY, "first")
    for name, word_class in classes.items():
        if name not in dataset.feature_names:
            continue
        _, negatives = example_sets(dataset, name)
        for position in negatives:
            carried = [w for w in words if position in w["positions"]]
            assert any(w["upos"] in word_class for w in carried), (name, position)
            assert not any(name.removeprefix("morph:") in w["feats"] for w in carried)


def test_deprel_subtypes(minilm_tokenizer):
    dataset = build_all(minilm_tokenizer, collections=["deprel"])
    assert "dep:obl:mod" not in dataset.feature_names
    text = dataset.texts[1]
    cafe = int(tokens_in_span(encode(minilm_tokenizer, text), text.index("café"), text.index("café") + 4)[0])
    assert (1, cafe) in example_sets(dataset, "dep:obl")[0]  # obl:mod folds into obl
    text = dataset.texts[2]
    resume = int(tokens_in_span(encode(minilm_tokenizer, text), text.index("résumé"), text.index("résumé") + 6)[0])
    assert (2, resume) in example_sets(dataset, "dep:nsubj:pass")[0]
    assert (2, resume) in example_sets(dataset, "dep:nsubj")[1]  # a paper subtype is its own class
    everything = build_all(minilm_tokenizer, collections=["deprel"], deprels="all")
    assert (1, cafe) in example_sets(everything, "dep:obl:mod")[0]
    assert (1, cafe) in example_sets(everything, "dep:obl")[1]


def test_defaults_are_the_papers_lists(minilm_tokenizer):
    dataset = build_all(minilm_tokenizer)
    assert len(PAPER_DEPRELS) == 29 and len(PAPER_MORPH_FEATURES) == 20
    declared = set(dataset.feature_names) | set(dataset.extra.get("dropped_features", {}))
    assert {f"dep:{d}" for d in PAPER_DEPRELS} <= declared
    assert {f"morph:{m}" for m in PAPER_MORPH_FEATURES} <= declared
    assert dataset.builder["params"]["piece"] == "first"
    assert dataset.builder["params"]["sources"] == [str(TRICKY)]


# --------------------------------------------------------------------------- packing


def write_generated(path, n_docs=3, n_sentences=6, long_sentence_in=None):
    """Documents of numbered sentences ("Doc1 sentence 4 says hello."), optionally one very long sentence."""
    lines = []
    for d in range(n_docs):
        lines.append(f"# newdoc id = d{d}")
        for s in range(n_sentences):
            words = [(f"Doc{d}", "PROPN", "nsubj"), ("sentence", "NOUN", "nsubj"), (str(s), "NUM", "nummod"),
                     ("says", "VERB", "root"), ("hello", "INTJ", "obj")]  # fmt: skip
            if long_sentence_in == (d, s):
                words += [("very", "ADV", "advmod")] * 40
            words.append((".", "PUNCT", "punct"))
            lines.append(f"# sent_id = d{d}-s{s}")
            for i, (form, upos, deprel) in enumerate(words, start=1):
                head = 0 if deprel == "root" else 4
                misc = "SpaceAfter=No" if i == len(words) - 1 else "_"
                lines.append(f"{i}\t{form}\t{form}\t{upos}\t_\t_\t{head}\t{deprel}\t_\t{misc}")
            lines.append("")
    path.write_text("\n".join(lines))
    return path


def test_packing_respects_context_and_documents(tmp_path, tokenizer):
    path = write_generated(tmp_path / "gen.conllu", long_sentence_in=(1, 2))
    context = 2 * len(encode(tokenizer, "Doc0 sentence 0 says hello.")) + 2  # two sentences fit, not three
    dataset = build_all(tokenizer, path, context_length=context, collections=["upos"])
    assert max(len(t) for t in dataset.tokens) <= context
    assert dataset.extra["dropped_sentences"]["count"] == 1
    assert dataset.extra["dropped_sentences"]["sent_ids"] == ["d1-s2"]
    seen = []
    for text, group in zip(dataset.texts, dataset.groups):
        sentences = re.findall(r"Doc(\d+) sentence (\d+) says hello\.", text)
        assert " ".join(f"Doc{d} sentence {s} says hello." for d, s in sentences) == text
        assert {f"gen:d{d}" for d, _ in sentences} == {group}, "one document per sequence"
        seen += [(group, int(s)) for _, s in sentences]
    expected = [(f"gen:d{d}", s) for d in range(3) for s in range(6) if (d, s) != (1, 2)]
    assert seen == expected
    assert len(set(dataset.groups)) == 3
    assert any(text.count("says hello") > 1 for text in dataset.texts), "short sentences are packed together"


# --------------------------------------------------------------------------- bad input


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_LINE = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (f"# sent_id = a\n# text = Hi\n{GOOD_LINE.replace(chr(9), ' ')}\n", 3, "tab-separated"),
        (f"# text = Hi\n\n# text = Hi there\n{GOOD_LINE}\nx\tthere\tthere\tADV\t_\t_\t1\tadvmod\t_\t_\n", 5, "invalid ID"),
        (f"{GOOD_LINE}\n2\tthere\tthere\tADV\t_\tTense\t1\tadvmod\t_\t_\n", 2, "FEATS"),
        (f"{GOOD_LINE}\n2\tthere\tthere\tADV\t_\t_\tzz\tadvmod\t_\t_\n", 2, "head"),
        (f"{GOOD_LINE}\n3\tthere\tthere\tADV\t_\t_\t1\tadvmod\t_\t_\n", 2, "expected"),
        (f"{GOOD_LINE}\n2-3\tdunno\t_\t_\t_\t_\t_\t_\t_\t_\n2\tdu\tdu\tADV\t_\t_\t1\tadvmod\t_\t_\n", 2, "multiword"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, minilm_tokenizer, body, line, words):
    path = write(tmp_path, "bad.conllu", body)
    with pytest.raises(InputError, match=rf"bad\.conllu, line {line}: .*{words}"):
        build_ud(path, minilm_tokenizer)


def test_malformed_fixture(minilm_tokenizer):
    with pytest.raises(InputError, match=r"bad_columns\.conllu, line 10: expected 10 tab-separated columns"):
        build_ud(FIXTURES / "bad_columns.conllu", minilm_tokenizer)


def test_missing_and_empty_files(tmp_path, minilm_tokenizer):
    with pytest.raises(InputError, match=r"nope\.conllu: no such file"):
        build_ud(tmp_path / "nope.conllu", minilm_tokenizer)
    with pytest.raises(InputError, match=r"empty\.conllu: no sentences"):
        build_ud(write(tmp_path, "empty.conllu", ""), minilm_tokenizer)
    with pytest.raises(InputError, match=r"comments\.conllu: no sentences"):
        build_ud(write(tmp_path, "comments.conllu", "# global.columns = ID FORM\n\n"), minilm_tokenizer)
    with pytest.raises(InputError, match="no sources"):
        build_ud([], minilm_tokenizer)


def test_bad_parameters(minilm_tokenizer):
    cases = [
        ({"deprels": ["nsubjj"]}, "nsubjj"),
        ({"morph_features": ["Tense=Future"]}, "Tense=Future"),
        ({"morph_features": ["Tense_Past"]}, "Feature=Value"),
        ({"deprels": "most"}, "deprels"),
        ({"collections": ["pos"]}, "collections"),
        ({"piece": "middle"}, "piece"),
        ({"context_length": 2}, "context_length"),
        ({"min_positives": 10**6}, "empty collection"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            build_ud(TRICKY, minilm_tokenizer, **kwargs)


def test_failed_build_writes_nothing(tmp_path, minilm_tokenizer):
    out = tmp_path / "dataset"
    with pytest.raises(InputError):
        build_ud(FIXTURES / "bad_columns.conllu", minilm_tokenizer).save(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- reproducibility


def test_gzip_equals_plain_and_seed_determines_the_dataset(tmp_path, minilm_tokenizer):
    gz = tmp_path / "tricky.conllu.gz"
    with open(TRICKY, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    kwargs = {"min_positives": 1, "positive_ratio": 0.2}
    plain = build_ud(TRICKY, minilm_tokenizer, seed=3, **kwargs)
    assert build_ud(gz, minilm_tokenizer, seed=3, **kwargs).content_hash() == plain.content_hash()
    assert build_ud(TRICKY, minilm_tokenizer, seed=3, **kwargs).content_hash() == plain.content_hash()
    assert build_ud(TRICKY, minilm_tokenizer, seed=4, **kwargs).content_hash() != plain.content_hash()


def test_several_sources_and_round_trip(tmp_path, bpe_tokenizer):
    dataset = build_ud([TRICKY, SENT_IDS], bpe_tokenizer, min_positives=1)
    assert sorted(set(dataset.groups)) == [
        "sent_ids:email-enron_x", "sent_ids:weblog-blog.example.com_post-one",
        "tricky:doc-a", "tricky:doc-b", "tricky:doc-c",
    ]  # fmt: skip
    path = dataset.save(tmp_path / "ud")
    loaded = load_dataset(path)
    assert loaded.content_hash() == dataset.content_hash()
    assert loaded.texts == dataset.texts
    assert loaded.builder == dataset.builder
    assert loaded.extra == dataset.extra


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def ewt_dev(minilm_tokenizer):
    if not EWT_DEV.is_file():
        pytest.skip(f"the English Web Treebank is not at {EWT_DEV} (shared data missing)")
    return build_ud(EWT_DEV, minilm_tokenizer)


def test_ewt_dev_smoke(ewt_dev, minilm_tokenizer):
    names = ewt_dev.feature_names
    assert sum(n.startswith("pos:") for n in names) >= 15
    assert sum(n.startswith("dep:") for n in names) >= 20
    assert sum(n.startswith("morph:") for n in names) >= 10
    assert ewt_dev.extra["text_mismatches"]["count"] == 0
    assert len(set(ewt_dev.groups)) == ewt_dev.extra["documents"]
    assert max(len(t) for t in ewt_dev.tokens) <= 512
    assert ewt_dev.extra["morph_word_classes"]["morph:Tense=Past"] == ["AUX", "VERB"]
    punct = ewt_dev.feature_examples("pos:PUNCT")
    for seq, start in zip(punct.sequence[punct.label == 1], punct.start[punct.label == 1]):
        piece = minilm_tokenizer.convert_ids_to_tokens(int(ewt_dev.tokens[seq][start]))
        assert all(unicodedata.category(c)[0] in "PS" for c in piece), piece
    for name in names:
        ex = ewt_dev.feature_examples(name)
        keys = ex.sequence.astype(np.int64) * 1000 + ex.start
        assert not set(keys[ex.label == 1]) & set(keys[ex.label == 0]), name
