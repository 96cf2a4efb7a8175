"""``needle report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    results: Annotated[Path, typer.Argument(help="A results Parquet file.")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    heatmap_method: Annotated[Optional[str], typer.Option(help="Method shown in the layer × k heatmaps.")] = None,
    site: Annotated[Optional[Path], typer.Option(help="The results' scope site (needle scope build) to link "
                                                      "feature names and scatter points into.")] = None,
) -> None:
    """Write a self-contained HTML report (figures and summary table) of a sweep."""
    from needle.errors import InputError
    from needle.probing import BASELINE_METHODS, load_results
    from needle.report import write_report

    methods = set(load_results(results)["method"])
    if not methods - set(BASELINE_METHODS):
        found = ", ".join(sorted(methods)) or "no rows at all"
        raise InputError(f"{results} holds no sparse probes ({found}); the report is about sparse probes. "
                         "Run `needle probe` with --methods (e.g. mean_diff) into it first.")
    path = write_report(results, out, heatmap_method=heatmap_method, site=site)
    typer.echo(f"report written to {path.resolve()}")
