"""``needle demo``: the whole pipeline on what every machine has."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo_command(
    out: Annotated[Path, typer.Option(help="Directory for everything the demo writes.")] = Path("demo-output"),
    model: Annotated[str, typer.Option(help="Model to probe.")] = "minilm",
    max_files: Annotated[int, typer.Option(help="Standard-library files to sample.")] = 150,
    jobs: Annotated[int, typer.Option("--jobs", help="Worker processes for probing.")] = 2,
) -> None:
    """Build the python-code collection from the standard library, extract activations and probe them."""
    from needle.cli._common import check_jobs
    from needle.demo import run_demo

    check_jobs(jobs)
    run_demo(out, model=model, max_files=max_files, n_jobs=jobs, echo=typer.echo)
