"""Consumer outages: refused connections, then 503s, then back; a 410 on one sink; an outage past the retry budget.

Whatever the consumer does, the outbox holds what it has not acknowledged: nothing moves past a batch until the
consumer answered 2xx (delivered) or the batch's attempts ran out (dead letters, kept and replayable), and a sink
that said 410 keeps its position. The retry waits follow the configured schedule: ``initial_backoff`` doubling per
attempt with up to 50 % jitter, capped at ``max_backoff``, or exactly the consumer's ``Retry-After`` (capped at
``max_retry_after``). Waits are observed through the forwarder's ``sleep``, which also moves the outage on.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tanpuhui.hub.consumer import ConsumerServer, Scripted
from tanpuhui.hub.forwarder import Forwarder, ForwardSummary
from tanpuhui.hub.sinks.http import HttpSink
from tanpuhui.hub.store.base import NewRecord
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import Sink, make_record_id

from .conftest import SleepRecorder, run

SECRET = "whsec_" + base64.b64encode(b"tanpuhui-outage-test-consumer-key").decode()
RECORDS = 1000
BATCH = 100
INITIAL = 0.5
MAX_BACKOFF = 6.0


def fill(store: SQLiteStore, count: int) -> list[str]:
    """``count`` records committed page by page, as a pull would; their ids in outbox order."""
    start = datetime(2024, 11, 5, 7, 0, tzinfo=UTC)
    ids: list[str] = []
    for page in range(0, count, 250):
        records = []
        for i in range(page, min(page + 250, count)):
            when = start + timedelta(seconds=41 * i)
            record_id = make_record_id(when, "transit_card", "transactions", f"HF{i:08d}")
            body = {
                "record_id": record_id,
                "scenario": "bus",
                "period": {"start": when.isoformat()},
                "quantification": {"reduction_kgco2e": 0.16},
            }
            records.append(NewRecord(record_id, f"fp{i}", "bus", 0.16, orjson.dumps(body)))
            ids.append(record_id)
        store.commit_page("transit_card", "transactions", records, [], None)
    return ids


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "hub.db")
    yield s
    s.close()


@pytest.fixture
def consumers() -> Iterator[Callable[[], ConsumerServer]]:
    made: list[ConsumerServer] = []

    def make() -> ConsumerServer:
        made.append(ConsumerServer(SECRET))
        return made[-1]

    yield make
    for server in made:
        server.close()


def sink(name: str, consumer: ConsumerServer) -> HttpSink:
    return HttpSink(name, HttpSink.Settings.model_validate({"url": consumer.url, "secret": SECRET, "timeout": 5}))


def drain(store: SQLiteStore, sinks: dict[str, Sink], sleep: SleepRecorder, attempts: int = 8) -> ForwardSummary:
    forwarder = Forwarder(
        store,
        sinks,
        batch_size=BATCH,
        attempts=attempts,
        initial_backoff=INITIAL,
        max_backoff=MAX_BACKOFF,
        max_retry_after=30,
        sleep=sleep,
    )

    async def body() -> ForwardSummary:
        try:
            return await forwarder.drain()
        finally:
            for s in sinks.values():
                await s.aclose()

    return run(body)


def assert_backoff(wait: float, attempt: int) -> None:
    """The wait after failed attempt ``attempt`` (1-based) of the configured exponential schedule."""
    base = min(MAX_BACKOFF, INITIAL * 2 ** (attempt - 1))
    assert min(MAX_BACKOFF, base) <= wait <= min(MAX_BACKOFF, base * 1.5), (wait, attempt)


def test_refused_then_503s_then_back_the_outbox_holds_and_drains_in_order_on_the_configured_schedule(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    consumer = consumers()  # bound, not started: connections are refused

    def outage(waits: int) -> None:
        if waits == 3:  # after three refused connections the consumer is up but overloaded
            consumer.start()
            consumer.set_mode("down")
        elif waits == 5:  # two plain 503s later it asks for 4 s, then recovers
            consumer.set_mode("normal")
            consumer.push(Scripted(503, retry_after=4))

    sleeps = SleepRecorder(outage)
    summary = drain(store, {"platform": sink("platform", consumer)}, sleeps)

    assert summary.ok and summary["platform"].delivered == RECORDS and summary["platform"].retries == 6
    for attempt, wait in enumerate(sleeps.waits[:5], start=1):
        assert_backoff(wait, attempt)
    assert sleeps.waits[5] == 4.0  # the consumer's Retry-After, not the backoff
    assert len(sleeps.waits) == 6
    assert consumer.ids() == ids  # everything, once, in outbox order
    assert consumer.stats()["duplicates"] == 0
    assert store.sink_position("platform") == store.outbox_max_seq()
    assert store.dead_letters() == []


def test_the_backoff_is_capped_at_max_backoff(store: SQLiteStore, consumers: Callable[[], ConsumerServer]) -> None:
    fill(store, BATCH)
    consumer = consumers().start()
    consumer.set_mode("down")
    sleeps = SleepRecorder(lambda waits: consumer.set_mode("normal") if waits == 7 else None)
    summary = drain(store, {"platform": sink("platform", consumer)}, sleeps)
    assert summary.ok and consumer.stats()["unique"] == BATCH
    for attempt, wait in enumerate(sleeps.waits, start=1):
        assert_backoff(wait, attempt)
    assert sleeps.waits[-3:] == [MAX_BACKOFF] * 3  # 0.5, 1, 2, 4 (x jitter), then the cap


def test_a_410_stops_only_that_sink_which_keeps_its_position_and_catches_up_when_it_returns(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    platform, archive = consumers().start(), consumers().start()
    archive.set_mode("gone")
    sleeps = SleepRecorder()

    first = drain(store, {"platform": sink("platform", platform), "archive": sink("archive", archive)}, sleeps)
    assert first["platform"].delivered == RECORDS and not first["platform"].gone
    assert first["archive"].gone and first["archive"].delivered == 0 and first["archive"].dead_lettered == 0
    assert archive.stats()["requests"] == 1  # a 410 is not retried
    assert store.sink_position("archive") == 0 and store.dead_letters() == []

    archive.set_mode("normal")
    platform_requests = platform.stats()["requests"]
    second = drain(store, {"platform": sink("platform", platform), "archive": sink("archive", archive)}, sleeps)
    assert second["archive"].delivered == RECORDS and second["platform"].delivered == 0
    assert platform.stats()["requests"] == platform_requests  # the sink that kept up is sent nothing again
    assert archive.ids() == platform.ids() == ids
    assert sleeps.waits == []


def test_an_outage_past_the_retry_budget_dead_letters_batches_that_replay_delivers_nothing_lost(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    consumer = consumers().start()
    consumer.set_mode("down")
    # 3 attempts per batch: batches 1 and 2 fail 3 times (2 waits each); the consumer is back during batch 3's
    # second wait (the 6th), so batch 3's last attempt and every later batch are delivered.
    sleeps = SleepRecorder(lambda waits: consumer.set_mode("normal") if waits == 6 else None)
    platform = sink("platform", consumer)
    summary = drain(store, {"platform": platform}, sleeps, attempts=3)

    assert summary["platform"].dead_lettered == 2 * BATCH
    assert summary["platform"].delivered == RECORDS - 2 * BATCH
    for attempt, wait in zip([1, 2, 1, 2, 1, 2], sleeps.waits, strict=True):
        assert_backoff(wait, attempt)  # the schedule starts again for each batch
    letters = store.dead_letters(limit=10_000)
    assert sorted(letter.record_id for letter in letters) == sorted(ids[: 2 * BATCH])
    assert all("HTTP 503" in letter.error and letter.attempts == 3 for letter in letters)
    assert store.sink_position("platform") == store.outbox_max_seq()

    forwarder = Forwarder(store, {"platform": sink("platform", consumer)}, batch_size=BATCH, sleep=sleeps)

    async def replay() -> list[int]:
        try:
            result = await forwarder.replay([letter.id for letter in letters])
        finally:
            await forwarder.sinks["platform"].aclose()
        return result.delivered

    assert sorted(run(replay)) == sorted(letter.id for letter in letters)
    assert store.dead_letters() == []
    assert sorted(consumer.ids()) == sorted(ids)  # all of them, each once
    assert consumer.stats()["duplicates"] == 0
