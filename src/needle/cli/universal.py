"""``needle universal correlate``: which neurons of one model have a twin in models trained from other seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Universal neurons across models trained from different seeds.")


def _family_dir(name: str) -> Path | None:
    """The toy family's directory when ``name`` is one (it holds ``family.json``), else None."""
    path = Path(name).expanduser()
    return path if (path / "family.json").is_file() else None


def _one_model_and_sequences(model, text, ud, split, context_length, max_tokens):
    """The model to analyse (a family's first member, or ``model`` itself) and the packed token sequences."""
    from needle.models import load_model
    from needle.universal.family import resolve_family
    from needle.universal.tokens import pack_texts

    family_dir = _family_dir(model)
    location = resolve_family(model)[0].model if family_dir is not None else model
    texts, _ = _texts(text, family_dir, ud, split)
    adapter = load_model(location)
    length = context_length or min(adapter.max_positions or 512, 512)
    return adapter, pack_texts(texts, adapter.tokenizer, length, max_tokens=max_tokens)


def _texts(text_paths, family_dir, ud, split):
    """Texts to stream: the files given, or the toy family's own held-out split."""
    from needle.errors import InputError

    if text_paths:
        texts = []
        for path in text_paths:
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".py", ".md")) \
                if path.is_dir() else [path]
            if not path.exists():
                raise InputError(f"--text {path} does not exist; pass text files or directories of them.")
            for file in files:
                try:
                    texts.append(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as exc:
                    raise InputError(f"cannot read {file} as UTF-8 text ({exc}); pass text files.") from None
        return texts, {"text": [str(p) for p in text_paths]}
    from needle.universal.family import family_corpus

    if family_dir is None:
        raise InputError("give --text FILE/DIR: only a toy family (needle toy train-seeds) knows its own corpus.")
    corpus = family_corpus(family_dir, ud=ud)
    return corpus.texts(split), {"corpus_split": split, "corpus": corpus.params}


@app.command("correlate")
def correlate_command(
    family: Annotated[str, typer.Option(help="A family directory (needle toy train-seeds), a published family "
                                             "(stanford-crfm-gpt2-small, polypythia-160m, ...) or models a,b,...")],
    out: Annotated[Path, typer.Option(help="Directory to write the tables to.")],
    text: Annotated[Optional[list[Path]], typer.Option(
        help="Text files or directories (.txt/.py/.md) to stream (default: a toy family's held-out text).")] = None,
    split: Annotated[str, typer.Option(help="A toy family's corpus split to stream: heldout or train.")] = "heldout",
    ud: Annotated[Optional[Path], typer.Option(help="Where the family's UD treebanks are now, if moved.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: Annotated[Optional[int], typer.Option(
        help="Tokens per sequence, BOS included (default: the model's positions, at most 512).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Comma-separated layers (default: all).")] = None,
    exclude_newlines: Annotated[bool, typer.Option(help="Leave newline tokens out, as the thesis does.")] = False,
    baseline: Annotated[str, typer.Option(help="Random basis of the baseline: haar or gaussian (the thesis's).")
                        ] = "haar",
    seed: Annotated[int, typer.Option(help="Seeds the baseline's random matrices.")] = 0,
    top_k: Annotated[int, typer.Option(help="Partners kept per neuron and model.")] = 5,
    max_tile_mb: Annotated[float, typer.Option(help="Most MiB of correlation state held at once.")] = 1024.0,
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward batch.")] = 8192,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    work_dir: Annotated[Optional[Path], typer.Option(
        help="Checkpoint directory; rerunning resumes (default: OUT.work beside --out).")] = None,
    keep_correlations: Annotated[bool, typer.Option(
        help="Also keep every full correlation matrix (float32 .npy per layer pair) in OUT.work/rho.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Correlate every neuron of the family's first model with every neuron of the others; write per-neuron tables."""
    import torch

    from needle.errors import InputError
    from needle.models import load_model
    from needle.universal.correlate import BASELINES, correlate_models
    from needle.universal.family import resolve_family
    from needle.universal.tokens import check_same_tokenizer, newline_token_ids, pack_texts

    if baseline not in BASELINES:
        raise InputError(f"--baseline must be one of {', '.join(BASELINES)}, not {baseline!r}.")
    if split not in ("heldout", "train"):
        raise InputError(f"--split must be heldout or train, not {split!r}.")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device must be auto, cpu or cuda, not {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda but no CUDA device is available; pass --device cpu.")
    chosen_layers = None
    if layers:
        try:
            chosen_layers = [int(x) for x in layers.split(",")]
        except ValueError:
            raise InputError(f"--layers must be comma-separated integers, not {layers!r}.") from None
    members = resolve_family(family)
    family_dir = _family_dir(family)
    texts, source = _texts(text, family_dir, ud, split)
    models = [load_model(member.model, device=device) for member in members]
    names = [member.name for member in members]
    check_same_tokenizer([model.tokenizer for model in models], names)
    tokenizer = models[0].tokenizer
    length = context_length or min(models[0].max_positions or 512, 512)
    sequences = pack_texts(texts, tokenizer, length, max_tokens=max_tokens)
    excluded = newline_token_ids(tokenizer) if exclude_newlines else []
    if tokenizer.pad_token_id is not None:
        excluded.append(tokenizer.pad_token_id)
    work = work_dir if work_dir is not None else out.with_name(out.name + ".work")
    result = correlate_models(
        models, sequences, names=names, layers=chosen_layers, exclude_token_ids=excluded,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, batch_tokens=batch_tokens,
        baseline=baseline, seed=seed, top_k=top_k, max_tile_bytes=int(max_tile_mb * 2**20), work_dir=work,
        keep_correlations=work / "rho" if keep_correlations else None,
        params={"family": str(family), "members": [m.model for m in members], "context_length": length,
                "exclude_newlines": exclude_newlines, **source})
    result.save(out, overwrite=overwrite)
    if not keep_correlations:
        (work / "checkpoint.pt").unlink(missing_ok=True)
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()
    universal = result.universal(0.5)
    n = len(result.neurons)
    p = len(universal) / n
    se = (p * (1 - p) / n) ** 0.5
    typer.echo(f"{result.params['n_tokens']:,} tokens, {n:,} neurons of {names[0]} against {', '.join(names[1:])}")
    typer.echo(f"excess correlation > 0.5: {len(universal):,} neurons ({100 * p:.2f} % ± {100 * se:.2f} %)")
    typer.echo(f"mean max corr {result.neurons['mean_max_corr'].mean():.3f}, mean baseline "
               f"{result.neurons['mean_baseline'].mean():.3f}; wrote {out}")


@app.command("stats")
def stats_command(
    model: Annotated[str, typer.Option(help="The model: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Directory to write the tables and the plot to.")],
    correlations: Annotated[Optional[Path], typer.Option(
        help="Output of needle universal correlate for this model: compare universal neurons with the rest.")] = None,
    threshold: Annotated[float, typer.Option(help="Excess correlation above which a neuron is universal.")] = 0.5,
    text: Annotated[Optional[list[Path]], typer.Option(
        help="Text files or directories to stream (default: a toy family's held-out text).")] = None,
    split: Annotated[str, typer.Option(help="A toy family's corpus split: heldout or train.")] = "heldout",
    ud: Annotated[Optional[Path], typer.Option(help="Where the family's UD treebanks are now, if moved.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: Annotated[Optional[int], typer.Option(help="Tokens per sequence, BOS included.")] = None,
    exclude_newlines: Annotated[bool, typer.Option(help="Leave newline tokens out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Activation and weight statistics of every neuron (Figure 3.3), as percentiles within each layer."""
    from needle._io import atomic_directory
    from needle.errors import InputError
    from needle.universal.correlate import UniversalCorrelations
    from needle.universal.roles import classify_roles
    from needle.universal.stats import activation_statistics, compare_universal, layer_percentiles, weight_statistics
    from needle.universal.tokens import newline_token_ids

    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    adapter, sequences = _one_model_and_sequences(model, text, ud, split, context_length, max_tokens)
    tokenizer = adapter.tokenizer
    excluded = newline_token_ids(tokenizer) if exclude_newlines else []
    if tokenizer.pad_token_id is not None:
        excluded.append(tokenizer.pad_token_id)
    table = activation_statistics(adapter, sequences, exclude_token_ids=excluded,
                                  pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    weights = weight_statistics(adapter)
    if "wu_kurtosis" in weights.columns:
        weights = classify_roles(weights)
    table = table.merge(weights, on=["layer", "neuron"])
    percentiles = layer_percentiles(table)
    comparison = None
    if correlations is not None:
        corr = UniversalCorrelations.load(correlations)
        table = table.merge(corr.neurons[["layer", "neuron", "excess"]], on=["layer", "neuron"], how="left")
        if table["excess"].isna().all():
            raise InputError(f"{correlations} holds no neuron of {adapter.model_id or model}; pass the correlations of this model.")
        table["universal"] = table["excess"] > threshold
        comparison = compare_universal(table, table["universal"].to_numpy())
    with atomic_directory(out, overwrite=overwrite) as tmp:
        table.to_parquet(tmp / "statistics.parquet", index=False)
        percentiles.to_parquet(tmp / "percentiles.parquet", index=False)
        if comparison is not None:
            comparison.to_csv(tmp / "comparison.csv", index=False)
            _plot_comparison(percentiles, table["universal"].to_numpy(), tmp / "universal_percentiles.png")
    typer.echo(f"{len(table):,} neurons, {int(table['n_tokens'].iloc[0]):,} tokens; wrote {out}")
    if comparison is not None:
        typer.echo(f"universal (excess > {threshold:g}): {int(table['universal'].sum())} neurons; mean layer "
                   "percentile, universal vs other (± s.e.):")
        for row in comparison.itertuples():
            typer.echo(f"  {row.statistic:>22}: {row.universal_mean:5.1f} ± {row.universal_se:4.1f}  vs  "
                       f"{row.other_mean:5.1f} ± {row.other_se:4.1f}")


def _plot_comparison(percentiles, universal, path) -> None:
    """Figure 3.3: each statistic's layer percentile, universal neurons against the rest (box plots)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    columns = list(percentiles.columns[2:])
    fig, ax = plt.subplots(figsize=(1.3 * len(columns) + 2, 4))
    for i, column in enumerate(columns):
        values = percentiles[column].to_numpy()
        for offset, mask, colour in ((-0.18, universal, "tab:red"), (0.18, ~universal, "tab:gray")):
            data = values[mask & ~np.isnan(values)]
            if len(data):
                ax.boxplot([data], positions=[i + offset], widths=0.3, patch_artist=True,
                           boxprops={"facecolor": colour, "alpha": 0.5}, medianprops={"color": "black"},
                           showfliers=False)
    ax.set_xticks(range(len(columns)), [c.replace("_", " ") for c in columns], rotation=30, ha="right")
    ax.set_ylabel("percentile within layer")
    ax.set_title("universal (red) vs other (grey) neurons")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@app.command("explain")
def explain_command(
    model: Annotated[str, typer.Option(help="The model: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write the explanations to.")],
    correlations: Annotated[Optional[Path], typer.Option(
        help="Output of needle universal correlate: also write the family table of the universal neurons.")] = None,
    threshold: Annotated[float, typer.Option(help="Excess correlation above which a neuron is universal.")] = 0.5,
    text: Annotated[Optional[list[Path]], typer.Option(
        help="Text files or directories to stream (default: a toy family's held-out text).")] = None,
    split: Annotated[str, typer.Option(help="A toy family's corpus split: heldout or train.")] = "heldout",
    ud: Annotated[Optional[Path], typer.Option(help="Where the family's UD treebanks are now, if moved.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: Annotated[Optional[int], typer.Option(help="Tokens per sequence, BOS included.")] = None,
    unigrams: Annotated[int, typer.Option(help="Frequent tokens that each get a unigram test.")] = 200,
    top: Annotated[int, typer.Option(help="Best explanations kept per neuron.")] = 3,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Best variance-reduction explanations of every neuron (Eq. 3.4) and, with --correlations, a family table."""
    from needle._io import atomic_file
    from needle.errors import InputError
    from needle.universal.correlate import UniversalCorrelations
    from needle.universal.explain import explain_neurons

    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    adapter, sequences = _one_model_and_sequences(model, text, ud, split, context_length, max_tokens)
    table = explain_neurons(adapter, sequences, n_unigrams=unigrams, top=top)
    with atomic_file(out) as handle:
        table.to_parquet(handle, index=False)
    typer.echo(f"{table['neuron'].nunique() * table['layer'].nunique():,} neurons explained; wrote {out}")
    if correlations is not None:
        corr = UniversalCorrelations.load(correlations)
        universal = corr.universal(threshold)[["layer", "neuron"]]
        best = table[table["rank"] == 0].merge(universal, on=["layer", "neuron"])
        families = best.pivot_table(index="layer", columns="family", values="neuron", aggfunc="count", fill_value=0)
        path = out.with_name(out.stem + "_families.csv")
        with atomic_file(path, "w") as handle:
            families.to_csv(handle)
        typer.echo(f"families of the {len(best)} universal neurons (excess > {threshold:g}), by layer:")
        typer.echo(families.to_string())
