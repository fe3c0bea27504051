"""Console lists with more rows than a page: the filters select from the whole table (in the store's SQL), the
pages follow each other without gaps or repeats, the count is of everything matching, and a bulk action on the
filtered set acts on every matching row, not only the rows shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.audit import AuditEvent
from tanpuhui.hub.console.failures import PAGE
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.store.base import NewQuarantine, PageWrite
from tanpuhui.hub.store.queries import QuarantineQuery
from tanpuhui.sdk import Problem

from .conftest import RunningSidecar, SidecarFactory
from .console_kit import CONSOLE, console_sidecar, csrf_of, signed_in

EXTRA = PAGE + 37
"""Entries of the transit stream added beyond the fixture's: more than a page."""


@pytest.fixture
def running(start_sidecar: SidecarFactory, tmp_path: Path, consumer: ConsumerServer) -> Iterator[RunningSidecar]:
    with TransitSandbox(trips=50, seed=3) as sandbox:
        running = console_sidecar(start_sidecar, tmp_path, sandbox, consumer)
        problem = Problem("/deal_time", "'deal_time' is a required property", "required")
        items = [NewQuarantine("raw", f"TXN-2024-{i:05d}", b"\x02v1" + bytes(40), [problem]) for i in range(EXTRA)]
        running.sidecar.hub.store.commit_pages([PageWrite("transit_card", "transactions", [], items, None)])
        yield running


@pytest.fixture
def client(running: RunningSidecar) -> Iterator[httpx.Client]:
    c = signed_in(running)
    yield c
    c.close()


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', page)]


def _next(page: str) -> str | None:
    match = re.search(r'<a href="([^"]+)" id="next-page">', page)
    return match.group(1).replace("&amp;", "&") if match else None


def test_a_quarantine_filter_pages_through_every_match_and_acts_on_all_of_them(
    running: RunningSidecar, client: httpx.Client
) -> None:
    store = running.sidecar.hub.store
    query = QuarantineQuery(adapter="transit_card", stream="transactions", stage="raw", problem="deal_time")
    expected = store.quarantine_ids(query)  # the sandbox's own bad trips too
    total = len(expected)
    assert total >= EXTRA > PAGE
    url: str | None = f"{CONSOLE}/quarantine?adapter=transit_card&stream=transactions&problem=deal_time&stage=raw"
    seen: list[int] = []
    pages = 0
    while url:
        page = client.get(url).text
        assert f"{total} entries match" in page
        seen.extend(_ids(page))
        pages += 1
        url = _next(page)
    assert pages == 2 and len(seen) == total == len(set(seen))
    assert seen == expected

    # The bike rides of the fixture stay out of it; a problem text that only they have finds only them.
    rides = client.get(f"{CONSOLE}/quarantine?stream=rides").text
    assert set(_ids(rides)).isdisjoint(seen) and _ids(rides)

    # A time that is not one says so, naming the filter.
    bad = client.get(f"{CONSOLE}/quarantine?since=yesterday").text
    assert "seen since: &#39;yesterday&#39; is not a time" in bad

    first = client.get(f"{CONSOLE}/quarantine?stream=transactions&problem=deal_time&stage=raw").text
    form = {"stream": "transactions", "problem": "deal_time", "stage": "raw"}
    answer = client.post(
        f"{CONSOLE}/quarantine/act", data={"csrf": csrf_of(first), "action": "discard-filtered", **form}
    )
    assert answer.status_code == 303 and f"discarded+{total}+entries" in answer.headers["location"]
    assert store.quarantine_ids(QuarantineQuery(status="discarded")) == expected
    assert store.quarantine_count(QuarantineQuery(stream="rides")) == len(_ids(rides))


def test_the_audit_log_filters_and_pages_over_every_entry(running: RunningSidecar, client: httpx.Client) -> None:
    store = running.sidecar.hub.store
    events = [
        AuditEvent("console.stream.pause", f"transit_card:s{i}", {}, actor="console@10.0.0.7") for i in range(250)
    ]
    store.audit_append(events)
    url: str | None = f"{CONSOLE}/audit?action=console.stream.pause&actor=10.0.0.7"
    seqs: list[int] = []
    while url:
        page = client.get(url).text
        assert "250 entries match" in page
        seqs.extend(int(s) for s in re.findall(r'<tr><td class="num">(\d+)</td>', page))
        url = _next(page)
    assert len(seqs) == 250 == len(set(seqs)) and seqs == sorted(seqs, reverse=True)
