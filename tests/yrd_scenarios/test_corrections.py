"""A re-sent item with another body is a correction, a cancelled one a void; neither overwrites what was forwarded.

The Shanghai platform pushes three rail trips; then it re-sends trip 1 with a corrected reduction, re-sends trip 2
with nothing changed but its ``updated_at``, and reports trip 3 ``cancelled``. The hub forwards each change as its
own CloudEvents type to a real loopback consumer, which rebuilds the current records from the stream alone.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.ledger import Ledger
from tanpuhui.hub.pipeline import PageResult
from tanpuhui.hub.sinks.http import HttpSink
from tanpuhui.sdk import WebhookSigner

from .conftest import WEBHOOK_SECRET, HubFactory, metro_record

CONSUMER_SECRET = "whsec_" + "Y29uc3VtZXItc2VjcmV0LWZvci1jb3JyZWN0aW9ucw=="
_deliveries = itertools.count(1)


def push(hub: Hub, *items: dict[str, Any]) -> PageResult:
    body = orjson.dumps({"items": list(items)})
    headers = WebhookSigner(WEBHOOK_SECRET).headers(f"msg_corr_{next(_deliveries)}", body)
    return hub.receive("yrd_scenarios", "records_push", headers, body).page


def trip(n: int, **changes: Any) -> dict[str, Any]:
    return metro_record(f"SH20241105000001{n:02d}", consent_id=f"SH-CNS-0001{n:02d}", **changes)


def rows(hub: Hub) -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, orjson.loads(r.body)) for r in hub.store.read_outbox(0, 1000)]


def forward(hub: Hub, consumer: ConsumerServer) -> None:
    sink = HttpSink("platform", HttpSink.Settings(type="http", url=consumer.url, secret=CONSUMER_SECRET))

    async def run() -> None:
        try:
            await Forwarder(hub.store, {"platform": sink}).drain()
        finally:
            await sink.aclose()

    asyncio.run(run())


def test_a_resent_item_with_another_body_is_a_correction_naming_the_record_it_supersedes(
    hub_factory: HubFactory,
) -> None:
    hub = hub_factory()
    push(hub, trip(1))
    again = push(hub, trip(1, reduction_kgco2e=0.65, updated_at="2024-11-06T09:00:00+08:00"))
    assert (again.inserted, again.duplicates) == (1, 0)
    (k1, original), (k2, correction) = rows(hub)
    assert (k1, k2) == ("created", "corrected")
    assert correction["supersedes"] == original["record_id"] != correction["record_id"]
    assert original["quantification"]["reduction_kgco2e"] == pytest.approx(0.7006)  # never overwritten
    assert correction["quantification"]["reduction_kgco2e"] == pytest.approx(0.65)
    assert correction["source"]["partner_record_id"] == original["source"]["partner_record_id"]


def test_a_resend_changing_nothing_credited_is_a_duplicate(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    push(hub, trip(2))
    again = push(hub, trip(2, updated_at="2024-11-06T09:00:00+08:00"))
    assert (again.inserted, again.duplicates) == (0, 1)
    assert [kind for kind, _ in rows(hub)] == ["created"]


def test_a_cancelled_item_voids_its_record_and_a_never_credited_one_voids_nothing(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    push(hub, trip(3))
    push(hub, trip(3, status="cancelled", updated_at="2024-11-07T10:00:00+08:00"))
    push(hub, trip(4, status="cancelled"))  # never credited: nothing to void
    (_, credited), (kind, void) = rows(hub)
    assert kind == "voided"
    assert void["voids"] == credited["record_id"]
    assert void["reason"] == "shanghai reports the record cancelled by its origin platform"
    assert void["source"]["partner_record_id"] == credited["source"]["partner_record_id"]
    push(hub, trip(3, status="cancelled", updated_at="2024-11-08T10:00:00+08:00"))  # reported again
    assert len(rows(hub)) == 2


def test_a_consumer_rebuilds_the_current_records_from_the_event_stream(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub = hub_factory()
    push(hub, trip(1), trip(2), trip(3))
    received = tmp_path / "events.jsonl"
    with ConsumerServer(CONSUMER_SECRET, jsonl_path=received) as consumer:
        forward(hub, consumer)
        assert consumer.stats()["current_records"] == 3
        push(hub, trip(1, reduction_kgco2e=0.65, updated_at="2024-11-06T09:00:00+08:00"))
        push(hub, trip(2, updated_at="2024-11-06T09:00:00+08:00"))
        push(hub, trip(3, status="cancelled", updated_at="2024-11-07T10:00:00+08:00"))
        forward(hub, consumer)
        current = consumer.current()
        stats = consumer.stats()
    events = [orjson.loads(line) for line in received.read_bytes().splitlines()]
    assert [e["type"] for e in events] == [
        *["org.tanpuhui.reduction.v1"] * 3,
        "org.tanpuhui.reduction.corrected.v1",
        "org.tanpuhui.reduction.voided.v1",
    ]
    by_partner = {r["source"]["partner_record_id"]: r for r in current.values()}
    assert set(by_partner) == {"shanghai:SH2024110500000101", "shanghai:SH2024110500000102"}
    assert by_partner["shanghai:SH2024110500000101"]["quantification"]["reduction_kgco2e"] == pytest.approx(0.65)
    assert stats["kgco2e_total"] == pytest.approx(0.65 + 0.7006)
    ledger = Ledger()  # the hub's own outbox folds to the same state
    for kind, doc in rows(hub):
        ledger.apply(kind, doc)
    assert ledger.records == current
