"""``needle report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    results: Annotated[Path, typer.Argument(help="A results Parquet file.")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    heatmap_method: Annotated[Optional[str], typer.Option(help="Method shown in the layer × k heatmaps.")] = None,
) -> None:
    """Write a self-contained HTML report (figures and summary table) of a sweep."""
    from needle.report import write_report

    path = write_report(results, out, heatmap_method=heatmap_method)
    typer.echo(f"report written to {path.resolve()}")
