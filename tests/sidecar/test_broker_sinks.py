"""The broker sinks in the sidecar: delivered by the forwarding loop, readiness in /readyz, per-sink metrics."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import nats

from tanpuhui.testing.loopback import free_port, wait_until

from .conftest import SidecarFactory, hub_config, ride
from .test_health_metrics import metric


async def _stream(name: str, create: bool) -> int:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
            return 0
        count = (await js.stream_info(name)).state.messages
        await js.delete_stream(name)
        return int(count)
    finally:
        await nc.close()


def test_a_nats_sink_delivers_and_readyz_names_an_unreachable_mqtt_sink(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    stream = f"SIDECAR_{secrets.token_hex(4)}"
    asyncio.run(_stream(stream, create=True))
    sinks = {
        "bus": {"type": "nats", "subject": f"{stream.lower()}.{{scenario}}", "stream": stream},
        "iot": {"type": "mqtt", "url": f"mqtt://127.0.0.1:{free_port()}", "timeout": 1},
    }
    try:
        server = start_sidecar(hub_config(tmp_path, sinks=sinks, server={"readiness_timeout": 3}))
        assert server.post_ride([ride(1), ride(2), ride(3)], "msg_b1").status_code == 200
        scrape = lambda: server.http.get("/metrics").text  # noqa: E731
        wait_until(lambda: 'tanpuhui_delivered_records_total{sink="bus"} 3.0' in scrape(), what="delivery to NATS")
        ready = server.http.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]["sinks"]
        assert checks["bus"]["ok"] is True
        assert checks["iot"]["ok"] is False
        assert "mqtt sink 'iot'" in str(checks["iot"]) and "cannot connect" in str(checks["iot"])
        text = scrape()
        assert metric(text, "tanpuhui_outbox_backlog_records", sink="bus") == 0
        assert metric(text, "tanpuhui_outbox_backlog_records", sink="iot") == 3
        assert metric(text, "tanpuhui_sink_state", sink="iot", state="retrying") == 1
    finally:
        assert asyncio.run(_stream(stream, create=False)) == 3
