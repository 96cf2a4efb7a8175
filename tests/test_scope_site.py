"""needle scope build: the static site of a small sweep on a random-weight causal model.

Random weights test the plumbing (every page is there, and what a page shows
is what the analyses compute), never findings.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from model_zoo import build_model

MAX_PAGE_BYTES = 400_000


def make_tiny_sweep(root: Path, tokenizer) -> dict:
    """A tiny Llama (random weights), the python-code collection on 6 stdlib files, its cache and a sweep."""
    from needle.activations import extract
    from needle.datasets.python_code import build_python_code
    from needle.models import load_model
    from needle.probing import sweep

    model_dir = root / "tiny-llama"
    build_model("llama", len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    adapter = load_model(str(model_dir))
    dataset = build_python_code(None, adapter.tokenizer, context_length=96, max_files=6, max_sequences_per_file=1,
                                max_positives=40)
    dataset.save(root / "dataset")
    cache = extract(adapter, root / "dataset", root / "cache", progress=False)
    results = root / "results.parquet"
    sweep(cache, out=results, methods=["mean_diff", "f_stat"], ks=[1, 2, 3], n_jobs=1, progress=False)
    return {"model_dir": model_dir, "adapter": adapter, "cache": cache, "results": results, "root": root}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bpe_tokenizer):
    from needle.scope import SiteOptions, build_site
    from needle.scope.server import notes_path, save_note

    info = make_tiny_sweep(tmp_path_factory.mktemp("scope"), bpe_tokenizer)
    lines: list[str] = []
    info["notes"] = {}
    for ref in referenced_neurons_of(info["results"], max_k=2)[:1]:  # a note saved before the build shows on its page
        info["notes"] = save_note(notes_path(info["root"] / "site"), ref.id, "fires on <b>comments</b> & more")
    info["site"] = build_site(info["results"], info["cache"], info["root"] / "site", model=info["adapter"],
                              max_sequences=None, options=SiteOptions(max_k_pages=2, n_top=8, n_bottom=4, per_band=2),
                              echo=lines.append)
    info["lines"] = lines
    return info


def referenced_neurons_of(results_path, *, max_k):
    from needle.probing import load_results
    from needle.scope import referenced_neurons

    return list(referenced_neurons(load_results(results_path), max_k=max_k))


def _neuron_page(site: Path, layer: int, index: int) -> str:
    return (site / "neurons" / f"L{layer}" / f"L{layer}.N{index}.html").read_text()


def test_every_feature_and_referenced_neuron_has_a_page(tiny):
    from needle.probing import load_results
    from needle.scope import referenced_neurons

    site, results = tiny["site"], load_results(tiny["results"])
    index = (site / "index.html").read_text()
    for feature in results["feature"].unique():
        assert f'data-feature="{feature}"' in index
        assert (site / "features" / f"{feature}.html").is_file()
    sparse = results[~results["method"].isin(["dense", "random_directions"])]
    expected = {(int(layer), int(n)) for layer, ns, k in zip(sparse["layer"], sparse["neurons"], sparse["k"]) if k <= 2
                for n in ns}
    pages = {(int(m.group(1)), int(m.group(2))) for p in (site / "neurons").rglob("*.html")
             for m in [re.fullmatch(r"L(\d+)\.N(\d+)\.html", p.name)]}
    assert pages == expected == {(r.layer, r.index) for r in referenced_neurons(results, max_k=2)}
    search = (site / "search-index.js").read_text()
    assert search.startswith("window.NEEDLE_SEARCH = ")
    payload = json.loads(search[len("window.NEEDLE_SEARCH = "):].rstrip().rstrip(";"))
    assert {n[0] for n in payload["neurons"]} == {f"L{layer}.N{n}" for layer, n in expected}
    assert {f[0] for f in payload["features"]} == set(results["feature"])
    for token, members in payload["tokens"].items():  # every token entry points at neurons whose top tokens have it
        assert all(token in payload["neurons"][i][2].split(" ") for i in members)
    probes = json.loads((site / "probes.json").read_text())
    assert {p["k"] for p in probes} == {1, 2}  # the viewer's ks (1, 2, 4, 8) that the sweep has
    assert all(len(p["neurons"]) == p["k"] == len(p["coef"]) for p in probes)
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["format"] == "needle.ScopeSite" and set(manifest["neuron_scales"]) == set(manifest["neurons"])


def test_pages_are_bounded_and_link_to_each_other(tiny):
    site = tiny["site"]
    files = [p for p in site.rglob("*") if p.is_file()]
    assert max(p.stat().st_size for p in files) < MAX_PAGE_BYTES
    for page in site.rglob("*.html"):
        html = page.read_text()
        for link in re.findall(r'href="([^"#?]+)"', html):
            if link.startswith("http"):
                continue
            assert (page.parent / link).resolve().exists(), (page, link)


def test_index_numbers_are_those_of_the_results(tiny):
    from needle.probing import load_results, summarize

    results, index = load_results(tiny["results"]), (tiny["site"] / "index.html").read_text()
    for row in summarize(results, ks=(1, 8)).itertuples(index=False):
        cells = re.search(rf'<tr data-feature="{row.feature}">(.*?)</tr>', index, re.S).group(1)
        # A score cell is its number, then hints (its interval): keep the number.
        numbers = re.findall(r'<td class="num">([^<]*)(?:<span[^>]*>[^<]*</span>)*</td>', cells)
        assert numbers[0] == str(row.best_layer)
        assert numbers[1] == f"{row.f1_k1:.3f}"
        assert numbers[2] == "–"  # the sweep stopped at k = 3: no k = 8 probe
        assert f"[{row.score_k1_lo:.2f}–{row.score_k1_hi:.2f}]" in cells  # and its 95 % interval
        assert f"L{row.neuron_layer}.N{row.neuron}" in cells


def test_neuron_page_shows_what_the_api_computes(tiny):
    from needle.neurons import Corpus, top_activations

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    page = sorted((site / "neurons").rglob("*.html"))[0]
    layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", page.name).groups())
    html = page.read_text()
    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=adapter.tokenizer)
    top = top_activations(adapter, corpus, [(layer, index)], n_top=8, n_bottom=4, per_band=2)
    expected = top[top["kind"] == "top"].sort_values("rank")
    table = re.search(r'<table class="data examples top">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr><td class=\"num\">\d+</td><td class=\"act\">([^<]+)</td>\s*<td class=\"ctx\">(.*?)</td>",
                      table, re.S)
    assert [float(a) for a, _ in rows] == pytest.approx(expected["activation"].round(3).tolist(), abs=1e-3)
    for (_, context), row in zip(rows, expected.itertuples(index=False)):
        values = [float(v) for v in re.findall(r'data-v="([^"]+)"', context)]
        assert values == pytest.approx(row.context_activations, rel=1e-3, abs=1e-6)
        focus = re.search(r'<span class="tok[^"]* focus"[^>]*data-v="([^"]+)"[^>]*>(.*?)</span>', context)
        assert float(focus.group(1)) == pytest.approx(row.activation, rel=1e-3, abs=1e-6)
    # the highlighted activation is the model's own: recompute the first example's token with capture
    import torch

    first = expected.iloc[0]
    ids = torch.as_tensor(corpus.tokens[int(first["sequence"])])[None]
    value = adapter.capture(ids, torch.ones_like(ids), [layer])[layer][0, int(first["position"]), index]
    assert float(value) == pytest.approx(first["activation"], rel=1e-5, abs=1e-6)


def test_neuron_page_lists_direct_logit_attribution_and_layer_ranks_as_the_api_computes(tiny):
    from needle.neurons import Corpus, logit_attribution, top_activations

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    page = sorted((site / "neurons").rglob("*.html"))[0]
    layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", page.name).groups())
    html = page.read_text()
    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=adapter.tokenizer)
    found = logit_attribution(adapter, corpus, [(layer, index)], n_top=8)
    assert "Examples by direct logit attribution" in html
    tables = re.findall(r'<table class="data examples attribution">(.*?)</table>', html, re.S)
    for table, kind in zip(tables, ("raises", "lowers")):
        shown = [float(v) for v in re.findall(r'<tr><td class="num">\d+</td><td class="num">([-\d.]+)</td>', table)]
        expected = found.examples[found.examples["kind"] == kind].sort_values("rank")["attribution"]
        assert shown == pytest.approx(expected.round(4).tolist(), abs=1e-4)
    mean = float(found.summary["mean_attribution"].iloc[0])
    assert f"mean attribution is {mean:.4f}" in html or f"mean attribution is {mean:.4g}" in html
    top = top_activations(adapter, corpus, [(layer, index)], n_top=8, n_bottom=4, per_band=2)
    table = re.search(r'<table class="data examples top">(.*?)</table>', html, re.S).group(1)
    ranks = [int(v) for v in re.findall(r'<td class="hint">[^<]*</td><td class="num">(\d+)</td></tr>', table)]
    assert ranks == top[top["kind"] == "top"].sort_values("rank")["layer_rank"].tolist()


def test_neurons_that_lower_the_correct_token_have_their_own_list(tiny):
    from needle.neurons import Corpus, logit_attribution

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    refs = [tuple(int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", p.name).groups())
            for p in sorted((site / "neurons").rglob("*.html"))]
    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=adapter.tokenizer)
    summary = logit_attribution(adapter, corpus, refs, n_top=1).summary
    lowering = summary[summary["mean_attribution"] < 0].sort_values("mean_attribution")
    listing = (site / "lowers-correct-token.html").read_text()
    listed = re.findall(r'<a href="neurons/L\d+/(L\d+\.N\d+)\.html">', listing)
    assert listed == [f"L{r.layer}.N{r.neuron}" for r in lowering.itertuples()]
    assert 0 < len(listed) < len(refs)  # some neurons lower it on average, not all
    assert 'href="lowers-correct-token.html"' in (site / "index.html").read_text()


def test_neuron_pages_link_each_probes_other_neurons(tiny):
    from needle.probing import load_results
    from needle.scope.tables import referenced_neurons

    site = tiny["site"]
    uses = referenced_neurons(load_results(tiny["results"]), max_k=2)
    checked = 0
    for ref, use in uses.items():
        html = _neuron_page(site, ref.layer, ref.index)
        linked = set(re.findall(r'<a class="partner" href="[^"]*?(L\d+\.N\d+)\.html">', html))
        first = {}
        for u in use:  # the partners shown are those of each (feature, method)'s first k
            first.setdefault((u["feature"], u["method"]), u)
        expected = {p.id for u in first.values() for p in u["partners"]}
        assert linked == expected
        for partner in linked:
            layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)", partner).groups())
            assert _neuron_page(site, layer, index)  # the link's page exists
        checked += bool(expected)
    assert checked  # some probe with k >= 2 chose this neuron with others


def test_most_correlated_neurons_are_those_of_numpy_corrcoef(tiny):
    from needle.scope.site import correlated_neurons
    from needle.scope.tables import NeuronRef

    cache = tiny["cache"]
    refs = [NeuronRef(1, 5), NeuronRef(1, 30), NeuronRef(2, 0)]
    found = correlated_neurons(cache, refs, top=4, block=7)  # a block size that does not divide the width
    for ref in refs:
        matrix = np.asarray(cache.layer(ref.layer), dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(matrix, rowvar=False)[ref.index]
        r[ref.index] = np.nan
        valid = np.flatnonzero(np.isfinite(r))
        expected = valid[np.argsort(-np.abs(r[valid]), kind="stable")][:4]
        assert [p.index for p, _ in found[ref]] == expected.tolist()
        assert [v for _, v in found[ref]] == pytest.approx(r[expected].tolist(), abs=1e-9)
        assert all(p.layer == ref.layer for p, _ in found[ref])


def test_neuron_pages_link_co_selected_and_correlated_neurons(tiny):
    from needle.probing import load_results
    from needle.scope.site import correlated_neurons
    from needle.scope.tables import referenced_neurons

    site, cache = tiny["site"], tiny["cache"]
    uses = referenced_neurons(load_results(tiny["results"]), max_k=2)
    ref, use = next((r, u) for r, u in uses.items() if any(x["partners"] for x in u))
    html = _neuron_page(site, ref.layer, ref.index)
    co = re.search(r'<table class="data co-selected">(.*?)</table>', html, re.S).group(1)
    shown = re.findall(r"<tr><td>(?:<a href=\"[^\"]+\">)?(L\d+\.N\d+)(?:</a>)?</td>\s*<td class=\"num\">(\d+)</td>", co)
    counts = {}
    for u in use:
        for partner in u["partners"]:
            counts[partner.id] = counts.get(partner.id, 0) + 1
    assert {i: int(n) for i, n in shown} == counts
    assert [int(n) for _, n in shown] == sorted((int(n) for _, n in shown), reverse=True)
    corr = re.search(r'<table class="data correlated">(.*?)</table>', html, re.S).group(1)
    listed = re.findall(r"(L\d+\.N\d+)(?:</a>)?</td>\s*<td class=\"num\">(-?[\d.]+)</td>", corr)
    expected = correlated_neurons(cache, [ref], top=6)[ref]
    assert [i for i, _ in listed] == [p.id for p, _ in expected]
    assert [float(v) for _, v in listed] == pytest.approx([v for _, v in expected], abs=5e-4)
    assert f"{cache.n_rows} rows" in html
    for target in re.findall(r'href="\.\./\.\./(neurons/[^"]+)"', corr + co):
        assert (site / target).is_file()


def test_neuron_page_states_its_first_k_and_the_page_cap(tiny):
    from needle.probing import load_results
    from needle.scope.tables import referenced_neurons

    for ref, use in list(referenced_neurons(load_results(tiny["results"]), max_k=2).items())[:4]:
        html = unescape(_neuron_page(tiny["site"], ref.layer, ref.index))
        first = min(use, key=lambda u: (u["k"], u["feature"], u["method"]))
        assert (f"chosen at k = {first['k']} ({first['feature']}, {first['method']}); pages are built for the "
                "neurons of probes with k ≤ 2") in re.sub(r"<[^>]+>|\s+", lambda m: " " if m.group(0).isspace() else "",
                                                         html)


def test_try_it_links_carry_the_pages_example_text(tiny):
    from urllib.parse import parse_qs, urlsplit

    from needle.scope.render import context_text

    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[0]
    html = path.read_text()
    href = unescape(re.search(r'<a class="viewer-link" hidden href="([^"]+)"', html).group(1))
    query = parse_qs(urlsplit(href).query)
    first_example = re.search(r'<table class="data examples top">.*?<td class="ctx">(.*?)</td>', html, re.S).group(1)
    tokens = [unescape(t).replace("↵", "\n").replace("→", "\t")
              for t in re.findall(r"<span[^>]*>([^<]*)</span>", first_example)]
    assert query["text"] == [context_text(tokens)] and query["text"][0].strip()
    assert context_text(["[CLS]", "the", "cat", "##s", "sat", "[SEP]"]) == "the cats sat"
    assert context_text(["def", " f", "():\n", "   ", " x"]) == "def f():\n    x"
    # a binary feature page offers its probe, with an example from its error browser
    probes = {p["id"] for p in json.loads((tiny["site"] / "probes.json").read_text())}
    offered = 0
    for feature_page in sorted((tiny["site"] / "features").glob("*.html")):
        link = re.search(r'<a class="viewer-link" hidden href="([^"]+)"', feature_page.read_text())
        if link:
            query = parse_qs(urlsplit(unescape(link.group(1))).query)
            assert query["probe"][0] in probes and query["probe"][0].startswith(feature_page.stem + "/")
            offered += 1
    assert offered, "no feature page offers its probe to the viewer"


def test_notes_saved_beside_the_site_show_on_the_page(tiny):
    from needle.scope.server import notes_path, read_notes

    notes = read_notes(notes_path(tiny["site"]))
    assert notes == tiny["notes"] and notes
    for neuron, text in notes.items():
        layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)", neuron).groups())
        html = _neuron_page(tiny["site"], layer, index)
        area = re.search(r'<textarea id="notes"[^>]*>(.*?)</textarea>', html, re.S).group(1)
        assert unescape(area) == text and "<b>" not in area  # escaped, not markup
    other = sorted((tiny["site"] / "neurons").rglob("*.html"))
    assert any(re.search(r'<textarea id="notes"[^>]*></textarea>', p.read_text()) for p in other)


def test_most_negative_examples_carry_their_pre_activation(tiny):
    import torch

    from needle.neurons import Corpus, top_activations
    from needle.scope.site import bottom_pre_activations

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    page = sorted((site / "neurons").rglob("*.html"))[0]
    layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", page.name).groups())
    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=adapter.tokenizer)
    top = top_activations(adapter, corpus, [(layer, index)], n_top=8, n_bottom=4, per_band=2)
    pre = bottom_pre_activations(adapter, corpus, top, batch_tokens=64)  # several batches
    bottom = top[top["kind"] == "bottom"]
    assert len(pre) == len(bottom) == 4
    for r in bottom.itertuples(index=False):
        ids = torch.as_tensor(corpus.tokens[int(r.sequence)])[None]
        expected = adapter.capture(ids, torch.ones_like(ids), [layer], site="pre")[layer][0, int(r.position), index]
        assert pre[(layer, index, int(r.sequence), int(r.position))] == pytest.approx(float(expected), abs=1e-5)
    html = page.read_text()
    table = re.search(r'<table class="data examples bottom">(.*?)</table>', html, re.S).group(1)
    shown = re.findall(r'<td class="act">([^<]+)(?:<span[^<]*</span>)?</td>\s*<td class="num pre">([^<]+)</td>', table)
    assert len(shown) == 4
    ordered = sorted(((round(r.activation, 3), pre[(layer, index, int(r.sequence), int(r.position))])
                      for r in bottom.itertuples(index=False)))
    assert [float(v) for pair in shown for v in pair] == pytest.approx([v for pair in ordered for v in pair],
                                                                       abs=1.5e-3)


def test_tied_activations_are_ordered_by_pre_activation():
    from needle.scope.site import _order_ties

    rows = [{"activation": -0.16998, "pre": -0.5}, {"activation": -0.17001, "pre": -0.9},
            {"activation": -0.16, "pre": -2.0}, {"activation": -0.17, "pre": None}]
    assert [r["pre"] for r in _order_ties(rows)] == [-0.9, -0.5, None, -2.0]


def test_tied_scores_and_activations_are_marked():
    from needle.scope.site import _tie_counts

    assert _tie_counts([-0.1700, -0.16996, -0.1, 0.25, 0.2506]) == [2, 2, 1, 1, 1]
    assert _tie_counts([]) == []
    # the error browser counts ties over every error of a kind, not only the rows it shows
    assert _tie_counts([-0.5, 0.1], among=[-0.5, -0.50004, -0.5, 0.1, 0.3]) == [3, 1]


def test_a_floor_of_equal_negative_activations_is_named():
    import pandas as pd

    from needle.scope.site import _tied

    assert _tied(pd.Series([-0.16997, -0.16991, -0.17002])) == pytest.approx(-0.16997, abs=1e-4)
    assert _tied(pd.Series([-0.170, -0.160])) is None and _tied(pd.Series([-0.17])) is None


def test_neuron_page_states_firing_density_over_the_corpus(tiny):
    from needle.neurons import Corpus, firing_statistics

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    page = sorted((site / "neurons").rglob("*.html"))[0]
    layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", page.name).groups())
    html = page.read_text()
    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=adapter.tokenizer)
    row = firing_statistics(adapter, corpus, [(layer, index)]).iloc[0]
    shown = re.search(r"Fires \(activation &gt; 0\) on <strong>([\d.]+) %</strong> of the corpus's\s+(\d+) tokens "
                      r"\((\d+) tokens", html)
    assert float(shown.group(1)) == pytest.approx(100 * row["firing_density"], abs=0.01)
    assert (int(shown.group(2)), int(shown.group(3))) == (row["n_tokens"], row["n_firing"])
    assert '<div class="hist whole"><svg' in html


def test_histograms_and_logit_effects_match_the_cache_and_weights(tiny):
    from needle.neurons import neuron_logit_vector

    site, adapter, cache = tiny["site"], tiny["adapter"], tiny["cache"]
    page = sorted((site / "neurons").rglob("*.html"))[0]
    layer, index = (int(v) for v in re.fullmatch(r"L(\d+)\.N(\d+)\.html", page.name).groups())
    html = page.read_text()
    blocks = re.findall(r'<div class="hist" data-feature="([^"]+)">.*?mean on positives ([-\d.]+), on negatives '
                        r"([-\d.]+)", html, re.S)
    assert blocks
    for feature, mean_pos, mean_neg in blocks:
        rows, y = cache.feature(feature)
        values = np.asarray(cache.layer(layer)[rows, index], dtype=np.float64)
        assert float(mean_pos) == pytest.approx(values[y == 1].mean(), abs=1e-3)
        assert float(mean_neg) == pytest.approx(values[y == 0].mean(), abs=1e-3)
    # a causal model: the top logit-effect token is the argmax of W_U (γ ⊙ w_out)
    effects = neuron_logit_vector(adapter, layer, [index])[0]
    table = re.search(r'<h3>top tokens</h3><table class="data logits">(.*?)</table>', html, re.S).group(1)
    first = re.search(r'<td class="num">([-\d.]+)</td>', table).group(1)
    assert float(first) == pytest.approx(float(effects.max()), abs=1e-3)


def test_feature_page_lists_chosen_neurons_and_errors(tiny):
    from needle.probing import load_results

    results = load_results(tiny["results"])
    feature = sorted(results["feature"].unique())[0]
    html = (tiny["site"] / "features" / f"{feature}.html").read_text()
    row = results[(results["feature"] == feature) & (results["method"] == "mean_diff") & (results["k"] == 2)].iloc[0]
    table = re.search(rf'<table class="data probes" data-layer="{row.layer}" data-method="mean_diff">(.*?)</table>',
                      html, re.S).group(1)
    k2 = re.search(r'<tr><td class="num">2</td>.*?</tr>', table, re.S).group(0)
    shown = re.findall(r"L\d+\.N(\d+) <small>([-+.\de]+)</small>", unescape(k2))
    order = np.argsort(-np.abs(np.asarray(row.coef)), kind="stable")
    assert [int(n) for n, _ in shown] == [int(row.neurons[i]) for i in order]
    assert [float(c) for _, c in shown] == pytest.approx([row.coef[i] for i in order], rel=1e-2)
    assert "Error browser" in html and ("false positives" in html or "no splits" in html)
    assert 'class="data heat" data-method="f_stat"' in html


def test_bad_input_is_refused_without_leaving_a_site(tiny, tmp_path):
    import pandas as pd

    from needle.errors import InputError
    from needle.probing import load_results
    from needle.scope import build_site

    other = load_results(tiny["results"]).assign(dataset_hash="0" * 64)
    with pytest.raises(InputError, match="no rows of the cache"):
        build_site(other, tiny["cache"], tmp_path / "site", model=tiny["adapter"])
    baseline_only = load_results(tiny["results"]).query("method == 'dense'")
    with pytest.raises(InputError, match="only baseline rows"):
        build_site(baseline_only, tiny["cache"], tmp_path / "site", model=tiny["adapter"])
    with pytest.raises(InputError, match="lacks columns"):
        build_site(pd.DataFrame({"feature": ["x"], "model_id": ["m"], "dataset_hash": [tiny["cache"].manifest[
            "dataset_hash"]], "site": ["post"]}).assign(model_id=tiny["cache"].manifest["model_id"]),
            tiny["cache"], tmp_path / "site", model=tiny["adapter"])
    assert not (tmp_path / "site").exists()


def test_neuron_ids_and_page_names():
    from needle.errors import InputError
    from needle.scope import parse_neuron_id
    from needle.scope.tables import NeuronRef, feature_page_name, neuron_page_name

    assert parse_neuron_id("L3.N1201") == parse_neuron_id("l3 n1201") == parse_neuron_id("L3:N1201")
    assert parse_neuron_id("L3.N1201") == NeuronRef(3, 1201)
    assert NeuronRef(3, 1201).id == "L3.N1201" and neuron_page_name(NeuronRef(3, 7)) == "neurons/L3/L3.N7.html"
    with pytest.raises(InputError, match="L<layer>.N<index>"):
        parse_neuron_id("neuron 5")
    assert feature_page_name("comment") == "features/comment.html"
    odd = {feature_page_name("a/b"), feature_page_name("a?b"), feature_page_name("a b")}
    assert len(odd) == 3 and all(re.fullmatch(r"features/[A-Za-z0-9_.-]+\.html", p) for p in odd)


def test_cli_builds_a_site(tiny, tmp_path, monkeypatch, capsys):
    from test_cli import run_main

    code, err = run_main(monkeypatch, capsys, "scope", "build", "--results", str(tiny["results"]), "--cache",
                         str(tiny["cache"].path), "--out", str(tmp_path / "site"), "--model", str(tiny["model_dir"]),
                         "--max-k", "1", "--quiet")
    assert code == 0, err
    assert (tmp_path / "site" / "index.html").is_file()
    code, err = run_main(monkeypatch, capsys, "scope", "build", "--results", str(tiny["results"]), "--cache",
                         str(tmp_path / "nope"), "--out", str(tmp_path / "site2"))
    assert code == 2 and err.startswith("error:") and "Traceback" not in err


def test_every_printed_neuron_id_is_read_by_the_cli_and_the_viewer(tiny, tmp_path, monkeypatch, capsys):
    """An id copied from any page of the site works as ``needle neuron --neurons`` and in the viewer."""
    from needle.cli.neuron import _neurons
    from needle.scope import Viewer
    from test_cli import run_main

    site, adapter = tiny["site"], tiny["adapter"]
    printed = set()
    for page in [*site.rglob("*.html"), site / "search-index.js"]:
        text = unescape(page.read_text())
        printed |= set(re.findall(r"(?<![\w.])L\d+\.N\d+(?![\w])", text))
        assert not re.search(r"\bL\d+[ :/]?N\d+\b", text), page  # ids are printed in one form only
    pages = {p.stem for p in (site / "neurons").rglob("*.html")}
    assert pages and pages <= printed
    ordered = sorted(printed)
    pairs = _neurons(",".join(ordered))  # what --neurons does with the text
    assert [f"L{layer}.N{index}" for layer, index in pairs] == ordered
    viewer = Viewer.for_site(adapter, site)
    assert {ref.id for ref in viewer.neuron_pages} == pages
    example = "L3.N1201"  # the search box's example id; this 3-layer model has no such neuron
    assert example in printed and adapter.n_layers == 3
    for layer, index in [pair for pair, text in zip(pairs, ordered) if text != example]:
        answer = viewer.activations("x = 1", layer=layer, neuron=index)
        assert answer.get("page") == (f"/site/neurons/L{layer}/L{layer}.N{index}.html"
                                      if f"L{layer}.N{index}" in pages else None)
    (tmp_path / "text.py").write_text("def f(x):\n    return x + 1  # one\n")
    code, err = run_main(monkeypatch, capsys, "neuron", "top", "--model", str(tiny["model_dir"]), "--neurons",
                         ",".join(sorted(printed - {example})), "--file", str(tmp_path / "text.py"), "--context-length", "16",
                         "--n-top", "1", "--no-plot", "--out", str(tmp_path / "top.csv"))
    assert code == 0, err
    import pandas as pd

    top = pd.read_csv(tmp_path / "top.csv")
    assert set(zip(top["layer"], top["neuron"])) == set(pairs) - {(3, 1201)}


# ------------------------------------------------------------- tasks other than binary
def with_other_tasks(results):
    """The tiny sweep's rows (marked binary) plus two features copied from its first one: ``bracket_depth``
    (multiclass, three classes) and ``line_position`` (regression, R² below 0 at k = 1), with the metrics of
    their task as the three-task schema writes them. They reuse the copied probes' neurons, so every neuron page
    of the site exists already."""
    import pandas as pd

    binary = results.assign(task="binary", f1_weighted=results["f1"])
    source = binary[binary["feature"] == sorted(binary["feature"].unique())[0]]
    nan = float("nan")
    classification = {"f1": nan, "precision": nan, "recall": nan, "roc_auc": nan}
    multiclass = source.assign(
        feature="bracket_depth", task="multiclass", f1_macro=source["f1"] * 0.9, accuracy=source["f1"] * 0.95,
        mcc=source["f1"] * 0.8, f1_weighted=source["f1"] * 0.92, intercept=nan,
        coef=[np.concatenate([c, -2 * c, 0.5 * c]) for c in source["coef"]],
        class_intercepts=[np.array([0.1, -0.2, 0.1])] * len(source), **classification)
    regression = source.assign(
        feature="line_position", task="regression", r2=2 * source["f1"] - 1.6, spearman=source["f1"] * 0.9,
        pearson=source["f1"] * 0.85, mae=1.5 - source["f1"], mcc=nan, accuracy=nan, f1_weighted=nan,
        **classification)
    return pd.concat([binary, multiclass, regression], ignore_index=True)


@pytest.fixture(scope="module")
def tasks_site(tiny):
    from needle.probing import load_results
    from needle.probing.splits import load_splits, splits_path
    from needle.scope import SiteOptions, build_site

    results = with_other_tasks(load_results(tiny["results"]))
    site = build_site(results, tiny["cache"], tiny["root"] / "site-tasks", model=tiny["adapter"],
                      splits=load_splits(splits_path(tiny["results"])), max_sequences=None,
                      options=SiteOptions(max_k_pages=2, n_top=8, n_bottom=4, per_band=2))
    return {"site": site, "results": results}


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _table_headers(html: str, css: str) -> list[list[str]]:
    return [[_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
            for head in re.findall(rf'<table class="{css}"[^>]*>\s*<thead>(.*?)</thead>', html, re.S)]


def test_index_scores_each_task_by_its_metric(tasks_site):
    from needle.report._tasks import summary_by_task

    index = (tasks_site["site"] / "index.html").read_text()
    tables = dict(re.findall(r'<table class="data index" data-task="(\w+)">(.*?)</table>', index, re.S))
    assert set(tables) == {"binary", "multiclass", "regression"}
    heads = {task: [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
             for task, table in tables.items()}
    assert heads["binary"][3:8] == ["F1 k=1", "F1 k=8", "F1 dense", "precision k=1", "recall k=1"]
    assert heads["multiclass"][3:8] == ["macro-F1 k=1", "macro-F1 k=8", "macro-F1 dense", "accuracy k=1",
                                        "accuracy k=8"]
    assert heads["regression"][3:8] == ["R² k=1", "R² k=8", "R² dense", "Spearman k=1", "Spearman k=8"]
    summary = summary_by_task(tasks_site["results"])["regression"].iloc[0]
    cells = re.search(r'<tr data-feature="line_position">(.*?)</tr>', tables["regression"], re.S).group(1)
    numbers = re.findall(r'<td class="num">([^<]*)(?:<span[^>]*>[^<]*</span>)*</td>', cells)
    assert numbers[0] == str(summary.best_layer) and numbers[1] == f"{summary.r2_k1:.3f}"
    assert float(numbers[1]) < 0  # negative R² is shown as it is
    assert "R² against k (log scale)" in cells and "scored by R²" in index


def test_feature_pages_name_their_metric(tasks_site):
    site = tasks_site["site"]
    regression = (site / "features" / "line_position.html").read_text()
    text = _text(regression)
    assert "R² against k at layer" in text and "Test R² by layer and k" in text and "task regression" in text
    assert "Spearman" in text and "F1" not in text.replace("macro-F1", "")
    assert {tuple(h[:4]) for h in _table_headers(regression, "data probes")} == {("k", "R²", "Spearman", "MAE")}
    assert "largest residuals" in text and "data examples errors" not in regression
    multiclass = (site / "features" / "bracket_depth.html").read_text()
    text = _text(multiclass)
    assert "macro-F1 against k" in text and "Test macro-F1 by layer and k" in text
    assert {tuple(h[:4]) for h in _table_headers(multiclass, "data probes")} == {("k", "macro-F1", "accuracy",
                                                                                  "MCC")}
    assert "confusion table" in text and "data examples errors" not in multiclass


def test_multiclass_chips_show_each_neurons_largest_class_coefficient(tasks_site):
    results = tasks_site["results"]
    html = (tasks_site["site"] / "features" / "bracket_depth.html").read_text()
    row = results[(results["feature"] == "bracket_depth") & (results["method"] == "mean_diff")
                  & (results["k"] == 2)].iloc[0]
    table = re.search(rf'<table class="data probes" data-layer="{row.layer}" data-method="mean_diff">(.*?)</table>',
                      html, re.S).group(1)
    k2 = re.search(r'<tr><td class="num">2</td>.*?</tr>', table, re.S).group(0)
    shown = re.findall(r"L\d+\.N(\d+) <small>([-+.\de]+)</small>", unescape(k2))
    per_class = np.asarray(row.coef).reshape(3, 2)  # the copy's classes are c, -2c, c/2: -2c is the largest
    assert sorted((int(n), float(c)) for n, c in shown) == sorted(
        (int(n), pytest.approx(float(v), rel=1e-2)) for n, v in zip(row.neurons, per_class[1]))


def test_binary_pages_do_not_change_beside_other_tasks(tiny, tasks_site):
    def body(html: str) -> str:  # the footer counts the site's features, which the other tasks add to
        return re.sub(r"<footer>.*?</footer>", "", html, flags=re.S)

    for page in (tiny["site"] / "features").glob("*.html"):
        assert body(page.read_text()) == body((tasks_site["site"] / "features" / page.name).read_text()), page.name
    binary_only = json.loads((tiny["site"] / "probes.json").read_text())
    assert json.loads((tasks_site["site"] / "probes.json").read_text()) == binary_only  # viewer: binary probes only


def test_neuron_pages_show_other_tasks_scores_without_histograms(tasks_site):
    site, results = tasks_site["site"], tasks_site["results"]
    row = results[(results["feature"] == "line_position") & (results["k"] == 1)
                  & (results["method"] == "mean_diff")].sort_values("layer").iloc[0]
    html = _neuron_page(site, int(row.layer), int(row.neurons[0]))
    uses = re.search(r'<table class="data uses">(.*?)</table>', html, re.S).group(1)
    line = re.search(r'<tr><td><a href="[^"]+">line_position</a></td><td>mean_diff</td>(.*?)</tr>', uses, re.S)
    assert line and f"{row.r2:.3f}" in line.group(1) and "R²" in line.group(1)
    assert "probe score" in _text(uses)
    histograms = set(re.findall(r'<div class="hist" data-feature="([^"]+)">', html))
    assert histograms and not histograms & {"line_position", "bracket_depth"}
    assert "Not drawn for" in html and "line_position" in _text(html.split("Not drawn for")[1])[:80]
