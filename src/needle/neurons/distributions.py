"""Activation distributions by class: how a neuron responds to a feature's positives and negatives.

The paper's Figures 2.2b and 2.3 (left) show, for a neuron found by a probe,
histograms of its pre- and post-nonlinearity activations on the examples
with and without the feature. The activations are read exactly as the
probes read them (a token, or a span reduced by mean/max), by running
:func:`needle.activations.extract` on the feature's examples.
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

__all__ = ["class_distributions", "cache_distributions", "DISTRIBUTION_COLUMNS"]

DISTRIBUTION_COLUMNS = ["layer", "neuron", "site", "feature", "example", "row", "sequence", "start", "end", "y",
                        "activation"]


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
