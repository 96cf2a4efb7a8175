"""``needle dataset build|info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from needle.cli._common import parse_params

app = typer.Typer(no_args_is_help=True, help="Build and inspect ProbeDatasets (feature collections).")


@app.command("build")
def build_command(
    collection: Annotated[str, typer.Argument(help="A collection builder; `needle dataset list` names them.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the dataset to.")],
    source: Annotated[Optional[list[Path]], typer.Option("--source", help="Input file or directory (repeatable).")] = None,
    model: Annotated[str, typer.Option(help="Model whose tokenizer to use (alias, directory or hub id).")] = "minilm",
    context_length: Annotated[Optional[int], typer.Option(help="Tokens per sequence, special tokens included.")] = None,
    positive_ratio: Annotated[Optional[float], typer.Option(
        help="Target fraction of positives per feature (default: the builder's; 0.2 for token collections).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the negative subsampling.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Builder parameter key=value (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Build a feature collection for a model's tokenizer and save it."""
    from needle.datasets.registry import build_collection
    from needle.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    params = parse_params(param)
    if context_length is not None:
        params["context_length"] = context_length
    sources = [str(s) for s in source] if source else None
    if positive_ratio is not None:
        params["positive_ratio"] = positive_ratio
    dataset = build_collection(collection, sources, tokenizer, seed=seed, **params)
    dataset.save(out, overwrite=overwrite)
    typer.echo(_describe(dataset, out))


@app.command("list")
def list_command() -> None:
    """Name the collection builders and what each makes."""
    from needle.datasets.registry import BUILDERS

    for name, (_, _, description) in BUILDERS.items():
        typer.echo(f"{name:<18} {description}")


@app.command("info")
def info_command(path: Annotated[Path, typer.Argument(help="A dataset directory.")]) -> None:
    """Print a dataset's builder, tokenizer and per-feature counts."""
    from needle.datasets.format import load_dataset

    typer.echo(_describe(load_dataset(path), path))


def _describe(dataset, path) -> str:
    lines = [
        f"dataset   {path}",
        f"builder   {dataset.builder['name']}  {dataset.builder.get('params', {})}",
        f"tokenizer {dataset.tokenizer.get('name_or_path')} ({dataset.tokenizer.get('fingerprint', '')[:12]}…)",
        f"sequences {dataset.n_sequences} ({dataset.n_tokens} tokens, {len(set(dataset.groups))} groups)",
        f"examples  {len(dataset.examples)} ({len(dataset.units())} distinct activation rows)",
        f"features  {len(dataset.features)}",
    ]
    for name, count in dataset.counts().items():
        lines.append(f"  {name:<40} {count['positive']:>7} pos {count['negative']:>8} neg")
    languages = dataset.extra.get("languages")
    if languages:
        lines.append("files per language (used/candidates): " + ", ".join(
            f"{name} {count['used']}/{count['candidates']}" + ("" if count.get("kept", True) else " (dropped)")
            for name, count in languages.items()))
    dropped = dataset.extra.get("dropped_features")
    if dropped:
        lines.append(f"dropped (too few examples): {', '.join(sorted(dropped))}")
    return "\n".join(lines)
