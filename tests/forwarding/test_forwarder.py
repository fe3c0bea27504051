"""The forwarder: positions per sink, dead letters and replay, independence of sinks."""

from __future__ import annotations

import asyncio

import pytest

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.sinks.http import HttpSink
from tanpuhui.hub.sinks.jsonl import JsonlSink
from tanpuhui.sdk import ConfigError, OutboxRow, Sink, SinkError, SinkSettings


def http_sink(url, secret, name="platform"):
    return HttpSink(name, HttpSink.Settings(type="http", url=url, secret=secret))


async def closing(sinks, work):
    try:
        return await work
    finally:
        for sink in sinks.values():
            await sink.aclose()


def test_with_give_up_after_0_records_that_exhaust_their_attempts_become_dead_letters_and_replay_delivers_them(
    store, fill, make_consumer, sleeps, secret
):
    ids = fill(store, 1500)
    consumer = make_consumer()  # port reserved, not listening: connection refused
    sinks = {"platform": http_sink(consumer.url, secret)}
    forwarder = Forwarder(store, sinks, batch_size=1000, attempts=3, initial_backoff=0.5, give_up_after=0, sleep=sleeps)

    summary = asyncio.run(closing(sinks, forwarder.drain()))

    result = summary["platform"]
    assert (result.delivered, result.dead_lettered, result.batches, result.retries) == (0, 1500, 2, 4)
    assert "connection failed" in (result.last_error or "")
    assert len(sleeps.waits) == 4 and sleeps.waits[0] < sleeps.waits[1]  # exponential backoff per batch
    letters = store.dead_letters("platform", limit=10_000)
    assert [letter.record_id for letter in letters] == ids
    assert {letter.attempts for letter in letters} == {3}
    assert store.sink_position("platform") == store.outbox_max_seq()

    consumer.start()

    async def replay():
        return await forwarder.replay([letter.id for letter in letters])

    delivered, still_failing = asyncio.run(closing(sinks, replay()))

    assert sorted(delivered) == sorted(letter.id for letter in letters)
    assert still_failing == []
    assert store.dead_letters() == []
    assert consumer.ids() == ids
    assert consumer.stats()["duplicates"] == 0


def test_replay_keeps_what_still_fails_and_reports_unknown_ids(store, fill, make_consumer, sleeps, secret):
    fill(store, 20)
    consumer = make_consumer()
    sinks = {"platform": http_sink(consumer.url, secret)}
    forwarder = Forwarder(store, sinks, attempts=2, give_up_after=0, sleep=sleeps)
    asyncio.run(closing(sinks, forwarder.drain()))
    letters = store.dead_letters()

    result = asyncio.run(closing(sinks, forwarder.replay([letter.id for letter in letters] + [999_999])))

    assert result.delivered == []
    assert sorted(result.still_failing) == [letter.id for letter in letters]
    assert result.missing == [999_999]
    assert "connection failed" in result.errors["platform"]
    assert len(store.dead_letters()) == 20


def test_replay_of_a_sink_that_is_no_longer_configured_keeps_the_dead_letters(store, fill, tmp_path):
    fill(store, 5)
    row = store.read_outbox(0, 1)[0]
    store.advance_sink("retired", row.seq, dead=[(row, 8, "HTTP 500")])
    (letter,) = store.dead_letters()

    sinks = {"archive": JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=tmp_path / "a.jsonl"))}
    result = asyncio.run(closing(sinks, Forwarder(store, sinks).replay([letter.id])))

    assert (result.delivered, result.still_failing) == ([], [letter.id])
    assert "not configured" in result.errors["retired"]


def test_draining_twice_sends_nothing_twice(store, fill, consumer, secret):
    fill(store, 1200)
    sinks = {"platform": http_sink(consumer.url, secret)}
    forwarder = Forwarder(store, sinks)

    async def twice():
        return await forwarder.drain(), await forwarder.drain()

    first, second = asyncio.run(closing(sinks, twice()))

    assert first["platform"].delivered == 1200
    assert (second["platform"].delivered, second["platform"].batches) == (0, 0)
    stats = consumer.stats()
    assert (stats["requests"], stats["received"], stats["duplicates"]) == (2, 1200, 0)


def test_new_records_are_picked_up_from_the_sinks_position(store, fill, consumer, secret):
    ids = fill(store, 300)
    sinks = {"platform": http_sink(consumer.url, secret)}
    forwarder = Forwarder(store, sinks)
    asyncio.run(closing(sinks, forwarder.drain()))

    ids += fill(store, 200, offset=300)
    summary = asyncio.run(closing(sinks, forwarder.drain()))

    assert summary["platform"].delivered == 200
    assert consumer.ids() == ids


def test_sinks_are_independent_one_down_does_not_hold_back_another(
    store, fill, make_consumer, sleeps, secret, tmp_path
):
    ids = fill(store, 2500)
    down = make_consumer()  # refuses connections
    gone = make_consumer(mode="gone").start()
    up = make_consumer().start()
    sinks = {
        "down": http_sink(down.url, secret, name="down"),
        "gone": http_sink(gone.url, secret, name="gone"),
        "up": http_sink(up.url, secret, name="up"),
        "archive": JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=tmp_path / "archive.jsonl")),
    }
    forwarder = Forwarder(store, sinks, attempts=2, sleep=sleeps)
    progress: dict[str, int] = {}

    def count(sink: str, rows: int) -> None:
        progress[sink] = progress.get(sink, 0) + rows

    summary = asyncio.run(closing(sinks, forwarder.drain(progress=count)))

    assert summary["down"].retrying and summary["down"].dead_lettered == 0 and store.sink_position("down") == 0
    assert summary["gone"].gone and store.sink_position("gone") == 0
    assert summary["up"].delivered == 2500 and up.ids() == ids
    assert summary["archive"].delivered == 2500
    assert len((tmp_path / "archive.jsonl").read_bytes().splitlines()) == 2500
    assert progress == {"up": 2500, "archive": 2500}
    assert not summary.ok
    assert store.dead_letters() == []
    states = {name: state.state for name, state in forwarder.states.items()}
    assert states == {"down": "retrying", "gone": "stopped", "up": "ok", "archive": "ok"}


def test_drain_of_one_named_sink_leaves_the_others_alone(store, fill, consumer, secret, tmp_path):
    fill(store, 50)
    sinks = {
        "platform": http_sink(consumer.url, secret),
        "archive": JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=tmp_path / "a.jsonl")),
    }
    forwarder = Forwarder(store, sinks)

    summary = asyncio.run(closing(sinks, forwarder.drain("archive")))

    assert list(summary) == ["archive"]
    assert store.sink_position("platform") == 0
    with pytest.raises(ConfigError, match="unknown sink 'nope'; configured sinks: archive, platform"):
        asyncio.run(forwarder.drain("nope"))


class Broken(Sink):
    kind = "broken"

    async def send(self, batch):
        raise RuntimeError("bug in a third-party sink")


class Flaky(Sink):
    """Fails permanently on the batch holding a given seq, delivers the rest."""

    kind = "flaky"

    def __init__(self, bad_seq):
        super().__init__("flaky", SinkSettings(type="flaky"))
        self.bad_seq = bad_seq
        self.sent: list[OutboxRow] = []

    async def send(self, batch):
        if any(row.seq == self.bad_seq for row in batch):
            raise SinkError("HTTP 422 Unprocessable Entity", retryable=False)
        self.sent.extend(batch)


def test_a_sink_that_raises_something_else_is_stopped_without_marking_anything(store, fill, tmp_path):
    fill(store, 10)
    sinks = {
        "broken": Broken("broken", SinkSettings(type="broken")),
        "archive": JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=tmp_path / "a.jsonl")),
    }

    forwarder = Forwarder(store, sinks)

    summary = asyncio.run(closing(sinks, forwarder.drain()))

    assert summary["broken"].failed and "bug in a third-party sink" in (summary["broken"].last_error or "")
    assert store.sink_position("broken") == 0 and store.dead_letters() == []
    assert summary["archive"].delivered == 10
    broken = forwarder.states["broken"]
    assert broken.state == "stopped" and "RuntimeError: bug in a third-party sink" in (broken.last_error or "")


def test_a_permanent_failure_dead_letters_only_its_batch(store, fill):
    fill(store, 30)
    flaky = Flaky(bad_seq=15)

    summary = asyncio.run(Forwarder(store, {"flaky": flaky}, batch_size=10).drain())

    assert (summary["flaky"].delivered, summary["flaky"].dead_lettered) == (20, 10)
    assert [row.seq for row in flaky.sent] == [*range(1, 11), *range(21, 31)]
    assert [letter.seq for letter in store.dead_letters()] == list(range(11, 21))


def test_builtin_sinks_are_registered_through_the_plugin_hook():
    plugins = load_plugins(entry_points=False)
    assert plugins.sinks["jsonl"] is JsonlSink
    assert plugins.sinks["http"] is HttpSink


def test_configured_gives_each_forwarder_setting_to_the_forwarder_argument_of_its_name(store) -> None:
    from tanpuhui.hub.config import ForwarderSettings

    settings = ForwarderSettings(
        batch_size=7, attempts=3, initial_backoff="2s", max_backoff="1m", max_retry_after="30s", give_up_after="1h"
    )
    forwarder = Forwarder.configured(store, {}, settings, owner="replica-a", lease_ttl=12.0)
    assert (forwarder.batch_size, forwarder.attempts, forwarder.initial_backoff, forwarder.max_backoff) == (7, 3, 2, 60)
    assert (forwarder.max_retry_after, forwarder.give_up_after) == (30, 3600)
    assert (forwarder.owner, forwarder.lease_ttl) == ("replica-a", 12.0)
