"""cursor_pages: the request loop every cursor-paged pull stream shares."""

from __future__ import annotations

import asyncio
from typing import Any

from tanpuhui.sdk import Page, cursor_pages

FEED: dict[str | None, tuple[list[dict[str, Any]], str | None, bool]] = {
    None: ([{"id": 1}, {"id": 2}], "c2", True),
    "c2": ([{"id": 3}], "c3", True),
    "c3": ([], None, False),  # the last page sends no cursor
}


def _pull(cursor: str | None) -> tuple[list[Page], list[tuple[dict[str, Any], str]]]:
    asked: list[tuple[dict[str, Any], str]] = []

    async def fetch(params: dict[str, Any], described: str) -> tuple[list[dict[str, Any]], str | None, bool]:
        asked.append((params, described))
        return FEED[params.get("cursor")]

    async def run() -> list[Page]:
        return [page async for page in cursor_pages("/v1/items", cursor, fetch, size=2, size_param="limit")]

    return asyncio.run(run()), asked


def test_pages_follow_next_cursor_until_has_more_is_false_and_the_last_keeps_the_cursor_that_asked_for_it() -> None:
    pages, asked = _pull(None)
    assert [(p.items, p.cursor, p.request) for p in pages] == [
        ([{"id": 1}, {"id": 2}], "c2", "GET /v1/items?limit=2"),
        ([{"id": 3}], "c3", "GET /v1/items?limit=2&cursor=c2"),
        ([], "c3", "GET /v1/items?limit=2&cursor=c3"),
    ]
    assert [params for params, _ in asked] == [{"limit": 2}, {"limit": 2, "cursor": "c2"}, {"limit": 2, "cursor": "c3"}]


def test_a_stored_cursor_resumes_there_and_an_empty_one_starts_from_the_beginning() -> None:
    assert [p.cursor for p in _pull("c2")[0]] == ["c3", "c3"]
    assert _pull("")[1][0] == ({"limit": 2}, "GET /v1/items?limit=2")
