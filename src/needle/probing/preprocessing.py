"""Column statistics the probes share: standardisation, and the units a score ranks in.

(The prefilter, :func:`needle.probing.template.candidate_neurons`, is the
template's first step.)

- :func:`standardization` — training mean and standard deviation per column,
  constant columns guarded;
- :func:`normalize_columns` — the units a score-based selector ranks in
  (``raw``: the paper's; ``standardized``; ``mean_abs``: sae-probes').
"""

from __future__ import annotations

import numpy as np

from needle.errors import InputError

__all__ = ["NORMALIZATIONS", "standardization", "normalize_columns"]

#: Units a score-based selector may rank in (see :func:`normalize_columns`).
NORMALIZATIONS = ("raw", "standardized", "mean_abs")
#: Rows per block when statistics are accumulated over row blocks.
_BLOCK_ROWS = 4096


def standardization(X: np.ndarray, *, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation, with constant columns guarded.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
        Usually the training split only.
    eps : float, default 1e-6
        A column whose standard deviation is at most ``eps`` times its largest
        absolute value (or exactly 0) is treated as constant: its scale is set
        to 1, so after centring it is all zeros and its L2-penalised
        coefficient is exactly 0.

    Returns
    -------
    mean, scale : ndarray of shape (n_columns,), float64
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    n = X.shape[0]
    # Accumulated in float64 over blocks of rows: no float64 copy of a float16/float32 X.
    mean = X.sum(axis=0, dtype=np.float64) / n
    sum_sq = np.zeros(X.shape[1])
    magnitude = np.zeros(X.shape[1])
    for start in range(0, n, _BLOCK_ROWS):
        block = X[start : start + _BLOCK_ROWS]
        centred = block - mean
        sum_sq += np.einsum("ij,ij->j", centred, centred)
        np.maximum(magnitude, np.abs(block).max(axis=0), out=magnitude)
    scale = np.sqrt(sum_sq / n)
    constant = scale <= eps * np.maximum(magnitude, 1e-300)
    scale[constant] = 1.0
    return mean, scale


def normalize_columns(X: np.ndarray, normalization: str) -> np.ndarray:
    """``X`` in the units a score-based selector ranks in.

    - ``raw`` — the activations as they are (the paper's ranking);
    - ``standardized`` — each column divided by its standard deviation;
    - ``mean_abs`` — each column divided by its mean absolute value (sae-probes'
      normalisation before its mean-difference ranking).

    Centring is left out: the scores are differences or correlations, which
    a shift does not change. A constant (or all-zero) column keeps divisor 1.

    Parameters
    ----------
    X : ndarray of shape (n_examples, n_columns)
    normalization : {"raw", "standardized", "mean_abs"}

    Returns
    -------
    ndarray of shape (n_examples, n_columns)
        ``X`` itself for ``raw``, otherwise a float64 copy.
    """
    if normalization == "raw":
        return X
    if normalization == "standardized":
        divisor = standardization(X)[1]
    elif normalization == "mean_abs":
        divisor = np.abs(np.asarray(X)).mean(axis=0, dtype=np.float64)
        divisor[~(divisor > 0)] = 1.0
    else:
        raise InputError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}.")
    return np.asarray(X, dtype=np.float64) / divisor
