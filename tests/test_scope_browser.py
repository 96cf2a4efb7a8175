"""The site and the viewer in a real headless Chromium (the system's, driven by Playwright; nothing downloaded).

Skipped, with the reason, where Playwright or a Chromium executable is missing:
``pip install -e '.[dev]'`` and ``apt-get install chromium`` (``.ci/run`` does both).
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch

from test_scope_site import make_tiny_sweep

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="Playwright is not installed: pip install -e '.[dev]'")


def _chromium() -> str | None:
    for candidate in (os.environ.get("NEEDLE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable (apt-get install chromium, or set "
                                                         "NEEDLE_CHROMIUM to one); browser tests skipped")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bpe_tokenizer):
    from needle.scope import SiteOptions, build_site

    info = make_tiny_sweep(tmp_path_factory.mktemp("browser"), bpe_tokenizer)
    info["site"] = build_site(info["results"], info["cache"], info["root"] / "site", model=info["adapter"],
                              max_sequences=None, options=SiteOptions(max_k_pages=1, n_top=6, n_bottom=3, per_band=1))
    return info


@pytest.fixture(scope="module")
def server(tiny):
    from needle.scope import Viewer, make_server, serve_in_thread

    viewer = Viewer.for_site(tiny["adapter"], tiny["site"])
    assert viewer.probes and viewer.neuron_pages and viewer.neuron_scales
    httpd = make_server(viewer, port=0, site_dir=tiny["site"])
    serve_in_thread(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_index_opens_from_disk(tiny, page):
    from needle.probing import load_results

    page.goto((tiny["site"] / "index.html").as_uri())
    features = set(load_results(tiny["results"])["feature"])
    shown = set(page.locator("table.index tr[data-feature]").evaluate_all("rows => rows.map(r => r.dataset.feature)"))
    assert shown == features
    assert page.locator("svg.spark").count() == len(features)


def test_search_finds_a_neuron_and_opens_its_page(tiny, page):
    neuron = sorted((tiny["site"] / "neurons").rglob("*.html"))[0].stem  # e.g. L1.N17
    page.goto((tiny["site"] / "index.html").as_uri())
    page.fill(".search input", neuron.lower())
    first = page.locator(".search li a.result").first
    first.wait_for()
    assert first.locator("b").inner_text() == neuron
    first.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == f"Neuron {neuron}"
    # a feature name and a token find things too
    page.fill(".search input", "comment")
    page.locator(".search li a.result[data-kind=feature]").first.wait_for()
    page.fill(".search input", "zzzz-no-such-thing")
    assert "nothing found" in page.locator(".search li.none").inner_text()


def test_search_reads_every_neuron_id_form(tiny, page):
    """The search box reads the forms needle.neurons.ids reads (L3.N120, L3N120, 3:120, l3.n120)."""
    neuron = sorted((tiny["site"] / "neurons").rglob("*.html"))[0].stem  # e.g. L1.N17
    layer, index = re.fullmatch(r"L(\d+)\.N(\d+)", neuron).groups()
    page.goto((tiny["site"] / "index.html").as_uri())
    for text in (neuron, f"L{layer}N{index}", f"{layer}:{index}", f" l{layer} . n{index} "):
        page.fill(".search input", text)
        first = page.locator(".search li a.result").first
        first.wait_for()
        assert first.locator("b").inner_text() == neuron, text


def test_search_by_token(tiny, page):
    import json

    index = json.loads((tiny["site"] / "search-index.js").read_text().split("=", 1)[1].strip().rstrip(";"))
    token, members = next(iter(sorted(index["tokens"].items())))
    page.goto((tiny["site"] / "index.html").as_uri())
    page.fill(".search input", token)
    page.locator(".search li a.result").first.wait_for()
    labels = page.locator(".search li a.result b").all_inner_texts()
    assert {index["neurons"][i][0] for i in members} <= set(labels)


def test_neuron_page_shows_highlighted_examples(tiny, page):
    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[0]
    page.goto(path.as_uri())
    rows = page.locator("table.examples.top tbody tr")
    assert rows.count() == 6
    focus = page.locator("table.examples.top .tok.focus").first
    value = float(focus.get_attribute("data-v"))
    shown = float(rows.first.locator("td.act").inner_text())
    assert value == pytest.approx(shown, abs=1e-3)
    colour = focus.evaluate("el => getComputedStyle(el).backgroundColor")
    alpha = re.match(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", colour)
    assert alpha and float(alpha.group(4) or 1) > 0.5  # the top example's token is strongly coloured
    focus.hover()
    tip = page.locator(".tip")
    tip.wait_for(state="visible")
    assert focus.get_attribute("data-v") in tip.inner_text()


def test_viewer_shows_the_activations_the_api_computes(tiny, server, page):
    adapter = tiny["adapter"]
    text = "for item in values:\n    total += item  # sum\n"
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.select_option("#layer", "1")
    page.fill("#neuron", "7")
    page.fill("#text", text)
    page.click("#run")
    page.wait_for_selector("#tokens .tok")
    page.wait_for_function("document.querySelector('#result-title').textContent.includes('L1.N7')")
    shown = [float(v) for v in page.locator("#tokens .tok").evaluate_all("spans => spans.map(s => s.dataset.v)")]
    ids = torch.tensor([adapter.tokenizer(text)["input_ids"]])
    expected = adapter.capture(ids, torch.ones_like(ids), [1])[1][0, :, 7].tolist()
    assert shown == pytest.approx(expected, abs=1e-4)  # the page shows 4 decimals
    shown_text = page.locator("#tokens").evaluate(
        "el => [...el.childNodes].filter(n => !(n.classList && n.classList.contains('special')))"
        ".map(n => n.textContent).join('')")
    assert shown_text == text  # the text as typed, line breaks and indentation kept
    # a probe: its layer is taken, and the table gains the probability column
    probe_id = page.locator("#probe option").nth(1).get_attribute("value")
    page.select_option("#probe", probe_id)
    page.click("#run")
    page.wait_for_selector("#probe-legend:not([hidden])")
    assert page.locator("#table tbody tr").first.locator("td").count() == 5
    # bad input: a clear message on the page, no stack trace
    page.fill("#text", "")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "empty" in page.locator("#error").inner_text()


def test_site_served_by_the_viewer_links_back(tiny, server, page):
    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[0]
    relative = path.relative_to(tiny["site"]).as_posix()
    page.goto(f"{server}/site/{relative}")
    link = page.locator("a.viewer-link")
    assert link.is_visible()
    link.click()
    page.wait_for_selector("body[data-ready='1']")
    layer, index = re.fullmatch(r"L(\d+)\.N(\d+)", path.stem).groups()
    assert page.locator("#layer").input_value() == layer and page.locator("#neuron").input_value() == index


def test_viewer_probe_mode_colours_tokens_by_the_probes_score(tiny, server, page):
    import json
    from urllib.parse import urlencode

    import numpy as np

    adapter = tiny["adapter"]
    probes = json.loads((tiny["site"] / "probes.json").read_text())
    probe = max(probes, key=lambda p: (p["k"], p["id"]))  # a probe of several neurons: no single neuron equals it
    text = "x = 1  # a comment\nprint(x)\n"
    page.goto(server + "/?" + urlencode({"probe": probe["id"], "text": text}))
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("body[data-mode='probe'] #tokens .tok")
    shown = [float(v) for v in page.locator("#tokens .tok").evaluate_all("spans => spans.map(s => s.dataset.v)")]
    ids = torch.tensor([adapter.tokenizer(text)["input_ids"]])
    acts = adapter.capture(ids, torch.ones_like(ids), [probe["layer"]])[probe["layer"]][0].double().numpy()
    scores = acts[:, probe["neurons"]] @ np.asarray(probe["coef"]) + probe["intercept"]
    assert shown == pytest.approx(scores.tolist(), abs=1e-4)  # the page shows 4 decimals
    alphas = page.locator("#tokens .tok").evaluate_all(
        "spans => spans.map(s => Number(getComputedStyle(s).getPropertyValue('--a')))")
    assert alphas == pytest.approx(np.minimum(1, np.abs(scores) / np.abs(scores).max()).tolist(), abs=2e-3)
    assert "coloured by the probe's score" in page.locator("#result-title").inner_text()
    assert page.locator("#tokens .tok.hit").count() == int((scores > 0).sum())


def test_try_it_on_your_own_text_carries_the_example(tiny, server, page):
    from html import unescape
    from urllib.parse import parse_qs, urlsplit

    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[0]
    href = unescape(re.search(r'<a class="viewer-link" hidden href="([^"]+)"', path.read_text()).group(1))
    text = parse_qs(urlsplit(href).query)["text"][0]
    page.goto(f"{server}/site/{path.relative_to(tiny['site']).as_posix()}")
    page.locator("a.viewer-link").click()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#text").input_value() == text
    page.wait_for_selector("#tokens .tok")  # it runs on arrival


def test_notes_saved_beside_the_site_when_served(tiny, server, page):
    from needle.scope.server import notes_path, read_notes

    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[-1]
    page.goto(f"{server}/site/{path.relative_to(tiny['site']).as_posix()}")
    page.wait_for_function("document.querySelector('#notes-status').textContent.includes('beside the site')")
    page.fill("#notes", "looks like a comment detector")
    page.wait_for_selector("body[data-notes-saved='1']")
    assert read_notes(notes_path(tiny["site"]))[path.stem] == "looks like a comment detector"
    page.reload()
    page.wait_for_function("document.querySelector('#notes').value === 'looks like a comment detector'")


def test_notes_from_disk_stay_in_the_browser(tiny, page):
    path = sorted((tiny["site"] / "neurons").rglob("*.html"))[0]
    page.goto(path.as_uri())
    page.fill("#notes", "kept locally")
    assert "this browser only" in page.locator("#notes-status").inner_text()
    page.reload()
    assert page.locator("#notes").input_value() == "kept locally"
