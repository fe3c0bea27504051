"""The request loop of a cursor-paged pull: ask for a page, yield it, ask again with its ``next_cursor``.

Partners differ in their envelopes and in what a valid answer is; they rarely differ in the loop. A pull stream
whose partner pages by cursor hands :func:`cursor_pages` the function that fetches and checks one page, and yields
what it gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .adapter import Page

__all__ = ["PageFetch", "cursor_pages"]

PageFetch = Callable[[dict[str, Any], str], Awaitable[tuple[list[dict[str, Any]], str | None, bool]]]


async def cursor_pages(
    path: str, cursor: str | None, fetch: PageFetch, *, size: int, size_param: str = "size"
) -> AsyncIterator[Page]:
    """The pages of ``GET path?{size_param}={size}[&cursor=C]``, from ``cursor`` on (from the start when empty).

    ``fetch(params, described)`` asks for one page (``params`` is its query; ``params["cursor"]``, absent on the
    first page, is the cursor asked for; ``described`` is the request as text for error messages), checks the
    answer and returns ``(items, next_cursor, has_more)``. Each page resumes after its items at ``next_cursor``, or
    at the cursor that asked for it when there is none; the loop ends after a page with ``has_more`` false.
    """
    while True:
        params: dict[str, Any] = {size_param: size}
        if cursor:
            params["cursor"] = cursor
        described = f"GET {path}?{size_param}={size}" + (f"&cursor={cursor}" if cursor else "")
        items, next_cursor, has_more = await fetch(params, described)
        yield Page(items=items, cursor=next_cursor or cursor, request=described)
        if not has_more:
            return
        cursor = next_cursor
