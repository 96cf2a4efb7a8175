"""Dynamics inside a language model (thesis §5.4): probe the residual stream at the separators, then SINDy.

Train a toy model on trajectory strings, then read the trajectories back out of it:

    needle toy train --out runs/dyn-logistic --dynamics logistic --cpu-minutes 6 --minutes 55 --hidden-size 64 --layers 3 \\
        --heads 2 --neurons 256 --vocab-size 300
    python examples/sindy.py --system logistic --model runs/dyn-logistic --work runs/sindy-logistic --length 26
    python examples/sindy.py --system lorenz --model runs/dyn-lorenz --work runs/sindy-lorenz --length 20
    python examples/sindy.py --system logistic --model minilm --work runs/sindy-minilm

The probing strings are new trajectories (data seed 1; the model trained on seed 0's). Each
trajectory's first ``--train-fraction`` of steps train the probes, the later steps test them
(time-separated). Per layer: the ridge probe's test R², MSE and MAE for each target (the current
value, the next one and, for Lorenz, the never-written y and z), then SINDy fitted on the probes'
test predictions with needle's certified MIOSR and with PySINDy's STLSQ, scored against the true
equations. The control is the same fit on the probes' targets at the same steps (what a perfect
probe would give: the rounded values of the text, and the true y and z).

- logistic: x_{t+1} = r x_t − r x_t², one map per trajectory (its own r), library [1, x, x², x³], 2 terms;
- lorenz: the ODE in (x, y, z) from the probes' predictions of all three, degree-2 library, 7 terms,
  derivative and weak (integral) form.

Writes ``probes.csv``, ``recovery.csv``, ``summary.md`` and three figures to ``--work``.
MiniLM is bidirectional: at a separator it has seen the whole string, so the "next" value is
written to its right and reading it is not prediction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def build_and_extract(args) -> tuple:
    from needle.activations import extract, load_cache
    from needle.datasets.dynamics import build_dynamics
    from needle.models import load_model

    work = Path(args.work)
    cache_dir = work / "cache"
    model = load_model(args.model)
    dataset = build_dynamics(None, model.tokenizer, system=args.system, n_trajectories=args.trajectories,
                             length=args.length, seed=1, split="time", train_fraction=args.train_fraction)
    if not cache_dir.exists():
        extract(model, dataset, cache_dir, site="resid", dtype="float32", progress=False)
    return dataset, load_cache(cache_dir)


def true_states(args) -> np.ndarray:
    """The probing trajectories' states, shape (n, length, d)."""
    from needle.datasets.dynamics import logistic_trajectories, lorenz_trajectories

    if args.system == "logistic":
        return logistic_trajectories(args.trajectories, args.length, seed=1)[0][..., None]
    return lorenz_trajectories(args.trajectories, args.length, seed=1)


def targets_at(cache, feature: str, rows: np.ndarray) -> np.ndarray:
    """The probe targets of ``feature`` at cache ``rows`` (the values a perfect probe would give)."""
    all_rows, y = cache.feature(feature)
    value = dict(zip(all_rows.tolist(), y.tolist()))
    return np.array([value[r] for r in rows.tolist()])


def logistic_recovery(series: dict, r: np.ndarray) -> list[dict]:
    from needle.sindy.lm import fit_map, recovery

    rows = []
    for optimizer in ("miosr", "stlsq"):
        for s, values in series.items():
            coef = fit_map(values, optimizer=optimizer, k=2)
            rows.append({"optimizer": optimizer, "trajectory": s, **recovery(coef[None], np.array([[0, r[s], -r[s], 0]])),
                         "r_hat": coef[1], "r": r[s]})  # fmt: skip
    return rows


def lorenz_recovery(series: dict, dt: float) -> list[dict]:
    from needle.sindy.lm import LORENZ_COEF, fit_flow, recovery

    rows = []
    for optimizer in ("miosr", "stlsq"):
        for weak in (False, True):
            try:
                coef = fit_flow(list(series.values()), dt, optimizer=optimizer, weak=weak)
            except Exception as exc:  # a failed fit is a result too: say which and why
                rows.append({"optimizer": optimizer, "form": "weak" if weak else "derivative", "error": str(exc)[:80]})
                continue
            rows.append({"optimizer": optimizer, "form": "weak" if weak else "derivative",
                         **recovery(coef, LORENZ_COEF)})
    return rows


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=("logistic", "lorenz"), default="logistic")
    parser.add_argument("--model", default="runs/dyn-logistic")
    parser.add_argument("--work", default="runs/sindy")
    parser.add_argument("--trajectories", type=int, default=120)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--train-fraction", type=float, default=0.5)
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from needle.datasets.dynamics import logistic_trajectories
    from needle.sindy.lm import predicted_series, probe_layers

    dataset, cache = build_and_extract(args)
    states = true_states(args)
    targets = ["current", "next"] + (["y", "z"] if args.system == "lorenz" else [])
    probes = {f: probe_layers(cache, f) for f in targets}
    probe_rows = [{"feature": f, **{k: v for k, v in row.items() if k not in ("rows", "prediction")}}
                  for f in targets for row in probes[f]]
    pd.DataFrame(probe_rows).to_csv(work / "probes.csv", index=False)

    recovery_rows = []
    dt = 0.02
    cut = dataset.extra["dynamics"]["cut"]
    for i, layer in enumerate(cache.layers):
        if args.system == "logistic":
            r = logistic_trajectories(args.trajectories, args.length, seed=1)[1]
            row = probes["current"][i]
            series = predicted_series(cache, row["rows"], row["prediction"])
            control = predicted_series(cache, row["rows"], targets_at(cache, "current", row["rows"]))
            for source, data in (("probe", series), ("target", control)):
                recovery_rows += [{"layer": layer, "source": source, **x} for x in logistic_recovery(data, r)]
        else:
            rows = probes["current"][i]["rows"]
            stacked = np.stack([probes[f][i]["prediction"] for f in ("current", "y", "z")], axis=1)
            series = predicted_series(cache, rows, stacked)
            truth = np.stack([targets_at(cache, f, rows) for f in ("current", "y", "z")], axis=1)
            control = predicted_series(cache, rows, truth)
            for source, data in (("probe", series), ("target", control)):
                recovery_rows += [{"layer": layer, "source": source, **x} for x in lorenz_recovery(data, dt)]
    recovery = pd.DataFrame(recovery_rows)
    recovery.to_csv(work / "recovery.csv", index=False)
    keys = ["layer", "source", "optimizer"] + (["form"] if args.system == "lorenz" else [])
    summary = recovery.groupby(keys).agg(n=("tpr", "size"), exact=("exact", "mean"), tpr=("tpr", "mean"),
                                         fpr=("fpr", "mean"), coef_error=("coef_error", "median")).reset_index()
    with open(work / "summary.md", "w") as handle:
        handle.write(f"# {args.system}: {args.model}, {args.trajectories} trajectories × {args.length} steps, "
                     f"test steps ≥ {cut}\n\n## Probes (test split)\n\n")
        handle.write(markdown(pd.DataFrame(probe_rows)) + "\n\n## SINDy recovery\n\n")
        handle.write(markdown(summary) + "\n")
    figures(work, args, pd.DataFrame(probe_rows), summary, probes, cache, states, cut)
    print((work / "summary.md").read_text())
    return work


def simulate(system: str, predicted: dict, s: int, start: np.ndarray) -> np.ndarray:
    """The MIOSR model fitted to the probes' series (one trajectory's map, or the pooled ODE), run from ``start``.

    Returns shape (n_steps, d), n_steps the length of the trajectory's test series.
    """
    from needle.sindy.lm import fit_flow, fit_map, map_library

    steps = len(predicted["current"][s])
    if system == "logistic":
        coef = fit_map(predicted["current"][s], k=2)
        x = [float(start[0])]
        for _ in range(steps - 1):
            x.append(float(map_library(np.array([x[-1]]))[0] @ coef))
        return np.array(x)[:, None]
    from scipy.integrate import solve_ivp

    series = [np.stack([predicted[f][t] for f in ("current", "y", "z")], axis=1) for t in predicted["current"]]
    coef = fit_flow(series, 0.02, k=7)
    def terms(v):  # the degree-2 library in PySINDy's order (LORENZ_TERMS)
        return np.array([1, v[0], v[1], v[2], v[0] ** 2, v[0] * v[1], v[0] * v[2], v[1] ** 2, v[1] * v[2], v[2] ** 2])

    t = np.arange(steps) * 0.02
    run = solve_ivp(lambda _, v: coef @ terms(v), (0, t[-1]), start, t_eval=t, rtol=1e-8)
    out = np.full((steps, 3), np.nan)
    out[: run.y.shape[1]] = run.y.T  # a blown-up model stops early: the rest stays NaN
    return out


def markdown(table: pd.DataFrame) -> str:
    """A pipe table, floats to 4 significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    return "\n".join(["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
                     + ["| " + " | ".join(row) + " |" for row in cells])


def figures(work: Path, args, probe_table: pd.DataFrame, summary: pd.DataFrame, probes: dict, cache, states,
            cut: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from needle.sindy.lm import predicted_series

    # Figures 5.7 / 5.10: probe R² by layer, per target.
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for feature, part in probe_table.groupby("feature", sort=False):
        ax.plot(part["layer"], part["r2"], marker="o", label=feature)
    ax.set(xlabel="layer (block output)", ylabel="test R²", title=f"{args.system}: probes at the separators")
    ax.set_xticks(sorted(probe_table["layer"].unique()))
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(work / "probe_r2.png", dpi=130)
    plt.close(fig)

    # Figures 5.9 / 5.11: the probes' predicted trajectories and the MIOSR model fitted to them, simulated from
    # the first true state, against the truth, at the best layer.
    best = int(probe_table[probe_table.feature == "current"].sort_values("r2").iloc[-1]["layer"])
    i = cache.layers.index(best)
    names = ["current"] + (["y", "z"] if args.system == "lorenz" else [])
    predicted = {name: predicted_series(cache, probes[name][i]["rows"], probes[name][i]["prediction"]) for name in names}
    shown = list(predicted["current"])[:3]
    simulated = {s: simulate(args.system, predicted, s, states[s, cut]) for s in shown}
    fig, axes = plt.subplots(len(names), 1, figsize=(6.5, 2.4 * len(names)), squeeze=False)
    for d, name in enumerate(names):
        for s in shown:
            line, = axes[d, 0].plot(states[s, cut:-1, d], lw=1.2)
            axes[d, 0].plot(predicted[name][s], ls="--", marker=".", color=line.get_color(), lw=0.8)
            axes[d, 0].plot(simulated[s][:, d], ls=":", color=line.get_color(), lw=1.2)
        axes[d, 0].set_ylabel(name if name != "current" else "x")
    axes[0, 0].set_title(f"layer {best}: truth (solid), probe (dashed), MIOSR fit simulated (dotted)", fontsize=9)
    axes[-1, 0].set_xlabel("test step")
    fig.tight_layout()
    fig.savefig(work / "trajectories.png", dpi=130)
    plt.close(fig)

    # Figures 5.8 / 5.12: recovery metrics by layer, probe against truth, per optimiser.
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    group = ["source", "optimizer"] + (["form"] if "form" in summary else [])
    for key, part in summary.groupby(group):
        label = " ".join(map(str, key))
        axes[0].plot(part["layer"], part["exact"], marker="o", label=label, ls="-" if key[0] == "probe" else ":")
        axes[1].plot(part["layer"], part["coef_error"], marker="o", label=label, ls="-" if key[0] == "probe" else ":")
    axes[0].set(xlabel="layer", ylabel="exact support (fraction)", ylim=(-0.05, 1.05))
    axes[1].set(xlabel="layer", ylabel="median ‖ξ−ξ*‖/‖ξ*‖", yscale="log")
    for ax in axes:
        ax.set_xticks(sorted(summary["layer"].unique()))
    axes[1].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(work / "recovery.png", dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
