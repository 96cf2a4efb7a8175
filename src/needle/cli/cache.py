"""``needle cache info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Inspect activation caches.")


@app.command("info")
def info_command(path: Annotated[Path, typer.Argument(help="An activation cache directory.")]) -> None:
    """Print what a cache holds and what made it."""
    from needle.activations import load_cache

    cache = load_cache(path)
    m = cache.manifest
    typer.echo("\n".join([
        f"cache     {cache.path}",
        f"model     {m['model_id']} ({m['model']['family']}, revision {m['model'].get('revision')}, "
        f"weights {m['model']['weights_hash'][:12]}…)",
        f"site      {cache.site}  ({m['hook_names'][0]} …)",
        f"layers    {cache.layers}",
        f"rows      {cache.n_rows} × {cache.width} {m['dtype']}",
        f"dataset   {m['dataset'].get('path')} (hash {m['dataset_hash'][:12]}…, builder {m['dataset']['builder']['name']})",
        f"features  {len(cache.feature_names)}: {', '.join(cache.feature_names[:12])}"
        + (" …" if len(cache.feature_names) > 12 else ""),
    ]))
