"""The scope site's universality view (thesis Chapter 3): ϱ per layer, the universal neurons, and a section per neuron.

Pages, under a site's root::

    universality.html              ϱ by layer (table and distributions), the pair histograms against the
                                   baseline, the depth-specialisation matrix, the family table
    universality/L<l>.html         layer l: its ϱ distribution and its universal neurons with partners,
                                   families and roles
    neurons/L<l>/L<l>.N<i>.html    a "Universality" section: the neuron's partners in every other model with
                                   their correlations, its family tests, its role statistics

Read from the outputs of ``needle universal correlate`` (required),
``explain`` and ``roles`` / ``stats`` (optional). :func:`write_universality`
adds the view to a site being built (``build_site(..., universality=...)``)
and returns the neuron sections for the pages the site writes itself;
:func:`build_universality_site` makes a site of the view alone
(``needle universal scope``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from needle.errors import InputError
from needle.scope import svg
from needle.scope.render import format_number
from needle.scope.tables import NeuronRef, neuron_page_name

__all__ = ["PAGE", "UniversalityView", "add_section", "build_universality_site", "load_universality",
           "write_universality"]

PAGE = "universality.html"

#: Role statistics shown on a neuron's section, when the roles table has them.
ROLE_COLUMNS = ("role", "wu_kurtosis", "wu_skew", "logit_var", "weight_norm", "cos_in_out", "input_bias",
                "pre_kurtosis", "activation_frequency")

_BASE = '{% extends "base.html.j2" %}{% block title %}TITLE{% endblock %}{% block main %}BODY{% endblock %}'


@dataclass
class UniversalityView:
    """What the universality pages show.

    Attributes
    ----------
    correlations : UniversalCorrelations
    explanations : pandas.DataFrame or None
        ``needle universal explain``'s table: ``layer``, ``neuron``, ``rank``, ``test``, ``score``, ``family``.
    roles : pandas.DataFrame or None
        Per neuron (``layer``, ``neuron``) with any of :data:`ROLE_COLUMNS`.
    threshold : float
        Excess correlation above which a neuron is universal.
    """

    correlations: Any
    explanations: pd.DataFrame | None = None
    roles: pd.DataFrame | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        self.neurons = self.correlations.neurons
        self.universal = self.correlations.universal(self.threshold).sort_values(["layer", "excess"],
                                                                                  ascending=[True, False])
        self.models = list(self.correlations.params.get("models", []))[1:]
        self._tests = _by_neuron(self.explanations)
        self._roles = _by_neuron(self.roles)
        self._partners = _by_neuron(self.correlations.partners)

    def best_test(self, ref: NeuronRef) -> dict | None:
        part = self._tests.get(ref)
        if part is None or not len(part):
            return None
        row = part.sort_values("rank").iloc[0]
        return {"test": str(row["test"]), "score": float(row["score"]), "family": str(row["family"])}

    def role(self, ref: NeuronRef) -> str | None:
        part = self._roles.get(ref)
        return None if part is None or "role" not in part else str(part["role"].iloc[0])

    def section(self, ref: NeuronRef, root: str, pages: set[NeuronRef]) -> Markup | None:
        """The neuron page's universality section (None for a neuron the correlations do not cover)."""
        row = self.neurons[(self.neurons["layer"] == ref.layer) & (self.neurons["neuron"] == ref.index)]
        if not len(row):
            return None
        row = row.iloc[0]
        excess = float(row["excess"])
        verdict = "universal" if excess > self.threshold else "not universal"
        html = [f'<section class="universality"><h2>Universality</h2><p>Excess correlation ϱ = '
                f"<b>{format_number(excess)}</b> ({verdict} at ϱ &gt; {self.threshold:g}): mean over "
                f"{len(self.models)} other models of the max correlation {format_number(row['mean_max_corr'])} "
                f"less the rotated baseline's {format_number(row['mean_baseline'])}. "
                f'<a href="{root}{PAGE}">all layers</a> · <a href="{root}{_layer_page(ref.layer)}">layer '
                f"{ref.layer}</a></p>"]
        partners = self._partners.get(ref)
        html.append('<table class="data"><thead><tr><th>model</th><th class="num">max ρ</th><th>partners (ρ)</th>'
                    '<th class="num">min ρ</th><th class="num">baseline</th></tr></thead><tbody>')
        for model in self.models:
            listed = ""
            if partners is not None:
                mine = partners[partners["model"] == model].sort_values("rank")
                listed = ", ".join(f"{escape(p)} ({c:.3f})" for p, c in zip(mine["partner"], mine["corr"]))
            html.append(f"<tr><td>{escape(model)}</td><td class='num'>{format_number(row[f'{model}_max_corr'])}</td>"
                        f"<td>{listed}</td><td class='num'>{format_number(row[f'{model}_min_corr'])}</td>"
                        f"<td class='num'>{format_number(row[f'{model}_baseline'])}</td></tr>")
        html.append("</tbody></table>")
        tests = self._tests.get(ref)
        if tests is not None and len(tests):
            html.append("<h3>Family tests</h3><p class='hint'>Best labellings by variance reduction (Eq. 3.4; the "
                        "position test is a share of information).</p><table class='data'><thead><tr>"
                        "<th class='num'>rank</th><th>test</th><th>family</th><th class='num'>score</th></tr></thead>"
                        "<tbody>")
            for t in tests.sort_values("rank").itertuples(index=False):
                html.append(f"<tr><td class='num'>{int(t.rank)}</td><td>{escape(str(t.test))}</td>"
                            f"<td>{escape(str(t.family))}</td><td class='num'>{format_number(t.score)}</td></tr>")
            html.append("</tbody></table>")
        roles = self._roles.get(ref)
        if roles is not None and len(roles):
            r = roles.iloc[0]
            cells = [f"<span>{escape(c.replace('_', ' '))} <b>{escape(str(r[c])) if c == 'role' else format_number(r[c])}"
                     "</b></span>" for c in ROLE_COLUMNS if c in roles.columns]
            html.append("<h3>Role statistics</h3><div class='kv'>" + "".join(cells) + "</div>")
        html.append("</section>")
        return Markup("".join(html))


def _by_neuron(frame: pd.DataFrame | None) -> dict[NeuronRef, pd.DataFrame]:
    if frame is None or not len(frame):
        return {}
    return {NeuronRef(int(a), int(b)): part for (a, b), part in frame.groupby(["layer", "neuron"])}


def _layer_page(layer: int) -> str:
    return f"universality/L{int(layer)}.html"


def load_universality(correlations: Any, *, explain: str | os.PathLike | None = None,
                      roles: str | os.PathLike | None = None, threshold: float = 0.5) -> UniversalityView:
    """The view of the outputs of ``needle universal correlate`` / ``explain`` / ``roles`` (or ``stats``).

    Raises
    ------
    InputError
        A path that holds none of the expected tables.
    """
    from needle.universal.correlate import UniversalCorrelations

    if isinstance(correlations, UniversalCorrelations):
        corr = correlations
    else:
        if not (Path(correlations) / "neurons.parquet").is_file():
            raise InputError(f"{correlations} holds no neurons.parquet; pass the output of needle universal correlate.")
        corr = UniversalCorrelations.load(correlations)
    explanations = None
    if explain is not None:
        if not Path(explain).is_file():
            raise InputError(f"--explain {explain} is no file; pass the parquet file of needle universal explain.")
        explanations = pd.read_parquet(explain)
    role_table = None
    if roles is not None:
        root = Path(roles)
        found = [root / name for name in ("roles.parquet", "statistics.parquet") if (root / name).is_file()]
        if root.is_file():
            found = [root]
        if not found:
            raise InputError(f"--roles {roles} holds no roles.parquet or statistics.parquet; pass the output of "
                             "needle universal roles or stats.")
        role_table = pd.read_parquet(found[0])
    return UniversalityView(corr, explanations, role_table, float(threshold))


def _histogram_counts(values: np.ndarray, edges: np.ndarray) -> list[int]:
    return np.histogram(np.clip(values[np.isfinite(values)], edges[0], edges[-1]), edges)[0].tolist()


def _overview_body(view: UniversalityView) -> str:
    by_layer = view.correlations.by_layer(view.threshold)
    params = view.correlations.params
    edges = np.linspace(-0.2, 1.0, 25)
    per_layer = {f"layer {int(la)}": _histogram_counts(part["excess"].to_numpy(), edges)
                 for la, part in view.neurons.groupby("layer")}
    parts = [f"<h1>Universal neurons</h1><p class='muted'>Every neuron of {escape(str(params.get('models', ['?'])[0]))}"
             f" against every neuron of {escape(', '.join(view.models))} over {params.get('n_tokens', 0):,} tokens "
             f"(baseline: {escape(str(params.get('baseline', '')))}-random rotation of each layer). A neuron is "
             f"universal when its excess correlation ϱ exceeds {view.threshold:g} (thesis Eq. 3.3). Fractions carry "
             "their binomial standard error.</p>"]
    parts.append("<table class='data'><thead><tr><th>layer</th><th class='num'>neurons</th>"
                 "<th class='num'>universal</th><th class='num'>%</th><th class='num'>± s.e.</th>"
                 "<th class='num'>median ϱ</th><th class='num'>mean max ρ</th><th class='num'>mean baseline</th>"
                 "</tr></thead><tbody>")
    for r in by_layer.itertuples(index=False):
        name = "all" if r.layer < 0 else f"<a href='{_layer_page(r.layer)}'>{int(r.layer)}</a>"
        parts.append(f"<tr><td>{name}</td><td class='num'>{r.n_neurons:,}</td><td class='num'>{r.n_universal:,}</td>"
                     f"<td class='num'>{100 * r.fraction:.2f}</td><td class='num'>{100 * r.se:.2f}</td>"
                     f"<td class='num'>{r.median_excess:.3f}</td><td class='num'>{r.mean_max_corr:.3f}</td>"
                     f"<td class='num'>{r.mean_baseline:.3f}</td></tr>")
    parts.append("</tbody></table><h2>ϱ by layer</h2>")
    parts.append(svg.histogram_chart(edges.tolist(), per_layer, x_label="excess correlation ϱ"))
    hist = view.correlations.histograms
    if len(hist):
        parts.append("<h2>All neuron pairs against the baseline</h2><p class='hint'>Correlations of every pair of "
                     "neurons, and of every neuron with every rotated direction, per compared model.</p>")
        for model, part in hist.groupby("model", sort=False):
            groups = {kind: g.sort_values("lo") for kind, g in part.groupby("kind")}
            first = next(iter(groups.values()))
            chart_edges = [*first["lo"].tolist(), float(first["hi"].iloc[-1])]
            parts.append(f"<h3>{escape(str(model))}</h3>" + svg.histogram_chart(
                chart_edges, {kind: g["count"].tolist() for kind, g in groups.items()}, x_label="ρ"))
    pairs = view.correlations.layer_pairs
    if len(pairs):
        matrix = pairs.pivot_table(index="layer", columns="partner_layer", values="fraction", aggfunc="mean")
        parts.append("<h2>Depth specialisation</h2><p class='hint'>Share of each layer's neurons whose best partner "
                     "lies in each layer of the other models (thesis Figure 3.2c).</p><table class='data'><thead><tr>"
                     "<th>layer \\ partner layer</th>" + "".join(f"<th class='num'>{int(c)}</th>" for c in matrix.columns)
                     + "</tr></thead><tbody>")
        for layer, row in matrix.iterrows():
            parts.append(f"<tr><td>{int(layer)}</td>" + "".join(
                f"<td class='num' style='background:{svg.heat_colour(v, 0.0, 1.0)}'>{format_number(v, 2)}</td>"
                for v in row.to_numpy()) + "</tr>")
        parts.append("</tbody></table>")
    families = _family_table(view)
    if families is not None:
        parts.append(f"<h2>Families of the universal neurons</h2><p class='hint'>The family of each universal neuron's "
                     f"best test (§3.4.3), by layer.</p>{families.to_html(border=0, classes='data')}")
    return "".join(parts)


def _family_table(view: UniversalityView) -> pd.DataFrame | None:
    if view.explanations is None or not len(view.universal):
        return None
    best = view.explanations[view.explanations["rank"] == 0]
    keys = set(zip(view.universal["layer"].astype(int), view.universal["neuron"].astype(int)))
    best = best[[k in keys for k in zip(best["layer"].astype(int), best["neuron"].astype(int))]]
    if not len(best):
        return None
    return best.pivot_table(index="layer", columns="family", values="neuron", aggfunc="count", fill_value=0)


def _layer_body(view: UniversalityView, layer: int, pages: set[NeuronRef]) -> str:
    part = view.neurons[view.neurons["layer"] == layer]
    edges = np.linspace(-0.2, 1.0, 25)
    chosen = view.universal[view.universal["layer"] == layer]
    parts = [f"<h1>Layer {layer}: universality</h1><p><a href='../{PAGE}'>all layers</a></p>"
             f"<p class='muted'>{len(chosen)} of {len(part)} neurons universal (ϱ &gt; {view.threshold:g}).</p>",
             svg.histogram_chart(edges.tolist(), {"ϱ": _histogram_counts(part["excess"].to_numpy(), edges)},
                                 x_label="excess correlation ϱ")]
    corr_edges = np.linspace(0, 1, 21)
    parts.append(svg.histogram_chart(corr_edges.tolist(), {
        "mean max ρ": _histogram_counts(part["mean_max_corr"].to_numpy(), corr_edges),
        "mean baseline": _histogram_counts(part["mean_baseline"].to_numpy(), corr_edges)}, x_label="correlation"))
    head = "".join(f"<th>{escape(m)} partner (ρ)</th>" for m in view.models)
    parts.append(f"<h2>Universal neurons</h2><table class='data'><thead><tr><th>neuron</th><th class='num'>ϱ</th>"
                 f"<th class='num'>mean max ρ</th><th class='num'>baseline</th>{head}<th>best test</th><th>family</th>"
                 "<th>role</th></tr></thead><tbody>")
    for r in chosen.to_dict("records"):
        ref = NeuronRef(int(r["layer"]), int(r["neuron"]))
        name = f"<a href='../{neuron_page_name(ref)}'>{ref.id}</a>" if ref in pages else ref.id
        cells = "".join(f"<td>{escape(str(r[f'{m}_partner']))} ({format_number(r[f'{m}_max_corr'])})</td>"
                        for m in view.models)
        test = view.best_test(ref)
        role = view.role(ref)
        parts.append(f"<tr><td>{name}</td><td class='num'>{format_number(r['excess'])}</td>"
                     f"<td class='num'>{format_number(r['mean_max_corr'])}</td>"
                     f"<td class='num'>{format_number(r['mean_baseline'])}</td>{cells}"
                     f"<td>{escape(test['test']) + ' (' + format_number(test['score']) + ')' if test else '–'}</td>"
                     f"<td>{escape(test['family']) if test else '–'}</td><td>{escape(role) if role else '–'}</td></tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _render(env: Any, title: str, body: str, root: str, meta: Mapping[str, Any]) -> str:
    template = env.from_string(_BASE.replace("TITLE", "{{ title }}").replace("BODY", "{{ body }}"))
    return template.render(title=title, body=Markup(body), root=root, meta=meta)


def write_universality(env: Any, view: UniversalityView, root: str | os.PathLike, meta: Mapping[str, Any],
                       pages: set[NeuronRef]) -> dict[NeuronRef, Markup]:
    """Write the overview and layer pages under ``root``, and a page for every universal neuron not in ``pages``.

    Parameters
    ----------
    env : jinja2.Environment
        The site's (:func:`needle.scope.render.environment`).
    view : UniversalityView
    root : path-like
        The site directory being written.
    meta : mapping
        What the site's base template shows (``model_id``, ``site``, ``needle_version``, ...).
    pages : set of NeuronRef
        The neuron pages the site writes itself.

    Returns
    -------
    dict of NeuronRef to Markup
        The universality section of each of ``pages`` the correlations cover: add it with :func:`add_section`.
    """
    root = Path(root)
    universal_refs = {NeuronRef(int(a), int(b)) for a, b in zip(view.universal["layer"], view.universal["neuron"])}
    all_pages = set(pages) | universal_refs
    _write(root / PAGE, _render(env, "universality", _overview_body(view), "", meta))
    for layer in sorted(view.neurons["layer"].unique()):
        _write(root / _layer_page(int(layer)),
               _render(env, f"layer {int(layer)} universality", _layer_body(view, int(layer), all_pages), "../", meta))
    for ref in sorted(universal_refs - set(pages), key=lambda r: (r.layer, r.index)):
        section = view.section(ref, "../../", all_pages)
        body = f"<h1>Neuron {ref.id}</h1>{section}"
        _write(root / neuron_page_name(ref), _render(env, ref.id, body, "../../", meta))
    sections = {}
    for ref in pages:
        section = view.section(ref, "../../", all_pages)
        if section is not None:
            sections[ref] = section
    return sections


def add_section(html: str, section: Markup | None) -> str:
    """``html`` (a neuron page) with ``section`` inserted before its footer."""
    if section is None:
        return html
    marker = "<footer>"
    at = html.rfind(marker)
    return html[:at] + str(section) + "\n" + html[at:] if at >= 0 else html + str(section)


def build_universality_site(view: UniversalityView, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """A site of the universality view alone (no probing results): its pages, the assets and a search index of
    the universal neurons. Opens from ``out/universality.html``."""
    from needle._io import atomic_directory
    from needle._version import __version__
    from needle.scope.render import environment
    from needle.scope.site import SITE_FORMAT, _copy_assets

    params = view.correlations.params
    universal_refs = {NeuronRef(int(a), int(b)) for a, b in zip(view.universal["layer"], view.universal["neuron"])}
    meta = {"model_id": str(params.get("models", ["?"])[0]), "site": str(params.get("site", "post")),
            "needle_version": __version__, "results_name": "universal correlations",
            "dataset_hash": str(params.get("fingerprint", "")), "n_features": 0, "n_neurons": len(universal_refs)}
    env = environment(universal_refs)
    with atomic_directory(out, overwrite=overwrite, kind=SITE_FORMAT) as tmp:
        _copy_assets(tmp)
        write_universality(env, view, tmp, meta, set())
        _write(tmp / "index.html", _render(env, "index", f"<h1>needle scope</h1><p><a href='{PAGE}'>Universal "
                                                          "neurons</a></p>", "", meta))
        neurons = [[ref.id, neuron_page_name(ref), ""] for ref in sorted(universal_refs, key=lambda r: (r.layer, r.index))]
        _write(tmp / "search-index.js", "window.NEEDLE_SEARCH = " + json.dumps(
            {"features": [], "neurons": neurons, "tokens": {}}, separators=(",", ":")) + ";\n")
        _write(tmp / "manifest.json", json.dumps({"format": SITE_FORMAT, "version": 1, "needle_version": __version__,
                                                  "universality": True, "threshold": view.threshold,
                                                  "n_universal": len(universal_refs)}, indent=2))
    return Path(out)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
