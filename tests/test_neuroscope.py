"""Neuroscope's open problems: monosemanticity metrics, per-distribution examples, cos(w_in, w_out), NMF/PCA bases.

Random-weight toy models test the machinery against independent recomputations (numpy, scikit-learn,
brute force over every token), never findings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from needle.errors import InputError
from needle.models import adapt, get_site
from needle.toy import TextUnit, ToySize, train_tokenizer
from needle.toy.train import initial_model
from needle.universal.tokens import pack_units

TEXTS = {"en": "The cat sat on the mat in 1999. The dog sat on the log! ",
         "fr": "Le chat est sur le tapis. Le chien dort dans la maison. ",
         "python": "def add(a, b):\n    return a + b\n\nclass Box:\n    value = [1, 2, 3]\n"}
SIZE = dict(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=24, context_length=16)


@pytest.fixture(scope="module")
def toy():
    units = [TextUnit(s, f"{s}{i}", t * (3 + i)) for i in range(4) for s, t in TEXTS.items()]
    tokenizer = train_tokenizer([u.text for u in units], 300)
    models = {act: adapt(initial_model(ToySize(**SIZE, activation=act), len(tokenizer), 0).eval(), tokenizer)
              for act in ("gelu", "solu")}
    sequences, sources = pack_units(units, tokenizer, 16)
    return models, tokenizer, sequences, sources


def _all_activations(model, sequences, layer):
    """(n_seq, pos, n_neurons) at the neuron site, one sequence at a time (no batching to trust)."""
    out = []
    for seq in sequences:
        ids = torch.tensor(np.asarray(seq)[None])
        out.append(model.capture(ids, torch.ones_like(ids), [layer], site="post")[layer][0].numpy())
    return np.stack(out)


# ----------------------------------------------------------------------------------------- monosemanticity
def test_top_share_and_token_share_match_a_brute_force_recount(toy):
    from needle.neurons.monosemanticity import _base_rates, explanation_tests, monosemanticity

    models, tokenizer, sequences, sources = toy
    model = models["gelu"]
    table, info = monosemanticity(model, sequences, sources, layers=[1], n_top=6, share=0.8, max_base_rate=0.3)
    acts = _all_activations(model, sequences, 1)[:, 1:]  # BOS left out
    tests = explanation_tests(tokenizer, sequences, sources)
    base = _base_rates(tests, sequences, sources)
    np.testing.assert_allclose(base, info["base_rates"])
    for neuron in (0, 5, 17):
        # One example per sequence: each block's best token, then the 6 best blocks (ties never occur here).
        best_pos = acts[:, :, neuron].argmax(1)
        best_val = acts[np.arange(len(acts)), best_pos, neuron]
        blocks = np.argsort(-best_val, kind="stable")[:6]
        tokens = np.array([sequences[b][best_pos[b] + 1] for b in blocks])
        previous = np.array([sequences[b][best_pos[b]] for b in blocks])
        labels = tests.labels(tokens, previous, [sources[b] for b in blocks])
        coverage = np.where(base <= 0.3, labels.mean(0), -1)
        row = table[table["neuron"] == neuron].iloc[0]
        assert row["top_share"] == pytest.approx(coverage.max())
        assert coverage[tests.names.index(row["top_test"])] == pytest.approx(coverage.max())
        assert row["top_token_share"] == pytest.approx(np.unique(tokens, return_counts=True)[1].max() / 6)
        assert row["shares_one_explanation"] == (coverage.max() >= 0.8)


def test_vr_best_is_the_largest_variance_reduction_by_definition(toy):
    from needle.neurons.monosemanticity import explanation_tests, monosemanticity
    from needle.universal.explain import variance_reduction

    models, tokenizer, sequences, sources = toy
    model = models["solu"]
    table, _ = monosemanticity(model, sequences, sources, layers=[0], n_top=4)
    acts = _all_activations(model, sequences, 0)[:, 1:].reshape(-1, model.n_neurons)
    tests = explanation_tests(tokenizer, sequences, sources)
    ids = np.stack(sequences)
    labels = tests.labels(ids[:, 1:].ravel(), ids[:, :-1].ravel(), np.repeat(sources, ids.shape[1] - 1))
    by_definition = variance_reduction(acts, labels).max(0)  # binary tests only: the position test can only add
    assert (table["vr_best"].to_numpy() >= by_definition - 1e-6).all()
    binary = ~table["vr_test"].eq("position").to_numpy()
    np.testing.assert_allclose(table["vr_best"].to_numpy()[binary], by_definition[binary], rtol=1e-6, atol=1e-9)


def test_agreement_statistics_match_scikit_learn_and_known_values():
    import pandas as pd
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    from needle.neurons.monosemanticity import compare_models, metric_agreement, wilson_interval

    rng = np.random.default_rng(1)
    table = pd.DataFrame({"vr_best": rng.random(50), "top_share": rng.random(50), "top_token_share": rng.random(50)})
    agreement = metric_agreement(table, vr_threshold=0.4, share=0.6)
    row = agreement[(agreement.metric_a == "vr_best") & (agreement.metric_b == "top_share")].iloc[0]
    assert row["kappa"] == pytest.approx(cohen_kappa_score(table.vr_best >= 0.4, table.top_share >= 0.6))
    assert row["spearman"] == pytest.approx(spearmanr(table.vr_best, table.top_share).statistic)
    assert row["agreement"] == pytest.approx(np.mean((table.vr_best >= 0.4) == (table.top_share >= 0.6)))
    low, high = wilson_interval(0, 10)  # Wilson's upper bound at 0/n is z² / (n + z²)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(1.96 ** 2 / (10 + 1.96 ** 2))
    compared = compare_models({"a": table}, vr_threshold=0.4, share=0.6, n_boot=200)
    first = compared[compared.metric == "vr_best"].iloc[0]
    assert first["mean"] == pytest.approx(table.vr_best.mean())
    assert first["mean_low"] <= first["mean"] <= first["mean_high"]
    assert first["fraction"] == pytest.approx((table.vr_best >= 0.4).mean())


def test_a_model_corresponds_to_itself_neuron_for_neuron(toy):
    from needle.neurons.monosemanticity import neuron_correspondence

    models, _, sequences, _ = toy
    pairs, summary = neuron_correspondence([models["gelu"], models["gelu"]], ["a", "b"], sequences)
    assert (pairs["layer"] == pairs["partner_layer"]).all() and (pairs["neuron"] == pairs["partner_neuron"]).all()
    np.testing.assert_allclose(pairs["corr"], 1.0, atol=1e-5)
    assert summary["fraction_above"] == 1.0 and summary["n"] == 2 * models["gelu"].n_neurons
    with pytest.raises(InputError, match="exactly two models"):
        neuron_correspondence([models["gelu"]], ["a"], sequences)


# --------------------------------------------------------------------------------- per distribution (9.58)
def test_per_distribution_top_examples_are_each_distributions_maxima(toy):
    from needle.neurons.distributions import top_by_distribution
    from needle.neurons.monosemanticity import sequences_corpus

    models, tokenizer, sequences, sources = toy
    model = models["gelu"]
    corpus = sequences_corpus(sequences, sources, tokenizer)
    examples, flags = top_by_distribution(model, corpus, [(1, 3), (0, 7)], n_top=3, context=(2, 1))
    acts = _all_activations(model, sequences, 1)[:, 1:, 3]
    src = np.asarray(sources)
    for name in sorted(set(sources)):
        part = examples[(examples.layer == 1) & (examples.neuron == 3) & (examples.kind == "top")
                        & (examples.distribution == name)].sort_values("rank")
        assert part["activation"].iloc[0] == pytest.approx(acts[src == name].max(), rel=1e-5)
        assert (src[part["sequence"].to_numpy(int)] == name).all()  # sequences index the full corpus
    overall = examples[(examples.layer == 1) & (examples.neuron == 3) & (examples.kind == "overall")]
    assert overall["activation"].max() == pytest.approx(acts.max(), rel=1e-5)
    assert set(flags.columns) >= {"differs", "carry_over", "explanations"} and len(flags) == 2
    row = flags[(flags.layer == 1) & (flags.neuron == 3)].iloc[0]
    assert set(row["explanations"]) <= set(sources) and row["n_distributions"] == len(row["explanations"])
    # carry_over by hand: the corpus-wide explanation's coverage of each distribution's own list.
    from needle.neurons.monosemanticity import explanation_tests

    tests = explanation_tests(tokenizer, sequences, sources)
    column = tests.names.index(row["overall_test"])
    covered = []
    peak = examples[(examples.layer == 1) & (examples.neuron == 3)]["activation"].max()
    for name in sorted(set(sources)):
        part = examples[(examples.layer == 1) & (examples.neuron == 3) & (examples.kind == "top")
                        & (examples.distribution == name)]
        if part["activation"].max() < 0.5 * peak:
            continue  # the neuron hardly fires there
        seq, pos = part["sequence"].to_numpy(int), part["position"].to_numpy(int)
        labels = tests.labels(part["token_id"].to_numpy(int), [sequences[q][p - 1] for q, p in zip(seq, pos)],
                              [sources[q] for q in seq])
        covered.append(labels[:, column].mean() >= 0.5)
    assert row["carry_over"] == pytest.approx(np.mean(covered))
    assert row["differs"] == (row["overall_coverage"] >= 0.5 and np.mean(covered) < 0.5)
    with pytest.raises(InputError, match="needs a corpus with labels"):
        top_by_distribution(model, sequences_corpus(sequences, sources, tokenizer).__class__(
            list(sequences), np.arange(len(sequences))), [(0, 0)])


# ------------------------------------------------------------------------------------ weights (9.24–9.25)
def test_cos_in_out_ranking_matches_numpy(toy):
    from needle.neurons.weights import cos_in_out_ranking

    model = toy[0]["gelu"]
    table = cos_in_out_ranking(model)
    expected = []
    for layer in range(model.n_layers):
        w_in = model.w_in(layer).double().numpy()  # (d_model, n)
        w_out = model.w_out(layer).double().numpy()  # (n, d_model)
        cos = (w_in.T * w_out).sum(1) / np.linalg.norm(w_in, axis=0) / np.linalg.norm(w_out, axis=1)
        expected += [(c, layer, i) for i, c in enumerate(cos)]
    expected.sort()
    np.testing.assert_allclose(table["cos_in_out"], [c for c, _, _ in expected], rtol=1e-9)
    assert list(zip(table.layer, table.neuron)) == [(layer, i) for _, layer, i in expected]
    assert table["rank_negative"].tolist() == list(range(1, len(table) + 1))
    assert (table["rank_negative"] + table["rank_positive"] == len(table) + 1).all()


def test_weight_list_pages_link_neurons_with_pages(toy, tmp_path):
    from needle.scope.neuroscope import WEIGHT_PAGES, NeuroscopeData
    from needle.scope.tables import NeuronRef

    models, tokenizer, sequences, sources = toy
    from needle.neurons.monosemanticity import sequences_corpus

    corpus = sequences_corpus(sequences, sources, tokenizer)
    most_negative = NeuroscopeData.build(models["gelu"], corpus, []).weights.iloc[0]
    ref = NeuronRef(int(most_negative.layer), int(most_negative.neuron))
    data = NeuroscopeData.build(models["gelu"], corpus, [ref], n_top=2, context=(2, 1))
    names = data.write_pages(tmp_path, {ref})
    assert names == list(WEIGHT_PAGES)
    negative = (tmp_path / "weights-memory-management.html").read_text()
    assert f'href="neurons/L{ref.layer}/{ref.id}.html">{ref.id}</a>' in negative
    assert negative.index(ref.id) < negative.index("</tbody>")
    first_row = negative[negative.index("<tbody>"):].split("</tr>")[0]
    assert ref.id in first_row  # the most negative comes first
    section = str(data.neuron_section(ref, "../../", 1.0))
    assert "rank 1 of" in section and "By source distribution" in section
    for name in sorted(set(sources)):
        assert f"<h3>{name} " in section


# ------------------------------------------------------------------------------------------ NMF / PCA (9.59)
@pytest.mark.parametrize("negatives", ["clip", "split"])
def test_nmf_codes_reconstruct_activations_as_well_as_sklearn(toy, negatives):
    from sklearn.decomposition import NMF

    from needle.probing.decompositions import fit_nmf, layer_activations, nonnegative

    models, _, sequences, _ = toy
    model = models["gelu"]
    x = layer_activations(model, sequences, 1)
    assert x.shape == (sum(len(s) - 1 for s in sequences), model.n_neurons) and (x < 0).any()
    transform = fit_nmf(x, 8, negatives=negatives, max_iter=500)
    target = nonnegative(x.astype(np.float64), negatives)
    reference = NMF(n_components=8, init="nndsvda", max_iter=500, random_state=0).fit(target)
    np.testing.assert_allclose(transform.components.numpy(), reference.components_, rtol=1e-4, atol=1e-6)
    sk_error = np.linalg.norm(target - reference.transform(target) @ reference.components_) / np.linalg.norm(target)
    codes = model.capture(torch.tensor(np.stack(sequences)), torch.ones(len(sequences), 16, dtype=torch.long), [1],
                          site=get_site("post", transform))[1][:, 1:].reshape(-1, 8).numpy()
    assert (codes >= 0).all()
    ours = np.linalg.norm(target - transform.reconstruct(codes)) / np.linalg.norm(target)
    # The stated error: within 2 % (relative) of sklearn's own non-negative least squares on the same directions.
    assert ours <= sk_error * 1.02 + 1e-6
    assert transform.params["relative_error"] == pytest.approx(
        np.linalg.norm(target - reference.fit_transform(target) @ reference.components_) / np.linalg.norm(target),
        rel=1e-3)
    assert get_site("post", transform).id == f"mlp.hook_post+nmf8-{negatives}-{transform.sha256[:8]}"
    assert transform.directions().shape == (8, model.n_neurons)
    with pytest.raises(InputError, match="takes 24 columns"):
        transform.out_width(10)


def test_pca_basis_is_sklearn_projection_and_bad_input_is_refused(toy):
    from sklearn.decomposition import PCA

    from needle.probing.decompositions import NMFTransform, fit_nmf, fit_pca, layer_activations

    model = toy[0]["solu"]
    x = layer_activations(model, toy[2], 0)
    pca = fit_pca(x, 5)
    expected = PCA(n_components=5, svd_solver="full").fit(x.astype(np.float64)).transform(x.astype(np.float64))
    np.testing.assert_allclose(pca(torch.tensor(x)).numpy(), expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(InputError, match="negatives must be one of clip, split"):
        fit_nmf(x, 4, negatives="abs")
    with pytest.raises(InputError, match="n_components must be between"):
        fit_nmf(x, 0)
    with pytest.raises(InputError, match="non-negative"):
        NMFTransform(-np.ones((2, 3)))


# ----------------------------------------------------------------------------------- the scope site hook
def test_scope_site_neuron_pages_get_the_sections_and_the_weight_lists(tmp_path, bpe_tokenizer):
    from needle.neurons import Corpus
    from needle.scope import SiteOptions, build_site
    from test_scope_site import make_tiny_sweep

    info = make_tiny_sweep(tmp_path, bpe_tokenizer)
    base = Corpus.from_dataset(info["cache"].dataset(), tokenizer=info["adapter"].tokenizer)
    # Two made-up "distributions": alternate documents.
    order = {g: i for i, g in enumerate(dict.fromkeys(base.groups))}
    corpus = Corpus(base.tokens, base.groups, labels=[f"half{order[g] % 2}" for g in base.groups],
                    tokenizer=base.tokenizer)
    site = build_site(info["results"], info["cache"], tmp_path / "site", model=info["adapter"], corpus=corpus,
                      options=SiteOptions(max_k_pages=1, n_top=4, n_bottom=2, per_band=1))
    pages = sorted((site / "neurons").rglob("*.html"))
    assert pages
    page = pages[0].read_text()
    assert "By source distribution" in page and "<h3>half0 " in page and "<h3>half1 " in page
    assert 'href="../../weights-memory-management.html"' in page
    listings = [(site / name).read_text() for name in ("weights-memory-management.html",
                                                         "weights-signal-boosting.html")]
    ref = pages[0].stem  # 3 layers x 48 neurons: every neuron is in the top 100 of one of the two lists
    assert any(f'href="neurons/{pages[0].parent.name}/{ref}.html">{ref}</a>' in listing for listing in listings)


def test_nmf_directions_get_scope_pages_like_neurons(tmp_path, bpe_tokenizer):
    from needle.activations import extract
    from needle.probing import sweep
    from needle.probing.decompositions import fit_nmf, layer_activations
    from needle.scope import SiteOptions, build_site
    from test_scope_site import make_tiny_sweep

    info = make_tiny_sweep(tmp_path, bpe_tokenizer)
    model, dataset = info["adapter"], info["cache"].dataset()
    transform = fit_nmf(layer_activations(model, dataset.tokens, 0), 6, negatives="split", max_iter=200)
    cache = extract(model, tmp_path / "dataset", tmp_path / "nmf-cache", layers=[0], site="post",
                    transform=transform, progress=False)
    assert cache.width == 6 and cache.basis == transform.name
    results = sweep(cache, out=tmp_path / "nmf.parquet", methods=["mean_diff"], ks=[1], baselines=False,
                    progress=False)
    site = build_site(results, cache, tmp_path / "nmf-site", model=model, max_sequences=4, transform=transform,
                      options=SiteOptions(max_k_pages=1, n_top=3, n_bottom=1, per_band=1))
    pages = sorted((site / "neurons").rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert f" of {transform.name}</h1>" in text and "Max-activating examples" in text
    # an NMF direction over the neurons writes through the MLP's w_out: its logit effect, by hand
    from needle.models.sites import get_site
    from needle.neurons import latent_logit_effects
    from needle.neurons.logits import final_norm_scale

    j = int(pages[0].stem.split(".N")[1])
    effects = latent_logit_effects(model, get_site("post", transform), 0, j, top=3)
    direction = torch.as_tensor(transform.directions()[j]).double() @ model.w_out(0).double()
    by_hand = (direction * final_norm_scale(model).double()) @ model.unembed().double()
    np.testing.assert_allclose(effects.effects, by_hand.numpy(), rtol=1e-4, atol=1e-6)
    assert "Logit effects" in pages[0].read_text()
