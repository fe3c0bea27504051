"""The NATS JetStream sink against real nats-server processes: acks, dedup by Nats-Msg-Id, a broker killed mid-way."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import ssl
import sys

import nats
import orjson
import pytest
from sink_brokers import BrokerProcess, drain_through_outage, make_certificates, sink_failure

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.nats import NatsSink
from tanpuhui.sdk import ConfigError, SinkError
from tanpuhui.testing.loopback import free_port

SHARED_NATS = "nats://127.0.0.1:4222"

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="needs nats-server (apt install nats-server)"
)


def nats_sink(url: str, **settings: object) -> NatsSink:
    return NatsSink("bus", NatsSink.Settings.model_validate({"type": "nats", "url": url, **settings}))


async def create_stream(url: str, name: str, subjects: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=subjects)
    finally:
        await nc.close()


async def read_stream(url: str, name: str) -> list[tuple[str, dict[str, str], dict[str, object]]]:
    """Every message in the stream as (subject, headers, record): an independent reader, by sequence."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(name, seq)
            out.append((msg.subject, dict(msg.headers or {}), orjson.loads(msg.data)))
        return out
    finally:
        await nc.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def test_publishes_one_cloudevent_per_record_and_a_resent_batch_is_deduplicated(store, fill):
    ids = fill(store, 300)
    stream = unique("SINKTEST")
    subject = f"{stream.lower()}.{{scenario}}"

    async def run():
        await create_stream(SHARED_NATS, stream, [f"{stream.lower()}.>"])
        sink = nats_sink(SHARED_NATS, subject=subject, stream=stream)
        try:
            await sink.check()
            summary = await Forwarder(store, {"bus": sink}, batch_size=100).drain()
            await sink.send(store.read_outbox(0, 100))  # what a crash between send and mark re-sends
            return summary, await read_stream(SHARED_NATS, stream)
        finally:
            await sink.aclose()
            nc = await nats.connect(SHARED_NATS)
            await nc.jetstream().delete_stream(stream)
            await nc.close()

    summary, messages = asyncio.run(run())

    assert summary["bus"].delivered == 300
    assert [headers["ce-id"] for _, headers, _ in messages] == ids  # JetStream dropped the 100 re-sent
    subject_, headers, record = messages[0]
    assert headers["Nats-Msg-Id"] == headers["ce-id"] == record["record_id"]
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "org.tanpuhui.reduction.v1"
    assert headers["ce-source"] == "urn:tanpuhui:hub/transit_card/trips"
    assert headers["content-type"] == "application/json"
    assert subject_ == f"{stream.lower()}.metro" == f"{stream.lower()}.{record['scenario']}"
    assert {s for s, _, _ in messages} == {f"{stream.lower()}.{x}" for x in ("metro", "bus", "peak_electricity_saving")}


def test_every_record_arrives_when_the_broker_is_killed_and_restarted_mid_delivery(store, fill, tmp_path):
    ids = fill(store, 600)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    command = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")]
    stream = unique("OUTAGE")

    async def run(server: BrokerProcess):
        await create_stream(url, stream, ["outage.>"])
        sink = nats_sink(url, subject="outage.{adapter}.{scenario}", stream=stream, timeout=0.5)
        summary, forwarder = await drain_through_outage(
            store, sink, after_rows=150, begin=server.kill, end=server.start, outage_seconds=1.5
        )
        return summary, forwarder, await read_stream(url, stream)

    with BrokerProcess(command, port, tmp_path / "nats.log") as server:
        summary, forwarder, messages = asyncio.run(run(server))

    assert server.starts == 2
    assert forwarder.states["bus"].recoveries >= 1, "the kill did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    received = [headers["ce-id"] for _, headers, _ in messages]
    assert set(received) == set(ids)  # none lost
    for _, headers, record in messages:  # a duplicate (outside the dedup window) carries the same id
        assert headers["Nats-Msg-Id"] == headers["ce-id"] == record["record_id"]


def test_a_stopped_server_is_a_transient_failure_and_readiness_fails_naming_the_sink():
    sink = nats_sink(f"nats://127.0.0.1:{free_port()}", timeout=1)

    error = sink_failure(sink)
    assert error.retryable
    assert "nats sink 'bus'" in str(error) and "cannot connect" in str(error)


def test_a_subject_no_stream_stores_is_retried_not_dead_lettered(store, fill):
    fill(store, 3)
    sink = nats_sink(SHARED_NATS, subject=unique("nostream") + ".{scenario}", timeout=1)

    error = sink_failure(sink, store.read_outbox(0, 3))
    assert error.retryable
    assert "no JetStream stream stores this subject" in str(error)


def test_a_missing_client_library_is_a_config_error_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    with pytest.raises(ConfigError, match=r"the nats sink needs the nats-py package: pip install 'tanpuhui\[sinks\]'"):
        nats_sink(SHARED_NATS)


def test_delivers_over_tls_verifying_the_server_with_the_configured_ca(store, fill, tmp_path):
    ids = fill(store, 40)
    certs = make_certificates(tmp_path)
    port = free_port()
    command = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js"), "--tls",
               "--tlscert", str(certs.cert_file), "--tlskey", str(certs.key_file)]  # fmt: skip
    url = f"tls://127.0.0.1:{port}"

    async def run():
        nc = await nats.connect(url, tls=ssl.create_default_context(cafile=str(certs.ca_file)))
        await nc.jetstream().add_stream(name="TLS", subjects=["tls.>"])
        await nc.close()
        untrusted = nats_sink(url, subject="tls.{scenario}", timeout=2)  # the system CAs do not know ours
        with pytest.raises(SinkError, match="cannot connect") as refused:
            await untrusted.check()
        await untrusted.aclose()
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        sink = nats_sink(url, subject="tls.{scenario}", stream="TLS", tls={"ca_file": str(certs.ca_file)})
        try:
            await sink.send(store.read_outbox(0, 40))
        finally:
            await sink.aclose()
        nc = await nats.connect(url, tls=ssl.create_default_context(cafile=str(certs.ca_file)))
        try:
            return (await nc.jetstream().stream_info("TLS")).state.messages
        finally:
            await nc.close()

    with BrokerProcess(command, port, tmp_path / "nats.log"):
        assert asyncio.run(run()) == len(ids)
