"""Control tasks (Hewitt & Liang 2019) and selectivity, for any basis.

A control task keeps everything about a feature but the link between
activations and labels: :class:`LabelShuffleControl` permutes each feature's
labels *within groups* (documents, files), so every group keeps its number of
positives, the train/test split is the very one the real feature gets, and a
probe can only do well by memorising. The same sweep on the control gives
control F1; **selectivity** is F1 − control F1 per (feature, layer, method, k)
(:func:`selectivity`). :func:`control_sweep` runs both and joins them.

The hook into the sweep is the :class:`~needle.probing.ProbeSource` protocol
itself: a control is a source whose ``feature`` returns permuted labels and
whose ``feature_split`` returns the real feature's split; its manifest's
``dataset_hash`` carries a ``+shuffle{seed}`` suffix, so its results never mix
with the real ones in one table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.probing.source import ProbeSource, feature_split, feature_task
from needle.probing.splits import derive_seed, group_train_test_split

__all__ = ["LabelShuffleControl", "permute_within_groups", "selectivity", "control_sweep"]


def _can_permute(y: np.ndarray, groups: np.ndarray) -> bool:
    """Whether some group holds two different labels (else every within-group permutation is the identity)."""
    frame = pd.DataFrame({"g": np.asarray(groups).astype(str), "y": y})
    return bool((frame.groupby("g")["y"].nunique() > 1).any())


def permute_within_groups(y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """``y`` with its entries permuted uniformly at random inside each group (shape and dtype kept)."""
    y = np.asarray(y)
    groups = np.asarray(groups).astype(str)
    if y.shape != groups.shape:
        raise InputError(f"y has shape {y.shape} but groups {groups.shape}.")
    rng = np.random.default_rng(seed)
    out = y.copy()
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        members = order[a:b]
        out[members] = y[members[rng.permutation(b - a)]]
    return out


class LabelShuffleControl:
    """A :class:`ProbeSource` with each feature's labels permuted within groups.

    Parameters
    ----------
    source : ProbeSource
    seed : int, default 0
        Seeds the permutations (one per feature, derived from the name).
    within : {"groups", "all"}, default "groups"
        Permute inside each group (documents keep their label counts), or across
        all of a feature's examples: the control for datasets whose every
        example is its own group (sae-probes' prompts), where a within-group
        permutation is the identity.
    split_seed, test_size : int, float
        The sweep's ``seed`` and ``test_size``: the control's split is the one
        the sweep draws for the real feature with these.
    """

    def __init__(self, source: ProbeSource, *, seed: int = 0, split_seed: int = 0, test_size: float = 0.3,
                 within: str = "groups"):
        if within not in ("groups", "all"):
            raise InputError(f"within must be 'groups' or 'all', not {within!r}.")
        self.source = source
        self.within = within
        self.seed = int(seed)
        self.split_seed = int(split_seed)
        self.test_size = float(test_size)
        self.manifest = {**source.manifest, "dataset_hash": f"{source.manifest['dataset_hash']}+shuffle{self.seed}",
                         "control": {"kind": f"label_shuffle_within_{within}", "seed": self.seed}}
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def layers(self) -> list[int]:
        return self.source.layers

    @property
    def feature_names(self) -> list[str]:
        return self.source.feature_names

    @property
    def row_groups(self) -> np.ndarray:
        return self.source.row_groups

    def layer(self, layer: int) -> np.ndarray:
        return self.source.layer(layer)

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._cache:
            rows, y = self.source.feature(name)
            rows = np.asarray(rows, np.int64)
            groups = np.asarray(self.source.row_groups)[rows]
            if self.within == "all":
                groups = np.zeros(len(rows), np.int64)
            if not _can_permute(np.asarray(y), groups):
                raise InputError(f"feature {name!r}: no group holds two examples with different labels, so "
                                 "permuting labels within groups changes nothing and its control would equal the "
                                 "probe; pass within='all' (--control-within all) to permute across groups.")
            self._cache[name] = (rows, permute_within_groups(np.asarray(y), groups,
                                                             derive_seed(self.seed, "shuffle", name)))
        return self._cache[name]

    def feature_info(self, name: str) -> dict[str, Any]:
        return self.source.feature_info(name)

    def feature_split(self, name: str) -> np.ndarray:
        """The split the sweep gives the real feature (True for test examples)."""
        given = feature_split(self.source, name)
        if given is not None:
            return given
        rows, y = self.source.feature(name)
        groups = np.asarray(self.source.row_groups)[np.asarray(rows, np.int64)]
        return group_train_test_split(groups, np.asarray(y), test_size=self.test_size,
                                      seed=derive_seed(self.split_seed, "split", name), name=name,
                                      task=feature_task(self.source, name))

    def __repr__(self) -> str:
        return f"LabelShuffleControl({self.source!r}, seed={self.seed})"


_KEY = ["feature", "layer", "method", "k"]


def selectivity(results: pd.DataFrame, control: pd.DataFrame, *, metric: str = "f1") -> pd.DataFrame:
    """Join a sweep's rows with its control's: ``{metric}``, ``control_{metric}``, ``selectivity`` per
    (feature, layer, method, k) (and ``site``, when both tables have it)."""
    key = _KEY + (["site"] if "site" in results and "site" in control else [])
    for name, frame in (("results", results), ("control", control)):
        missing = [c for c in key + [metric] if c not in frame]
        if missing:
            raise InputError(f"the {name} table lacks columns {missing}; pass the tables two sweeps returned.")
    joined = results[key + [metric]].merge(control[key + [metric]].rename(columns={metric: f"control_{metric}"}),
                                           on=key, how="inner", validate="one_to_one")
    joined["selectivity"] = joined[metric] - joined[f"control_{metric}"]
    return joined.sort_values(key).reset_index(drop=True)


def control_sweep(source: ProbeSource, *, out: str | os.PathLike | None = None, control_seed: int = 0,
                  metric: str = "f1", within: str = "groups", **settings: Any) -> pd.DataFrame:
    """Sweep ``source`` and its label-shuffle control with the same settings; return :func:`selectivity`.

    ``out`` (optional) gets the real results; the control's go beside it as ``<stem>.control.parquet``.
    ``settings`` are :func:`needle.probing.sweep`'s (``methods``, ``ks``, ``seed``, ``test_size``…); ``within``
    is :class:`LabelShuffleControl`'s.
    """
    from needle.probing.sweep import SweepConfig, sweep

    config = SweepConfig(**{k: v for k, v in settings.items() if k in SweepConfig.__dataclass_fields__})
    control = LabelShuffleControl(source, seed=control_seed, split_seed=config.seed, test_size=config.test_size,
                                  within=within)
    control_out = None if out is None else Path(out).with_name(f"{Path(out).stem}.control.parquet")
    real = sweep(source, out=out, **settings)
    shuffled = sweep(control, out=control_out, **settings)
    return selectivity(real, shuffled, metric=metric)
