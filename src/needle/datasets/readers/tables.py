"""Tables of labelled texts: CSV, TSV, Parquet, JSON lines, pandas DataFrames and Hugging Face datasets.

:func:`read_table` reads one or several sources into one pandas DataFrame and
says, for every row, how an error should name it (``data.csv row 3``).
``datasets`` objects are recognised without importing the library, which is
only needed (and imported) for ``hf:NAME[:SPLIT]`` sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from needle.errors import InputError

__all__ = ["TABLE_SUFFIXES", "read_table", "is_frame", "hf_kind"]

#: File suffix → reader.
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_table(sources: Any) -> tuple[Any, list[str], str, list[str] | None]:
    """Read ``sources`` into one pandas DataFrame.

    Returns
    -------
    frame : pandas.DataFrame
    where : list of str, one per row
        How errors name the row (``file.csv row 3``, counting data rows from 1).
    origin : str
        How errors name the table.
    hf_split : list of str or None
        Per row, the ``DatasetDict`` split it came from (None for other sources).
    """
    import pandas as pd

    items = _source_items(sources)
    frames, where, origins, hf_split = [], [], [], []
    for item in items:
        frame, label, split = _read_one(item)
        frames.append(frame)
        where.extend(f"{label} row {i + 1}" for i in range(len(frame)))
        origins.append(label)
        hf_split.extend(split if split is not None else [None] * len(frame))
    origin = origins[0] if len(origins) == 1 else f"{origins[0]} (+{len(origins) - 1} more)"
    if len(frames) > 1:
        first = list(frames[0].columns)
        for frame, label in zip(frames[1:], origins[1:]):
            if list(frame.columns) != first:
                raise InputError(
                    f"{label} has columns {list(frame.columns)} but {origins[0]} has {first}; "
                    "tables read together need the same columns."
                )
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(frame) == 0:
        raise InputError(f"{origin}: the table has no rows (an empty table); add rows or check the file.")
    return frame, where, origin, None if all(s is None for s in hf_split) else hf_split


def _source_items(sources: Any) -> list[Any]:
    if sources is None:
        raise InputError("the table collection needs a source: --source data.csv (or .tsv, .parquet, .jsonl, hf:NAME).")
    if isinstance(sources, (str, os.PathLike)) or is_frame(sources) or hf_kind(sources):
        return [sources]
    items = list(sources)
    if not items:
        raise InputError("no sources given; pass a table such as --source data.csv.")
    return items


def _read_one(item: Any) -> tuple[Any, str, list[str] | None]:
    import pandas as pd

    if is_frame(item):
        return item, "the DataFrame", None
    if hf_kind(item):
        return _from_hf(item, "the datasets object")
    text = os.fspath(item)
    if text.startswith("hf:"):
        return _load_hf(text)
    path = Path(text)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path (a table: .csv, .tsv, .parquet or .jsonl).")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"{path}: cannot read {path.suffix or 'a file without suffix'} tables; "
            f"use one of {', '.join(sorted(TABLE_SUFFIXES))} (or hf:NAME)."
        )
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the table has no rows (an empty table); add rows or check the file.") from None
    except Exception as exc:  # noqa: BLE001 - every reader has its own exceptions; the user needs the file named
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable {kind} table ({reason}); check the file's format.") from None
    return frame, str(path), None


def is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def hf_kind(obj: Any) -> str | None:
    """``Dataset`` or ``DatasetDict`` for Hugging Face datasets objects (checked without importing ``datasets``)."""
    kind = type(obj).__name__
    module = type(obj).__module__
    return kind if module.startswith("datasets") and kind in ("Dataset", "DatasetDict") else None


def _from_hf(obj: Any, label: str) -> tuple[Any, str, list[str] | None]:
    import pandas as pd

    if hf_kind(obj) == "Dataset":
        return obj.to_pandas(), label, None
    names = list(obj.keys())
    frames = [obj[n].to_pandas() for n in names]
    split = [n for n, frame in zip(names, frames) for _ in range(len(frame))]
    return pd.concat(frames, ignore_index=True), f"{label} ({', '.join(names)})", split


def _load_hf(text: str) -> tuple[Any, str, list[str] | None]:
    spec = text[len("hf:"):]
    dataset_name, _, split = spec.partition(":")
    if not dataset_name:
        raise InputError(f"{text!r}: write hf:NAME or hf:NAME:SPLIT (e.g. hf:imdb:train).")
    try:
        import datasets
    except ImportError:
        raise InputError(f"{text}: reading Hugging Face datasets needs the datasets library; pip install datasets") from None
    try:
        loaded = datasets.load_dataset(dataset_name, split=split or None)
    except Exception as exc:  # noqa: BLE001 - network, missing dataset, bad split: say which and why
        raise InputError(f"{text}: datasets.load_dataset failed ({type(exc).__name__}: {exc}).") from None
    return _from_hf(loaded, text)
