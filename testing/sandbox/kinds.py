"""Checking the kinds of bad items or faults a test asks a sandbox data set to mix in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["check_kinds"]


def check_kinds(asked: Mapping[str, int] | None, known: Sequence[str], what: str = "bad item kinds") -> None:
    """A ValueError naming the kinds ``asked`` for that are not ``known`` (and the known ones), if there are any."""
    unknown = set(asked or ()) - set(known)
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {', '.join(known)}")
