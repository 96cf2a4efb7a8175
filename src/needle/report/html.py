"""The static HTML report of a sweep: one self-contained page, figures embedded.

With a scope site (``needle scope build``) the report links into it: each feature's name in the summary tables
and its point on the precision–recall scatter open the feature's page, and a best single neuron that has a page
opens that page. The scatter's points carry their name, precision, recall and F1 on hover, for the features the
figure leaves unlabelled (:data:`~needle.report.figures.MAX_SCATTER_LABELS` are named).
"""

from __future__ import annotations

import base64
import json
import os
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from needle._io import atomic_file
from needle._version import __version__
from needle.errors import InputError
from needle.probing.constants import HEATMAP_METHOD_PREFERENCE
from needle.probing.results import MIN_TEST_POSITIVES
from needle.report import figures
from needle.report._tasks import (
    SECONDARY_METRICS,
    display_summary,
    metric_label,
    primary_metric,
    summary_by_task,
    tasks_present,
)

__all__ = ["build_report", "write_report", "site_links"]

def site_links(site: str | os.PathLike, report: str | os.PathLike) -> dict[str, Any]:
    """What a report at ``report`` needs to link into the scope site in directory ``site``: ``url`` (the site's
    root relative to the report's folder, ending in ``/``) and ``neurons`` (the ids of the neurons with a page,
    from the site's manifest).

    Raises
    ------
    InputError
        ``site`` is not a site built by ``needle scope build``.
    """
    site, report = Path(site), Path(report)
    manifest = site / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"--site {site} is not a site built by `needle scope build` (no manifest.json); build it "
                         "first or leave --site out.")
    neurons = json.loads(manifest.read_text()).get("neurons", [])
    url = Path(os.path.relpath(site.resolve(), report.resolve().parent)).as_posix().rstrip("/") + "/"
    return {"url": url, "neurons": set(neurons)}


def _summary_html(summary: pd.DataFrame, site: dict[str, Any] | None):
    """The summary table; with a site, feature names link to their pages and best neurons to theirs."""
    import jinja2

    if site is None:
        return jinja2.utils.markupsafe.Markup(
            summary.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0))
    from needle.neurons.ids import format_neuron_id
    from needle.scope.tables import NeuronRef, feature_page_name, neuron_page_name

    out = summary.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = [v if not isinstance(v, str) else escape(v) for v in out[column]]
    out["feature"] = [f'<a href="{escape(site["url"] + feature_page_name(f))}">{escape(f)}</a>'
                      for f in summary["feature"]]
    if {"neuron_layer", "neuron"} <= set(summary.columns):
        cells = []
        for layer, neuron in zip(summary["neuron_layer"], summary["neuron"]):
            if pd.isna(layer) or pd.isna(neuron):
                cells.append("–")
                continue
            neuron_id = format_neuron_id(int(layer), int(neuron))
            page = site["url"] + neuron_page_name(NeuronRef(int(layer), int(neuron)))
            cells.append(f'<a href="{escape(page)}">{int(neuron)}</a>' if neuron_id in site["neurons"]
                         else str(int(neuron)))
        out["neuron"] = cells
    return jinja2.utils.markupsafe.Markup(
        out.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0, escape=False))


def _scatter_points(points, site: dict[str, Any] | None) -> list[dict]:
    """The hover (and link) targets over the precision–recall scatter, one per feature."""
    from needle.neurons.ids import format_neuron_id
    from needle.scope.tables import feature_page_name

    out = []
    for p in points:
        neuron = format_neuron_id(p.layer, p.neuron) if p.neuron >= 0 else "?"
        out.append({"left": 100 * p.x, "top": 100 * p.y, "labelled": p.labelled,
                    "title": f"{p.feature} ({p.collection}): precision {p.precision:.3f}, recall {p.recall:.3f}, "
                             f"F1 {p.f1:.3f}; neuron {neuron} ({p.method})",
                    "href": site["url"] + feature_page_name(p.feature) if site else None})
    return out


def build_report(results: pd.DataFrame, *, title: str = "needle sparse-probing report",
                 results_name: str = "results.parquet", heatmap_method: str | None = None,
                 site: dict[str, Any] | None = None, space_time_blocks: pd.DataFrame | None = None) -> str:
    """Render the report of a results table as an HTML string.

    Parameters
    ----------
    results : DataFrame
        A sweep's results (``needle.probing.load_results``).
    heatmap_method : str, optional
        Method shown in the layer × k heatmaps (default: the first of
        adaptive, osp, mean_diff, … present).
    site : dict, optional
        The scope site to link into, as :func:`site_links` returns it (``url``, ``neurons``).
    space_time_blocks : DataFrame, optional
        Block hold-out predictions drawn in the Space and time section
        (:func:`needle.report.space_time.read_block_predictions`; :func:`write_report` reads the results' sidecar).
    """
    import jinja2

    required = {"feature", "collection", "layer", "method", "k"}
    tasks = tasks_present(results) if required <= set(results.columns) else ["binary"]
    required |= {primary_metric(t) for t in tasks} | ({"precision", "recall"} if "binary" in tasks else set())
    missing = required - set(results.columns)
    if missing:
        raise InputError(f"the results table lacks columns {sorted(missing)}; is it a needle results file?")
    if results.empty:
        raise InputError("the results table is empty; run a sweep first (needle probe).")
    methods = [m for m in dict.fromkeys(results["method"]) if m not in figures.BASELINES]
    if heatmap_method is None:
        heatmap_method = next((m for m in HEATMAP_METHOD_PREFERENCE if m in methods), methods[0] if methods else "dense")
    elif heatmap_method not in set(results["method"]):
        raise InputError(f"heatmap method {heatmap_method!r} is not in the results ({', '.join(methods)}).")

    def encode(png: bytes) -> str:
        return base64.b64encode(png).decode("ascii")

    summaries = []
    for task, summary in summary_by_task(results).items():
        metric = primary_metric(task)
        n_few = int(summary["few_positives"].sum()) if "few_positives" in summary else 0
        summary = display_summary(summary.drop(columns=["model_id", "dataset_hash", "site"], errors="ignore"))
        summaries.append({
            "task": task, "metric": metric, "label": metric_label(metric),
            "second": metric_label(SECONDARY_METRICS[task][0]) if task != "binary" else None, "n_few": n_few,
            "table": _summary_html(summary, site),
        })
    environment = jinja2.Environment(loader=jinja2.PackageLoader("needle.report", "templates"),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]))
    first = results.iloc[0]
    labels = [metric_label(primary_metric(t)) for t in tasks]
    meta = {
        "tasks": tasks,
        "metrics": " / ".join(labels),
        "model_id": first.get("model_id", "?"),
        "site": first.get("site", "?"),
        "dataset_hash": str(first.get("dataset_hash", "")),
        "n_features": results["feature"].nunique(),
        "n_collections": results["collection"].nunique(),
        "layers": ", ".join(str(l) for l in sorted(results["layer"].unique())),
        "methods": ", ".join(methods),
        "n_rows": len(results),
        "needle_version": __version__,
    }
    from needle.report.space_time import space_time_sections  # sections of later chapters' collections

    extra_sections = [dict(s, html=jinja2.utils.markupsafe.Markup(s["html"])) for s in space_time_sections(results, space_time_blocks)]
    scatter, scatter_points = None, []
    if "binary" in tasks:
        fig, points = figures.precision_recall_figure(results)
        scatter, scatter_points = encode(figures._png(fig, tight=False)), _scatter_points(points, site)
    return environment.get_template("report.html.j2").render(
        title=title,
        extra_sections=extra_sections,
        meta=meta,
        results_name=results_name,
        heatmap_method=heatmap_method,
        summaries=summaries,
        r2_floor=figures.R2_FLOOR,
        min_positives=MIN_TEST_POSITIVES,
        site=site,
        scatter_points=scatter_points,
        max_scatter_labels=figures.MAX_SCATTER_LABELS,
        figures={
            "f1_vs_k": encode(figures.f1_vs_k_by_collection(results)),
            "precision_recall": scatter,
            "k1_by_layer": encode(figures.k1_by_layer(results)),
            "heatmaps": encode(figures.layer_k_heatmaps(results, heatmap_method)),
        },
    )


def write_report(results_path: str | os.PathLike, out: str | os.PathLike, *,
                 site: str | os.PathLike | None = None, **options) -> Path:
    """Read a results Parquet file and write its HTML report to ``out`` atomically.

    ``site`` is the directory of the results' scope site (``needle scope build``) to link into (:func:`site_links`);
    other options go to :func:`build_report`.
    """
    from needle.probing import load_results
    from needle.report.space_time import read_block_predictions

    results_path, out = Path(results_path), Path(out)
    links = site_links(site, out) if site is not None else None
    options.setdefault("space_time_blocks", read_block_predictions(results_path))
    html = build_report(load_results(results_path), results_name=results_path.name, site=links, **options)
    with atomic_file(out, "w") as handle:
        handle.write(html)
    return out
