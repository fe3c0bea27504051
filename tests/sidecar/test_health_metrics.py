"""/healthz, /readyz and /metrics on the real sidecar, with a real consumer and a sandbox partner."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.testing.loopback import wait_until

from .conftest import SidecarFactory, hub_config, ride, sink_table


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=300, seed=11) as partner:
        yield partner


def transit(sandbox: TransitSandbox, **settings: object) -> dict[str, object]:
    return {"transit_card": {**sandbox.settings(client_secret={"env": "TRANSIT_SECRET"}, page_size=100), **settings}}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(3) or "").split(","))) if m.group(3) else ""
        if got == want:
            return float(m.group(4))
    raise AssertionError(f"no sample {name}{{{want}}}")


def test_healthz_answers_while_the_process_lives(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "pid": os.getpid()})


def test_readyz_checks_store_adapters_and_sinks(
    start_sidecar: SidecarFactory, consumer: ConsumerServer, tmp_path: Path
) -> None:
    server = start_sidecar(sinks=sink_table(consumer))
    ready = server.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["store"] == {"ok": True}
    assert checks["sinks"] == {"platform": {"ok": True, "state": "ok"}}
    assert checks["plugins"]["ok"] and "bike_share" in checks["plugins"]["adapters"]
    consumer.stop()
    down = server.http.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["sinks"]["platform"]["ok"] is False


def test_readyz_lists_an_adapter_that_could_not_be_configured(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = hub_config(tmp_path, adapters={"transit_card": {"base_url": "ftp://nope"}})
    response = start_sidecar(config).http.get("/readyz")
    assert response.status_code == 503
    plugins = response.json()["checks"]["plugins"]
    assert plugins["ok"] is False
    assert any("adapters.transit_card" in p for p in plugins["problems"])


def test_metrics_count_records_webhooks_outbox_and_deliveries(
    start_sidecar: SidecarFactory, consumer: ConsumerServer
) -> None:
    server = start_sidecar(sinks=sink_table(consumer))
    assert server.post_ride([ride(1), ride(2), ride(3, km=99.0)], "msg_m1").status_code == 200
    assert server.post_ride(ride(1), "msg_m2").status_code == 200  # a duplicate record under a new webhook id
    server.http.post("/v1/webhooks/bike_share/rides", content=b"{}", headers={"content-type": "text/plain"})
    wait_until(lambda: consumer.stats()["unique"] == 2, what="delivery to the consumer")
    text = wait_until(
        lambda: (
            (t := server.http.get("/metrics").text)
            and metric(t, "tanpuhui_outbox_backlog_records", sink="platform") == 0
            and t
        ),
        what="an empty backlog",
    )
    labels = {"adapter": "bike_share", "stream": "rides"}
    assert metric(text, "tanpuhui_records_total", **labels, outcome="inserted") == 2
    assert metric(text, "tanpuhui_records_total", **labels, outcome="duplicate") == 1
    assert metric(text, "tanpuhui_records_total", **labels, outcome="quarantined") == 1
    assert metric(text, "tanpuhui_webhook_requests_total", **labels, status="200") == 2
    assert metric(text, "tanpuhui_webhook_requests_total", **labels, status="415") == 1
    assert metric(text, "tanpuhui_webhook_request_duration_seconds_count", **labels) == 3
    assert metric(text, "tanpuhui_quarantine_open") == 1
    assert metric(text, "tanpuhui_outbox_oldest_age_seconds", sink="platform") == 0
    assert metric(text, "tanpuhui_delivered_records_total", sink="platform") == 2
    assert metric(text, "tanpuhui_delivery_duration_seconds_count", sink="platform") >= 1
    assert metric(text, "tanpuhui_dead_letters") == 0


def test_metrics_show_the_outbox_backlog_while_the_consumer_is_down(
    start_sidecar: SidecarFactory, consumer: ConsumerServer
) -> None:
    consumer.set_mode("down")
    server = start_sidecar(sinks=sink_table(consumer), forwarder={"initial_backoff": 5.0})
    server.post_ride([ride(1), ride(2)], "msg_backlog")
    text = server.http.get("/metrics").text
    assert metric(text, "tanpuhui_outbox_backlog_records", sink="platform") == 2
    assert metric(text, "tanpuhui_outbox_oldest_age_seconds", sink="platform") >= 0


def test_metrics_show_partner_requests_and_retries(
    start_sidecar: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    config = hub_config(
        tmp_path,
        adapters=transit(sandbox, retry_initial_backoff=0.01, retry_max_backoff=0.02),
        environ={"TRANSIT_SECRET": sandbox.client_secret},
    )
    server = start_sidecar(config)
    sandbox.fail_next(503, count=2)
    pulled = server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true")
    assert pulled.status_code == 200, pulled.text
    text = server.http.get("/metrics").text
    labels = {"adapter": "transit_card"}
    assert metric(text, "tanpuhui_partner_retries_total", **labels) == 2
    assert metric(text, "tanpuhui_partner_requests_total", **labels, status="503") == 2
    assert metric(text, "tanpuhui_partner_requests_total", **labels, status="200") >= 4
    assert metric(text, "tanpuhui_partner_token_fetches_total", **labels) == 1
    assert metric(text, "tanpuhui_partner_request_duration_seconds_count", **labels) >= 6
    assert metric(text, "tanpuhui_pulls_total", adapter="transit_card", stream="transactions", result="ok") == 1
    inserted = metric(text, "tanpuhui_records_total", adapter="transit_card", stream="transactions", outcome="inserted")
    assert inserted == sandbox.dataset.expected()["records"]
