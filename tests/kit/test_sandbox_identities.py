"""The kit's synthetic resident IDs: valid ones pass the SDK's GB 11643 check, the wrong ones fail it."""

from __future__ import annotations

import pytest

from tanpuhui.sdk import is_valid_resident_id
from tanpuhui.testing.sandbox import with_check_char, with_wrong_check_char


@pytest.mark.parametrize("body", ["34010219800101123", "34110219551231000", "31010420040229999"])
def test_with_check_char_makes_an_id_the_sdk_accepts(body: str) -> None:
    rid = with_check_char(body)
    assert rid[:17] == body and len(rid) == 18
    assert is_valid_resident_id(rid)


def test_a_published_example_gets_its_check_character() -> None:
    # GB 11643-1999's own example number.
    assert with_check_char("11010519491231002") == "11010519491231002X"


@pytest.mark.parametrize("shift", range(1, 11))
def test_with_wrong_check_char_makes_an_id_the_sdk_rejects(shift: int) -> None:
    rid = with_check_char("34010219800101123")
    wrong = with_wrong_check_char(rid, shift)
    assert wrong[:17] == rid[:17] and wrong[17] != rid[17]
    assert not is_valid_resident_id(wrong)
