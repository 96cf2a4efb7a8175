"""Figures of Chapter 3 from the tables of :mod:`needle.universal`, as PNG files (matplotlib, Agg).

Each function takes the tidy table an analysis wrote and a path, draws one
figure and returns the path. None computes anything beyond grouping and
counting: what is drawn is in the table beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["entropy_figure", "excess_by_layer", "families_by_layer", "next_token_firing_figure",
           "path_ablation_figure", "role_percentiles_figure", "bos_scores_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def excess_by_layer(neurons: Any, path: str | os.PathLike, *, threshold: float = 0.5) -> Path:
    """ϱ per layer (Figure 3.2a-b): the distribution of excess correlation and of the mean max correlation
    against the baseline, one violin per layer, and the universal share per layer.

    ``neurons`` is :attr:`UniversalCorrelations.neurons`.
    """
    plt = _pyplot()
    layers = sorted(neurons["layer"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, column, title in ((axes[0], "excess", "excess correlation ϱ"),
                              (axes[1], "mean_max_corr", "mean max correlation (grey: baseline)")):
        data = [neurons.loc[neurons["layer"] == la, column].dropna().to_numpy() for la in layers]
        ok = [i for i, d in enumerate(data) if len(d) > 1]
        if ok:
            parts = ax.violinplot([data[i] for i in ok], positions=[layers[i] for i in ok], showmedians=True)
            for body in parts["bodies"]:
                body.set_alpha(0.5)
        if column == "mean_max_corr":
            base = [neurons.loc[neurons["layer"] == la, "mean_baseline"].dropna().to_numpy() for la in layers]
            ok = [i for i, d in enumerate(base) if len(d) > 1]
            if ok:
                parts = ax.violinplot([base[i] for i in ok], positions=[layers[i] for i in ok])
                for body in parts["bodies"]:
                    body.set_facecolor("grey")
                    body.set_alpha(0.4)
        else:
            ax.axhline(threshold, color="tab:red", lw=0.8, ls="--")
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.set_title(title)
    share, se, n = [], [], []
    for la in layers:
        values = neurons.loc[neurons["layer"] == la, "excess"].to_numpy()
        p = float(np.mean(values > threshold)) if len(values) else np.nan
        share.append(100 * p)
        se.append(100 * np.sqrt(p * (1 - p) / max(len(values), 1)))
        n.append(len(values))
    axes[2].bar(layers, share, yerr=se, color="tab:red", alpha=0.6, capsize=3)
    axes[2].set_xlabel("layer")
    axes[2].set_ylabel("% of the layer's neurons")
    axes[2].set_title(f"universal (ϱ > {threshold:g}), ± s.e.; n = {n[0] if len(set(n)) == 1 else n} per layer")
    return _save(fig, path)


def families_by_layer(families: Any, path: str | os.PathLike, *, title: str = "") -> Path:
    """Stacked bars: universal neurons per layer by the family of their best test.

    ``families`` is a (layer × family) count table (the ``_families.csv`` of ``needle universal explain``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bottom = np.zeros(len(families))
    layers = [str(x) for x in families.index]
    for column in families.columns:
        values = families[column].to_numpy(float)
        ax.bar(layers, values, bottom=bottom, label=column)
        bottom += values
    ax.set_xlabel("layer")
    ax.set_ylabel("universal neurons")
    ax.set_title(title or "families of the universal neurons (best test)")
    if len(families.columns):
        ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def role_percentiles_figure(weights: Any, percentiles: Any, path: str | os.PathLike, *,
                            kurtosis_threshold: float = 10.0, last_layers: int = 2) -> Path:
    """Figure 3.6: per layer, percentiles of the kurtosis (log) and skew of cos(w_out, W_U); and the skews of the
    neurons with kurtosis above the threshold in the last layers."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, statistic, label in ((axes[0], "wu_kurtosis", "kurtosis of cos(w_out, W_U)"),
                                 (axes[1], "wu_skew", "skew of cos(w_out, W_U)")):
        part = percentiles[percentiles["statistic"] == statistic]
        for q, group in part.groupby("percentile"):
            ax.plot(group["layer"], group["value"], marker="o", ms=3, label=f"{q:g}th")
        ax.set_xticks(sorted(part["layer"].unique()))
        ax.set_xlabel("layer")
        ax.set_title(label)
        if statistic == "wu_kurtosis":
            ax.set_yscale("log")
            ax.axhline(kurtosis_threshold, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=7, frameon=False)
    top_layers = [int(x) for x in sorted(weights["layer"].unique())[-last_layers:]]
    heavy = weights[weights["layer"].isin(top_layers) & (weights["wu_kurtosis"] > kurtosis_threshold)]
    axes[2].hist(heavy["wu_skew"], bins=30, color="tab:purple", alpha=0.7)
    axes[2].axvline(0, color="grey", lw=0.8)
    axes[2].set_xlabel("skew")
    axes[2].set_title(f"skew where kurtosis > {kurtosis_threshold:g}, layers {top_layers} (n = {len(heavy)})",
                      fontsize=9)
    return _save(fig, path)


def next_token_firing_figure(firing: Any, path: str | os.PathLike) -> Path:
    """Mean activation when the next token is in the neuron's token set against when it is not (± s.e.),
    one point per prediction or suppression neuron."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    colours = {"prediction": "tab:green", "suppression": "tab:red"}
    ok = firing.dropna(subset=["mean_in", "mean_out"])
    for role, group in ok.groupby("role"):
        ax.errorbar(group["mean_out"], group["mean_in"], xerr=group["se_out"], yerr=group["se_in"], fmt="o", ms=4,
                    color=colours.get(role, "tab:grey"), label=f"{role} (n = {len(group)})", alpha=0.8)
    if len(ok):
        lo = float(np.nanmin(ok[["mean_in", "mean_out"]].to_numpy()))
        hi = float(np.nanmax(ok[["mean_in", "mean_out"]].to_numpy()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("mean activation, next token not in the set")
    ax.set_ylabel("mean activation, next token in the set")
    ax.set_title("does a neuron fire before its tokens?")
    return _save(fig, path)


def entropy_figure(weights: Any, sweep: Any, chosen: Sequence[tuple[int, int, str]], path: str | os.PathLike
                   ) -> Path:
    """Figure 3.7: weight norm and logit-effect variance of the chosen neurons against the random ones (a-b), and
    the fixed-activation sweep: final-norm scale, true-token rank, entropy and loss against the fixed value (c-f).

    ``chosen`` lists ``(layer, neuron, label)`` for the highlighted neurons; every other neuron of ``sweep`` is drawn
    grey as a random one. ``weights`` is :func:`~needle.universal.stats.weight_statistics`' table.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    highlighted = {(int(a), int(b)): label for a, b, label in chosen}
    keys = list(dict.fromkeys(zip(sweep["layer"].astype(int), sweep["neuron"].astype(int))))
    random_keys = [k for k in keys if k not in highlighted]
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]

    def stat(key, column):
        row = weights[(weights["layer"] == key[0]) & (weights["neuron"] == key[1])]
        return float(row[column].iloc[0]) if len(row) else np.nan

    for ax, column, label in ((axes[0, 0], "weight_norm", "‖w_in‖² + ‖w_out‖²"),
                              (axes[0, 1], "logit_var", "variance of W_U w_out")):
        ax.scatter(np.zeros(len(random_keys)) + np.linspace(-0.1, 0.1, len(random_keys)),
                   [stat(k, column) for k in random_keys], color="grey", s=14, label="random")
        for i, (key, name) in enumerate(highlighted.items()):
            ax.scatter([0.3 + 0.1 * i], [stat(key, column)], color=colours[i % 4], s=30, label=name)
        ax.set_xticks([])
        ax.set_title(label)
        if column == "logit_var":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7, frameon=False)
    panels = ((axes[0, 2], "norm_scale", "final-norm scale"), (axes[1, 0], "true_rank", "rank of the true token"),
              (axes[1, 1], "entropy", "next-token entropy (nats)"), (axes[1, 2], "loss", "loss (nats)"))
    base = sweep[sweep["value"].isna()].set_index(["layer", "neuron"])
    fixed = sweep[sweep["value"].notna()]
    for ax, column, label in panels:
        for key in random_keys:
            part = fixed[(fixed["layer"] == key[0]) & (fixed["neuron"] == key[1])]
            ax.plot(part["value"], part[column], color="grey", alpha=0.4, lw=0.8)
        for i, (key, name) in enumerate(highlighted.items()):
            part = fixed[(fixed["layer"] == key[0]) & (fixed["neuron"] == key[1])]
            ax.plot(part["value"], part[column], color=colours[i % 4], marker="o", ms=3, label=name)
        if len(base):
            ax.axhline(float(base[column].mean()), color="black", lw=0.8, ls=":", label="unpatched")
        ax.set_xlabel("fixed activation")
        ax.set_title(label)
    axes[1, 2].legend(fontsize=7, frameon=False)
    return _save(fig, path)


def bos_scores_figure(scores: Any, baseline: Any, path: str | os.PathLike) -> Path:
    """Figure 3.8a: the heuristic h_n of every (neuron, head) pair against random unit directions."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    values, random_values = scores["score"].to_numpy(), baseline["score"].to_numpy()
    edges = np.linspace(min(values.min(), random_values.min()), max(values.max(), random_values.max()), 61)
    ax.hist(values, bins=edges, alpha=0.6, density=True, label=f"neurons (n = {len(values):,} pairs)")
    ax.hist(random_values, bins=edges, alpha=0.6, density=True, color="grey",
            label=f"random directions (n = {len(random_values):,})")
    ax.set_yscale("log")
    ax.set_xlabel("h_n = ŵ_outᵀ W_Qᵀ k_BOS")
    ax.set_ylabel("density (log)")
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def path_ablation_figure(table: Any, path: str | os.PathLike, *, title: str = "") -> Path:
    """Figure 3.8b-c: the change in the head's BOS attention and output norm when the neuron's contribution to its
    query is deleted, against the neuron's activation (one point per position)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    activation = table["activation"].to_numpy()
    for ax, column, label in ((axes[0], "bos_attention", "attention to BOS"), (axes[1], "norm", "head output norm")):
        delta = table[column].to_numpy() - table[column + "_ablated"].to_numpy()
        ax.scatter(activation, delta, s=4, alpha=0.4)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("neuron activation")
        ax.set_ylabel(f"{label}: original − ablated")
    fig.suptitle(title)
    return _save(fig, path)
