"""Dynamics read out of a language model (thesis §5.4): probes at the separators, then SINDy on their predictions."""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.probing.layer_probes import RidgeProbe

__all__ = ["separator_states", "probe_layers", "logistic_map_fit"]


def separator_states(model: Any, dataset: Any, feature: str = "current") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hidden states at ``feature``'s examples, shape (n_layers + 1, n, d), with labels (n,) and splits (n,)."""
    import torch

    f = [x["name"] for x in dataset.features].index(feature)
    keep = np.flatnonzero(dataset.examples.feature == f)
    seq, pos = dataset.examples.sequence[keep], dataset.examples.start[keep]
    out = None
    model.eval()
    with torch.no_grad():
        for s in np.unique(seq):
            ids = torch.as_tensor(dataset.tokens[s][None].astype(np.int64))
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
            at = np.flatnonzero(seq == s)
            layer = np.stack([h[0, pos[at]].float().numpy() for h in hs])
            if out is None:
                out = np.zeros((len(hs), len(keep), layer.shape[-1]), np.float32)
            out[:, at] = layer
    return out, dataset.examples.label[keep], dataset.examples.split[keep]


def probe_layers(states: np.ndarray, y: np.ndarray, split: np.ndarray) -> list[dict[str, Any]]:
    """Ridge probe per layer on the train split; test R², MSE, MAE and the test predictions."""
    rows = []
    train, test = split == 0, split == 1
    for layer, X in enumerate(states):
        if np.ptp(X[train], axis=0).max() == 0:  # the embeddings at one separator token: nothing to read
            rows.append({"layer": layer, "r2": np.nan, "mse": np.nan, "mae": np.nan, "n_test": int(test.sum()),
                         "prediction": np.full(int(test.sum()), np.nan)})
            continue
        fit = RidgeProbe().fit_layer(X[train].astype(np.float64), y[train], [X.shape[1]])[0]
        pred = fit.predict(X[test].astype(np.float64))
        err = pred - y[test]
        rows.append({"layer": layer, "r2": 1 - np.sum(err**2) / np.sum((y[test] - y[test].mean()) ** 2),
                     "mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))), "n_test": int(test.sum()),
                     "prediction": pred})  # fmt: skip
    return rows


def logistic_map_fit(x_t: np.ndarray, x_next: np.ndarray, k: int = 2) -> np.ndarray:
    """Best k-sparse x_{t+1} = ξ·[1, x, x², x³] by exhaustive least squares; returns ξ (4,)."""
    from itertools import combinations

    theta = np.stack([np.ones_like(x_t), x_t, x_t**2, x_t**3], axis=1)
    best, xi = np.inf, np.zeros(4)
    for support in combinations(range(4), k):
        c, *_ = np.linalg.lstsq(theta[:, support], x_next, rcond=None)
        r = np.sum((theta[:, support] @ c - x_next) ** 2)
        if r < best:
            best, xi = r, np.zeros(4)
            xi[list(support)] = c
    return xi
