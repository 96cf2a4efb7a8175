"""``needle dataset build|info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from needle.cli._common import on_interrupt, parse_params

app = typer.Typer(no_args_is_help=True, help="Build and inspect ProbeDatasets (feature collections).")


@app.command("build")
def build_command(
    collection: Annotated[str, typer.Argument(help="A collection builder; `needle dataset list` names them.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the dataset to.")],
    source: Annotated[Optional[list[Path]], typer.Option("--source", help="Input file or directory (repeatable).")] = None,
    model: Annotated[str, typer.Option(help="Model whose tokenizer to use (alias, directory or hub id).")] = "minilm",
    context_length: Annotated[Optional[int], typer.Option(help="Tokens per sequence, special tokens included.")] = None,
    positive_ratio: Annotated[Optional[float], typer.Option(
        help="Target fraction of positives per binary feature (default: the builder's; 0.2 for token "
             "collections); 0 keeps every example.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the negative subsampling.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Builder parameter key=value (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Build a feature collection for a model's tokenizer and save it."""
    from needle.datasets.registry import get_builder
    from needle.models import load_tokenizer

    builder = get_builder(collection)
    params = parse_params(param)
    _check_builder_params(collection, builder, params)
    if out.exists() and not overwrite:  # before the build, not after it
        from needle.errors import InputError

        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    tokenizer = load_tokenizer(model)
    if context_length is not None:
        params["context_length"] = context_length
    sources = [str(s) for s in source] if source else None
    if positive_ratio is not None:
        params["positive_ratio"] = positive_ratio if positive_ratio > 0 else None
    on_interrupt(f"nothing was written to {out} (a dataset is written only once it is complete)")
    dataset = builder(sources, tokenizer, seed=seed, **params)
    dataset.save(out, overwrite=overwrite)
    typer.echo(_describe(dataset, out))


def _check_builder_params(collection: str, builder, params: dict) -> None:
    """Refuse a ``--param`` the builder does not take, or whose value is not of its default's type."""
    import inspect

    from needle.errors import InputError

    signature = inspect.signature(builder)
    accepted = {name: p for name, p in signature.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("seed",)}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(f"the {collection} builder takes no parameter {', '.join(unknown)}; "
                         f"--param accepts: {', '.join(accepted) or 'none'}.")
    for name, value in params.items():
        default = accepted[name].default
        if default is None or default is inspect.Parameter.empty or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, str))
        else:
            ok = True
        if not ok:
            raise InputError(f"--param {name}={json_text(value)}: {collection}'s {name} takes a "
                             f"value of type {type(default).__name__} (default {default!r}).")


def json_text(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


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
    tasks = dataset.extra.get("table", {}).get("tasks", {})
    for info, (name, count) in zip(dataset.features, dataset.counts().items()):
        task = info.get("task", "binary")
        if task == "binary":
            line = f"  {name:<40} {count['positive']:>7} pos {count['negative']:>8} neg"
        elif task == "multiclass":
            line = f"  {name:<40} {count['examples']:>7} examples, {len(info['classes'])} classes (multiclass)"
        else:
            line = f"  {name:<40} {count['examples']:>7} examples (regression)"
        if "train" in count:
            line += f"  split {count['train']} train / {count['test']} test"
        if name in tasks:
            line += f"  [{tasks[name]['task']}, {'inferred' if tasks[name]['inferred'] else 'given'}]"
        lines.append(line)
    languages = dataset.extra.get("languages")
    if languages:
        lines.append("files per language (used/candidates): " + ", ".join(
            f"{name} {count['used']}/{count['candidates']}" + ("" if count.get("kept", True) else " (dropped)")
            for name, count in languages.items()))
    lines.extend(_subsampling_lines(dataset))
    dropped = dataset.extra.get("dropped_features")
    if dropped:
        lines.append(f"dropped (too few examples): {', '.join(sorted(dropped))}")
    return "\n".join(lines)


def _subsampling_lines(dataset) -> list[str]:
    """Say what subsampling removed, so that nobody mistakes the sample for the source."""
    subsampled = dataset.extra.get("subsampled") or {}
    fewer_negatives = [name for name, c in subsampled.items()
                       if c["after"].get("negative", 0) < c["before"].get("negative", 0)]
    capped = [name for name in subsampled if name not in fewer_negatives]
    lines = []
    if fewer_negatives:
        ratio = dataset.builder.get("positive_ratio")
        target = f"{ratio * 100:g} % positives" if isinstance(ratio, (int, float)) else "the target ratio"
        lines.append(f"negatives subsampled to {target} for {len(fewer_negatives)} features "
                     "(pass --positive-ratio 0 to keep every example)")
    if capped:
        lines.append(f"examples capped by max_positives for {len(capped)} features: {', '.join(sorted(capped))}")
    return lines
