"""What a pull run needs from its partner's paging: a guard against cursor loops, and the next page asked ahead.

A partner whose paging leads back to a cursor it already gave (``A -> B -> A``, or the same one again) would be
asked for the same pages forever; dedup keeps the outbox right, but the run would never end. :class:`CursorsSeen`
remembers the cursors of a run in bounded memory and :func:`check_loop` stops the run at the first repeat.
:func:`ahead` starts the request for the next page while the current one is processed (``PullStream.prefetch``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from tanpuhui.sdk import Page, PartnerResponseError

__all__ = ["LOOP_WINDOW", "CursorsSeen", "ahead", "check_loop", "page_details"]


async def ahead(pages: AsyncIterator[Page], max_pages: int | None) -> AsyncIterator[Page]:
    """``pages``, with the request for the next page started as soon as one is handed out (``PullStream.prefetch``).

    An error of that request is raised when the page is asked for, i.e. after the page before it was committed.
    Past ``max_pages`` nothing is asked ahead (a run limited to N pages makes N requests).
    """

    async def following() -> Page:
        return await anext(pages)

    handed = 0
    pending: asyncio.Task[Page] | None = asyncio.ensure_future(following())
    try:
        while pending is not None:
            try:
                page = await pending
            except StopAsyncIteration:
                pending = None
                return
            handed += 1
            pending = asyncio.ensure_future(following()) if max_pages is None or handed < max_pages else None
            yield page
            if pending is None:
                pending = asyncio.ensure_future(following())
    finally:
        if pending is not None:
            if not pending.done():
                pending.cancel()
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # seen: a request error after the last page taken is not reported twice
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def page_details(items: Sequence[Any], cursor: Any) -> dict[str, Any]:
    """What a page's audit entry says about the page itself: its size and a digest of the cursor it moves to."""
    return {"items": len(items), "cursor_sha256": hashlib.sha256(_cursor_key(cursor)).hexdigest()}


def _cursor_key(cursor: Any) -> bytes:
    """A cursor's canonical bytes, to hash (short-lived: an ``orjson.dumps`` result keeps orjson's whole output
    buffer, at least 4 KiB however short the cursor)."""
    try:
        return orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(cursor).encode()


LOOP_WINDOW = 1024
"""Pages whose cursors a pull run remembers exactly (16-byte digests): a loop through at most this many pages
stops at its first repeated cursor; a longer one is caught by the Brent mark of :class:`CursorsSeen`."""


class CursorsSeen:
    """The cursors a pull run continued from, for :func:`check_loop`, in bounded memory however long the run.

    Kept exactly, as digests: the run's first cursor and those of the last ``window`` pages. A loop through more
    pages than that is caught by Brent's cycle detection: one more cursor, the mark, is moved to the current
    page's at pages 1, 2, 4, 8, ...; once the mark is in a loop of L pages and stays for L pages, the loop comes
    back to it. So every loop is stopped: one of L pages entered after page S by page 2 * max(S + 1, L) + L at the
    latest. (Keeping every cursor grew a pull by ~4 KiB a page, the ``orjson.dumps`` buffer behind each key:
    ~65 MB at 10M records.)
    """

    __slots__ = ("_first", "_mark", "_mark_page", "_next_mark", "_order", "_recent", "_window")

    def __init__(self, cursor: Any, window: int | None = None) -> None:
        self._window = max(1, LOOP_WINDOW if window is None else window)
        self._first = _cursor_digest(cursor)
        self._recent: dict[bytes, int] = {}
        self._order: deque[bytes] = deque()
        self._mark = self._first
        self._mark_page = 0
        self._next_mark = 1

    def __len__(self) -> int:
        """How many cursors are held (the first and the mark aside): at most ``window``."""
        return len(self._recent)

    def add(self, cursor: Any, page: int) -> int | None:
        """Note ``cursor`` as page ``page``'s; if it was seen before: the page that gave it (0: the run's start)."""
        key = _cursor_digest(cursor)
        if key == self._first:
            return 0
        first = self._recent.get(key)
        if first is None and key == self._mark:
            first = self._mark_page
        if first is not None:
            return first
        self._recent[key] = page
        self._order.append(key)
        if len(self._order) > self._window:
            del self._recent[self._order.popleft()]
        if page >= self._next_mark:
            self._mark, self._mark_page, self._next_mark = key, page, 2 * page
        return None


def _cursor_digest(cursor: Any) -> bytes:
    return hashlib.blake2b(_cursor_key(cursor), digest_size=16).digest()


def check_loop(adapter: str, stream: str, seen: CursorsSeen, cursor: Any, pages: int) -> None:
    """Before the next page: the cursor it continues from (page ``pages``'s) must be new in this run.

    Only the cursor of the last page of a run may repeat (an empty last page keeps the cursor), and no page
    follows it. A loop through up to ``LOOP_WINDOW`` pages stops at its first repeated cursor, a longer one a
    little later (see :class:`CursorsSeen`).
    """
    if pages == 0:
        return
    first = seen.add(cursor, pages)
    if first is not None:
        where = "the cursor the run started from" if first == 0 else f"the cursor of page {first}"
        raise PartnerResponseError(
            f"{adapter}:{stream}: the partner's paging loops: page {pages} gave {where} again; stopping instead "
            f"of pulling the same pages forever (pages 1-{pages} are committed)"
        )
