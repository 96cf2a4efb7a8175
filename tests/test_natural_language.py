"""The natural-language builder and the window machinery it shares with genre."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from needle.datasets.format import AGGREGATIONS, load_dataset
from needle.datasets.natural_language import build_natural_language, language_feature, language_sources
from needle.datasets.windows import random_window_bounds
from needle.errors import InputError

# Each sentence is five MiniLM tokens (checked in `five_token_sentences`): with context_length=12
# ([CLS] + 10 + [SEP]) a window holds exactly two of them, so the tiling can be written down by hand.
SENTENCES = [
    "the cat sat down .",
    "a dog ran home .",
    "we like red apples .",
    "she reads old books .",
    "he drives fast cars .",
    "they sing loud songs .",
    "you eat hot soup .",
]


def conllu_sentence(sent_id: str | None, text: str) -> str:
    """A CoNLL-U sentence block whose words are the space-separated forms of ``text``."""
    lines = [f"# sent_id = {sent_id}"] if sent_id else []
    lines.append(f"# text = {text}")
    for i, form in enumerate(text.split(), start=1):
        upos = "PUNCT" if form == "." else "NOUN"
        lines.append(f"{i}\t{form}\t{form}\t{upos}\t_\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_")
    return "\n".join(lines) + "\n\n"


@pytest.fixture
def sources(tmp_path):
    """French: two documents (5 and 2 sentences); German: no document markup; English: plain text."""
    fr = tmp_path / "fr_toy-ud-dev.conllu"
    fr.write_text(
        "# newdoc id = d1\n"
        + "".join(conllu_sentence(f"d1-{i:04d}", SENTENCES[i - 1]) for i in range(1, 6))
        + "# newdoc id = d2\n"
        + "".join(conllu_sentence(f"d2-{i:04d}", SENTENCES[i + 4]) for i in range(1, 3)),
        encoding="utf-8",
    )
    de = tmp_path / "de_toy-ud-dev.conllu"
    de.write_text("".join(conllu_sentence(f"dev-s{i}", SENTENCES[i - 1]) for i in range(1, 5)), encoding="utf-8")
    en = tmp_path / "english.txt"
    en.write_text(f"{SENTENCES[0]}\n\n{SENTENCES[1]}\n{SENTENCES[2]}\n", encoding="utf-8")
    return [str(fr), str(de), f"en={en}"]


@pytest.fixture
def five_token_sentences(minilm_tokenizer):
    for sentence in SENTENCES:
        assert len(minilm_tokenizer.tokenize(sentence)) == 5, sentence


def build_all(sources, tokenizer, **kwargs):
    kwargs = {"context_length": 12, "min_tokens": 1, "min_positives": 1, "positive_ratio": None, **kwargs}
    return build_natural_language(sources, tokenizer, **kwargs)


def window_table(dataset):
    """(text, group, positive feature) per sequence, from the examples."""
    names = dataset.feature_names
    positive = {}
    for f, s, label in zip(dataset.examples.feature, dataset.examples.sequence, dataset.examples.label):
        if label:
            assert s not in positive, "a window is positive for one language only"
            positive[int(s)] = names[f]
    return [(dataset.texts[i], dataset.groups[i], positive[i]) for i in range(dataset.n_sequences)]


def test_tiling_by_hand(sources, minilm_tokenizer, five_token_sentences):
    dataset = build_all(sources, minilm_tokenizer)
    s = SENTENCES
    expected = [
        (f"{s[0]} {s[1]}", "fr_toy-ud-dev:d1", "is_french"),
        (f"{s[2]} {s[3]}", "fr_toy-ud-dev:d1", "is_french"),
        (s[4], "fr_toy-ud-dev:d1", "is_french"),
        (f"{s[5]} {s[6]}", "fr_toy-ud-dev:d2", "is_french"),
        # no document markup: a stream, each window its own group named by its first sentence
        (f"{s[0]} {s[1]}", "de_toy-ud-dev:dev-s1", "is_german"),
        (f"{s[2]} {s[3]}", "de_toy-ud-dev:dev-s3", "is_german"),
        (f"{s[0]} {s[1]}", "english", "is_english"),
        (s[2], "english", "is_english"),
    ]
    assert sorted(window_table(dataset)) == sorted(expected)
    assert sorted(dataset.feature_names) == ["is_english", "is_french", "is_german"]
    assert dataset.counts() == {
        "is_english": {"positive": 2, "negative": 6},
        "is_french": {"positive": 4, "negative": 4},
        "is_german": {"positive": 2, "negative": 6},
    }
    assert dataset.extra["labels"]["fr"]["windows_kept"] == 4
    assert dataset.builder["params"]["context_length"] == 12
    assert dataset.builder["params"]["sources"][-1].startswith("en=")


@pytest.mark.parametrize("which", ["minilm", "bpe"])
def test_examples_are_mean_spans_over_the_content_tokens(which, sources, minilm_tokenizer, bpe_tokenizer):
    tokenizer = minilm_tokenizer if which == "minilm" else bpe_tokenizer
    dataset = build_all(sources, tokenizer, context_length=20)
    ex = dataset.examples
    assert set(ex.aggregation.tolist()) == {AGGREGATIONS.index("mean")}
    assert (ex.skip == 0).all()
    for s, start, end in zip(ex.sequence, ex.start, ex.end):
        tokens = dataset.tokens[s]
        special = tokenizer.get_special_tokens_mask(tokens.tolist(), already_has_special_tokens=True)
        content = np.flatnonzero(np.array(special) == 0)
        assert (start, end) == (content[0], content[-1] + 1)
        assert len(tokens) <= 20
    # every window is one sequence and an example of every feature
    assert len(ex) == dataset.n_sequences * len(dataset.features)
    # windows hold consecutive sentences of one document, joined by a space, never cut
    for text in dataset.texts:
        assert any(text == " ".join(SENTENCES[i:j]) for i in range(7) for j in range(i + 1, 8))


def test_random_windows_one_per_document(tmp_path, minilm_tokenizer, five_token_sentences):
    fr = tmp_path / "fr_one-ud-dev.conllu"
    fr.write_text("# newdoc id = long\n" + "".join(conllu_sentence(f"long-{i}", t) for i, t in enumerate(SENTENCES, 1)))
    de = tmp_path / "de_one-ud-dev.conllu"
    de.write_text("# newdoc id = short\n" + conllu_sentence("short-1", SENTENCES[0]))
    starts = set()
    texts = {}
    for seed in range(6):
        dataset = build_all([fr, de], minilm_tokenizer, windows_per_document=1, seed=seed)
        table = window_table(dataset)
        assert len(table) == 2  # one window per document
        french = next(text for text, _, name in table if name == "is_french")
        # a full window: two consecutive sentences (the budget holds two), anywhere in the document
        starts.add(next(i for i in range(6) if french == f"{SENTENCES[i]} {SENTENCES[i + 1]}"))
        texts[seed] = dataset.texts
    assert len(starts) >= 3
    assert build_all([fr, de], minilm_tokenizer, windows_per_document=1, seed=0).texts == texts[0]  # deterministic


def test_random_window_bounds_by_hand():
    rng = np.random.default_rng(0)
    # starts 0..3 give full windows of two units; start 4 would be a shorter window reaching the end
    seen = set()
    for seed in range(20):
        (window,) = random_window_bounds([3, 3, 3, 3, 3], 6, 1, np.random.default_rng(seed))
        seen.add(window)
    assert seen == {(0, 2), (1, 3), (2, 4), (3, 5)}
    many = random_window_bounds([3, 3, 3, 3, 3], 6, 10, rng)
    covered = [u for begin, end in many for u in range(begin, end)]
    assert len(covered) == len(set(covered)) and all(end - begin == 2 for begin, end in many)
    # a unit longer than the budget is in no window and stops the one before it
    assert random_window_bounds([3, 9, 3], 6, 5, rng) == [(0, 1), (2, 3)]
    assert random_window_bounds([9], 6, 1, rng) == []


def test_min_tokens_and_cap(sources, minilm_tokenizer):
    dataset = build_all(sources, minilm_tokenizer, min_tokens=6)
    assert all(len(t) - 2 >= 6 for t in dataset.tokens)  # single-sentence windows (5 tokens) are gone
    assert dataset.extra["labels"]["fr"]["windows_below_min_tokens"] == 1
    capped = build_all(sources, minilm_tokenizer, max_sequences_per_language=1)
    assert sorted(n["positive"] for n in capped.counts().values()) == [1, 1, 1]
    assert capped.extra["labels"]["fr"]["windows_over_cap"] == 3


def test_language_labels():
    assert language_feature("fr") == "is_french"
    assert language_feature("el") == "is_greek"
    assert language_feature("klingon") == "is_klingon"
    with pytest.raises(InputError, match="unknown language code 'qq'"):
        language_feature("qq")
    with pytest.raises(InputError, match="lower-case"):
        language_feature("French!")


def test_bad_sources(tmp_path, sources, minilm_tokenizer):
    unknown = tmp_path / "qq_toy-ud-dev.conllu"
    unknown.write_text(conllu_sentence("s1", SENTENCES[0]))
    with pytest.raises(InputError, match="unknown language code 'qq'"):
        build_all([unknown, sources[0]], minilm_tokenizer)
    anonymous = tmp_path / "corpus.conllu"
    anonymous.write_text(conllu_sentence("s1", SENTENCES[0]))
    with pytest.raises(InputError, match="LABEL=PATH"):
        build_all([anonymous, sources[0]], minilm_tokenizer)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(InputError, match="empty source"):
        build_all([f"nl={empty}", sources[0]], minilm_tokenizer)
    with pytest.raises(InputError, match="no such file"):
        build_all([str(tmp_path / "missing.conllu")], minilm_tokenizer)
    with pytest.raises(InputError, match="at least two labels"):
        build_all([sources[0]], minilm_tokenizer)
    with pytest.raises(InputError, match="no sources"):
        build_all([], minilm_tokenizer)
    with pytest.raises(InputError, match="context_length"):
        build_all(sources, minilm_tokenizer, context_length=3)
    with pytest.raises(InputError, match="windows_per_document"):
        build_all(sources, minilm_tokenizer, windows_per_document=0)


def test_mapping_sources(tmp_path, sources, minilm_tokenizer):
    text = tmp_path / "corpus.txt"
    text.write_text(f"{SENTENCES[3]}\n{SENTENCES[4]}\n")
    dataset = build_all({"sv": [text], "fr": sources[0]}, minilm_tokenizer)
    assert sorted(dataset.feature_names) == ["is_french", "is_swedish"]


def test_default_recipe_location(tmp_path, monkeypatch, minilm_tokenizer):
    monkeypatch.setenv("NEEDLE_SHARED_DATA", str(tmp_path))
    with pytest.raises(InputError, match="NEEDLE_SHARED_DATA"):
        build_natural_language(None, minilm_tokenizer)


@pytest.mark.skipif(not (SHARED_DATA / "ud").is_dir(), reason="the shared UD treebanks are not here")
def test_default_recipe_names_ten_treebanks(monkeypatch):
    monkeypatch.setenv("NEEDLE_SHARED_DATA", str(SHARED_DATA))
    pairs = language_sources(None)
    assert sorted({label for label, _ in pairs}) == sorted(["en", "fr", "de", "es", "it", "pt", "nl", "sv", "el"])
    assert len(pairs) == 18 and all(path.is_file() for _, path in pairs)


def run_main(monkeypatch, capsys, *args):
    from needle.cli import main

    monkeypatch.setattr("sys.argv", ["needle", *args])
    try:
        main()
    except SystemExit as exited:
        return exited.code, capsys.readouterr()
    return 0, capsys.readouterr()


def test_cli_build(tmp_path, sources, monkeypatch, capsys):
    out = tmp_path / "ds"
    args = ["dataset", "build", "natural-language", "--out", str(out), "--context-length", "12",
            "--param", "min_tokens=1", "--param", "min_positives=1"]  # fmt: skip
    for source in sources:
        args += ["--source", source]
    code, captured = run_main(monkeypatch, capsys, *args)
    assert code == 0, captured.err
    dataset = load_dataset(out)
    assert dataset.builder["name"] == "natural-language" and dataset.n_sequences == 8
    code, captured = run_main(monkeypatch, capsys, "dataset", "build", "natural-language", "--out",
                              str(tmp_path / "bad"), "--source", str(tmp_path / "nothing.conllu"))  # fmt: skip
    assert code == 2 and "no such file" in captured.err and not (tmp_path / "bad").exists()
