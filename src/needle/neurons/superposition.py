"""Superposition checks: a compound word against its look-alikes, and the neuron basis against a rotation.

- :func:`compound_activation` (Figure 2.2b): neurons that together detect a
  compound word ("social security") fire, summed, on the compound's last
  token but not on look-alikes that share one half ("social media",
  "national security") — each neuron alone may fire on many things.
- :func:`rotation_comparison` (Figure A.8): if the neuron basis is
  privileged, single neurons classify a feature better than single
  directions of a randomly rotated basis of the same activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from needle.errors import InputError
from needle.models.base import ModelAdapter, normalize_site
from needle.neurons._common import NeuronLike, NeuronSet

__all__ = ["compound_activation", "rotation_comparison", "random_basis"]


def compound_activation(
    model: ModelAdapter,
    texts: Mapping[str, Sequence[str]],
    neurons: NeuronLike | Sequence[NeuronLike],
    *,
    weights: Sequence[float] | None = None,
    site: str = "post",
    add_special_tokens: bool = True,
) -> pd.DataFrame:
    """Summed activation of a set of neurons on the last token of texts, by class.

    Parameters
    ----------
    model : ModelAdapter
        Loaded with its tokenizer.
    texts : mapping of class name to sequence of str
        e.g. ``{"social security": [...], "social X": [...], "X security": [...]}``;
        each text ends with the word whose last token is read (a context may precede it).
    neurons : (layer, index) pairs or ids like ``"L3.N120"``
    weights : sequence of float, optional
        Weights of the sum (one per neuron, in the order given); default all 1.
    site : {"post", "pre"}, default "post"
    add_special_tokens : bool, default True
        Tokenize with the model's special tokens ([CLS]…[SEP] for BERT); the
        last non-special token is read either way.

    Returns
    -------
    DataFrame
        One row per (class, text): ``class, text, token`` (the token read),
        ``position``, ``activation`` (the weighted sum) and one column
        ``L{layer}.N{index}`` per neuron.
    """
    from needle.neurons.ids import format_neuron_id, parse_neurons

    if model.tokenizer is None:
        raise InputError(f"{model.model_id} was loaded without a tokenizer; compound_activation tokenizes texts.")
    site = normalize_site(site)
    given = parse_neurons(neurons)
    w = np.ones(len(given)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(given),):
        raise InputError(f"{w.size} weights for {len(given)} neurons.")
    nset = NeuronSet.build(model, given, site)
    weight_of = dict(zip(given, w))
    tokenizer = model.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    records = []
    for name, items in texts.items():
        if isinstance(items, str):
            raise InputError(f"texts[{name!r}] must be a list of strings, not one string.")
        for text in items:
            ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
            positions = [i for i, t in enumerate(ids) if t not in special]
            if not positions:
                raise InputError(f"text {text!r} has no tokens besides special ones.")
            last = positions[-1]
            input_ids = torch.tensor([ids])
            def at_last(layer: int, acts: torch.Tensor, last: int = last) -> torch.Tensor:
                return acts[0, last, nset.index[layer]].float().cpu()

            captured = model.capture(input_ids, torch.ones_like(input_ids), nset.layers, site, reduce=at_last)
            values = nset.concat(captured).numpy().astype(np.float64)
            row = {"class": name, "text": text, "token": tokenizer.decode([ids[last]]), "position": last,
                   "activation": float(sum(weight_of[n] * v for n, v in zip(nset.neurons, values)))}
            row.update({format_neuron_id(l, i): float(v) for (l, i), v in zip(nset.neurons, values)})
            records.append(row)
    if not records:
        raise InputError("no texts given.")
    return pd.DataFrame(records)


def random_basis(width: int, kind: str = "orthogonal", seed: int = 0) -> np.ndarray:
    """A random ``width × width`` change of basis: Haar orthogonal, or Gaussian as in the paper's Figure A.8."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((width, width)) / np.sqrt(width)
    if kind == "orthogonal":
        from needle.probing import random_orthonormal

        return random_orthonormal(width, width, seed)
    raise InputError(f"rotation must be 'orthogonal' or 'gaussian', not {kind!r}.")


def rotation_comparison(
    source,
    feature: str,
    layer: int,
    *,
    n_candidates: int = 100,
    n_report: int = 50,
    ks: Sequence[int] = (),
    n_rotations: int = 5,
    rotation: str = "orthogonal",
    test_size: float = 0.3,
    seed: int = 0,
) -> pd.DataFrame:
    """Single neurons versus single directions of randomly rotated activations (the paper's Figure A.8).

    For the neuron basis and for each of ``n_rotations`` random bases, the
    ``n_candidates`` dimensions with the largest class-mean difference on the
    training split each get a 1-sparse logistic probe; the test F1 of the best
    ``n_report`` is reported. With ``ks``, k-sparse probes (mean-difference
    selection) are fitted in each basis too. The train/test split is by group
    and the same for every basis.

    Parameters
    ----------
    source : ProbeSource (ActivationCache, ArraySource) or path-like of a cache
    feature : str
    layer : int
    n_candidates : int, default 100
    n_report : int, default 50
    ks : sequence of int, default ()
    n_rotations : int, default 5
    rotation : {"orthogonal", "gaussian"}, default "orthogonal"
        A Haar-random rotation, or the paper's Gaussian ``d × d`` matrix.
    test_size : float, default 0.3
    seed : int, default 0

    Returns
    -------
    DataFrame
        ``basis`` ("neuron" or "random"), ``rotation`` (-1 for the neuron
        basis, else the rotation's index), ``probe`` ("single" or "sparse"),
        ``k``, ``rank`` (single: 0 = best dimension; sparse: 0), ``dimensions``
        (list of int), ``f1``, ``precision``, ``recall``.
    """
    import os

    from needle.probing import SparseProbe, binary_metrics, group_train_test_split
    from needle.probing.scoring import mean_diff_score

    if isinstance(source, (str, os.PathLike)):
        from needle.activations import load_cache

        source = load_cache(source)
    rows, y = source.feature(feature)
    X = np.asarray(source.layer(layer)[rows], dtype=np.float64)
    groups = np.asarray(source.row_groups)[rows]
    is_test = group_train_test_split(groups, y, test_size=test_size, seed=seed, name=feature)
    bases = [("neuron", -1, None)] + [("random", r, random_basis(X.shape[1], rotation, seed + 1 + r))
                                      for r in range(int(n_rotations))]
    records = []
    for basis, index, Q in bases:
        Z = X if Q is None else X @ Q
        Z_train, Z_test, y_train, y_test = Z[~is_test], Z[is_test], y[~is_test], y[is_test]
        scores = mean_diff_score(Z_train, y_train)
        candidates = np.argsort(-scores, kind="stable")[: int(n_candidates)]
        singles = []
        for dim in candidates:
            probe = SparseProbe(k=1, selector="mean_diff").fit(Z_train[:, [dim]], y_train)
            m = binary_metrics(y_test, probe.decision_function(Z_test[:, [dim]]))
            singles.append((m["f1"], m["precision"], m["recall"], int(dim)))
        singles.sort(key=lambda t: (-t[0], t[3]))
        for rank, (f1, precision, recall, dim) in enumerate(singles[: int(n_report)]):
            records.append((basis, index, "single", 1, rank, [dim], f1, precision, recall))
        for k in ks:
            probe = SparseProbe(k=int(k), selector="mean_diff").fit(Z_train, y_train)
            m = binary_metrics(y_test, probe.decision_function(Z_test))
            dims = sorted(int(d) for d in probe.support_)
            records.append((basis, index, "sparse", int(k), 0, dims, m["f1"], m["precision"], m["recall"]))
    return pd.DataFrame(records, columns=["basis", "rotation", "probe", "k", "rank", "dimensions", "f1", "precision",
                                          "recall"])
