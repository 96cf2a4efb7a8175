"""``needle toy train`` / ``train-seeds``: small causal LMs with learned weights, trained on local text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="A toy Pythia-architecture language model trained here.")

#: train-seeds' default budget per member, in CPU minutes (all threads): five members take about 40 CPU minutes of
#: optimisation plus a few of corpus, tokenizer and evaluation, i.e. about 25 minutes of two cores in all,
#: whatever else the machine runs (a wall-clock budget would buy fewer steps on a shared machine).
SEED_CPU_MINUTES = 8.0

UdOption = Annotated[Optional[Path], typer.Option(
    help="Directory of UD treebanks (default: $NEEDLE_SHARED_DATA/ud or shared/data/ud beside the checkout).")]
NoUdOption = Annotated[bool, typer.Option("--no-ud", help="Train on Python code only.")]
PythonOption = Annotated[Optional[list[Path]], typer.Option(
    help="Python files or directories (repeatable; default: the standard library).")]
NoPythonOption = Annotated[bool, typer.Option("--no-python", help="Train on UD sentences only.")]
LanguagesOption = Annotated[Optional[str], typer.Option(help="Comma-separated language codes from --ud.")]
DataSeedOption = Annotated[int, typer.Option(
    help="Seeds the corpus sample and the train/held-out split (the same for every member of a family).")]


def _corpus(ud, no_ud, python, no_python, languages, data_seed):
    from needle.datasets.shared_data import shared_data_dir
    from needle.errors import InputError
    from needle.toy import gather_corpus

    if no_ud and no_python:
        raise InputError("--no-ud and --no-python leave nothing to train on; drop one of them.")
    ud_root = None
    if not no_ud:
        ud_root = ud if ud is not None else shared_data_dir() / "ud"
        if not ud_root.is_dir():
            raise InputError(f"UD directory {ud_root} does not exist; pass --ud DIR (the directory of the "
                             "treebanks) or --no-ud to train on Python code only.")
    return gather_corpus(python=False if no_python else (python or None), ud=ud_root,
                         languages=languages.split(",") if languages else None, seed=data_seed)


def _echo_losses(summary) -> None:
    typer.echo(f"held-out loss {summary['heldout_loss']:.3f} nats/token" if summary["heldout_loss"] is not None
               else "no held-out text")
    for source, values in summary["heldout"].items():
        if source != "all":
            typer.echo(f"  {source:>8}: {values['loss']:.3f} nats/token, {values['bits_per_byte']:.3f} bits/byte")


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the model to (Hugging Face format).")],
    minutes: Annotated[Optional[float], typer.Option(help="Most minutes of optimisation.")] = 15.0,
    steps: Annotated[Optional[int], typer.Option(help="Most optimiser steps (default: bound by --minutes).")] = None,
    cpu_minutes: Annotated[Optional[float], typer.Option(
        help="Most CPU minutes of this process (a fair budget on a shared machine).")] = None,
    ud: UdOption = None,
    no_ud: NoUdOption = False,
    python: PythonOption = None,
    no_python: NoPythonOption = False,
    languages: LanguagesOption = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 4096,
    tokenizer: Annotated[Optional[Path], typer.Option(
        help="Tokenizer directory to share between seeds: reused when it holds one, else trained and saved there.")
    ] = None,
    hidden_size: Annotated[int, typer.Option(help="Residual width.")] = 128,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    neurons: Annotated[int, typer.Option(help="MLP neurons per layer.")] = 512,
    context_length: Annotated[int, typer.Option(help="Training sequence length in tokens (BOS included).")] = 128,
    activation: Annotated[str, typer.Option(
        help="MLP nonlinearity: gelu (Pythia), solu (x·softmax(x) then LayerNorm; neurons read before the norm) "
             "or relu. The same --seed gives the same initial weights and batch order for each.")] = "gelu",
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: OMP_NUM_THREADS).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the initialisation and the batch order.")] = 0,
    data_seed: DataSeedOption = 0,
    dynamics: Annotated[Optional[str], typer.Option(
        help="Train on trajectory strings instead: logistic or lorenz (x only); whole trajectories held out.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Train a GPT-NeoX (Pythia-architecture) model on the standard library and UD sentences; report its loss."""
    from needle.toy import ToySize, TrainSettings, shared_tokenizer, train_toy_model

    size = ToySize(hidden_size=hidden_size, n_layers=layers, n_heads=heads, intermediate_size=neurons,
                   context_length=context_length, activation=activation)
    settings = TrainSettings(steps=steps, max_minutes=minutes, max_cpu_minutes=cpu_minutes, batch_size=batch_size,
                             learning_rate=learning_rate, vocab_size=vocab_size, seed=seed, threads=threads)
    size.check()
    settings.check()
    if dynamics is not None:
        from needle.toy.corpus import dynamics_corpus

        corpus = dynamics_corpus(dynamics, seed=data_seed)
    else:
        corpus = _corpus(ud, no_ud, python, no_python, languages, data_seed)
    shared = None if tokenizer is None else shared_tokenizer(tokenizer, corpus, vocab_size, echo=typer.echo)
    summary = train_toy_model(out, corpus, size=size, settings=settings, tokenizer=shared, overwrite=overwrite,
                              echo=typer.echo).summary
    _echo_losses(summary)


@app.command("train-seeds")
def train_seeds_command(
    out: Annotated[Path, typer.Option("--out", help="Family directory: tokenizer/, seed-*/ and family.json.")],
    seeds: Annotated[int, typer.Option(help="Number of members (seeds first-seed, first-seed + 1, ...).")] = 5,
    first_seed: Annotated[int, typer.Option(help="Seed of the first member.")] = 0,
    hub: Annotated[Optional[str], typer.Option(
        help="Instead of training, record a published family of seeds (e.g. stanford-crfm-gpt2-small, "
             "polypythia-160m) whose hub ids are loaded when used.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Most wall-clock minutes of optimisation per member.")
                       ] = None,
    steps: Annotated[Optional[int], typer.Option(help="Most optimiser steps per member.")] = None,
    cpu_minutes: Annotated[Optional[float], typer.Option(
        help="Most CPU minutes of optimisation per member (all threads).")] = SEED_CPU_MINUTES,
    ud: UdOption = None,
    no_ud: NoUdOption = False,
    python: PythonOption = None,
    no_python: NoPythonOption = False,
    languages: LanguagesOption = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 4096,
    hidden_size: Annotated[int, typer.Option(help="Residual width.")] = 128,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    neurons: Annotated[int, typer.Option(help="MLP neurons per layer.")] = 512,
    context_length: Annotated[int, typer.Option(help="Training sequence length in tokens (BOS included).")] = 128,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: OMP_NUM_THREADS).")] = None,
    data_seed: DataSeedOption = 0,
    overwrite: Annotated[bool, typer.Option(help="Retrain members already in --out.")] = False,
) -> None:
    """Train a family of toy models differing only in their seed, sharing one tokenizer (resumable)."""
    from needle.errors import InputError
    from needle.toy import ToySize, TrainSettings, train_seed_family, write_family

    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, not {seeds}.")
    if hub is not None:
        from needle.universal.family import hub_family

        members = hub_family(hub)
        if seeds > len(members):
            raise InputError(f"{hub} has {len(members)} published members; pass --seeds {len(members)} or fewer.")
        path = write_family(out, [{"name": m.name, "model": m.model, "seed": None} for m in members[:seeds]],
                            source="hub", hub_family=hub)
        typer.echo(f"wrote {path}: {', '.join(m.model for m in members[:seeds])} (loaded from the hub when used)")
        return
    size = ToySize(hidden_size=hidden_size, n_layers=layers, n_heads=heads, intermediate_size=neurons,
                   context_length=context_length)
    settings = TrainSettings(steps=steps, max_minutes=minutes, max_cpu_minutes=cpu_minutes, batch_size=batch_size,
                             learning_rate=learning_rate, vocab_size=vocab_size, threads=threads)
    size.check()
    settings.check()
    corpus = _corpus(ud, no_ud, python, no_python, languages, data_seed)
    family = train_seed_family(out, corpus, range(first_seed, first_seed + seeds), size=size, settings=settings,
                               overwrite=overwrite, echo=typer.echo)
    for member in family["members"]:
        loss = member["heldout_loss"]
        typer.echo(f"{member['name']}: held-out loss {loss:.3f} nats/token" if loss is not None
                   else f"{member['name']}: no held-out text")
