"""``needle results summary``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from needle.cli.probe import _format_summary

app = typer.Typer(no_args_is_help=True, help="Read sweep results.")


@app.command("summary")
def summary_command(results: Annotated[Path, typer.Argument(help="A results Parquet file.")]) -> None:
    """Per feature: best layer, F1 at k=1, k=8 and dense, and the best single neuron's precision and recall."""
    from needle.probing import load_results, summarize

    typer.echo(_format_summary(summarize(load_results(results))))
