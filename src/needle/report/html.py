"""The static HTML report of a sweep: one self-contained page, figures embedded."""

from __future__ import annotations

import base64
import os
from pathlib import Path

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

__all__ = ["build_report", "write_report"]



def build_report(results: pd.DataFrame, *, title: str = "needle sparse-probing report",
                 results_name: str = "results.parquet", heatmap_method: str | None = None) -> str:
    """Render the report of a results table as an HTML string.

    Parameters
    ----------
    results : DataFrame
        A sweep's results (``needle.probing.load_results``).
    heatmap_method : str, optional
        Method shown in the layer × k heatmaps (default: the first of
        adaptive, osp, mean_diff, … present).
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
            "table": jinja2.utils.markupsafe.Markup(
                summary.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0)),
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

    extra_sections = [dict(s, html=jinja2.utils.markupsafe.Markup(s["html"])) for s in space_time_sections(results)]
    return environment.get_template("report.html.j2").render(
        title=title,
        extra_sections=extra_sections,
        meta=meta,
        results_name=results_name,
        heatmap_method=heatmap_method,
        summaries=summaries,
        r2_floor=figures.R2_FLOOR,
        min_positives=MIN_TEST_POSITIVES,
        figures={
            "f1_vs_k": encode(figures.f1_vs_k_by_collection(results)),
            "precision_recall": encode(figures.precision_recall_at_k1(results)) if "binary" in tasks else None,
            "k1_by_layer": encode(figures.k1_by_layer(results)),
            "heatmaps": encode(figures.layer_k_heatmaps(results, heatmap_method)),
        },
    )


def write_report(results_path: str | os.PathLike, out: str | os.PathLike, **options) -> Path:
    """Read a results Parquet file and write its HTML report to ``out`` atomically."""
    from needle.probing import load_results

    results_path, out = Path(results_path), Path(out)
    html = build_report(load_results(results_path), results_name=results_path.name, **options)
    with atomic_file(out, "w") as handle:
        handle.write(html)
    return out
