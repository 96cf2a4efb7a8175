"""Neuroscope's open problems on toy GELU and SoLU models trained here: 9.51/9.53, 9.49, 9.58 (and 9.24, 9.59).

Trains (or reuses) two toy GPT-NeoX models that differ only in the MLP
activation: same initial weights, same tokenizer, same batches, same number
of steps. Then, on held-out text (whole files and runs of sentences neither
model saw):

* 9.51–9.53: every neuron's monosemanticity by three automatic metrics
  (:mod:`needle.neurons.monosemanticity`), their agreement, GELU against
  SoLU, and the neuron correspondence between the two models;
* 9.49: for every GELU neuron, the positions with the largest direct logit
  attribution to the true next token against its max-activating positions
  (the overlap), and the neurons that lower the correct token on average;
* 9.58: max-activating examples per source distribution and the neurons
  whose explanations do not carry over between distributions;
* 9.24–9.25 and 9.59: cos(w_in, w_out) list pages, NMF (both ways of
  handling negatives) and PCA bases of the last layer.

Writes ``summary.md`` and ``summary.json`` (every number of the README
section), the per-neuron tables as CSV, and ``pages/``: the cos(w_in, w_out)
list pages and a few neuron pages with the per-distribution section.

    python examples/neuroscope_problems.py --out runs/neuroscope
    python examples/neuroscope_problems.py --out runs/neuroscope --gelu DIR --solu DIR   # reuse models
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from needle.datasets.shared_data import shared_data_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/neuroscope"), help="directory for everything written")
    parser.add_argument("--gelu", type=Path, default=None, help="a trained GELU toy model (default: train one)")
    parser.add_argument("--solu", type=Path, default=None, help="a trained SoLU toy model (default: train one)")
    parser.add_argument("--ud", type=Path, default=shared_data_dir() / "ud", help="directory of the UD treebanks")
    parser.add_argument("--steps", type=int, default=700, help="optimiser steps per model when training")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--neurons", type=int, default=512)
    parser.add_argument("--context-length", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=60_000, help="held-out tokens analysed")
    parser.add_argument("--n-top", type=int, default=20, help="max-activating examples per neuron")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_pair(args, corpus, say) -> dict[str, Path]:
    """GELU and SoLU models of one seed, one tokenizer, one batch order (the CLI's ``--activation``)."""
    from needle.toy import ToySize, TrainSettings, shared_tokenizer, train_toy_model

    tokenizer = shared_tokenizer(args.out / "tokenizer", corpus, 4096, echo=say)
    paths = {}
    for activation in ("gelu", "solu"):
        path = args.out / f"toy-{activation}"
        if not (path / "training.json").is_file():
            size = ToySize(hidden_size=128, n_layers=args.layers, n_heads=4, intermediate_size=args.neurons,
                           context_length=args.context_length, activation=activation)
            settings = TrainSettings(steps=args.steps, max_minutes=None, batch_size=16, seed=args.seed, threads=1)
            train_toy_model(path, corpus, size=size, settings=settings, tokenizer=tokenizer, echo=say)
        paths[activation] = path
    return paths


def interval(values: tuple[float, float]) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]"


def main(argv: list[str] | None = None) -> None:
    from needle.models import load_model
    from needle.neurons import logit_attribution, top_activations
    from needle.neurons.distributions import distribution_flags, top_by_distribution
    from needle.neurons.dla import overlap
    from needle.neurons.monosemanticity import (
        compare_models,
        metric_agreement,
        monosemanticity,
        neuron_correspondence,
        sequences_corpus,
        wilson_interval,
    )
    from needle.neurons.weights import cos_in_out_ranking
    from needle.probing.decompositions import fit_nmf, fit_pca, layer_activations, nonnegative
    from needle.scope.neuroscope import NeuroscopeData
    from needle.scope.tables import NeuronRef
    from needle.toy import gather_corpus
    from needle.universal.tokens import check_same_tokenizer, pack_units

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {line}", flush=True)

    paths = {"gelu": args.gelu, "solu": args.solu}
    held = args.out / "heldout_blocks.npz"  # the packed held-out text, reused by a rerun
    corpus = None
    if None in paths.values() or not held.is_file():
        say("gathering the toy corpus (the standard library and the UD treebanks) …")
        corpus = gather_corpus(ud=args.ud, seed=0)  # what `needle toy train` trains on with --data-seed 0
    if None in paths.values():
        paths = train_pair(args, corpus, say)
    models = {name: load_model(path) for name, path in paths.items()}
    check_same_tokenizer([m.tokenizer for m in models.values()], list(models))
    training = {name: json.loads((Path(path) / "training.json").read_text()) for name, path in paths.items()}
    tokenizer = models["gelu"].tokenizer
    context = int(training["gelu"]["size"]["context_length"])
    if corpus is not None:
        sequences, sources = pack_units(corpus.heldout, tokenizer, context, max_tokens=args.max_tokens)
        np.savez(held, blocks=np.stack(sequences), sources=np.asarray(sources))
    saved = np.load(held)
    sequences, sources = list(saved["blocks"]), [str(v) for v in saved["sources"]]
    text = sequences_corpus(sequences, sources, tokenizer)
    n_tokens = sum(len(s) - 1 for s in sequences)
    say(f"held-out text: {len(sequences)} blocks of {context} tokens ({n_tokens:,} tokens after BOS), "
        f"sources {', '.join(sorted(set(sources)))}")
    summary: dict = {"n_blocks": len(sequences), "n_tokens": n_tokens,
                     "sources": {s: int(sources.count(s)) for s in sorted(set(sources))},
                     "models": {name: {"steps": t["steps"], "heldout_loss": t["heldout_loss"],
                                       "activation": t["size"].get("activation", "gelu")}
                                for name, t in training.items()}}

    # ------------------------------------------------------------------ 9.51–9.53
    tables, infos = {}, {}
    for name, model in models.items():
        cached = args.out / f"monosemanticity_{name}.csv"
        if cached.is_file() and (args.out / f"monosemanticity_{name}.json").is_file():
            tables[name] = pd.read_csv(cached, keep_default_na=False)
            infos[name] = json.loads((args.out / f"monosemanticity_{name}.json").read_text())
            continue
        say(f"{name}: monosemanticity of {model.n_layers * model.n_neurons} neurons …")
        tables[name], infos[name] = monosemanticity(model, sequences, sources, n_top=args.n_top)
        tables[name].to_csv(cached, index=False)
        infos[name] = {"n_selective_tests": infos[name]["n_selective_tests"], "n_tests": len(infos[name]["tests"])}
        (args.out / f"monosemanticity_{name}.json").write_text(json.dumps(infos[name]))
    compared = compare_models(tables, seed=args.seed)
    compared.to_csv(args.out / "monosemanticity_compared.csv", index=False)
    agreement = pd.concat([metric_agreement(t).assign(model=name) for name, t in tables.items()])
    agreement.to_csv(args.out / "metric_agreement.csv", index=False)
    summary["monosemanticity"] = compared.to_dict("records")
    by_layer = compare_models({f"{name} L{layer}": t[t["layer"] == layer] for name, t in tables.items()
                               for layer in sorted(set(t["layer"]))}, seed=args.seed)
    from scipy.stats import mannwhitneyu

    tests = []
    for layer in sorted(set(tables["gelu"]["layer"])):
        for metric in ("vr_best", "top_share", "top_token_share"):
            a, b = (tables[n][tables[n]["layer"] == layer][metric] for n in ("gelu", "solu"))
            tests.append({"layer": int(layer), "metric": metric, "gelu_mean": float(a.mean()),
                          "solu_mean": float(b.mean()), "mann_whitney_p": float(mannwhitneyu(a, b).pvalue)})
    summary["monosemanticity_by_layer"] = by_layer.to_dict("records")
    summary["gelu_vs_solu_tests"] = tests
    summary["agreement"] = agreement.to_dict("records")
    summary["selective_tests"] = {n: i["n_selective_tests"] for n, i in infos.items()}
    summary["families"] = {name: t["vr_test"].map(_family).value_counts().to_dict() for name, t in tables.items()}
    say("correspondence GELU → SoLU …")
    pairs, corr = neuron_correspondence([models["gelu"], models["solu"]], ["gelu", "solu"], sequences, tables,
                                        seed=args.seed)
    pairs.to_csv(args.out / "correspondence.csv", index=False)
    same_layer = float((pairs["layer"] == pairs["partner_layer"]).mean())
    summary["correspondence"] = {**corr, "same_layer": same_layer}

    # ------------------------------------------------------------------ 9.49 (GELU: its w_out reads the neuron)
    gelu = models["gelu"]
    neurons = [(layer, i) for layer in range(gelu.n_layers) for i in range(gelu.n_neurons)]
    if (args.out / "dla_summary_gelu.csv").is_file() and (args.out / "dla_shared_gelu.npy").is_file():
        dla_summary = pd.read_csv(args.out / "dla_summary_gelu.csv")
        shared = np.load(args.out / "dla_shared_gelu.npy")
    else:
        say("direct logit attribution of every GELU neuron …")
        found = logit_attribution(gelu, text, neurons, n_top=args.n_top, context=(8, 2))
        top = top_activations(gelu, text, neurons, n_top=args.n_top, n_bottom=0, bands=(), context=(8, 2))
        shared = np.array([overlap(found.examples, top, layer, i)["shared"] for layer, i in neurons])
        dla_summary = found.summary
        dla_summary.to_csv(args.out / "dla_summary_gelu.csv", index=False)
        np.save(args.out / "dla_shared_gelu.npy", shared)
    lowers = dla_summary["lowers_correct_token"].to_numpy(bool)
    summary["dla"] = {
        "n_neurons": len(neurons), "n_top": args.n_top, "mean_shared": float(shared.mean()),
        "shared_quartiles": [float(q) for q in np.quantile(shared, [0.25, 0.5, 0.75])],
        "fraction_no_overlap": float((shared == 0).mean()),
        "lowers_correct_token": int(lowers.sum()), "lowers_interval": wilson_interval(int(lowers.sum()), len(lowers)),
        "by_layer_shared": {int(layer): float(shared[[n[0] == layer for n in neurons]].mean())
                            for layer in range(gelu.n_layers)},
    }

    # ------------------------------------------------------------------ 9.58
    flags_of = {}
    for name, model in models.items():
        cached = (args.out / f"distributions_{name}.pkl")
        if cached.is_file():
            examples, _ = pd.read_pickle(cached)
            flags = distribution_flags(examples, text, [(layer, i) for layer in range(model.n_layers)
                                                        for i in range(model.n_neurons)])
        else:
            say(f"{name}: top examples per source distribution …")
            everyone = [(layer, i) for layer in range(model.n_layers) for i in range(model.n_neurons)]
            examples, flags = top_by_distribution(model, text, everyone, n_top=10, context=(8, 2))
            pd.to_pickle((examples, flags), cached)
        flags_of[name] = (examples, flags)
        flags.assign(explanations=flags["explanations"].map(json.dumps)).to_csv(
            args.out / f"distributions_{name}.csv", index=False)
        compared_n = flags[flags["n_distributions"] >= 2]
        differs = int(compared_n["differs"].sum())
        looks = compared_n[compared_n["overall_coverage"] >= 0.5]
        one_source = int((flags["overall_top_share"] >= 0.9).sum())
        summary.setdefault("distributions", {})[name] = {
            "n_neurons": len(flags), "n_compared": len(compared_n), "differs": differs,
            "differs_interval": wilson_interval(differs, len(compared_n)),
            "looks_explained": len(looks), "differs_among_looks_explained": differs,
            "differs_among_looks_explained_interval": wilson_interval(differs, len(looks)),
            "median_carry_over_looks_explained": float(looks["carry_over"].median()) if len(looks) else None,
            "fraction_min_cross_coverage_below_half": float((compared_n["min_cross_coverage"] < 0.5).mean()),
            "overall_top_from_one_source": one_source,
            "overall_top_from_one_source_interval": wilson_interval(one_source, len(flags)),
            "overall_top_source_counts": flags["overall_top_distribution"].value_counts().head(6).to_dict(),
        }
        for layer in sorted(set(flags["layer"])):
            part = flags[(flags["layer"] == layer) & (flags["n_distributions"] >= 2)]
            seen = part[part["overall_coverage"] >= 0.5]
            n_differ = int(part["differs"].sum())
            summary["distributions"][name][f"L{layer}"] = {
                "n": len(part), "looks_explained": len(seen), "differs": n_differ,
                "differs_among_looks_explained_interval": wilson_interval(n_differ, len(seen)),
                "median_carry_over_looks_explained": float(seen["carry_over"].median()) if len(seen) else None,
                "overall_top_from_one_source": int((part["overall_top_share"] >= 0.9).sum())}

    # ------------------------------------------------------------------ 9.59 and 9.24: bases and weight lists
    last = gelu.n_layers - 1
    summary["bases"] = {}
    bases_file = args.out / "bases.json"
    if bases_file.is_file():
        summary["bases"] = json.loads(bases_file.read_text())
    for name, model in models.items():
        if name in summary["bases"]:
            continue
        x = layer_activations(model, sequences, last)
        row = {"layer": last, "n_tokens": int(len(x)), "fraction_negative": float((x < 0).mean())}
        for negatives in ("clip", "split"):
            nmf = fit_nmf(x, 32, negatives=negatives, seed=args.seed, max_rows=20_000)
            codes = nmf(torch.tensor(x)).numpy()
            target = nonnegative(x.astype(np.float64), negatives)
            error = float(np.linalg.norm(target - nmf.reconstruct(codes)) / np.linalg.norm(target))
            row[f"nmf_{negatives}"] = {"fit_error": nmf.params["relative_error"], "error_all_tokens": error,
                                       "mean_active_codes": float((codes > 1e-3 * codes.max()).sum(1).mean())}
        pca = fit_pca(x, 32, seed=args.seed)
        centred = x.astype(np.float64) - x.mean(0)
        projected = pca(torch.tensor(x)).numpy().astype(np.float64) @ pca.matrix.numpy().T.astype(np.float64)
        row["pca_error"] = float(np.linalg.norm(centred - projected) / np.linalg.norm(centred))
        summary["bases"][name] = row
        bases_file.write_text(json.dumps(summary["bases"], indent=2))

    pages = args.out / "pages"
    for name, model in models.items():
        examples, flags = flags_of[name]
        chosen = flags[flags["differs"]].head(3)
        chosen = pd.concat([chosen, flags[~flags["differs"] & (flags["overall_coverage"] >= 0.5)].head(2)])
        refs = {NeuronRef(int(r.layer), int(r.neuron)) for r in chosen.itertuples()}
        data = NeuroscopeData(cos_in_out_ranking(model), examples, flags)
        target = pages / name
        (target / "neurons").mkdir(parents=True, exist_ok=True)
        data.write_pages(target, refs)
        for ref in refs:
            scale = float(examples[(examples.layer == ref.layer) & (examples.neuron == ref.index)]["activation"]
                          .abs().max())
            page = target / "neurons" / f"L{ref.layer}" / f"{ref.id}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f"<!doctype html><meta charset='utf-8'><title>{ref.id}</title><style>{PAGE_STYLE}</style>"
                            f"<h1>{name} {ref.id}</h1>"
                            f"{data.neuron_section(ref, '../../', scale)}", encoding="utf-8")
        weights = data.weights
        summary.setdefault("weights", {})[name] = {
            "most_negative": weights.head(3)[["layer", "neuron", "cos_in_out"]].to_dict("records"),
            "most_positive": weights.tail(3)[["layer", "neuron", "cos_in_out"]].to_dict("records"),
            "fraction_below_minus_half": float((weights["cos_in_out"] < -0.5).mean()),
            "fraction_above_half": float((weights["cos_in_out"] > 0.5).mean()),
        }

    summary["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain))
    (args.out / "summary.md").write_text(_markdown(summary))
    say(f"wrote {args.out / 'summary.md'}")


#: Token colours of a standalone page (the scope site's stylesheet does this on its own pages).
PAGE_STYLE = (".tok{background:rgba(255,120,0,var(--a,0))}.tok.neg{background:rgba(0,90,255,var(--a,0))}"
              ".tok.focus{outline:1px solid #000}body{font:14px system-ui;max-width:70em;margin:1em auto}"
              "td{padding:.1em .5em;border-bottom:1px solid #eee}")


def _family(test: str) -> str:
    from needle.universal.explain import family_of

    return family_of(test)


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return str(value)


def _markdown(s: dict) -> str:
    lines = ["# Neuroscope's open problems on toy GELU and SoLU models", "",
             f"Held-out text: {s['n_blocks']} blocks, {s['n_tokens']:,} tokens; sources {s['sources']}.", ""]
    for name, m in s["models"].items():
        lines.append(f"- {name}: {m['steps']} steps, held-out loss {m['heldout_loss']:.3f} nats/token")
    lines += ["", "## 9.51–9.53 monosemanticity (mean and share called monosemantic, 95 % intervals)", "",
              "| model | metric | n | mean | share called |", "|---|---|---|---|---|"]
    for r in s["monosemanticity"]:
        lines.append(f"| {r['model']} | {r['metric']} | {r['n']} | {r['mean']:.3f} [{r['mean_low']:.3f}, "
                     f"{r['mean_high']:.3f}] | {r['fraction']:.3f} [{r['fraction_low']:.3f}, {r['fraction_high']:.3f}] |")
    lines += ["", "By layer:", "", "| model | metric | n | mean | share called |", "|---|---|---|---|---|"]
    for r in s["monosemanticity_by_layer"]:
        lines.append(f"| {r['model']} | {r['metric']} | {r['n']} | {r['mean']:.3f} [{r['mean_low']:.3f}, "
                     f"{r['mean_high']:.3f}] | {r['fraction']:.3f} [{r['fraction_low']:.3f}, {r['fraction_high']:.3f}] |")
    lines += ["", f"GELU vs SoLU per layer (Mann-Whitney): {json.dumps(s['gelu_vs_solu_tests'])}"]
    lines += ["", "| model | metrics | Spearman | agreement | kappa |", "|---|---|---|---|---|"]
    for r in s["agreement"]:
        lines.append(f"| {r['model']} | {r['metric_a']} / {r['metric_b']} | {r['spearman']:.3f} | "
                     f"{r['agreement']:.3f} | {r['kappa']:.3f} |")
    lines += ["", f"Families of the best explanation: {s['families']}", "",
              f"Correspondence GELU → SoLU: {json.dumps(s['correspondence'], default=_plain)}", "",
              f"## 9.49 DLA vs max-activating (GELU): {json.dumps(s['dla'], default=_plain)}", "",
              f"## 9.58 per distribution: {json.dumps(s['distributions'], default=_plain)}", "",
              f"## 9.59 bases (last layer): {json.dumps(s['bases'], default=_plain)}", "",
              f"## 9.24 weights: {json.dumps(s['weights'], default=_plain)}", "", f"{s['seconds']} s in all.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
