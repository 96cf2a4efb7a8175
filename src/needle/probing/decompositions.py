"""NMF and PCA directions of a layer's activations as a basis: site transforms fitted on a corpus (problem 9.59).

The Neuroscope post suggests looking at directions found by a matrix
factorisation of a layer's activations rather than at its neurons, and
NMF in particular because its codes tend to be sparse. NMF needs
non-negative data; the post names two ways of making activations so:

``negatives="clip"``
    ``max(x, 0)``: the negative part is thrown away (GELU neurons go down to
    about −0.17, so little is lost there; a direction then reconstructs
    ``max(x, 0)``, not ``x``);
``negatives="split"``
    ``[max(x, 0), max(−x, 0)]``: twice the columns, nothing lost; a
    direction has a positive and a negative half, and its direction in the
    activation space is their difference.

:func:`fit_nmf` fits scikit-learn's :class:`~sklearn.decomposition.NMF`
(coordinate descent, NNDSVDa initialisation) on a layer's activations and
returns an :class:`NMFTransform`, which follows the site-transform contract
of :mod:`needle.models.sites` (``name``, ``params``, ``out_width``,
``__call__``), like an SAE's encoder: pass it as ``transform=`` to
:func:`needle.activations.extract` or :func:`needle.models.get_site`, and the
cache's columns are the NMF codes, its site id ``mlp.hook_post+nmf16-clip-…``.
The code of a position is the non-negative least-squares solution
``argmin_{w >= 0} ||x⁺ − w H||²`` for the fitted directions ``H``, solved in
torch by multiplicative updates (Lee and Seung, 2001) so that it runs on the
activations' device during extraction. :func:`fit_pca` returns the
principal-component projection (:meth:`needle.models.LinearMap.pca`).

The fitted transform records its relative reconstruction error on the rows
it was fitted on, ``||X⁺ − W H||_F / ||X⁺||_F``, in ``params`` — the error a
direction basis is stated with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError
from needle.models.sites import LinearMap

__all__ = ["NEGATIVES", "NMFTransform", "fit_nmf", "fit_pca", "layer_activations", "nonnegative"]

#: Ways of making activations non-negative for NMF.
NEGATIVES = ("clip", "split")


def nonnegative(x: Any, negatives: str) -> Any:
    """``max(x, 0)`` (``clip``) or ``[max(x, 0), max(−x, 0)]`` along the last axis (``split``); numpy or torch."""
    if negatives not in NEGATIVES:
        raise InputError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}.")
    if isinstance(x, torch.Tensor):
        return x.clamp(min=0) if negatives == "clip" else torch.cat([x.clamp(min=0), (-x).clamp(min=0)], -1)
    x = np.asarray(x)
    return np.maximum(x, 0) if negatives == "clip" else np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], -1)


class NMFTransform:
    """Non-negative codes of activations on fixed NMF directions: (…, width) → (…, n_components).

    Parameters
    ----------
    components : array-like of shape (n_components, width) or (n_components, 2 · width)
        The fitted directions ``H`` (``sklearn`` ``components_``), in the non-negative space.
    negatives : {"clip", "split"}
    n_iter : int, default 300
        Multiplicative updates per call.
    name : str, optional
        Default ``nmf{k}-{negatives}-{first 8 hex digits of H's SHA-256}``.
    extra : dict, optional
        Further JSON-serialisable parameters to record (the fit's error, the corpus).
    """

    def __init__(self, components: Any, *, negatives: str = "clip", n_iter: int = 300, name: str | None = None,
                 extra: dict[str, Any] | None = None):
        h = np.asarray(components, np.float32)
        if h.ndim != 2 or (h < 0).any():
            raise InputError("NMF components must be a non-negative 2-D array (n_components, width).")
        if negatives not in NEGATIVES:
            raise InputError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}.")
        if negatives == "split" and h.shape[1] % 2:
            raise InputError("split NMF components have an even number of columns (positive, then negative parts).")
        if n_iter < 1:
            raise InputError(f"n_iter must be at least 1, not {n_iter}.")
        self.components = torch.from_numpy(h)
        self.negatives = negatives
        self.n_iter = int(n_iter)
        self.width = h.shape[1] if negatives == "clip" else h.shape[1] // 2
        self.sha256 = hashlib.sha256(h.tobytes() + negatives.encode()).hexdigest()
        self.name = name or f"nmf{h.shape[0]}-{negatives}-{self.sha256[:8]}"
        self.params = {"kind": "nmf", "negatives": negatives, "in_width": int(self.width),
                       "out_width": int(h.shape[0]), "n_iter": self.n_iter, "sha256": self.sha256,
                       **dict(extra or {})}

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def directions(self) -> np.ndarray:
        """Each direction in the activation space, shape (n_components, width): ``H``, or ``H⁺ − H⁻`` for split."""
        h = self.components.numpy()
        return h if self.negatives == "clip" else h[:, : self.width] - h[:, self.width:]

    def out_width(self, width: int) -> int:
        if width != self.width:
            raise InputError(f"the transform {self.name} takes {self.width} columns but the site has {width}; "
                             "fit it on this site's activations.")
        return self.n_components

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        shape = acts.shape
        x = nonnegative(acts.float().reshape(-1, shape[-1]), self.negatives)
        h = self.components.to(x.device)
        gram = h @ h.T  # (k, k)
        xh = x @ h.T  # (n, k)
        # Start from the least-squares code, kept strictly positive (a multiplicative update cannot leave 0).
        w = (xh @ torch.linalg.pinv(gram)).clamp(min=0) + 1e-3 * xh.clamp(min=0).mean().clamp(min=1e-8)
        for _ in range(self.n_iter):
            w = w * xh / (w @ gram).clamp(min=1e-12)
        return w.reshape(*shape[:-1], self.n_components)

    def reconstruct(self, codes: torch.Tensor | np.ndarray) -> np.ndarray:
        """``codes @ H`` in the non-negative space, shape (…, width) or (…, 2 · width) for split."""
        return np.asarray(codes, np.float64) @ self.components.numpy().astype(np.float64)

    def __repr__(self) -> str:
        return f"NMFTransform({self.name!r})"


def _sample(matrix: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise InputError(f"fit a basis on a 2-D array of at least two rows, got shape {matrix.shape}.")
    if max_rows is not None and len(matrix) > max_rows:
        matrix = matrix[np.sort(np.random.default_rng(seed).permutation(len(matrix))[:max_rows])]
    return matrix


def fit_nmf(matrix: np.ndarray, n_components: int, *, negatives: str = "clip", max_rows: int | None = 20_000,
            max_iter: int = 400, seed: int = 0, n_iter: int = 300) -> NMFTransform:
    """NMF directions of a layer's activations.

    Parameters
    ----------
    matrix : ndarray of shape (n_tokens, width)
        Activations of one layer (:func:`layer_activations`).
    n_components : int
    negatives : {"clip", "split"}
    max_rows : int or None
        Rows (a seeded sample) to fit on.
    max_iter : int
        sklearn's iterations.
    seed : int
        The row sample's and sklearn's ``random_state``.
    n_iter : int
        The transform's multiplicative updates per call.

    Returns
    -------
    NMFTransform
        ``params["relative_error"]``: ``||X⁺ − W H||_F / ||X⁺||_F`` on the fitted rows.
    """
    from sklearn.decomposition import NMF

    x = nonnegative(_sample(matrix, max_rows, seed), negatives)
    if not 1 <= n_components <= min(x.shape):
        raise InputError(f"n_components must be between 1 and {min(x.shape)}, not {n_components}.")
    model = NMF(n_components=n_components, init="nndsvda", max_iter=max_iter, random_state=seed)
    w = model.fit_transform(x)
    norm = float(np.linalg.norm(x))
    error = float(np.linalg.norm(x - w @ model.components_) / norm) if norm > 0 else 0.0
    return NMFTransform(model.components_, negatives=negatives, n_iter=n_iter,
                        extra={"relative_error": round(error, 6), "fit_rows": int(len(x)),
                               "sklearn_iterations": int(model.n_iter_), "seed": int(seed)})


def fit_pca(matrix: np.ndarray, n_components: int, *, max_rows: int | None = 20_000, seed: int = 0) -> LinearMap:
    """The projection on a layer's first ``n_components`` principal components (a :class:`LinearMap`)."""
    from sklearn.decomposition import PCA

    x = _sample(matrix, max_rows, seed)
    if not 1 <= n_components <= min(x.shape):
        raise InputError(f"n_components must be between 1 and {min(x.shape)}, not {n_components}.")
    fitted = PCA(n_components=n_components, svd_solver="full").fit(x)
    return LinearMap.pca(fitted)


def layer_activations(model: Any, sequences: Sequence[np.ndarray], layer: int, *, site: str = "post",
                      skip_first: bool = True, batch_tokens: int = 8192) -> np.ndarray:
    """Every token's activations at one layer, shape (n_tokens, width), float32 (each sequence's BOS left out).

    Parameters
    ----------
    model : ModelAdapter
    sequences : sequence of ndarray of int
    layer : int
    site : str
    skip_first : bool
        Leave out each sequence's first position (the BOS token).
    batch_tokens : int
    """
    from needle.activations.stream import plan_batches, stream_batches

    sequences = [np.asarray(s, np.int64) for s in sequences if len(s)]
    if not sequences:
        raise InputError("no token sequences to read activations from; give some text.")
    lengths = np.array([len(s) for s in sequences])
    parts = []
    for batch in stream_batches(sequences, None, plan_batches(lengths, np.arange(len(sequences)), batch_tokens, 256),
                                pad_id=0):
        keep = batch.attention_mask.bool()
        if skip_first:
            keep[:, 0] = False
        values = model.capture(batch.input_ids, batch.attention_mask, [layer], site=site)[layer]
        parts.append(values[keep.to(values.device)].float().cpu().numpy())
    return np.concatenate(parts)
