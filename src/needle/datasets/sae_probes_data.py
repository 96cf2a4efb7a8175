"""The data files of the PyPI package ``sae-probes``, read without importing it, and datasets made of them.

``sae-probes`` (Kantamneni et al. 2025, MIT) ships the probing datasets of its
paper as zstd-compressed CSVs under ``sae_probes/data/cleaned_data/``
(columns ``prompt`` and ``target``, sometimes ``prompt_len``), listed in
``sae_probes/data/probing_datasets_MASTER.csv.zst`` (tag, file, data type).
Among them are the thesis's own datasets: the compound-word bigram sets
(files 65–85), the Wikidata person facts (56–64) and code-language samples
(158–160), besides about a hundred other binary tasks.

:class:`SaeProbesFiles` finds them in the installed package (located with
:func:`importlib.util.find_spec`, which does not import it or its heavy
dependencies), in an unpacked package directory, or in the wheel itself
(``pip download --no-deps sae-probes``). :func:`build_prompt_dataset` turns
some of those files into a :class:`~needle.datasets.format.ProbeDataset`:
one sequence per distinct prompt, one binary feature per file, read at the
prompt's last token or averaged over its tokens. The compound-words,
entity-facts and code-language builders (``source="sae-probes"``) and the
``table`` collection's ``preset="sae-probes"`` use it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import name_seed
from needle.datasets.format import ProbeDataset
from needle.datasets.tokenizer_info import tokenizer_info
from needle.errors import InputError

__all__ = ["DATA_DIR", "PromptTask", "SaeProbesFiles", "build_prompt_dataset", "read_sae_probes_file",
           "sae_probes_index"]

#: Where the data files lie inside the wheel (and the installed package's parent directory).
DATA_DIR = "sae_probes/data/cleaned_data/"
_INDEX = "sae_probes/data/probing_datasets_MASTER.csv.zst"
_KINDS = {"Binary Classification": "binary", "Multiclass Classification": "multiclass",
          "Continuous Data": "continuous"}
_TRUE_WORDS = ("1", "true", "yes")


class SaeProbesFiles:
    """The ``cleaned_data`` files of sae-probes: in the installed package, an unpacked directory, or the wheel.

    Parameters
    ----------
    location : path-like, optional
        The wheel (``.whl``), or a directory holding ``sae_probes/data/cleaned_data`` or ``data/cleaned_data``;
        default the installed ``sae_probes`` package.
    needed_by : str, default "this dataset"
        Who needs the files, for the error when they are absent.

    Raises
    ------
    InputError
        No installed package and no location, or a location that is neither.
    """

    def __init__(self, location: Any = None, *, needed_by: str = "this dataset"):
        self._zip = None
        if location is None:
            import importlib.util

            spec = importlib.util.find_spec("sae_probes")  # finds the package without importing it (or its deps)
            if spec is None or not spec.submodule_search_locations:
                raise InputError(
                    f"{needed_by} reads the sae-probes package's data files, which are not installed: "
                    "`pip install --no-deps sae-probes`, or pass --param sae_probes=PATH/sae_probes-*.whl "
                    "(from `pip download --no-deps sae-probes`).")
            location = Path(list(spec.submodule_search_locations)[0]).parent
        location = Path(location)
        if location.is_file() and zipfile.is_zipfile(location):
            self._zip = zipfile.ZipFile(location)
            self.where = str(location)
        elif (location / DATA_DIR).is_dir() or (location / "data" / "cleaned_data").is_dir():
            self._dir = location / DATA_DIR if (location / DATA_DIR).is_dir() else location / "data" / "cleaned_data"
            self.where = str(self._dir)
        else:
            raise InputError(f"sae_probes={location}: neither the sae-probes wheel nor a directory holding "
                             f"{DATA_DIR}; pass the .whl from `pip download --no-deps sae-probes`.")

    def stems(self) -> list[str]:
        """The data files present (names without ``.csv.zst``), in file-number order."""
        if self._zip is not None:
            names = [n[len(DATA_DIR):] for n in self._zip.namelist() if n.startswith(DATA_DIR)]
        else:
            names = [p.name for p in self._dir.iterdir()]
        stems = [n[: -len(".csv.zst")] for n in names if n.endswith(".csv.zst") and "/" not in n]
        return sorted(stems, key=lambda s: (int(s.split("_", 1)[0]) if s.split("_", 1)[0].isdigit() else 10**9, s))

    def read(self, stem: str):
        """One data file as a DataFrame (``prompt``, ``target``, …); strings stay strings ("NA" is not missing)."""
        name = f"{stem}.csv.zst"
        try:
            raw = self._zip.read(DATA_DIR + name) if self._zip is not None else (self._dir / name).read_bytes()
        except (KeyError, FileNotFoundError):
            raise InputError(f"{self.where} has no {DATA_DIR}{name}; is it the sae-probes wheel (version 0.4)?") from None
        frame = _read_zstd_csv(raw, f"{self.where}: {name}")
        if not {"prompt", "target"} <= set(frame.columns):
            raise InputError(f"{self.where}: {name} lacks the prompt and target columns (has {list(frame.columns)}).")
        return frame

    def read_index(self):
        """The package's index of datasets (``probing_datasets_MASTER.csv.zst``), or None when absent."""
        if self._zip is not None:
            try:
                raw = self._zip.read(_INDEX)
            except KeyError:
                return None
        else:
            path = self._dir.parent / "probing_datasets_MASTER.csv.zst"
            if not path.is_file():
                return None
            raw = path.read_bytes()
        return _read_zstd_csv(raw, f"{self.where}: {_INDEX}")


def _read_zstd_csv(raw: bytes, what: str):
    import pandas as pd
    import pyarrow as pa

    try:
        text = pa.CompressedInputStream(pa.BufferReader(raw), "zstd").read()
        return pd.read_csv(io.BytesIO(text), keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{what}: cannot read it ({exc}).") from None


def read_sae_probes_file(stem: str, sae_probes: Any = None):
    """One sae-probes data file (``prompt``, ``target``, …) as a DataFrame, e.g. ``read_sae_probes_file("18_world_latitude")``."""
    return SaeProbesFiles(sae_probes).read(stem)


def sae_probes_index(sae_probes: Any = None, *, files: SaeProbesFiles | None = None):
    """The datasets of sae-probes whose file is present: ``stem``, ``tag`` and ``kind`` (binary, multiclass, continuous).

    Read from the package's index; without one, every file is listed with kind ``""`` (unknown).

    Returns
    -------
    DataFrame with columns stem, tag, kind, one row per present file, in file-number order.
    """
    import pandas as pd

    files = files or SaeProbesFiles(sae_probes, needed_by="the sae-probes index")
    present = files.stems()
    index = files.read_index()
    kinds: dict[str, str] = {}
    if index is not None and {"Dataset save name", "Data type"} <= set(index.columns):
        for save_name, kind in zip(index["Dataset save name"].fillna("").astype(str), index["Data type"].fillna("").astype(str)):
            stem = save_name.rsplit("/", 1)[-1].removesuffix(".csv")
            kinds[stem] = _KINDS.get(kind.strip(), "")
    return pd.DataFrame({"stem": present, "tag": [s.split("_", 1)[-1] for s in present],
                         "kind": [kinds.get(s, "") for s in present]})


@dataclass(frozen=True)
class PromptTask:
    """One binary feature made of one sae-probes file.

    Attributes
    ----------
    feature : str
        The feature's name.
    stem : str
        The file (name without ``.csv.zst``).
    positive : str, optional
        The positive ``target`` value as text (``"bigram"``, ``"true"``, ``"1"``); default the one of
        1/true/yes present, else the second value in sorted order.
    description : str
    """

    feature: str
    stem: str
    positive: str | None = None
    description: str = ""


def build_prompt_dataset(
    tasks: Sequence[PromptTask],
    tokenizer: Any,
    *,
    builder: str,
    params: dict[str, Any],
    collection: str,
    files: SaeProbesFiles,
    level: str = "token",
    position: str = "last",
    context_length: int | None = None,
    skip_tokens: int = 0,
    group: Callable[[str], str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    positive_ratio: float | None = None,
    min_positives: int = 2,
    max_positives: int | None = None,
) -> ProbeDataset:
    """A dataset of sae-probes prompts: one sequence per distinct prompt, one binary feature per task.

    Parameters
    ----------
    tasks : sequence of PromptTask
    tokenizer : fast tokenizer
    builder, params, collection : str, dict, str
        Recorded in the dataset (who built it, with what).
    files : SaeProbesFiles
    level : {"token", "sequence"}, default "token"
    position : {"last", "mean"}, default "last"
        ``last``: the example is the prompt's last text token, and a long prompt loses its beginning;
        ``mean``: the mean over its text tokens after ``skip_tokens``, and a long prompt loses its end.
    context_length : int, optional
        Most tokens per sequence, special tokens included; default the tokenizer's limit.
    skip_tokens : int, default 0
        ``mean`` only: leading tokens (special ones included) left out of the mean; a prompt with fewer
        tokens keeps its last text token in the mean.
    group : callable, optional
        The group of a prompt (no group straddles a train/test split); default the prompt itself, so
        copies of a prompt stay together.
    max_rows : int, optional
        Use a seeded sample of at most this many rows of each file.
    seed : int, default 0
    positive_ratio, min_positives, max_positives
        As for :meth:`~needle.datasets.assembler.DatasetAssembler.build`.

    Returns
    -------
    ProbeDataset
        ``extra["sae_probes"]`` records the files read, where from, and per feature the rows used,
        the positive value, duplicate rows merged and prompts left out for contradicting labels.
    """
    from needle.datasets.table import _key, _max_length, _tokens

    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer))
                                 or max_rows < 2):
        raise InputError(f"max_rows must be an integer >= 2, not {max_rows!r}.")
    truncation = "left" if position == "last" else "right"
    max_length = _max_length(tokenizer, context_length)
    group = group or (lambda prompt: prompt)
    assembler = DatasetAssembler(builder, params, tokenizer_info(tokenizer))
    sequence_of: dict[str, int] = {}
    spans: list[tuple[int, int]] = []
    report: dict[str, dict[str, Any]] = {}
    for task in tasks:
        frame = files.read(task.stem)
        prompts = frame["prompt"].astype(str).tolist()
        keys = [_key(v) for v in frame["target"].tolist()]
        order = np.arange(len(prompts))
        if max_rows is not None and len(order) > max_rows:
            order = np.sort(np.random.default_rng([seed, name_seed(task.feature)]).choice(len(order), max_rows,
                                                                                           replace=False))
        distinct = sorted(set(keys))
        if len(distinct) != 2:
            raise InputError(f"{files.where}: {task.stem} has {len(distinct)} target values "
                             f"({', '.join(distinct[:5])}); a binary task needs two.")
        positive = task.positive if task.positive is not None else _default_positive(distinct)
        if positive not in distinct:
            raise InputError(f"{files.where}: {task.stem} has no target {positive!r} (has {', '.join(distinct)}).")
        labels: dict[str, int] = {}
        conflicting: set[str] = set()
        for i in order:
            label = int(keys[i] == positive)
            if labels.setdefault(prompts[i], label) != label:
                conflicting.add(prompts[i])
        for prompt in conflicting:
            del labels[prompt]
        assembler.add_feature(task.feature, description=task.description or f"{task.stem}: target == {positive!r}",
                              collection=collection, level=level)
        used = []
        for prompt, label in labels.items():
            if prompt not in sequence_of:
                if not prompt.strip():
                    continue
                ids, kept, begin, end, _ = _tokens(tokenizer, prompt, max_length, truncation, task.stem, files.where)
                digest = hashlib.sha256(group(prompt).encode()).hexdigest()[:16]
                sequence_of[prompt] = assembler.add_sequence(ids, group=f"sae-probes:{digest}", text=kept)
                spans.append((begin, end))
            used.append((sequence_of[prompt], label))
        sequences = np.array([s for s, _ in used], np.int64)
        y = np.array([label for _, label in used], np.float64)
        begins = np.array([spans[s][0] for s in sequences], np.int64)
        ends = np.array([spans[s][1] for s in sequences], np.int64)
        if position == "last":
            assembler.add_examples(task.feature, sequences, ends - 1, y)
        else:
            skip = np.clip(skip_tokens - begins, 0, np.maximum(ends - begins - 1, 0))
            assembler.add_examples(task.feature, sequences, begins, y, end=ends, aggregation="mean", skip=skip)
        report[task.feature] = {"file": task.stem, "positive": positive, "rows": int(len(order)),
                                "examples": int(len(used)), "positives": int(y.sum()),
                                "duplicate_rows": int(len(order) - len(labels) - len(conflicting)),
                                "contradicting_prompts": len(conflicting)}  # fmt: skip
    dataset = assembler.build(positive_ratio=positive_ratio, seed=seed, min_positives=min_positives,
                              min_negatives=min_positives, max_positives=max_positives)
    dataset.extra["sae_probes"] = {"source": files.where, "features": report}
    return dataset


def _default_positive(distinct: list[str]) -> str:
    true_like = [d for d in distinct if d.lower() in _TRUE_WORDS]
    return true_like[0] if len(true_like) == 1 else distinct[1]


def source_param(value: Any) -> str | None:
    """``source=`` of a builder: None (its own default) or ``"sae-probes"``; anything else is refused."""
    if value is None or value == "corpus":
        return None
    if str(value).strip().lower().replace("_", "-") == "sae-probes":
        return "sae-probes"
    raise InputError(f"source must be 'sae-probes' (the sae-probes package's data files) or left out, not {value!r}.")
