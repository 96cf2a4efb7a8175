"""The error browser: a probe's false positives and false negatives on its held-out split, in context.

Precision and recall (Section 2.5.4) say how often a neuron-based probe is
wrong; reading the errors says why — a mislabelled example, a feature the
neuron also responds to, a boundary case. A probe is a row of a results
table (its ``neurons``, ``coef`` and ``intercept`` in the units of the
cached activations); its decision score on an example is
``X[row, neurons] @ coef + intercept`` and it predicts positive where the
score is above 0, exactly as the sweep scored it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from needle.errors import InputError
from needle.neurons._common import check_context

__all__ = ["probe_errors", "ERROR_COLUMNS"]

ERROR_COLUMNS = ["feature", "layer", "example", "row", "sequence", "start", "end", "group", "y", "score",
                 "predicted", "outcome", "token", "context_tokens", "focus", "text"]


def probe_errors(
    cache,
    result: Mapping[str, Any] | pd.Series,
    splits: pd.DataFrame | str | os.PathLike,
    *,
    dataset=None,
    tokenizer: Any = None,
    split: str = "test",
    include_correct: bool = False,
    context: tuple[int, int] = (16, 4),
) -> pd.DataFrame:
    """The examples a probe gets wrong on a split, most confident mistakes first.

    Parameters
    ----------
    cache : ActivationCache or path-like
        The cache the sweep read.
    result : mapping or Series
        One row of a results table: ``feature``, ``layer``, ``neurons``,
        ``coef``, ``intercept`` (and ``dataset_hash``, checked against the cache).
    splits : DataFrame or path-like
        The sweep's saved splits (``<results>.splits.parquet``, see
        :func:`needle.probing.splits_path`).
    dataset : ProbeDataset or path-like, optional
        For contexts; default: the dataset the cache records.
    tokenizer : tokenizer, optional
        To show tokens as text; default: loaded from the dataset's record.
    split : {"test", "train"}, default "test"
    include_correct : bool, default False
        Also return the true positives and true negatives.
    context : (int, int), default (16, 4)
        Tokens shown before the example's first token and after its last.

    Returns
    -------
    DataFrame
        Columns :data:`ERROR_COLUMNS`: ``outcome`` is one of
        ``"false_positive"``, ``"false_negative"`` (and ``"true_positive"``,
        ``"true_negative"`` with ``include_correct``); ``score`` the probe's
        decision value; ``context_tokens`` the tokens around the example with
        ``focus`` the index of its first token; ``text`` the context joined.
        Errors come first, each kind sorted by how confidently wrong the
        probe was.
    """
    from needle.activations import load_cache
    from needle.probing.splits import load_splits

    if isinstance(cache, (str, os.PathLike)):
        cache = load_cache(cache)
    if isinstance(splits, (str, os.PathLike)):
        splits = load_splits(splits)
    if split not in ("test", "train"):
        raise InputError(f"split must be 'test' or 'train', not {split!r}.")
    context = check_context(context)
    feature, layer = str(result["feature"]), int(result["layer"])
    neurons = np.asarray(result["neurons"], np.int64)
    coef = np.asarray(result["coef"], np.float64)
    if neurons.shape != coef.shape:
        raise InputError(f"the result row has {neurons.size} neurons but {coef.size} coefficients; "
                         "random-direction baselines are not neuron probes.")
    dataset_hash = result.get("dataset_hash", cache.manifest["dataset_hash"])
    if dataset_hash != cache.manifest["dataset_hash"]:
        raise InputError(f"the result was computed on dataset {str(dataset_hash)[:12]}…, not on the cache's "
                         f"{cache.manifest['dataset_hash'][:12]}…; pass the cache the sweep read.")
    chosen = splits[(splits["dataset_hash"] == dataset_hash) & (splits["feature"] == feature)
                    & (splits["split"] == split)].sort_values("example")
    if not len(chosen):
        raise InputError(f"the splits table has no {split} examples of feature {feature!r} for this dataset.")
    rows = chosen["row"].to_numpy(np.int64)
    y = chosen["y"].to_numpy(np.int8)
    X = np.asarray(cache.layer(layer)[rows][:, neurons], dtype=np.float32)
    score = X.astype(np.float64) @ coef + float(result["intercept"])
    predicted = (score > 0).astype(np.int8)
    outcome = np.where(predicted == 1, np.where(y == 1, "true_positive", "false_positive"),
                       np.where(y == 1, "false_negative", "true_negative"))
    info = cache.rows
    frame = pd.DataFrame({
        "feature": feature, "layer": layer, "example": chosen["example"].to_numpy(np.int64), "row": rows,
        "sequence": info["sequence"][rows].astype(np.int64), "start": info["start"][rows].astype(np.int64),
        "end": info["end"][rows].astype(np.int64), "group": info["group"][rows], "y": y, "score": score,
        "predicted": predicted, "outcome": outcome,
    })
    if not include_correct:
        frame = frame[frame["predicted"] != frame["y"]]
    order = {"false_positive": 0, "false_negative": 1, "true_positive": 2, "true_negative": 3}
    confidence = np.where(frame["predicted"] == 1, -frame["score"], frame["score"])  # most wrong first
    frame = frame.assign(_kind=frame["outcome"].map(order), _conf=confidence)
    frame = frame.sort_values(["_kind", "_conf", "example"], kind="stable").drop(columns=["_kind", "_conf"])
    return _add_context(frame.reset_index(drop=True), cache, dataset, tokenizer, context)


def _add_context(frame: pd.DataFrame, cache, dataset, tokenizer, context: tuple[int, int]) -> pd.DataFrame:
    from needle.datasets.format import ProbeDataset, load_dataset
    from needle.neurons.corpus import TokenNames, _try_load_tokenizer

    if dataset is None:
        dataset = cache.dataset()
    elif not isinstance(dataset, ProbeDataset):
        dataset = load_dataset(dataset)
    if dataset.content_hash() != cache.manifest["dataset_hash"]:
        raise InputError("the dataset given is not the one the cache was extracted from (content hashes differ).")
    if tokenizer is None:
        tokenizer = _try_load_tokenizer(dataset.tokenizer.get("name_or_path"))
    names = TokenNames(tokenizer)
    before, after = context
    tokens_col, focus_col, text_col, token_col = [], [], [], []
    for seq, start, end in zip(frame["sequence"], frame["start"], frame["end"]):
        ids = dataset.tokens[int(seq)]
        a, b = max(0, int(start) - before), min(len(ids), int(end) + after)
        pieces = names.many(ids[a:b])
        tokens_col.append(pieces)
        focus_col.append(int(start) - a)
        token_col.append("".join(names.many(ids[int(start):int(end)])))
        text_col.append(_decode(tokenizer, ids[a:b], pieces))
    frame["token"] = token_col
    frame["context_tokens"] = tokens_col
    frame["focus"] = focus_col
    frame["text"] = text_col
    return frame[ERROR_COLUMNS]


def _decode(tokenizer: Any, ids: np.ndarray, pieces: list[str]) -> str:
    if tokenizer is None:
        return " ".join(pieces)
    return tokenizer.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)
