"""The needle command line (placeholder until the CLI modules land)."""
import typer

app = typer.Typer(no_args_is_help=True, help="needle: sparse probing of transformer neurons.")


def main() -> None:
    app()
