"""The demo pipeline: the python-code collection on the standard library, probed in MiniLM.

It needs nothing from outside: the standard library's own sources are the
text, Python's ``tokenize``/``ast`` give exact labels, and MiniLM ships in a
Python package.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["run_demo", "run_causal_demo", "DEMO_METHODS", "GUIDE", "CAUSAL_GUIDE"]

DEMO_METHODS = ("mean_diff", "f_stat", "adaptive")

#: Printed at the end of the demo: what each output shows and where to look first.
GUIDE = """\
What you are looking at
  The table above: per feature of Python code (comments, strings, keywords, brackets, indentation, …), the layer
    where a probe reads it best, its test F1 from one neuron (k = 1), from 8, and from all of them (dense), and the
    single best neuron. k = 1 close to dense means one neuron carries the feature.
  report.html: test F1 against k per feature and layer (how sparsely each feature is stored), the methods side by
    side, and the baselines a reading must beat (random directions of the same size).
  site/: a page per feature (its best probes, the neurons they chose, the errors they make) and per neuron
    (how often it fires over the corpus, its top examples one per document, random examples from each
    activation band, its activation on the feature's positives against negatives, its per-token table).
  Start at site/index.html, open the feature with the largest F1 at k = 1, then its first neuron."""

#: Printed after GUIDE by the causal demo: what the causal model adds.
CAUSAL_GUIDE = """What the causal model adds
  toy-model/: a small GPT-NeoX (Pythia-architecture) model trained here on the standard library and UD text;
    training.json has its held-out loss. Its neurons write into next-token predictions, so each neuron page also
    shows the tokens its output promotes and suppresses (logit effects) and the corpus positions where it most
    helps or hurts the correct next token (direct logit attribution), beside its top activations.
  ablation.csv: the change in next-token loss when each probed neuron is set to zero, next to random neurons of
    the same layers; a chosen neuron whose delta sits inside the random ones' range matters no more than chance."""


def run_demo(
    out: str | Path = "demo-output",
    *,
    model: str = "minilm",
    max_files: int = 150,
    max_sequences_per_file: int = 4,
    max_positives: int = 1500,
    methods: Sequence[str] = DEMO_METHODS,
    ks: Sequence[int] | None = None,
    n_jobs: int = 2,
    site: bool = True,
    site_sequences: int = 48,
    site_max_k: int = 4,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Build, extract, probe, report and build the scope site; return the paths of what it wrote.

    Stages already complete in ``out`` (from an earlier run with the same
    settings) are reused; an interrupted extraction or sweep resumes.

    Parameters
    ----------
    out : path-like
        Directory for the dataset, cache, results and report.
    model : str
        Model to probe (alias, directory or hub id).
    max_files, max_sequences_per_file : int
        How much of the standard library to read.
    max_positives : int
        Positive examples kept per feature (negatives follow the 0.2 ratio);
        bounds the probing time.
    methods : sequence of str
        Selection methods of the sweep.
    ks : sequence of int, optional
        The k grid (default: the engine's, 1–8, 10, 12, 16, 32 … 256).
    n_jobs : int
        Worker processes of the sweep.
    site : bool, default True
        Also build the ``needle scope`` static site (``out/site``).
    site_sequences : int, default 48
        Dataset sequences the site's max-activating examples come from (bounds its corpus passes).
    site_max_k : int, default 4
        Neurons chosen by a probe with ``k <= site_max_k`` get a page.
    """
    from needle.activations import extract, load_cache
    from needle.datasets.format import load_dataset
    from needle.datasets.python_code import build_python_code
    from needle.models import load_model
    from needle.probing import DEFAULT_KS, summarize, sweep
    from needle.report import write_report

    out = Path(out)
    dataset_dir, cache_dir = out / "python-code", out / f"cache-{Path(model).name}"
    results_path, report_path, site_dir = out / "results.parquet", out / "report.html", out / "site"
    steps = 5 if site else 4
    started = time.perf_counter()
    adapter = load_model(model)

    if (dataset_dir / "manifest.json").is_file():
        dataset = load_dataset(dataset_dir)
        echo(f"[1/{steps}] reusing the python-code dataset in {dataset_dir}")
    else:
        echo(f"[1/{steps}] building the python-code collection ({max_files} standard-library files) …")
        context_length = min(512, adapter.max_positions or 512)
        dataset = build_python_code(None, adapter.tokenizer, context_length=context_length, max_files=max_files,
                                    max_sequences_per_file=max_sequences_per_file, max_positives=max_positives)
        dataset.save(dataset_dir)
    echo(f"      {dataset.n_sequences} sequences, {dataset.n_tokens} tokens, {len(dataset.features)} features, "
         f"{len(dataset.examples)} examples → {dataset_dir}")

    if (cache_dir / "manifest.json").is_file():
        cache = load_cache(cache_dir)
        echo(f"[2/{steps}] reusing the activation cache in {cache_dir}")
    else:
        echo(f"[2/{steps}] extracting {adapter.model_id} neuron activations (all {adapter.n_layers} layers) …")
        cache = extract(adapter, dataset_dir, cache_dir)
    echo(f"      {cache.n_rows} rows × {cache.width} neurons × {len(cache.layers)} layers → {cache_dir}")

    echo(f"[3/{steps}] sparse probing: {len(cache.feature_names)} features × {len(cache.layers)} layers × "
         f"{', '.join(methods)} (+ dense and random-direction baselines) …")
    results = sweep(cache, out=results_path, methods=list(methods), ks=list(ks or DEFAULT_KS), n_jobs=n_jobs)
    echo(f"      {len(results)} probes → {results_path}")

    if site:  # before the report, so that the report links into it
        echo(f"[4/{steps}] building the needle scope site (pages for neurons of probes with k <= {site_max_k}, "
             f"examples from {site_sequences} sequences) …")
        _build_site(results_path, cache, site_dir, adapter, site_sequences, site_max_k, echo)
    echo(f"[{steps}/{steps}] writing the report …")
    write_report(results_path, report_path, site=site_dir if site else None)
    summary = summarize(results)
    columns = ["feature", "best_layer", "f1_k1", "f1_k8", "f1_dense", "neuron_layer", "neuron", "neuron_precision",
               "neuron_recall"]
    echo("")
    echo(summary[[c for c in columns if c in summary]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    echo("")
    echo(f"report: {report_path.resolve()}")
    echo(f"        open it in a browser, e.g.  xdg-open {report_path}  (or python -m webbrowser {report_path})")
    paths = {"dataset": dataset_dir, "cache": cache_dir, "results": results_path, "report": report_path}
    if site:
        index = site_dir / "index.html"
        echo(f"site:   {index.resolve()}")
        echo(f"        open it from disk, e.g.  python -m webbrowser {index}")
        echo(f"viewer: needle scope serve --model {model} --site {site_dir}")
        echo("        then open http://127.0.0.1:8765/ and type text to see any neuron or probe fire")
        paths["site"] = site_dir
    echo("")
    echo(GUIDE)
    echo(f"done in {time.perf_counter() - started:.0f} s")
    return paths


def _build_site(results_path: Path, cache, site_dir: Path, adapter, sequences: int, max_k: int,
                echo: Callable[[str], None]) -> None:
    """Build the scope site, or keep the one already there when it was built from the same results and settings."""
    import json

    from needle.scope import SiteOptions, build_site

    stamp = {"results_bytes": results_path.stat().st_size, "results_mtime_ns": results_path.stat().st_mtime_ns,
             "max_sequences": sequences, "max_k_pages": max_k}
    manifest = site_dir / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("demo") == stamp:
        echo(f"      reusing the site in {site_dir}")
        return
    build_site(results_path, cache, site_dir, model=adapter, max_sequences=sequences,
               options=SiteOptions(max_k_pages=max_k), echo=lambda line: echo(f"      {line.strip()}"),
               extra_manifest={"demo": stamp})


def run_causal_demo(
    out: str | Path = "demo-causal-output",
    *,
    cpu_minutes: float = 6.0,
    toy_size=None,
    toy_settings=None,
    toy_corpus=None,
    ablate_neurons: int = 3,
    ablation_sequences: int = 64,
    echo: Callable[[str], None] = print,
    **demo_options,
) -> dict[str, Path]:
    """The demo on a causal model trained here, so the logit-effect, attribution and ablation outputs have content.

    Trains the toy model (:mod:`needle.toy`) into ``out/toy-model`` (reused when it is there), runs
    :func:`run_demo` on it, then ablates the best single neurons of the best-read features and, for comparison,
    as many random neurons of the same layers, writing ``out/ablation.csv``.

    Parameters
    ----------
    out : path-like
        Directory for everything the demo writes.
    cpu_minutes : float, default 6
        The toy model's optimisation budget in CPU minutes (all threads): about half that in wall time on two
        idle cores, the same model on a busy machine.
    toy_size : needle.toy.ToySize, optional
        Architecture (default: the toy's default, 4 layers × 512 neurons).
    toy_settings : needle.toy.TrainSettings, optional
        Optimisation settings (default: the toy's, bounded by ``cpu_minutes`` only).
    toy_corpus : needle.toy.ToyCorpus, optional
        Training text (default: the standard library, and UD treebanks from the shared data when present).
    ablate_neurons : int, default 3
        Features (best k = 1 F1 first) whose best single neuron is ablated.
    ablation_sequences : int, default 64
        Dataset sequences the ablation's losses are averaged over.
    **demo_options
        Passed to :func:`run_demo` (``max_files``, ``methods``, ``ks``, ``n_jobs``, …).
    """
    import numpy as np
    import pandas as pd

    from needle._io import atomic_file
    from needle.datasets.shared_data import shared_data_dir
    from needle.models import load_model
    from needle.neurons import Corpus, ablate
    from needle.probing import load_results, summarize
    from needle.toy import TrainSettings, gather_corpus, train_toy_model

    out = Path(out)
    started = time.perf_counter()
    toy_dir = out / "toy-model"
    if (toy_dir / "training.json").is_file():
        echo(f"[toy] reusing the toy model in {toy_dir}")
    else:
        settings = toy_settings or TrainSettings(max_minutes=None, max_cpu_minutes=cpu_minutes)
        if toy_corpus is None:
            ud = shared_data_dir() / "ud"
            toy_corpus = gather_corpus(python=None, ud=ud if ud.is_dir() else None)
        echo(f"[toy] training a toy causal model ({settings.max_cpu_minutes or '–'} CPU minutes, "
             f"{settings.steps or 'no'} step limit) on {len(toy_corpus.train)} text units …")
        trained = train_toy_model(toy_dir, toy_corpus, size=toy_size, settings=settings,
                                  echo=lambda line: echo(f"      {line}"))
        loss = trained.summary.get("heldout_loss")
        echo(f"      held-out loss {loss:.3f} nats/token → {toy_dir}" if loss is not None else f"      → {toy_dir}")
    paths = run_demo(out, model=str(toy_dir), echo=echo, **demo_options)

    summary = summarize(load_results(paths["results"])).dropna(subset=["neuron"])
    best = summary.sort_values("f1_k1", ascending=False).head(ablate_neurons)
    if best.empty:
        echo("no feature has a best single neuron; nothing to ablate")
        return paths
    adapter = load_model(str(toy_dir))
    corpus = Corpus.from_dataset(paths["dataset"], tokenizer=adapter.tokenizer)
    corpus = corpus.subset(range(min(ablation_sequences, len(corpus))))
    rng = np.random.default_rng(0)
    chosen = [(row.feature, int(row.neuron_layer), int(row.neuron)) for row in best.itertuples()]
    random = [("(random)", layer, int(rng.integers(adapter.n_neurons))) for _, layer, _ in chosen]
    echo(f"[ablation] zeroing {len(chosen)} probed and {len(random)} random neurons over {len(corpus)} sequences …")
    rows = []
    for feature, layer, index in chosen + random:
        table = ablate(adapter, corpus, [(layer, index)], mode="zero", by_label=False)
        rows.append(table.iloc[[-1]].assign(feature=feature))
    frame = pd.concat(rows, ignore_index=True)[["feature", "neurons", "n_sequences", "n_tokens", "loss_clean",
                                                "loss_ablated", "delta", "delta_se"]]
    with atomic_file(out / "ablation.csv", "w") as handle:
        frame.to_csv(handle, index=False)
    echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    echo(f"ablation: {(out / 'ablation.csv').resolve()}")
    echo("")
    echo(CAUSAL_GUIDE)
    echo(f"causal demo done in {time.perf_counter() - started:.0f} s")
    paths.update(model=toy_dir, ablation=out / "ablation.csv")
    return paths
