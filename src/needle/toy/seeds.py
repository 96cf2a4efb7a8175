"""A family of toy models that differ only in their seed: one corpus, one tokenizer, several initialisations.

Chapter 3 compares neurons of models trained from different random seeds on
the same data. Correlating two models token by token needs the same token
stream in each, so the family trains its tokenizer once and every member
reuses it. The layout on disk::

    family/
      family.json        members, their seeds, the tokenizer's fingerprint
      tokenizer/         the shared tokenizer (save_pretrained)
      seed-0/ seed-1/ …  one toy model each (needle toy train's output)

A member seeds its initialisation and batch order; the corpus and its split
are the family's (the ``seed`` of :func:`needle.toy.corpus.gather_corpus`, ``--data-seed`` on the CLI).
Training is resumable: a member already on disk with the family's tokenizer is
kept, so an interrupted ``needle toy train-seeds`` picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from needle.errors import FormatError, InputError
from needle.toy.config import ToySize
from needle.toy.corpus import ToyCorpus
from needle.toy.tokenizer import load_tokenizer_dir, tokenizer_fingerprint, train_tokenizer
from needle.toy.train import TrainSettings, train_toy_model

__all__ = ["FAMILY_FILE", "FAMILY_FORMAT", "shared_tokenizer", "train_seed_family", "write_family"]

FAMILY_FILE = "family.json"
FAMILY_FORMAT = "needle-seed-family"


def shared_tokenizer(path: str | os.PathLike, corpus: ToyCorpus | None = None, vocab_size: int = 4096,
                     *, echo: Callable[[str], None] | None = None) -> Any:
    """The tokenizer saved at ``path``; trained on ``corpus.train`` and saved there first if there is none.

    Train once, reuse: every later call with the same ``path`` returns the
    same tokenizer, whatever the corpus.

    Raises
    ------
    InputError
        ``path`` has no tokenizer and no corpus was given, or holds a tokenizer
        without the toy's special tokens.
    """
    from needle._io import atomic_directory

    path = Path(path).expanduser()
    if (path / "tokenizer.json").is_file():
        return load_tokenizer_dir(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{path} exists but holds no tokenizer.json; pass a tokenizer directory or a new path.")
    if corpus is None:
        raise InputError(f"no tokenizer at {path}; give the corpus to train one there.")
    tokenizer = train_tokenizer((u.text for u in corpus.train), vocab_size)
    with atomic_directory(path, overwrite=path.exists()) as tmp:
        tokenizer.save_pretrained(tmp)
    if echo:
        echo(f"tokenizer: {len(tokenizer)} tokens trained and saved to {path}")
    return tokenizer


def write_family(directory: str | os.PathLike, members: Sequence[dict[str, Any]], **extra: Any) -> Path:
    """Write ``family.json``: ``members`` are dicts with ``name``, ``model`` (a path relative to the
    family directory, or a hub id) and ``seed``."""
    from needle._io import write_json_atomic
    from needle._version import __version__

    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    names = [m["name"] for m in members]
    if len(set(names)) != len(names):
        raise InputError(f"family member names must be unique, got {names}.")
    path = directory / FAMILY_FILE
    write_json_atomic(path, {"format": FAMILY_FORMAT, "version": 1, "needle_version": __version__,
                             "members": list(members), **extra})
    return path


def train_seed_family(
    out: str | os.PathLike,
    corpus: ToyCorpus,
    seeds: Sequence[int],
    *,
    size: ToySize | None = None,
    settings: TrainSettings | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train one toy model per seed on ``corpus``, all with one tokenizer, under ``out``.

    Parameters
    ----------
    out : path-like
        The family directory (created; see the module docstring for its layout).
    corpus : ToyCorpus
        The same for every member.
    seeds : sequence of int
        One member ``seed-{s}`` per seed (distinct).
    size : ToySize, optional
    settings : TrainSettings, optional
        Shared by the members; its ``seed`` is replaced by each member's.
    overwrite : bool
        Retrain members already on disk (the tokenizer is kept).
    echo : callable or None

    Returns
    -------
    dict
        The content of ``family.json``, with each member's held-out loss.

    Raises
    ------
    InputError
        Repeated seeds, or a member on disk trained with another tokenizer.
    """
    from needle._io import read_json

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"give distinct seeds, got {seeds}.")
    settings = settings if settings is not None else TrainSettings()
    size = size if size is not None else ToySize()
    size.check()
    settings.check()
    say = echo or (lambda _: None)
    out = Path(out).expanduser()
    tokenizer = shared_tokenizer(out / "tokenizer", corpus, settings.vocab_size, echo=say)
    fingerprint = tokenizer_fingerprint(tokenizer)
    members = []
    for seed in seeds:
        name = f"seed-{seed}"
        path = out / name
        summary = None
        if path.exists() and not overwrite:
            try:
                summary = read_json(path / "training.json")
            except FormatError:
                raise InputError(f"{path} exists but is no trained toy model; remove it or pass --overwrite.") from None
            if summary.get("tokenizer", {}).get("sha256") != fingerprint:
                raise InputError(f"{path} was trained with another tokenizer than {out / 'tokenizer'}; "
                                 "remove it or pass --overwrite.")
            say(f"{name}: already trained (held-out loss {summary.get('heldout_loss')}), kept")
        if summary is None:
            say(f"{name}: training")
            summary = train_toy_model(path, corpus, size=size, settings=dataclasses.replace(settings, seed=seed),
                                      tokenizer=tokenizer, overwrite=overwrite, echo=echo).summary
        members.append({"name": name, "model": name, "seed": seed, "heldout_loss": summary.get("heldout_loss"),
                        "steps": summary.get("steps"), "seconds": summary.get("seconds", {}).get("training")})
    write_family(out, members, source="toy", tokenizer_sha256=fingerprint, tokenizer="tokenizer",
                 size=dataclasses.asdict(size), corpus=corpus.params)
    return read_json(out / FAMILY_FILE)
