"""``needle universal …``: which neurons of one model have a twin in models trained from other seeds (thesis Chapter 3).

``correlate`` (§3.4.1), ``stats`` (§3.4.2), ``explain`` (families, §3.4.3),
``roles`` (prediction / suppression / partition, §3.5.1), ``entropy``
(§3.5.2), ``attention`` (§3.5.3) and ``scope`` (a static universality site).
Each writes tidy tables (Parquet / CSV) and a figure (PNG) under ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# Options several commands share, declared once.
TextFiles = Annotated[Optional[list[Path]], typer.Option(
    help="Text files or directories to stream (default: a toy family's held-out text).")]
FamilySplit = Annotated[str, typer.Option(help="A toy family's corpus split: heldout or train.")]
MovedUD = Annotated[Optional[Path], typer.Option(help="Where the family's UD treebanks are now, if moved.")]
ContextLength = Annotated[Optional[int], typer.Option(help="Tokens per sequence, BOS included.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing --out.")]

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
    ud: MovedUD = None,
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
    overwrite: Overwrite = False,
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
    from needle._io import atomic_file
    from needle.universal.figures import excess_by_layer

    by_layer = result.by_layer(0.5)
    with atomic_file(out / "by_layer.csv", "w") as handle:
        by_layer.to_csv(handle, index=False)
    excess_by_layer(result.neurons, out / "excess_by_layer.png")
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
    text: TextFiles = None,
    split: FamilySplit = "heldout",
    ud: MovedUD = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: ContextLength = None,
    exclude_newlines: Annotated[bool, typer.Option(help="Leave newline tokens out.")] = False,
    overwrite: Overwrite = False,
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


def _check_out(out: Path, overwrite: bool) -> None:
    from needle.errors import InputError

    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")


def _universal_keys(correlations: Path | None, threshold: float) -> set[tuple[int, int]] | None:
    """The (layer, neuron) pairs with excess correlation above ``threshold``, or None without --correlations."""
    if correlations is None:
        return None
    from needle.universal.correlate import UniversalCorrelations

    universal = UniversalCorrelations.load(correlations).universal(threshold)
    return set(zip(universal["layer"].astype(int), universal["neuron"].astype(int)))


def _units_of(text_paths, family_dir, ud, split):
    """Text units with a source each: the family corpus's split, or one source per --text path."""
    from needle.toy.corpus import TextUnit

    if text_paths:
        units = []
        for path in text_paths:
            texts, _ = _texts([path], None, ud, split)
            units += [TextUnit(path.stem or str(path), f"{path}:{i}", t) for i, t in enumerate(texts)]
        return units
    from needle.universal.family import family_corpus

    if family_dir is None:
        from needle.errors import InputError

        raise InputError("give --text FILE/DIR: only a toy family (needle toy train-seeds) knows its own corpus.")
    corpus = family_corpus(family_dir, ud=ud)
    return corpus.heldout if split == "heldout" else corpus.train


def _conllu_files(paths: list[Path]) -> list[Path]:
    from needle.errors import InputError

    files = []
    for path in paths:
        if not path.exists():
            raise InputError(f"--syntax {path} does not exist; pass CoNLL-U files or directories of them.")
        found = sorted(p for p in path.rglob("*.conllu*")) if path.is_dir() else [path]
        if not found:
            raise InputError(f"--syntax {path} holds no .conllu or .conllu.gz file.")
        files += found
    return files


@app.command("explain")
def explain_command(
    model: Annotated[str, typer.Option(help="The model: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write the explanations to.")],
    correlations: Annotated[Optional[Path], typer.Option(
        help="Output of needle universal correlate: also write the family table of the universal neurons.")] = None,
    threshold: Annotated[float, typer.Option(help="Excess correlation above which a neuron is universal.")] = 0.5,
    text: Annotated[Optional[list[Path]], typer.Option(
        help="Text files or directories to stream, each its own source for the context tests "
             "(default: a toy family's held-out text, by source).")] = None,
    split: FamilySplit = "heldout",
    ud: MovedUD = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: ContextLength = None,
    unigrams: Annotated[int, typer.Option(help="Frequent tokens that each get a unigram test.")] = 200,
    top: Annotated[int, typer.Option(help="Best explanations kept per neuron.")] = 3,
    context: Annotated[bool, typer.Option(help="Run the context tests (the token's source).")] = True,
    position: Annotated[bool, typer.Option(help="Run the position test (mutual information).")] = True,
    syntax: Annotated[Optional[list[Path]], typer.Option(
        help="CoNLL-U files or directories: run the syntax tests on their gold UD labels.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Best variance-reduction explanations of every neuron (Eq. 3.4) and, with --correlations, a family table."""
    from needle._io import atomic_file
    from needle.errors import InputError
    from needle.models import load_model
    from needle.universal.explain import explain_neurons
    from needle.universal.family import resolve_family
    from needle.universal.figures import families_by_layer
    from needle.universal.tokens import pack_units

    _check_out(out, overwrite)
    if split not in ("heldout", "train"):
        raise InputError(f"--split must be heldout or train, not {split!r}.")
    if unigrams < 0 or top < 1:
        raise InputError(f"--unigrams must be >= 0 and --top >= 1, got {unigrams} and {top}.")
    universal = _universal_keys(correlations, threshold)
    files = _conllu_files(syntax) if syntax else None
    family_dir = _family_dir(model)
    adapter = load_model(resolve_family(model)[0].model if family_dir is not None else model)
    length = context_length or min(adapter.max_positions or 512, 512)
    sequences, sources = pack_units(_units_of(text, family_dir, ud, split), adapter.tokenizer, length,
                                    max_tokens=max_tokens)
    table = explain_neurons(adapter, sequences, n_unigrams=unigrams, top=top, sources=sources if context else None,
                            position=position, ud=files)
    with atomic_file(out) as handle:
        table.to_parquet(handle, index=False)
    best_all = table[table["rank"] == 0]
    typer.echo(f"{len(best_all):,} neurons explained on {sum(len(s) for s in sequences):,} tokens "
               f"({len(set(sources))} sources); wrote {out}")
    typer.echo("best test's family, all neurons: " + ", ".join(
        f"{name} {count}" for name, count in best_all["family"].value_counts().items()))
    if universal is not None:
        keys = list(zip(best_all["layer"].astype(int), best_all["neuron"].astype(int)))
        best = best_all[[key in universal for key in keys]]
        families = best.pivot_table(index="layer", columns="family", values="neuron", aggfunc="count", fill_value=0)
        path = out.with_name(out.stem + "_families.csv")
        with atomic_file(path, "w") as handle:
            families.to_csv(handle)
        families_by_layer(families, out.with_name(out.stem + "_families.png"),
                          title=f"families of the {len(best)} universal neurons (ϱ > {threshold:g})")
        typer.echo(f"families of the {len(best)} universal neurons (excess > {threshold:g}), by layer:")
        typer.echo(families.to_string() if len(families) else "  (none)")


@app.command("roles")
def roles_command(
    model: Annotated[str, typer.Option(help="A causal LM: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Directory to write the tables and figures to.")],
    correlations: Annotated[Optional[Path], typer.Option(
        help="Output of needle universal correlate: mark the universal neurons and check those only.")] = None,
    threshold: Annotated[float, typer.Option(help="Excess correlation above which a neuron is universal.")] = 0.5,
    kurtosis: Annotated[float, typer.Option(help="Kurtosis of cos(w_out, W_U) above which a neuron predicts or "
                                                 "suppresses (the thesis: 10).")] = 10.0,
    z: Annotated[float, typer.Option(help="A neuron's token set: tokens whose cos(w_out, W_U) lies beyond z "
                                          "standard deviations.")] = 3.0,
    max_neurons: Annotated[int, typer.Option(help="Most prediction / suppression neurons given the firing check "
                                                  "(largest kurtosis first).")] = 50,
    text: TextFiles = None,
    split: FamilySplit = "heldout",
    ud: MovedUD = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens to stream.")] = None,
    context_length: ContextLength = None,
    overwrite: Overwrite = False,
) -> None:
    """Prediction, suppression and partition neurons (Figure 3.6), and whether they fire before their tokens."""
    from needle._io import atomic_directory
    from needle.errors import InputError
    from needle.universal.figures import next_token_firing_figure, role_percentiles_figure
    from needle.universal.roles import classify_roles, next_token_firing, role_percentiles_by_layer
    from needle.universal.stats import weight_statistics

    _check_out(out, overwrite)
    if max_neurons < 0 or z <= 0:
        raise InputError(f"--max-neurons must be >= 0 and --z > 0, got {max_neurons} and {z}.")
    universal = _universal_keys(correlations, threshold)
    adapter, sequences = _one_model_and_sequences(model, text, ud, split, context_length, max_tokens)
    if not adapter.is_causal:
        raise InputError(f"{model} is an encoder; roles need a causal LM's unembedding.")
    weights = classify_roles(weight_statistics(adapter), kurtosis_threshold=kurtosis)
    if universal is not None:
        weights["universal"] = [key in universal for key in zip(weights["layer"], weights["neuron"])]
    percentiles = role_percentiles_by_layer(weights)
    motif = weights[weights["role"].isin(["prediction", "suppression"])]
    if universal is not None:
        motif = motif[motif["universal"]]
    motif = motif.sort_values("wu_kurtosis", ascending=False).head(max_neurons)
    firing = next_token_firing(adapter, sequences, list(zip(motif["layer"], motif["neuron"], motif["role"])), z=z) \
        if len(motif) else None
    with atomic_directory(out, overwrite=overwrite) as tmp:
        weights.to_parquet(tmp / "roles.parquet", index=False)
        percentiles.to_csv(tmp / "role_percentiles.csv", index=False)
        counts = weights.groupby(["layer", "role"]).size().unstack(fill_value=0)
        counts.to_csv(tmp / "roles_by_layer.csv")
        role_percentiles_figure(weights, percentiles, tmp / "role_percentiles.png", kurtosis_threshold=kurtosis)
        if firing is not None:
            firing.to_csv(tmp / "next_token_firing.csv", index=False)
            next_token_firing_figure(firing, tmp / "next_token_firing.png")
    typer.echo(f"{len(weights):,} neurons; roles by layer:")
    typer.echo(counts.to_string())
    if firing is not None:
        ok = firing.dropna(subset=["mean_in", "mean_out"])
        for role, group in ok.groupby("role"):
            more = int((group["mean_in"] > group["mean_out"]).sum())
            typer.echo(f"{role}: {more} of {len(group)} fire more when the next token is in their set")
    typer.echo(f"wrote {out}")


def _floats(text: str, option: str) -> list[float]:
    from needle.errors import InputError

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, not {text!r}.") from None
    if not values:
        raise InputError(f"{option} needs at least one number.")
    return values


@app.command("entropy")
def entropy_command(
    model: Annotated[str, typer.Option(help="A causal LM: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Directory to write the tables and the figure to.")],
    neurons: Annotated[Optional[str], typer.Option(
        help="Neurons to sweep, e.g. L3.N12,L3.N40 (default: the entropy candidate of the last layers and its "
             "antipode).")] = None,
    values: Annotated[str, typer.Option(help="Comma-separated activations to fix the neurons at.")
                      ] = "-0.5,0,1,2,3,4,6",
    random: Annotated[int, typer.Option(help="Random neurons of the last layers to compare with.")] = 20,
    last: Annotated[int, typer.Option(help="Layers at the end that candidates and random neurons come from.")] = 2,
    antipodal: Annotated[float, typer.Option(help="cos(w_out, w_out') at or below which two neurons are an "
                                                  "antipodal pair.")] = -0.8,
    seed: Annotated[int, typer.Option(help="Seeds the random neurons.")] = 0,
    text: TextFiles = None,
    split: FamilySplit = "heldout",
    ud: MovedUD = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to run each sweep on.")] = 16384,
    context_length: ContextLength = None,
    overwrite: Overwrite = False,
) -> None:
    """Entropy neurons (Figure 3.7): fix a neuron's activation and measure the final-norm scale, the next-token
    entropy, the true token's rank and the loss, against random neurons of the last layers."""
    from needle._io import atomic_directory
    from needle.errors import InputError
    from needle.neurons.ids import format_neuron_id, parse_neuron_list
    from needle.universal.entropy import antipodal_pairs, entropy_candidates, fixed_activation_sweep, random_neurons
    from needle.universal.figures import entropy_figure
    from needle.universal.stats import weight_statistics

    _check_out(out, overwrite)
    grid = _floats(values, "--values")
    if random < 0:
        raise InputError(f"--random must be >= 0, not {random}.")
    adapter, sequences = _one_model_and_sequences(model, text, ud, split, context_length, max_tokens)
    if not adapter.is_causal:
        raise InputError(f"{model} is an encoder; the entropy sweep needs a causal LM.")
    weights = weight_statistics(adapter)
    if neurons:
        chosen = [(a, b, format_neuron_id(a, b)) for a, b in parse_neuron_list(neurons)]
        for a, b, _ in chosen:
            if not (0 <= a < adapter.n_layers and 0 <= b < adapter.n_neurons):
                raise InputError(f"--neurons: {format_neuron_id(a, b)} does not exist ({adapter.n_layers} layers of "
                                 f"{adapter.n_neurons} neurons).")
    else:
        chosen = [(a, b, f"{format_neuron_id(a, b)} {label}") for a, b, label in
                  entropy_candidates(adapter, weights, last=last)]
    others = random_neurons(adapter, random, last=last, seed=seed, exclude=[(a, b) for a, b, _ in chosen])
    frames = [fixed_activation_sweep(adapter, sequences, (a, b), grid) for a, b, _ in chosen]
    frames += [fixed_activation_sweep(adapter, sequences, key, grid) for key in others]
    import pandas as pd

    sweep = pd.concat(frames, ignore_index=True)
    sweep["kind"] = ["chosen" if (a, b) in {(c[0], c[1]) for c in chosen} else "random"
                     for a, b in zip(sweep["layer"], sweep["neuron"])]
    pairs = antipodal_pairs(adapter, layers=list(range(max(adapter.n_layers - last, 0), adapter.n_layers)),
                            threshold=antipodal)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        sweep.to_parquet(tmp / "sweep.parquet", index=False)
        sweep.to_csv(tmp / "sweep.csv", index=False)
        pairs.to_csv(tmp / "antipodal_pairs.csv", index=False)
        entropy_figure(weights, sweep, chosen, tmp / "entropy.png")
    base = sweep[sweep["value"].isna()]["entropy"].mean()
    for a, b, label in chosen:
        part = sweep[(sweep["layer"] == a) & (sweep["neuron"] == b) & sweep["value"].notna()]
        typer.echo(f"{label}: entropy {part['entropy'].iloc[0]:.3f} → {part['entropy'].iloc[-1]:.3f} nats, norm "
                   f"scale {part['norm_scale'].iloc[0]:.2f} → {part['norm_scale'].iloc[-1]:.2f} (value "
                   f"{grid[0]:g} → {grid[-1]:g}; unpatched entropy {base:.3f})")
    rand = sweep[(sweep["kind"] == "random") & sweep["value"].notna()]
    if len(rand):
        spread = rand.groupby(["layer", "neuron"])["entropy"].agg(lambda v: v.iloc[-1] - v.iloc[0])
        typer.echo(f"{len(spread)} random neurons: entropy change over the grid {spread.mean():+.3f} ± "
                   f"{spread.std(ddof=1) if len(spread) > 1 else 0:.3f} nats (mean ± s.d.)")
    typer.echo(f"{len(pairs)} antipodal pairs (cos <= {antipodal:g}) in the last {last} layers; wrote {out}")


@app.command("attention")
def attention_command(
    model: Annotated[str, typer.Option(help="A causal LM: a directory, hub id, or a family (its first member).")],
    out: Annotated[Path, typer.Option(help="Directory to write the tables and figures to.")],
    neuron: Annotated[Optional[str], typer.Option(
        help="The neuron to path-ablate, e.g. L1.N40 (default: the largest |h_n| over all heads).")] = None,
    head: Annotated[Optional[str], typer.Option(
        help="Its head as LAYER.HEAD, e.g. 2.0 (default: the head of the largest |h_n| of the neuron).")] = None,
    n_random: Annotated[Optional[int], typer.Option(help="Random directions per neuron layer (default: as many "
                                                         "as neurons).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the random directions.")] = 0,
    text: TextFiles = None,
    split: FamilySplit = "heldout",
    ud: MovedUD = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens for the path ablation.")] = 16384,
    context_length: ContextLength = None,
    overwrite: Overwrite = False,
) -> None:
    """Attention (de)activation neurons (Figure 3.8): the BOS score h_n of every neuron and later head against random
    directions, and a path ablation of one neuron's contribution to one head's query."""
    from needle._io import atomic_directory
    from needle.errors import InputError
    from needle.neurons.ids import format_neuron_id, parse_neuron_id
    from needle.universal.attention import bos_scores, path_ablate_query
    from needle.universal.figures import bos_scores_figure, path_ablation_figure

    _check_out(out, overwrite)
    if head is not None and neuron is None:
        raise InputError("--head needs --neuron: give the neuron whose contribution to that head is ablated.")
    chosen_head = None
    if head is not None:
        try:
            chosen_head = tuple(int(x) for x in head.split("."))
        except ValueError:
            chosen_head = ()
        if len(chosen_head) != 2:
            raise InputError(f"--head must be LAYER.HEAD, e.g. 2.0, not {head!r}.")
    chosen = parse_neuron_id(neuron) if neuron is not None else None
    adapter, sequences = _one_model_and_sequences(model, text, ud, split, context_length, max_tokens)
    if adapter.n_layers < 2:
        raise InputError(f"{model} has one layer; attention neurons need a head in a later layer.")
    scores, baseline = bos_scores(adapter, n_random=n_random, seed=seed)
    ranked = scores.assign(magnitude=scores["score"].abs()).sort_values("magnitude", ascending=False)
    if chosen is None:
        row = ranked.iloc[0]
        chosen, chosen_head = (int(row["layer"]), int(row["neuron"])), (int(row["head_layer"]), int(row["head"]))
    elif chosen_head is None:
        mine = ranked[(ranked["layer"] == chosen[0]) & (ranked["neuron"] == chosen[1])]
        if not len(mine):
            raise InputError(f"--neuron {neuron}: no scored neuron there (layers 0..{adapter.n_layers - 2}, "
                             f"{adapter.n_neurons} neurons each).")
        chosen_head = (int(mine.iloc[0]["head_layer"]), int(mine.iloc[0]["head"]))
    table = path_ablate_query(adapter, sequences, chosen, chosen_head)
    score = scores[(scores["layer"] == chosen[0]) & (scores["neuron"] == chosen[1])
                   & (scores["head_layer"] == chosen_head[0]) & (scores["head"] == chosen_head[1])]["score"]
    label = f"{format_neuron_id(*chosen)} → head L{chosen_head[0]}.H{chosen_head[1]}"
    with atomic_directory(out, overwrite=overwrite) as tmp:
        scores.to_parquet(tmp / "bos_scores.parquet", index=False)
        baseline.to_parquet(tmp / "bos_baseline.parquet", index=False)
        table.to_parquet(tmp / "path_ablation.parquet", index=False)
        bos_scores_figure(scores, baseline, tmp / "bos_scores.png")
        path_ablation_figure(table, tmp / "path_ablation.png",
                             title=f"{label} (h_n = {float(score.iloc[0]):+.3f})" if len(score) else label)
    spread = float(baseline["score"].abs().quantile(0.99))
    typer.echo(f"{len(scores):,} (neuron, head) pairs; {int((scores['score'].abs() > spread).sum()):,} beyond the "
               f"random directions' 99th percentile of |h_n| ({spread:.3f})")
    delta_attn = table["bos_attention"] - table["bos_attention_ablated"]
    delta_norm = table["norm"] - table["norm_ablated"]
    n = len(table)
    typer.echo(f"{label}: over {n:,} positions, attention to BOS original − ablated {delta_attn.mean():+.2e} ± "
               f"{delta_attn.std(ddof=1) / n ** 0.5:.1e}, head output norm {delta_norm.mean():+.2e} ± "
               f"{delta_norm.std(ddof=1) / n ** 0.5:.1e} (mean ± s.e.); wrote {out}")


@app.command("scope")
def scope_command(
    correlations: Annotated[Path, typer.Option(help="Output of needle universal correlate.")],
    out: Annotated[Path, typer.Option(help="Site directory to write.")],
    explain: Annotated[Optional[Path], typer.Option(help="Output of needle universal explain (its parquet file).")
                       ] = None,
    roles: Annotated[Optional[Path], typer.Option(help="Output of needle universal roles or stats (the directory).")
                     ] = None,
    threshold: Annotated[float, typer.Option(help="Excess correlation above which a neuron is universal.")] = 0.5,
    overwrite: Overwrite = False,
) -> None:
    """A static site of the universality results: ϱ per layer, the universal neurons with their families, and a page
    per universal neuron (partners, family tests, role statistics). Open OUT/universality.html."""
    from needle.scope.universality import build_universality_site, load_universality

    _check_out(out, overwrite)
    view = load_universality(correlations, explain=explain, roles=roles, threshold=threshold)
    build_universality_site(view, out, overwrite=overwrite)
    typer.echo(f"{len(view.universal):,} universal neurons of {len(view.neurons):,}; wrote {out / 'universality.html'}")
