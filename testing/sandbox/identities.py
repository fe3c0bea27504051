"""Synthetic personal identifiers for sandbox data sets: resident IDs with the GB 11643 check character.

A sandbox draws the 17 leading digits itself (its own regions and birth dates, from its own seeded RNG); these
helpers add the check character, or a wrong one for the bad items an adapter must reject.
"""

from __future__ import annotations

__all__ = ["with_check_char", "with_wrong_check_char"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def with_check_char(body: str) -> str:
    """The 17 digits ``body`` and their ISO 7064 MOD 11-2 check character: a valid 18-character resident ID."""
    return body + _CHECK[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def with_wrong_check_char(resident_id: str, shift: int = 1) -> str:
    """``resident_id`` with its check character replaced by the one ``shift`` (1 to 10) places further on."""
    return resident_id[:17] + _CHECK[(_CHECK.index(resident_id[17]) + shift) % 11]
