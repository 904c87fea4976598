"""The arch string: exact round trips and one clear sentence for each malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_space import Arch, ArchError, BlockArch, SearchSpace


def test_string_and_json_round_trip_1000_random_archs():
    space = SearchSpace()
    rng = np.random.default_rng(0)
    for _ in range(1000):
        arch = space.sample(rng)
        text = str(arch)
        assert str(Arch.parse(text)) == text
        assert Arch.parse(text) == arch
        assert Arch.from_json(json.loads(json.dumps(arch.to_json()))) == arch


def test_example_from_the_design_parses():
    text = "256:M,F,S5,F,I,I/512:M,F,M,F,M,F"
    arch = Arch.parse(text)
    assert arch[0] == BlockArch(256, ("M", "F", "S5", "F", "I", "I"))
    assert arch[0].active_ops == ("M", "F", "S5", "F")
    assert arch.num_layers == 10
    assert str(arch) == text


def test_value_objects_are_hashable_and_ordered():
    a, b = Arch.parse("128:M,I/256:F,F"), Arch.parse("256:M,I/256:F,F")
    assert len({a, b, Arch.parse(str(a))}) == 2
    assert sorted([b, a]) == [a, b]


# (string, a word the sentence must contain)
MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("256:M,F/", "empty"),
    ("/256:M,F", "empty"),
    ("256:M,F//256:M,F", "empty"),
    ("256M,F", "':'"),
    ("abc:M,F", "not a positive integer"),
    ("0:M,F", "not a positive integer"),
    ("-128:M,F", "not a positive integer"),
    ("12.5:M,F", "not a positive integer"),
    ("256:", "no ops"),
    ("256:M,,F", "empty op"),
    ("256:M,F,", "empty op"),
    ("256:X", "unknown op"),
    ("256:M,Q,F", "unknown op"),
    ("256:S", "unknown op"),
    ("256:S0", "unknown op"),
    ("256:m,f", "unknown op"),
    ("256:M,I,F", "identity before a non-identity op"),
    ("256:I,M", "identity before a non-identity op"),
    ("256:I,I,I", "all identity"),
    ("256:M, F", "spaces"),
    (" 256:M,F", "spaces"),
    ("256:M,F;512:M", "unknown op"),
]


@pytest.mark.parametrize("text, expected", MALFORMED)
def test_malformed_strings_are_rejected_with_a_sentence(text, expected):
    with pytest.raises(ArchError) as error:
        Arch.parse(text)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


# Well-formed strings that do not fit the default space.
OUT_OF_SPACE = [
    ("100:M,F,M,F,M,F/128:M,F,M,F,M,F/128:M,F,M,F,M,F/128:M,F,M,F,M,F", "width 100"),
    ("128:M,F,M,F/128:M,F,M,F,M,F/128:M,F,M,F,M,F/128:M,F,M,F,M,F", "4 layers"),
    ("128:M,F,M,F,M,F/128:M,F,M,F,M,F", "2 blocks"),
    ("128:M,F,M,F,M,S9/128:M,F,M,F,M,F/128:M,F,M,F,M,F/128:M,F,M,F,M,F", "op S9"),
]


@pytest.mark.parametrize("text, expected", OUT_OF_SPACE)
def test_out_of_space_archs_are_rejected_with_a_sentence(text, expected):
    with pytest.raises(ArchError, match=expected):
        SearchSpace().validate(text)


def test_json_with_wrong_shape_is_rejected():
    with pytest.raises(ArchError):
        Arch.from_json({"width": 128})
    with pytest.raises(ArchError):
        Arch.from_json([{"width": 128, "ops": "M,F"}])
