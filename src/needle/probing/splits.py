"""Train/test splits by group (document), stratified, seeded, and saved.

Examples from one document share context, so a split by example leaks
information between training and testing (the paper's code split tokens at
random). Here every group — the source document or file of a row — lies
entirely on one side, and the assignment aims at the requested fraction of
positives *and* of negatives on the test side, with both classes on both
sides.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from needle._checksums import read_parquet, write_parquet
from needle._io import atomic_file
from needle.errors import FormatError, InputError

__all__ = [
    "derive_seed",
    "group_train_test_split",
    "user_split",
    "splits_path",
    "splits_frame",
    "write_splits",
    "load_splits",
    "SPLIT_COLUMNS",
]

#: Columns of the saved splits table (see docs/results.md).
SPLIT_COLUMNS = ("dataset_hash", "feature", "example", "row", "group", "y", "split", "seed", "test_size")


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one task, derived deterministically from the sweep's seed and names.

    Python's ``hash`` of a string changes between processes, so this uses
    BLAKE2b: the same ``(seed, *parts)`` always gives the same value, on any
    machine and in any worker process.

    Returns
    -------
    int in [0, 2**31 - 1)
    """
    text = "\x1f".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") % (2**31 - 1)


def group_train_test_split(
    groups: np.ndarray, y: np.ndarray, *, test_size: float = 0.3, seed: int = 0, name: str = "feature",
    task: str = "binary",
) -> np.ndarray:
    """Assign whole groups to train or test, stratified by class.

    ``task="multiclass"`` stratifies by every class the same way (each class
    present on both sides); ``task="regression"`` balances only the number
    of examples (groups still never straddle the split).

    Groups are visited in a seeded random order and each goes to the test
    side if that brings the test side's numbers of positives and negatives
    closer to ``test_size`` times their totals (distance measured relative
    to each class's total). If the result lacks a class on one side, it is
    rebuilt around anchor groups that guarantee both classes on both sides.

    Parameters
    ----------
    groups : ndarray of shape (n_examples,)
        Group of each example (any hashable values; compared as strings).
    y : ndarray of shape (n_examples,)
        Labels 0/1.
    test_size : float, default 0.3
        Target fraction of each class on the test side.
    seed : int, default 0
    name : str, default "feature"
        Used in error messages.

    Returns
    -------
    ndarray of shape (n_examples,), bool
        True for test examples.

    Raises
    ------
    InputError
        One class is missing, or all examples of a class sit in one group
        (no split by group can then put that class on both sides).
    """
    if not 0.0 < test_size < 1.0:
        raise InputError(f"test_size must lie strictly between 0 and 1, got {test_size!r}.")
    if task != "binary":
        return _split_by_classes(groups, y, test_size, seed, name, task)
    groups = np.asarray(groups).astype(str)
    y = np.asarray(y).ravel().astype(bool)
    if groups.shape != y.shape:
        raise InputError(f"{name!r}: {groups.size} groups for {y.size} labels.")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"feature {name!r} has only one class ({n_pos} positive and {n_neg} negative examples); "
            "a probe needs both. Check the feature's labels or drop it from the sweep."
        )
    names, inverse = np.unique(groups, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=names.size).astype(np.int64)
    neg = np.bincount(inverse, weights=~y, minlength=names.size).astype(np.int64)
    for label, counts, total in (("positive", pos, n_pos), ("negative", neg, n_neg)):
        holders = np.flatnonzero(counts)
        if holders.size < 2:
            raise InputError(
                f"feature {name!r}: all {total} {label} examples come from the single group {str(names[holders[0]])!r}; "
                "the split is by group (document), so it cannot put that class on both sides. "
                "Add examples from other documents, or give the source finer groups."
            )
    rng = np.random.default_rng(seed)
    order = rng.permutation(names.size)
    target_pos, target_neg = test_size * n_pos, test_size * n_neg

    def cost(tp, tn):
        return abs(tp - target_pos) / n_pos + abs(tn - target_neg) / n_neg

    def greedy(fixed_test: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        test = fixed_test.copy()
        tp, tn = int(pos[test].sum()), int(neg[test].sum())
        for g in order:
            if fixed[g]:
                continue
            if cost(tp + pos[g], tn + neg[g]) < cost(tp, tn):
                test[g] = True
                tp += pos[g]
                tn += neg[g]
        return test

    def feasible(test):
        return pos[test].sum() > 0 and neg[test].sum() > 0 and pos[~test].sum() > 0 and neg[~test].sum() > 0

    none = np.zeros(names.size, dtype=bool)
    test = greedy(none, none)
    if not feasible(test):
        # Anchors: a positive group for each side (the test one with the
        # number of positives closest to the target, the train one with the
        # most positives), then negative groups where an anchor lacks them.
        fixed_test, fixed = none.copy(), none.copy()
        holders = order[pos[order] > 0]  # seeded order breaks ties below
        p_test = holders[np.argmin(np.abs(pos[holders] - target_pos), axis=0)]
        rest = holders[holders != p_test]
        p_train = rest[np.argmax(pos[rest])]
        fixed_test[p_test] = True
        fixed[[p_test, p_train]] = True
        if neg[p_test] == 0:
            cands = order[(neg[order] > 0) & (order != p_train)]
            n_test = cands[np.argmin(np.abs(neg[cands] - target_neg))]
            fixed_test[n_test] = fixed[n_test] = True
        if neg[p_train] == 0:
            cands = order[(neg[order] > 0) & ~fixed_test[order]]
            fixed[cands[np.argmax(neg[cands])]] = True
        test = greedy(fixed_test, fixed)
    assert feasible(test), "group split failed to place both classes on both sides"
    return test[inverse]


def _split_by_classes(groups, y, test_size: float, seed: int, name: str, task: str) -> np.ndarray:
    """The greedy group assignment of :func:`group_train_test_split` for several classes (or none)."""
    groups = np.asarray(groups).astype(str)
    y = np.asarray(y).ravel()
    if groups.shape != y.shape:
        raise InputError(f"{name!r}: {groups.size} groups for {y.size} targets.")
    codes = np.zeros(y.size, np.int64) if task == "regression" else np.unique(y, return_inverse=True)[1]
    n_classes = int(codes.max()) + 1
    if task == "multiclass" and n_classes < 2:
        raise InputError(f"feature {name!r} has only one class; a probe needs at least two.")
    names, inverse = np.unique(groups, return_inverse=True)
    if names.size < 2:
        raise InputError(f"feature {name!r}: every example comes from the single group {str(names[0])!r}; the "
                         "split is by group (document), so give the source finer groups.")
    counts = np.zeros((names.size, n_classes), np.int64)
    np.add.at(counts, (inverse, codes), 1)
    totals = counts.sum(axis=0)
    if task == "multiclass":
        for c in range(n_classes):
            if np.count_nonzero(counts[:, c]) < 2:
                raise InputError(f"feature {name!r}: every example of class {c} comes from one group; the split "
                                 "is by group (document), so it cannot put that class on both sides.")
    target = test_size * totals
    order = np.random.default_rng(seed).permutation(names.size)
    test = np.zeros(names.size, dtype=bool)
    current = np.zeros(n_classes)

    def cost(values):
        return float(np.sum(np.abs(values - target) / totals))

    for g in order:
        if cost(current + counts[g]) < cost(current):
            test[g] = True
            current += counts[g]
    # Repair: a class missing on one side takes (or gives) its smallest group holding it.
    for c in range(n_classes):
        holders = order[counts[order, c] > 0]
        if not test[holders].any():
            test[holders[np.argmin(counts[holders, c])]] = True
        if test[holders].all():
            test[holders[np.argmin(counts[holders, c])]] = False
    if not test.any() or test.all():
        raise InputError(f"feature {name!r}: could not split its groups into a train and a test side.")
    return test[inverse]


def user_split(groups: np.ndarray, y: np.ndarray, is_test: np.ndarray, *, task: str = "binary",
               name: str = "feature") -> np.ndarray:
    """Check a split the source gives (e.g. a dataset's ``split`` column) and return it.

    Raises
    ------
    InputError
        A group has examples on both sides, or a side is empty, or (for
        classification) a side lacks a class the other has.
    """
    groups = np.asarray(groups).astype(str)
    is_test = np.asarray(is_test, dtype=bool).ravel()
    if is_test.shape != groups.shape:
        raise InputError(f"feature {name!r}: the given split has {is_test.size} entries for {groups.size} examples.")
    names, inverse = np.unique(groups, return_inverse=True)
    test_count = np.bincount(inverse, weights=is_test, minlength=names.size)
    size = np.bincount(inverse, minlength=names.size)
    straddle = np.flatnonzero((test_count > 0) & (test_count < size))
    if straddle.size:
        shown = ", ".join(repr(str(names[g])) for g in straddle[:3])
        raise InputError(f"feature {name!r}: groups {shown}{'…' if straddle.size > 3 else ''} have examples in both "
                         "train and test of the given split; a group (document) must lie on one side.")
    if is_test.all() or not is_test.any():
        raise InputError(f"feature {name!r}: the given split puts every example on the "
                         f"{'test' if is_test.all() else 'train'} side.")
    if task != "regression":
        y = np.asarray(y).ravel()
        missing = sorted(set(np.unique(y[~is_test]).tolist()) ^ set(np.unique(y[is_test]).tolist()))
        if missing:
            raise InputError(f"feature {name!r}: the given split has classes {missing[:5]} on one side only.")
    return is_test


def splits_path(out: str | os.PathLike) -> Path:
    """Where the splits of a results file are saved: ``<out stem>.splits.parquet`` beside it."""
    out = Path(out)
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{stem}.splits.parquet")


def splits_frame(
    dataset_hash: str,
    feature: str,
    rows: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    is_test: np.ndarray,
    *,
    seed: int,
    test_size: float,
) -> pd.DataFrame:
    """The saved form of one feature's split: one row per example (see :data:`SPLIT_COLUMNS`)."""
    n = len(rows)
    return pd.DataFrame(
        {
            "dataset_hash": pd.Series([dataset_hash] * n, dtype=object),
            "feature": pd.Series([feature] * n, dtype=object),
            "example": np.arange(n, dtype=np.int64),
            "row": np.asarray(rows, dtype=np.int64),
            "group": np.asarray(groups).astype(str).astype(object),
            "y": np.asarray(y, dtype=np.float64),
            "split": np.where(np.asarray(is_test, dtype=bool), "test", "train").astype(object),
            "seed": np.full(n, seed, dtype=np.int64),
            "test_size": np.full(n, test_size, dtype=np.float64),
        }
    )


_SPLIT_SCHEMA = pa.schema(
    [
        ("dataset_hash", pa.string()),
        ("feature", pa.string()),
        ("example", pa.int64()),
        ("row", pa.int64()),
        ("group", pa.string()),
        ("y", pa.float64()),
        ("split", pa.string()),
        ("seed", pa.int64()),
        ("test_size", pa.float64()),
    ]
)


def load_splits(path: str | os.PathLike) -> pd.DataFrame:
    """Read a splits table written by a sweep.

    Raises
    ------
    FormatError
        Missing file or missing columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path} is missing: no splits were saved there.")
    frame = read_parquet(path, "splits table", "delete it and its results file and run the sweep again, or write "
                                               "to a new --out").to_pandas()
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise FormatError(f"{path} is not a needle splits table (missing columns {missing}).")
    return frame


def write_splits(path: str | os.PathLike, new: pd.DataFrame) -> pd.DataFrame:
    """Add features' splits to the splits table at ``path`` atomically.

    A feature (of a dataset) already saved must have an identical split;
    otherwise the data or the split parameters changed, and mixing the two
    would make results irreproducible.

    Returns
    -------
    DataFrame
        The whole table as written.
    """
    table = merged_splits(path, new)
    arrow = pa.Table.from_pandas(table, schema=_SPLIT_SCHEMA, preserve_index=False)
    with atomic_file(path, "wb") as handle:
        write_parquet(arrow, handle)
    return table.reset_index(drop=True)


def merged_splits(path: str | os.PathLike, new: pd.DataFrame) -> pd.DataFrame:
    """The splits table :func:`write_splits` would write, without writing it (raises as it does)."""
    path = Path(path)
    frames = [new]
    if path.exists():
        old = load_splits(path)
        key = ["dataset_hash", "feature"]
        shared = old.merge(new[key].drop_duplicates(), on=key)
        if len(shared):
            check = ["example", "row", "group", "y", "split", "seed", "test_size"]
            mine = new.merge(shared[key].drop_duplicates(), on=key).sort_values(key + ["example"])
            theirs = shared.sort_values(key + ["example"])
            same = len(mine) == len(theirs) and all(
                np.array_equal(mine[c].to_numpy(), theirs[c].to_numpy()) for c in check
            )
            if not same:
                features = sorted(shared["feature"].unique())[:5]
                raise InputError(
                    f"{path} already holds different splits for features {features}: the data, the seed or "
                    "test_size changed since. Write the results to a new file, or pass overwrite=True."
                )
            new = new.merge(shared[key].drop_duplicates(), on=key, how="left", indicator=True)
            new = new[new["_merge"] == "left_only"].drop(columns="_merge")
        frames = [old, new]
    return pd.concat(frames, ignore_index=True).sort_values(["dataset_hash", "feature", "example"], kind="stable")
