"""``needle results summary``, ``needle results compare`` and ``needle results verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Read sweep results.")


def _interval(value, lo, hi, sd=None) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.3f}"
    if sd is not None and not math.isnan(sd):
        text += f"±{sd:.3f}"
    if lo is not None and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{lo:.2f},{hi:.2f}]"
    return text


def format_summary(summary, *, min_positives: int = 50) -> str:
    """:func:`needle.probing.summarize`'s table for a terminal.

    Identity columns are shown once above it; each score is written ``value [lo,hi]`` (its 95 % bootstrap
    interval over test groups) and ``value±sd`` where the sweep repeated the split; features with fewer than
    ``min_positives`` test positives are marked ``!``, and a legend below says what both mean.
    """
    import pandas as pd

    if not len(summary):
        return "(no results)"
    constant = [c for c in ("model_id", "dataset_hash", "site") if c in summary and summary[c].nunique() == 1]
    header = "  ".join(f"{c}={str(summary[c].iloc[0])[:16] if c == 'dataset_hash' else summary[c].iloc[0]}"
                       for c in constant)
    k_cols = sorted({int(c[len("score_k"):]) for c in summary.columns
                     if c.startswith("score_k") and c[len("score_k"):].isdigit()})
    table = pd.DataFrame({c: summary[c] for c in ("model_id", "dataset_hash", "site") if c in summary
                          and c not in constant})
    table["!"] = ["!" if few else "" for few in summary["few_positives"]]
    width = max(len("feature"), *(len(str(f)) for f in summary["feature"]))
    table["feature"] = [str(f).ljust(width) for f in summary["feature"]]
    table["collection"] = summary["collection"]
    if summary["task"].nunique() > 1:
        table["metric"] = summary["metric"]
    else:
        header += ("  " if header else "") + f"task={summary['task'].iloc[0]}  metric={summary['metric'].iloc[0]}"
    table["layer"] = summary["best_layer"]
    for k in k_cols:
        table[f"k={k}"] = [_interval(*v) for v in zip(summary[f"score_k{k}"], summary[f"score_k{k}_lo"],
                                                      summary[f"score_k{k}_hi"], summary[f"score_k{k}_sd"])]
    table["dense"] = [_interval(v, None, None) for v in summary["score_dense"]]
    table["neuron"] = [("-" if pd.isna(n) else f"L{int(l)}.N{int(n)}") for l, n in
                       zip(summary["neuron_layer"], summary["neuron"])]
    table["neuron score"] = [_interval(*v) for v in zip(summary["neuron_score"], summary["neuron_score_lo"],
                                                        summary["neuron_score_hi"])]
    if (summary["task"] == "binary").any():
        table["neuron_precision"] = summary["neuron_precision"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
        table["neuron_recall"] = summary["neuron_recall"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    table["test pos"] = summary["n_test_pos"]
    table["groups"] = summary["n_test_groups"].map(lambda v: "-" if pd.isna(v) else str(int(v)))
    legend = ["scores at the best layer (highest score at the larger k), best over methods; "
              "[lo,hi]: 95% bootstrap interval over the test groups (documents)"]
    if summary[[f"score_k{k}_sd" for k in k_cols]].notna().any().any():
        legend.append("±sd: over repeated group splits")
    n_few = int(summary["few_positives"].sum())
    if n_few:
        legend.append(f"! {n_few} feature(s) with fewer than {min_positives} test positives: fragile scores")
    with pd.option_context("display.max_rows", 500, "display.max_columns", 40, "display.width", 250):
        body = table.to_string(index=False)
    return "\n".join(([header] if header else []) + [body] + legend)


@app.command("summary")
def summary_command(
    results: Annotated[Path, typer.Argument(help="A results Parquet file.")],
    min_positives: Annotated[int, typer.Option(help="Flag features with fewer test positives than this.")] = 50,
) -> None:
    """Per feature: best layer, score at k=1, k=8 and dense with 95% intervals, the best single neuron."""
    from needle.probing import load_results, summarize

    summary = summarize(load_results(results), min_positives=min_positives)
    typer.echo(format_summary(summary, min_positives=min_positives))


def _parse_spec(text: str, option: str) -> dict:
    from needle.errors import InputError

    spec = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise InputError(f"{option} {text!r} must look like method=mean_diff,k=8 (keys: method, k, layer).")
        spec[key.strip()] = value.strip()
    for key in ("k", "layer"):
        if key in spec:
            try:
                spec[key] = int(spec[key])
            except ValueError:
                raise InputError(f"{option} {text!r}: {key} must be an integer.") from None
    return spec


@app.command("compare")
def compare_command(
    results: Annotated[Path, typer.Argument(help="A results Parquet file (its .splits.parquet beside it).")],
    cache: Annotated[Path, typer.Option("--cache", help="The activation cache the sweep read.")],
    a: Annotated[str, typer.Option("--a", help="Probe A: method=…,k=…,layer=… (any of them), e.g. k=1.")],
    b: Annotated[str, typer.Option("--b", help="Probe B, e.g. k=8; keys neither fixes pair the rows.")],
    metric: Annotated[Optional[str], typer.Option(help="Default: each feature's primary metric.")] = None,
    features: Annotated[Optional[str], typer.Option(help="Comma-separated features (default: all).")] = None,
    bootstrap: Annotated[Optional[int], typer.Option(help="Resamples (default: the sweep's own).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table as CSV here.")] = None,
) -> None:
    """Paired bootstrap test of B − A over the same resamples of each feature's test groups.

    Examples: does F1 rise from k=1 to k=8 with mean_diff?  --a method=mean_diff,k=1 --b method=mean_diff,k=8.
    Does osp beat mean_diff at every k and layer?  --a method=mean_diff --b method=osp.
    """
    import pandas as pd

    from needle._io import atomic_file
    from needle.activations import load_cache
    from needle.probing import load_results, load_splits, splits_path
    from needle.probing.compare import compare_probes

    table = compare_probes(load_results(results), load_splits(splits_path(results)), load_cache(cache),
                           a=_parse_spec(a, "--a"), b=_parse_spec(b, "--b"), metric=metric,
                           features=[f.strip() for f in features.split(",")] if features else None,
                           n_boot=bootstrap)
    if out is not None:
        with atomic_file(out, "w") as handle:
            table.to_csv(handle, index=False)
    shown = table.copy()
    shown.insert(0, "!", ["!" if few else "" for few in shown["few_positives"]])
    shown = shown.drop(columns=["few_positives", "task"])
    for key in ("layer", "method", "k"):  # a key the two sides share is shown once
        if (shown[f"{key}_a"] == shown[f"{key}_b"]).all():
            shown = shown.rename(columns={f"{key}_a": key}).drop(columns=[f"{key}_b"])
    with pd.option_context("display.max_rows", 500, "display.max_columns", 40, "display.width", 250,
                           "display.float_format", "{:.3f}".format):
        typer.echo(shown.to_string(index=False))
    up = int(((table["diff_lo"] > 0)).sum())
    down = int(((table["diff_hi"] < 0)).sum())
    significant = int((table["p_holm"] < 0.05).sum())
    typer.echo(f"{len(table)} pairs: B above A in {up} (95% paired interval above 0), below in {down}; "
               f"{significant} with Holm-adjusted p < 0.05 (resolution 1/{int(table['n_boot'].max())}).")
    if table["few_positives"].any():
        typer.echo(f"! {int(table['few_positives'].sum())} pair(s) of features with fewer than 50 test positives.")


@app.command("verify")
def verify_command(results: Annotated[Path, typer.Argument(help="A results Parquet file.")]) -> None:
    """Check a results file (and its splits) against the checksums written with them."""
    import pyarrow.parquet as pq

    from needle._checksums import checksum_state
    from needle.errors import FormatError
    from needle.probing import load_results
    from needle.probing.splits import load_splits, splits_path

    lines = []
    for path, load, what in ((results, load_results, "result rows"), (splits_path(results), load_splits, "split rows")):
        if path != results and not path.exists():
            lines.append(f"{path}: absent (no splits saved)")
            continue
        frame = load(path)  # verifies the page checksums and the content checksum
        state = checksum_state(pq.read_table(path))
        if state == "absent":
            raise FormatError(f"{path} records no checksum (written by an older needle), so it cannot be verified; "
                              "rerun the sweep into a new file to get one.")
        if state == "stale":
            raise FormatError(f"{path} was rewritten by another tool after needle wrote it (its checksum describes "
                              "another table), so it cannot be verified.")
        lines.append(f"{path}: ok, {len(frame)} {what} match their checksum")
    typer.echo("\n".join(lines))
