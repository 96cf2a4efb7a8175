"""The feature-collection builders by name, for the CLI and ``needle.datasets.build``.

Every builder is a function ``build(sources, tokenizer, **params) -> ProbeDataset``
living in its own module; it is imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from needle.errors import InputError

__all__ = ["BUILDERS", "get_builder", "build_collection"]

#: name → (module, function, one-line description)
BUILDERS: dict[str, tuple[str, str, str]] = {
    "ud": ("needle.datasets.ud", "build_ud",
           "Universal Dependencies CoNLL-U: part of speech, dependency relations, morphology"),
    "text-features": ("needle.datasets.text_features", "build_text_features",
                      "regular-expression features of each token's string, over plain text or CoNLL-U"),
    "python-code": ("needle.datasets.python_code", "build_python_code",
                    "Python source labelled by tokenize and ast (default: the standard library)"),
    "natural-language": ("needle.datasets.natural_language", "build_natural_language",
                         "language of windows of text, mean-aggregated (default: ten UD treebanks)"),
    "genre": ("needle.datasets.genre", "build_genre",
              "genre of windows of text from document ids, mean-aggregated (default: EWT's five genres)"),
    "compound-words": ("needle.datasets.compound_words", "build_compound_words",
                       "last token of a compound XY vs XW / ZY bigrams (default: EWT text)"),
    "next-token": ("needle.datasets.next_token", "build_next_token",
                   "part of speech of the next word, at the current word's last token (default: EWT)"),
    "code-language": ("needle.datasets.code_language", "build_code_language",
                      "language of source files, mean-aggregated after 50 tokens (default: this machine's)"),
    "latex": ("needle.datasets.latex", "build_latex",
              "math, sub/superscripts, fraction parts, title, author, abstract, references in .tex sources"),
    "entity-facts": ("needle.datasets.entity_facts", "build_entity_facts",
                     "a property of a named person (table name,property,value) at the surname, over a corpus"),
    "table": ("needle.datasets.table", "build_table",
              "your own table of texts and labels (.csv/.tsv/.parquet/.jsonl, hf:NAME): binary, multiclass, regression"),
    "space-time": ("needle.datasets.space_time", "build_space_time",
                   "entity names with coordinates or years (world, us, nyc, historical, art, headlines, world-cities)"),
    "dynamics": ("needle.datasets.dynamics", "build_dynamics",
                 "logistic-map or Lorenz-x trajectory strings; current, next (and Lorenz y, z) at separators"),
}


def get_builder(name: str) -> Callable[..., Any]:
    """The builder function called ``name``; the error lists the available ones."""
    try:
        module, function, _ = BUILDERS[name]
    except KeyError:
        raise InputError(f"unknown collection {name!r}; available: {', '.join(BUILDERS)}.") from None
    return getattr(importlib.import_module(module), function)


def build_collection(name: str, sources: Sequence[str] | None, tokenizer: Any, **params: Any):
    """Build collection ``name`` from ``sources`` for ``tokenizer``."""
    return get_builder(name)(sources, tokenizer, **params)
