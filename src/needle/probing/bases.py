"""Other bases of a source's activations: PCA directions and random rotations, without re-extracting.

The residual stream's standard basis is a site (``needle extract --site
hook_resid_post``); SAE latents are a transform at extraction
(:mod:`needle.sae`). :class:`TransformedSource` maps an existing source's
layers through a per-layer :class:`~needle.models.sites.Transform` (a
:class:`~needle.models.sites.LinearMap`) on read, so the sweep compares bases on
exactly the same rows, labels and splits. :func:`pca_basis` fits each layer's
principal components on (a seeded sample of) its rows — unsupervised, so no
label reaches the test side — and :func:`rotated_basis` applies one fixed
random rotation per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from needle.errors import InputError
from needle.models.sites import LinearMap, Transform
from needle.probing.source import ProbeSource, feature_split

__all__ = ["TransformedSource", "pca_basis", "rotated_basis"]


class TransformedSource:
    """``source`` with each layer read through ``transforms[layer]`` (float32, computed once per layer).

    The manifest's ``site`` gets ``+<basis>`` (``basis`` names the family of transforms, e.g. ``pca``) so
    results in this basis have their own key.
    """

    def __init__(self, source: ProbeSource, transforms: Mapping[int, Transform], *, basis: str):
        missing = sorted(set(source.layers) - set(transforms))
        if missing:
            raise InputError(f"no transform for layers {missing}.")
        self.source = source
        self.transforms = dict(transforms)
        self.manifest = {**source.manifest, "site": f"{source.manifest['site']}+{basis}",
                         "basis": {layer: t.params for layer, t in self.transforms.items()}}
        self._read: dict[int, np.ndarray] = {}

    layers = property(lambda self: self.source.layers)
    feature_names = property(lambda self: self.source.feature_names)
    row_groups = property(lambda self: self.source.row_groups)

    def layer(self, layer: int) -> np.ndarray:
        if layer not in self._read:
            raw = np.asarray(self.source.layer(layer), np.float32)
            transform = self.transforms[layer]
            transform.out_width(raw.shape[1])
            with torch.inference_mode():
                self._read[layer] = np.concatenate([transform(torch.tensor(raw[a:a + 65536])).numpy()
                                                    for a in range(0, len(raw), 65536)]).astype(np.float32)
        return self._read[layer]

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.source.feature(name)

    def feature_info(self, name: str) -> dict[str, Any]:
        return self.source.feature_info(name)

    def feature_split(self, name: str) -> np.ndarray | None:
        return feature_split(self.source, name)


def _per_layer(source: ProbeSource, make: Callable[[int, np.ndarray], Transform], basis: str) -> TransformedSource:
    return TransformedSource(source, {layer: make(layer, np.asarray(source.layer(layer))) for layer in source.layers},
                             basis=basis)


def pca_basis(source: ProbeSource, *, n_components: int | None = None, max_rows: int = 20_000,
              seed: int = 0) -> TransformedSource:
    """Each layer projected on its principal components (all of them by default), in decreasing variance.

    Parameters
    ----------
    n_components : int, optional
        Components kept per layer (default: the layer's width, or the rows sampled if fewer).
    max_rows : int, default 20000
        Rows (a seeded sample) the components are fitted on.
    """
    from sklearn.decomposition import PCA

    def make(layer: int, matrix: np.ndarray) -> Transform:
        rows = np.random.default_rng(seed).permutation(len(matrix))[:max_rows]
        fitted = PCA(n_components=min(n_components or matrix.shape[1], len(rows), matrix.shape[1]),
                     svd_solver="full").fit(np.asarray(matrix[np.sort(rows)], np.float64))
        return LinearMap.pca(fitted)

    return _per_layer(source, make, "pca")


def rotated_basis(source: ProbeSource, *, seed: int = 0) -> TransformedSource:
    """Each layer in a fixed random orthonormal basis (one seeded rotation per layer)."""
    return _per_layer(source, lambda layer, matrix: LinearMap.rotation(matrix.shape[1], seed=seed + layer), "rot")
