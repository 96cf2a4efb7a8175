"""needle.neurons.ids: one printed form of a neuron id, the same few read forms everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from needle.errors import InputError
from needle.neurons.ids import format_neuron_id, parse_neuron_id, parse_neuron_list, parse_neurons


@pytest.mark.parametrize("text", ["L3.N120", "L3N120", "3:120", "l3.n120", " L3 . N120 ", "l3n120", "3 : 120",
                                  "L3:N120", "L3 N120", "L3/N120", "3/120", "3.120", "3N120"])
def test_accepted_forms_read_the_same_neuron(text):
    assert parse_neuron_id(text) == (3, 120)


@pytest.mark.parametrize("text", ["", "L3", "N120", "3 120", "L3..N120", "L3.N", "L-1.N2", "LL3.N1", "L3.N120x",
                                  "neuron 5", "L3.N1.2", "３:１"])
def test_anything_else_is_a_one_line_error_naming_the_forms(text):
    with pytest.raises(InputError) as info:
        parse_neuron_id(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message
    assert all(form in message for form in ("L<layer>.N<index>", "L3.N120", "L3N120", "3:120"))


def test_non_strings_are_refused():
    with pytest.raises(InputError, match="not a neuron id"):
        parse_neuron_id(3)  # type: ignore[arg-type]


def test_printed_form_round_trips():
    assert format_neuron_id(3, 120) == "L3.N120"
    assert format_neuron_id(np.int64(0), np.int32(7)) == "L0.N7"
    for layer, index in [(0, 0), (11, 3071), (3, 120)]:
        assert parse_neuron_id(format_neuron_id(layer, index)) == (layer, index)


def test_parse_neurons_mixes_pairs_and_ids_and_drops_duplicates():
    assert parse_neurons(["L3.N12", "1:4", (0, 2), "L3N12", np.array([5, 6])]) == [(3, 12), (1, 4), (0, 2), (5, 6)]
    assert parse_neurons((np.int64(2), np.int64(5))) == [(2, 5)]
    assert parse_neurons("l2.n5") == [(2, 5)]
    with pytest.raises(InputError, match="no neurons"):
        parse_neurons([])
    with pytest.raises(InputError, match=r"\(layer, index\) pairs"):
        parse_neurons([(1, 2, 3)])


def test_parse_neuron_list_is_what_the_cli_reads():
    from needle.cli.neuron import _neurons

    text = "L3.N120, L4N7,,5:9 ,l3.n120"
    assert parse_neuron_list(text) == _neurons(text) == [(3, 120), (4, 7), (5, 9)]
    with pytest.raises(InputError, match="L3.N120"):
        parse_neuron_list("L3.N120,L4")


def test_the_package_api_and_the_scope_site_read_ids_alike():
    from needle.neurons import parse_neurons as public
    from needle.scope import neuron_id
    from needle.scope import parse_neuron_id as scope_parse

    assert public is parse_neurons
    for text in ["L3.N120", "L3N120", "3:120", "l3.n120"]:
        ref = scope_parse(text)
        assert (ref.layer, ref.index) == parse_neuron_id(text) and ref.id == neuron_id(3, 120) == "L3.N120"


def test_importing_ids_loads_no_model_code():
    import subprocess
    import sys

    code = "import sys, needle.neurons.ids; print(sorted({'torch', 'matplotlib', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
