"""Case study: probe the toy causal LM for languages and Python features, then zoom in on the best single neurons.

The paper's Section 2.5 workflow, end to end, on a model with learned weights
that this machine can train (``needle toy train``):

1. train the toy model (or reuse one) and reproduce its train/held-out split;
2. build the ``natural-language`` collection (the UD treebanks' dev and test
   files) and the ``python-code`` collection (standard library), extract the
   MLP neurons of every layer and sweep sparse probes (mean_diff, f_stat,
   adaptive);
3. take each feature's best 1-sparse neuron and, on **held-out** text the
   model never trained on, look at it the way the paper does: max-activating
   examples (with quantile-band samples), per-token selectivity (token-level
   ROC AUC of the neuron for its language or Python feature), direct logit
   effects, and the change in next-token loss per language when it is
   ablated (zero and mean ablation);
4. write ``summary.md`` and CSV tables with every number, and a few plots.

Run from the repository root::

    python examples/toy_case_study.py --out toy-case-study                # trains a model first (~15 min)
    python examples/toy_case_study.py --out toy-case-study --model /tmp/toy/model

Every stage already complete in ``--out`` is reused, so an interrupted run
resumes. See ``examples/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("mean_diff", "f_stat", "adaptive")
KS = (1, 2, 3, 4, 6, 8, 16, 32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from needle.datasets.shared_data import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("toy-case-study"), help="directory for everything written")
    parser.add_argument("--model", type=Path, default=None,
                        help="a toy model directory (default: OUT/model, trained when missing)")
    parser.add_argument("--ud", type=Path, default=shared_data_dir() / "ud", help="directory of the UD treebanks")
    parser.add_argument("--train-minutes", type=float, default=15.0, help="wall-clock budget when training")
    parser.add_argument("--train-cpu-minutes", type=float, default=None,
                        help="CPU-time budget when training (fair on a shared machine)")
    parser.add_argument("--sequences-per-language", type=int, default=120,
                        help="natural-language windows per language (probing)")
    parser.add_argument("--python-files", type=int, default=80, help="standard-library files for python-code")
    parser.add_argument("--max-positives", type=int, default=800, help="positives per python-code feature")
    parser.add_argument("--heldout-sequences", type=int, default=24,
                        help="held-out sequences per source for the neuron analyses")
    parser.add_argument("--python-features", type=int, default=4,
                        help="python-code features (best 1-sparse F1 first) whose neuron is ablated")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the sweeps")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model_dir = ensure_model(args)
    from needle.models import load_model

    adapter = load_model(model_dir)
    training = json.loads((model_dir / "training.json").read_text())
    context_length = int(adapter.max_positions or 128)
    say(f"model {model_dir}: {adapter.n_layers} layers × {adapter.n_neurons} neurons, "
        f"held-out loss {training['heldout_loss']:.3f} nats/token")

    heldout_units, split_check = reproduce_heldout(training)
    say(f"held-out split reproduced: {split_check}")

    datasets = build_datasets(args, adapter, context_length, heldout_units)
    results = {name: probe(args, adapter, name, path) for name, path in datasets.items()
               if name in ("natural-language", "python-code")}
    summaries = {name: summarize_results(results[name]) for name in results}
    probe_table = pd.concat(summaries.values(), ignore_index=True)
    probe_table.to_csv(out / "probe_summary.csv", index=False)

    language_rows = summaries["natural-language"]
    python_rows = summaries["python-code"].sort_values("neuron_f1", ascending=False, kind="stable")
    neurons = {row.feature: (int(row.neuron_layer), int(row.neuron)) for row in language_rows.itertuples()}
    neurons.update({row.feature: (int(row.neuron_layer), int(row.neuron)) for row in python_rows.itertuples()})
    signs = dict(zip(probe_table["feature"], probe_table["neuron_sign"]))

    language_corpus = heldout_language_corpus(adapter, heldout_units, context_length, args.heldout_sequences)
    from needle.datasets.format import load_dataset

    python_heldout = load_dataset(datasets["python-heldout"])
    analyses = analyse_neurons(args, adapter, neurons, signs, language_rows, python_rows, language_corpus,
                               python_heldout)
    write_summary(args, model_dir, training, probe_table, analyses, split_check, time.perf_counter() - started)
    say(f"done in {(time.perf_counter() - started) / 60:.1f} min; see {out / 'summary.md'}")


def say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------- model


def ensure_model(args: argparse.Namespace) -> Path:
    """The model directory: the one given, OUT/model when already trained, or a new training run."""
    model_dir = args.model or args.out / "model"
    if (model_dir / "training.json").is_file():
        return model_dir
    if args.model is not None:
        raise SystemExit(f"{model_dir} holds no toy model (training.json is missing); train one with "
                         f"`needle toy train --out {model_dir}` or leave --model out.")
    from needle.toy import TrainSettings, gather_corpus, train_toy_model

    say(f"[0] training the toy model into {model_dir} ({args.train_minutes} min budget) …")
    corpus = gather_corpus(ud=args.ud)
    settings = TrainSettings(max_minutes=args.train_minutes, max_cpu_minutes=args.train_cpu_minutes)
    train_toy_model(model_dir, corpus, settings=settings, echo=say)
    return model_dir


def reproduce_heldout(training: dict[str, Any]):
    """Rebuild the model's held-out units from the parameters it recorded, and check they are the same."""
    from needle.toy import gather_corpus

    params = training["corpus"]
    python = params["python"]
    if python == "stdlib":
        python = None
    corpus = gather_corpus(
        python=python, ud=params["ud"], languages=params["languages"], max_chars_python=params["max_chars_python"],
        max_chars_per_language=params["max_chars_per_language"], max_chars_per_file=params["max_chars_per_file"],
        unit_chars=params["unit_chars"], heldout_fraction=params["heldout_fraction"], seed=params["split_seed"],
    )
    recorded = params["heldout_units"]
    rebuilt = {s: [u.name for u in corpus.heldout if u.source == s] for s in corpus.sources}
    same = all(sorted(recorded.get(s, [])) == sorted(rebuilt.get(s, [])) for s in set(recorded) | set(rebuilt))
    check = (f"{'identical to' if same else 'DIFFERENT from'} the recorded split "
             f"({sum(len(v) for v in rebuilt.values())} held-out units over {len(rebuilt)} sources)")
    return corpus.heldout, check


# -------------------------------------------------------------------------------------------- datasets


def build_datasets(args, adapter, context_length: int, heldout_units) -> dict[str, Path]:
    """The two probing collections, and the held-out Python files labelled the same way."""
    from needle.datasets.natural_language import build_natural_language
    from needle.datasets.python_code import build_python_code

    paths = {"natural-language": args.out / "natural-language", "python-code": args.out / "python-code",
             "python-heldout": args.out / "python-heldout"}
    ud_files = sorted(p for p in args.ud.glob("*/*-ud-*.conllu*") if "-ud-dev." in p.name or "-ud-test." in p.name)
    heldout_files = [Path(sysconfig.get_paths()["stdlib"]) / u.name for u in heldout_units if u.source == "python"]
    recipes = {
        "natural-language": lambda: build_natural_language(
            ud_files, adapter.tokenizer, context_length=context_length,
            max_sequences_per_language=args.sequences_per_language),
        "python-code": lambda: build_python_code(
            None, adapter.tokenizer, context_length=context_length, max_files=args.python_files,
            max_sequences_per_file=4, max_positives=args.max_positives),
        # every labelled token of the held-out files (no negative subsampling): for token-level AUROC
        "python-heldout": lambda: build_python_code(
            heldout_files, adapter.tokenizer, context_length=context_length, max_sequences_per_file=8,
            positive_ratio=None, min_positives=5),
    }
    for name, path in paths.items():
        if (path / "manifest.json").is_file():
            say(f"[1] reusing {name} in {path}")
            continue
        say(f"[1] building {name} …")
        dataset = recipes[name]()
        dataset.save(path)
        say(f"    {dataset.n_sequences} sequences, {dataset.n_tokens} tokens, {len(dataset.features)} features")
    return paths


def probe(args, adapter, name: str, dataset_path: Path) -> pd.DataFrame:
    from needle.activations import extract, load_cache
    from needle.probing import load_results, sweep

    cache_dir = args.out / f"cache-{name}"
    results_path = args.out / f"results-{name}.parquet"
    if not (cache_dir / "manifest.json").is_file():
        say(f"[2] extracting {name} (all {adapter.n_layers} layers) …")
        extract(adapter, dataset_path, cache_dir, progress=False)
    cache = load_cache(cache_dir)
    if results_path.is_file() and (args.out / f".{name}.swept").is_file():
        say(f"[3] reusing the sweep of {name}")
        return load_results(results_path)
    say(f"[3] sweeping {name}: {len(cache.feature_names)} features × {len(cache.layers)} layers × {METHODS} …")
    results = sweep(cache, out=results_path, methods=list(METHODS), ks=list(KS), n_jobs=args.jobs, progress=False)
    (args.out / f".{name}.swept").write_text("done\n")
    return results


def summarize_results(results: pd.DataFrame) -> pd.DataFrame:
    """needle's per-feature summary, plus the sign of the best 1-sparse probe's coefficient.

    A negative coefficient means the feature is read from the neuron being *low*; the held-out analyses then
    look at its most negative examples and orient its AUROC the same way.
    """
    from needle.probing import summarize

    summary = summarize(results, ks=(1, 8))
    signs = []
    for row in summary.itertuples():
        best = results[(results["feature"] == row.feature) & (results["k"] == 1)
                       & (results["layer"] == row.neuron_layer) & (results["method"] == row.neuron_method)]
        signs.append(int(np.sign(best["coef"].iloc[0][0])) if len(best) else 1)
    summary["neuron_sign"] = signs
    return summary


# -------------------------------------------------------------------------------------------- analyses


def heldout_language_corpus(adapter, units, context_length: int, per_source: int):
    """Held-out text of every source (languages and Python), at most ``per_source`` sequences each."""
    from needle.neurons import Corpus

    corpus = Corpus.from_texts([u.text for u in units], adapter.tokenizer, context_length,
                               labels=[u.source for u in units], groups=[u.name for u in units])
    rng = np.random.default_rng(0)
    keep = []
    for label in sorted(set(corpus.labels)):
        members = np.flatnonzero(corpus.labels == label)
        members = members[[len(corpus.tokens[i]) >= 32 for i in members]]  # full-ish windows, comparable losses
        keep += sorted(rng.choice(members, size=min(per_source, len(members)), replace=False).tolist())
    return corpus.subset(sorted(keep))


def token_activations(adapter, corpus, neurons: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations of ``neurons`` at every non-special token: (n_tokens, n_neurons), sequence and position ids."""
    layers = sorted({layer for layer, _ in neurons})
    special = torch.from_numpy(corpus.special_ids())
    values, seqs, poss = [], [], []
    for batch in corpus.batches(8192):
        captured = adapter.capture(batch.input_ids, batch.attention_mask, layers, site="post")
        keep = batch.valid & ~torch.isin(batch.input_ids, special)
        rows, pos = torch.nonzero(keep, as_tuple=True)
        values.append(torch.stack([captured[l][rows, pos, i] for l, i in neurons], 1).float().numpy())
        seqs.append(batch.sequences[rows.numpy()])
        poss.append(pos.numpy())
    return np.concatenate(values), np.concatenate(seqs), np.concatenate(poss)


def analyse_neurons(args, adapter, neurons, signs, language_rows, python_rows, language_corpus, python_heldout):
    """Max-activating examples, selectivity, logit effects and ablations of each feature's best neuron.

    Everything is oriented by the probe's sign: for a neuron read with a negative coefficient the "top"
    examples are its most negative ones and its AUROC is that of minus the activation.
    """
    from sklearn.metrics import roc_auc_score

    from needle.datasets.natural_language import language_feature
    from needle.neurons import (
        Corpus,
        ablate,
        logit_effects,
        plot_ablation,
        plot_top_activations,
        save_figure,
        top_activations,
    )

    out = args.out
    (out / "plots").mkdir(exist_ok=True)
    features = list(neurons)
    unique = sorted(set(neurons.values()))
    label_of_feature = {language_feature(code): code for code in set(language_corpus.labels)
                        if code != "python"}

    say(f"[4] max-activating examples of {len(unique)} neurons on held-out text …")
    top = top_activations(adapter, language_corpus, unique, n_top=20, n_bottom=20, per_band=4, context=(12, 3))
    py_corpus = Corpus.from_dataset(python_heldout, tokenizer=adapter.tokenizer)
    py_top = top_activations(adapter, py_corpus, unique, n_top=20, n_bottom=20, per_band=0, context=(12, 3))
    _context_table(top).to_csv(out / "top_activations_heldout_text.csv", index=False)
    _context_table(py_top).to_csv(out / "top_activations_heldout_python.csv", index=False)

    say("[5] token-level selectivity on held-out text …")
    acts, seqs, _ = token_activations(adapter, language_corpus, unique)
    token_labels = language_corpus.labels[seqs]
    py_acts, py_seqs, py_pos = token_activations(adapter, py_corpus, unique)
    py_index = {(int(s), int(p)): row for row, (s, p) in enumerate(zip(py_seqs, py_pos))}

    rows = []
    for feature in features:
        layer, index = neurons[feature]
        column = unique.index((layer, index))
        sign = int(signs.get(feature, 1))
        end = "top" if sign > 0 else "bottom"
        row: dict[str, Any] = {"feature": feature, "neuron": f"L{layer}N{index}", "layer": layer, "index": index,
                               "sign": "+" if sign > 0 else "-"}
        mine = top[(top["layer"] == layer) & (top["neuron"] == index) & (top["kind"] == end)]
        row["top20_labels"] = ", ".join(f"{k}:{v}" for k, v in mine["label"].value_counts().items())
        row["top20_tokens"] = " ".join(repr(t) for t in mine["token"].head(8))
        by_label = pd.Series(acts[:, column]).groupby(token_labels).mean()
        row.update({f"mean_act[{k}]": float(v) for k, v in by_label.items()})
        if feature in label_of_feature:
            own = label_of_feature[feature]
            is_own = token_labels == own
            is_language = token_labels != "python"
            row["kind"] = "language"
            row["own_label"] = own
            row["token_auroc_vs_languages"] = float(roc_auc_score(is_own[is_language],
                                                                  sign * acts[is_language, column]))
            row["frac_top20_own"] = float((mine["label"] == own).mean()) if len(mine) else np.nan
        else:
            row["kind"] = "python"
            row["own_label"] = "python"
            examples = python_heldout.feature_examples(feature) if feature in python_heldout.feature_names else None
            if examples is not None and len(examples):
                picks = [(py_index.get((int(s), int(p))), int(y))
                         for s, p, y in zip(examples.sequence, examples.start, examples.label)]
                picks = [(r, y) for r, y in picks if r is not None]
                ys = np.array([y for _, y in picks])
                xs = sign * py_acts[[r for r, _ in picks], column]
                row["token_auroc_heldout_python"] = float(roc_auc_score(ys, xs)) if 0 < ys.sum() < len(ys) else np.nan
                positives = {(int(s), int(p)) for s, p, y in zip(examples.sequence, examples.start, examples.label)
                             if y == 1}
                mine_py = py_top[(py_top["layer"] == layer) & (py_top["neuron"] == index)
                                 & (py_top["kind"] == end)]
                row["precision_top20_heldout_python"] = float(np.mean(
                    [(int(s), int(p)) in positives for s, p in zip(mine_py["sequence"], mine_py["position"])]))
                row["top20_python_tokens"] = " ".join(repr(t) for t in mine_py["token"].head(8))
            row["frac_top20_python"] = float((mine["label"] == "python").mean()) if len(mine) else np.nan
        rows.append(row)

    say("[6] logit effects …")
    logit_rows = []
    for feature in features:
        layer, index = neurons[feature]
        effects = logit_effects(adapter, layer, index, top=10)
        logit_rows.append({"feature": feature, **effects.summary(), "neuron": f"L{layer}N{index}",
                           "top_tokens": " ".join(repr(t) for t in effects.table.query("kind == 'top'")["token"]),
                           "bottom_tokens": " ".join(repr(t) for t in
                                                     effects.table.query("kind == 'bottom'")["token"])})
    logits = pd.DataFrame(logit_rows)
    logits.to_csv(out / "logit_effects.csv", index=False)

    ablated_features = list(language_rows["feature"]) + list(python_rows["feature"].head(args.python_features))
    say(f"[7] ablating {len(ablated_features)} neurons (zero and mean) on held-out text …")
    ablations = []
    for feature in ablated_features:
        layer, index = neurons[feature]
        for mode in ("zero", "mean"):
            table = ablate(adapter, language_corpus, [(layer, index)], mode=mode)
            table.insert(0, "feature", feature)
            ablations.append(table)
        if feature in (ablated_features[0], python_rows["feature"].iloc[0]):
            save_figure(plot_ablation(ablations[-2]), out / "plots" / f"ablation_{feature}.png")
            save_figure(plot_top_activations(top, layer, index), out / "plots" / f"top_{feature}.png")
    all_languages = [neurons[f] for f in language_rows["feature"]]
    table = ablate(adapter, language_corpus, sorted(set(all_languages)), mode="zero")
    table.insert(0, "feature", "all language neurons")
    ablations.append(table)
    ablation = pd.concat(ablations, ignore_index=True)
    ablation.to_csv(out / "ablation.csv", index=False)

    neurons_table = pd.DataFrame(rows)
    for row in neurons_table.itertuples():
        for mode in ("zero", "mean"):
            part = ablation[(ablation["feature"] == row.feature) & (ablation["mode"] == mode)]
            if not len(part):
                continue
            per_label = part.set_index("label")["delta"]
            own = per_label.get(row.own_label, np.nan)
            others = per_label.drop([row.own_label, "(all)"], errors="ignore")
            neurons_table.loc[row.Index, f"ablation_{mode}_own"] = own
            neurons_table.loc[row.Index, f"ablation_{mode}_own_se"] = part.set_index("label")["delta_se"].get(
                row.own_label, np.nan)
            neurons_table.loc[row.Index, f"ablation_{mode}_others_mean"] = float(others.mean())
            neurons_table.loc[row.Index, f"ablation_{mode}_others_max"] = float(others.max())
    neurons_table.to_csv(out / "neurons.csv", index=False)
    return {"neurons": neurons_table, "logits": logits, "ablation": ablation, "top": top, "py_top": py_top}


def _context_table(top: pd.DataFrame) -> pd.DataFrame:
    table = top.copy()
    table["context"] = [_snippet(tokens, focus) for tokens, focus in zip(table["context_tokens"], table["focus"])]
    return table.drop(columns=["context_tokens", "context_activations"])


def _snippet(tokens: list[str], focus: int) -> str:
    clean = [t.replace("\n", "⏎") for t in tokens]
    return "".join(clean[:focus]) + "⟦" + clean[focus] + "⟧" + "".join(clean[focus + 1:])


# --------------------------------------------------------------------------------------------- summary


def write_summary(args, model_dir: Path, training: dict, probe_table: pd.DataFrame, analyses: dict,
                  split_check: str, seconds: float) -> None:
    out = args.out

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["# Toy causal LM case study", ""]
    t = training
    lines += [
        "## The model",
        "",
        (f"GPT-NeoX (Pythia architecture): {t['size']['n_layers']} layers, width {t['size']['hidden_size']}, "
         f"{t['size']['intermediate_size']} GELU neurons per layer, {t['size']['n_heads']} heads, context "
         f"{t['size']['context_length']}, vocabulary {t['vocab_size']} (byte-level BPE); "
         f"{t['n_parameters']:,} parameters ({t['n_parameters_non_embedding']:,} outside the embeddings)."),
        (f"Trained {t['steps']} steps, {t['tokens_seen']:,} tokens ({t['epochs']:.2f} epochs of "
         f"{t['corpus']['train_tokens']:,} training tokens) in {t['seconds']['training'] / 60:.1f} min wall "
         f"({t['seconds'].get('training_cpu', float('nan')) / 60:.1f} CPU min; stopped by {t['stopped_by']}; "
         f"{t['torch_threads']} torch threads). Model: `{model_dir}`."),
        "",
        (f"Held-out loss {t['heldout_loss']:.3f} nats/token (train sample {t['train_loss']:.3f}); "
         f"held-out split {split_check}."),
        "",
        "| source | held-out nats/token | bits/byte | train nats/token | tokens evaluated |",
        "| --- | --- | --- | --- | --- |",
    ]
    for source, values in t["heldout"].items():
        train = t["train"].get(source, {}).get("loss", float("nan"))
        lines.append(f"| {source} | {values['loss']:.3f} | {values['bits_per_byte']:.3f} | {train:.3f} | "
                     f"{values['tokens']} |")
    lines += ["", "## Probing: best layer and best single neuron per feature", "",
              ("F1 on the held-out probe split (split by document); `neuron` is the best 1-sparse probe over "
               "layers and methods."), ""]
    columns = ["collection", "feature", "best_layer", "f1_k1", "f1_k8", "f1_dense", "neuron_layer", "neuron",
               "neuron_sign", "neuron_method", "neuron_f1", "neuron_precision", "neuron_recall"]
    lines += _markdown(probe_table[[c for c in columns if c in probe_table]], fmt)
    n = analyses["neurons"]
    lines += ["", "## Language neurons on held-out text", "",
              ("`token AUROC`: the neuron's activation on each token separating its language's tokens from the "
               "other languages' (0.5 = chance; a context neuron in the paper's sense is near 1). "
               "`top-20 own`: share of the 20 max-activating held-out tokens that are in its language. "
               "`sign` is that of the 1-sparse probe's coefficient; for `-` the most negative tokens are used "
               "and the AUROC is that of minus the activation. "
               "Ablation: change in next-token loss (nats/token) on held-out text of its language vs the mean "
               "and max over the other sources (Python included)."), ""]
    lang = n[n["kind"] == "language"]
    cols = ["feature", "neuron", "sign", "token_auroc_vs_languages", "frac_top20_own", "top20_labels",
            "top20_tokens", "ablation_zero_own", "ablation_zero_own_se", "ablation_zero_others_mean",
            "ablation_zero_others_max", "ablation_mean_own", "ablation_mean_others_mean"]
    lines += _markdown(lang[[c for c in cols if c in lang]], fmt)
    py = n[n["kind"] == "python"]
    lines += ["", "## Python-code neurons on held-out standard-library files", "",
              ("`token AUROC`: the neuron separating the feature's positive tokens from all other labelled "
               "tokens of held-out files; `precision@20`: share of its 20 max-activating held-out Python tokens "
               "that are positives."), ""]
    cols = ["feature", "neuron", "sign", "token_auroc_heldout_python", "precision_top20_heldout_python",
            "top20_python_tokens", "frac_top20_python", "ablation_zero_own", "ablation_zero_own_se",
            "ablation_zero_others_mean", "ablation_mean_own", "ablation_mean_others_mean"]
    lines += _markdown(py[[c for c in cols if c in py]], fmt)
    lines += ["", "## Direct logit effects (W_U · (γ ⊙ w_out))", ""]
    lines += _markdown(analyses["logits"][["feature", "neuron", "variance", "skew", "kurtosis", "top_tokens",
                                           "bottom_tokens"]], fmt)
    combined = analyses["ablation"][analyses["ablation"]["feature"] == "all language neurons"]
    lines += ["", "## Zero-ablating all language neurons at once", ""]
    lines += _markdown(combined[["label", "n_tokens", "loss_clean", "loss_ablated", "delta", "delta_se"]], fmt)
    lines += ["", (f"Case study run time: {seconds / 60:.1f} min. Tables: `probe_summary.csv`, `neurons.csv`, "
                   "`logit_effects.csv`, `ablation.csv`, `top_activations_heldout_*.csv`; plots in `plots/`."), ""]
    (out / "summary.md").write_text("\n".join(lines))


def _markdown(frame: pd.DataFrame, fmt) -> list[str]:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return [header, rule, *body]


if __name__ == "__main__":
    main()
