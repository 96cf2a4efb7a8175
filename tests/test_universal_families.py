"""Context, position and syntax tests for neuron families: each score against an independent recomputation
from the captured activations (random-weight models: plumbing, not findings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from model_zoo import build_model
from needle.errors import InputError
from needle.models import adapt
from needle.toy.corpus import TextUnit
from needle.universal.explain import explain_neurons, family_of, variance_reduction
from needle.universal.position import PositionInformation
from needle.universal.syntax import ud_variance_reduction
from needle.universal.tokens import pack_units


def _binned_mi_bits(values, positions, edges):
    bins = np.searchsorted(edges, values, side="right")
    return mutual_info_score(bins, positions) / np.log(2)


def test_position_information_is_binned_mutual_information_and_streams():
    rng = np.random.default_rng(0)
    n, length = 6000, 16
    pos = rng.integers(0, length, n)
    values = np.stack([np.sin(pos / 3.0) + 0.1 * rng.standard_normal(n),  # a position neuron
                       rng.standard_normal(n)], 1)  # not one
    info = PositionInformation(2, length, n_bins=8)
    for i in range(0, n, 1000):
        info.update(torch.from_numpy(values[i:i + 1000]), torch.from_numpy(pos[i:i + 1000]))
    result = info.result()
    edges = np.quantile(values[:1000], np.linspace(0, 1, 9)[1:-1], axis=0).T
    for j in range(2):
        plug_in = _binned_mi_bits(values[:, j].astype(np.float32), pos, edges[j].astype(np.float32))
        bias = 7 * (length - 1) / (2 * n * np.log(2))
        assert result["mutual_information"][j] == pytest.approx(max(plug_in - bias, 0), abs=1e-9)
    assert result["score"][0] > 0.5 and result["score"][1] < 0.01
    assert result["entropy"][0] == pytest.approx(3.0, abs=0.05)  # 8 equal-frequency bins
    with pytest.raises(InputError, match="positions"):
        info.update(torch.zeros(2, 2), torch.tensor([0, length]))


def test_pack_units_keeps_sources_apart(bpe_tokenizer):
    units = [TextUnit("en", "a", "the cat sat on the mat. " * 20), TextUnit("python", "b", "def f(x): return x\n" * 20),
             TextUnit("en", "c", "a dog ran. " * 20)]
    sequences, sources = pack_units(units, bpe_tokenizer, 16)
    assert sources == sorted(sources) and set(sources) == {"en", "python"}
    for seq, source in zip(sequences, sources):
        text = bpe_tokenizer.decode(seq[1:])
        assert ("def" in text or "return" in text) == (source == "python")
    with pytest.raises(InputError, match="no text units"):
        pack_units([], bpe_tokenizer, 16)


@pytest.fixture(scope="module")
def tiny(bpe_tokenizer):
    return adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=2, n_layers=2), bpe_tokenizer)


def test_context_and_position_scores_match_the_captured_activations(tiny, bpe_tokenizer):
    units = [TextUnit("en", "a", "the cat sat on the mat and the dog ran off. " * 30),
             TextUnit("python", "b", "def f(x):\n    return x + 1\n" * 40)]
    sequences, sources = pack_units(units, bpe_tokenizer, 24)
    table, names, scores = explain_neurons(tiny, sequences, sources=sources, n_unigrams=5, top=2,
                                           return_scores=True)
    ids = torch.tensor(np.stack(sequences))
    acts = tiny.capture(ids, torch.ones_like(ids), [1], site="post")[1][:, 1:].reshape(-1, tiny.n_neurons).numpy()
    is_python = np.repeat(np.array(sources) == "python", ids.shape[1] - 1)
    expected = variance_reduction(acts, is_python[:, None])[0]
    np.testing.assert_allclose(scores[1][names.index("context:python")], expected, atol=1e-6)
    np.testing.assert_allclose(scores[1][names.index("context:en")], expected, atol=1e-6)  # the complement
    info = PositionInformation(tiny.n_neurons, ids.shape[1])
    info.update(torch.from_numpy(acts), torch.arange(1, ids.shape[1]).repeat(len(sequences)))
    np.testing.assert_allclose(scores[1][names.index("position")], info.result()["score"], atol=1e-6)
    assert family_of("context:python") == "context" and family_of("position") == "position"
    assert family_of("pos:NOUN") == "syntax" and family_of("morph:Number=Plur") == "syntax"
    assert set(table["family"]) <= {"unigram", "alphabet", "previous-token", "vocabulary", "context", "position"}
    with pytest.raises(InputError, match="sources"):
        explain_neurons(tiny, sequences, sources=sources[:-1])


def _conllu(path):
    lines = []
    words = [("Cats", "NOUN", "Number=Plur", "nsubj"), ("sleep", "VERB", "Tense=Pres", "root"),
             ("dogs", "NOUN", "Number=Plur", "obj"), ("cat", "NOUN", "Number=Sing", "obj"),
             ("ran", "VERB", "Tense=Past", "root")]
    rng = np.random.default_rng(1)
    for s in range(60):
        chosen = [words[i] for i in rng.permutation(len(words))[:3]]
        text = " ".join(w[0] for w in chosen) + "."
        lines += [f"# sent_id = s{s}", f"# text = {text}"]
        for i, (form, upos, feats, dep) in enumerate(chosen, 1):
            head = 0 if dep == "root" else 1
            misc = "SpaceAfter=No" if i == len(chosen) else "_"
            lines.append(f"{i}\t{form}\t{form.lower()}\t{upos}\t_\t{feats}\t{head}\t{dep}\t_\t{misc}")
        lines.append(f"{len(chosen) + 1}\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ud_scores_are_variance_reduction_over_each_features_examples(tiny, bpe_tokenizer, tmp_path):
    from needle.datasets.ud import build_ud

    path = _conllu(tmp_path / "toy-ud-test.conllu")
    names, scores, counts = ud_variance_reduction(tiny, path, context_length=32, min_positives=5, batch_size=3)
    assert {"pos:NOUN", "pos:VERB", "pos:PUNCT", "morph:Number=Plur"} <= set(names)
    # Recompute from the same dataset one sequence at a time, BOS first, as the models were trained.
    dataset = build_ud(path, bpe_tokenizer, context_length=31, positive_ratio=None, max_positives=2000,
                       min_positives=5)
    assert dataset.feature_names == names
    bos = bpe_tokenizer.eos_token_id
    acts = []
    for tokens in dataset.tokens:
        ids = torch.tensor([[bos, *tokens]])
        acts.append(tiny.capture(ids, torch.ones_like(ids), [0], site="post")[0][0].numpy())
    ex = dataset.examples
    for name in ("pos:NOUN", "pos:PUNCT", "morph:Number=Plur"):
        rows = np.nonzero(ex.feature == names.index(name))[0]
        values = np.stack([acts[ex.sequence[r]][ex.start[r] + 1] for r in rows])
        expected = variance_reduction(values, (ex.label[rows] > 0.5)[:, None])[0]
        np.testing.assert_allclose(scores[0][names.index(name)], expected, atol=1e-5)
        assert counts[name] == len(rows)
    punct = ex.start[(ex.feature == names.index("pos:PUNCT")) & (ex.label > 0.5)]
    seqs = ex.sequence[(ex.feature == names.index("pos:PUNCT")) & (ex.label > 0.5)]
    assert {bpe_tokenizer.decode([dataset.tokens[q][t]]).strip() for q, t in zip(seqs, punct)} == {"."}
