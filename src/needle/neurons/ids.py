"""Neuron ids: one way to write a neuron, a few ways to read one.

A neuron is ``(layer, index)``. needle always *prints* it as ``L3.N120``
(:func:`format_neuron_id`) and *reads* ``L3.N120``, ``L3N120``, ``3:120``,
lower case (``l3.n120``) and spaces around the parts included
(:func:`parse_neuron_id`). The CLI's ``--neurons``, the analyses in
:mod:`needle.neurons`, the scope site and its viewer all go through this
module, so an id printed anywhere is accepted everywhere.

This module imports nothing heavy: the scope site uses it without loading a
model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from numbers import Integral
from typing import Union

from needle.errors import InputError

__all__ = ["NeuronLike", "ACCEPTED_FORMS", "format_neuron_id", "parse_neuron_id", "parse_neurons",
           "parse_neuron_list"]

#: A neuron: a ``(layer, index)`` pair, or an id string such as ``"L3.N120"``.
NeuronLike = Union[tuple[int, int], Sequence[int], str]

#: What :func:`parse_neuron_id` reads, as said in its error message.
ACCEPTED_FORMS = "L<layer>.N<index>, e.g. L3.N120 (L3N120 and 3:120 work too; case and spaces do not matter)"

# Layer, then a separator (".", ":" or "/", optionally followed by "N"; or "N" alone), then index.
# Besides the documented forms this also reads what earlier versions accepted (L3:N120, L3 N120, 3/120, 3.120).
_ID = re.compile(r"\s*L?\s*(\d+)\s*(?:[.:/]\s*N?|N)\s*(\d+)\s*", re.IGNORECASE | re.ASCII)


def format_neuron_id(layer: int, index: int) -> str:
    """The canonical id of a neuron.

    Parameters
    ----------
    layer, index : int

    Returns
    -------
    str
        ``"L{layer}.N{index}"``, e.g. ``"L3.N120"``.
    """
    return f"L{int(layer)}.N{int(index)}"


def parse_neuron_id(text: str) -> tuple[int, int]:
    """Read one neuron id.

    Parameters
    ----------
    text : str
        ``"L3.N120"``, ``"L3N120"``, ``"3:120"``, ``"l3.n120"``; spaces around
        the parts are ignored.

    Returns
    -------
    (int, int)
        ``(layer, index)``.

    Raises
    ------
    InputError
        When ``text`` is not a neuron id; the message names the accepted forms.
    """
    match = _ID.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InputError(f"{text!r} is not a neuron id; write {ACCEPTED_FORMS}.")
    return int(match.group(1)), int(match.group(2))


def parse_neurons(neurons: NeuronLike | Sequence[NeuronLike]) -> list[tuple[int, int]]:
    """Normalise neurons to a list of distinct ``(layer, index)`` pairs, in the order given.

    Parameters
    ----------
    neurons : neuron or sequence of neurons
        Each a ``(layer, index)`` pair of ints or an id string read by
        :func:`parse_neuron_id`; one neuron may be given on its own.

    Returns
    -------
    list of (int, int)
        Duplicates dropped, first occurrence kept.

    Raises
    ------
    InputError
        For an item that is neither a pair nor an id, or when no neuron is given.
    """
    if isinstance(neurons, str) or (isinstance(neurons, (tuple, list)) and len(neurons) == 2
                                     and all(isinstance(v, Integral) for v in neurons)):
        neurons = [neurons]
    out: list[tuple[int, int]] = []
    for item in neurons:
        if isinstance(item, str):
            pair = parse_neuron_id(item)
        else:
            try:
                layer, index = item
                pair = (int(layer), int(index))
            except (TypeError, ValueError):
                raise InputError(f"neuron {item!r}: give (layer, index) pairs or ids like L3.N120.") from None
        if pair not in out:
            out.append(pair)
    if not out:
        raise InputError("no neurons given.")
    return out


def parse_neuron_list(text: str) -> list[tuple[int, int]]:
    """Read a comma-separated list of neuron ids, as the CLI's ``--neurons`` takes it.

    Parameters
    ----------
    text : str
        e.g. ``"L3.N120,L4N7, 5:9"``; empty items are skipped.

    Returns
    -------
    list of (int, int)
        Distinct ``(layer, index)`` pairs in the order given.
    """
    return parse_neurons([part for part in text.split(",") if part.strip()])
