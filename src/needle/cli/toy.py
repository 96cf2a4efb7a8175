"""``needle toy train``: a small causal LM with learned weights, trained on local text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="A toy Pythia-architecture language model trained here.")


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the model to (Hugging Face format).")],
    minutes: Annotated[Optional[float], typer.Option(help="Most minutes of optimisation.")] = 15.0,
    steps: Annotated[Optional[int], typer.Option(help="Most optimiser steps (default: bound by --minutes).")] = None,
    cpu_minutes: Annotated[Optional[float], typer.Option(
        help="Most CPU minutes of this process (a fair budget on a shared machine).")] = None,
    ud: Annotated[Optional[Path], typer.Option(
        help="Directory of UD treebanks (default: $NEEDLE_SHARED_DATA/ud or shared/data/ud beside the checkout).")
    ] = None,
    no_ud: Annotated[bool, typer.Option("--no-ud", help="Train on Python code only.")] = False,
    python: Annotated[Optional[list[Path]], typer.Option(
        help="Python files or directories (repeatable; default: the standard library).")] = None,
    no_python: Annotated[bool, typer.Option("--no-python", help="Train on UD sentences only.")] = False,
    languages: Annotated[Optional[str], typer.Option(help="Comma-separated language codes from --ud.")] = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 4096,
    hidden_size: Annotated[int, typer.Option(help="Residual width.")] = 128,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    neurons: Annotated[int, typer.Option(help="MLP neurons per layer.")] = 512,
    context_length: Annotated[int, typer.Option(help="Training sequence length in tokens.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: OMP_NUM_THREADS).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, initialisation and batch order.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Train a GPT-NeoX (Pythia-architecture) model on the standard library and UD sentences; report its loss."""
    from needle.datasets.shared_data import shared_data_dir
    from needle.errors import InputError
    from needle.toy import ToySize, TrainSettings, gather_corpus, train_toy_model

    if no_ud and no_python:
        raise InputError("--no-ud and --no-python leave nothing to train on; drop one of them.")
    ud_root = None
    if not no_ud:
        ud_root = ud if ud is not None else shared_data_dir() / "ud"
        if not ud_root.is_dir():
            raise InputError(f"UD directory {ud_root} does not exist; pass --ud DIR (the directory of the "
                             "treebanks) or --no-ud to train on Python code only.")
    size = ToySize(hidden_size=hidden_size, n_layers=layers, n_heads=heads, intermediate_size=neurons,
                   context_length=context_length)
    settings = TrainSettings(steps=steps, max_minutes=minutes, max_cpu_minutes=cpu_minutes, batch_size=batch_size,
                             learning_rate=learning_rate, vocab_size=vocab_size, seed=seed, threads=threads)
    size.check()
    settings.check()
    corpus = gather_corpus(python=False if no_python else (python or None), ud=ud_root,
                           languages=languages.split(",") if languages else None, seed=seed)
    summary = train_toy_model(out, corpus, size=size, settings=settings, overwrite=overwrite, echo=typer.echo).summary
    typer.echo(f"held-out loss {summary['heldout_loss']:.3f} nats/token" if summary["heldout_loss"] is not None
               else "no held-out text")
    for source, values in summary["heldout"].items():
        if source != "all":
            typer.echo(f"  {source:>8}: {values['loss']:.3f} nats/token, {values['bits_per_byte']:.3f} bits/byte")
