"""The ``dynamics`` collection: trajectory strings of a dynamical system (thesis §5.4).

``system="logistic"``: x_{t+1} = r x_t (1 - x_t), r drawn uniformly in
[``r_min``, ``r_max``] per trajectory. ``system="lorenz"``: the Lorenz system
(σ=10, ρ=28, β=8/3) integrated with RK4 at step ``dt``; only x is written.
Values are rounded to ``decimals`` and joined by ``", "``. The targets are read
at each separator token (the comma after value t): ``current`` (value t),
``next`` (value t+1, the last value has none) and, for Lorenz, the unseen ``y``
and ``z`` at step t. Each trajectory is its own group. ``split="time"`` puts the
first ``train_fraction`` of each trajectory's steps in train and the rest in
test; ``split="trajectory"`` leaves it to the group split (held-out trajectories).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.datasets.alignment import encode
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.format import ProbeDataset
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = ["build_dynamics", "logistic_trajectories", "lorenz_trajectories", "trajectory_text"]

BUILDER = "dynamics"
SYSTEMS = ("logistic", "lorenz")
SPLITS = ("time", "trajectory")


def logistic_trajectories(n: int, length: int, *, r_min: float = 3.5, r_max: float = 4.0, seed: int = 0):
    """Logistic-map trajectories, shape (n, length), and their r, shape (n,)."""
    rng = np.random.default_rng([seed, 5, 4])
    r = rng.uniform(r_min, r_max, n)
    x = np.empty((n, length))
    x[:, 0] = rng.uniform(0.05, 0.95, n)
    for t in range(1, length):
        x[:, t] = r * x[:, t - 1] * (1 - x[:, t - 1])
    return x, r


def _lorenz(s: np.ndarray) -> np.ndarray:
    x, y, z = s[..., 0], s[..., 1], s[..., 2]
    return np.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z], axis=-1)


def lorenz_trajectories(n: int, length: int, *, dt: float = 0.02, burn_in: int = 200, seed: int = 0):
    """Lorenz states, shape (n, length, 3), by RK4 at step ``dt`` after ``burn_in`` steps."""
    rng = np.random.default_rng([seed, 5, 4, 3])
    s = rng.normal(0.0, 8.0, (n, 3)) + np.array([0.0, 0.0, 25.0])
    out = np.empty((n, burn_in + length, 3))
    for t in range(burn_in + length):
        out[:, t] = s
        k1 = _lorenz(s)
        k2 = _lorenz(s + dt / 2 * k1)
        k3 = _lorenz(s + dt / 2 * k2)
        k4 = _lorenz(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out[:, burn_in:]


def trajectory_text(values: np.ndarray, decimals: int) -> tuple[str, list[int]]:
    """The string of rounded ``values`` and the character index of each separator."""
    parts = [f"{v:.{decimals}f}" for v in values]
    text, commas = "", []
    for i, p in enumerate(parts):
        text += p
        if i < len(parts) - 1:
            commas.append(len(text))
            text += ", "
    return text, commas


def build_dynamics(
    sources: Any = None,
    tokenizer: Any = "minilm",
    *,
    system: str = "logistic",
    n_trajectories: int = 200,
    length: int = 40,
    decimals: int = 2,
    split: str = "time",
    train_fraction: float = 0.7,
    seed: int = 0,
) -> ProbeDataset:
    """Build the ``dynamics`` collection (see the module docstring)."""
    if sources:
        raise InputError("dynamics: the trajectories are generated; pass no sources.")
    if system not in SYSTEMS:
        raise InputError(f"dynamics: system must be one of {SYSTEMS}, not {system!r}.")
    if split not in SPLITS:
        raise InputError(f"dynamics: split must be one of {SPLITS}, not {split!r}.")
    tokenizer = fast_tokenizer(tokenizer)
    if system == "logistic":
        x, _ = logistic_trajectories(n_trajectories, length, seed=seed)
        states = x[..., None]
    else:
        states = lorenz_trajectories(n_trajectories, length, seed=seed)
    params = {"sources": None, "system": system, "n_trajectories": n_trajectories, "length": length,
              "decimals": decimals, "split": split, "train_fraction": train_fraction, "seed": seed}  # fmt: skip
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    features = ["current", "next"] + (["y", "z"] if system == "lorenz" else [])
    for f in features:
        assembler.add_feature(f, description=f"{f} value of the {system} trajectory at the separator",
                              collection=f"dynamics:{system}", level="token", task="regression")
    cut = int(round(train_fraction * (length - 1)))
    for row in range(n_trajectories):
        text, commas = trajectory_text(states[row, :, 0], decimals)
        enc = encode(tokenizer, text)
        seq = assembler.add_sequence(enc.ids, group=f"trajectory:{row}", text=text)
        pos = np.array([np.flatnonzero(~enc.special & (enc.offsets[:, 0] <= c) & (enc.offsets[:, 1] > c))[0]
                        for c in commas], np.int32)
        t = np.arange(len(commas))
        tsplit = None if split == "trajectory" else np.where(t < cut, "train", "test")
        rounded = np.round(states[row, :, 0], decimals)
        labels = {"current": rounded[t], "next": rounded[t + 1]}
        if system == "lorenz":
            labels |= {"y": states[row, t, 1], "z": states[row, t, 2]}
        for f in features:
            assembler.add_examples(f, seq, pos, labels[f], split=tsplit)
    built = assembler.build(positive_ratio=None, seed=seed, min_positives=2)
    built.extra["dynamics"] = {"system": system, "cut": cut}
    return built
