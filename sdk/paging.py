"""Checking partner answers that page by cursor, the shape most partners share.

A cursor-paged answer carries its items, ``has_more`` (true or false) and ``next_cursor`` (a string, present when
there is more) in one object, at the top or under an envelope's ``data``. :func:`cursor_fields` checks the two
paging fields, :func:`as_objects` passes items on for the hub to validate, :func:`describe_shape` names what came instead
of an object in an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import PartnerResponseError

__all__ = ["as_objects", "cursor_fields", "describe_shape"]


def describe_shape(value: Any) -> str:
    """A short description of ``value`` for an error message: an object's first keys, else its type."""
    if isinstance(value, dict):
        return "an object with keys " + ", ".join(sorted(map(str, value))[:8])
    return type(value).__name__


def cursor_fields(page: Mapping[str, Any], where: str, pointer: str = "", asked: Any = None) -> tuple[str | None, bool]:
    """``(next_cursor, has_more)`` of the paging object at JSON pointer ``pointer``; raises PartnerResponseError.

    ``where`` names the adapter and request in the message. ``asked`` is the cursor the page was asked for: more
    pages behind that same cursor would loop forever, so that is an error too.
    """
    has_more = page.get("has_more")
    if not isinstance(has_more, bool):
        raise PartnerResponseError(f"{where}: {pointer}/has_more must be true or false, got {has_more!r}")
    next_cursor = page.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise PartnerResponseError(
            f"{where}: {pointer}/next_cursor must be a string, got {describe_shape(next_cursor)}"
        )
    if has_more and not next_cursor:
        raise PartnerResponseError(f"{where}: {pointer}/has_more is true but there is no next_cursor to continue from")
    if has_more and next_cursor == asked:
        raise PartnerResponseError(
            f"{where}: has_more is true but next_cursor is the cursor just requested ({asked!r}); stopping instead "
            "of asking for the same page forever"
        )
    return next_cursor, has_more


def as_objects(items: list[Any]) -> list[dict[str, Any]]:
    """The items, each non-object wrapped as ``{"_not_an_object": item}``.

    Non-objects still reach the hub, which quarantines them against the schema with the rest of the page.
    """
    return [i if isinstance(i, dict) else {"_not_an_object": i} for i in items]
