"""``needle scope build``: a static, Neuroscope-style site of probing results and the neurons they found.

Layout of a site (opens from disk, no server needed)::

    index.html                  collections and features: best layer, F1 at k = 1 and 8, precision/recall, sparkline
    features/<feature>.html     layer × k heatmaps, neurons chosen at each k, the error browser
    neurons/L<l>/L<l>.N<i>.html one page per neuron referenced by a probe with k <= max_k_pages
    search-index.js             features, neuron ids and tokens for the search box (loaded on first use)
    probes.json                 sparse probes the interactive viewer can apply to text
    assets/                     CSS and JavaScript
    manifest.json               what made the site

Notes on neurons live beside the site, in ``<site>.notes.json`` (:func:`needle.scope.server.notes_path`), so that
rebuilding the site (which replaces its directory) keeps them; the build embeds them in the pages.

Every page carries only its own data, so a site with thousands of neurons
stays fast: no page loads another page's data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from needle._io import atomic_directory
from needle._version import __version__
from needle.errors import InputError, NeedleError
from needle.models.sites import site_id
from needle.probing.results import MIN_TEST_POSITIVES
from needle.report._tasks import metric_label
from needle.scope import svg
from needle.scope.render import chips_html, context_html, context_text, display_token, environment
from needle.scope.tables import (
    NeuronRef,
    chosen_neurons,
    f1_by_k,
    f1_by_layer_k,
    feature_index,
    feature_page_name,
    neuron_page_name,
    preferred_method,
    probe_catalogue,
    referenced_neurons,
    sparse_rows,
)

__all__ = ["build_site", "SiteOptions", "model_for_cache", "default_corpus", "correlated_neurons"]

#: ``format`` of a site's manifest.json; ``overwrite`` replaces only a directory of this kind.
SITE_FORMAT = "needle.ScopeSite"


@dataclass(frozen=True)
class SiteOptions:
    """How much a site shows.

    Attributes
    ----------
    max_k_pages : int or None, default 8
        Neurons chosen by a probe with ``k <= max_k_pages`` get a page (None: every referenced neuron).
    max_k_table : int, default 16
        Largest k listed in a feature page's table of chosen neurons.
    viewer_ks : tuple of int, default (1, 2, 4, 8)
        The k of the probes offered by the viewer (``probes.json``).
    n_top, n_bottom, per_band : int
        Max-activating, min-activating and per-quantile-band examples per neuron page.
    context : (int, int)
        Tokens shown before and after an example's token.
    n_errors : int, default 12
        False positives and false negatives shown per probe in the error browser.
    token_rows : int, default 25
        Rows of a neuron's per-token table.
    token_min_count : int, default 3
        Tokens seen fewer times on the corpus are left out of the per-token table.
    logit_rows : int, default 15
        Tokens listed at each end of a neuron's logit effects (causal LMs).
    n_related : int, default 6
        Most-correlated neurons (over the cache's rows) listed per neuron page.
    batch_tokens : int, default 8192
        Padded tokens per forward pass.
    """

    max_k_pages: int | None = 8
    max_k_table: int = 16
    viewer_ks: tuple[int, ...] = (1, 2, 4, 8)
    n_top: int = 20
    n_bottom: int = 10
    per_band: int = 4
    context: tuple[int, int] = (16, 4)
    n_errors: int = 12
    token_rows: int = 25
    token_min_count: int = 3
    logit_rows: int = 15
    n_related: int = 6
    batch_tokens: int = 8192


def model_for_cache(cache: Any) -> str:
    """The name to load the model a cache was extracted from: the alias when its hub id has one, else the id."""
    from needle.models.loading import ALIASES

    model_id = cache.manifest["model_id"]
    for alias, (_, hub_id) in ALIASES.items():
        if hub_id == model_id:
            return alias
    return model_id


def default_corpus(cache: Any, tokenizer: Any, *, max_sequences: int | None = 128) -> Any:
    """The sequences of the dataset the cache was extracted from, at most ``max_sequences`` of them spread evenly
    over the dataset (deterministic), so that the max-activating examples come from many documents."""
    from needle.neurons import Corpus

    corpus = Corpus.from_dataset(cache.dataset(), tokenizer=tokenizer)
    if max_sequences is not None and len(corpus) > max_sequences:
        corpus = corpus.subset(np.unique(np.linspace(0, len(corpus) - 1, int(max_sequences)).round().astype(int)))
    return corpus


def build_site(
    results: str | os.PathLike | pd.DataFrame,
    cache: Any,
    out: str | os.PathLike,
    *,
    model: Any = None,
    corpus: Any = None,
    splits: str | os.PathLike | pd.DataFrame | None = None,
    max_sequences: int | None = 128,
    options: SiteOptions = SiteOptions(),
    echo: Callable[[str], None] | None = None,
    progress: bool = False,
    extra_manifest: dict[str, Any] | None = None,
    universality: Any = None,
    transform: Any = None,
) -> Path:
    """Build the static site of a sweep into ``out`` (replaced atomically when complete).

    Parameters
    ----------
    results : path-like or DataFrame
        A results table (:func:`needle.probing.load_results`); only its rows of the cache's model, dataset and
        site are shown.
    cache : ActivationCache or path-like
        The cache the sweep read: class histograms and the error browser read it.
    out : path-like
        The site directory.
    model : ModelAdapter or str, optional
        The model, for the neuron pages' corpus pass (default: the cache's model, loaded by name).
    corpus : Corpus, optional
        Text the max-activating examples and per-token tables come from (default: the cache's dataset,
        :func:`default_corpus` with ``max_sequences``).
    splits : path-like or DataFrame, optional
        The sweep's train/test splits for the error browser (default: beside a results path).
    max_sequences : int or None, default 128
        Sequences of the default corpus.
    options : SiteOptions
    echo : callable, optional
        Receives progress lines.
    progress : bool, default False
        Progress bars during the corpus passes.
    extra_manifest : dict, optional
        Recorded in the site's ``manifest.json`` as given (e.g. what a caller needs to decide to reuse it).
    universality : UniversalityView or path-like, optional
        Add the universality view (:mod:`needle.scope.universality`; a path is ``needle universal correlate``'s output).
    transform : Transform, optional
        The transform of a cache of a transformed basis (an SAE, :func:`needle.sae.load_sae`): the pages are then
        of its latents, read through it in the corpus pass. Required for such a cache.

    Returns
    -------
    Path
        ``out``.
    """
    from needle.activations import load_cache
    from needle.probing import load_results
    from needle.probing.splits import load_splits, splits_path

    say = echo or (lambda line: None)
    started = time.perf_counter()
    results_name = "results"
    if not isinstance(results, pd.DataFrame):
        results_path = Path(results)
        results_name = results_path.name
        if splits is None and splits_path(results_path).is_file():
            splits = splits_path(results_path)
        results = load_results(results_path)
    if isinstance(cache, (str, os.PathLike)):
        cache = load_cache(cache)
    results = _rows_of_cache(results, cache)
    if isinstance(splits, (str, os.PathLike)):
        splits = load_splits(splits)

    dataset, dataset_note = None, ""
    try:
        dataset = cache.dataset()
    except NeedleError as exc:
        dataset_note = str(exc)

    uses = referenced_neurons(results, max_k=options.max_k_pages)
    pages = set(uses)
    say(f"site: {results['feature'].nunique()} features, {len(pages)} neurons referenced by probes with "
        f"k <= {options.max_k_pages}")

    if isinstance(model, (str, os.PathLike)) or model is None:
        from needle.models import load_model

        name = model if model is not None else model_for_cache(cache)
        try:
            model = load_model(name)
        except NeedleError as exc:
            raise InputError(f"cannot load the model of the cache ({exc}); pass --model.") from None
    if corpus is None:
        if dataset is None:
            raise InputError(f"no corpus for the neuron pages: {dataset_note} Pass --corpus FILES.")
        corpus = default_corpus(cache, model.tokenizer, max_sequences=max_sequences)
    corpus.check_model(model)

    site = _cache_site(cache, transform)
    analyses = _neuron_analyses(model, cache, site, corpus, results, uses, options, say, progress)
    analyses.correlated = correlated_neurons(cache, list(uses), top=options.n_related)
    from needle.scope.server import notes_path, read_notes

    analyses.notes = read_notes(notes_path(out))
    neuroscope = None
    if site.transform is None:  # per-source examples (9.58) and cos(w_in, w_out) lists (9.24) are of neurons
        from needle.scope.neuroscope import NeuroscopeData

        neuroscope = NeuroscopeData.build(model, corpus, list(uses), context=options.context,
                                          batch_tokens=options.batch_tokens, say=say)
    meta = _meta(results, cache, results_name, corpus, len(pages))
    env = environment(pages)
    feature_info = {f["name"]: f for f in cache.manifest.get("features", [])}
    index = feature_index(results, {name: info.get("description", "") for name, info in feature_info.items()})

    from needle.scope.universality import add_section, load_universality, write_universality  # Chapter 3

    if universality is not None and not hasattr(universality, "section"):
        universality = load_universality(universality)
    with atomic_directory(out, overwrite=True, kind=SITE_FORMAT) as tmp:
        _copy_assets(tmp)
        sections = write_universality(env, universality, tmp, meta, pages) if universality is not None else {}
        from needle.scope.neuroscope import SUPPRESSOR_PAGE, suppressor_list_html  # 9.50's list page
        from needle.scope.space_time import PAGE, space_time_page  # Chapter 4: a map or years page, when it applies

        page = space_time_page(env, cache, dataset, meta, tmp)
        if page is not None:
            meta = {**meta, "space_time_page": PAGE}
            _write(tmp / PAGE, page)
        suppressors = suppressor_list_html(analyses.attribution_summary, set(uses))
        if suppressors is not None:
            meta = {**meta, "suppressor_page": SUPPRESSOR_PAGE}
        _write(tmp / "index.html", _render_index(env, index, meta))
        for record in index:
            html = _render_feature(env, record, results, meta, pages, options,
                                   _feature_errors(cache, results, record, splits, dataset, dataset_note, model,
                                                   options))
            _write(tmp / record["page"], html)
        for ref, use in uses.items():
            _write(tmp / neuron_page_name(ref), add_section(_render_neuron(env, ref, use, analyses, meta, options,
                                                                           pages, cache.n_rows, neuroscope),
                                                            sections.get(ref)))
        if neuroscope is not None:
            neuroscope.write_pages(tmp, set(uses))
        if suppressors is not None:
            _write(tmp / SUPPRESSOR_PAGE, suppressors)
        _write(tmp / "search-index.js", _search_index(index, uses, analyses))
        _write(tmp / "probes.json", json.dumps(probe_catalogue(results, ks=options.viewer_ks)))
        _write(tmp / "manifest.json", json.dumps({
            "format": SITE_FORMAT, "version": 1, "needle_version": __version__, **meta,
            "neurons": [ref.id for ref in uses], "neuron_scales": _neuron_scales(analyses),
            "options": {**options.__dict__, "max_sequences": max_sequences},
            **(extra_manifest or {}),
        }, indent=2))
    say(f"site written to {Path(out)} in {time.perf_counter() - started:.0f} s")
    return Path(out)


# ---------------------------------------------------------------- inputs
def _rows_of_cache(results: pd.DataFrame, cache: Any) -> pd.DataFrame:
    manifest = cache.manifest
    keep = ((results["model_id"] == manifest["model_id"]) & (results["dataset_hash"] == manifest["dataset_hash"])
            & (results["site"].map(site_id) == site_id(manifest["site"])))
    if not keep.any():
        found = results[["model_id", "dataset_hash", "site"]].drop_duplicates().head(3).to_dict("records")
        raise InputError(f"the results have no rows of the cache's model {manifest['model_id']!r}, dataset "
                         f"{manifest['dataset_hash'][:12]}… and site {manifest['site']!r} (they have {found}); "
                         "pass the cache the sweep read.")
    return results[keep].reset_index(drop=True)


def _meta(results: pd.DataFrame, cache: Any, results_name: str, corpus: Any, n_neurons: int) -> dict[str, Any]:
    methods = [m for m in dict.fromkeys(sparse_rows(results)["method"])]
    return {
        "model_id": cache.manifest["model_id"],
        "site": cache.manifest["site"],
        "dataset_hash": cache.manifest["dataset_hash"],
        "results_name": results_name,
        "layers": ", ".join(str(layer) for layer in sorted(results["layer"].unique())),
        "methods": ", ".join(methods),
        "n_features": int(results["feature"].nunique()),
        "n_neurons": n_neurons,
        "corpus": f"{len(corpus)} sequences, {corpus.n_tokens} tokens",
        "needle_version": __version__,
        **_unit_names(cache.basis),
    }


def _unit_names(basis: str) -> dict[str, str]:
    """What a page's unit is called: a neuron, a residual or attention dimension, or a transform's latent."""
    known = {"neurons": "Neuron", "residual dimensions": "Residual dimension",
             "attention head dimensions": "Attention head dimension"}
    return {"basis": basis, "unit": known.get(basis, "Latent"),
            "unit_of": "" if basis in known else f" of {basis}"}


# ------------------------------------------------------------- analyses
@dataclass
class _NeuronData:
    top: pd.DataFrame
    tokens: pd.DataFrame
    histograms: dict[NeuronRef, list[dict]]
    logits: dict[NeuronRef, Any]
    logits_note: str
    attribution: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=["layer", "neuron"]))
    attribution_summary: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=["layer", "neuron"]))
    firing: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=["layer", "neuron"]))
    correlated: dict[NeuronRef, list[tuple[NeuronRef, float]]] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    bottom_pre: dict[tuple[int, int, int, int], float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # One groupby up front: filtering the long tables once per neuron page is quadratic.
        self.top_of = _split_by_neuron(self.top)
        self.tokens_of = _split_by_neuron(self.tokens)
        self.attribution_of = _split_by_neuron(self.attribution)
        self.attribution_summary_of = _split_by_neuron(self.attribution_summary)
        self.firing_of = _split_by_neuron(self.firing)


def _split_by_neuron(frame: pd.DataFrame) -> dict[NeuronRef, pd.DataFrame]:
    if not len(frame):
        return {}
    return {NeuronRef(int(layer), int(neuron)): part for (layer, neuron), part in frame.groupby(["layer", "neuron"])}


def _cache_site(cache: Any, transform: Any) -> Any:
    """The Site the cache's columns come from: its transform's latents need the transform object itself."""
    from needle.models.sites import get_site

    base = cache.site.split("+", 1)[0]
    if "+" not in cache.site:
        if transform is not None:
            raise InputError(f"transform: the cache {cache.path} holds {cache.basis} of {cache.site}, no transform's "
                             "latents; drop the transform (--sae).")
        return get_site(base)
    if transform is None:
        raise InputError(f"the cache {cache.path} holds the latents of {cache.basis}; pass its transform "
                         "(transform=load_sae(PATH), --sae PATH) to build their pages.")
    site = get_site(base, transform)
    if site.id != cache.site:
        raise InputError(f"transform: {transform.name} is not the cache's {cache.basis} ({cache.site}); pass the one "
                         "it was extracted with.")
    return site


def _neuron_analyses(model, cache, site, corpus, results, uses, options: SiteOptions, say, progress) -> _NeuronData:
    from needle.neurons import cache_distributions, firing_statistics, logit_effects, token_statistics, top_activations

    neurons = [(ref.layer, ref.index) for ref in uses]
    empty = pd.DataFrame(columns=["layer", "neuron"])
    top, tokens, firing, attribution, attribution_summary = empty, empty, empty, empty, empty
    bottom_pre: dict[tuple[int, int, int, int], float] = {}
    if neurons:
        t0 = time.perf_counter()
        say(f"  max-activating examples of {len(neurons)} neurons on {corpus!r} …")
        top = top_activations(model, corpus, neurons, site=site, n_top=options.n_top,
                              n_bottom=options.n_bottom, per_band=options.per_band, context=options.context,
                              batch_tokens=options.batch_tokens, progress=progress)
        say(f"  per-token statistics … ({time.perf_counter() - t0:.0f} s so far)")
        tokens = token_statistics(model, corpus, neurons, site=site, min_count=options.token_min_count,
                                  batch_tokens=options.batch_tokens, progress=progress)
        firing = firing_statistics(model, corpus, neurons, site=site, batch_tokens=options.batch_tokens,
                                   progress=progress, known_range=_activation_ranges(top))
        say(f"  corpus passes done in {time.perf_counter() - t0:.0f} s")
        if site_id(cache.site) == site_id("post"):
            bottom_pre = bottom_pre_activations(model, corpus, top, batch_tokens=options.batch_tokens)
    histograms: dict[NeuronRef, list[dict]] = {}
    by_feature: dict[str, list[NeuronRef]] = {}
    for ref, use in uses.items():
        # Positives against negatives is a binary picture; the cache holds labels of binary features only.
        for feature in dict.fromkeys(u["feature"] for u in use if u["task"] == "binary"):
            by_feature.setdefault(feature, []).append(ref)
    for feature, refs in by_feature.items():
        frame = cache_distributions(cache, feature, [(r.layer, r.index) for r in refs])
        for (layer, neuron), values in frame.groupby(["layer", "neuron"], sort=False):
            histograms.setdefault(NeuronRef(int(layer), int(neuron)), []).append(_histogram(feature, values))
    logits: dict[NeuronRef, Any] = {}
    note = ""
    if model.is_causal and site.transform is None:  # a latent's output direction is its decoder row, not w_out
        try:
            for ref in uses:
                logits[ref] = logit_effects(model, ref.layer, ref.index, top=options.logit_rows)
        except NeedleError as exc:
            logits, note = {}, str(exc)
        if logits and neurons:
            from needle.neurons import logit_attribution

            say("  examples by direct logit attribution …")
            try:
                found = logit_attribution(model, corpus, neurons, n_top=options.n_top, context=options.context,
                                          batch_tokens=options.batch_tokens, progress=progress)
                attribution, attribution_summary = found.examples, found.summary
            except NeedleError as exc:  # e.g. a SoLU model, whose neurons' direct effect is not activation × w_out
                say(f"  no direct logit attribution: {exc}")
    elif model.is_causal:  # a latent writes its decoder row: its logit effect is that row through W_U
        from needle.neurons import latent_logit_effects

        try:
            for ref in uses:
                logits[ref] = latent_logit_effects(model, site, ref.layer, ref.index, top=options.logit_rows)
        except NeedleError as exc:
            logits, note = {}, str(exc)
        if logits and neurons:  # activation × the decoder row's effect on the true next token
            from needle.neurons import logit_attribution

            say("  latent examples by direct logit attribution …")
            try:
                found = logit_attribution(model, corpus, neurons, site=site, n_top=options.n_top,
                                          context=options.context, batch_tokens=options.batch_tokens,
                                          progress=progress)
                attribution, attribution_summary = found.examples, found.summary
            except NeedleError as exc:
                say(f"  no direct logit attribution: {exc}")
    else:
        unit = "its neurons" if site.transform is None else f"the latents of {site.basis}"
        note = (f"{model.model_id} is an encoder ({model.family}): it has no unembedding, so {unit} have no "
                "direct effect on next-token logits: no logit effects and no examples by direct logit "
                "attribution.")
    return _NeuronData(top, tokens, histograms, logits, note, attribution, attribution_summary, firing,
                       bottom_pre=bottom_pre)


def _activation_ranges(top: pd.DataFrame) -> dict[tuple[int, int], tuple[float, float]]:
    """Each neuron's smallest and largest activation, from the top and bottom rows of a corpus pass."""
    extremes = top[top["kind"].isin(["top", "bottom"])]
    if not len(extremes) or set(extremes["kind"]) != {"top", "bottom"}:
        return {}
    grouped = extremes.groupby(["layer", "neuron"])["activation"]
    return {(int(layer), int(neuron)): (float(lo), float(hi))
            for (layer, neuron), lo, hi in zip(grouped.min().index, grouped.min(), grouped.max())}


def correlated_neurons(cache: Any, refs: list[NeuronRef], *, top: int = 6, block: int = 2048
                       ) -> dict[NeuronRef, list[tuple[NeuronRef, float]]]:
    """Each neuron's most correlated neurons of its own layer: Pearson correlation over the cache's rows (the
    labelled examples, or their aggregates, that the probes read), largest |r| first.

    Parameters
    ----------
    cache : ActivationCache
    refs : list of NeuronRef
        The neurons to list partners for; layers the cache lacks are skipped.
    top : int, default 6
        Partners per neuron.
    block : int, default 2048
        Most neurons of the layer read at once; fewer where n_rows × block float64 would pass 256 MiB.

    Returns
    -------
    dict of NeuronRef to list of (NeuronRef, float)
        The neuron itself, and neurons constant over the rows (no correlation), are never listed; ties in |r| go to
        the lower index.
    """
    out: dict[NeuronRef, list[tuple[NeuronRef, float]]] = {}
    by_layer: dict[int, list[NeuronRef]] = {}
    for ref in refs:
        if ref.layer in cache.layers:
            by_layer.setdefault(ref.layer, []).append(ref)
    for layer, members in by_layer.items():
        matrix = cache.layer(layer)
        n_rows, width = matrix.shape
        if n_rows < 3 or top <= 0:
            continue
        step = max(1, min(int(block), (256 << 20) // (8 * n_rows)))
        columns = np.asarray([r.index for r in members])
        chosen = np.asarray(matrix[:, columns], dtype=np.float64)
        chosen -= chosen.mean(axis=0)
        chosen_norm = np.sqrt((chosen * chosen).sum(axis=0))
        r = np.empty((len(members), width))
        for start in range(0, width, step):
            part = np.asarray(matrix[:, start:start + step], dtype=np.float64)
            part -= part.mean(axis=0)
            norm = np.sqrt((part * part).sum(axis=0))
            with np.errstate(invalid="ignore", divide="ignore"):
                r[:, start:start + step] = (chosen.T @ part) / np.outer(chosen_norm, norm)
        r[np.arange(len(members)), columns] = np.nan
        for i, ref in enumerate(members):
            row = r[i]
            valid = np.flatnonzero(np.isfinite(row))
            order = valid[np.argsort(-np.abs(row[valid]), kind="stable")][:top]
            out[ref] = [(NeuronRef(layer, int(j)), float(np.clip(row[j], -1.0, 1.0))) for j in order]
    return out


def bottom_pre_activations(model: Any, corpus: Any, top: pd.DataFrame, *, batch_tokens: int = 8192
                           ) -> dict[tuple[int, int, int, int], float]:
    """The pre-activation (``mlp.hook_pre``) of each most-negative example of :func:`needle.neurons.top_activations`:
    what tells apart examples that the activation function's floor (GELU's minimum, about −0.170) makes equal.

    One forward pass over the sequences of those examples only.

    Returns
    -------
    dict of (layer, neuron, sequence, position) to float
    """
    bottom = top[top["kind"] == "bottom"] if len(top) else top
    if not len(bottom):
        return {}
    wanted: dict[int, list[tuple[int, int, int]]] = {}
    for r in bottom.itertuples(index=False):
        wanted.setdefault(int(r.sequence), []).append((int(r.layer), int(r.neuron), int(r.position)))
    layers = sorted({int(layer) for layer in bottom["layer"]})
    out: dict[tuple[int, int, int, int], float] = {}
    for batch in corpus.batches(batch_tokens, sequences=list(wanted)):
        captured = model.capture(batch.input_ids, batch.attention_mask, layers, site="pre")
        for row, sequence in enumerate(batch.sequences):
            for layer, neuron, position in wanted[int(sequence)]:
                out[(layer, neuron, int(sequence), position)] = float(captured[layer][row, position, neuron])
    return out


def _order_ties(rows: list[dict], digits: int = 3) -> list[dict]:
    """Most-negative examples ordered by the activation as shown (``digits`` decimals), then, among ties, by
    pre-activation, lowest first (the input that pushes the neuron furthest below zero); rows without a
    pre-activation keep their order after those with one."""
    def key(item):
        i, r = item
        pre = r.get("pre")
        return (round(r["activation"], digits), pre is None, pre if pre is not None else 0.0, i)

    return [r for _, r in sorted(enumerate(rows), key=key)]


def _tie_counts(values, digits: int = 3, *, among=None) -> list[int]:
    """Per value, how many of ``among`` (default: the values themselves) show the same number at ``digits``
    decimals (1: no tie)."""
    def shown(v) -> str:
        return f"{float(v):.{digits}f}"

    counts: dict[str, int] = {}
    for v in (values if among is None else among):
        counts[shown(v)] = counts.get(shown(v), 0) + 1
    return [counts.get(shown(v), 1) for v in values]


def _tied(values: pd.Series, precision: float = 5e-4) -> float | None:
    """The shared value when every listed activation rounds alike at the page's 3 decimals (a floor), else None."""
    if len(values) < 2 or float(values.max() - values.min()) >= precision:
        return None
    return float(values.mean())


def _firing_view(data: _NeuronData, ref: NeuronRef) -> dict | None:
    """Firing density and the whole-corpus histogram of a neuron page."""
    part = data.firing_of.get(ref)
    if part is None or not len(part) or not int(part["n_tokens"].iloc[0]):
        return None
    row = part.iloc[0]
    return {"n_tokens": int(row["n_tokens"]), "n_firing": int(row["n_firing"]),
            "density": float(row["firing_density"]), "per_thousand": float(row["per_thousand"]),
            "mean": float(row["mean"]), "std": float(row["std"]), "min": float(row["min"]), "max": float(row["max"]),
            "svg": _markup(svg.histogram_chart(list(row["edges"]), {"all tokens": list(row["counts"])}))}


def _attribution_view(data: _NeuronData, ref: NeuronRef, top: pd.DataFrame, scale: float) -> dict | None:
    """The neuron page's direct-logit-attribution lists, their overlap with the top examples, and the mean."""
    table = data.attribution_of.get(ref)
    summary = data.attribution_summary_of.get(ref)
    if table is None or summary is None or not len(summary):
        return None
    lists = {}
    for kind in ("raises", "lowers"):
        part = table[table["kind"] == kind].sort_values("rank")
        lists[kind] = [{"rank": int(r.rank), "attribution": float(r.attribution), "activation": float(r.activation),
                        "next": display_token(str(r.next_token)), "group": r.group,
                        "html": context_html(list(r.context_tokens), list(r.context_activations), int(r.focus),
                                             scale)}
                       for r in part.itertuples(index=False)]
    from needle.neurons.dla import overlap

    counts = overlap(table, top, ref.layer, ref.index)
    row = summary.iloc[0]
    return {"raises": lists["raises"], "lowers": lists["lowers"], "shared": counts["shared"], "n_top": counts["top"],
            "mean": float(row["mean_attribution"]), "fraction_negative": float(row["fraction_negative"]),
            "n_tokens": int(row["n_tokens"]), "lowers_correct_token": bool(row["lowers_correct_token"])}


def _histogram(feature: str, values: pd.DataFrame, bins: int = 40) -> dict:
    activation = values["activation"].to_numpy(np.float64)
    y = values["y"].to_numpy()
    lo, hi = float(activation.min()), float(activation.max())
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    counts = {
        "positive": np.histogram(activation[y == 1], edges)[0].tolist(),
        "negative": np.histogram(activation[y == 0], edges)[0].tolist(),
    }
    return {"feature": feature, "svg": _markup(svg.histogram_chart(edges.tolist(), counts)),
            "mean_pos": float(activation[y == 1].mean()) if (y == 1).any() else None,
            "mean_neg": float(activation[y == 0].mean()) if (y == 0).any() else None,
            "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}


def _feature_errors(cache, results, record, splits, dataset, dataset_note, model, options) -> dict:
    """The error browser of a feature: the preferred method's probes at k = 1 and k = 8 at the best layer."""
    from needle.neurons import probe_errors

    if record["task"] == "multiclass":
        return {"note": "The error browser lists false positives and negatives, which a multiclass probe does not "
                        "have; a confusion table of its classes is not built yet (the error browser, "
                        "needle.neurons.probe_errors, scores binary probes only). The macro-F1 and accuracy above "
                        "summarise it."}
    if record["task"] == "regression":
        return {"note": "The error browser lists false positives and negatives, which a regression probe does not "
                        "have; a list of its largest residuals is not built yet (the error browser, "
                        "needle.neurons.probe_errors, scores binary probes only). The R² and Spearman correlation "
                        "above summarise it."}
    if splits is None:
        return {"note": "no splits table (results.splits.parquet beside the results) to tell test examples apart."}
    if dataset is None:
        return {"note": f"no contexts: {dataset_note}"}
    rows = sparse_rows(results)
    rows = rows[(rows["feature"] == record["feature"]) & (rows["layer"] == record["best_layer"])]
    method = preferred_method(rows["method"])
    sections = []
    for k in (1, 8):
        chosen = rows[(rows["method"] == method) & (rows["k"] == k)]
        if not len(chosen):
            continue
        row = chosen.iloc[0]
        frame = probe_errors(cache, row, splits, dataset=dataset, tokenizer=model.tokenizer,
                             context=options.context)
        kinds = []
        for key, name in (("false_positive", "false positives"), ("false_negative", "false negatives")):
            part = frame[frame["outcome"] == key]
            shown = part.head(options.n_errors)
            # Ties are counted over the whole kind, not only the rows shown: a GELU floor can tie hundreds.
            ties = _tie_counts(shown["score"], among=part["score"])
            kinds.append({"key": key, "name": name, "total": len(part), "rows": [
                {"score": float(r.score), "tie": tie, "text": context_text(list(r.context_tokens)),
                 "html": context_html(list(r.context_tokens), None, int(r.focus), 1.0,
                                      focus_end=int(r.focus) + max(1, min(int(r.end) - int(r.start), 64)))}
                for r, tie in zip(shown.itertuples(index=False), ties)],
                "tied": sum(1 for t in ties if t > 1)})
        sections.append({"title": f"{method}, k = {k}, layer {record['best_layer']}: F1 {row['f1']:.3f}, "
                                  f"precision {row['precision']:.3f}, recall {row['recall']:.3f}", "kinds": kinds})
    return {"sections": sections}


# ------------------------------------------------------------- rendering
def _markup(html: str):
    from markupsafe import Markup

    return Markup(html)


def _score_range(values, task: str) -> tuple[float, float]:
    """The y range of a task's scores rounded out to tenths; for R² from 0 or lower, down to
    :func:`~needle.report._tasks.r2_floor` (lower values are drawn on the edge)."""
    from needle.report._tasks import r2_floor

    values = [v for v in values if v is not None and not np.isnan(v)] or [0.0, 1.0]
    low, high = float(np.floor(min(values) * 10) / 10), float(np.ceil(max(values) * 10) / 10)
    if task == "regression":
        low, high = min(0.0, float(np.floor(r2_floor(values) * 10) / 10)), max(high, 0.0)
    return low, high


def _render_index(env, index: list[dict], meta: dict) -> str:
    tasks = list(dict.fromkeys(record["task"] for record in index))
    ranges = {task: _score_range([f for r in index if r["task"] == task for _, f in r["sparkline"]], task)
              for task in tasks}
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in index:
        spark = svg.sparkline(record["sparkline"], y_range=ranges[record["task"]], label=record["metric_label"])
        groups.setdefault((record["collection"], record["task"]), []).append({**record, "spark": _markup(spark)})
    sections = [{"collection": collection, "task": task, "label": rows[0]["metric_label"],
                 "extras": [label for label, _ in rows[0]["extras"]], "rows": rows, "spark_range": ranges[task],
                 "anchor": collection if len(tasks) == 1 else f"{collection}-{task}"}
                for (collection, task), rows in groups.items()]
    return env.get_template("index.html.j2").render(
        root="", meta=meta, sections=sections, mixed=len(tasks) > 1, min_positives=MIN_TEST_POSITIVES,
        labels=" / ".join(dict.fromkeys(r["metric_label"] for r in index)),
        viewer_hint="Interactive viewer: needle scope serve --model <model> --site <this directory>, then open "
                    "http://127.0.0.1:8765/ to type text and watch any neuron or probe fire.")


def _metric_title(task: str, row) -> str:
    """Hover text of a heatmap cell beyond its score: the task's secondary metrics."""
    from needle.report._tasks import SECONDARY_METRICS, metric_label

    return ", ".join(f"{metric_label(m)} {getattr(row, m, float('nan')):.3f}" for m in SECONDARY_METRICS[task])


def _render_feature(env, record, results, meta, pages, options: SiteOptions, errors: dict) -> str:
    from needle.report._tasks import SECONDARY_METRICS, with_score

    feature, best, task, label = record["feature"], record["best_layer"], record["task"], record["metric_label"]
    rows = results[results["feature"] == feature]
    sparse = with_score(sparse_rows(rows))
    heatmaps = []
    # Colours span this feature's own score range, so that where it lives shows even when every probe is mediocre.
    low, high = float(sparse["score"].min()), float(sparse["score"].max())
    truncated = False
    if task == "regression":
        from needle.report._tasks import r2_floor

        # Far-below-zero R² would wash the rest out; its cell keeps its number.
        low, truncated = r2_floor(sparse["score"]), r2_floor(sparse["score"]) > low
    for method in dict.fromkeys(sparse["method"]):
        grid = f1_by_layer_k(results, feature, method)
        by_key = {(int(r.layer), int(r.k)): r for r in sparse[sparse["method"] == method].itertuples(index=False)}
        best_8 = grid[8].idxmax() if 8 in grid.columns and grid[8].notna().any() else None
        heat_rows = []
        for layer in grid.index:
            cells = []
            for k in grid.columns:
                value = grid.loc[layer, k]
                r = by_key.get((int(layer), int(k)))
                f1 = None if pd.isna(value) else float(value)
                dark = f1 is not None and (f1 - low) > 0.6 * ((high - low) or 1.0)
                cells.append({"f1": f1, "colour": svg.heat_colour(f1, low, high), "dark": dark,
                              "best": k == 8 and layer == best_8,
                              "title": (f"layer {layer}, k={k}: {label} {f1:.3f}, {_metric_title(task, r)}")
                              if r is not None and f1 is not None else ""})
            heat_rows.append({"layer": int(layer), "cells": cells})
        heatmaps.append({"method": method, "ks": [int(k) for k in grid.columns], "rows": heat_rows})
    chosen = chosen_neurons(results, feature, max_k=options.max_k_table)
    secondary = SECONDARY_METRICS[task]
    probe_layers = []
    for layer in sorted(chosen["layer"].unique(), key=lambda layer: (layer != best, layer)):
        part = chosen[chosen["layer"] == layer]
        methods = []
        for method in dict.fromkeys(part["method"]):
            methods.append({"method": method, "rows": [
                {"k": r.k, "f1": r.score, "precision": r.metrics.get(secondary[0]),
                 "recall": r.metrics.get(secondary[1]),
                 "chips": chips_html(r.neurons, "../", pages)}
                for r in part[part["method"] == method].itertuples(index=False)]})
        probe_layers.append({"layer": int(layer), "open": int(layer) == best, "methods": methods})
    viewer = None
    method = preferred_method(sparse.loc[sparse["layer"] == best, "method"])
    at_best = sparse[(sparse["layer"] == best) & (sparse["method"] == method)]
    offered = [k for k in options.viewer_ks if k in set(at_best["k"])]  # probes.json has exactly these
    if task == "binary" and offered:
        texts = [r["text"] for e in errors.get("sections") or [] for kind in e["kinds"] for r in kind["rows"]]
        viewer = {"probe": f"{feature}/L{best}/{method}/k{max(offered)}", "k": max(offered), "method": method,
                  "text": texts[0] if texts else ""}
    first = rows[rows["layer"] == best].iloc[0] if len(rows[rows["layer"] == best]) else rows.iloc[0]
    counts = {c: int(first[c]) for c in ("n_train", "n_test", "n_train_pos", "n_test_pos") if c in first}
    curve_values = [f for c in f1_by_k(results, feature, best).values() for _, f in c]
    curve_low = min(0.0, float(np.floor(_score_range(curve_values, task)[0] * 4) / 4))
    return env.get_template("feature.html.j2").render(
        root="../", meta=meta, f=record, counts=counts, label=label,
        columns=[metric_label(m) for m in secondary],
        curve_floor=curve_low, curve_truncated=any(f < curve_low for f in curve_values), heat_truncated=truncated,
        curve=_markup(svg.f1_vs_k_chart(f1_by_k(results, feature, best), label=label,
                                        y_range=(curve_low, 1.0))),
        heatmaps=heatmaps, heat_range=(low, high), probe_layers=probe_layers, max_k_table=options.max_k_table,
        viewer=viewer,
        errors=errors.get("sections"), errors_note=errors.get("note", "no errors to show."))


def _related(ref: NeuronRef, use: list[dict], data: _NeuronData, pages: set[NeuronRef], n_rows: int) -> dict:
    """The neuron page's links to the neurons chosen with it and to the neurons most correlated with it."""
    probes: dict[NeuronRef, set[tuple]] = {}
    for u in use:
        for partner in u.get("partners", []):
            probes.setdefault(partner, set()).add((u["feature"], u["method"], u["k"]))
    co = sorted(probes.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "co_selected": [{"id": p.id, "page": neuron_page_name(p) if p in pages else None, "n": len(found),
                         "features": ", ".join(dict.fromkeys(f for f, _, _ in sorted(found)))}
                        for p, found in co],
        "correlated": [{"id": p.id, "page": neuron_page_name(p) if p in pages else None, "r": r}
                       for p, r in data.correlated.get(ref, [])],
        "n_rows": n_rows,
    }


def _render_neuron(env, ref: NeuronRef, use: list[dict], data: _NeuronData, meta: dict, options: SiteOptions,
                   pages: set[NeuronRef] | None = None, n_rows: int = 0, neuroscope: Any = None) -> str:
    top = data.top_of.get(ref, data.top.iloc[:0])
    extremes = top[top["kind"].isin(["top", "bottom"])]["activation"] if len(top) else pd.Series(dtype=float)
    scale = float(extremes.abs().max()) if len(extremes) else 0.0

    def examples(kind: str) -> list[dict]:
        if not len(top):
            return []
        part = top[top["kind"] == kind].sort_values("rank")
        ties = _tie_counts(part["activation"])
        return [{"rank": int(r.rank), "activation": float(r.activation), "group": r.group,
                 "layer_rank": int(getattr(r, "layer_rank", 0)), "tie": tie,
                 "sequence": int(getattr(r, "sequence", -1)), "position": int(getattr(r, "position", -1)),
                 "html": context_html(list(r.context_tokens), list(r.context_activations), int(r.focus), scale)}
                for r, tie in zip(part.itertuples(index=False), ties)]

    bands = []
    if len(top):
        for band, part in top[top["kind"] == "band"].groupby("band", sort=False):
            rows = [{"activation": float(r.activation), "group": r.group,
                     "html": context_html(list(r.context_tokens), list(r.context_activations), int(r.focus), scale)}
                    for r in part.sort_values("rank").itertuples(index=False)]
            bands.append({"band": band, "low": float(part["band_low"].iloc[0]),
                          "high": float(part["band_high"].iloc[0]), "rows": rows})
        bands.sort(key=lambda b: -b["low"])
    tokens = data.tokens_of.get(ref, data.tokens.iloc[:0])
    if len(tokens):
        tokens = tokens.sort_values(["mean", "token_id"], ascending=[False, True], kind="stable")
    token_rows = [{"token": display_token(str(getattr(r, "entry", r.token))), "id": int(r.token_id), "count": int(r.count),
                   "mean": float(r.mean), "std": float(r.std), "max": float(r.max)}
                  for r in tokens.head(options.token_rows).itertuples(index=False)]
    effects = data.logits.get(ref)
    logits = None
    if effects is not None:
        logits = {"mean": effects.mean, "variance": effects.variance, "skew": effects.skew,
                  "kurtosis": effects.kurtosis,
                  "tables": [(f"{kind} tokens", [{"token": display_token(str(r.token)), "effect": float(r.effect)}
                                                  for r in effects.table[effects.table["kind"] == kind].itertuples()])
                             for kind in ("top", "bottom")]}
    first = min(use, key=lambda u: (u["k"], u["feature"], u["method"])) if use else None
    top_rows = top[top["kind"] == "top"].sort_values("rank") if len(top) else top
    bottom = examples("bottom")
    if data.bottom_pre and bottom:
        for e in bottom:
            e["pre"] = data.bottom_pre.get((ref.layer, ref.index, e["sequence"], e["position"]))
        bottom = _order_ties(bottom)
    n = {
        "id": ref.id, "layer": ref.layer, "index": ref.index,
        "first": first,
        "viewer_text": context_text(list(top_rows["context_tokens"].iloc[0])) if len(top_rows) else "",
        "related": _related(ref, use, data, pages or set(), n_rows),
        "note": data.notes.get(ref.id, ""),
        "notes_key": f"{meta['model_id']}|{meta['site']}|{meta['dataset_hash'][:12]}",
        "bottom_ties": sum(1 for e in bottom if e["tie"] > 1),
        "bottom_pre": any(e.get("pre") is not None for e in bottom),
        "max": float(top[top["kind"] == "top"]["activation"].max()) if len(top) else None,
        "min": float(top[top["kind"] == "bottom"]["activation"].min()) if len(top) else None,
        "scale": scale,
        "uses": _group_uses(use), "max_k_pages": options.max_k_pages,
        "uses_binary": all(u["task"] == "binary" for u in use),
        "unhistogrammed": list(dict.fromkeys(u["feature"] for u in use if u["task"] != "binary")),
        "top": examples("top"), "bottom": bottom, "bands": bands,
        "bottom_tied": _tied(top[top["kind"] == "bottom"]["activation"] if len(top) else pd.Series(dtype=float)),
        "histograms": data.histograms.get(ref, []),
        "tokens": token_rows, "min_count": options.token_min_count,
        "logits": logits, "logits_note": data.logits_note,
        "attribution": _attribution_view(data, ref, top, scale),
        "firing": _firing_view(data, ref),
        "neuroscope": neuroscope.neuron_section(ref, "../../", scale) if neuroscope is not None else "",
    }
    return env.get_template("neuron.html.j2").render(root="../../", meta=meta, n=n)


def _neuron_scales(data: _NeuronData) -> dict[str, float]:
    """Each neuron's largest |activation| among its top and bottom examples: the colour scale of its page."""
    scales = {}
    for ref, part in data.top_of.items():
        extremes = part[part["kind"].isin(["top", "bottom"])]["activation"]
        if len(extremes):
            scales[ref.id] = float(extremes.abs().max())
    return scales


def _group_uses(use: list[dict]) -> list[dict]:
    """One row per (feature, method): the k where the neuron is first chosen, every k that keeps it, and its
    coefficient and the probe's primary score (F1, macro-F1 or R², named by ``metric``) at the first k."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for u in use:
        grouped.setdefault((u["feature"], u["method"]), []).append(u)
    rows = []
    for (feature, method), items in grouped.items():
        items = sorted(items, key=lambda u: u["k"])
        rows.append({"feature": feature, "method": method, "page": feature_page_name(feature), "k": items[0]["k"],
                     "ks": ", ".join(str(u["k"]) for u in items), "coef": items[0]["coef"],
                     "f1": items[0]["score"], "metric": metric_label(items[0]["metric"]),
                     "partners": [{"id": p.id, "page": neuron_page_name(p)} for p in items[0].get("partners", [])]})
    rows.sort(key=lambda r: (r["k"], r["feature"], r["method"]))
    return rows


def _search_index(index: list[dict], uses: dict[NeuronRef, list[dict]], data: _NeuronData) -> str:
    """``window.NEEDLE_SEARCH``: features, neurons (id, page, top tokens) and token → neurons."""
    neurons, tokens = [], {}
    for i, ref in enumerate(uses):
        part = data.top_of.get(ref)
        part = None if part is None else part[part["kind"] == "top"]
        words = []
        if part is not None:
            for token in part.sort_values("rank")["token"]:
                word = _search_key(str(token))
                if word and word not in words:
                    words.append(word)
        words = words[:6]
        neurons.append([ref.id, neuron_page_name(ref), " ".join(words)])
        for word in words:
            tokens.setdefault(word, []).append(i)
    payload = {
        "features": [[r["feature"], r["collection"], r["page"], r["description"]] for r in index],
        "neurons": neurons,
        "tokens": tokens,
    }
    return "window.NEEDLE_SEARCH = " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + ";\n"


def _search_key(token: str) -> str:
    token = token.strip()
    return (token[2:] if token.startswith("##") else token).lower()


def _copy_assets(root: Path) -> None:
    (root / "assets").mkdir(parents=True, exist_ok=True)
    for name in ("scope.css", "scope.js"):
        (root / "assets" / name).write_bytes(resources.files("needle.scope").joinpath("static", name).read_bytes())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
