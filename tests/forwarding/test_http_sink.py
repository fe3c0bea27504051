"""The HTTP sink against a real loopback consumer: CloudEvents batches, Standard Webhooks signatures, outcomes."""

from __future__ import annotations

import asyncio
import socket

import jsonschema
import orjson
import pydantic
import pytest

from tanpuhui.hub.consumer import Scripted
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.http import BATCH_CONTENT_TYPE, EVENT_TYPE, HttpSink, build_batch
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import OutboxRow, SinkError


def http_sink(url, secret, **settings):
    return HttpSink("platform", HttpSink.Settings(type="http", url=url, secret=secret, **settings))


def drain(store, sinks, **options):
    async def run():
        try:
            return await Forwarder(store, sinks, **options).drain()
        finally:
            for sink in sinks.values():
                await sink.aclose()

    return asyncio.run(run())


def test_delivers_cloudevents_batches_whose_ids_are_the_record_ids(store, fill, consumer, secret):
    ids = fill(store, 2500)

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, batch_size=1000)

    assert (summary["platform"].delivered, summary["platform"].batches) == (2500, 3)
    assert consumer.ids() == ids
    deliveries = consumer.deliveries()
    assert [d.content_type for d in deliveries] == [BATCH_CONTENT_TYPE] * 3
    assert [len(d.ids) for d in deliveries] == [1000, 1000, 500]
    assert deliveries[0].webhook_id == f"batch_{ids[0]}_{ids[999]}_1000"
    stats = consumer.stats()
    assert (stats["received"], stats["unique"], stats["duplicates"], stats["rejected"]) == (2500, 2500, 0, 0)
    assert set(stats["kgco2e_by_scenario"]) == {"metro", "bus", "peak_electricity_saving"}
    assert store.sink_position("platform") == store.outbox_max_seq()


def test_event_data_is_a_valid_reduction_record(store, fill):
    fill(store, 6)
    validator = jsonschema.Draft202012Validator(
        load_builtin("reduction-record"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    events = orjson.loads(build_batch(store.read_outbox(0, 10), "urn:tanpuhui:hub"))

    assert len(events) == 6
    for event in events:
        assert list(validator.iter_errors(event["data"])) == []


def test_each_event_carries_the_stored_record_as_data_and_no_personal_data_in_its_attributes(store, fill):
    fill(store, 3)
    rows = store.read_outbox(0, 10)

    events = orjson.loads(build_batch(rows, "urn:tanpuhui:hub"))

    for row, event in zip(rows, events, strict=True):
        record = orjson.loads(row.body)
        assert event == {
            "specversion": "1.0",
            "id": row.record_id,
            "source": f"urn:tanpuhui:hub/{row.adapter}/{row.stream}",
            "type": EVENT_TYPE,
            "datacontenttype": "application/json",
            "data": record,
        }
        attributes = orjson.dumps({k: v for k, v in event.items() if k != "data"}).decode()
        assert record["subject"]["pseudonym"] not in attributes


def test_a_consumer_with_another_secret_rejects_and_the_batch_is_dead_lettered_at_once(
    store, fill, make_consumer, sleeps, secret
):
    fill(store, 40)
    wrong = make_consumer("whsec_c29tZSBvdGhlciBjb25zdW1lciBzZWNyZXQgMTIzNA==").start()

    summary = drain(store, {"platform": http_sink(wrong.url, secret)}, batch_size=25, sleep=sleeps)

    stats = wrong.stats()

    assert (summary["platform"].delivered, summary["platform"].dead_lettered) == (0, 40)
    assert sleeps.waits == []  # a 4xx is not retried
    assert (stats["rejected"], stats["unique"]) == (2, 0)
    letters = store.dead_letters("platform")
    assert len(letters) == 40
    assert all(letter.attempts == 1 and "HTTP 401" in letter.error for letter in letters)
    assert store.sink_position("platform") == store.outbox_max_seq()


def test_a_503_is_retried_and_then_delivered(store, fill, make_consumer, sleeps, secret):
    ids = fill(store, 300)
    consumer = make_consumer(script=[503]).start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps, initial_backoff=0.5)

    assert (summary["platform"].delivered, summary["platform"].retries) == (300, 1)
    assert len(sleeps.waits) == 1 and 0.5 <= sleeps.waits[0] <= 0.75
    assert consumer.ids() == ids
    assert consumer.stats()["scripted"] == 1
    assert store.dead_letters() == []


@pytest.mark.parametrize("status", [425, 501, 507])
def test_every_5xx_and_425_are_transient_retried_then_delivered(store, fill, make_consumer, sleeps, secret, status):
    fill(store, 20)
    consumer = make_consumer(script=[status]).start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps)

    assert (summary["platform"].delivered, summary["platform"].retries) == (20, 1)
    assert store.dead_letters() == []


@pytest.mark.parametrize("status", [404, 422])
def test_a_4xx_the_consumer_means_is_dead_lettered_at_once(store, fill, make_consumer, sleeps, secret, status):
    fill(store, 20)
    consumer = make_consumer(script=[status]).start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps, batch_size=10)

    assert (summary["platform"].dead_lettered, summary["platform"].delivered, sleeps.waits) == (10, 10, [])
    assert {(letter.attempts, f"HTTP {status}" in letter.error) for letter in store.dead_letters()} == {(1, True)}


def test_retry_after_from_a_429_is_honoured_and_capped(store, fill, make_consumer, sleeps, secret):
    fill(store, 100)
    consumer = make_consumer(script=[Scripted(429, retry_after=7), Scripted(503, retry_after=3600)]).start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps, max_retry_after=120.0)

    assert summary["platform"].delivered == 100
    assert sleeps.waits == [7.0, 120.0]
    assert consumer.stats()["unique"] == 100


def test_a_timeout_is_retried(store, fill, make_consumer, sleeps, secret):
    fill(store, 10)
    consumer = make_consumer(script=[Scripted(200, delay=1.0)]).start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret, timeout=0.2)}, sleep=sleeps)

    assert (summary["platform"].delivered, summary["platform"].retries) == (10, 1)
    assert consumer.stats()["unique"] == 10


def test_gone_stops_the_sink_and_leaves_its_records_in_the_outbox(store, fill, make_consumer, sleeps, secret):
    fill(store, 2000)
    consumer = make_consumer(mode="gone").start()

    summary = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps)

    result = summary["platform"]
    assert result.gone and (result.delivered, result.dead_lettered, result.batches) == (0, 0, 0)
    assert "410" in (result.last_error or "")
    assert consumer.stats()["requests"] == 1  # stopped at the first answer, not retried
    assert sleeps.waits == []
    assert store.sink_position("platform") == 0
    assert store.dead_letters() == []
    assert store.counts()["outbox"] == 2000

    consumer.set_mode("normal")
    again = drain(store, {"platform": http_sink(consumer.url, secret)}, sleep=sleeps)
    assert again["platform"].delivered == 2000


def test_max_batch_bytes_splits_a_batch_into_several_requests(store, fill, consumer, secret):
    ids = fill(store, 100)

    summary = drain(store, {"platform": http_sink(consumer.url, secret, max_batch_bytes=20_000)})

    assert summary["platform"].delivered == 100
    deliveries = consumer.deliveries()
    assert len(deliveries) > 1
    assert [i for d in deliveries for i in d.ids] == ids
    assert len({d.webhook_id for d in deliveries}) == len(deliveries)


def test_check_reports_an_unreachable_consumer(consumer, secret):
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        refused = http_sink(f"http://127.0.0.1:{reserved.getsockname()[1]}/events", secret)
        with pytest.raises(SinkError, match="not reachable") as error:
            asyncio.run(refused.check())
    assert error.value.retryable

    reachable = http_sink(consumer.url, secret)

    async def run():
        try:
            await reachable.check()  # the consumer answers OPTIONS with 405: reachable all the same
        finally:
            await reachable.aclose()

    asyncio.run(run())


def test_settings_reject_a_malformed_secret_and_a_url_without_scheme():
    with pytest.raises(pydantic.ValidationError, match="whsec_"):
        HttpSink.Settings(type="http", url="http://127.0.0.1/events", secret="whsec_@@@")
    with pytest.raises(pydantic.ValidationError, match="url"):
        HttpSink.Settings(type="http", url="127.0.0.1/events", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_the_secret_does_not_show_in_the_settings_repr():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = HttpSink.Settings(type="http", url="http://127.0.0.1/events", secret=secret)
    assert secret not in repr(settings)


def test_a_record_id_that_needs_escaping_is_escaped():
    rows = [OutboxRow(1, 'odd"id\\', "a_b", "s_t", "metro", b'{"k":1}')]
    assert orjson.loads(build_batch(rows, "urn:x"))[0]["id"] == 'odd"id\\'
