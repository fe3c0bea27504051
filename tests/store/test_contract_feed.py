"""What ``tanpuhui run`` relies on, on both stores: the rows a commit reports (``CommitResult.seq_runs`` and the
inserted ids, in page order) are exactly the rows the store reads back, so :class:`CommittedFeed` can hand them to
the forwarder from memory."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tanpuhui.hub.feed import CommittedFeed
from tanpuhui.hub.store.base import PageWrite

from .conftest import Backend
from .records import MORNING, trip


def _page(first: int, count: int) -> list[Any]:
    """Metro trips ``first .. first+count-1``, a minute apart, of 50 residents."""
    return [
        trip(
            f"HF{first + i:08d}",
            person=f"resident-{(first + i) % 50:04d}",
            start=MORNING + timedelta(minutes=first + i),
        )
        for i in range(count)
    ]


def _rows(read: Any, after: int, limit: int) -> list[tuple[int, str, str, str, bytes]]:
    out = []
    while rows := read(after, limit):
        out += [(r.seq, r.record_id, r.adapter, r.stream, r.body) for r in rows]
        after = rows[-1].seq
    return out


def test_rows_handed_over_from_memory_are_the_rows_the_store_reads_back_with_duplicates_and_another_replica(
    backend: Backend,
) -> None:
    store = backend.open()
    other = backend.open()  # another replica committing between this process's pages

    async def scenario() -> CommittedFeed:
        feed = CommittedFeed(store)
        for round_, pages in enumerate(([_page(0, 120)], [_page(100, 80)], [_page(300, 60), _page(150, 90)])):
            for records in pages:
                write = PageWrite("transit_card", "trips", records, [], None)
                (result,) = store.commit_pages([write])
                assert result is not None
                feed.add(write, result)
            other.commit_page("transit_card", "trips", _page(1000 + 7 * round_, 7), [], None)
        return feed

    feed = asyncio.run(scenario())
    expected = _rows(store.read_outbox, 0, 1000)
    assert len(expected) == 120 + 60 + 60 + 60 + 3 * 7  # the repeats of earlier pages were not inserted again
    for after, limit in [(0, 1000), (0, 17), (119, 50), (120, 1000), (200, 33)]:
        assert _rows(feed.read_outbox, after, limit) == [row for row in expected if row[0] > after]
    assert feed.hits > 0 and feed.misses > 0
