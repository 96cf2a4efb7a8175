"""The results table of sweeps: schema, atomic merging writes, loading, summaries.

One Parquet file per sweep (appended to by later sweeps), one row per
``(model_id, dataset_hash, site, feature, layer, method, k)``. The schema is
documented in ``docs/results.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from needle._checksums import read_parquet, write_parquet
from needle._io import atomic_file
from needle._locks import exclusive_lock
from needle.errors import FormatError
from needle.probing.bootstrap import CI_COLUMNS
from needle.probing.constants import BASELINE_METHODS
from needle.probing.metrics import PRIMARY_METRIC

__all__ = [
    "RESULT_KEY",
    "RESULT_SCHEMA",
    "CERTIFICATE_COLUMNS",
    "certificate_columns",
    "BASELINE_METHODS",
    "load_results",
    "merge_results",
    "write_results",
    "append_results",
    "check_replaceable_results",
    "summarize",
    "MIN_TEST_POSITIVES",
]

#: Columns that identify a row; a results file never holds two rows with the same key.
RESULT_KEY = ("model_id", "dataset_hash", "site", "feature", "layer", "method", "k")

RESULT_SCHEMA = pa.schema(
    [
        ("model_id", pa.string()),
        ("dataset_hash", pa.string()),
        ("site", pa.string()),
        ("collection", pa.string()),
        ("level", pa.string()),
        ("feature", pa.string()),
        ("task", pa.string()),
        ("layer", pa.int64()),
        ("method", pa.string()),
        ("k", pa.int64()),
        ("f1", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("mcc", pa.float64()),
        ("accuracy", pa.float64()),
        ("roc_auc", pa.float64()),
        ("f1_weighted", pa.float64()),
        ("f1_macro", pa.float64()),
        ("r2", pa.float64()),
        ("spearman", pa.float64()),
        ("pearson", pa.float64()),
        ("mae", pa.float64()),
        *[(name, pa.float64()) for name in CI_COLUMNS],
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("n_train_pos", pa.int64()),
        ("n_test_pos", pa.int64()),
        ("n_test_groups", pa.int64()),
        ("neurons", pa.list_(pa.int64())),
        ("coef", pa.list_(pa.float64())),
        ("intercept", pa.float64()),
        ("class_intercepts", pa.list_(pa.float64())),
        ("converged", pa.bool_()),
        ("n_iter", pa.int64()),
        ("fit_seconds", pa.float64()),
        ("seed", pa.int64()),
        ("selection_info", pa.string()),
        ("objective", pa.float64()),
        ("bound", pa.float64()),
        ("gap", pa.float64()),
        ("status", pa.string()),
        ("n_candidates", pa.int64()),
        ("needle_version", pa.string()),
        ("params", pa.string()),
        ("manifest", pa.string()),
        ("splits_mean", pa.float64()),
        ("splits_sd", pa.float64()),
        ("n_splits", pa.int64()),
    ]
)
_COLUMNS = [field.name for field in RESULT_SCHEMA]
#: The optimality certificate of a support (method ``osp``; null for the other methods): what the support is proven
#: optimal for (``objective`` with the selector's own ``gamma``) and over how many candidates (``n_candidates``, the
#: top ones by mean difference), not over every neuron. Tables written before these columns existed load with nulls.
CERTIFICATE_COLUMNS = ("objective", "bound", "gap", "status", "n_candidates")
#: Columns added after the first tables were written, with the value an older table gets: every feature was binary.
_ADDED_COLUMNS = {"task": "binary", "f1_weighted": np.nan, "f1_macro": np.nan, "r2": np.nan, "spearman": np.nan,
                  "pearson": np.nan, "mae": np.nan, "class_intercepts": None,
                  **{name: (None if name == "status" else np.nan) for name in CERTIFICATE_COLUMNS},
                  # Uncertainty (bootstrap over test groups, repeated splits): unknown for older tables.
                  **{name: np.nan for name in CI_COLUMNS}, "n_test_groups": pd.NA,
                  "splits_mean": np.nan, "splits_sd": np.nan, "n_splits": 1}


def certificate_columns(info: dict) -> dict:
    """The certificate columns of one result row from its selection ``info`` (nulls where absent)."""
    return {name: info.get(name, None if name == "status" else np.nan) for name in CERTIFICATE_COLUMNS}


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns it lacks added (older tables, baseline rows): see ``_ADDED_COLUMNS``."""
    missing = [c for c in _ADDED_COLUMNS if c not in frame.columns]
    if not missing:
        return frame
    frame = frame.copy()
    for name in missing:
        frame[name] = _ADDED_COLUMNS[name]
    return frame


def _empty() -> pd.DataFrame:
    return RESULT_SCHEMA.empty_table().to_pandas()


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results table.

    Parameters
    ----------
    path : path-like
        A Parquet file written by :func:`needle.probing.sweep`.

    Returns
    -------
    DataFrame
        One row per (model_id, dataset_hash, site, feature, layer, method, k);
        ``neurons`` and ``coef`` hold numpy arrays.

    Raises
    ------
    FormatError
        Missing file, not Parquet, or missing columns.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError(f"{path} is a directory; give the results file (the .parquet that `needle probe --out` wrote).")
    if not path.is_file():
        raise FormatError(f"{path} is missing: no results were written there.")
    # Verifies Parquet's page checksums and needle's content checksum (tables written before them have none).
    table = read_parquet(path, "results table", "restore it from a copy or run the sweep again")
    missing = [c for c in _COLUMNS if c not in table.column_names and c not in _ADDED_COLUMNS]
    if missing:
        raise FormatError(f"{path} is not a needle results table (missing columns {missing}).")
    return _conform(table.to_pandas())[_COLUMNS]


def merge_results(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two results tables by key; rows already in ``existing`` win.

    Returns
    -------
    DataFrame
        Sorted by :data:`RESULT_KEY`, columns in schema order.
    """
    frames = [f for f in (existing, new) if f is not None and len(f)]
    if not frames:
        return _empty()
    merged = pd.concat([_conform(f)[_COLUMNS] for f in frames], ignore_index=True)
    merged = merged.drop_duplicates(subset=list(RESULT_KEY), keep="first")
    return merged.sort_values(list(RESULT_KEY), kind="stable").reset_index(drop=True)


def write_results(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a results table atomically (temporary file, then rename)."""
    table = pa.Table.from_pandas(_conform(frame)[_COLUMNS], schema=RESULT_SCHEMA, preserve_index=False)
    with atomic_file(path, "wb") as handle:
        write_parquet(table, handle)  # with page checksums and a content checksum, checked by load_results


#: Below this many test positives a feature's scores are flagged as fragile (``few_positives``).
MIN_TEST_POSITIVES = 50


def _best_row(rows: pd.DataFrame, metric: str):
    """The row with the highest ``metric`` (ties: the first method by name), or None."""
    rows = rows[rows[metric].notna()]
    if not len(rows):
        return None
    return rows.sort_values([metric, "method"], ascending=[False, True], kind="stable").iloc[0]


def _value(row, column: str) -> float:
    if row is None or column not in row.index or pd.isna(row[column]):
        return np.nan
    return float(row[column])


def summarize(results: pd.DataFrame, *, ks: tuple[int, int] = (1, 8),
              min_positives: int = MIN_TEST_POSITIVES) -> pd.DataFrame:
    """One row per feature: where it lives, how sparsely, and its best single neuron.

    Each feature is scored by its task's primary metric
    (:data:`needle.probing.metrics.PRIMARY_METRIC`: F1 for binary, macro-F1
    for multiclass, R² for regression), named in the ``metric`` column.

    Parameters
    ----------
    results : DataFrame
        A results table (:func:`load_results`), possibly filtered.
    ks : tuple of int, default (1, 8)
        The two sparsities reported. The best layer is the one with the
        highest score at ``ks[1]`` (best over selection methods); ties go to
        the earlier layer.
    min_positives : int, default 50
        ``few_positives`` marks a binary feature with fewer test positives than this (a multiclass or
        regression feature: fewer test examples): its scores rest on few examples, read their intervals.

    Returns
    -------
    DataFrame
        Columns ``model_id, dataset_hash, site, collection, feature, task,
        metric, best_layer, score_k{ks[0]}, score_k{ks[1]}, score_dense`` (all
        at the best layer, best over selection methods; NaN where not
        computed), and the best 1-sparse probe over all layers and methods:
        ``neuron_layer, neuron, neuron_method, neuron_score``, plus
        ``neuron_precision, neuron_recall`` (binary) or ``neuron_spearman``
        (regression). For binary features the score columns are also given
        under their old names ``f1_k…``, ``f1_dense`` and ``neuron_f1``.

        Uncertainty: ``score_k…_lo``, ``score_k…_hi`` and ``neuron_score_lo``, ``neuron_score_hi`` are the
        95 % bootstrap interval over test groups of the row each score comes from (NaN for tables written
        without it), ``score_k…_sd`` the sd over repeated group splits (NaN unless the sweep ran
        ``splits`` > 1), and ``n_test``, ``n_test_pos``, ``n_test_groups``, ``few_positives`` the size of the
        feature's test split.
    """
    k_small, k_large = ks
    results = _conform(results)
    group_cols = ["model_id", "dataset_hash", "site", "feature"]
    sparse = results[~results["method"].isin(BASELINE_METHODS)]
    sparse_by_feature = {key: frame for key, frame in sparse.groupby(group_cols, sort=False)}
    rows = []
    for key, frame in results.groupby(group_cols, sort=True):
        task = str(frame["task"].fillna("binary").iloc[0])
        metric = PRIMARY_METRIC.get(task, "f1")
        sel = sparse_by_feature.get(key, sparse.iloc[:0])
        best_by_layer_large = sel[sel["k"] == k_large].groupby("layer")[metric].max()
        best_by_layer_small = sel[sel["k"] == k_small].groupby("layer")[metric].max()
        ranking = best_by_layer_large if len(best_by_layer_large) else best_by_layer_small
        if len(ranking) and ranking.notna().any():
            best_layer = int(ranking.index[np.nanargmax(ranking.to_numpy())])
        else:
            best_layer = int(frame["layer"].min())
        dense = frame[(frame["method"] == "dense") & (frame["layer"] == best_layer)][metric]
        at_layer = sel[sel["layer"] == best_layer]
        best_small = _best_row(at_layer[at_layer["k"] == k_small], metric)
        best_large = _best_row(at_layer[at_layer["k"] == k_large], metric)
        row = dict(zip(group_cols, key))
        row["collection"] = frame["collection"].iloc[0]
        row["task"] = task
        row["metric"] = metric
        row["best_layer"] = best_layer
        row[f"score_k{k_small}"] = float(best_by_layer_small.get(best_layer, np.nan))
        row[f"score_k{k_large}"] = float(best_by_layer_large.get(best_layer, np.nan))
        row["score_dense"] = float(dense.max()) if len(dense) else np.nan
        for k, best in ((k_small, best_small), (k_large, best_large)):
            row[f"score_k{k}_lo"] = _value(best, f"{metric}_lo")
            row[f"score_k{k}_hi"] = _value(best, f"{metric}_hi")
            row[f"score_k{k}_sd"] = _value(best, "splits_sd")
        ones = sel[sel["k"] == 1].sort_values([metric, "layer", "method"], ascending=[False, True, True],
                                             kind="stable", na_position="last")
        if len(ones):
            best = ones.iloc[0]
            row.update(neuron_layer=int(best["layer"]), neuron=int(best["neurons"][0]), neuron_method=best["method"],
                       neuron_score=float(best[metric]), neuron_score_lo=_value(best, f"{metric}_lo"),
                       neuron_score_hi=_value(best, f"{metric}_hi"), neuron_precision=float(best["precision"]),
                       neuron_recall=float(best["recall"]), neuron_spearman=float(best["spearman"]))
        else:
            row.update(neuron_layer=np.nan, neuron=np.nan, neuron_method=None, neuron_score=np.nan,
                       neuron_score_lo=np.nan, neuron_score_hi=np.nan,
                       neuron_precision=np.nan, neuron_recall=np.nan, neuron_spearman=np.nan)
        first = frame.iloc[0]
        row["n_test"] = int(first["n_test"])
        row["n_test_pos"] = int(first["n_test_pos"])
        row["n_test_groups"] = _value(first, "n_test_groups")
        row["few_positives"] = bool((row["n_test_pos"] if task == "binary" else row["n_test"]) < min_positives)
        binary = task == "binary"
        row[f"f1_k{k_small}"] = row[f"score_k{k_small}"] if binary else np.nan
        row[f"f1_k{k_large}"] = row[f"score_k{k_large}"] if binary else np.nan
        row["f1_dense"] = row["score_dense"] if binary else np.nan
        row["neuron_f1"] = row["neuron_score"] if binary else np.nan
        rows.append(row)
    columns = group_cols[:3] + ["collection", "feature", "task", "metric", "best_layer", f"score_k{k_small}",
                                f"score_k{k_large}", "score_dense", "neuron_layer", "neuron", "neuron_method",
                                "neuron_score", "neuron_precision", "neuron_recall", "neuron_spearman",
                                f"f1_k{k_small}", f"f1_k{k_large}", "f1_dense", "neuron_f1",
                                f"score_k{k_small}_lo", f"score_k{k_small}_hi", f"score_k{k_large}_lo",
                                f"score_k{k_large}_hi", f"score_k{k_small}_sd", f"score_k{k_large}_sd",
                                "neuron_score_lo", "neuron_score_hi", "n_test", "n_test_pos", "n_test_groups",
                                "few_positives"]
    return pd.DataFrame(rows, columns=columns)


#: Seconds a sweep waits for another one to finish writing the same results file.
APPEND_WAIT_SECONDS = 600.0


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def append_results(path: str | os.PathLike, new: pd.DataFrame, *, before_write=None, known=None
                   ) -> tuple[pd.DataFrame, tuple | None]:
    """Merge ``new`` rows into the results file at ``path`` under its lock, so that concurrent sweeps lose nothing.

    The file is re-read under the lock unless it is unchanged since ``known``
    was taken (atomic writes give every version a new inode).

    Parameters
    ----------
    path : path-like
    new : DataFrame
        Rows to add; rows already in the file win (:func:`merge_results`).
    before_write : callable, optional
        Called under the lock with the table on disk (or None) before writing:
        compatibility checks, and writing the sidecar splits.
    known : tuple, optional
        ``(table, stamp)`` returned by the previous call.

    Returns
    -------
    table : DataFrame
        The whole table as written.
    stamp : tuple
        Pass back as ``known`` next time (with ``table``).
    """
    path = Path(path)
    with exclusive_lock(path, what="another sweep appending results", wait=APPEND_WAIT_SECONDS):
        stamp = _stamp(path)
        if known is not None and stamp is not None and known[1] == stamp:
            existing = known[0]
        else:
            existing = load_results(path) if stamp is not None else None
        if before_write is not None:
            before_write(existing)
        merged = merge_results(existing, new)
        write_results(path, merged)
        return merged, _stamp(path)


def check_replaceable_results(path: str | os.PathLike) -> None:
    """Refuse to delete ``path`` for ``overwrite`` unless it is a needle results table (its schema is read, not its
    data, so a damaged table can still be replaced)."""
    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        names = []
    if path.is_dir() or not set(RESULT_KEY) <= set(names):
        raise FormatError(f"{path} is not a needle results table; overwrite replaces only results tables. "
                          "Choose another --out, or remove it yourself if it can go.")
