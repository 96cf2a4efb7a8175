"""The ``entity-facts`` feature collection: what a model knows about a named person, read at the surname.

The paper's Wikidata collections (Appendix A.2.2: sex or gender, is alive,
occupation, athlete kind, political party), made from a user's table of
facts and a corpus:

1. **Table** (:func:`read_fact_table`): a CSV or TSV file with the columns
   ``name``, ``property`` and ``value`` (one row per fact; more columns are
   ignored), e.g. ``Ada Lovelace,occupation,mathematician``. A person with
   several values of one property is a positive of each. The paper's
   tables came from a Wikidata dump; any table of this shape works.
2. **Mentions** (:func:`find_mentions`): every occurrence of a table name in
   the corpus, matched word by word (case-sensitive by default, whitespace
   between words free, the longest name first, never inside a longer
   word). Names seen fewer than ``min_mentions`` times (default 2: the
   paper kept names occurring more than once) are dropped; of the rest at
   most ``max_per_name`` mentions (default 3, the paper's) are kept, drawn
   with the seed, so that no single person dominates.
3. **Sequences.** Each kept mention becomes one sequence: the document text
   before it and the name, truncated from the left to ``context_length``
   tokens (default 128, special tokens included) so that it *ends* with the
   name. Shorter contexts are not padded.
4. **Examples** are the tokens of the surname (the last word of the name;
   a last word such as ``Jr.``, ``Sr.``, ``II``, ``III`` or ``IV`` is skipped),
   which keeps a probe from reading the first name (correlated with gender).
   ``piece`` chooses all of them (default), the first or the last, or one
   ``mean`` over them.
5. **Features**, one-vs-rest per property value: ``<property>:<value>``
   (``gender:female``, ``occupation:athlete``). A person's mentions are
   positives of each of their values and negatives of the other values of
   the same property; people without that property are no examples of it.

The group of a sequence is the *person*, so a train/test split never puts
the same person on both sides (a probe could otherwise learn names).

**The paper's own sequences** are in the data files of the PyPI package
``sae-probes`` (files 56–64, :data:`SAE_PROBES_FILES`): Pile snippets that
end with a person's name, labelled with a Wikidata property (sex or gender,
is alive, political party, six occupations), 2,000–5,000 balanced rows
each. ``source="sae-probes"`` builds the collection from them (``pip install
--no-deps sae-probes``, or ``sae_probes=PATH.whl``): one binary feature per
file, the example the prompt's **last token** (the name's last token: the
files do not mark where the name begins, so the surname rules above do not
apply), the context cut on the left to ``context_length`` tokens. The group
is the prompt's last two words, lower-cased — the person's name as far as
it can be told (coarser where a name ends "… of England", never finer), so
the several snippets of one person, a third of the rows, stay on one side
of a split.
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.datasets.alignment import EncodedText, encode, tokens_in_span
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.builder import check_positive_ratio, find_files
from needle.datasets.format import ProbeDataset
from needle.datasets.readers.text import read_text_documents
from needle.datasets.sae_probes_data import PromptTask, SaeProbesFiles, build_prompt_dataset, source_param
from needle.datasets.tokenizer_info import fast_tokenizer, tokenizer_info
from needle.errors import InputError

__all__ = [
    "BUILDER",
    "COLLECTION",
    "REQUIRED_COLUMNS",
    "SAE_PROBES_FILES",
    "Mention",
    "build_entity_facts",
    "find_mentions",
    "read_fact_table",
    "surname_span",
]

BUILDER = "entity_facts"
COLLECTION = "entity_facts"
REQUIRED_COLUMNS = ("name", "property", "value")
PIECES = ("all", "first", "last", "mean")
_NAME_SUFFIXES = frozenset(("Jr.", "Jr", "Sr.", "Sr", "II", "III", "IV"))
_WORD = re.compile(r"\w+")
#: source="sae-probes": feature → (property, file, positive target value)
SAE_PROBES_FILES = {
    "gender:male": ("gender", "56_wikidatasex_or_gender", "male"),
    "is_alive:true": ("is_alive", "57_wikidatais_alive", "true"),
    "party:democratic": ("party", "58_wikidatapolitical_party", "Democratic Party"),
    **{f"occupation:{job}": ("occupation", f"{n}_wikidata_occupation_is{job}", "1")
       for n, job in zip(range(59, 65), ("journalist", "athlete", "actor", "politician", "singer", "researcher"))},
}


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def read_fact_table(path: str | os.PathLike) -> dict[str, dict[str, set[str]]]:
    """Read a table of facts: ``{name: {property: {values}}}``.

    Parameters
    ----------
    path : path-like
        A CSV (``.csv``) or TSV (``.tsv``, ``.tab``; other suffixes: the
        delimiter is guessed from the header) file with a header holding
        ``name``, ``property`` and ``value`` (case-insensitive). Whitespace
        inside names is collapsed.

    Raises
    ------
    InputError
        A missing or unreadable file, a missing column (the message names the
        file and the columns it has), an empty cell (with its line), or a
        table without rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"fact table {path} does not exist; pass a CSV/TSV file with columns name, property, value.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the fact table ({exc}); it must be UTF-8 text.") from None
    suffix = path.suffix.lower()
    header = text.split("\n", 1)[0]
    delimiter = "\t" if suffix in (".tsv", ".tab") or (suffix != ".csv" and "\t" in header) else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        columns = [c.strip().lower() for c in next(reader)]
    except StopIteration:
        raise InputError(f"{path}: the fact table is empty; it needs a header name, property, value.") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'} "
            f"(delimiter {delimiter!r}). The table needs a header with name, property, value."
        )
    where = [columns.index(c) for c in REQUIRED_COLUMNS]
    facts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [row[i].strip() if i < len(row) else "" for i in where]
        empty = [c for c, cell in zip(REQUIRED_COLUMNS, cells) if not cell]
        if empty:
            raise InputError(f"{path}, line {line}: empty {', '.join(empty)}; every row needs a name, property, value.")
        name, prop, value = cells
        facts[" ".join(name.split())][prop].add(value)
    if not facts:
        raise InputError(f"{path}: the fact table has a header but no rows.")
    return {name: dict(props) for name, props in facts.items()}


# ---------------------------------------------------------------------------------------------
# Mentions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mention:
    """One occurrence of a table name in a document.

    Attributes
    ----------
    name : str
        The name as in the table.
    document : int
        Index of the document in the corpus.
    begin, end : int
        Character span of the mention in the document.
    surname : (int, int)
        Character span of the surname in the document.
    """

    name: str
    document: int
    begin: int
    end: int
    surname: tuple[int, int]


def surname_span(name: str) -> tuple[int, int]:
    """Character span of the surname in ``name``: its last word, skipping a suffix (``Jr.``, ``III``…)."""
    parts = [(m.start(), m.end()) for m in re.finditer(r"\S+", name)]
    if len(parts) >= 3 and name[parts[-1][0] : parts[-1][1]] in _NAME_SUFFIXES:
        parts = parts[:-1]
    begin, end = parts[-1]
    return begin, end


def find_mentions(
    names: Iterable[str], documents: list[tuple[str, str]], *, case_sensitive: bool = True
) -> list[Mention]:
    """Every occurrence of ``names`` in ``documents``, in document and text order.

    Matching is word by word (``\\w+`` words), so a name never matches inside
    a longer word; the text between the matched words must equal the name's
    up to whitespace (``J. R. Smith`` needs the dots). Punctuation after the
    name's last word (the dot of ``Jr.``) is part of the mention when the text
    has it, and not required. Where names overlap the longest wins and
    matches do not overlap.
    """
    fold = (lambda s: s) if case_sensitive else str.casefold
    index: dict[str, list[tuple[int, str, list[str]]]] = defaultdict(list)
    tails: dict[str, str] = {}
    for name in dict.fromkeys(names):
        words = [fold(w) for w in _WORD.findall(name)]
        if words:
            index[words[0]].append((len(words), name, words))
            # What follows the last word, e.g. the dot of "Jr.": part of the mention when the text has it.
            tails[name] = name[[m.end() for m in _WORD.finditer(name)][-1] :]
    for candidates in index.values():
        candidates.sort(key=lambda c: -c[0])
    mentions = []
    for d, (_, text) in enumerate(documents):
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        words = [fold(text[b:e]) for b, e in spans]
        i = 0
        while i < len(words):
            match = None
            for n, name, name_words in index.get(words[i], ()):
                if words[i : i + n] == name_words:
                    begin, end = spans[i][0], spans[i + n - 1][1]
                    tail = tails[name]
                    if fold(" ".join(text[begin:end].split())) == fold(name[: len(name) - len(tail)]):
                        match = (n, name, begin, end + len(tail) if text.startswith(tail, end) else end)
                        break
            if match is None:
                i += 1
                continue
            n, name, begin, end = match
            s_begin, s_end = surname_span(text[begin:end])
            mentions.append(Mention(name, d, begin, end, (begin + s_begin, begin + s_end)))
            i += n
    return mentions


# ---------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------
def _context(tokenizer: Any, text: str, end: int, context_length: int, n_special: int) -> tuple[int, EncodedText]:
    """The longest suffix of ``text[:end]`` that encodes to at most ``context_length`` tokens, cut at a token start.

    Returns its start offset in ``text`` and its encoding (special tokens included).
    """
    budget = context_length - n_special
    chars = 8 * budget
    while True:
        start = max(0, end - chars)
        window = text[start:end]
        offsets = tokenizer(window, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        if len(offsets) > budget or start == 0:
            break
        chars *= 2
    first = max(0, len(offsets) - budget)  # the first token kept
    while True:
        cut = _skip_space(text, start + offsets[first][0] if first else start, end)
        encoded = encode(tokenizer, text[cut:end])
        if len(encoded) <= context_length or first >= len(offsets) - 1:
            return cut, encoded
        # Byte-level BPE can merge across the cut differently: drop one more token and retry.
        first += 1


def _skip_space(text: str, at: int, end: int) -> int:
    while at < end and text[at].isspace():
        at += 1
    return at


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
def build_entity_facts(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any = "minilm",
    *,
    table: str | os.PathLike | None = None,
    properties: Iterable[str] | None = None,
    context_length: int = 128,
    min_mentions: int = 2,
    max_per_name: int = 3,
    piece: str = "all",
    case_sensitive: bool = True,
    positive_ratio: float | None = None,
    min_positives: int = 2,
    max_positives: int | None = None,
    seed: int = 0,
    source: str | None = None,
    sae_probes: str | os.PathLike | None = None,
    max_rows: int | None = None,
) -> ProbeDataset:
    """Build the ``entity_facts`` collection: properties of people, probed on their surnames.

    See the module docstring for the matching, truncation and labelling rules.

    Parameters
    ----------
    sources : path-like or iterable of path-like
        The corpus: text files and directories of ``*.txt`` files. A
        ``.csv``/``.tsv`` among them is taken as the table when ``table`` is
        not given (so ``needle dataset build entity-facts --source
        facts.csv --source corpus/`` works).
    tokenizer : fast tokenizer or str, default "minilm"
    table : path-like, optional
        The fact table (:func:`read_fact_table`).
    properties : iterable of str, optional
        Properties to make features of (default: all in the table).
    context_length : int, default 128
        Most tokens per sequence, special tokens included (the paper's 128).
    min_mentions : int, default 2
        Names mentioned fewer times in the corpus are dropped.
    max_per_name : int, default 3
        Most examples (mentions) per name.
    piece : {"all", "first", "last", "mean"}, default "all"
        Which surname tokens are examples: every one, the first, the last, or
        one example averaging them.
    case_sensitive : bool, default True
        Match names with their case.
    positive_ratio : float or None, default None
        Target share of positives per feature; ``None`` keeps every negative
        (the paper's one-vs-rest per property).
    min_positives : int, default 2
        Features with fewer positive examples are dropped.
    max_positives : int, optional
        Cap on positives per feature.
    seed : int, default 0
        Seeds the choice of mentions per name and the subsampling.
    source : {"sae-probes"}, optional
        Build from the paper's sequences in the sae-probes data files instead
        of a corpus and table (module docstring); ``properties`` then picks among
        gender, is_alive, party and occupation.
    sae_probes : path-like, optional
        ``source="sae-probes"``: the wheel or unpacked package; default the installed package.
    max_rows : int, optional
        ``source="sae-probes"``: a seeded sample of at most this many rows per file.

    Returns
    -------
    ProbeDataset
        One sequence per kept mention (group: the person's name); features
        ``<property>:<value>``. ``extra["names"]`` counts the names in the
        table, mentioned, kept and their examples; ``extra["mentions"]`` the
        mention count of every kept name.

    Raises
    ------
    InputError
        No table, a bad table or corpus, an unknown property, bad
        parameters, no name mentioned often enough, or no feature with both
        classes.
    """
    tokenizer = fast_tokenizer(tokenizer)
    if source_param(source) == "sae-probes":
        n_special = tokenizer.num_special_tokens_to_add(pair=False)
        _check_parameters(context_length, n_special, min_mentions, max_per_name, piece, positive_ratio, min_positives)
        if sources is not None or table is not None:
            raise InputError(f"{BUILDER}: source=sae-probes reads the package's files; drop --source and table=.")
        return _from_sae_probes(tokenizer, properties, sae_probes, context_length, positive_ratio, min_positives,
                                max_positives, max_rows, seed)
    corpus, table = _split_sources(sources, table)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    _check_parameters(context_length, n_special, min_mentions, max_per_name, piece, positive_ratio, min_positives)
    facts = read_fact_table(table)
    available = sorted({p for props in facts.values() for p in props})
    if properties is not None:
        properties = properties.split(",") if isinstance(properties, str) else list(properties)
        properties = [p.strip() for p in properties if p.strip()]
        unknown = [p for p in properties if p not in available]
        if unknown:
            raise InputError(
                f"{table}: no property {', '.join(map(repr, unknown))}; the table has {', '.join(available)}."
            )
        facts = {n: {p: v for p, v in props.items() if p in properties} for n, props in facts.items()}
        facts = {n: props for n, props in facts.items() if props}
    # In path order (not name order): the order mentions are found in, which the sampling follows.
    files = sorted(find_files(corpus, ".txt", what="text files or directories of *.txt files"))
    documents = read_text_documents(files)
    mentions = find_mentions(facts, documents, case_sensitive=case_sensitive)
    by_name: dict[str, list[Mention]] = defaultdict(list)
    for mention in mentions:
        by_name[mention.name].append(mention)
    kept_names = sorted(n for n, ms in by_name.items() if len(ms) >= min_mentions)
    if not kept_names:
        raise InputError(
            f"{BUILDER}: no name of {table} is mentioned at least {min_mentions} times in the corpus "
            f"({len(by_name)} mentioned at all); use a larger corpus or lower min_mentions."
        )
    params = {
        "sources": corpus,
        "table": os.fspath(table),
        "properties": properties,
        "context_length": context_length,
        "min_mentions": min_mentions,
        "max_per_name": max_per_name,
        "piece": piece,
        "case_sensitive": case_sensitive,
        "positive_ratio": positive_ratio,
        "min_positives": min_positives,
        "max_positives": max_positives,
        "seed": seed,
    }
    assembler = DatasetAssembler(BUILDER, params, tokenizer_info(tokenizer))
    values: dict[str, set[str]] = defaultdict(set)
    for name in kept_names:
        for prop, vals in facts[name].items():
            values[prop] |= vals
    for prop in sorted(values):
        for value in sorted(values[prop]):
            assembler.add_feature(
                f"{prop}:{value}", description=f"a person whose {prop} is {value} (surname tokens)",
                collection=COLLECTION, level="token",
            )
    rng = np.random.default_rng(seed)
    n_examples = 0
    for name in kept_names:
        chosen = by_name[name]
        if len(chosen) > max_per_name:
            chosen = [chosen[i] for i in np.sort(rng.choice(len(chosen), max_per_name, replace=False))]
        for mention in chosen:
            if _add_mention(assembler, tokenizer, documents, mention, facts[name], values, context_length,
                            n_special, piece):
                n_examples += 1
    dataset = assembler.build(
        positive_ratio=positive_ratio, seed=seed, min_positives=min_positives, max_positives=max_positives
    )
    dataset.extra["names"] = {
        "in_table": len(facts),
        "mentioned": len(by_name),
        "kept": len(kept_names),
        "mentions_used": n_examples,
    }
    dataset.extra["mentions"] = {name: len(by_name[name]) for name in kept_names}
    return dataset


def _from_sae_probes(tokenizer, properties, sae_probes, context_length, positive_ratio, min_positives,
                     max_positives, max_rows, seed) -> ProbeDataset:
    """The collection from sae-probes' Wikidata files (see the module docstring)."""
    available = sorted({prop for prop, _, _ in SAE_PROBES_FILES.values()})
    if properties is not None:
        properties = properties.split(",") if isinstance(properties, str) else list(properties)
        properties = [p.strip() for p in properties if p.strip()]
        unknown = [p for p in properties if p not in available]
        if unknown:
            raise InputError(f"source=sae-probes has no property {', '.join(map(repr, unknown))}; "
                             f"it has {', '.join(available)}.")
    files = SaeProbesFiles(sae_probes, needed_by=f"{BUILDER} with source=sae-probes")
    tasks = [PromptTask(feature, stem, positive, f"a person whose {feature.replace(':', ' is ')} "
                                                 f"(last token of the name; sae-probes {stem})")
             for feature, (prop, stem, positive) in SAE_PROBES_FILES.items()
             if properties is None or prop in properties]  # fmt: skip
    params = {"source": "sae-probes", "sae_probes": None if sae_probes is None else os.fspath(sae_probes),
              "properties": properties, "context_length": context_length, "positive_ratio": positive_ratio,
              "min_positives": min_positives, "max_positives": max_positives, "max_rows": max_rows,
              "seed": seed}  # fmt: skip
    return build_prompt_dataset(tasks, tokenizer, builder=BUILDER, params=params, collection=COLLECTION, files=files,
                                context_length=context_length, group=_name_group, max_rows=max_rows, seed=seed,
                                positive_ratio=positive_ratio, min_positives=min_positives,
                                max_positives=max_positives)  # fmt: skip


def _name_group(prompt: str) -> str:
    """The person of a prompt that ends with a name: its last two words, lower-cased."""
    return " ".join(_WORD.findall(prompt.lower())[-2:])


def _add_mention(
    assembler: DatasetAssembler,
    tokenizer: Any,
    documents: list[tuple[str, str]],
    mention: Mention,
    person: dict[str, set[str]],
    values: dict[str, set[str]],
    context_length: int,
    n_special: int,
    piece: str,
) -> bool:
    """Add one mention's sequence and its examples; False when its surname has no token."""
    text = documents[mention.document][1]
    cut, encoded = _context(tokenizer, text, mention.end, context_length, n_special)
    s_begin, s_end = mention.surname
    tokens = tokens_in_span(encoded, s_begin - cut, s_end - cut, piece="all" if piece == "mean" else piece)
    if len(tokens) == 0:
        return False
    sequence = assembler.add_sequence(encoded.ids, mention.name, text[cut : mention.end])
    for prop, own in person.items():
        for value in values[prop]:
            label = int(value in own)
            if piece == "mean":
                assembler.add_examples(f"{prop}:{value}", sequence, tokens[0], label, end=tokens[-1] + 1,
                                       aggregation="mean")
            else:
                assembler.add_examples(f"{prop}:{value}", sequence, tokens, label)
    return True


def _split_sources(sources: Any, table: Any) -> tuple[list[str], Path]:
    """The corpus sources and the table (given, or the one ``.csv``/``.tsv`` among ``sources``)."""
    if sources is None:
        raise InputError(f"{BUILDER} needs a corpus: pass text files or directories (and table=facts.csv).")
    items = [os.fspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]
    tables = [s for s in items if Path(s).suffix.lower() in (".csv", ".tsv", ".tab")]
    corpus = [s for s in items if s not in tables]
    if table is None:
        if len(tables) != 1:
            raise InputError(
                f"{BUILDER} needs one fact table: pass table=PATH (--param table=PATH) or exactly one .csv/.tsv "
                f"among the sources (found {len(tables)})."
            )
        table = tables[0]
    elif tables:
        raise InputError(f"a fact table was given (table={os.fspath(table)}) and also among the sources: {tables}.")
    if not corpus:
        raise InputError(f"{BUILDER} needs a corpus besides the table: pass text files or directories.")
    return corpus, Path(table)


def _check_parameters(
    context_length: int,
    n_special: int,
    min_mentions: int,
    max_per_name: int,
    piece: str,
    positive_ratio: float | None,
    min_positives: int,
) -> None:
    if not isinstance(context_length, (int, np.integer)) or context_length < n_special + 4:
        raise InputError(f"context_length must be an integer of at least {n_special + 4}, not {context_length!r}.")
    for name, value in (("min_mentions", min_mentions), ("max_per_name", max_per_name),
                        ("min_positives", min_positives)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, not {value!r}.")
    if piece not in PIECES:
        raise InputError(f"piece must be one of {', '.join(PIECES)}, not {piece!r}.")
    check_positive_ratio(positive_ratio)
