"""``needle demo``: the whole pipeline on what every machine has."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def demo_command(
    out: Annotated[Optional[Path], typer.Option(
        help="Directory for everything the demo writes (default: demo-output, or demo-causal-output with --causal).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model to probe (ignored with --causal, which trains its own).")
                     ] = "minilm",
    max_files: Annotated[int, typer.Option(help="Standard-library files to sample.")] = 150,
    jobs: Annotated[int, typer.Option("--jobs", help="Worker processes for probing.")] = 2,
    causal: Annotated[bool, typer.Option(
        "--causal", help="Train the toy causal model first and probe it, so logit effects, direct logit "
                         "attribution and ablations have content.")] = False,
    cpu_minutes: Annotated[float, typer.Option(help="With --causal: the toy model's training budget in CPU minutes."
                                               )] = 6.0,
) -> None:
    """Build the python-code collection from the standard library, extract activations and probe them."""
    from needle.cli._common import check_jobs
    from needle.errors import InputError

    check_jobs(jobs)
    if causal:
        from needle.demo import run_causal_demo

        if model != "minilm":
            raise InputError("--causal trains and probes its own toy model; drop --model (or drop --causal).")
        if not cpu_minutes > 0:
            raise InputError(f"--cpu-minutes must be positive, not {cpu_minutes}.")
        run_causal_demo(out or Path("demo-causal-output"), cpu_minutes=cpu_minutes, max_files=max_files,
                        n_jobs=jobs, echo=typer.echo)
        return
    from needle.demo import run_demo

    run_demo(out or Path("demo-output"), model=model, max_files=max_files, n_jobs=jobs, echo=typer.echo)
