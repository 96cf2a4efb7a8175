"""Seed families: the models whose neurons are compared, by name.

A family is given as one of

* a directory holding ``family.json`` (written by ``needle toy train-seeds``,
  for toy models trained here or for hub ids);
* the name of a published family of seeds (:data:`HUB_FAMILIES`): the
  Stanford CRFM GPT-2 replications the thesis used, and the PolyPythias;
* a comma-separated list of models (directories or hub ids).

The first member is the reference model (the thesis's "model a"), whose
neurons each get a row in the results; the others are compared with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from needle.errors import InputError

__all__ = ["HUB_FAMILIES", "FamilyMember", "family_corpus", "hub_family", "resolve_family"]


def _polypythia(size: str, n: int = 5) -> list[tuple[str, str]]:
    # PolyPythias: seed 0 is the original Pythia run, seeds 1-9 the new ones.
    return [("seed0", f"EleutherAI/pythia-{size}")] + [(f"seed{i}", f"EleutherAI/pythia-{size}-seed{i}")
                                                        for i in range(1, n)]


#: Published seed families: name -> [(member name, hub id)], the reference model first.
HUB_FAMILIES: dict[str, list[tuple[str, str]]] = {
    # Stanford CRFM's Mistral GPT-2 replications (OpenWebText, seeds 21, 49, 81, 343, 777); the thesis's models.
    "stanford-crfm-gpt2-small": [
        ("a", "stanford-crfm/alias-gpt2-small-x21"),
        ("b", "stanford-crfm/battlestar-gpt2-small-x49"),
        ("c", "stanford-crfm/caprica-gpt2-small-x81"),
        ("d", "stanford-crfm/darkmatter-gpt2-small-x343"),
        ("e", "stanford-crfm/expanse-gpt2-small-x777"),
    ],
    "stanford-crfm-gpt2-medium": [
        ("a", "stanford-crfm/arwen-gpt2-medium-x21"),
        ("b", "stanford-crfm/beren-gpt2-medium-x49"),
        ("c", "stanford-crfm/celebrimbor-gpt2-medium-x81"),
        ("d", "stanford-crfm/durin-gpt2-medium-x343"),
        ("e", "stanford-crfm/eowyn-gpt2-medium-x777"),
    ],
    **{f"polypythia-{size}": _polypythia(size) for size in ("14m", "31m", "70m", "160m", "410m")},
}


@dataclass(frozen=True)
class FamilyMember:
    """One model of a family.

    Attributes
    ----------
    name : str
        Short name used in column names (``seed-1``, ``b``).
    model : str
        What :func:`needle.models.load_model` loads: a directory or a hub id.
    """

    name: str
    model: str


def hub_family(name: str) -> list[FamilyMember]:
    """The members of a published family (:data:`HUB_FAMILIES`)."""
    key = name.lower()
    if key not in HUB_FAMILIES:
        raise InputError(f"no published seed family {name!r}; known: {', '.join(sorted(HUB_FAMILIES))}.")
    return [FamilyMember(member, hub_id) for member, hub_id in HUB_FAMILIES[key]]


def resolve_family(spec: str | os.PathLike) -> list[FamilyMember]:
    """The members of the family ``spec`` (see the module docstring), the reference model first.

    Raises
    ------
    InputError
        An unknown name, a ``family.json`` that does not parse, or fewer than two members.
    """
    from needle._io import read_json
    from needle.errors import FormatError

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if (path / "family.json").is_file():
        try:
            manifest = read_json(path / "family.json")
        except FormatError as exc:
            raise InputError(str(exc)) from None
        if manifest.get("format") != "needle-seed-family" or not isinstance(manifest.get("members"), list):
            raise InputError(f"{path / 'family.json'} is not a needle seed family; write one with "
                             "needle toy train-seeds.")
        members = []
        for entry in manifest["members"]:
            model = str(entry["model"])
            local = path / model
            members.append(FamilyMember(str(entry["name"]), str(local) if local.exists() else model))
    elif text.lower() in HUB_FAMILIES:
        members = hub_family(text)
    elif path.is_dir():
        raise InputError(f"{path} holds no family.json; train a family there with needle toy train-seeds, "
                         "or list the models separated by commas.")
    else:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) < 2:
            raise InputError(f"family {text!r} is not a family directory, a published family "
                             f"({', '.join(sorted(HUB_FAMILIES))}) or a comma-separated list of models.")
        members = [FamilyMember(Path(p).name if Path(p).expanduser().is_dir() else p, p) for p in parts]
        if len({m.name for m in members}) != len(members):
            members = [FamilyMember(f"m{i}", m.model) for i, m in enumerate(members)]
    if len(members) < 2:
        raise InputError(f"family {text!r} has {len(members)} member(s); universality needs at least two models.")
    return members


def family_corpus(directory: str | os.PathLike, *, ud: str | os.PathLike | None = None) -> Any:
    """The toy corpus a family directory (``needle toy train-seeds``) was trained on, split as it was.

    Parameters
    ----------
    directory : path-like
        Holds ``family.json`` with the corpus parameters.
    ud : path-like, optional
        Where the family's UD treebanks are now, if moved.

    Returns
    -------
    needle.toy.ToyCorpus

    Raises
    ------
    InputError
        No ``family.json`` with a corpus (a published family knows none), or its UD directory is gone.
    """
    from needle._io import read_json
    from needle.toy import gather_corpus

    path = Path(directory).expanduser() / "family.json"
    params = read_json(path).get("corpus") if path.is_file() else None
    if not params:
        raise InputError(f"{path} records no corpus; give the text to stream (--text), only a toy family "
                         "(needle toy train-seeds) knows its own.")
    ud_root = ud if ud is not None else params.get("ud")
    if ud_root is not None and not Path(ud_root).is_dir():
        raise InputError(f"UD directory {ud_root} (the family's corpus) does not exist; pass --ud DIR or --text.")
    python = params.get("python")
    return gather_corpus(
        python=None if python == "stdlib" else python, ud=ud_root, languages=params.get("languages"),
        max_chars_python=params.get("max_chars_python"), max_chars_per_language=params.get("max_chars_per_language"),
        max_chars_per_file=params.get("max_chars_per_file", 6000), unit_chars=params.get("unit_chars", 2000),
        heldout_fraction=params.get("heldout_fraction", 0.1), seed=params.get("split_seed", 0))
