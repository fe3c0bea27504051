"""Consumer outages: refused connections, then 503s, then back; a 410 on one sink; outages far past the attempts.

Whatever the consumer does, the outbox holds what it has not acknowledged: nothing moves past a batch until the
consumer answered 2xx (delivered) or a permanent 4xx (dead letters with its answer), or the sink has been failing
for ``give_up_after`` (dead letters, kept and replayable); a sink that said 410 keeps its position. A transient
outage pauses the sink on its batch: the sidecar's drain (``ride_out``) keeps retrying it, a one-shot drain leaves
it in the outbox. The retry waits follow the configured schedule: ``initial_backoff`` doubling per attempt with up
to 50 % jitter, capped at ``max_backoff``, or exactly the consumer's ``Retry-After`` (capped at
``max_retry_after``). Waits are observed through the forwarder's ``sleep``, which also moves the outage on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tanpuhui.hub.consumer import ConsumerServer, Mode, Scripted
from tanpuhui.hub.forwarder import Forwarder, ForwardSummary
from tanpuhui.hub.scheduler import ShutdownRequested, Stopping
from tanpuhui.hub.sinks.http import HttpSink
from tanpuhui.hub.store.base import DeadLetter, NewRecord
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


def started_consumer(consumers: Callable[[], ConsumerServer], mode: Mode) -> ConsumerServer:
    """A new consumer, started, answering as ``mode`` says."""
    consumer = consumers().start()
    consumer.set_mode(mode)
    return consumer


def sink(name: str, consumer: ConsumerServer) -> HttpSink:
    return HttpSink(name, HttpSink.Settings.model_validate({"url": consumer.url, "secret": SECRET, "timeout": 5}))


def forwarder(store: SQLiteStore, sinks: dict[str, Sink], sleep: Any, **options: Any) -> Forwarder:
    settings: dict[str, Any] = {
        "batch_size": BATCH,
        "attempts": 8,
        "initial_backoff": INITIAL,
        "max_backoff": MAX_BACKOFF,
        "max_retry_after": 30,
        **options,
    }
    return Forwarder(store, sinks, sleep=sleep, **settings)


def drain_with(fwd: Forwarder, *, ride_out: bool = False) -> ForwardSummary:
    async def body() -> ForwardSummary:
        try:
            return await fwd.drain(ride_out=ride_out)
        finally:
            for s in fwd.sinks.values():
                await s.aclose()

    return run(body)


def replay_with(fwd: Forwarder, letters: Iterable[DeadLetter]) -> list[int]:
    """Replays the dead ``letters`` through ``fwd`` (its sinks closed afterwards): the letters delivered."""

    async def body() -> list[int]:
        try:
            result = await fwd.replay([letter.id for letter in letters])
        finally:
            for s in fwd.sinks.values():
                await s.aclose()
        return result.delivered

    return run(body)


def drain(
    store: SQLiteStore, sinks: dict[str, Sink], sleep: SleepRecorder, attempts: int = 8, **options: Any
) -> ForwardSummary:
    return drain_with(forwarder(store, sinks, sleep, attempts=attempts, **options))


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
    consumer = started_consumer(consumers, "down")
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
    platform, archive = consumers().start(), started_consumer(consumers, "gone")
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


def test_a_sink_stopped_by_a_410_recovers_when_the_consumer_takes_deliveries_again(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, BATCH)
    consumer = started_consumer(consumers, "gone")
    fwd = forwarder(store, {"platform": sink("platform", consumer)}, SleepRecorder())

    assert drain_with(fwd, ride_out=True)["platform"].gone
    stopped = fwd.states["platform"]
    assert stopped.state == "stopped" and "410" in (stopped.last_error or "")

    consumer.set_mode("normal")
    assert drain_with(fwd, ride_out=True)["platform"].delivered == BATCH
    assert (fwd.states["platform"].state, fwd.states["platform"].recoveries) == ("ok", 1)
    assert consumer.ids() == ids


def test_a_permanent_answer_ends_an_outage_its_batch_dead_lettered_the_next_delivered(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, 2 * BATCH)
    consumer = consumers().start()
    consumer.push(503, 503, Scripted(422))  # overloaded, then it refuses the batch for good
    fwd = forwarder(store, {"platform": sink("platform", consumer)}, SleepRecorder())

    summary = drain_with(fwd, ride_out=True)

    assert (summary["platform"].dead_lettered, summary["platform"].delivered) == (BATCH, BATCH)
    letters = store.dead_letters(limit=1000)
    assert {(letter.attempts, "HTTP 422" in letter.error) for letter in letters} == {(3, True)}
    assert consumer.ids() == ids[BATCH:]
    assert (fwd.states["platform"].state, fwd.states["platform"].recoveries) == ("ok", 1)


def test_with_give_up_after_0_an_outage_past_the_attempts_dead_letters_batches_that_replay_delivers(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    consumer = started_consumer(consumers, "down")
    # 3 attempts per batch: batches 1 and 2 fail 3 times (2 waits each); the consumer is back during batch 3's
    # second wait (the 6th), so batch 3's last attempt and every later batch are delivered.
    sleeps = SleepRecorder(lambda waits: consumer.set_mode("normal") if waits == 6 else None)
    platform = sink("platform", consumer)
    summary = drain(store, {"platform": platform}, sleeps, attempts=3, give_up_after=0)

    assert summary["platform"].dead_lettered == 2 * BATCH
    assert summary["platform"].delivered == RECORDS - 2 * BATCH
    for attempt, wait in zip([1, 2, 1, 2, 1, 2], sleeps.waits, strict=True):
        assert_backoff(wait, attempt)  # the schedule starts again for each batch
    letters = store.dead_letters(limit=10_000)
    assert sorted(letter.record_id for letter in letters) == sorted(ids[: 2 * BATCH])
    assert all("HTTP 503" in letter.error and letter.attempts == 3 for letter in letters)
    assert store.sink_position("platform") == store.outbox_max_seq()

    replaying = Forwarder(store, {"platform": sink("platform", consumer)}, batch_size=BATCH, sleep=sleeps)
    assert sorted(replay_with(replaying, letters)) == sorted(letter.id for letter in letters)
    assert store.dead_letters() == []
    assert sorted(consumer.ids()) == sorted(ids)  # all of them, each once
    assert consumer.stats()["duplicates"] == 0


def test_an_outage_far_past_the_attempts_pauses_the_sink_and_delivers_everything_in_order_when_it_recovers(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer], caplog: pytest.LogCaptureFixture
) -> None:
    ids = fill(store, RECORDS)
    consumer = started_consumer(consumers, "down")
    # With the old behaviour, 8 attempts (7 waits) per batch: here the consumer answers 503 for 40 waits in a row.
    sleeps = SleepRecorder(lambda waits: consumer.set_mode("normal") if waits == 40 else None)
    fwd = forwarder(store, {"platform": sink("platform", consumer)}, sleeps)
    caplog.set_level(logging.INFO, "tanpuhui.forwarder")

    summary = drain_with(fwd, ride_out=True)

    assert summary.ok and summary["platform"].delivered == RECORDS and summary["platform"].retries == 40
    assert store.dead_letters() == []
    assert consumer.ids() == ids  # everything, once, in outbox order: nothing overtook the failing batch
    assert consumer.stats()["duplicates"] == 0
    assert consumer.stats()["requests"] == 41 + RECORDS // BATCH - 1
    for attempt, wait in enumerate(sleeps.waits, start=1):
        assert_backoff(wait, attempt)
    assert sleeps.waits[-30:] == [MAX_BACKOFF] * 30
    state = fwd.states["platform"]
    assert (state.state, state.attempts, state.recoveries) == ("ok", 0, 1)
    assert any(
        "sink platform recovered after" in r.getMessage() and "40 failed" in r.getMessage() for r in caplog.records
    )
    (entry,) = [e for e in store.audit_entries() if e.action == "sink.recovered"]
    assert entry.subject == "platform" and entry.details["failed_attempts"] == 40
    assert "HTTP 503" in entry.details["last_error"]


def test_a_one_shot_drain_leaves_a_failing_batch_in_the_outbox_and_the_next_drain_delivers_in_order(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    consumer = consumers()  # bound, not started: connections are refused
    sleeps = SleepRecorder()
    fwd = forwarder(store, {"platform": sink("platform", consumer)}, sleeps, attempts=3)

    first = drain_with(fwd)

    result = first["platform"]
    assert result.retrying and not first.ok
    assert (result.delivered, result.dead_lettered, result.batches, result.retries) == (0, 0, 0, 2)
    assert "connection failed" in (result.last_error or "")
    assert store.sink_position("platform") == 0 and store.dead_letters() == []
    state = fwd.states["platform"]
    assert (state.state, state.attempts, state.given_up) == ("retrying", 3, False)

    consumer.start()
    second = drain_with(fwd)

    assert second.ok and second["platform"].delivered == RECORDS
    assert consumer.ids() == ids
    assert (fwd.states["platform"].state, fwd.states["platform"].recoveries) == ("ok", 1)


def test_a_4xx_is_dead_lettered_at_once_with_the_consumers_answer_while_riding_out(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    fill(store, 2 * BATCH)
    wrong = ConsumerServer("whsec_" + base64.b64encode(b"a consumer with another key 1234").decode()).start()
    try:
        sleeps = SleepRecorder()
        fwd = forwarder(store, {"platform": sink("platform", wrong)}, sleeps)
        summary = drain_with(fwd, ride_out=True)
    finally:
        wrong.close()

    assert summary["platform"].dead_lettered == 2 * BATCH and sleeps.waits == []
    letters = store.dead_letters(limit=10_000)
    assert len(letters) == 2 * BATCH
    # The consumer's answer, status and body, is kept with the number of tries.
    assert all(
        letter.attempts == 1 and "HTTP 401" in letter.error and "signature" in letter.error for letter in letters
    )
    assert fwd.states["platform"].state == "ok"


def test_after_give_up_after_of_continuous_failure_batches_become_dead_letters_that_replay_delivers(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    ids = fill(store, RECORDS)
    consumer = started_consumer(consumers, "down")
    window = 0.4
    fwd = forwarder(
        store,
        {"platform": sink("platform", consumer)},
        asyncio.sleep,  # real waits: the outage window is measured on the clock
        attempts=2,
        initial_backoff=0.01,
        max_backoff=0.02,
        give_up_after=window,
    )
    started = time.time()

    summary = drain_with(fwd, ride_out=True)

    assert summary["platform"].dead_lettered == RECORDS and summary["platform"].delivered == 0
    letters = sorted(store.dead_letters(limit=10_000), key=lambda letter: letter.seq)
    assert [letter.record_id for letter in letters] == ids
    assert all("HTTP 503" in letter.error for letter in letters)
    first_dead = datetime.fromisoformat(letters[0].created_at).timestamp()
    assert first_dead - started >= window - 0.01  # nothing was dead-lettered before the window passed
    assert letters[0].attempts > 2  # the first batch kept being retried past its attempts
    assert {letter.attempts for letter in letters[BATCH:]} == {2}  # then each failing batch after its attempts
    state = fwd.states["platform"]
    assert state.state == "retrying" and state.given_up

    consumer.set_mode("normal")
    assert len(replay_with(fwd, letters)) == RECORDS
    assert consumer.ids() == ids and store.dead_letters() == []


def test_shutdown_ends_a_long_retry_wait_at_once_and_marks_nothing(
    store: SQLiteStore, consumers: Callable[[], ConsumerServer]
) -> None:
    fill(store, BATCH)
    consumer = consumers()  # refused
    stopping = Stopping()
    fwd = forwarder(store, {"platform": sink("platform", consumer)}, stopping.sleep, initial_backoff=600.0)

    async def body() -> float:
        task = asyncio.ensure_future(fwd.drain(ride_out=True))
        while fwd.states["platform"].next_attempt_at is None:  # the first try failed: waiting 10 min
            await asyncio.sleep(0.01)
        stopping.set()
        asked = time.monotonic()
        with pytest.raises(ShutdownRequested):
            await task
        took = time.monotonic() - asked
        await fwd.sinks["platform"].aclose()
        return took

    assert run(body) < 0.5
    assert store.sink_position("platform") == 0 and store.dead_letters() == []
