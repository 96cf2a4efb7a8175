"""``needle cache info|verify|merge``."""

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
        f"model     {m['model_id']} ({m['model'].get('family')}, revision {m['model'].get('revision')}, "
        f"weights {str(m['model'].get('weights_hash'))[:12]}…)",
        f"site      {cache.site}  ({(m.get('hook_names') or ['?'])[0]} …)",
        f"layers    {cache.layers}",
        f"rows      {cache.n_rows} × {cache.width} {m['dtype']}",
        f"dataset   {m['dataset'].get('path')} (hash {m['dataset_hash'][:12]}…, "
        f"builder {(m['dataset'].get('builder') or {}).get('name')})",
        f"features  {len(cache.feature_names)}: {', '.join(cache.feature_names[:12])}"
        + (" …" if len(cache.feature_names) > 12 else ""),
    ]))


@app.command("verify")
def verify_command(path: Annotated[Path, typer.Argument(help="An activation cache directory.")]) -> None:
    """Check every file of a cache against the SHA-256 recorded at extraction (reads every byte)."""
    from needle.activations import verify_cache
    from needle.errors import FormatError

    problems = verify_cache(path)
    if problems:
        raise FormatError(f"{path} is damaged: {'; '.join(problems)}. Extract the activations again.")
    files = load_files(path)
    typer.echo(f"ok: {len(files)} files, {sum(f['bytes'] for f in files.values())} bytes match their checksums")


def load_files(path: Path) -> dict:
    from needle.activations import load_cache

    return load_cache(path).manifest["files"]


@app.command("merge")
def merge_command(
    shards: Annotated[list[Path], typer.Argument(help="Every shard directory of one extraction (any order).")],
    out: Annotated[Path, typer.Option("--out", help="Directory of the activation cache to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Join the shards of a sharded extraction into one cache, byte-identical to an extraction in one piece."""
    from needle.activations.shard import merge_shards

    cache = merge_shards(shards, out, overwrite=overwrite)
    typer.echo(f"merged {len(shards)} shards: {cache.n_rows} rows × {cache.width} for layers {cache.layers} in "
               f"{cache.path}")
