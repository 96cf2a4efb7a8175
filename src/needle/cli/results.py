"""``needle results summary|verify``."""

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


@app.command("verify")
def verify_command(results: Annotated[Path, typer.Argument(help="A results Parquet file.")]) -> None:
    """Check a results file (and its splits) against the checksums written with them."""
    import pyarrow.parquet as pq

    from needle._checksums import checksum_state
    from needle.errors import FormatError
    from needle.probing import load_results
    from needle.probing.splits import load_splits, splits_path

    lines = []
    for path, load, what in ((results, load_results, "result rows"), (splits_path(results), load_splits, "split rows")):
        if path != results and not path.exists():
            lines.append(f"{path}: absent (no splits saved)")
            continue
        frame = load(path)  # verifies the page checksums and the content checksum
        state = checksum_state(pq.read_table(path))
        if state == "absent":
            raise FormatError(f"{path} records no checksum (written by an older needle), so it cannot be verified; "
                              "rerun the sweep into a new file to get one.")
        if state == "stale":
            raise FormatError(f"{path} was rewritten by another tool after needle wrote it (its checksum describes "
                              "another table), so it cannot be verified.")
        lines.append(f"{path}: ok, {len(frame)} {what} match their checksum")
    typer.echo("\n".join(lines))
