"""The pull loop's paging-loop guard: every loop is stopped, and what it keeps stays bounded however long the run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, ClassVar

import pytest
from one_stream import closing_hub

from tanpuhui.hub.drivers import paging
from tanpuhui.hub.drivers.paging import CursorsSeen, check_loop
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import Page, PartnerResponseError, PullStream, StreamContext


def _first_repeat(cursors: Iterable[Any], start: Any = None, window: int | None = None) -> tuple[int, int] | None:
    """Feed page cursors 1, 2, ... to a guard: (page, earlier page) of the first repeat found, or None."""
    seen = CursorsSeen(start, window)
    for page, cursor in enumerate(cursors, start=1):
        first = seen.add(cursor, page)
        if first is not None:
            return page, first
    return None


def _looping(before: int, length: int, pages: int) -> Iterator[str]:
    """``before`` distinct cursors, then a loop through ``length`` cursors, ``pages`` cursors in all."""
    for page in range(1, pages + 1):
        yield f"c{page}" if page <= before else f"loop{(page - before - 1) % length}"


def test_a_cursor_repeated_within_the_window_is_stopped_at_once_naming_the_page_that_gave_it() -> None:
    assert _first_repeat(["a", "b", "a"]) == (3, 1)
    assert _first_repeat(["a", "a"]) == (2, 1)
    assert _first_repeat(["a", "b", "c", None]) == (4, 0)  # back to where the run started
    assert _first_repeat([{"after": 2, "id": "x"}, {"id": "x", "after": 2}]) == (2, 1)  # key order does not matter
    assert _first_repeat(_looping(before=50, length=7, pages=1000), window=16) == (58, 51)


def test_distinct_cursors_never_stop_a_long_run_and_the_guard_stays_bounded() -> None:
    seen = CursorsSeen("p0", window=64)
    for page in range(1, 50_001):
        assert seen.add(f"p{page}", page) is None
    assert len(seen) == 64


def test_the_run_start_is_remembered_past_the_window() -> None:
    assert _first_repeat([*(f"c{i}" for i in range(1, 200)), "c0"], start="c0", window=8) == (200, 0)


@pytest.mark.parametrize(("before", "length"), [(0, 9), (3, 100), (1000, 37), (37, 1000), (5000, 4096), (10, 3)])
def test_a_loop_longer_than_the_window_is_stopped_within_its_bound(before: int, length: int) -> None:
    window = 8
    bound = 2 * max(before + 1, length) + length
    found = _first_repeat(_looping(before, length, bound + 10), window=window)
    assert found is not None
    page, first = found
    assert before < first < page <= bound
    assert (page - first) % length == 0  # a real repeat: the same cursor, a whole number of loops apart


def test_check_loop_raises_a_partner_error_naming_the_pages() -> None:
    seen = CursorsSeen("start")
    check_loop("a", "s", seen, "start", 0)  # the first page continues from the run's start: nothing to check
    check_loop("a", "s", seen, "x", 1)
    with pytest.raises(
        PartnerResponseError, match=r"a:s: the partner's paging loops: page 2 gave the cursor of page 1"
    ):
        check_loop("a", "s", seen, "x", 2)
    with pytest.raises(PartnerResponseError, match="page 3 gave the cursor the run started from again"):
        check_loop("a", "s", seen, "start", 3)


# -- end to end: a partner whose paging comes back to an earlier page after more pages than the window ----------

LOOP_AFTER = 40


class Endless(PullStream):
    name = "endless"
    schema = "empty-item"
    id_field = "id"
    requested: ClassVar[list[Any]] = []

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        k = 0 if cursor is None else int(cursor)
        while True:
            self.requested.append(k)
            k = k + 1 if k < LOOP_AFTER else 5  # page 40 leads back to page 5: a loop of 36 pages
            yield Page([], k, f"page {k}")

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        return ()


def test_a_pull_whose_paging_loops_through_more_pages_than_the_window_stops(
    one_stream_hub: Callable[[str, type[PullStream]], Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paging, "LOOP_WINDOW", 8)
    Endless.requested.clear()
    with closing_hub(one_stream_hub("endless_partner", Endless)) as hub:
        (summary,) = asyncio.run(hub.pull("endless_partner", "endless"))
    assert summary.error is not None and "the partner's paging loops" in summary.error
    assert summary.pages <= 2 * LOOP_AFTER + LOOP_AFTER
