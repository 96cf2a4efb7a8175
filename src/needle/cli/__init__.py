"""The ``needle`` command line: thin commands over the Python API, one module per command group."""

from __future__ import annotations

import typer

from needle.cli import cache as _cache
from needle.cli import dataset as _dataset
from needle.cli import demo as _demo
from needle.cli import extract as _extract
from needle.cli import neuron as _neuron
from needle.cli import probe as _probe
from needle.cli import report as _report
from needle.cli import results as _results
from needle.cli import sae as _sae
from needle.cli import scope as _scope
from needle.cli import toy as _toy
from needle.cli import universal as _universal
from needle.cli._common import run

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="needle: find the neurons that encode features, by sparse probing.")
app.add_typer(_dataset.app, name="dataset")
app.add_typer(_cache.app, name="cache")
app.command("extract")(_extract.extract_command)
app.command("probe")(_probe.probe_command)
app.add_typer(_results.app, name="results")
app.command("report")(_report.report_command)
app.command("demo")(_demo.demo_command)
app.add_typer(_neuron.app, name="neuron")
app.add_typer(_scope.app, name="scope")
app.add_typer(_toy.app, name="toy")
app.add_typer(_universal.app, name="universal")
app.add_typer(_sae.app, name="sae")


def _print_version(value: bool) -> None:
    if value:
        from needle._version import __version__

        typer.echo(f"needle {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print needle's version and exit.")) -> None:
    """needle: find the neurons that encode features, by sparse probing."""


def main() -> None:
    """Entry point of the ``needle`` script."""
    run(app)
