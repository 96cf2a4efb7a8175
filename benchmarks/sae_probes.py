"""needle's sweep against sae-probes' own procedure, on sae-probes' bundled binary datasets (issue 18).

Data: ``--n-datasets`` of the package's binary datasets, picked with ``--seed`` (the ``table`` collection's
``preset=sae-probes``: each distinct prompt one sequence, read at its last token as sae-probes reads it, a seeded
sample of ``--max-rows`` rows per dataset, prompts cut on the left to ``--context-length`` tokens). Activations:
MiniLM's MLP neurons (``mlp.hook_post``) at ``--layer``.

Both sides see the same activations and the **same train/test split** of every dataset (needle's group split,
30 % test, taken from :func:`needle.probing.sweep.plan_tasks` exactly as the sweep takes it). Then, per k:

* **sae-probes** (reimplemented here from ``sae_probes/run_sae_evals.py`` and ``utils_training.py`` of sae-probes
  0.4.2): divide each column of the training activations by its mean absolute value over its non-zero entries
  (``mean_act_normalization``), rank columns by |mean(positives) − mean(negatives)| of the normalised training
  activations, keep the top k, and fit scikit-learn's ``LogisticRegression`` on the *raw* k columns with C chosen
  from ``logspace(5, -5, 10)`` by the AUC on the last min(20 %, 100) training rows (one held-out part; the
  training rows come in a seeded random order, as sae-probes' sampler leaves them), refit on all training rows.
* **needle** (``sweep``): its ``mean_diff`` (raw activations), ``f_stat`` and ``adaptive`` selections with the
  standard refit (L2, C = 0.01 on training-standardised neurons) — and, to separate the selection from the refit,
  ``mean_diff`` with sae-probes' normalisation (``normalization="mean_abs"``), ranking all columns as sae-probes
  does (``prefilter=None``; the standard sweep first keeps the top 1,024 by *raw* mean difference), and C chosen
  by 5-fold grouped cross-validation of the AUC (``CrossValidatedC``).

Reported: mean test AUC per k over datasets ± standard error (n = datasets), seconds per side.

    python benchmarks/sae_probes.py --sae-probes sae_probes-0.4.2-py3-none-any.whl --work /tmp/saep_bench
    python benchmarks/sae_probes.py --synthetic     # planted features, no model (the smoke test)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from needle.probing import CrossValidatedC, SweepConfig, sweep  # noqa: E402
from needle.probing.sweep import plan_tasks  # noqa: E402

#: sae-probes' grid of C (``find_best_reg``).
SAE_PROBES_CS = np.logspace(5, -5, 10)


def mean_act_normalization(X: np.ndarray) -> np.ndarray:
    """sae-probes' normalisation: each column over the mean of its absolute non-zero values (+1e-6 twice)."""
    X = np.asarray(X, dtype=np.float64)
    means = np.abs(X).sum(axis=0) / ((X != 0).sum(axis=0) + 1e-6)
    return X / (means + 1e-6)


def sae_probes_ranking(X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Columns by decreasing |mean difference| of the normalised training activations (stable on ties)."""
    Z = mean_act_normalization(X_train)
    diff = Z[y_train == 1].mean(axis=0) - Z[y_train == 0].mean(axis=0)
    return np.argsort(-np.abs(diff), kind="stable")


def sae_probes_fit(X_train, y_train, X_test, y_test, *, seed: int = 1) -> tuple[float, float]:
    """sae-probes' ``find_best_reg`` (L2): C by one validation part's AUC, refit on all; (test AUC, chosen C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    n = len(y_train)
    n_val = min(int(0.2 * n), 100)
    fit, val = slice(0, n - n_val), slice(n - n_val, n)
    scores = []
    for C in SAE_PROBES_CS:
        if len(np.unique(y_train[fit])) < 2 or len(np.unique(y_train[val])) < 2:
            scores.append(0.5)
            continue
        model = LogisticRegression(C=C, random_state=seed, max_iter=1000).fit(X_train[fit], y_train[fit])
        scores.append(roc_auc_score(y_train[val], model.predict_proba(X_train[val])[:, 1]))
    best = float(SAE_PROBES_CS[int(np.argmax(scores))])
    model = LogisticRegression(C=best, random_state=seed, max_iter=1000).fit(X_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])), best


def sae_probes_side(source, tasks, ks: list[int], seed: int) -> pd.DataFrame:
    """sae-probes' procedure on every planned task's split; one row per (feature, k)."""
    rows = []
    for task in tasks:
        X = np.asarray(source.layer(task.layer)[task.rows], dtype=np.float64)
        y = task.y.astype(int)
        train = np.flatnonzero(~task.is_test)
        # sae-probes' training rows arrive in a random order (its sampler), and its validation part is their tail.
        train = train[np.random.default_rng([seed, 7]).permutation(len(train))]
        test = np.flatnonzero(task.is_test)
        order = sae_probes_ranking(X[train], y[train])
        for k in ks:
            if k > X.shape[1]:
                continue
            top = order[:k]
            auc, C = sae_probes_fit(X[train][:, top], y[train], X[test][:, top], y[test])
            rows.append({"feature": task.feature, "layer": task.layer, "k": k, "roc_auc": auc, "C": C,
                         "n_train": len(train), "n_test": len(test), "neurons": np.sort(top)})
    return pd.DataFrame(rows)


def needle_side(source, layer: int, ks: list[int], seed: int) -> tuple[pd.DataFrame, float, pd.DataFrame, float]:
    """needle's sweep: the standard methods and refit, then mean_diff with sae-probes' normalisation and a CV'd C."""
    started = time.perf_counter()
    standard = sweep(source, out=None, layers=[layer], methods=["mean_diff", "f_stat", "adaptive"], ks=ks,
                     baselines=False, bootstrap=0, seed=seed, progress=False)
    t_standard = time.perf_counter() - started
    started = time.perf_counter()
    like = sweep(source, out=None, layers=[layer], methods=["mean_diff"], ks=ks, baselines=False, bootstrap=0,
                 seed=seed, progress=False, C=CrossValidatedC(), prefilter=None,
                 method_params={"mean_diff": {"normalization": "mean_abs"}})
    return standard, t_standard, like, time.perf_counter() - started


def summarize(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean test AUC per (side, k) over datasets, its standard error and n."""
    out = []
    for side, frame in frames.items():
        for k, group in frame.groupby("k"):
            auc = group["roc_auc"].to_numpy(float)
            out.append({"side": side, "k": int(k), "auc": auc.mean(),
                        "se": auc.std(ddof=1) / np.sqrt(len(auc)) if len(auc) > 1 else np.nan, "n": len(auc)})
    return pd.DataFrame(out)


def synthetic_source(n_features: int = 6, n_rows: int = 400, width: int = 64, seed: int = 0):
    """Planted binary features: feature i shifts neurons 2i and 2i+1 (non-negative, sparse-ish columns)."""
    from needle.probing import ArraySource

    rng = np.random.default_rng(seed)
    features, X = {}, np.maximum(rng.normal(size=(n_features * n_rows, width)), 0)
    for i in range(n_features):
        rows = np.arange(i * n_rows, (i + 1) * n_rows)
        y = (np.arange(n_rows) % 2).astype(np.int8)
        X[rows[y == 1], 2 * i : 2 * i + 2] += 1.5
        features[f"planted{i}"] = (rows, y)
    return ArraySource({0: X.astype(np.float32)}, features)


def real_source(args):
    from needle.activations import extract, load_cache
    from needle.datasets.format import load_dataset
    from needle.datasets.table import build_table

    work = Path(args.work)
    cache_dir = work / f"cache_L{args.layer}"
    if (cache_dir / "manifest.json").is_file():
        return load_cache(cache_dir), 0.0
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "dataset"
    if not (data_dir / "manifest.json").is_file():
        dataset = build_table(None, "minilm", preset="sae-probes", sae_probes=args.sae_probes, n_tasks=args.n_datasets,
                              seed=args.seed, max_rows=args.max_rows, context_length=args.context_length)
        dataset.save(data_dir)
    dataset = load_dataset(data_dir)
    started = time.perf_counter()
    cache = extract("minilm", dataset, cache_dir, layers=[args.layer], site="post", progress=True)
    return cache, time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae-probes", help="the sae-probes wheel or package directory (default: installed)")
    parser.add_argument("--work", default="saep_bench", help="directory for the dataset and activations (reused)")
    parser.add_argument("--n-datasets", type=int, default=20)
    parser.add_argument("--max-rows", type=int, default=400, help="rows per dataset (seeded sample)")
    parser.add_argument("--context-length", type=int, default=48)
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--ks", default="1,2,4,8,16,32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true", help="planted features instead of MiniLM (no model)")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    if args.synthetic:
        source = synthetic_source(n_features=args.n_datasets, n_rows=args.max_rows, seed=args.seed)
        t_extract, layer = 0.0, 0
    else:
        source, t_extract = real_source(args)
        layer = args.layer
    names = list(source.feature_names)
    print(f"{len(names)} datasets, layer {layer}, width {source.layer(layer).shape[1]}; extraction {t_extract:.0f} s")
    print("datasets:", ", ".join(names))
    zeros = float((np.asarray(source.layer(layer)) == 0).mean())
    print(f"share of exactly-zero activations: {zeros:.2e}")

    tasks, _ = plan_tasks(source, layers=[layer], config=SweepConfig(methods=("mean_diff",), ks=tuple(ks),
                                                                     baselines=False, seed=args.seed))
    started = time.perf_counter()
    reference = sae_probes_side(source, tasks, ks, args.seed)
    t_reference = time.perf_counter() - started
    standard, t_standard, like, t_like = needle_side(source, layer, ks, args.seed)

    sizes = reference.groupby("feature")[["n_train", "n_test"]].first()
    needle_sizes = standard.groupby("feature")[["n_train", "n_test"]].first()
    same = bool((sizes.sort_index().to_numpy() == needle_sizes.loc[sizes.index].sort_index().to_numpy()).all())
    print(f"identical splits: {same} (train {int(sizes['n_train'].median())}, test {int(sizes['n_test'].median())} "
          f"examples per dataset, median)")
    frames = {"sae-probes (reimplemented)": reference}
    for method in ("mean_diff", "f_stat", "adaptive"):
        frames[f"needle {method}, C=0.01"] = standard[standard["method"] == method]
    frames["needle mean_diff(mean_abs), no prefilter, C=cv"] = like
    table = summarize(frames)
    table["cell"] = [f"{a:.3f} ± {e:.3f}" for a, e in zip(table["auc"], table["se"])]
    wide = table.pivot(index="k", columns="side", values="cell")[list(frames)]
    print(f"\nmean test AUC over datasets ± s.e. (n = {int(table['n'].max())} datasets)")
    for i, side in enumerate(frames):
        print(f"  [{i}] {side}")
    wide.columns = [f"[{i}]" for i in range(len(frames))]
    print(wide.to_string())
    print(f"\nseconds: sae-probes {t_reference:.1f} (one k at a time, 10 Cs each); needle sweep (3 methods) "
          f"{t_standard:.1f}; needle mean_diff(mean_abs) with CV'd C {t_like:.1f}")
    for i, (side, frame) in enumerate(frames.items()):
        if i == 0:
            continue
        joined = reference.merge(frame, on=["feature", "k"], suffixes=("_sp", "_needle"))
        delta = joined["roc_auc_needle"] - joined["roc_auc_sp"]
        same_set = [set(a.tolist()) == set(np.asarray(b).tolist())
                    for a, b in zip(joined["neurons_sp"], joined["neurons_needle"])]
        joined = joined.assign(delta=delta, same=same_set)
        print(f"\n[{i}] {side} minus [0], paired per k: mean Δ AUC ± s.e., max |Δ|, datasets with |Δ| > 0.02, "
              "same k neurons as [0]")
        for k, group in joined.groupby("k"):
            d = group["delta"]
            print(f"  k={k:<3d} {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f}  {d.abs().max():.4f}  "
                  f"{int((d.abs() > 0.02).sum())}/{len(d)}  {int(group['same'].sum())}/{len(group)}")
    sel_same = _same_selection(reference, source, tasks, ks)
    print(f"\nsame top-k set as needle's mean_diff(mean_abs) ranking of all columns (no prefilter): {sel_same}")
    sys.stdout.flush()


def _same_selection(reference, source, tasks, ks) -> str:
    """How often sae-probes' top-k equals needle's ``mean_abs`` mean-difference top-k (normalisations differ on zeros)."""
    from needle.probing.selection import get_selector

    selector = get_selector("mean_diff", normalization="mean_abs")
    agree = total = 0
    for task in tasks:
        X = np.asarray(source.layer(task.layer)[task.rows], dtype=np.float64)[~task.is_test]
        y = task.y[~task.is_test].astype(int)
        theirs = sae_probes_ranking(X, y)
        ours = np.argsort(-selector.scores(X, y), kind="stable")
        for k in ks:
            agree += set(theirs[:k]) == set(ours[:k])
            total += 1
    return f"{agree}/{total} (dataset, k)"


if __name__ == "__main__":
    main()
