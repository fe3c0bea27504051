"""The RabbitMQ sink against the real broker on loopback: confirms, CloudEvents AMQP headers, connections cut mid-way.

Outages: a proxy between the sink and RabbitMQ that resets every connection mid-delivery and refuses new ones for a
while, and a real restart of the broker (``rabbitmqctl stop_app`` / ``start_app``: the node's RabbitMQ application
stops, dropping every connection, and comes back with its durable queues and persistent messages).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess

import aio_pika
import orjson
import pytest
from sink_brokers import CuttableProxy, drain_through_outage, sink_failure

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.amqp import AmqpSink
from tanpuhui.testing.loopback import free_port

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def amqp_sink(port: int = 5672, **settings: object) -> AmqpSink:
    table = {"type": "amqp", "url": f"amqp://guest@127.0.0.1:{port}/", "password": "guest", **settings}
    return AmqpSink("bus", AmqpSink.Settings.model_validate(table))


class Topology:
    """A uniquely named topic exchange with one durable queue bound to everything on it (the consumer's side)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.exchange = f"tanpuhui_test_{tag}"
        self.queue = f"tanpuhui_test_{tag}_records"

    async def __aenter__(self) -> Topology:
        self.connection = await aio_pika.connect(BROKER)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.queue, durable=True)
        await queue.bind(exchange, "#")
        self.channel = channel
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.queue_delete(self.queue)
        await self.channel.exchange_delete(self.exchange)
        await self.connection.close()

    async def take_all(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message in the queue (an independent consumer, acknowledging each)."""
        queue = await self.channel.get_queue(self.queue)
        out = []
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            await message.ack()
            out.append(message)
        return out


def test_publishes_persistent_confirmed_cloudevents_with_the_record_id_as_message_id(store, fill):
    ids = fill(store, 250)

    async def run():
        async with Topology() as topology:
            sink = amqp_sink(exchange=topology.exchange, routing_key="reductions.{adapter}.{scenario}")
            try:
                await sink.check()
                summary = await Forwarder(store, {"bus": sink}, batch_size=100).drain()
            finally:
                await sink.aclose()
            return summary, await topology.take_all()

    summary, messages = asyncio.run(run())

    assert summary["bus"].delivered == 250
    assert [m.message_id for m in messages] == ids
    first = messages[0]
    record = orjson.loads(first.body)
    assert first.message_id == first.headers["cloudEvents:id"] == record["record_id"]
    assert first.headers["cloudEvents:specversion"] == "1.0"
    assert first.headers["cloudEvents:type"] == "org.tanpuhui.reduction.v1"
    assert first.headers["cloudEvents:source"] == "urn:tanpuhui:hub/transit_card/trips"
    assert first.content_type == "application/json"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.routing_key == f"reductions.transit_card.{record['scenario']}"


def test_every_record_arrives_when_connections_are_cut_mid_delivery(store, fill):
    ids = fill(store, 600)

    async def run():
        async with Topology() as topology, CuttableProxy(5672) as proxy:
            sink = amqp_sink(proxy.port, exchange=topology.exchange, timeout=2)
            summary, forwarder = await drain_through_outage(
                store, sink, after_rows=150, begin=proxy.cut, end=proxy.restore, outage_seconds=1.0
            )
            return summary, forwarder, await topology.take_all()

    summary, forwarder, messages = asyncio.run(run())

    assert forwarder.states["bus"].recoveries >= 1, "the cut did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    received = [m.message_id for m in messages]
    assert set(received) == set(ids)  # none lost; a re-sent batch may add duplicates
    for message in messages:  # ... and a duplicate carries the same id
        assert message.message_id == message.headers["cloudEvents:id"] == orjson.loads(message.body)["record_id"]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def _can_restart_the_broker() -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        subprocess.run(["rabbitmqctl", "status"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.mark.skipif(not _can_restart_the_broker(), reason="needs rabbitmqctl with rights over the local node")
def test_every_record_arrives_when_the_broker_restarts_mid_delivery(store, fill):
    ids = fill(store, 6000)  # stop_app takes a second or two: enough left to deliver when it lands

    async def run():
        topology = Topology()
        await topology.__aenter__()
        await topology.connection.close()  # the restart drops it; the consumer reads on a new connection after
        sink = amqp_sink(exchange=topology.exchange, timeout=2)
        try:
            summary, forwarder = await drain_through_outage(
                store,
                sink,
                after_rows=100,
                begin=lambda: asyncio.to_thread(_rabbitmqctl, "stop_app"),
                end=lambda: asyncio.to_thread(_rabbitmqctl, "start_app"),
                outage_seconds=1.0,
            )
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")  # idempotent: the broker is up whatever happened
        reader = Topology()
        reader.exchange, reader.queue = topology.exchange, topology.queue
        await reader.__aenter__()  # declares the same durable exchange and queue: the messages are still there
        try:
            return summary, forwarder, await reader.take_all()
        finally:
            await reader.__aexit__()

    summary, forwarder, messages = asyncio.run(run())

    assert forwarder.states["bus"].recoveries >= 1, "the restart did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (6000, 0)
    assert set(m.message_id for m in messages) == set(ids)  # none lost across the restart
    for message in messages:  # a re-sent batch's duplicates carry the same id
        assert message.message_id == message.headers["cloudEvents:id"] == orjson.loads(message.body)["record_id"]


def test_an_exchange_that_does_not_exist_fails_readiness_naming_it():
    sink = amqp_sink(exchange="tanpuhui_test_missing_" + secrets.token_hex(4))

    error = sink_failure(sink)
    assert error.retryable
    assert "amqp sink 'bus'" in str(error) and "tanpuhui_test_missing_" in str(error)


def test_a_message_no_queue_is_bound_for_is_retried_not_lost(store, fill):
    fill(store, 3)
    sink = amqp_sink(routing_key="tanpuhui_test_nobody_" + secrets.token_hex(4))

    error = sink_failure(sink, store.read_outbox(0, 3))
    assert error.retryable
    assert "no queue is bound for it" in str(error)


def test_a_broker_that_is_down_is_a_transient_failure():
    sink = amqp_sink(free_port(), timeout=1)

    assert sink_failure(sink).retryable
