"""``PullStream.prefetch``: the next page is asked for while the current one is processed and committed, and
nothing else changes: pages commit in order with their cursors, a request error comes after the page before it
was committed, and a run limited to N pages makes N requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, ClassVar

import pytest

from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import Page, PartnerResponseError, PullStream, StreamContext

PAGES = 4


class Meters(PullStream):
    """Four pages of two readings; the request for page 3 can be made to fail."""

    name = "readings"
    schema = "reading"
    id_field = "id"
    prefetch = True
    fail_at: ClassVar[int | None] = None
    watch: ClassVar[bool] = False
    """Whether normalize waits (up to 5 s) to see the request for the next page go out."""
    requested: ClassVar[list[int]] = []
    events: ClassVar[list[str]] = []
    asked: ClassVar[dict[int, threading.Event]] = {}

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        page = 0 if cursor is None else int(cursor)
        while page < PAGES:
            page += 1
            self.requested.append(page)
            self.asked.setdefault(page, threading.Event()).set()
            await asyncio.sleep(0.01)  # the partner's latency
            if page == self.fail_at:
                raise PartnerResponseError(f"GET /readings?page={page}: 503 after 5 attempts")
            self.events.append(f"fetched {page}")
            yield Page([{"id": f"m{page}-{i}", "page": page} for i in range(2)], str(page), f"page {page}")

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        page = item["page"]
        if self.watch and item["id"].endswith("-0"):
            # While page N is processed (in the worker thread), the request for page N + 1 goes out.
            nxt = self.asked.setdefault(page + 1, threading.Event())
            self.events.append(f"page {page}: next asked meanwhile={nxt.wait(5) if page < PAGES else None}")
        ctx.state["last"] = item["id"]
        return ()


@pytest.fixture
def hub(one_stream_hub: Callable[[str, type[PullStream]], Hub]) -> Iterator[Hub]:
    Meters.fail_at = None
    Meters.watch = False
    Meters.requested.clear()
    Meters.events.clear()
    Meters.asked.clear()
    hub = one_stream_hub("meter_partner", Meters)
    yield hub
    asyncio.run(hub.aclose())


def _pull(hub: Hub, max_pages: int | None = None) -> PullSummary:
    (summary,) = asyncio.run(hub.pull("meter_partner", "readings", max_pages=max_pages))
    return summary


def test_the_next_page_is_asked_for_while_the_current_one_is_processed(hub: Hub) -> None:
    Meters.watch = True
    summary = _pull(hub)
    assert summary.error is None and summary.pages == PAGES and summary.pulled == 2 * PAGES
    assert [e for e in Meters.events if e.startswith("page")] == [
        "page 1: next asked meanwhile=True",
        "page 2: next asked meanwhile=True",
        "page 3: next asked meanwhile=True",
        "page 4: next asked meanwhile=None",
    ]
    checkpoint = hub.store.load_checkpoint("meter_partner", "readings")
    assert (checkpoint.cursor, checkpoint.state) == (str(PAGES), {"last": f"m{PAGES}-1"})


def test_a_failed_request_stops_the_run_after_the_pages_before_it_are_committed(hub: Hub) -> None:
    Meters.fail_at = 3
    summary = _pull(hub)
    assert summary.pages == 2 and summary.error is not None and "page=3: 503" in summary.error
    assert hub.store.load_checkpoint("meter_partner", "readings").cursor == "2"  # the next run resumes at page 3
    (status,) = hub.store.stream_status()
    assert status.last_error is not None and "503" in status.last_error


def test_a_run_limited_to_n_pages_asks_for_n(hub: Hub) -> None:
    summary = _pull(hub, max_pages=2)
    assert summary.pages == 2 and Meters.requested == [1, 2]
    assert hub.store.load_checkpoint("meter_partner", "readings").cursor == "2"
