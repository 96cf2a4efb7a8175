"""Position neurons (thesis §3.4.3): mutual information between a neuron's activation and the absolute position.

The thesis follows Voita et al. (2023): a position neuron's activation is a
function of where the token sits in the context, whatever the token. For
each neuron, :class:`PositionInformation` streams the joint histogram of
(activation bin, position) — the activation cut into ``n_bins``
equal-frequency bins whose edges are the first batch's quantiles, the
position exact — and returns

* ``mutual_information`` in bits, less the Miller–Madow bias
  ``(B − 1)(P − 1) / (2 n ln 2)`` of a plug-in estimate from ``n`` tokens;
* ``score`` = that over the activation's binned entropy: the fraction of
  the activation's (binned) information that position accounts for, in
  [0, 1], so it ranks next to the variance-reduction tests.
"""

from __future__ import annotations

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["PositionInformation", "mutual_information"]


def mutual_information(joint: np.ndarray) -> np.ndarray:
    """Plug-in mutual information in bits of joint count tables ``joint`` (p, B, P); returns (p,)."""
    joint = np.asarray(joint, np.float64)
    n = joint.sum((1, 2), keepdims=True)
    pxy = joint / np.where(n > 0, n, 1)
    px = pxy.sum(2, keepdims=True)
    py = pxy.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pxy > 0, pxy * np.log2(pxy / (px * py)), 0.0)
    return terms.sum((1, 2))


class PositionInformation:
    """Streamed joint histograms of activation bin and absolute position for ``p`` neurons.

    Parameters
    ----------
    p : int
        Neurons.
    n_positions : int
        Positions ``0 … n_positions − 1`` (the context length).
    n_bins : int
        Equal-frequency activation bins (edges from the first batch).
    """

    def __init__(self, p: int, n_positions: int, n_bins: int = 10) -> None:
        if n_bins < 2 or n_positions < 2:
            raise InputError(f"position information needs at least 2 bins and 2 positions, got {n_bins} and "
                             f"{n_positions}.")
        self.p, self.n_positions, self.n_bins = p, n_positions, n_bins
        self.edges: torch.Tensor | None = None  # (p, n_bins - 1)
        self.joint = torch.zeros(p * n_bins * n_positions, dtype=torch.float64)

    def update(self, values: torch.Tensor, positions: torch.Tensor) -> None:
        """``values`` (n, p) activations, ``positions`` (n,) integer positions."""
        values = values.float().cpu()
        positions = positions.long().cpu()
        if len(values) == 0:
            return
        if positions.min() < 0 or positions.max() >= self.n_positions:
            raise InputError(f"positions must lie in 0..{self.n_positions - 1}; got up to {int(positions.max())}.")
        if self.edges is None:
            q = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)[1:-1]
            self.edges = torch.quantile(values.double(), q, dim=0).T.float().contiguous()  # (p, B-1)
        # bucketize row by row: the edges differ per neuron.
        bins = torch.searchsorted(self.edges, values.T.contiguous(), right=True)  # (p, n)
        neuron = torch.arange(self.p)[:, None]
        flat = (neuron * self.n_bins + bins) * self.n_positions + positions[None, :]
        self.joint += torch.bincount(flat.reshape(-1), minlength=self.joint.numel()).double()

    def tables(self) -> np.ndarray:
        """The joint counts, shape (p, n_bins, n_positions)."""
        return self.joint.reshape(self.p, self.n_bins, self.n_positions).numpy()

    def result(self) -> dict[str, np.ndarray]:
        """``mutual_information`` (bits, bias-corrected, ≥ 0), ``entropy`` of the binned activation (bits) and
        ``score`` = their ratio (0 for a constant neuron); each of shape (p,)."""
        joint = self.tables()
        n = joint.sum((1, 2))
        if n.min() < 2:
            raise InputError("position information needs at least two tokens.")
        px = joint.sum(2) / n[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(px > 0, px * np.log2(px), 0.0).sum(1)
        used_bins = (joint.sum(2) > 0).sum(1)
        used_positions = (joint.sum(1) > 0).sum(1)
        bias = (used_bins - 1) * (used_positions - 1) / (2 * n * np.log(2))
        mi = np.clip(mutual_information(joint) - bias, 0, None)
        score = np.where(entropy > 1e-12, mi / np.where(entropy > 1e-12, entropy, 1), 0.0)
        return {"mutual_information": mi, "entropy": entropy, "score": np.clip(score, 0, 1)}
