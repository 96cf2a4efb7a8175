"""The latex collection: the math state machine, containment without delimiters, complement negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from needle.datasets.alignment import EncodedText, encode
from needle.datasets.format import load_dataset
from needle.datasets.latex import (
    COMPLEMENTS,
    FEATURES,
    LatexError,
    _sample,
    build_latex,
    label_latex,
    label_tokens,
)
from needle.datasets.registry import build_collection
from needle.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "latex"

DOCUMENT = r"""\title[Short]{On Sparse Neurons}
\author{Ada Lovelace}
\begin{abstract}
We study $x_{ij}^2$ here. % a comment with $y$
\end{abstract}
Inline \(a+b\) and display \[ \frac{1+x}{y_k} \] and $\frac12$.
\begin{equation*}
E = mc^{2}
\end{equation*}
See \citep[p.~3]{knuth84} and Eq.~\eqref{eq:e}. Cost \$5. $a$$b$ and $$ z^\alpha_i $$
"""


def spans(feature: str, text: str = DOCUMENT) -> list[str]:
    return label_latex(text).spans(text, feature)


# --------------------------------------------------------------------------- characters
def test_character_labels_of_a_hand_written_document():
    assert spans("is_title") == ["On Sparse Neurons"]
    assert spans("is_author") == ["Ada Lovelace"]
    assert spans("is_abstract") == ["\nWe study $x_{ij}^2$ here. ", "\n"]  # the comment is cut out
    assert spans("is_reference") == ["knuth84", "eq:e"]
    assert spans("is_inline_math") == ["x_{ij}^2", "a+b", "\\frac12", "a", "b"]
    assert spans("is_display_math") == [" \\frac{1+x}{y_k} ", "\nE = mc^{2}\n", " z^\\alpha_i "]
    assert spans("is_superscript") == ["2", "2", "\\alpha"]
    assert spans("is_subscript") == ["ij", "k", "i"]
    assert spans("is_numerator") == ["1+x", "1"]
    assert spans("is_denominator") == ["y_k", "2"]
    assert spans("is_frac") == ["1+x", "y_k", "12"]


def test_math_is_inline_or_display_and_escaped_dollars_are_text():
    labels = label_latex(DOCUMENT)
    column = {name: labels.positive[:, i] for i, name in enumerate(FEATURES)}
    assert np.array_equal(column["is_math"], column["is_inline_math"] | column["is_display_math"])
    assert not (column["is_inline_math"] & column["is_display_math"]).any()
    cost = DOCUMENT.index(r"\$5")
    assert not column["is_math"][cost : cost + 3].any()


def test_delimiters_are_not_inside():
    text = r"$x_{ab}$ and \frac{p}{q} in $\frac{p}{q}$"
    labels = label_latex(text)
    sub = labels.positive[:, list(FEATURES).index("is_subscript")]
    math = labels.positive[:, list(FEATURES).index("is_math")]
    assert [text[i] for i in np.flatnonzero(sub)] == ["a", "b"]
    for delimiter in (0, 7, text.index(r"$\frac")):  # the dollars
        assert not math[delimiter]
    frac = text.index(r"\frac", 20)
    assert not labels.positive[frac : frac + 5].any(axis=0)[list(FEATURES).index("is_frac")]
    # \frac outside math is not a fraction.
    assert spans("is_frac", text) == ["p", "q"]


def test_nested_scripts_and_braces():
    text = r"$e^{x_{1}^{2} + \{y\}}$"
    assert spans("is_superscript", text) == [r"x_{1}^{2} + \{y\}"]
    assert spans("is_subscript", text) == ["1"]


def test_comments_are_not_parsed():
    text = "a % $ unclosed math in a comment\n$b$\n"
    labels = label_latex(text)
    assert spans("is_math", text) == ["b"]
    assert labels.comment[text.index("%") : text.index("\n")].all()


def test_unterminated_math_and_unbalanced_braces_are_errors_with_lines():
    with pytest.raises(LatexError, match="line 2: math opened here is never closed"):
        label_latex("fine\n$x + y\n")
    with pytest.raises(LatexError, match="line 1: '\\{' is never closed"):
        label_latex(r"\title{Oops" + "\n")
    with pytest.raises(LatexError, match="line 3: '}' closes no open brace"):
        label_latex("a\nb\n}\n")
    with pytest.raises(LatexError, match="abstract"):
        label_latex("\\begin{abstract}\nno end\n")


# --------------------------------------------------------------------------- model tokens
def token_strings(tokenizer, text, feature):
    encoded = encode(tokenizer, text)
    positive, negative = label_tokens(encoded, text, 0, label_latex(text))
    j = list(FEATURES).index(feature)
    pieces = tokenizer.convert_ids_to_tokens(encoded.ids)
    return [pieces[i] for i in np.flatnonzero(positive[:, j])], [pieces[i] for i in np.flatnonzero(negative[:, j])]


def test_token_containment_excludes_delimiters(minilm_tokenizer):
    positive, negative = token_strings(minilm_tokenizer, r"so $x_{ij}$ ok", "is_subscript")
    assert positive == ["i", "##j"]
    assert negative == ["so", "$", "x", "_", "{", "}", "$", "ok"]
    positive, negative = token_strings(minilm_tokenizer, r"so $x_{ij}$ ok", "is_math")
    assert positive == ["x", "_", "{", "i", "##j", "}"]
    assert negative == ["so", "$", "$", "ok"]


def test_a_token_straddling_the_boundary_is_no_example():
    text = "${x}$"
    labels = label_latex(text)
    # Hand-made tokens: "${" straddles the math boundary, "x" is inside, "}$" straddles again.
    encoded = EncodedText(
        ids=np.array([1, 2, 3], np.int32), offsets=np.array([[0, 2], [2, 3], [3, 5]]), special=np.zeros(3, bool)
    )
    positive, negative = label_tokens(encoded, text, 0, labels)
    j = list(FEATURES).index("is_math")
    assert positive[:, j].tolist() == [False, True, False]
    assert negative[:, j].tolist() == [False, False, False]


def test_comment_tokens_are_never_examples(minilm_tokenizer):
    text = "word % hidden $z$\n$y$"
    encoded = encode(minilm_tokenizer, text)
    positive, negative = label_tokens(encoded, text, 0, label_latex(text))
    pieces = minilm_tokenizer.convert_ids_to_tokens(encoded.ids)
    used = [pieces[i] for i in np.flatnonzero((positive | negative).any(axis=1))]
    assert used == ["word", "$", "y", "$"]


# --------------------------------------------------------------------------- negatives
def test_half_the_negatives_come_from_the_complement():
    rng = np.random.default_rng(0)
    positive = np.zeros(100, bool)
    positive[:10] = True
    complement = np.zeros(100, bool)
    complement[10:40] = True
    negative = ~positive
    pos, neg, n_complement = _sample(positive, negative, complement, 0.2, None, rng)
    assert pos.tolist() == list(range(10))
    assert len(neg) == 40 and n_complement == 20
    assert np.isin(neg, np.arange(10, 40)).sum() >= 20  # the random half may also land in the complement
    assert not np.isin(neg, pos).any()
    # A small complement is used whole; the rest is random.
    complement[:] = False
    complement[50:55] = True
    _, neg, n_complement = _sample(positive, negative, complement, 0.2, None, rng)
    assert n_complement == 5 and np.isin(np.arange(50, 55), neg).all() and len(neg) == 40


def test_numerator_negatives_include_denominators(minilm_tokenizer, tmp_path):
    body = "".join(rf"Text {i} with $\frac{{a{i} + b}}{{c{i} - d}}$ and more words here." + "\n" for i in range(30))
    (tmp_path / "fracs.tex").write_text(body)
    dataset = build_latex(tmp_path, minilm_tokenizer, positive_ratio=0.2, min_positives=1)
    assert COMPLEMENTS["is_numerator"] == "is_denominator"
    n_from_complement = dataset.extra["complement_negatives"]["is_numerator"]
    # Recompute from the labels: every denominator token is a candidate negative of is_numerator.
    ex = dataset.feature_examples("is_numerator")
    j_num, j_den = list(FEATURES).index("is_numerator"), list(FEATURES).index("is_denominator")
    n_denominators = kept_denominators = 0
    for s, text in enumerate(dataset.texts):
        encoded = encode(minilm_tokenizer, text)
        assert encoded.ids.tolist() == dataset.tokens[s].tolist()
        positive, negative = label_tokens(encoded, text, 0, label_latex(text))
        denominator = positive[:, j_den] & negative[:, j_num]
        n_denominators += int(denominator.sum())
        kept_denominators += int(denominator[ex.start[(ex.sequence == s) & (ex.label == 0)]].sum())
    n_negative = dataset.counts()["is_numerator"]["negative"]
    assert n_denominators > 0
    assert n_from_complement == min(n_denominators, n_negative // 2)
    assert kept_denominators >= n_from_complement


# --------------------------------------------------------------------------- the builder
def test_build_from_the_fixtures(minilm_tokenizer, tmp_path):
    dataset = build_latex(FIXTURES, minilm_tokenizer)
    assert dataset.feature_names == list(FEATURES)
    assert set(dataset.groups) == {"dynamics.tex", "sparse_probing.tex"}
    assert dataset.extra["files"]["skipped"] == {}
    for name, count in dataset.counts().items():
        assert count["positive"] >= 5, name
    dataset.save(tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded.builder["params"]["positive_ratio"] == 0.2
    assert loaded.builder["positive_ratio"] == 0.2


def test_positive_tokens_of_the_title_are_the_title(minilm_tokenizer):
    dataset = build_latex(FIXTURES / "dynamics.tex", minilm_tokenizer)
    ex = dataset.feature_examples("is_title")
    tokens = [minilm_tokenizer.convert_ids_to_tokens(int(dataset.tokens[s][p]))
              for s, p in zip(ex.sequence[ex.label == 1], ex.start[ex.label == 1])]
    assert minilm_tokenizer.convert_tokens_to_string(tokens) == "learning dynamical systems in context"


def test_bad_files_are_skipped_and_listed(minilm_tokenizer, tmp_path):
    (tmp_path / "good.tex").write_text((FIXTURES / "dynamics.tex").read_text())
    (tmp_path / "bad.tex").write_text("$x + y\n")
    dataset = build_latex(tmp_path, minilm_tokenizer)
    assert list(dataset.extra["files"]["skipped"]) == ["bad.tex"]
    assert "never closed" in dataset.extra["files"]["skipped"]["bad.tex"]


def test_errors_on_bad_sources(minilm_tokenizer, tmp_path):
    with pytest.raises(InputError, match="no .tex files"):
        build_latex(tmp_path, minilm_tokenizer)
    with pytest.raises(InputError, match="does not exist"):
        build_latex(tmp_path / "missing", minilm_tokenizer)
    with pytest.raises(InputError, match="needs sources"):
        build_collection("latex", None, minilm_tokenizer)
    (tmp_path / "bad.tex").write_text("$x\n")
    with pytest.raises(InputError, match="none of the 1 .tex files"):
        build_latex(tmp_path, minilm_tokenizer)


def test_bpe_tokenizer_works_too(bpe_tokenizer):
    dataset = build_latex(FIXTURES, bpe_tokenizer, context_length=256)
    assert "is_math" in dataset.feature_names
    assert all(len(t) <= 256 for t in dataset.tokens)
