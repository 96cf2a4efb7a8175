"""Chapter 4 end to end: space and time in a model's residual stream (thesis §4.2–4.5).

For each dataset of the ``space-time`` collection: build it, extract
``hook_resid_post`` at every layer, sweep the regression probes (``ridge``
with leave-one-out alpha, ``pca``, ``f_stat`` k-sparse, and the ``mlp`` probe
at 60 % depth, Table 4.2's layer), then on one shared entity split: R² per
layer with bootstrap intervals, the best layer chosen by training
leave-one-out R², great-circle error and proximity error, the block hold-out
(Table 4.3) and the cross-entity hold-out (Table 4.4), the space/time
neurons of §4.5 (alignment, projections, ablation) and the figures. Every
stage is skipped when its output exists in ``--work`` (a dataset's analyses
are kept in ``analysis-<name>.pkl``), so a run resumes, and a run naming
more datasets reuses those done before.

    python examples/space_time.py --work st-minilm --sae-probes sae_probes-0.4.2-py3-none-any.whl
    python examples/space_time.py --work st-pythia --model EleutherAI/pythia-160m --datasets world,historical

Writes ``<work>/summary.md`` (the tables) and ``<work>/summary.json``, and
PNG figures beside them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

#: Table 4.2 (Llama-2-7b, linear probe, 60 % depth): the paper's numbers to read ours against.
PAPER_R2 = {"world": 0.881, "us": 0.799, "nyc": 0.219, "historical": 0.785, "art": 0.788, "headlines": 0.564}
PAPER_MLP_R2 = {"world": 0.897, "us": 0.819, "nyc": 0.204, "historical": 0.775, "art": 0.746, "headlines": 0.467}
#: Table 4.3 / 4.4 (Llama-2-7b): nominal and held-out proximity error.
PAPER_BLOCK = {"world": (0.071, 0.170), "us": (0.144, 0.192), "nyc": (0.331, 0.473), "historical": (0.129, 0.133),
               "art": (0.147, 0.158), "headlines": (0.258, 0.264)}
PAPER_ENTITY = {"world": (0.120, 0.151), "us": (0.206, 0.262), "nyc": (0.313, 0.367), "historical": (0.164, 0.168),
                "art": (0.224, 0.305), "headlines": (0.199, 0.289)}
#: dataset → (the paper's block column, grid cell in degrees when that column is too sparse, entity-type column)
HOLDOUTS = {"world": ("country", 10.0, None), "us": ("state", 2.0, None), "nyc": ("borough", 0.02, None),
            "historical": ("century", None, "politician"), "art": ("decade", None, "entity_type"),
            "headlines": ("year_block", None, None), "world-cities": ("country", 10.0, None),
            "us-cities": ("state", 2.0, None)}
COLOUR_BY = {"world": "country", "us": "state", "nyc": "borough", "world-cities": "continent", "us-cities": "state",
             "art": "entity_type", "historical": "sex"}


def build_and_extract(work: Path, name: str, args) -> tuple[Path, Path]:
    from needle.activations import extract
    from needle.datasets.registry import build_collection
    from needle.models import load_tokenizer

    dataset_dir, cache_dir = work / f"ds-{name}", work / f"cache-{name}-resid"
    if not dataset_dir.exists():
        params = {"dataset": name, "sae_probes": args.sae_probes}
        if args.max_entities or name == "world-cities":
            params["max_entities"] = args.max_entities or 5000
        build_collection("space-time", None, load_tokenizer(args.model), **params).save(dataset_dir)
    if not cache_dir.exists():
        extract(args.model, dataset_dir, cache_dir, site="resid", progress=not args.quiet)
    return dataset_dir, cache_dir


def sweep_probes(cache, out: Path, args) -> pd.DataFrame:
    from needle.probing import sweep

    ks = [1, 2, 4, 8, 16, 32, 64, 128]
    sweep(cache, out=out, methods=["ridge", "pca", "f_stat"], ks=ks, baselines=False, progress=not args.quiet)
    deep = int(math.floor(0.6 * len(cache.layers)))  # 60 % depth, Table 4.2's layer
    return sweep(cache, out=out, methods=["mlp"], ks=ks, baselines=False, layers=[cache.layers[deep]],
                 progress=not args.quiet)


def holdouts(cache, entities, is_test, layer, name) -> dict:
    from needle.spacetime import block_holdout

    column, grid, entity_column = HOLDOUTS.get(name, (None, None, None))
    usable = entities.has_coordinates if entities.kind == "space" else np.isfinite(entities.targets[entities.main_target])
    out = {}
    if column in entities.metadata:
        covered = (entities.metadata[column][usable] != "").mean()
        if covered < 0.5 and grid is not None:  # the sae-probes samples rarely hold a place's country with both coordinates
            column = "grid"
        table = block_holdout(cache, entities, is_test, layer, column, grid_degrees=grid)
        out["block"] = {"column": column if column != "grid" else f"grid {grid}°", "table": table}
    elif grid is not None:
        out["block"] = {"column": f"grid {grid}°", "table": block_holdout(cache, entities, is_test, layer, "grid",
                                                                            grid_degrees=grid)}
    if entity_column in entities.metadata:
        out["entity"] = {"column": entity_column, "table": block_holdout(cache, entities, is_test, layer, entity_column,
                                                                         min_test=5, max_share=0.8)}
    return out


def space_time_neurons(cache, dataset, entities, is_test, layer, model) -> dict:
    from needle.spacetime import fit_ridge
    from needle.spacetime.neurons import ablation_effect, aligned_neurons, alignment_null, neuron_projections

    target = "longitude" if entities.kind == "space" else entities.main_target
    values = entities.targets[target]
    X = np.asarray(cache.layer(layer), np.float32)
    train, test = ~is_test & np.isfinite(values), is_test & np.isfinite(values)
    probe, _ = fit_ridge(X[train], values[train])
    top = aligned_neurons(model, probe.coef[:, 0], top=10)
    null = alignment_null(model, draws=5)
    kinds = entities.metadata.get("entity_type")
    projections = neuron_projections(model, X[test], top.head(3), values[test],
                                     None if kinds is None else kinds[test])
    chosen = [(int(l), int(n)) for l, n in zip(top.layer, top.neuron) if l <= layer][:5]
    rows = np.flatnonzero(test)[:400]
    sequences = np.asarray(cache.rows["sequence"])[rows]
    positions = np.asarray(cache.rows["start"])[rows]
    effect = ablation_effect(model, dataset, sequences, positions, layer, probe, values[rows], chosen, n_random=3)
    return {"target": target, "top": top, "null": null, "projections": projections, "ablation": effect,
            "n_ablation": int(rows.size)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--sae-probes", default=None, help="the sae-probes wheel (default: the installed package)")
    parser.add_argument("--datasets", default="world,us,nyc,historical,art,headlines,world-cities")
    parser.add_argument("--max-entities", type=int, default=None)
    parser.add_argument("--neurons", default="world,historical", help="datasets of the §4.5 neuron analysis")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from needle.activations import load_cache
    from needle.models import load_model
    from needle.spacetime import best_layer, entity_split, held_out_predictions, layer_scores, load_entities
    from needle.spacetime.figures import r2_by_layer, world_scatter, year_scatter

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = None
    summary, scores_by = {}, {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        saved = work / f"analysis-{name}.pkl"
        if saved.exists():  # a dataset analysed by an earlier run
            summary[name] = pd.read_pickle(saved)
            scores_by[name] = summary[name]["scores"]
            continue
        dataset_dir, cache_dir = build_and_extract(work, name, args)
        cache = load_cache(cache_dir)
        results = sweep_probes(cache, work / f"results-{name}.parquet", args)
        dataset = cache.dataset()
        entities = load_entities(cache, dataset)
        is_test = entity_split(entities)
        scores = layer_scores(cache, entities, is_test)
        scores.to_csv(work / f"scores-{name}.csv", index=False)
        scores_by[name] = scores
        layer = best_layer(scores)
        frame = held_out_predictions(cache, entities, is_test, layer)
        if entities.kind == "space":
            world_scatter(frame, work / f"map-{name}.png", colour_by=COLOUR_BY.get(name),
                          title=f"{name}: layer {layer}, held-out places")
        else:
            year_scatter(frame, entities.main_target, work / f"years-{name}.png", colour_by=COLOUR_BY.get(name),
                         title=f"{name}: layer {layer}, held-out entities")
        entry = {"layer": layer, "n_entities": len(entities), "scores": scores, "holdouts": holdouts(
            cache, entities, is_test, layer, name), "results": results}
        if name in args.neurons.split(","):
            model = model or load_model(args.model)
            entry["neurons"] = space_time_neurons(cache, dataset, entities, is_test, layer, model)
        summary[name] = entry
        pd.to_pickle(entry, saved)
    r2_by_layer(scores_by, work / "r2-by-layer.png", title=f"{args.model}: ridge probe on hook_resid_post")
    write_summary(work, summary, args.model)


def _r2_cell(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.target} {r.r2:.3f} [{r.r2_low:.3f}, {r.r2_high:.3f}] (n={int(r.n_test)})"
                     for r in rows.itertuples())


def write_summary(work: Path, summary: dict, model: str) -> None:
    lines = [f"# Space and time in {model}", "",
             "Ridge probe on `hook_resid_post`, alpha by leave-one-out on the training split; the layer is the one "
             "of the best training leave-one-out R² (the test split picks nothing). R² with bootstrap 95 % "
             "intervals over the held-out entities.", "",
             "| dataset | entities | best layer | test R² per target [95 %] (n) | mean R² | paper, Llama-2-7b | "
             "MLP probe R² (60 % depth) | paper MLP | ridge R² at 60 % depth |",
             "|---|---|---|---|---|---|---|---|---|"]
    record = {}
    for name, entry in summary.items():
        scores, layer, results = entry["scores"], entry["layer"], entry["results"]
        at = scores[(scores.layer == layer) & scores.r2.notna()]
        deep = results[results.method == "mlp"]
        mlp = deep.groupby("feature").r2.mean()
        ridge_deep = results[(results.method == "ridge") & (results.layer.isin(deep.layer.unique()))].groupby("feature").r2.mean()
        lines.append(f"| {name} | {entry['n_entities']} | {layer} | {_r2_cell(at)} | {at.r2.mean():.3f} | "
                     f"{PAPER_R2.get(name, '—')} | {mlp.mean():.3f} | {PAPER_MLP_R2.get(name, '—')} | "
                     f"{ridge_deep.mean():.3f} |")
        record[name] = {"layer": layer, "n_entities": entry["n_entities"], "r2": at[["target", "r2", "r2_low", "r2_high",
                        "n_test"]].to_dict("records"), "mlp_r2": mlp.to_dict(), "ridge_r2_60pct": ridge_deep.to_dict()}
    lines += ["", "## Places: great-circle and proximity error at the best layer", "",
              "| dataset | entities with both coordinates (test) | R² on the sphere | median km | mean km | proximity error |",
              "|---|---|---|---|---|---|"]
    if not any((e["scores"].target == "position").any() for e in summary.values()):
        lines[-2:] = ["No place datasets in this run."]
    for name, entry in summary.items():
        pos = entry["scores"][(entry["scores"].layer == entry["layer"]) & (entry["scores"].target == "position")]
        for r in pos.itertuples():
            lines.append(f"| {name} | {int(r.n_test)} | {r.sphere_r2:.3f} | {r.median_km:.0f} | {r.mean_km:.0f} | "
                         f"{r.proximity:.3f} |")
            record[name]["position"] = {"sphere_r2": r.sphere_r2, "median_km": r.median_km, "proximity": r.proximity,
                                        "n_test": int(r.n_test)}
    for key, title, paper in (("block", "Block hold-out (Table 4.3)", PAPER_BLOCK),
                              ("entity", "Cross-entity hold-out (Table 4.4)", PAPER_ENTITY)):
        lines += ["", f"## {title}: mean proximity error over blocks (0.5 is chance)", "",
                  "| dataset | block | blocks | nominal | held out | paper nominal / held out |", "|---|---|---|---|---|---|"]
        if not any(len(e["holdouts"].get(key, {}).get("table", [])) for e in summary.values()):
            lines[-2:] = ["None of these datasets has the metadata for it."]
        for name, entry in summary.items():
            found = entry["holdouts"].get(key)
            if not found or not len(found["table"]):
                continue
            table = found["table"]
            se = lambda c: table[c].std(ddof=1) / np.sqrt(len(table)) if len(table) > 1 else float("nan")  # noqa: E731
            lines.append(f"| {name} | {found['column']} | {len(table)} | {table.nominal.mean():.3f} ± {se('nominal'):.3f} | "
                         f"{table.held_out.mean():.3f} ± {se('held_out'):.3f} | "
                         f"{' / '.join(map(str, paper.get(name, ('—', '—'))))} |")
            record[name][key] = {"column": found["column"], "blocks": len(table), "nominal": table.nominal.mean(),
                                 "held_out": table.held_out.mean()}
    lines += ["", "## Space and time neurons (§4.5)", ""]
    for name, entry in summary.items():
        found = entry.get("neurons")
        if not found:
            continue
        top, null, effect = found["top"], found["null"], found["ablation"]
        lines += [f"**{name}** ({found['target']} probe at layer {entry['layer']}): best |cosine| of a neuron's weights "
                  f"with the probe {top.score.iloc[0]:.3f} (L{top.layer.iloc[0]}.N{top.neuron.iloc[0]}); "
                  f"the best for random directions {null.mean():.3f} ± {null.std(ddof=1):.3f} (5 draws).", "",
                  "| neuron | cos in | cos out | Spearman of resid · w_in with the target (test) |", "|---|---|---|---|"]
        proj = found["projections"]
        for r in top.head(3).itertuples():
            rho = proj[(proj.layer == r.layer) & (proj.neuron == r.neuron) & (proj.type == "all")].spearman
            lines.append(f"| L{r.layer}.N{r.neuron} | {r.cos_in:.3f} | {r.cos_out:.3f} | {float(rho.iloc[0]):.3f} |")
        lines += ["", f"Ablating the 5 most aligned neurons of layers ≤ {entry['layer']} on {found['n_ablation']} "
                  "held-out entities:", "", "| condition | R² | mean abs change | relative to the prediction std |",
                  "|---|---|---|---|"]
        for r in effect.itertuples():
            lines.append(f"| {r.condition} | {r.r2:.3f} | {r.mean_abs_change:.3f} | {r.relative_change:.3f} |")
        lines.append("")
        record[name]["neurons"] = {"top": top.head(5).to_dict("records"), "null": null.tolist(),
                                   "ablation": effect.to_dict("records")}
    (work / "summary.md").write_text("\n".join(lines) + "\n")
    (work / "summary.json").write_text(json.dumps(record, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
