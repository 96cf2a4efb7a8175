"""Where the labelled corpora that builders' default recipes read are found.

The Universal Dependencies treebanks are not part of the package. A default
recipe (``sources=None``) looks for them, in order:

1. ``$NEEDLE_SHARED_DATA/ud`` when the environment variable is set;
2. ``shared/data/ud`` beside a source checkout of needle (``<checkout>/../shared/data/ud``).

Either way the path is checked and a missing treebank is reported with the
path that was tried and how to point needle at the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from needle.errors import InputError

__all__ = ["ENV_VAR", "recorded_sources", "shared_data_dir", "ud_treebank_files"]

#: Environment variable naming the directory that holds ``ud/``.
ENV_VAR = "NEEDLE_SHARED_DATA"


def shared_data_dir() -> Path:
    """The directory expected to hold ``ud/`` (it may not exist)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    # src/needle/datasets/shared_data.py -> the checkout is parents[3]; the data sits beside it.
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def ud_treebank_files(treebank: str, splits: tuple[str, ...]) -> list[Path]:
    """The CoNLL-U files of one UD treebank, e.g. ``("en_ewt", ("dev", "test"))``.

    Looks for ``<shared>/ud/<treebank>/<treebank>-ud-<split>.conllu.gz`` (or
    the uncompressed ``.conllu``).

    Raises
    ------
    InputError
        A file is missing; the message names the path and the environment
        variable that points needle at the data.
    """
    root = shared_data_dir() / "ud" / treebank
    files = []
    for split in splits:
        candidates = [root / f"{treebank}-ud-{split}.conllu.gz", root / f"{treebank}-ud-{split}.conllu"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise InputError(
                f"the default recipe needs the UD treebank file {candidates[0]}, which does not exist; set "
                f"{ENV_VAR} to the directory holding ud/{treebank}/ or pass the sources explicitly."
            )
        files.append(found)
    return files


def recorded_sources(recipe: str | None, paths: list[Path]) -> Any:
    """What a dataset records as its sources: the recipe's name and files, or the files given."""
    files = [str(path) for path in paths]
    return {"recipe": recipe, "files": files} if recipe else files
