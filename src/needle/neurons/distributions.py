"""Activation distributions by class: how a neuron responds to a feature's positives and negatives.

The paper's Figures 2.2b and 2.3 (left) show, for a neuron found by a probe,
histograms of its pre- and post-nonlinearity activations on the examples
with and without the feature. The activations are read exactly as the
probes read them (a token, or a span reduced by mean/max), by running
:func:`needle.activations.extract` on the feature's examples.

:func:`top_by_distribution` answers the Neuroscope post's interpretability
illusion check (problem 9.58): a neuron's max-activating examples within
each source distribution of a corpus (Python code, each language), with
the best automatic explanation of each distribution's top examples and a
flag where the explanations do not carry over from one distribution to
another.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.models.base import ModelAdapter, normalize_site
from needle.neurons._common import NeuronLike
from needle.neurons.ids import format_neuron_id, parse_neurons

__all__ = ["class_distributions", "cache_distributions", "distribution_flags", "top_by_distribution",
           "DISTRIBUTION_COLUMNS",
           "ILLUSION_COLUMNS"]

DISTRIBUTION_COLUMNS = ["layer", "neuron", "site", "feature", "example", "row", "sequence", "start", "end", "y",
                        "activation"]
#: Columns of :func:`top_by_distribution`'s per-neuron flags.
ILLUSION_COLUMNS = ["layer", "neuron", "n_distributions", "explanations", "overall_test", "overall_coverage",
                    "carry_over", "min_cross_coverage", "differs", "overall_top_distribution", "overall_top_share"]


def class_distributions(
    model: ModelAdapter,
    dataset,
    feature: str,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    sites: Sequence[str] = ("pre", "post"),
    check_tokenizer: bool = True,
    batch_tokens: int = 8192,
) -> pd.DataFrame:
    """Activations of neurons on every example of a feature, at each site, with the class of the example.

    Parameters
    ----------
    model : ModelAdapter
    dataset : ProbeDataset or path-like
    feature : str
        A feature of the dataset.
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    sites : sequence of {"pre", "post"}, default ("pre", "post")
    check_tokenizer : bool, default True
        Refuse a dataset tokenized for another model.
    batch_tokens : int, default 8192

    Returns
    -------
    DataFrame
        Columns :data:`DISTRIBUTION_COLUMNS`, one row per (neuron, site,
        example); ``y`` is 1 for a positive example; ``row`` indexes the
        feature's examples as the activation cache stores them.
    """
    from needle.activations import extract
    from needle.datasets.format import ProbeDataset, load_dataset

    if not isinstance(dataset, ProbeDataset):
        dataset = load_dataset(dataset)
    only = dataclasses.replace(dataset, examples=dataset.feature_examples(feature))
    parsed = parse_neurons(neurons)
    layers = sorted({layer for layer, _ in parsed})
    sites = [normalize_site(s) for s in sites]
    if not sites or "resid" in sites:
        raise InputError("sites must be a non-empty list of 'pre' and 'post'.")
    with tempfile.TemporaryDirectory(prefix="needle-dist-") as tmp:
        caches = {}
        for site in dict.fromkeys(sites):
            caches[site] = extract(model, only, Path(tmp) / site, layers=layers, site=site, dtype="float32",
                                   batch_tokens=batch_tokens, check_tokenizer=check_tokenizer, progress=False)
        return cache_distributions(caches, feature, parsed)


def cache_distributions(caches: Mapping[str, object] | object, feature: str,
                        neurons: NeuronLike | Sequence[NeuronLike]) -> pd.DataFrame:
    """:func:`class_distributions` from activation caches already extracted (one per site).

    Parameters
    ----------
    caches : ActivationCache, path-like, or mapping of site to either
        A single cache contributes the site it was extracted at.
    feature : str
    neurons : (layer, index) pairs or ids like ``"L3.N120"``

    Returns
    -------
    DataFrame
        As :func:`class_distributions`.
    """
    from needle.activations import load_cache

    if not isinstance(caches, Mapping):
        caches = [caches]
    else:
        caches = list(caches.values())
    caches = [load_cache(c) if isinstance(c, (str, os.PathLike)) else c for c in caches]
    parsed = parse_neurons(neurons)
    frames = []
    for cache in caches:
        rows, y = cache.feature(feature)
        info = cache.rows
        # a transformed basis's id (site+transform) has no short name
        site = cache.site if "+" in cache.site else normalize_site(cache.site)
        for layer, index in parsed:
            if not 0 <= index < cache.width:
                raise InputError(f"neuron {format_neuron_id(layer, index)} does not exist; the cache has {cache.width} per layer.")
            values = np.asarray(cache.layer(layer)[rows, index], dtype=np.float64)
            frames.append(pd.DataFrame({
                "layer": layer, "neuron": index, "site": site, "feature": feature,
                "example": np.arange(len(rows)), "row": rows, "sequence": info["sequence"][rows],
                "start": info["start"][rows], "end": info["end"][rows], "y": y.astype(np.int8),
                "activation": values,
            }))
    return pd.concat(frames, ignore_index=True)[DISTRIBUTION_COLUMNS]


def top_by_distribution(
    model: ModelAdapter,
    corpus,
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    n_top: int = 10,
    site: str = "post",
    context: tuple[int, int] = (16, 4),
    share: float = 0.5,
    max_base_rate: float = 0.25,
    min_examples: int = 3,
    min_relative: float = 0.5,
    n_unigrams: int = 200,
    batch_tokens: int = 8192,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Max-activating examples per source distribution, and whether their explanations agree (problem 9.58).

    Parameters
    ----------
    model : ModelAdapter
    corpus : Corpus
        With ``labels``: each sequence's source distribution (``python``, ``en``…;
        :func:`needle.neurons.monosemanticity.sequences_corpus` builds one from packed blocks).
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    n_top : int
        Examples per neuron and distribution (one per corpus group).
    site : str
    context : (int, int)
        Tokens shown before and after each example.
    share : float
        A distribution's explanation is the selective test covering most of its top examples; it
        *carries over* to another distribution when it covers at least ``share`` of that one's.
    max_base_rate : float
        Tests true on more than this share of all tokens are not explanations; ``context:`` tests
        (the distribution itself) never are.
    min_examples : int
        Distributions with fewer top examples for a neuron are left out of its comparison.
    min_relative : float
        So are distributions where its top activation is below ``min_relative`` × its corpus-wide maximum.
    n_unigrams : int
        Unigram tests, as in :func:`needle.universal.explain.explain_neurons`.
    batch_tokens : int

    Returns
    -------
    examples : DataFrame
        :data:`needle.neurons.top.TOP_COLUMNS` plus ``distribution``; ``kind`` is ``"top"`` for the
        per-distribution lists and ``"overall"`` for the corpus-wide top (the list a page shows first);
        ``sequence`` indexes ``corpus``.
    flags : DataFrame
        Columns :data:`ILLUSION_COLUMNS`, one row per neuron (:func:`distribution_flags`):
        ``explanations`` maps each distribution to ``(test, coverage)``; ``differs`` marks a neuron
        whose corpus-wide top looks explained by one test that fails on most distributions' own top
        lists; ``overall_top_distribution`` / ``overall_top_share``: the distribution most present in the
        corpus-wide top and its share there (near 1: the usual max-activating page shows one
        distribution only).
    """
    from needle.neurons.top import top_activations

    if corpus.labels is None:
        raise InputError("top_by_distribution needs a corpus with labels (each sequence's source); "
                         "build it with sequences_corpus or Corpus(..., labels=...).")
    if n_top < 1 or min_examples < 1:
        raise InputError(f"n_top and min_examples must be at least 1, got {n_top} and {min_examples}.")
    labels = np.asarray(corpus.labels, dtype=object)
    names = sorted({str(v) for v in labels if v is not None})
    if len(names) < 2:
        raise InputError(f"the corpus has {len(names)} distribution(s); per-distribution examples need two or more.")
    parsed = parse_neurons(neurons)
    frames = []
    overall = top_activations(model, corpus, parsed, site=site, n_top=n_top, n_bottom=0, bands=(), context=context,
                              batch_tokens=batch_tokens)
    overall = overall[overall["kind"] == "top"].assign(kind="overall", distribution=lambda f: f["label"])
    frames.append(overall)
    for name in names:
        index = np.flatnonzero(labels == name)
        part = top_activations(model, corpus.subset(index), parsed, site=site, n_top=n_top, n_bottom=0, bands=(),
                               context=context, batch_tokens=batch_tokens)
        part = part[part["kind"] == "top"].copy()
        part["sequence"] = index[part["sequence"].to_numpy(int)]
        part["distribution"] = name
        frames.append(part)
    examples = pd.concat(frames, ignore_index=True)
    return examples, distribution_flags(examples, corpus, parsed, share=share, max_base_rate=max_base_rate,
                                        min_examples=min_examples, min_relative=min_relative, n_unigrams=n_unigrams)


def distribution_flags(examples: pd.DataFrame, corpus, neurons: NeuronLike | Sequence[NeuronLike], *,
                       share: float = 0.5, max_base_rate: float = 0.25, min_examples: int = 3,
                       min_relative: float = 0.5, n_unigrams: int = 200) -> pd.DataFrame:
    """The per-neuron flags of :func:`top_by_distribution`, from its ``examples`` table (see there).

    A neuron *looks* explained when the selective test covering most of its corpus-wide top list
    (``overall_test``) covers at least ``share`` of it; ``carry_over`` is the share of distributions
    whose own top lists that test also covers at least ``share`` of. ``differs`` (the illusion) is
    a neuron that looks explained while its explanation carries over to fewer than half of the
    distributions. ``min_cross_coverage`` is the least coverage of one distribution's own
    explanation on another's list (with ten distributions it is almost always low: a strict view).
    Only distributions where the neuron fires count: those whose top activation reaches
    ``min_relative`` times the corpus-wide maximum (a distribution's top list where the neuron
    barely moves says nothing about what it does).
    """
    from needle.neurons.monosemanticity import (
        _base_rates,
        best_covering_test,
        explanation_tests,
        top_example_labels,
    )

    labels = np.asarray(corpus.labels, dtype=object)
    names = sorted({str(v) for v in labels if v is not None})
    tests = explanation_tests(corpus.tokenizer, corpus.tokens, [str(v) for v in labels], n_unigrams=n_unigrams)
    base = _base_rates(tests, corpus.tokens, [str(v) for v in labels])
    selective = (base <= max_base_rate) & ~np.array([t.startswith("context:") for t in tests.names])
    all_labels = top_example_labels(examples, corpus, tests)
    # Columns read once: pandas string columns are slow to convert, and there may be thousands of neurons.
    kind = examples["kind"].to_numpy(dtype=object)
    where = examples["distribution"].to_numpy(dtype=object)
    value = examples["activation"].to_numpy(float)
    rows_of: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(examples["layer"].to_numpy(int), examples["neuron"].to_numpy(int))):
        rows_of.setdefault((int(key[0]), int(key[1])), []).append(i)
    rows = []
    for layer, index in parse_neurons(neurons):
        mine = np.asarray(rows_of.get((layer, index), []), np.int64)
        peak = value[mine].max() if len(mine) else 0.0
        per: dict[str, np.ndarray] = {}
        for name in names:
            chosen = mine[(kind[mine] == "top") & (where[mine] == name)]
            if len(chosen) >= min_examples and value[chosen].max() >= min_relative * peak:
                per[name] = all_labels[chosen]
        explanations = {}
        for name, lab in per.items():
            j, covered = best_covering_test(lab, selective)
            explanations[name] = (tests.names[j] if j >= 0 else "", round(covered, 3), j)
        cross = [float(per[e][:, j].mean()) for d, (_, c, j) in explanations.items() for e in per
                 if e != d and j >= 0]
        low = min(cross) if cross else float("nan")
        overall_rows = mine[kind[mine] == "overall"]
        j, overall_coverage = best_covering_test(all_labels[overall_rows], selective)
        carry = (float(np.mean([per[e][:, j].mean() >= share for e in per])) if j >= 0 and per
                 else float("nan"))
        counts = pd.Series(where[overall_rows]).value_counts()
        rows.append({"layer": layer, "neuron": index, "n_distributions": len(per),
                     "explanations": {d: (t, c) for d, (t, c, _) in explanations.items()},
                     "overall_test": tests.names[j] if j >= 0 else "", "overall_coverage": overall_coverage,
                     "carry_over": carry, "min_cross_coverage": low,
                     "differs": bool(overall_coverage >= share and not carry >= 0.5),
                     "overall_top_distribution": str(counts.index[0]) if len(counts) else "",
                     "overall_top_share": float(counts.iloc[0] / counts.sum()) if len(counts) else float("nan")})
    return pd.DataFrame(rows, columns=ILLUSION_COLUMNS)
