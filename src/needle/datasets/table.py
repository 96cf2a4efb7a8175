"""The ``table`` collection: your own labelled texts, one row per sequence.

A table (CSV, TSV, Parquet or JSON Lines; a pandas ``DataFrame``; a Hugging
Face ``datasets.Dataset`` or ``DatasetDict``; or ``"hf:NAME[:SPLIT]"``, loaded
with ``datasets.load_dataset``) has a text column and one or more label
columns. Every row becomes one sequence, tokenized with the tokenizer's special
tokens, and one example of each label column's feature, read at a position of
the text (``position``): its last or first text token, or the mean or max over
all of its text tokens (special tokens are never part of the example).

The task of a label column (``task=``) is binary, multiclass or regression;
when not given it is inferred from the column's non-missing values:

* exactly two distinct values → ``binary``;
* otherwise, any non-numeric value, or only integers with at most
  :data:`MAX_INFERRED_CLASSES` distinct values → ``multiclass``;
* otherwise → ``regression``.

The chosen task is recorded per feature in ``extra["table"]["tasks"]`` (and
printed by ``needle dataset build``). Users bring their data as they want it
probed, so nothing is subsampled by default (``positive_ratio=None``).

``preset="sae-probes"`` reads no table of yours but the binary datasets
bundled with the PyPI package ``sae-probes`` (Kantamneni et al. 2025; ``pip
install --no-deps sae-probes``, or ``sae_probes=PATH.whl``): about 110
files of prompts with a binary target (GLUE tasks, spam, sentiment, news
topics, entity facts, compound words, code language, …), one feature per
file named by its tag (``glue_cola``, ``spam_is``). ``tasks`` picks some by
tag (default all), ``n_tasks`` a seeded sample of them, ``max_rows`` a seeded
sample of rows per file. Each distinct prompt is one sequence and its own
group; a feature's examples are the rows of its own file, read at ``position``
(``last``, as sae-probes probes, or ``mean``), and the positive class is
1/true/yes where a file has one, else the second value in sorted order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from needle.datasets.alignment import encode
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.format import TASKS, ProbeDataset
from needle.datasets.readers.tables import hf_kind, is_frame, read_table
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = ["MAX_INFERRED_CLASSES", "POSITIONS", "TRUNCATIONS", "build_table"]

BUILDER = "table"
COLLECTION = "table"
#: Where an example reads its row's text.
POSITIONS = ("last", "first", "mean", "max")
#: How a text longer than the context is cut; ``error`` refuses it.
TRUNCATIONS = ("right", "left", "error")
#: An integer label column with at most this many distinct values is inferred to be multiclass.
MAX_INFERRED_CLASSES = 20
#: Default truncation per position: cut the side the example does not read.
_DEFAULT_TRUNCATION = {"last": "left", "first": "right", "mean": "right", "max": "right"}
_TRUE_WORDS = ("1", "true", "yes")


def build_table(
    sources: Any,
    tokenizer: Any = "minilm",
    *,
    text_column: str = "text",
    label_column: str | None = None,
    label_columns: Any = None,
    task: str | None = None,
    name: str | None = None,
    positive: Any = None,
    group_column: str | None = None,
    split_column: str | None = None,
    position: str = "last",
    truncation: str | None = None,
    context_length: int | None = None,
    positive_ratio: float | None = None,
    seed: int = 0,
    max_positives: int | None = None,
    preset: str | None = None,
    tasks: Any = None,
    n_tasks: int | None = None,
    max_rows: int | None = None,
    sae_probes: str | os.PathLike | None = None,
) -> ProbeDataset:
    """Build a ProbeDataset from a table of texts and labels.

    Parameters
    ----------
    sources : path-like, "hf:NAME[:SPLIT]", DataFrame, datasets.Dataset or DatasetDict, or a list of one
        The table; several files with the same columns are read one after the
        other. A ``DatasetDict`` whose splits are ``train`` and ``test`` gives
        the user split (unless ``split_column`` is given).
    tokenizer : fast tokenizer or str, default "minilm"
    text_column : str, default "text"
    label_column : str, optional
        The label column (one feature). Give this or ``label_columns``.
    label_columns : list of str, or "[a,b]" / "a,b"
        Several label columns, one feature each.
    task : {"binary", "multiclass", "regression"}, optional
        Applies to every label column; inferred per column when not given
        (rule in the module docstring).
    name : str, optional
        Feature name (one label column only); default the column's name.
    positive : value, optional
        Binary: the positive value. Default: 1, true or yes when one of the
        two values is (case-insensitive), else the second value in sorted order.
    group_column : str, optional
        Rows with the same value are one group (no group straddles train and
        test). Default: every row its own group.
    split_column : str, optional
        The user's split: ``train`` or ``test`` per row.
    position : {"last", "first", "mean", "max"}, default "last"
        The example's unit: the last or first text token, or the mean / max
        over all text tokens.
    truncation : {"right", "left", "error"}, optional
        What to do with a row longer than the context: keep its first tokens
        (``right``), its last ones (``left``) or refuse it. The default keeps
        the token ``position`` reads: ``left`` for ``last``, ``right``
        otherwise. Special tokens are always kept.
    context_length : int, optional
        Most tokens per sequence, special tokens included; default the
        tokenizer's ``model_max_length`` (no limit when it has none).
    positive_ratio : float, optional
        ``None`` (default) keeps every row; a ratio subsamples the negatives
        of binary features (recorded in ``extra["subsampled"]``).
    seed : int, default 0
    max_positives : int, optional
        Cap on positives (binary), examples per class (multiclass) or
        examples (regression), a seeded sample.
    preset : {"sae-probes"}, optional
        Read sae-probes' bundled binary datasets instead of ``sources`` (module docstring).
    tasks : list of str, or "a,b", optional
        ``preset="sae-probes"``: the datasets, by tag (``glue_cola``) or file stem
        (``87_glue_cola``); default every binary one.
    n_tasks : int, optional
        ``preset="sae-probes"``: a seeded sample of this many of ``tasks``.
    max_rows : int, optional
        ``preset="sae-probes"``: a seeded sample of at most this many rows per dataset.
    sae_probes : path-like, optional
        ``preset="sae-probes"``: the wheel or unpacked package; default the installed package.

    Returns
    -------
    ProbeDataset
        One sequence per row; ``extra["table"]`` records the row count, the
        number of truncated rows and each feature's task (and whether it was
        inferred).

    Raises
    ------
    InputError
        A missing or unreadable source, an unknown column, an empty table,
        missing texts or labels, a label column with one value, a split value
        other than train/test, a group in both train and test, a text longer
        than the context with ``truncation="error"``, or bad parameters.
    """
    tokenizer = fast_tokenizer(tokenizer)
    if preset is not None:
        if str(preset).strip().lower().replace("_", "-") != "sae-probes":
            raise InputError(f"preset must be 'sae-probes' (or left out), not {preset!r}.")
        if sources is not None:
            raise InputError("preset=sae-probes reads the package's data files; drop the --source table.")
        return _sae_probes_tasks(tokenizer, tasks, n_tasks, max_rows, sae_probes, position, context_length,
                                 positive_ratio, seed, max_positives)
    columns = _label_column_list(label_column, label_columns)
    if name is not None and len(columns) != 1:
        raise InputError(f"name= names one feature, but {len(columns)} label columns were given; drop name=.")
    if task is not None and task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, not {task!r}.")
    if position not in POSITIONS:
        raise InputError(f"position must be one of {', '.join(POSITIONS)}, not {position!r}.")
    truncation = _DEFAULT_TRUNCATION[position] if truncation is None else truncation
    if truncation not in TRUNCATIONS:
        raise InputError(f"truncation must be one of {', '.join(TRUNCATIONS)}, not {truncation!r}.")
    max_length = _max_length(tokenizer, context_length)

    frame, where, origin, hf_split = read_table(sources)
    names = [str(c) for c in frame.columns]
    for role, column in [("text_column", text_column), *(("label_column", c) for c in columns),
                         ("group_column", group_column), ("split_column", split_column)]:  # fmt: skip
        if column is not None and column not in names:
            raise InputError(f"{origin}: no column {column!r} ({role}); the table has: {', '.join(names)}.")

    texts = _texts(frame[text_column], where, origin, text_column)
    features = []
    for column in columns:
        values = frame[column].tolist()
        _refuse_missing(values, where, origin, column, "label")
        features.append(_feature(column, name or column, values, task, positive, origin))
    groups = _groups(frame, group_column, where, origin)
    split = _split(frame, split_column, hf_split, where, origin)
    if split is not None:
        _refuse_straddling(groups, split, origin, group_column)

    params = {
        "sources": _recorded_sources(sources), "text_column": text_column, "label_columns": columns, "task": task,
        "name": name, "positive": None if positive is None else _key(positive), "group_column": group_column,
        "split_column": split_column, "position": position, "truncation": truncation,
        "context_length": context_length, "positive_ratio": positive_ratio, "seed": seed,
        "max_positives": max_positives,
    }  # fmt: skip
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    for feature in features:
        assembler.add_feature(
            feature["name"], description=feature["description"], collection=COLLECTION, level="sequence",
            task=feature["task"], classes=feature.get("classes"),
        )  # fmt: skip
    # Each row's text tokens are [begin, end); the example is that span or one token of it.
    begins, ends, truncated = np.zeros(len(texts), np.int32), np.zeros(len(texts), np.int32), 0
    for row, text in enumerate(texts):
        ids, kept_text, begins[row], ends[row], cut = _tokens(tokenizer, text, max_length, truncation, where[row], origin)
        truncated += cut
        assembler.add_sequence(ids, group=groups[row], text=kept_text)
    if position == "last":
        span = dict(start=ends - 1, end=None, aggregation="token")
    elif position == "first":
        span = dict(start=begins, end=None, aggregation="token")
    else:
        span = dict(start=begins, end=ends, aggregation=position)
    sequences = np.arange(len(texts))
    for feature in features:
        assembler.add_examples(feature["name"], sequences, span["start"], feature["labels"], end=span["end"],
                               aggregation=span["aggregation"], split=split)  # fmt: skip
    dataset = assembler.build(positive_ratio=positive_ratio, seed=seed, min_positives=1, max_positives=max_positives)
    dataset.extra["table"] = {
        "rows": len(texts),
        "truncated_rows": truncated,
        "max_length": max_length,
        "tasks": {f["name"]: {"task": f["task"], "inferred": task is None, "column": f["column"]} for f in features},
    }
    return dataset


# ------------------------------------------------------------------ the sae-probes preset
def _sae_probes_tasks(tokenizer, tasks, n_tasks, max_rows, sae_probes, position, context_length, positive_ratio,
                      seed, max_positives) -> ProbeDataset:
    from needle.datasets.sae_probes_data import PromptTask, SaeProbesFiles, build_prompt_dataset, sae_probes_index

    if position not in ("last", "mean"):
        raise InputError(f"preset=sae-probes reads position last or mean, not {position!r}.")
    files = SaeProbesFiles(sae_probes, needed_by="the table preset sae-probes")
    index = sae_probes_index(files=files)
    binary = index[index["kind"] == "binary"]
    by_name = {**dict(zip(binary["tag"], binary["stem"])), **dict(zip(binary["stem"], binary["stem"]))}
    if tasks is None:
        chosen = list(binary["stem"])
    else:
        names = _label_column_list(None, tasks)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InputError(f"{files.where}: no binary dataset {', '.join(map(repr, unknown))}; "
                             f"they are: {', '.join(binary['tag'])}.")
        chosen = list(dict.fromkeys(by_name[n] for n in names))
    if n_tasks is not None:
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or not 1 <= n_tasks <= len(chosen):
            raise InputError(f"n_tasks must be an integer from 1 to {len(chosen)}, not {n_tasks!r}.")
        picked = np.random.default_rng([seed, 18]).choice(len(chosen), int(n_tasks), replace=False)
        chosen = [chosen[i] for i in np.sort(picked)]
    prompt_tasks = [PromptTask(stem.split("_", 1)[1], stem) for stem in chosen]
    params = {"preset": "sae-probes", "sae_probes": None if sae_probes is None else os.fspath(sae_probes),
              "tasks": chosen, "n_tasks": n_tasks, "max_rows": max_rows, "position": position,
              "context_length": context_length, "positive_ratio": positive_ratio, "seed": seed,
              "max_positives": max_positives}  # fmt: skip
    return build_prompt_dataset(prompt_tasks, tokenizer, builder=BUILDER, params=params, collection=COLLECTION,
                                files=files, level="sequence", position=position, context_length=context_length,
                                max_rows=max_rows, seed=seed, positive_ratio=positive_ratio, min_positives=1,
                                max_positives=max_positives)  # fmt: skip


# ------------------------------------------------------------------ columns
def _label_column_list(label_column: str | None, label_columns: Any) -> list[str]:
    if label_column is not None and label_columns is not None:
        raise InputError("give label_column or label_columns, not both.")
    if label_columns is None:
        if label_column is None:
            raise InputError("name the label column: --param label_column=NAME (or label_columns=[a,b]).")
        return [str(label_column)]
    if isinstance(label_columns, str):
        label_columns = [part.strip().strip("'\"") for part in label_columns.strip().strip("[]").split(",")]
    columns = [str(c) for c in label_columns if str(c)]
    if not columns:
        raise InputError("label_columns is empty; name at least one column.")
    if len(set(columns)) != len(columns):
        raise InputError(f"label_columns names a column twice: {columns}.")
    return columns


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pandas NA
    except (TypeError, ValueError):
        return False


def _refuse_missing(values: list[Any], where: list[str], origin: str, column: str, what: str) -> None:
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        rows = ", ".join(where[i].rsplit(" ", 1)[-1] for i in missing[:5]) + ("…" if len(missing) > 5 else "")
        raise InputError(
            f"{origin}: column {column!r} has {len(missing)} missing {what}(s) (rows {rows}); fill or drop those rows."
        )


def _texts(column: Any, where: list[str], origin: str, name: str) -> list[str]:
    values = column.tolist()
    _refuse_missing(values, where, origin, name, "text")
    return [str(v) for v in values]


def _groups(frame: Any, column: str | None, where: list[str], origin: str) -> list[str]:
    if column is None:
        return [f"row{i}" for i in range(len(frame))]
    values = frame[column].tolist()
    _refuse_missing(values, where, origin, column, "group")
    return [str(v) for v in values]


def _split(frame: Any, column: str | None, hf_split: list[str] | None, where: list[str], origin: str) -> np.ndarray | None:
    if column is None and hf_split is None:
        return None
    if column is None:
        unknown = sorted(set(hf_split) - {"train", "test"})
        if unknown:
            raise InputError(
                f"{origin}: the DatasetDict has split {unknown[0]!r}; every split must be train or test "
                "(pick one with hf:NAME:SPLIT or pass dataset['train'], or give split_column)."
            )
        values = hf_split
    else:
        values = frame[column].tolist()
        _refuse_missing(values, where, origin, column, "split value")
    words = np.array([str(v).strip().lower() for v in values])
    bad = np.flatnonzero(~np.isin(words, ["train", "test"]))
    if len(bad):
        raise InputError(
            f"{origin}: split column {column!r} has {values[bad[0]]!r} at {where[bad[0]]}; "
            "every value must be train or test."
        )
    source = f"split column {column!r}" if column is not None else "the DatasetDict"
    for side in ("train", "test"):
        if not (words == side).any():
            raise InputError(f"{origin}: {source} has no {side} rows; a user split needs both train and test.")
    return words == "test"


def _refuse_straddling(groups: list[str], is_test: np.ndarray, origin: str, group_column: str | None) -> None:
    seen: dict[str, bool] = {}
    for group, test in zip(groups, is_test.tolist()):
        if seen.setdefault(group, test) != test:
            raise InputError(
                f"{origin}: group {group!r} (group_column {group_column!r}) has rows in both train and test; "
                "a group must lie in one split, or test would see its documents."
            )


def _key(value: Any) -> str:
    """A label value as text, so 1, 1.0, True and "1" compare as the user means."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _numeric(values: list[Any]) -> np.ndarray | None:
    if any(isinstance(v, (bool, np.bool_)) for v in values):
        return None
    try:
        out = np.array([float(v) for v in values], np.float64)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out).all() else None


def _feature(column: str, name: str, values: list[Any], task: str | None, positive: Any, origin: str) -> dict[str, Any]:
    """The feature's task, labels (float64) and, for multiclass, its classes."""
    keys = [_key(v) for v in values]
    distinct = sorted(set(keys))
    numbers = _numeric(values)
    if len(distinct) < 2:
        raise InputError(
            f"{origin}: label column {column!r} has one value ({distinct[0]!r}) in every row; "
            "a probe needs at least two classes."
        )
    if task is None:
        integral = numbers is not None and bool((numbers == np.round(numbers)).all())
        if len(distinct) == 2:
            task = "binary"
        elif numbers is None or (integral and len(distinct) <= MAX_INFERRED_CLASSES):
            task = "multiclass"
        else:
            task = "regression"
    description = f"column {column!r} of the table ({task})"
    if task == "binary":
        if len(distinct) != 2:
            raise InputError(
                f"{origin}: task=binary needs two values in label column {column!r}, which has {len(distinct)} "
                f"({', '.join(distinct[:5])}{'…' if len(distinct) > 5 else ''}); use task=multiclass or regression."
            )
        if positive is not None:
            chosen = _key(positive)
            if chosen not in distinct:
                raise InputError(f"{origin}: positive={positive!r} is not a value of {column!r} ({', '.join(distinct)}).")
        else:
            true_like = [d for d in distinct if d.lower() in _TRUE_WORDS]
            chosen = true_like[0] if len(true_like) == 1 else _sorted_values(distinct, numbers)[1]
        labels = np.array([k == chosen for k in keys], np.float64)
        return {"column": column, "name": name, "task": task, "labels": labels,
                "description": f"{description}: {column} == {chosen!r}"}  # fmt: skip
    if task == "multiclass":
        classes = _sorted_values(distinct, numbers)
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[k] for k in keys], np.float64)
        return {"column": column, "name": name, "task": task, "labels": labels, "classes": classes,
                "description": description}  # fmt: skip
    if numbers is None:
        bad = next(v for v in values if _numeric([v]) is None)
        raise InputError(
            f"{origin}: task=regression needs numbers in label column {column!r}, which has {bad!r}; "
            "use task=multiclass for categories."
        )
    return {"column": column, "name": name, "task": task, "labels": numbers, "description": description}


def _sorted_values(distinct: list[str], numbers: np.ndarray | None) -> list[str]:
    """Distinct label keys in numeric order when they are numbers, else in string order."""
    if numbers is None:
        return sorted(distinct)
    return sorted(distinct, key=float)


# --------------------------------------------------------------- tokens
def _max_length(tokenizer: Any, context_length: Any) -> int | None:
    n_special = len(encode(tokenizer, "").ids)
    if context_length is not None:
        if not isinstance(context_length, (int, np.integer)) or context_length < n_special + 1:
            raise InputError(f"context_length must be an integer of at least {n_special + 1}, not {context_length!r}.")
        return int(context_length)
    model_max = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (about 1e30).
    return int(model_max) if isinstance(model_max, int) and model_max < 10**9 else None


def _tokens(
    tokenizer: Any, text: str, max_length: int | None, truncation: str, where: str, origin: str
) -> tuple[np.ndarray, str, int, int, bool]:
    """Token ids of one row, its kept text, the text tokens' span ``[begin, end)`` and whether it was cut."""
    encoded = encode(tokenizer, text)
    text_tokens = np.flatnonzero(~encoded.special)
    if len(text_tokens) == 0:
        raise InputError(f"{origin}: the text at {where} has no tokens (empty text); fill or drop the row.")
    lead, tail = int(text_tokens[0]), len(encoded) - int(text_tokens[-1]) - 1
    ids, cut = encoded.ids, False
    if max_length is not None and len(ids) > max_length:
        budget = max_length - lead - tail
        if truncation == "error":
            raise InputError(
                f"{origin}: the text at {where} has {len(ids)} tokens, more than the context of {max_length}; "
                "pass truncation=right or left, or a larger context_length."
            )
        keep = text_tokens[:budget] if truncation == "right" else text_tokens[-budget:]
        ids = np.concatenate([ids[:lead], ids[keep], ids[len(ids) - tail:]])
        text = text[encoded.offsets[keep[0], 0] : encoded.offsets[keep[-1], 1]]
        cut = True
        n_text = budget
    else:
        n_text = int(text_tokens[-1]) - lead + 1
    return ids, text, lead, lead + n_text, cut


def _recorded_sources(sources: Any) -> Any:
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    if is_frame(sources) or hf_kind(sources):
        return [f"<{type(sources).__module__.split('.')[0]}.{type(sources).__name__}>"]
    if isinstance(sources, Sequence) and not isinstance(sources, Mapping):
        return [os.fspath(s) if isinstance(s, (str, os.PathLike)) else f"<{type(s).__name__}>" for s in sources]
    return str(sources)

