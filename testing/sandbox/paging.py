"""Paging over an append-only feed: the opaque cursor a sandbox issues and the window a request gets; page numbers,
offsets and next links (:func:`page_range`, :func:`offset_range`, :func:`link`).

    window = OFFSET_CURSOR.window(request.query_params.get("cursor"), size, visible=..., total=..., cap=1000)
    if window is None:
        return json_response(400, {"error": "invalid_cursor", ...})
    items.array(range(window.begin, window.end)), window.next_cursor, window.has_more

A cursor is a position in the feed, so a request with an old cursor resumes exactly where that page ended, and
items published later (``visible`` growing) appear from there.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

__all__ = [
    "OFFSET_CURSOR",
    "OffsetCursor",
    "Window",
    "link",
    "non_negative_int",
    "offset_range",
    "page_count",
    "page_range",
    "positive_int",
    "segment_of",
]


@dataclass(frozen=True, slots=True)
class Window:
    """The feed positions ``begin`` to ``end`` (exclusive) a page request gets, and the cursor after them."""

    begin: int
    end: int
    next_cursor: str
    has_more: bool


class OffsetCursor:
    """The opaque cursor: ``{"v": 1, "o": offset}`` as JSON in unpadded base64url.

    A partner whose cursors look otherwise subclasses this and overrides :meth:`encode` and :meth:`decode`.
    """

    def encode(self, offset: int) -> str:
        """The cursor that resumes at ``offset``."""
        return base64.urlsafe_b64encode(orjson.dumps({"v": 1, "o": offset})).decode().rstrip("=")

    def decode(self, cursor: str | None) -> int | None:
        """The offset a cursor resumes at (0 for none); None when it is not a cursor this sandbox issued."""
        if not cursor:
            return 0
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):
            return None
        offset = doc.get("o") if isinstance(doc, dict) and doc.get("v") == 1 else None
        return offset if isinstance(offset, int) and offset >= 0 else None

    def window(
        self, cursor: str | None, size: int, *, visible: int, total: int, cap: int | None = None
    ) -> Window | None:
        """The page at ``cursor``: up to ``size`` (capped at ``cap``) of the first ``visible`` of ``total`` items.

        None when the cursor is not one this sandbox issued (or points past the feed).
        """
        offset = self.decode(cursor)
        if offset is None or offset > total:
            return None
        end = min(offset + (size if cap is None else min(size, cap)), max(visible, offset))
        return Window(offset, end, self.encode(end), end < visible)

    def segment_window(
        self,
        cursor: str | None,
        size: int,
        member: Callable[[int], bool],
        *,
        visible: int,
        total: int,
        cap: int | None = None,
    ) -> tuple[list[int], Window] | None:
        """A segment's page (a parallel scan's part): the positions from ``cursor`` on for which ``member`` is true,
        up to ``size`` (capped at ``cap``) of them, and the window scanned. The cursor stays a position in the whole
        feed, so each segment resumes where its own last page ended. None for a cursor this sandbox did not issue."""
        offset = self.decode(cursor)
        if offset is None or offset > total:
            return None
        limit = size if cap is None else min(size, cap)
        chosen: list[int] = []
        position = offset
        while position < visible and len(chosen) < limit:
            if member(position):
                chosen.append(position)
            position += 1
        end = max(position, offset)
        return chosen, Window(offset, end, self.encode(end), end < visible)


OFFSET_CURSOR = OffsetCursor()
"""The default cursor codec."""


def segment_of(key: str, segments: int) -> int:
    """The segment (0 to ``segments - 1``) of an item whose partitioning key is ``key``: CRC-32 of its UTF-8 bytes
    modulo ``segments``, a rule a partner can state in one line and any client can check."""
    return zlib.crc32(key.encode()) % segments


def positive_int(value: str | None, default: int) -> int | None:
    """A page-size query parameter: ``default`` when absent, None when it is not a positive integer."""
    return _int_at_least(value, default, 1)


def non_negative_int(value: str | None, default: int) -> int | None:
    """An offset query parameter: ``default`` when absent, None when it is not a whole number (0 or more)."""
    return _int_at_least(value, default, 0)


def _int_at_least(value: str | None, default: int, minimum: int) -> int | None:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= minimum else None


def page_range(page: int, size: int, total: int) -> range:
    """The feed positions of page ``page`` (numbered from 1) of ``size`` items in a feed of ``total``; empty past
    the end."""
    begin = min((page - 1) * size, total)
    return range(begin, min(begin + size, total))


def offset_range(offset: int, limit: int, total: int) -> range:
    """The feed positions ``limit`` items from ``offset`` cover in a feed of ``total``; empty past the end."""
    begin = min(offset, total)
    return range(begin, min(begin + limit, total))


def page_count(size: int, total: int) -> int:
    """How many pages of ``size`` items a feed of ``total`` has (at least 1: an empty feed has one empty page)."""
    return max(1, -(-total // size))


def link(path: str, **params: int | str) -> str:
    """A relative link to ``path`` with query ``params`` (in the given order), as next-link partners send them."""
    return f"{path}?{urlencode(params)}" if params else path
