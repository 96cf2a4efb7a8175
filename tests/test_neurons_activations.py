"""Neuron analyses that read activations over a corpus: top-N, quantile bands, per-token statistics.

Every expected value is recomputed by hand from unpadded forward passes of
one sequence at a time (``hand_activations``), never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model, hand_activations
from needle.errors import InputError
from needle.models import adapt
from needle.neurons import Corpus, firing_statistics, parse_neurons, token_statistics, top_activations

TEXTS = [
    "def add(a, b):\n    return a + b  # sum\n",
    "The quick brown fox jumps over the lazy dog again and again.",
    "class Point:\n    x = 1\n    y = [1, 2, 3]\n",
    "I went to the store, and they said we're closed at 5:30 p.m.",
    "Numbers 0123456789 and symbols ()[]{} are here; naïve café.",
    "return value if value else None  # comment",
]
LABELS = ["code", "english", "code", "english", "mixed", "code"]
NEURONS = [(0, 3), (2, 7), (1, 5), (1, 0)]


@pytest.fixture(scope="module")
def neox(bpe_tokenizer):
    return adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=1), bpe_tokenizer, model_id="tiny-neox")


@pytest.fixture(scope="module")
def corpus(bpe_tokenizer):
    return Corpus.from_texts(TEXTS, bpe_tokenizer, context_length=12, labels=LABELS)


@pytest.fixture(scope="module")
def everything(neox, corpus):
    """Every (sequence, position) activation of every test neuron, by hand: dict neuron -> (n_tokens,) plus ids."""
    acts = {n: [] for n in NEURONS}
    where, ids, labels = [], [], []
    for s, tokens in enumerate(corpus.tokens):
        t = torch.from_numpy(tokens)[None]
        by_layer = {layer: hand_activations(neox, t, layer)["post"].numpy() for layer in {l for l, _ in NEURONS}}
        for (layer, index) in NEURONS:
            acts[(layer, index)].append(by_layer[layer][:, index])
        where += [(s, p) for p in range(len(tokens))]
        ids.append(tokens)
        labels += [corpus.labels[s]] * len(tokens)
    return ({n: np.concatenate(v) for n, v in acts.items()}, np.asarray(where), np.concatenate(ids),
            np.asarray(labels))


def test_corpus_from_texts_chunks_and_labels(corpus, bpe_tokenizer):
    assert len(corpus) > len(TEXTS)  # long texts were cut
    assert corpus.lengths.max() <= 12
    rebuilt = {}
    for tokens, group in zip(corpus.tokens, corpus.groups):
        rebuilt.setdefault(group, []).extend(tokens.tolist())
    for i, text in enumerate(TEXTS):
        assert bpe_tokenizer.decode(rebuilt[str(i)]) == text
    assert corpus.label_names == ["code", "english", "mixed"]
    assert corpus.labels[corpus.groups == "1"].tolist() == ["english"] * int((corpus.groups == "1").sum())


def test_parse_neurons_forms():
    assert parse_neurons(["L3N12", "1:4", (0, 2), "L3N12"]) == [(3, 12), (1, 4), (0, 2)]
    assert parse_neurons((2, 5)) == [(2, 5)]
    with pytest.raises(InputError, match="L3N120"):
        parse_neurons(["three"])


@pytest.mark.parametrize("batch_tokens", [24, 10_000])
def test_streamed_top_and_bottom_equal_a_full_sort(neox, corpus, everything, batch_tokens):
    acts, where, ids, _ = everything
    n_top = 7
    table = top_activations(neox, corpus, NEURONS, n_top=n_top, n_bottom=n_top, bands=(), batch_tokens=batch_tokens,
                            context=(3, 2), one_per_group=False)
    assert corpus.lengths.sum() > 3 * 24  # several batches in the small-batch case
    for neuron in NEURONS:
        values = acts[neuron]
        top = np.lexsort((where[:, 1], where[:, 0], -values))[:n_top]
        bottom = np.lexsort((where[:, 1], where[:, 0], values))[:n_top]
        for kind, expected in (("top", top), ("bottom", bottom)):
            got = table[(table["layer"] == neuron[0]) & (table["neuron"] == neuron[1]) & (table["kind"] == kind)]
            got = got.sort_values("rank")
            assert got["rank"].tolist() == list(range(n_top))
            np.testing.assert_array_equal(got[["sequence", "position"]].to_numpy(), where[expected])
            np.testing.assert_allclose(got["activation"], values[expected], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(got["token_id"], ids[expected])


@pytest.mark.parametrize("batch_tokens", [24, 10_000])
@pytest.mark.parametrize("n_top", [3, 10])
def test_one_example_per_group_equals_each_groups_maximum_by_brute_force(neox, corpus, everything, batch_tokens,
                                                                         n_top):
    acts, where, ids, _ = everything
    groups = corpus.groups[where[:, 0]]
    assert len(set(groups)) < len(corpus)  # texts span several sequences, so groups span batches
    table = top_activations(neox, corpus, NEURONS, n_top=n_top, n_bottom=n_top, bands=(), batch_tokens=batch_tokens,
                            context=(3, 2))
    for neuron in NEURONS:
        for kind, sign in (("top", 1.0), ("bottom", -1.0)):
            values = sign * acts[neuron]
            # Each group's maximum by hand; the streamed values differ from the hand ones in the last bits,
            # so a group is matched to its maximum up to that tolerance.
            group_max = {g: values[groups == g].max() for g in set(groups)}
            expected = sorted(group_max.values(), reverse=True)[:n_top]
            got = table[(table["layer"] == neuron[0]) & (table["neuron"] == neuron[1]) & (table["kind"] == kind)]
            got = got.sort_values("rank")
            assert len(got) == min(n_top, len(group_max)) and not got["group"].duplicated().any()
            np.testing.assert_allclose(sign * got["activation"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
            for row in got.itertuples():
                at = np.flatnonzero((where[:, 0] == row.sequence) & (where[:, 1] == row.position))[0]
                assert groups[at] == row.group
                assert values[at] >= group_max[row.group] - 1e-6  # the chosen token is its group's maximum
            if n_top < len(group_max):  # no group left out beats the last one kept
                left_out = set(group_max) - set(got["group"])
                assert max(group_max[g] for g in left_out) <= sign * got["activation"].iloc[-1] + 1e-6


def test_contexts_surround_the_chosen_token(neox, corpus, everything):
    acts, where, _, _ = everything
    table = top_activations(neox, corpus, NEURONS[:2], n_top=4, n_bottom=2, bands=(), context=(3, 2))
    for row in table.itertuples():
        tokens = corpus.tokens[row.sequence]
        a = max(0, row.position - 3)
        assert row.focus == row.position - a
        assert len(row.context_tokens) == len(row.context_activations) == min(len(tokens), row.position + 3) - a
        assert row.context_tokens[row.focus] == row.token
        mine = acts[(row.layer, row.neuron)][(where[:, 0] == row.sequence)]
        np.testing.assert_allclose(row.context_activations, mine[a : a + len(row.context_activations)], atol=1e-5)
        assert row.label == corpus.labels[row.sequence] and row.group == corpus.groups[row.sequence]


def test_layer_rank_counts_the_layers_more_active_neurons_by_hand(neox, corpus):
    table = top_activations(neox, corpus, NEURONS, n_top=4, n_bottom=2, bands=((0.0, 1.0),), per_band=2,
                            context=(1, 1))
    assert len(table) and table["layer_rank"].dtype == np.int64
    for row in table.itertuples():
        t = torch.from_numpy(corpus.tokens[row.sequence])[None]
        layer = hand_activations(neox, t, row.layer)["post"].numpy()[row.position]  # every neuron of the layer
        mine = layer[row.neuron]
        # One plus the neurons strictly above; the hand pass differs from the batched one in the last bits.
        above, tied = (layer > mine + 1e-6).sum(), (np.abs(layer - mine) <= 1e-6).sum()
        assert 1 + above <= row.layer_rank <= above + tied
    # The ranks are not all 1, so the bounds above are tested away from the trivial case.
    assert (table["layer_rank"] >= 1).all() and table["layer_rank"].max() > 1


def test_band_samples_lie_in_their_quantile_bands(neox, corpus, everything):
    acts, where, _, _ = everything
    bands = ((0.0, 0.5), (0.5, 0.9), (0.9, 1.0))
    # A pool larger than the corpus holds every token: the quantiles are then exact.
    table = top_activations(neox, corpus, NEURONS, n_top=0, n_bottom=0, bands=bands, per_band=3,
                            band_pool=100_000, seed=3)
    assert set(table["kind"]) == {"band"}
    for neuron in NEURONS:
        values = acts[neuron]
        for low, high in bands:
            got = table[(table["layer"] == neuron[0]) & (table["neuron"] == neuron[1])
                        & (table["band"] == f"q{low:g}-{high:g}")]
            q_low, q_high = np.quantile(values, [low, high])
            assert len(got) == 3
            np.testing.assert_allclose(got[["band_low", "band_high"]].iloc[0], [q_low, q_high], rtol=1e-5, atol=1e-6)
            assert (got["activation"] >= q_low - 1e-6).all() and (got["activation"] <= q_high + 1e-6).all()
            assert not got.duplicated(["sequence", "position"]).any()
    again = top_activations(neox, corpus, NEURONS, n_top=0, n_bottom=0, bands=bands, per_band=3,
                            band_pool=100_000, seed=3)
    assert again[["sequence", "position"]].equals(table[["sequence", "position"]])


def test_a_small_pool_is_a_uniform_sample_of_tokens(neox, corpus):
    table = top_activations(neox, corpus, NEURONS[:1], n_top=0, n_bottom=0, bands=((0.0, 1.0),), per_band=40,
                            band_pool=40)
    assert len(table) == 40 and not table.duplicated(["sequence", "position"]).any()


def test_special_tokens_are_skipped(neox, bpe_tokenizer):
    eos = bpe_tokenizer.eos_token_id
    text_ids = bpe_tokenizer("the lazy dog jumps")["input_ids"]
    corpus = Corpus([np.array([eos] + text_ids), np.array(text_ids + [eos])], ["a", "b"], tokenizer=bpe_tokenizer)
    kept = top_activations(neox, corpus, [(0, 1)], n_top=50, n_bottom=0, bands=(), one_per_group=False)
    assert eos not in kept["token_id"].tolist() and len(kept) == 2 * len(text_ids)
    allowed = top_activations(neox, corpus, [(0, 1)], n_top=50, n_bottom=0, bands=(), exclude_special=False,
                              one_per_group=False)
    assert (allowed["token_id"] == eos).sum() == 2
    one_each = top_activations(neox, corpus, [(0, 1)], n_top=50, n_bottom=0, bands=())
    assert sorted(one_each["group"]) == ["a", "b"] and eos not in one_each["token_id"].tolist()


def test_token_statistics_equal_direct_computation(neox, corpus, everything):
    acts, _, ids, labels = everything
    table = token_statistics(neox, corpus, NEURONS, batch_tokens=30)
    by_label = token_statistics(neox, corpus, NEURONS, by_label=True, batch_tokens=30)
    for neuron in NEURONS:
        values = acts[neuron]
        got = table[(table["layer"] == neuron[0]) & (table["neuron"] == neuron[1])].set_index("token_id")
        assert sorted(got.index) == sorted(np.unique(ids))
        for token in np.unique(ids):
            v = values[ids == token]
            row = got.loc[token]
            assert row["count"] == v.size
            np.testing.assert_allclose([row["mean"], row["max"], row["min"], row["std"]],
                                       [v.mean(), v.max(), v.min(), v.std()], rtol=1e-4, atol=1e-5)
        assert got["mean"].is_monotonic_decreasing
        got = by_label[(by_label["layer"] == neuron[0]) & (by_label["neuron"] == neuron[1])]
        assert got["count"].sum() == ids.size
        for row in got.sample(10, random_state=0).itertuples():
            v = values[(ids == row.token_id) & (labels == row.label)]
            np.testing.assert_allclose([row.count, row.mean, row.max], [v.size, v.mean(), v.max()], rtol=1e-4,
                                       atol=1e-5)


def test_bad_requests_are_refused(neox, corpus, bpe_tokenizer):
    with pytest.raises(InputError, match="L1.N999"):
        top_activations(neox, corpus, [(1, 999)])
    with pytest.raises(InputError, match="layer 7"):
        token_statistics(neox, corpus, [(7, 0)])
    with pytest.raises(InputError, match="labels"):
        token_statistics(neox, Corpus.from_texts(TEXTS, bpe_tokenizer, 12), [(0, 0)], by_label=True)
    with pytest.raises(InputError, match="band"):
        top_activations(neox, corpus, [(0, 0)], bands=((0.5, 0.2),))
    big = Corpus([np.array([0, 10_000])], ["g"], tokenizer=bpe_tokenizer)
    with pytest.raises(InputError, match="token id 10000"):
        top_activations(neox, big, [(0, 0)])


def test_table_entries_keep_word_starts_and_continuations_apart(minilm_tokenizer, bpe_tokenizer):
    from needle.neurons.corpus import TokenNames

    wordpiece = TokenNames(minilm_tokenizer)
    start, continuation = minilm_tokenizer.convert_tokens_to_ids(["5", "##5"])
    # The readable names differ only by a leading space, which a table cell trims.
    assert wordpiece(start).strip() == wordpiece(continuation).strip() == "5"
    assert (wordpiece.entry(start), wordpiece.entry(continuation)) == ("5", "##5")
    bpe = TokenNames(bpe_tokenizer)
    ids = bpe_tokenizer("the the", add_special_tokens=False)["input_ids"]
    names = [bpe(i) for i in ids]
    entries = [bpe.entry(i) for i in ids]
    starts = [n.startswith(" ") for n in names]
    assert starts == [e.startswith("␣") for e in entries] and set(starts) == {False, True}
    assert [e.lstrip("␣") for e in entries] == [n.lstrip(" ") for n in names]


def test_token_statistics_list_each_tokens_table_entry(neox, corpus):
    table = token_statistics(neox, corpus, NEURONS[:1])
    names = corpus.names
    assert table["entry"].tolist() == [names.entry(t) for t in table["token_id"]]


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_firing_statistics_and_whole_corpus_histogram_by_hand(neox, corpus, everything, threshold):
    acts, _, _, _ = everything
    table = firing_statistics(neox, corpus, NEURONS, threshold=threshold, bins=7, batch_tokens=30)
    assert len(table) == len(NEURONS)
    for row in table.itertuples():
        values = acts[(row.layer, row.neuron)].astype(np.float64)
        assert row.n_tokens == len(values) and row.n_firing == int((values > threshold).sum())
        assert row.firing_density == pytest.approx((values > threshold).mean())
        assert row.per_thousand == pytest.approx(1000 * (values > threshold).mean())
        np.testing.assert_allclose([row.mean, row.std, row.min, row.max],
                                   [values.mean(), values.std(), values.min(), values.max()], rtol=1e-5, atol=1e-6)
        assert sum(row.counts) == len(values) and len(row.edges) == 8
        # The hand pass differs from the batched one in the last bits: the extremes may fall just outside the edges.
        inside = np.clip(values, row.edges[0], row.edges[-1])
        assert np.abs(inside - values).max() <= 1e-5
        expected, _ = np.histogram(inside, bins=np.asarray(row.edges))
        np.testing.assert_array_equal(row.counts, expected)


def test_firing_statistics_with_a_known_range_equal_the_two_pass_result(neox, corpus):
    plain = firing_statistics(neox, corpus, NEURONS, bins=7, batch_tokens=30)
    top = top_activations(neox, corpus, NEURONS, n_top=1, n_bottom=1, bands=(), batch_tokens=30)
    known = {(r.layer, r.neuron): (float(top[(top.layer == r.layer) & (top.neuron == r.neuron)].activation.min()),
                                   float(top[(top.layer == r.layer) & (top.neuron == r.neuron)].activation.max()))
             for r in plain.itertuples()}
    assert all(known[(r.layer, r.neuron)] == (r.min, r.max) for r in plain.itertuples())
    one_pass = firing_statistics(neox, corpus, NEURONS, bins=7, batch_tokens=30, known_range=known)
    wrong = firing_statistics(neox, corpus, NEURONS, bins=7, batch_tokens=30,
                              known_range={ref: (lo - 1.0, hi) for ref, (lo, hi) in known.items()})
    for table in (one_pass, wrong):
        assert table["counts"].tolist() == plain["counts"].tolist()
        assert table["edges"].tolist() == plain["edges"].tolist()
