"""Sparse probing in several bases of one layer, with label-shuffle controls (issue: every basis).

For each feature and k: test F1 of ``mean_diff`` top-k probes (SAEBench's and Kantamneni et al.'s selection)
in MLP neurons, the residual stream's standard basis, its PCA directions, a random rotation of it, and SAE
latents, each beside its label-shuffle control F1 and the selectivity F1 − control F1. Every basis sees the same
rows, labels and splits (the caches come from one dataset; PCA and rotation are computed from the residual
cache by :mod:`needle.probing.bases`). The reported spread is the standard error over features; the paired
table gives each basis's mean F1 difference from the neurons over the same features (± s.e. of the paired
differences), the fair way to ask whether two bases differ on few features.

    python benchmarks/compare_bases.py --neurons NEURON_CACHE --resid RESID_CACHE --sae-cache SAE_CACHE --layer 3
    python benchmarks/compare_bases.py ... --features all --control-within all --out per_feature.csv
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from needle.activations import load_cache
from needle.probing.bases import pca_basis, rotated_basis
from needle.probing.controls import control_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", required=True, help="cache of mlp.hook_post (any layers including --layer)")
    parser.add_argument("--resid", required=True, help="cache of hook_resid_post at --layer")
    parser.add_argument("--sae-cache", required=True, help="cache of SAE latents at --layer (needle extract --sae)")
    parser.add_argument("--extra-sae", action="append", default=[], metavar="NAME=CACHE",
                        help="another SAE's latents cache, shown as basis NAME (repeatable)")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--features", default="pos:NOUN,pos:VERB,pos:ADJ,pos:ADP,pos:DET,pos:PRON,pos:ADV,pos:AUX",
                        help="comma-separated feature names, or 'all' (every binary feature of the caches)")
    parser.add_argument("--ks", default="1,2,4,8,16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the per-(basis, feature, k) table here (.csv)")
    parser.add_argument("--control-within", choices=("groups", "all"), default="groups",
                        help="permute the control's labels within documents, or across all examples (for datasets "
                             "whose every example is its own document)")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    resid = load_cache(args.resid)
    if args.features.strip() == "all":
        features = [f for f in resid.feature_names if resid.feature_info(f)["task"] == "binary"]
    else:
        features = args.features.split(",")
    bases = {"neurons": load_cache(args.neurons), "resid": resid, "pca": pca_basis(resid, seed=args.seed),
             "rotated resid": rotated_basis(resid, seed=args.seed), "sae": load_cache(args.sae_cache)}
    for extra in args.extra_sae:
        name, sep, path = extra.partition("=")
        if not sep or not name or name in bases:
            parser.error(f"--extra-sae {extra!r}: write NAME=CACHE with a new NAME")
        bases[name] = load_cache(path)
    tables = []
    for name, source in bases.items():
        started = time.perf_counter()
        table = control_sweep(source, layers=[args.layer], features=features, methods=["mean_diff"], ks=ks,
                              baselines=False, seed=args.seed, progress=False, control_seed=args.seed,
                              within=args.control_within)
        table["basis"] = name
        tables.append(table)
        print(f"{name}: width {source.layer(args.layer).shape[1]}, {time.perf_counter() - started:.0f} s", flush=True)
    table = pd.concat(tables, ignore_index=True)
    n = table.groupby(["basis", "k"])["feature"].nunique()
    summary = table.groupby(["basis", "k"]).agg(f1=("f1", "mean"), f1_se=("f1", lambda v: v.std(ddof=1) / np.sqrt(len(v))),
                                               control=("control_f1", "mean"), selectivity=("selectivity", "mean"),
                                               sel_se=("selectivity", lambda v: v.std(ddof=1) / np.sqrt(len(v))))
    summary["n_features"] = n
    print(f"\nlayer {args.layer}, mean_diff top-k, mean over features ± s.e.")
    print(summary.round(3).to_string())
    wide = table.pivot_table(index=["feature", "k"], columns="basis", values="f1").round(3)
    print("\ntest F1 per feature and k")
    print(wide.to_string())
    f1 = table.pivot_table(index=["feature", "k"], columns="basis", values="f1")
    paired = f1.sub(f1["neurons"], axis=0).drop(columns="neurons").groupby(level="k")
    print("\nF1 − neurons' F1, paired over features: mean ± s.e.")
    print((paired.mean().round(3).astype(str) + " ± " + paired.sem().round(3).astype(str)).to_string())
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
