"""One plot per neuron analysis (matplotlib).

Every function takes the table (or result object) its analysis returns and
returns a :class:`matplotlib.figure.Figure` — built without pyplot, so no
global state and no window; save it with ``fig.savefig("x.png")`` or use
:func:`save_figure`. Axes carry units: activations are in the units of the
model's hidden layer (``post``: after the nonlinearity; ``pre``: before),
losses in nats per token, logit effects in logits per unit of activation.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.neurons.ids import format_neuron_id

__all__ = [
    "plot_top_activations",
    "plot_token_statistics",
    "plot_class_distributions",
    "plot_probe_errors",
    "plot_logit_effects",
    "plot_logit_statistics",
    "plot_ablation",
    "plot_weight_statistics",
    "plot_compound_activation",
    "plot_rotation_comparison",
    "save_figure",
]

_KIND_COLORS = {"top": "#c0392b", "bottom": "#2c7bb6", "band": "#7f7f7f"}


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write a figure atomically (PNG, SVG or PDF from the suffix)."""
    from needle._io import atomic_file

    suffix = os.fspath(path).rsplit(".", 1)[-1].lower()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format=suffix if suffix in ("png", "svg", "pdf") else "png", bbox_inches="tight")


def _one_neuron(table: pd.DataFrame, layer: int | None, neuron: int | None, what: str) -> tuple[pd.DataFrame, int, int]:
    if not len(table):
        raise InputError(f"the {what} table is empty; nothing to plot.")
    if layer is None or neuron is None:
        pairs = table[["layer", "neuron"]].drop_duplicates()
        if len(pairs) > 1:
            raise InputError(f"the {what} table holds {len(pairs)} neurons; pass layer= and neuron= to pick one.")
        layer, neuron = int(pairs.iloc[0]["layer"]), int(pairs.iloc[0]["neuron"])
    part = table[(table["layer"] == layer) & (table["neuron"] == neuron)]
    if not len(part):
        raise InputError(f"{format_neuron_id(layer, neuron)} is not in the {what} table.")
    return part, int(layer), int(neuron)


def _snippet(tokens: list[str], focus: int, width: int = 60) -> str:
    """Context as one line with the focus token in ⟦brackets⟧, cut to about ``width`` characters around it."""
    clean = [t.replace("\n", "⏎").replace("\t", "⇥") for t in tokens]
    before = "".join(clean[:focus])[-width // 2 :]
    after = "".join(clean[focus + 1 :])[: width // 3]
    focus_text = clean[focus]
    space = " " if focus_text[:1].isspace() else ""
    return f"{before}{space}⟦{focus_text.strip() or focus_text}⟧{after}"


def plot_top_activations(table: pd.DataFrame, layer: int | None = None, neuron: int | None = None, *,
                         max_per_kind: int = 10, site: str = "post"):
    """Bar chart of the chosen tokens' activations, each labelled with its context (the token in ⟦ ⟧).

    Top, bottom and band samples are coloured apart so the quantile-band
    samples sit beside the maxima (against the interpretability illusion).
    """
    part, layer, neuron = _one_neuron(table, layer, neuron, "top-activations")
    chunks = []
    for kind in ("top", "band", "bottom"):
        rows = part[part["kind"] == kind]
        if kind == "band":
            rows = rows.groupby("band", sort=False).head(max(1, max_per_kind // max(1, rows["band"].nunique())))
            rows = rows.sort_values("activation", ascending=False)
        else:
            rows = rows.sort_values("rank").head(max_per_kind)
        chunks.append(rows)
    rows = pd.concat(chunks)
    fig, axes = _figure(10, 0.28 * len(rows) + 1.6)
    ax = axes[0, 0]
    y = np.arange(len(rows))[::-1]
    colors = [_KIND_COLORS[k] for k in rows["kind"]]
    ax.barh(y, rows["activation"], color=colors)
    labels = [(_snippet(t, f) + (f"  [{b}]" if k == "band" else "")) for t, f, k, b in
              zip(rows["context_tokens"], rows["focus"], rows["kind"], rows["band"])]
    ax.set_yticks(y, labels, fontsize=7, fontfamily="monospace")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"activation of {format_neuron_id(layer, neuron)} at the ⟦token⟧ ({site}, hidden-layer units)")
    ax.set_ylabel("example (context, token in ⟦ ⟧)")
    ax.set_title(f"{format_neuron_id(layer, neuron)}: most positive, quantile-band samples, most negative")
    from matplotlib.patches import Patch

    present = [k for k in ("top", "band", "bottom") if (rows["kind"] == k).any()]
    ax.legend([Patch(color=_KIND_COLORS[k]) for k in present],
              [{"top": "top", "band": "random from quantile band", "bottom": "bottom"}[k] for k in present],
              loc="lower right", fontsize=8)
    return fig


def plot_token_statistics(table: pd.DataFrame, layer: int | None = None, neuron: int | None = None, *,
                          top: int = 20, tokens: list[str] | None = None, min_count: int = 5, site: str = "post"):
    """Mean activation per token (the ``top`` highest, at least ``min_count`` occurrences), error bars = std.

    With a ``label`` column (``by_label=True``), ``tokens`` (strings as in the
    table's ``token`` column) picks the tokens shown, grouped by label — the
    paper's activation on ``return`` per programming language.
    """
    part, layer, neuron = _one_neuron(table, layer, neuron, "token-statistics")
    by_label = "label" in part.columns
    frequent = part[part["count"] >= min_count]
    note = f" (tokens seen ≥ {min_count}×)" if len(frequent) else " (all tokens: none is frequent)"
    part = frequent if len(frequent) else part
    if by_label:
        if tokens is None:
            overall = part.groupby("token")["mean"].max().sort_values(ascending=False)
            tokens = list(overall.index[: min(top, 5)])
        part = part[part["token"].isin(tokens)]
        labels = sorted(part["label"].unique())
        fig, axes = _figure(max(6, 0.5 * len(labels) * len(tokens) + 2), 4.5)
        ax = axes[0, 0]
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            sub = part[part["label"] == label].set_index("token").reindex(tokens)
            x = np.arange(len(tokens)) + i * width
            ax.bar(x, sub["mean"], width, yerr=sub["std"], label=str(label), capsize=2)
        ax.set_xticks(np.arange(len(tokens)) + 0.4 - width / 2, [repr(t) for t in tokens])
        ax.legend(title="label", fontsize=8)
        ax.set_xlabel("token")
    else:
        part = part.sort_values("mean", ascending=False).head(top)
        fig, axes = _figure(10, 4.5)
        ax = axes[0, 0]
        ax.bar(np.arange(len(part)), part["mean"], yerr=part["std"], capsize=2, color="#c0392b", label="mean ± std")
        ax.set_xticks(np.arange(len(part)), [f"{t!r} ({c})" for t, c in zip(part["token"], part["count"])],
                      rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("token (count)")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"mean activation ({site}, hidden-layer units)")
    ax.set_title(f"{format_neuron_id(layer, neuron)}: activation by token{note}")
    return fig


def plot_class_distributions(table: pd.DataFrame, layer: int | None = None, neuron: int | None = None, *,
                             bins: int = 40):
    """Histograms of a neuron's activations on positive and negative examples, one panel per site."""
    part, layer, neuron = _one_neuron(table, layer, neuron, "class-distribution")
    sites = [s for s in ("pre", "post") if (part["site"] == s).any()]
    feature = str(part["feature"].iloc[0])
    fig, axes = _figure(5 * len(sites), 3.8, ncols=len(sites))
    for ax, site in zip(axes[0], sites):
        sub = part[part["site"] == site]
        edges = np.histogram_bin_edges(sub["activation"], bins=bins)
        for y, name, color in ((0, f"not {feature}", "#2c7bb6"), (1, feature, "#c0392b")):
            values = sub.loc[sub["y"] == y, "activation"]
            ax.hist(values, bins=edges, density=True, alpha=0.6, color=color, label=f"{name} (n={len(values)})")
        ax.set_xlabel(f"{'pre-activation' if site == 'pre' else 'activation (post)'}, hidden-layer units")
        ax.set_ylabel("density (examples per unit)")
        ax.set_title(f"{format_neuron_id(layer, neuron)} {site}")
        ax.legend(fontsize=8)
    return fig


def plot_probe_errors(table: pd.DataFrame, *, bins: int = 40):
    """Histogram of the probe's decision scores by outcome, with the threshold at 0."""
    if not len(table):
        raise InputError("the probe-errors table is empty; nothing to plot.")
    fig, axes = _figure(6.5, 4)
    ax = axes[0, 0]
    edges = np.histogram_bin_edges(table["score"], bins=bins)
    colors = {"true_positive": "#c0392b", "false_negative": "#f39c12", "true_negative": "#2c7bb6",
              "false_positive": "#8e44ad"}
    for outcome, color in colors.items():
        values = table.loc[table["outcome"] == outcome, "score"]
        if len(values):
            ax.hist(values, bins=edges, alpha=0.6, color=color, label=f"{outcome.replace('_', ' ')} (n={len(values)})")
    ax.axvline(0, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("probe decision score (logit)")
    ax.set_ylabel("examples")
    ax.set_title(f"{table['feature'].iloc[0]} probe, layer {table['layer'].iloc[0]}: outcomes")
    ax.legend(fontsize=8)
    return fig


def plot_logit_effects(effects, *, top: int = 15):
    """Distribution of a neuron's logit effects over the vocabulary, and its top and bottom tokens."""
    fig, axes = _figure(11, 4.2, ncols=2)
    ax = axes[0, 0]
    ax.hist(effects.effects, bins=80, color="#555555", label="all tokens")
    ax.set_yscale("log")
    ax.set_xlabel("direct logit effect per unit activation (logits)")
    ax.set_ylabel("tokens (log scale)")
    ax.set_title(f"{format_neuron_id(effects.layer, effects.neuron)}: var {effects.variance:.3g}, "
                 f"skew {effects.skew:.2f}, kurtosis {effects.kurtosis:.1f}", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    t = effects.table
    best = t[t["kind"] == "top"].head(top)
    worst = t[t["kind"] == "bottom"].head(top).iloc[::-1]
    rows = pd.concat([worst, best.iloc[::-1]])
    y = np.arange(len(rows))
    ax.barh(y, rows["effect"], color=["#c0392b" if k == "top" else "#2c7bb6" for k in rows["kind"]])
    ax.set_yticks(y, [repr(s) for s in rows["token"]], fontsize=7)
    ax.set_xlabel("direct logit effect (logits per unit activation)")
    ax.set_ylabel("token")
    ax.set_title("Most boosted and most suppressed tokens", fontsize=9)
    ax.axvline(0, color="black", linewidth=0.6)
    from matplotlib.patches import Patch

    ax.legend([Patch(color="#c0392b"), Patch(color="#2c7bb6")], ["boosted", "suppressed"], fontsize=8)
    return fig


def plot_logit_statistics(table: pd.DataFrame):
    """Skew against kurtosis of every neuron's logit effects (prediction: top right; suppression: top left)."""
    fig, axes = _figure(6.5, 4.5)
    ax = axes[0, 0]
    for layer, sub in table.groupby("layer"):
        ax.scatter(sub["skew"], sub["kurtosis"], s=6, alpha=0.6, label=f"layer {layer}")
    ax.set_yscale("log")
    ax.set_xlabel("skew of W_U·w_out over the vocabulary")
    ax.set_ylabel("kurtosis (log scale; 3 = Gaussian)")
    ax.set_title("Prediction (skew > 0) and suppression (skew < 0) neurons have high kurtosis")
    ax.legend(fontsize=7, markerscale=2)
    return fig


def plot_ablation(table: pd.DataFrame):
    """Change in next-token loss per label when the neurons are ablated, with standard errors."""
    if not len(table):
        raise InputError("the ablation table is empty; nothing to plot.")
    fig, axes = _figure(max(5, 0.6 * len(table) + 2), 4)
    ax = axes[0, 0]
    x = np.arange(len(table))
    colors = ["#7f7f7f" if label == "(all)" else "#c0392b" for label in table["label"]]
    ax.bar(x, table["delta"], yerr=table["delta_se"].fillna(0), capsize=3, color=colors,
           label="ablated − clean (± s.e. over sequences)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, table["label"], rotation=30, ha="right")
    ax.set_xlabel("sequence label")
    ax.set_ylabel("Δ next-token loss (nats/token)")
    ax.set_title(f"Ablating {table['neurons'].iloc[0]} ({table['mode'].iloc[0]})", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_weight_statistics(table: pd.DataFrame, *, highlight: list[tuple[int, int]] | None = None):
    """Input-weight norm against bias per neuron (superposition fingerprint), and cos(w_in, w_out) by layer."""
    fig, axes = _figure(11, 4.2, ncols=2)
    ax = axes[0, 0]
    for layer, sub in table.groupby("layer"):
        ax.scatter(sub["w_in_norm"], sub["b_in"], s=5, alpha=0.5, label=f"layer {layer}")
    for layer, neuron in highlight or []:
        row = table[(table["layer"] == layer) & (table["neuron"] == neuron)]
        if len(row):
            ax.scatter(row["w_in_norm"], row["b_in"], s=60, facecolors="none", edgecolors="black")
            ax.annotate(format_neuron_id(layer, neuron), (row["w_in_norm"].iloc[0], row["b_in"].iloc[0]), fontsize=8)
    ax.set_xlabel("input weight norm ||w_in||")
    ax.set_ylabel("input bias b_in")
    ax.set_title("Input norm vs bias")
    ax.legend(fontsize=7, markerscale=2)
    ax = axes[0, 1]
    edges = np.linspace(-1, 1, 41)
    for layer, sub in table.groupby("layer"):
        ax.hist(sub["cos_in_out"], bins=edges, histtype="step", label=f"layer {layer}")
    ax.set_xlabel("cos(w_in, w_out)")
    ax.set_ylabel("neurons")
    ax.set_title("Signal boosting (+1) vs memory management (−1)")
    ax.legend(fontsize=7)
    return fig


def plot_compound_activation(table: pd.DataFrame):
    """Summed activation per text, grouped by class (the compound against its look-alikes)."""
    if not len(table):
        raise InputError("the compound-activation table is empty; nothing to plot.")
    classes = list(dict.fromkeys(table["class"]))
    fig, axes = _figure(max(5, 1.5 * len(classes) + 2), 4)
    ax = axes[0, 0]
    data = [table.loc[table["class"] == c, "activation"].to_numpy() for c in classes]
    ax.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data):
        ax.scatter(i + 1 + rng.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.7, label=classes[i])
    ax.set_xticks(np.arange(1, len(classes) + 1), classes, rotation=20, ha="right")
    ax.set_xlabel("class of text")
    ax.set_ylabel("summed activation at the last token (hidden-layer units)")
    ax.set_title("Neuron set on the compound vs look-alikes")
    ax.legend(fontsize=7)
    return fig


def plot_rotation_comparison(table: pd.DataFrame):
    """Test F1 of the best single dimensions, ranked: neuron basis against random bases (mean and range)."""
    singles = table[table["probe"] == "single"]
    if not len(singles):
        raise InputError("the rotation-comparison table has no single-dimension rows.")
    fig, axes = _figure(6.5, 4)
    ax = axes[0, 0]
    neuron = singles[singles["basis"] == "neuron"].sort_values("rank")
    ax.plot(neuron["rank"] + 1, neuron["f1"], color="#c0392b", label="neuron basis")
    rand = singles[singles["basis"] == "random"]
    if len(rand):
        stats = rand.groupby("rank")["f1"].agg(["mean", "min", "max"])
        ax.plot(stats.index + 1, stats["mean"], color="#2c7bb6",
                label=f"random basis (mean of {rand['rotation'].nunique()})")
        ax.fill_between(stats.index + 1, stats["min"], stats["max"], color="#2c7bb6", alpha=0.2, label="range")
    ax.set_xlabel("rank of the dimension (1 = best single dimension)")
    ax.set_ylabel("test F1 of a 1-sparse probe")
    ax.set_title("Is the neuron basis privileged?")
    ax.legend(fontsize=8)
    return fig
