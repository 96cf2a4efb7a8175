"""Benchmark: which units should the score-based selectors rank neurons in?

``mean_diff`` ranks neurons by ``|mean_P - mean_N|``. The paper ranks raw
activations (``raw``); sae-probes divides each neuron by its mean absolute
activation first (``mean_abs``); a third choice ranks standardised neurons
(``standardized``, i.e. the difference in units of the neuron's standard
deviation). This script runs the same sweep three times, side by side — one
per normalisation, every other setting the paper's (top-1024 prefilter by raw
mean difference, balanced L2 refits at C = 0.01 on standardised neurons, the
same group splits) — and prints, per normalisation and k, the held-out F1 at
the best layer averaged over features (with its standard error over features
and the number of features), and the same per layer, so that the default can
be chosen on data. ``f_stat`` is included as a control: the F statistic does
not change when a neuron is rescaled, so its three rows must be identical.

Collections: UD English-EWT dev part of speech (the probing benchmarks' cache,
``_ewt_cache.py``) and, with ``--python-code``, the python-code collection of
the standard library (built once under ``--work``: ``--max-files`` files,
``--max-positives`` positives per feature with the collection's 0.2 positive ratio).

Examples::

    python benchmarks/ranking_units.py --cache /tmp/needle-probe-speed/cache-minilm-ewt-dev --jobs 2
    python benchmarks/ranking_units.py --no-ewt --python-code --max-files 120 --max-positives 2000 --jobs 2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ewt_cache import add_cache_arguments, ewt_dev_cache  # noqa: E402  (a sibling module; benchmarks are scripts)

NORMALIZATIONS = ("raw", "standardized", "mean_abs")
KS = (1, 2, 3, 4, 8, 16, 32)


def python_code_cache(work: Path, max_files: int, model: str, max_positives: int) -> Path:
    """MiniLM neurons on the python-code collection of the standard library, built once under ``work``."""
    import needle
    from needle.datasets.registry import build_collection
    from needle.models import load_tokenizer

    cache = work / f"cache-{model}-python-code-{max_files}-maxpos{max_positives}"
    if (cache / "manifest.json").is_file():
        return cache
    dataset_dir = work / f"python-code-{max_files}-maxpos{max_positives}"
    if not (dataset_dir / "manifest.json").is_file():
        started = time.perf_counter()
        build_collection("python-code", None, load_tokenizer(model), max_files=max_files,
                         max_positives=max_positives).save(dataset_dir)
        print(f"built {dataset_dir} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    needle.extract(model, dataset_dir, cache, progress=False)
    print(f"extracted {cache} in {time.perf_counter() - started:.0f} s", flush=True)
    return cache


def run(cache_path: Path, features, work: Path, name: str, jobs: int) -> pd.DataFrame:
    from needle.activations import load_cache
    from needle.probing import sweep

    cache = load_cache(cache_path)
    features = features or cache.feature_names
    frames = []
    for normalization in NORMALIZATIONS:
        started = time.perf_counter()
        params = {m: {"normalization": normalization} for m in ("mean_diff", "f_stat")}
        results = sweep(cache, out=work / f"ranking-{name}-{normalization}.parquet", features=features,
                        methods=["mean_diff", "f_stat"], ks=list(KS), baselines=False, method_params=params,
                        n_jobs=jobs, progress=False)
        print(f"{name}: {normalization:<12} swept in {time.perf_counter() - started:.0f} s", flush=True)
        frames.append(results.assign(normalization=normalization))
    return pd.concat(frames, ignore_index=True)


def report(results: pd.DataFrame, name: str) -> None:
    best = results.groupby(["normalization", "method", "feature", "k"], as_index=False)["f1"].max()
    table = best.groupby(["method", "normalization", "k"])["f1"].agg(["mean", "sem", "count"]).reset_index()
    print(f"\n=== {name}: test F1 at the best layer, mean ± s.e. over features (n features) ===")
    for method in ("mean_diff", "f_stat"):
        part = table[table["method"] == method]
        print(f"{method:<10}" + "".join(f"{'k=' + str(k):>16}" for k in KS))
        for normalization in NORMALIZATIONS:
            row = part[part["normalization"] == normalization].set_index("k")
            cells = "".join(f"{row.loc[k, 'mean']:>9.3f} ±{row.loc[k, 'sem']:.3f}" for k in KS)
            print(f"  {normalization:<12}{cells}   (n={int(row['count'].iloc[0])})")
    wide = best[best["method"] == "mean_diff"].pivot_table(index=["feature", "k"], columns="normalization",
                                                           values="f1")
    for other in ("raw", "mean_abs"):
        delta = (wide["standardized"] - wide[other]).groupby(level="k").agg(["mean", "sem"])
        wins = (wide["standardized"] > wide[other] + 1e-12).groupby(level="k").mean()
        print(f"mean_diff standardized − {other}: " + ", ".join(
            f"k={k}: {delta.loc[k, 'mean']:+.3f} ±{delta.loc[k, 'sem']:.3f} (wins {wins.loc[k]:.0%})" for k in KS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cache_arguments(parser, "needle-ranking-units")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--python-code", action="store_true", help="Also the python-code collection.")
    parser.add_argument("--no-ewt", action="store_true", help="Skip the EWT part of speech.")
    parser.add_argument("--max-files", type=int, default=150, help="python-code: standard-library files.")
    parser.add_argument("--max-positives", type=int, default=2000, help="python-code: positives kept per feature.")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.no_ewt:
        from needle.activations import load_cache

        cache = ewt_dev_cache(cache=args.cache, work=work, ud_dir=args.ud_dir, model=args.model)
        pos = [f for f in load_cache(cache).feature_names if f.startswith("pos:")]
        report(run(cache, pos, work, "EWT dev part of speech", args.jobs), "EWT dev part of speech")
    if args.python_code:
        cache = python_code_cache(work, args.max_files, args.model, args.max_positives)
        report(run(cache, None, work, "python-code", args.jobs), "python-code (standard library)")


if __name__ == "__main__":
    main()
