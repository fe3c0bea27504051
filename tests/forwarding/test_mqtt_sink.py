"""The MQTT 5 sink against real Mosquitto brokers: QoS 1, CloudEvents user properties, connections cut mid-way.

The shared broker is never restarted: the outage is a proxy between the sink and Mosquitto that resets the sink's
connection mid-delivery and refuses new ones for a while; the independent subscriber stays connected directly.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil

import aiomqtt
import orjson
import pytest
from sink_brokers import BrokerProcess, CuttableProxy, drain_through_outage, make_certificates, sink_failure

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.mqtt import MqttSink
from tanpuhui.sdk import SinkError
from tanpuhui.testing.loopback import free_port


def mqtt_sink(port: int = 1883, **settings: object) -> MqttSink:
    return MqttSink(
        "bus", MqttSink.Settings.model_validate({"type": "mqtt", "url": f"mqtt://127.0.0.1:{port}", **settings})
    )


class Subscriber:
    """An independent MQTT 5 consumer on the shared broker, subscribed at QoS 1 before anything is published."""

    def __init__(self, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        self.messages: list[aiomqtt.Message] = []
        self.client = aiomqtt.Client("127.0.0.1", 1883, protocol=aiomqtt.ProtocolVersion.V5)

    async def __aenter__(self) -> Subscriber:
        await self.client.__aenter__()
        await self.client.subscribe(self.topic_filter, qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.client.messages:
            self.messages.append(message)

    async def wait_for(self, ids: set[str], timeout: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ids <= {user_properties(m)["id"] for m in self.messages} and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await self.client.__aexit__(None, None, None)


def user_properties(message: aiomqtt.Message) -> dict[str, str]:
    return dict(message.properties.UserProperty)  # type: ignore[union-attr]


def test_publishes_one_cloudevent_per_record_at_qos_1(store, fill):
    ids = fill(store, 200)
    prefix = f"tanpuhui_test_{secrets.token_hex(4)}"

    async def run():
        async with Subscriber(f"{prefix}/#") as subscriber:
            sink = mqtt_sink(topic=prefix + "/{adapter}/{scenario}")
            try:
                await sink.check()
                summary = await Forwarder(store, {"bus": sink}, batch_size=100).drain()
            finally:
                await sink.aclose()
            await subscriber.wait_for(set(ids))
            return summary, subscriber.messages

    summary, messages = asyncio.run(run())

    assert summary["bus"].delivered == 200
    assert sorted(user_properties(m)["id"] for m in messages) == sorted(ids)
    first = next(m for m in messages if user_properties(m)["id"] == ids[0])
    record = orjson.loads(first.payload)  # type: ignore[arg-type]
    props = user_properties(first)
    assert props["id"] == record["record_id"]
    assert (props["specversion"], props["type"]) == ("1.0", "org.tanpuhui.reduction.v1")
    assert props["source"] == "urn:tanpuhui:hub/transit_card/trips"
    assert first.properties.ContentType == "application/json"  # type: ignore[union-attr]
    assert first.qos == 1
    assert str(first.topic) == f"{prefix}/transit_card/{record['scenario']}"


def test_every_record_arrives_when_the_connection_is_cut_mid_delivery(store, fill):
    ids = fill(store, 600)
    prefix = f"tanpuhui_test_{secrets.token_hex(4)}"

    async def run():
        async with Subscriber(f"{prefix}/#") as subscriber, CuttableProxy(1883) as proxy:
            sink = mqtt_sink(proxy.port, topic=prefix + "/{scenario}", timeout=2)
            summary, forwarder = await drain_through_outage(
                store, sink, after_rows=150, begin=proxy.cut, end=proxy.restore, outage_seconds=1.0
            )
            await subscriber.wait_for(set(ids))
            return summary, forwarder, subscriber.messages

    summary, forwarder, messages = asyncio.run(run())

    assert forwarder.states["bus"].recoveries >= 1, "the cut did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    assert {user_properties(m)["id"] for m in messages} == set(ids)  # none lost
    for message in messages:  # a duplicate carries the same id
        assert user_properties(message)["id"] == orjson.loads(message.payload)["record_id"]  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
def test_every_record_reaches_a_persistent_subscriber_when_the_broker_restarts_mid_delivery(store, fill, tmp_path):
    """A private Mosquitto with persistence, stopped (SIGTERM, as a service restart) and started again mid-delivery;
    the consumer has a persistent session (clean_start false, session expiry) and reconnects."""
    ids = fill(store, 600)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {tmp_path}/\nmax_queued_messages 0\nuser root\n"
    )
    command = ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")]
    seen: list[tuple[str, str]] = []

    async def consume(done: asyncio.Event) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = 3600
        first = True
        while not done.is_set():
            client = aiomqtt.Client(
                "127.0.0.1",
                port,
                identifier="carbon-account",
                clean_start=False,
                protocol=aiomqtt.ProtocolVersion.V5,
                properties=session,
            )
            try:
                async with client:
                    if first:
                        await client.subscribe("restart/#", qos=1)
                        first = False
                    async for message in client.messages:
                        record = orjson.loads(message.payload)  # type: ignore[arg-type]
                        seen.append((user_properties(message)["id"], record["record_id"]))
                        if {i for i, _ in seen} >= set(ids):
                            done.set()
                            return
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # the broker is restarting: connect again, the session waits for us

    async def run(server: BrokerProcess):
        done = asyncio.Event()
        consumer = asyncio.create_task(consume(done))
        await asyncio.sleep(0.3)
        sink = mqtt_sink(port, topic="restart/{scenario}", timeout=2)
        summary, forwarder = await drain_through_outage(
            store, sink, after_rows=150, begin=server.stop, end=server.start, outage_seconds=1.0
        )
        await asyncio.wait_for(consumer, 30)
        return summary, forwarder

    with BrokerProcess(command, port, tmp_path / "mosquitto.log") as server:
        summary, forwarder = asyncio.run(run(server))

    assert server.starts == 2
    assert forwarder.states["bus"].recoveries >= 1, "the restart did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    assert {i for i, _ in seen} == set(ids)  # none lost
    assert all(i == record_id for i, record_id in seen)  # a duplicate carries the same id


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
def test_a_publish_the_broker_refuses_is_dead_lettered_not_counted_delivered(store, fill, tmp_path):
    """Mosquitto answers PUBACK 0x87 (not authorized) when its ACL forbids the topic: a permanent failure."""
    fill(store, 5)
    port = free_port()
    (tmp_path / "acl").write_text("topic read #\n")
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {tmp_path / 'acl'}\nuser root\n"
    )
    sink = mqtt_sink(port, timeout=2)

    async def run():
        try:
            return await Forwarder(store, {"bus": sink}, batch_size=10, attempts=1).drain()
        finally:
            await sink.aclose()

    command = ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")]
    with BrokerProcess(command, port, tmp_path / "mosquitto.log"):
        summary = asyncio.run(run())

    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (0, 5)
    assert "0x87" in (summary["bus"].last_error or "")
    assert store.dead_letters("bus")[0].error.startswith("mqtt sink 'bus'")


def test_a_broker_that_is_down_is_a_transient_failure():
    sink = mqtt_sink(free_port(), timeout=1)

    error = sink_failure(sink)
    assert error.retryable and "mqtt sink 'bus'" in str(error)


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
def test_delivers_over_tls_verifying_the_server_with_the_configured_ca(store, fill, tmp_path):
    fill(store, 30)
    certs = make_certificates(tmp_path)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\ncertfile {certs.cert_file}\nkeyfile {certs.key_file}\n"
        "user root\n"
    )

    async def run():
        untrusted = mqtt_sink(port, timeout=2, tls={})  # the system CAs do not know ours
        with pytest.raises(SinkError) as refused:
            await untrusted.check()
        await untrusted.aclose()
        sink = mqtt_sink(port, topic="tls/{scenario}", timeout=2, tls={"ca_file": str(certs.ca_file)})
        try:
            return refused.value, await Forwarder(store, {"bus": sink}, batch_size=10).drain()
        finally:
            await sink.aclose()

    with BrokerProcess(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], port, tmp_path / "mosquitto.log"):
        refused, summary = asyncio.run(run())

    assert "cannot connect" in str(refused) and "CERTIFICATE_VERIFY_FAILED" in str(refused)
    assert summary["bus"].delivered == 30
