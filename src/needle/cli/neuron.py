"""``needle neuron top|tokens|dist|errors|logits|logit-stats|ablate|weights|compound|rotation``.

Thin commands over :mod:`needle.neurons`: each builds its inputs, calls one
analysis, writes the table (``.parquet`` or ``.csv`` from ``--out``'s suffix)
and, unless ``--no-plot``, the analysis's figure as a PNG beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from needle.cli._common import parse_layers
from needle.neurons.ids import format_neuron_id, parse_neuron_list

app = typer.Typer(no_args_is_help=True, help="Zoom in on single neurons: examples, tokens, logits, ablations, weights.")

_Model = Annotated[str, typer.Option(help="Alias, directory or hub id (id@revision pins a revision).")]
# No default: the default elsewhere, MiniLM, is an encoder with no unembedding, which these commands refuse.
_CausalModel = Annotated[str, typer.Option(
    "--model", help="A causal LM: directory or hub id (e.g. a `needle toy train` output, EleutherAI/pythia-70m).")]
_Neurons = Annotated[str, typer.Option(
    "--neurons", help="Comma-separated neurons, e.g. L3.N120,L4.N7 (L3N120 and 3:120 work too).")]
_Out = Annotated[Path, typer.Option("--out", help="Table to write (.parquet or .csv); the plot goes beside it (.png).")]
_Plot = Annotated[bool, typer.Option("--plot/--no-plot", help="Also write the analysis's figure as <out>.png.")]
_Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1…")]
_Dataset = Annotated[Optional[Path], typer.Option("--dataset", help="A ProbeDataset directory to use as the corpus.")]
_Files = Annotated[Optional[list[Path]], typer.Option("--file", help="A UTF-8 text file of the corpus (repeatable).")]
_Label = Annotated[Optional[str], typer.Option(
    "--label", help="Sequence labels. With --dataset: features or group. With --file: suffix, parent or name.")]
_ContextLength = Annotated[int, typer.Option(help="Tokens per sequence when cutting --file texts.")]
_MaxSequences = Annotated[Optional[int], typer.Option(help="Use at most this many sequences.")]


def _load(model: str, device: str):
    from needle.cli._common import check_device
    from needle.models import load_model

    return load_model(model, device=check_device(device))


def _corpus(adapter, dataset: Path | None, files: list[Path] | None, label: str | None, context_length: int,
            max_sequences: int | None):
    from needle.errors import InputError
    from needle.neurons import Corpus

    if (dataset is None) == (not files):
        raise InputError("give the corpus as --dataset DIR or as one or more --file PATH (not both).")
    if dataset is not None:
        if label not in (None, "features", "group"):
            raise InputError(f"--label {label!r}: with --dataset use 'features' or 'group'.")
        corpus = Corpus.from_dataset(dataset, label=label, tokenizer=adapter.tokenizer)
        if max_sequences is not None:
            corpus = corpus.subset(range(min(max_sequences, len(corpus))))
        return corpus
    by = {None: None, "suffix": lambda p: p.suffix or "(none)", "parent": lambda p: p.parent.name,
          "name": lambda p: p.name}
    if label not in by:
        raise InputError(f"--label {label!r}: with --file use suffix, parent or name.")
    if adapter.tokenizer is None:
        raise InputError(f"{adapter.model_id} has no tokenizer to cut --file texts with.")
    return Corpus.from_files(files, adapter.tokenizer, context_length, labels=by[label], max_sequences=max_sequences)


def _neurons(text: str) -> list[tuple[int, int]]:
    return parse_neuron_list(text)


def _write(frame, out: Path, fig=None, plot: bool = True) -> None:
    """Write the table (atomically) and the figure beside it."""
    import pandas as pd

    from needle._io import atomic_file
    from needle.errors import InputError
    from needle.neurons import save_figure

    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"--out {out}: use a .parquet or .csv file name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, (list, tuple))).any():
                frame[column] = frame[column].map(json.dumps)
        with atomic_file(out, "w") as handle:
            frame.to_csv(handle, index=False)
    else:
        with atomic_file(out, "wb") as handle:
            pd.DataFrame(frame).to_parquet(handle, index=False)
    typer.echo(f"wrote {len(frame)} rows to {out}")
    if plot and fig is not None:
        png = out.with_suffix(".png")
        save_figure(fig, png)
        typer.echo(f"wrote {png}")


def _figure(make: Any, plot: bool):
    return make() if plot else None


@app.command("top")
def top_command(
    neurons: _Neurons, out: _Out, model: _Model = "minilm", dataset: _Dataset = None, file: _Files = None,
    label: _Label = None, context_length: _ContextLength = 128, max_sequences: _MaxSequences = None,
    site: Annotated[str, typer.Option(help="post or pre.")] = "post",
    n_top: Annotated[int, typer.Option(help="Largest activations per neuron.")] = 20,
    n_bottom: Annotated[int, typer.Option(help="Smallest activations per neuron.")] = 20,
    per_band: Annotated[int, typer.Option(help="Random tokens per quantile band (0: none).")] = 5,
    context: Annotated[str, typer.Option(help="Tokens before,after the chosen one.")] = "16,4",
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward pass.")] = 8192,
    seed: Annotated[int, typer.Option(help="Seed of the band samples.")] = 0,
    one_per_group: Annotated[bool, typer.Option(
        "--one-per-group/--all-windows",
        help="At most one top and one bottom example per document (corpus group), or every token.")] = True,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Max- and min-activating tokens with context, and random tokens from activation quantile bands."""
    from needle.neurons import plot_top_activations, top_activations

    adapter = _load(model, device)
    corpus = _corpus(adapter, dataset, file, label, context_length, max_sequences)
    chosen = _neurons(neurons)
    table = top_activations(adapter, corpus, chosen, site=site, n_top=n_top, n_bottom=n_bottom, per_band=per_band,
                            context=_pair(context), one_per_group=one_per_group, batch_tokens=batch_tokens,
                            seed=seed, progress=True)
    _write(table, out, _figure(lambda: plot_top_activations(table, *chosen[0], site=site), plot), plot)
    for layer, index in chosen:
        best = table[(table["layer"] == layer) & (table["neuron"] == index) & (table["kind"] == "top")].head(5)
        shown = ", ".join(f"{t!r} {a:.2f} (#{r} in layer)"
                          for t, a, r in zip(best["token"], best["activation"], best["layer_rank"]))
        typer.echo(f"{format_neuron_id(layer, index)} top: {shown}")


@app.command("tokens")
def tokens_command(
    neurons: _Neurons, out: _Out, model: _Model = "minilm", dataset: _Dataset = None, file: _Files = None,
    label: _Label = None, context_length: _ContextLength = 128, max_sequences: _MaxSequences = None,
    site: Annotated[str, typer.Option(help="post or pre.")] = "post",
    by_label: Annotated[bool, typer.Option(help="Break down by sequence label (needs --label).")] = False,
    min_count: Annotated[int, typer.Option(help="Drop tokens seen fewer times.")] = 1,
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward pass.")] = 8192,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Per vocabulary token (and label): count, mean, std, max and min activation."""
    from needle.neurons import plot_token_statistics, token_statistics

    adapter = _load(model, device)
    corpus = _corpus(adapter, dataset, file, label, context_length, max_sequences)
    chosen = _neurons(neurons)
    table = token_statistics(adapter, corpus, chosen, site=site, by_label=by_label, min_count=min_count,
                             batch_tokens=batch_tokens, progress=True)
    _write(table, out, _figure(lambda: plot_token_statistics(table, *chosen[0], min_count=max(5, min_count),
                                                             site=site), plot), plot)


@app.command("dist")
def dist_command(
    dataset: Annotated[Path, typer.Option("--dataset", help="ProbeDataset directory.")],
    feature: Annotated[str, typer.Option(help="The feature whose classes to compare.")],
    neurons: _Neurons, out: _Out, model: _Model = "minilm", device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Pre- and post-activation distributions of neurons on a feature's positive and negative examples."""
    from needle.neurons import class_distributions, plot_class_distributions

    adapter = _load(model, device)
    chosen = _neurons(neurons)
    table = class_distributions(adapter, dataset, feature, chosen)
    _write(table, out, _figure(lambda: plot_class_distributions(table, *chosen[0]), plot), plot)


@app.command("errors")
def errors_command(
    cache: Annotated[Path, typer.Option("--cache", help="The activation cache the sweep read.")],
    results: Annotated[Path, typer.Option("--results", help="The sweep's results Parquet file.")],
    feature: Annotated[str, typer.Option(help="Feature of the probe.")],
    out: _Out,
    layer: Annotated[Optional[int], typer.Option(help="Layer of the probe (default: the best 1-sparse one).")] = None,
    method: Annotated[Optional[str], typer.Option(help="Selection method (default: the best at this k).")] = None,
    k: Annotated[int, typer.Option("--k", help="Sparsity of the probe.")] = 1,
    include_correct: Annotated[bool, typer.Option(help="Also list the correctly classified examples.")] = False,
    plot: _Plot = True,
) -> None:
    """False positives and false negatives of a probe on its held-out split, with context."""
    from needle.errors import InputError
    from needle.neurons import plot_probe_errors, probe_errors
    from needle.probing import load_results, splits_path
    from needle.probing.constants import BASELINE_METHODS

    table = load_results(results)
    rows = table[(table["feature"] == feature) & (table["k"] == k) & ~table["method"].isin(BASELINE_METHODS)]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    if method is not None:
        rows = rows[rows["method"] == method]
    if not len(rows):
        raise InputError(f"{results} has no k={k} probe of {feature!r}"
                         + (f" at layer {layer}" if layer is not None else "")
                         + (f" with method {method!r}" if method else "") + ".")
    row = rows.sort_values(["f1", "layer", "method"], ascending=[False, True, True], kind="stable").iloc[0]
    ids = [int(v) for v in row["neurons"]]
    typer.echo(f"probe: {feature} layer {row['layer']} {row['method']} k={k} neurons {ids} "
               f"(F1 {row['f1']:.3f}, precision {row['precision']:.3f}, recall {row['recall']:.3f})")
    everything = probe_errors(cache, row, splits_path(results), include_correct=True)
    errors = everything if include_correct else everything[everything["predicted"] != everything["y"]]
    _write(errors.reset_index(drop=True), out, _figure(lambda: plot_probe_errors(everything), plot), plot)


@app.command("logits")
def logits_command(
    neuron: Annotated[str, typer.Option("--neuron", help="One neuron, e.g. L3.N120.")],
    out: _Out, model: _CausalModel,
    top: Annotated[int, typer.Option(help="Tokens listed at each end.")] = 20,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Direct effect of a neuron on the next-token logits (causal LMs): top/bottom tokens and moments."""
    from needle.neurons import logit_effects, plot_logit_effects

    adapter = _load(model, device)
    chosen = _neurons(neuron)
    if len(chosen) != 1:
        from needle.errors import InputError

        raise InputError(f"--neuron takes one neuron, got {len(chosen)}.")
    layer, index = chosen[0]
    effects = logit_effects(adapter, layer, index, top=top)
    s = effects.summary()
    typer.echo(f"{format_neuron_id(layer, index)}: variance {s['variance']:.4g}, skew {s['skew']:.3f}, "
               f"kurtosis {s['kurtosis']:.2f}")
    _write(effects.table, out, _figure(lambda: plot_logit_effects(effects), plot), plot)


@app.command("attribution")
def attribution_command(
    neurons: _Neurons, out: _Out, model: _CausalModel, dataset: _Dataset = None, file: _Files = None,
    label: _Label = None, context_length: _ContextLength = 128, max_sequences: _MaxSequences = None,
    n_top: Annotated[int, typer.Option(help="Positions kept at each end per neuron.")] = 20,
    context: Annotated[str, typer.Option(help="Tokens before,after the chosen one.")] = "16,4",
    one_per_group: Annotated[bool, typer.Option(
        "--one-per-group/--all-windows", help="At most one position per document at each end, or every token.")] = True,
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward pass.")] = 8192,
    device: _Device = "cpu",
) -> None:
    """Positions where neurons most raise and most lower the true next token's logit (direct logit attribution)."""
    from needle.neurons import logit_attribution

    adapter = _load(model, device)
    corpus = _corpus(adapter, dataset, file, label, context_length, max_sequences)
    chosen = _neurons(neurons)
    found = logit_attribution(adapter, corpus, chosen, n_top=n_top, context=_pair(context),
                              one_per_group=one_per_group, batch_tokens=batch_tokens, progress=True)
    _write(found.examples, out, None, False)
    for row in found.summary.itertuples(index=False):
        note = ": on average it lowers the correct next token" if row.lowers_correct_token else ""
        typer.echo(f"{format_neuron_id(row.layer, row.neuron)}: mean attribution {row.mean_attribution:.4g} over "
                   f"{row.n_tokens} tokens, below zero on {100 * row.fraction_negative:.1f} %{note}")


@app.command("logit-stats")
def logit_stats_command(
    out: _Out, model: _CausalModel,
    layers: Annotated[Optional[str], typer.Option(help="e.g. 0,2,4 or 0-5 (default: all).")] = None,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Variance, skew and kurtosis of every neuron's logit effects (prediction / suppression / partition)."""
    from needle.neurons import logit_statistics, plot_logit_statistics

    adapter = _load(model, device)
    table = logit_statistics(adapter, parse_layers(layers))
    _write(table, out, _figure(lambda: plot_logit_statistics(table), plot), plot)


@app.command("ablate")
def ablate_command(
    neurons: _Neurons, out: _Out, model: _CausalModel, dataset: _Dataset = None, file: _Files = None,
    label: _Label = None, context_length: _ContextLength = 128, max_sequences: _MaxSequences = None,
    mode: Annotated[str, typer.Option(help="zero, mean, or a number.")] = "zero",
    site: Annotated[str, typer.Option(help="post or pre.")] = "post",
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward pass.")] = 4096,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Change in next-token loss by sequence label when neurons are ablated (causal LMs)."""
    from needle.neurons import ablate, plot_ablation

    adapter = _load(model, device)
    corpus = _corpus(adapter, dataset, file, label, context_length, max_sequences)
    try:
        value: Any = float(mode)
    except ValueError:
        value = mode
    table = ablate(adapter, corpus, _neurons(neurons), mode=value, site=site, batch_tokens=batch_tokens, progress=True)
    typer.echo(table[["label", "n_tokens", "loss_clean", "loss_ablated", "delta", "delta_se"]].to_string(index=False))
    _write(table, out, _figure(lambda: plot_ablation(table), plot), plot)


@app.command("weights")
def weights_command(
    out: _Out, model: _Model = "minilm",
    layers: Annotated[Optional[str], typer.Option(help="e.g. 0,2,4 or 0-5 (default: all).")] = None,
    highlight: Annotated[Optional[str], typer.Option(help="Neurons to mark on the plot, e.g. L3.N120.")] = None,
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Per neuron: input weight norm, bias, their product, output norm, cos(w_in, w_out)."""
    from needle.neurons import plot_weight_statistics, weight_statistics

    adapter = _load(model, device)
    table = weight_statistics(adapter, parse_layers(layers))
    marks = _neurons(highlight) if highlight else None
    _write(table, out, _figure(lambda: plot_weight_statistics(table, highlight=marks), plot), plot)


@app.command("compound")
def compound_command(
    texts: Annotated[Path, typer.Option("--texts", help='JSON file: {"class name": ["text", ...], ...}.')],
    neurons: _Neurons, out: _Out, model: _Model = "minilm",
    site: Annotated[str, typer.Option(help="post or pre.")] = "post",
    device: _Device = "cpu", plot: _Plot = True,
) -> None:
    """Summed activation of neurons at the last token of a compound word's texts against look-alikes."""
    from needle.errors import InputError
    from needle.neurons import compound_activation, plot_compound_activation

    try:
        classes = json.loads(texts.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{texts} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{texts}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(classes, dict):
        raise InputError(f'{texts}: expected an object like {{"class": ["text", ...]}}.')
    adapter = _load(model, device)
    table = compound_activation(adapter, classes, _neurons(neurons), site=site)
    _write(table, out, _figure(lambda: plot_compound_activation(table), plot), plot)


@app.command("rotation")
def rotation_command(
    cache: Annotated[Path, typer.Option("--cache", help="An activation cache (site post).")],
    feature: Annotated[str, typer.Option(help="Feature to classify.")],
    layer: Annotated[int, typer.Option(help="Layer of the cache.")],
    out: _Out,
    n_rotations: Annotated[int, typer.Option(help="Random bases to compare with.")] = 5,
    rotation: Annotated[str, typer.Option(help="orthogonal or gaussian (the paper's).")] = "orthogonal",
    seed: Annotated[int, typer.Option(help="Seed of the split and the rotations.")] = 0,
    plot: _Plot = True,
) -> None:
    """1-sparse probes in the neuron basis against random bases (is the neuron basis privileged?)."""
    from needle.neurons import plot_rotation_comparison, rotation_comparison

    table = rotation_comparison(cache, feature, layer, n_rotations=n_rotations, rotation=rotation, seed=seed,
                                ks=(1, 4))
    best = table[(table["probe"] == "single") & (table["rank"] == 0)].groupby("basis")["f1"].mean()
    typer.echo("best single-dimension F1: " + ", ".join(f"{b} {v:.3f}" for b, v in best.items()))
    _write(table, out, _figure(lambda: plot_rotation_comparison(table), plot), plot)


def _pair(text: str) -> tuple[int, int]:
    from needle.errors import InputError

    try:
        before, after = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--context {text!r}: write tokens before,after such as 16,4.") from None
    return before, after
