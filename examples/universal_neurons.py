"""Universal neurons (thesis Chapter 3) end to end on a family of toy models trained here from different seeds.

1. trains the family (``needle toy train-seeds``: one corpus, one tokenizer,
   one model per seed) unless ``--family`` names one;
2. correlates every neuron of the first member with every neuron of the
   others on the family's held-out text, with a Haar-rotation baseline, and
   counts the universal neurons (excess correlation ϱ > 0.5) per layer;
3. compares universal and other neurons on activation and weight statistics
   (Figure 3.3);
4. explains every neuron by the variance-reduction tests (vocabulary,
   previous token, context = source, position, gold UD syntax) and tabulates
   the families of the universal ones;
5. functional roles: prediction / suppression / partition neurons by layer
   (Figure 3.6) with the next-token firing check, the entropy-neuron sweep
   against 20 random neurons (Figure 3.7), attention (de)activation scores
   and one path ablation (Figure 3.8);
6. a static scope site of the universality view, and ``summary.md`` with
   every number.

Every step is a ``needle universal …`` command run in this process, so the
example is also a tour of the CLI. Run from the repository root::

    python examples/universal_neurons.py --out universal-study                 # trains 5 seeds first
    python examples/universal_neurons.py --out universal-study --family /tmp/fam

Stages whose output exists in ``--out`` are reused. See ``examples/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from needle.datasets.shared_data import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("universal-study"), help="directory for everything written")
    parser.add_argument("--family", type=Path, default=None,
                        help="a family directory of needle toy train-seeds (default: OUT/family, trained when missing)")
    parser.add_argument("--seeds", type=int, default=5, help="members to train")
    parser.add_argument("--cpu-minutes", type=float, default=None,
                        help="CPU minutes of optimisation per member (default: train-seeds' own)")
    parser.add_argument("--text", type=Path, action="append", default=None,
                        help="text to stream instead of the family's held-out split (repeatable)")
    parser.add_argument("--syntax", type=Path, action="append", default=None,
                        help="CoNLL-U files for the syntax tests (default: UD English-EWT dev)")
    parser.add_argument("--ud", type=Path, default=shared_data_dir() / "ud", help="directory of the UD treebanks")
    parser.add_argument("--max-tokens", type=int, default=None, help="most tokens streamed per analysis")
    parser.add_argument("--sweep-tokens", type=int, default=8192, help="tokens of the entropy and attention runs")
    parser.add_argument("--random", type=int, default=20, help="random neurons of the entropy sweep")
    parser.add_argument("--unigrams", type=int, default=200, help="frequent tokens that get a unigram test")
    parser.add_argument("--threshold", type=float, default=0.5, help="excess correlation of a universal neuron")
    parser.add_argument("--relaxed-kurtosis", type=float, default=4.0,
                        help="when no neuron has the thesis's kurtosis > 10, also check neurons above this one")
    return parser.parse_args(argv)


def needle(*args: object) -> None:
    """Run one ``needle`` command in this process (errors propagate as needle's exceptions)."""
    from needle.cli import app

    print("$ needle " + " ".join(str(a) for a in args), flush=True)
    app([str(a) for a in args], standalone_mode=False)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    family = args.family or out / "family"
    if not (family / "family.json").is_file():
        extra = [] if args.cpu_minutes is None else ["--cpu-minutes", args.cpu_minutes]
        needle("toy", "train-seeds", "--out", family, "--seeds", args.seeds, "--ud", args.ud, *extra)
    source = [a for path in (args.text or []) for a in ("--text", path)]
    tokens = [] if args.max_tokens is None else ["--max-tokens", args.max_tokens]
    sweep_tokens = ["--max-tokens", args.sweep_tokens]
    syntax = args.syntax if args.syntax is not None else sorted((args.ud / "en_ewt").glob("*-dev.conllu*"))
    threshold = ["--threshold", args.threshold]

    def stage(name: str, *command: object) -> Path:
        path = out / name
        if not path.exists():
            needle(*command[:2], "--out", path, *command[2:])
        return path

    corr = stage("correlations", "universal", "correlate", "--family", family, *source, *tokens)
    stats = stage("statistics", "universal", "stats", "--model", family, "--correlations", corr, *threshold,
                  *source, *tokens)
    # the tests need no correlations: the summary tabulates the universal neurons' families
    explain = stage("explain.parquet", "universal", "explain", "--model", family, "--unigrams", args.unigrams,
                    *source, *tokens, *[a for path in syntax for a in ("--syntax", path)])
    roles = stage("roles", "universal", "roles", "--model", family, *source, *tokens)
    relaxed = None
    if not (roles / "next_token_firing.csv").is_file() and args.relaxed_kurtosis is not None:
        # no neuron passes the thesis's kurtosis > 10: run the firing check on the most heavy-tailed ones anyway
        relaxed = stage(f"roles-kurtosis-{args.relaxed_kurtosis:g}", "universal", "roles", "--model", family,
                        "--kurtosis", args.relaxed_kurtosis, *source, *tokens)
    entropy = stage("entropy", "universal", "entropy", "--model", family, "--random", args.random, *source,
                    *sweep_tokens)
    attention = stage("attention", "universal", "attention", "--model", family, *source, *sweep_tokens)
    site = stage("site", "universal", "scope", "--correlations", corr, "--explain", explain, "--roles", roles,
                 *threshold)
    summary = write_summary(out, family, corr, stats, explain, roles, entropy, attention, site, args.threshold,
                            relaxed)
    print(f"wrote {summary} ({time.perf_counter() - started:.0f} s)")
    return summary


def _markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_summary(out: Path, family: Path, corr: Path, stats: Path, explain: Path, roles: Path, entropy: Path,
                  attention: Path, site: Path, threshold: float, relaxed: Path | None = None) -> Path:
    """``summary.md``: every number of the study, from the tables the commands wrote."""
    from needle.universal.correlate import UniversalCorrelations

    members = json.loads((family / "family.json").read_text())["members"]
    result = UniversalCorrelations.load(corr)
    by_layer = result.by_layer(threshold)
    overall = by_layer[by_layer["layer"] == -1].iloc[0]
    lines = ["# Universal neurons on a toy seed family", ""]
    lines += ["## Family", "", _markdown(pd.DataFrame([
        {"member": m["name"], "seed": m.get("seed"), "held-out loss": m.get("heldout_loss"), "steps": m.get("steps")}
        for m in members])), ""]
    lines += ["## Universality", "",
              f"{result.params['n_tokens']:,} tokens; every neuron of {result.params['models'][0]} against "
              f"{', '.join(result.params['models'][1:])}. Universal (ϱ > {threshold:g}): "
              f"**{int(overall.n_universal)} of {int(overall.n_neurons)} neurons = {100 * overall.fraction:.2f} % ± "
              f"{100 * overall.se:.2f} %** (binomial s.e.). Mean max correlation {overall.mean_max_corr:.3f}, "
              f"mean baseline {overall.mean_baseline:.3f}.", "",
              _markdown(by_layer.assign(fraction=100 * by_layer["fraction"], se=100 * by_layer["se"])
                        .rename(columns={"fraction": "% universal", "se": "± s.e. (%)"})), ""]
    comparison = stats / "comparison.csv"
    if comparison.is_file():
        lines += ["## Universal against other neurons (mean layer percentile ± s.e.)", "",
                  _markdown(pd.read_csv(comparison), 1), ""]
    from needle.universal.figures import families_by_layer

    table = pd.read_parquet(explain)
    best = table[table["rank"] == 0]
    universal = result.universal(threshold)[["layer", "neuron", "id", "excess"]]
    everyone = best.pivot_table(index="layer", columns="family", values="neuron", aggfunc="count", fill_value=0)
    lines += ["## Families", "", "Best test of every neuron, by layer and family:", "",
              _markdown(everyone.reset_index()), ""]
    chosen = best.merge(universal[["layer", "neuron"]], on=["layer", "neuron"])
    if len(chosen):
        families = chosen.pivot_table(index="layer", columns="family", values="neuron", aggfunc="count",
                                      fill_value=0)
        families.to_csv(out / "universal_families.csv")
        families_by_layer(families, out / "universal_families.png",
                          title=f"families of the {len(chosen)} universal neurons (ϱ > {threshold:g})")
        lines += ["Universal neurons by layer and family (universal_families.csv):", "",
                  _markdown(families.reset_index()), ""]
    else:
        lines += [f"No neuron has ϱ > {threshold:g}: no family table of universal neurons.", ""]
    top_share = result.neurons.nlargest(max(1, len(result.neurons) // 50), "excess")[["layer", "neuron", "excess"]]
    top_best = best.merge(top_share, on=["layer", "neuron"])
    shares = pd.DataFrame({"top 2 % by ϱ": top_best["family"].value_counts(normalize=True) * 100,
                           "all neurons": best["family"].value_counts(normalize=True) * 100}).fillna(0.0)
    lines += [f"Families (% of neurons) of the {len(top_share)} neurons of largest ϱ (ϱ ≥ "
              f"{top_share['excess'].min():.3f}) against all:", "", _markdown(shares.rename_axis("family")
                                                                               .reset_index(), 1), ""]
    quantiles = result.neurons["excess"].quantile([0.5, 0.9, 0.99, 1.0])
    lines += ["ϱ quantiles (50 / 90 / 99 / 100 %): " + " / ".join(f"{v:.3f}" for v in quantiles) + "; neurons with "
              + ", ".join(f"ϱ > {c:g}: {int((result.neurons['excess'] > c).sum())}" for c in (0.1, 0.2, 0.3, 0.4)),
              ""]
    typical = best.groupby("family")["score"].median()
    lines += ["Median score of the best test, by family: " + ", ".join(f"{k} {v:.3f}" for k, v in typical.items()),
              ""]
    top = universal.merge(best, on=["layer", "neuron"]).sort_values("excess", ascending=False).head(15)
    if len(top):
        lines += ["Most universal neurons and their best test:", "",
                  _markdown(top[["id", "excess", "test", "family", "score"]]), ""]
    role_table = pd.read_parquet(roles / "roles.parquet")
    lines += ["## Roles", "", _markdown(pd.read_csv(roles / "roles_by_layer.csv")), ""]
    for folder, note in ((roles, "kurtosis > 10 (the thesis's)"), (relaxed, "relaxed")):
        firing_path = None if folder is None else folder / "next_token_firing.csv"
        if firing_path is None:
            continue
        if not firing_path.is_file():
            lines += [f"No prediction or suppression neuron at {note}: no next-token firing check there.", ""]
            continue
        if folder is relaxed:
            relaxed_roles = pd.read_parquet(relaxed / "roles.parquet")
            lines += [f"Relaxed: {folder.name} ({int(relaxed_roles['role'].isin(['prediction', 'suppression']).sum())}"
                      " neurons pass):", "", _markdown(pd.read_csv(relaxed / "roles_by_layer.csv")), ""]
        firing = pd.read_csv(firing_path).dropna(subset=["mean_in", "mean_out"])
        for role, group in firing.groupby("role"):
            diff = group["mean_in"] - group["mean_out"]
            se = (group["se_in"] ** 2 + group["se_out"] ** 2) ** 0.5
            lines.append(f"- {role}: {int((diff > 0).sum())} of {len(group)} neurons have a higher mean activation "
                         f"when the next token is in their set, {int((diff > 2 * se).sum())} by more than 2 s.e. and "
                         f"{int((diff < -2 * se).sum())} lower by more than 2 s.e. (mean difference {diff.mean():+.3f};"
                         f" median set size {group['set_size'].median():.0f} tokens, median positions with the next "
                         f"token in the set {group['n_in'].median():.0f})")
        lines.append("")
    if "universal" not in role_table.columns:
        merged = role_table.merge(result.neurons[["layer", "neuron", "excess"]], on=["layer", "neuron"])
        counts = pd.crosstab(merged["excess"] > threshold, merged["role"])
        counts.index = ["other" if not v else "universal" for v in counts.index]
        lines += ["Roles of universal and other neurons:", "", _markdown(counts.reset_index()), ""]
    sweep = pd.read_parquet(entropy / "sweep.parquet")
    lines += ["## Entropy sweep", "", _markdown(sweep[sweep["kind"] == "chosen"].drop(columns=["kind"])), ""]
    random = sweep[(sweep["kind"] == "random") & sweep["value"].notna()]
    if len(random):
        agg = random.groupby("value")[["norm_scale", "entropy", "true_rank", "loss"]].agg(["mean", "std"])
        agg.columns = [f"{a} {b}" for a, b in agg.columns]
        lines += [f"{random.groupby(['layer', 'neuron']).ngroups} random neurons of the last two layers "
                  "(mean and s.d. over the neurons):", "", _markdown(agg.reset_index()), ""]
    pairs = pd.read_csv(entropy / "antipodal_pairs.csv")
    lines += [f"Antipodal pairs in the last two layers: {len(pairs)}" +
              (f" (most opposite: L{pairs.iloc[0]['layer']}.N{pairs.iloc[0]['neuron']} and "
               f"L{pairs.iloc[0]['other_layer']}.N{pairs.iloc[0]['other_neuron']}, cos {pairs.iloc[0]['cos']:.3f})"
               if len(pairs) else ""), ""]
    scores = pd.read_parquet(attention / "bos_scores.parquet")
    baseline = pd.read_parquet(attention / "bos_baseline.parquet")
    cut = float(baseline["score"].abs().quantile(0.99))
    ablation = pd.read_parquet(attention / "path_ablation.parquet")
    d_attn = ablation["bos_attention"] - ablation["bos_attention_ablated"]
    d_norm = ablation["norm"] - ablation["norm_ablated"]
    n = len(ablation)
    lines += ["## Attention (de)activation", "",
              f"{len(scores):,} (neuron, head) pairs; |h_n| sd {scores['score'].std():.3f} against the random "
              f"directions' {baseline['score'].std():.3f}; {int((scores['score'].abs() > cut).sum()):,} pairs beyond "
              f"the random 99th percentile of |h_n| ({cut:.3f}).", "",
              f"Path ablation of the largest-|h_n| pair over {n:,} positions: attention to BOS original − ablated "
              f"{d_attn.mean():+.2e} ± {d_attn.std(ddof=1) / n ** 0.5:.1e}; head output norm "
              f"{d_norm.mean():+.2e} ± {d_norm.std(ddof=1) / n ** 0.5:.1e} (mean ± s.e.).", ""]
    lines += ["## Files", "", f"Figures: {corr.name}/excess_by_layer.png, {stats.name}/universal_percentiles.png, "
              f"universal_families.png, {roles.name}/role_percentiles.png, {roles.name}/next_token_firing.png, "
              f"{entropy.name}/entropy.png, {attention.name}/bos_scores.png, {attention.name}/path_ablation.png. "
              f"Site: {site.name}/universality.html.", ""]
    path = out / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
