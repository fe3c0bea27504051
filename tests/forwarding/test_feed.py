"""The committed feed of ``tanpuhui run``: pages this process committed reach the forwarder without a read-back,
and only when memory answers exactly what the store would."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from tanpuhui.hub.feed import CommittedFeed
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.jsonl import JsonlSink
from tanpuhui.hub.store.base import NewRecord, PageWrite
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import behaviour_fingerprint, make_record_id

START = datetime(2024, 5, 1, 7, 30, tzinfo=UTC)


def metro_trip(i: int) -> NewRecord:
    """The i-th Hefei metro trip of the morning, as the pipeline hands it to the store."""
    occurred = START + timedelta(seconds=37 * i)
    partner_id = f"HF{20240501000000 + i}"
    record_id = make_record_id(occurred, "transit_card", "trips", partner_id)
    fingerprint = behaviour_fingerprint(hashlib.sha256(f"card-{i}".encode()).hexdigest(), "metro", occurred)
    km = round(3.5 + (i % 40) * 0.7, 2)
    body = orjson.dumps(
        {
            "record_id": record_id,
            "source": {"adapter": "transit_card", "stream": "trips", "partner_record_id": partner_id},
            "scenario": "metro",
            "region": "340100",
            "activity": {"quantity": km, "unit": "pkm"},
            "quantification": {"reduction_kgco2e": round(km * 0.0512, 6)},
            "fingerprint": fingerprint,
        }
    )
    return NewRecord(record_id, fingerprint, "metro", round(km * 0.0512, 6), body, "")


def metro_page(first: int, count: int) -> list[NewRecord]:
    return [metro_trip(i) for i in range(first, first + count)]


def commit(store: SQLiteStore, records: list[NewRecord], feed: CommittedFeed | None) -> None:
    page = PageWrite("transit_card", "trips", records, [], None)
    (result,) = store.commit_pages([page])
    assert result is not None
    if feed is not None:
        feed.add(page, result)


def read_all(read, after: int, limit: int) -> list[tuple[int, str, bytes]]:
    out = []
    while rows := read(after, limit):
        out += [(r.seq, r.record_id, r.body) for r in rows]
        after = rows[-1].seq
    return out


def test_memory_answers_every_read_exactly_as_the_store_does_including_duplicates_and_another_writer(
    store: SQLiteStore,
) -> None:
    async def scenario() -> CommittedFeed:
        feed = CommittedFeed(store)
        commit(store, metro_page(0, 300), feed)
        commit(store, metro_page(300, 200), None)  # another process: not in memory, must come from the store
        commit(store, metro_page(450, 300), feed)  # 50 duplicates of the other writer's page: 250 inserted
        return feed

    feed = asyncio.run(scenario())
    expected = read_all(store.read_outbox, 0, 128)
    assert len(expected) == 750
    for after, limit in [(0, 128), (0, 1000), (299, 64), (300, 1000), (499, 100), (617, 7)]:
        assert read_all(feed.read_outbox, after, limit) == [e for e in expected if e[0] > after]
    assert feed.hits > 0 and feed.misses > 0


def test_rows_older_than_the_buffer_are_read_from_the_store(store: SQLiteStore) -> None:
    async def scenario() -> CommittedFeed:
        feed = CommittedFeed(store, max_rows=100)
        commit(store, metro_page(0, 250), feed)
        return feed

    feed = asyncio.run(scenario())
    assert feed.pages() == list(range(151, 251))
    assert read_all(feed.read_outbox, 0, 1000) == read_all(store.read_outbox, 0, 1000)
    assert feed.misses >= 1


def test_a_drain_that_follows_the_feed_delivers_pages_as_they_commit_and_ends_when_the_feed_closes(
    store: SQLiteStore, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"

    async def scenario() -> tuple[int, CommittedFeed]:
        feed = CommittedFeed(store)
        sinks = {"archive": JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=path, fsync=False))}
        forwarder = Forwarder(store, sinks, batch_size=1000, read=feed.read_outbox)
        draining = asyncio.ensure_future(forwarder.drain(follow=feed.follower))
        delivered_while_pulling = 0
        for k in range(5):
            commit(store, metro_page(100 * k, 100), feed)
            await asyncio.sleep(0.05)
            delivered_while_pulling = len(path.read_bytes().splitlines()) if path.exists() else 0
        feed.close()
        summary = await draining
        await sinks["archive"].aclose()
        assert summary["archive"].delivered == 500 and summary.ok
        return delivered_while_pulling, feed

    delivered_while_pulling, feed = asyncio.run(scenario())
    assert delivered_while_pulling == 500  # each page went out before the next was committed, not at the end
    lines = [orjson.loads(line)["record_id"] for line in path.read_bytes().splitlines()]
    assert lines == [r[1] for r in read_all(store.read_outbox, 0, 1000)]
    assert store.sink_position("archive") == 500
    # Every record was handed over from memory; only the reads past the last page asked the store (another process
    # may have committed since): the first, and one after each page.
    assert feed.hits == 500 and feed.misses <= 1 + 5 + 1
