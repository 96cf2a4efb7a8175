"""Named probing settings of other benchmarks, so that needle's numbers can be set beside theirs.

``saebench`` is SAEBench's sparse-probing evaluation (Karvonen et al. 2025): per binary
feature, 4,000 training and 1,000 test examples, the top k ∈ {1, 2, 5} columns by mean
difference of the training activations, then a logistic regression on those k. Here the
split is needle's group split with SAEBench's 1 : 4 test share (or the source's own split),
and each side is then cut to a seeded, class-stratified sample of at most 4,000 (train) and
1,000 (test) examples; a sample of a side keeps every group on that side. Features with
fewer examples keep all of theirs (the row's ``n_train`` and ``n_test`` say how many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from needle.errors import InputError
from needle.probing.source import ProbeSource, feature_split, feature_task
from needle.probing.splits import derive_seed, group_train_test_split, user_split

__all__ = ["PRESETS", "Preset", "CappedSplitSource", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A probing setting: the sweep's methods, k grid, baselines, test share and per-side caps."""

    name: str
    methods: tuple[str, ...]
    ks: tuple[int, ...]
    baselines: bool
    test_size: float
    n_train: int | None
    n_test: int | None
    description: str

    def source(self, source: ProbeSource, *, seed: int = 0) -> ProbeSource:
        """``source`` with this preset's split and caps (itself when the preset caps nothing)."""
        if self.n_train is None and self.n_test is None:
            return source
        return CappedSplitSource(source, n_train=self.n_train, n_test=self.n_test, test_size=self.test_size, seed=seed)


PRESETS = {
    "saebench": Preset("saebench", ("mean_diff",), (1, 2, 5), False, 0.2, 4000, 1000,
                       "SAEBench sparse probing: train 4,000 / test 1,000, mean-difference top-k, k in {1, 2, 5}"),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; the error lists them."""
    try:
        return PRESETS[str(name).strip().lower()]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}.") from None


class CappedSplitSource:
    """A :class:`~needle.probing.source.ProbeSource` whose features come with a split and at most n_train / n_test examples.

    Parameters
    ----------
    source : ProbeSource
    n_train, n_test : int or None
        Most examples per side (None: all).
    test_size : float
        Test share of the group split drawn where ``source`` gives none.
    seed : int
        Seeds the split (as the sweep seeds its own) and the samples.
    """

    def __init__(self, source: ProbeSource, *, n_train: int | None, n_test: int | None, test_size: float, seed: int = 0):
        for name, value in (("n_train", n_train), ("n_test", n_test)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2):
                raise InputError(f"{name} must be an integer >= 2 or None, not {value!r}.")
        self._source, self.n_train, self.n_test = source, n_train, n_test
        self.test_size, self.seed = float(test_size), int(seed)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.layers, self.feature_names = source.layers, source.feature_names
        self.row_groups, self.manifest = source.row_groups, source.manifest

    def layer(self, layer: int) -> np.ndarray:
        return self._source.layer(layer)

    def feature_info(self, name: str) -> dict[str, Any]:
        return self._source.feature_info(name)

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows, y, _ = self._capped(name)
        return rows, y

    def feature_split(self, name: str) -> np.ndarray:
        return self._capped(name)[2]

    def _capped(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if name not in self._cache:
            rows, y = self._source.feature(name)
            rows, y = np.asarray(rows, np.int64), np.asarray(y)
            task = feature_task(self._source, name)
            groups = np.asarray(self._source.row_groups)[rows]
            given = feature_split(self._source, name)
            if given is not None:
                is_test = user_split(groups, y, given, task=task, name=name)
            else:
                is_test = group_train_test_split(groups, y, test_size=self.test_size, task=task, name=name,
                                                 seed=derive_seed(self.seed, "split", name))
            rng = np.random.default_rng(derive_seed(self.seed, "cap", name))
            keep = np.sort(np.concatenate([
                _stratified_sample(np.flatnonzero(~is_test), y, self.n_train, task, rng),
                _stratified_sample(np.flatnonzero(is_test), y, self.n_test, task, rng)]))
            self._cache[name] = (rows[keep], y[keep], is_test[keep])
        return self._cache[name]


def _stratified_sample(index: np.ndarray, y: np.ndarray, cap: int | None, task: str, rng) -> np.ndarray:
    """At most ``cap`` of ``index``, each class in proportion (largest remainders); all when fewer."""
    if cap is None or len(index) <= cap:
        return index
    if task == "regression":
        return rng.choice(index, cap, replace=False)
    classes, counts = np.unique(y[index], return_counts=True)
    quota = counts * cap / len(index)
    take = np.floor(quota).astype(int)
    # The largest remainders get the examples floor() left over, ties by class order.
    for i in np.argsort(-(quota - take), kind="stable")[: cap - int(take.sum())]:
        take[i] += 1
    return np.concatenate([rng.choice(index[y[index] == c], t, replace=False) for c, t in zip(classes, take)])
