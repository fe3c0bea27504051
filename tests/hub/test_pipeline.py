"""The pipeline's guarantees, independent of any one partner: a shared-bike operator's stream serves fixed pages."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from bike_share import BIKE, BikeShareAdapter, ride, ride_record

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.store.base import Checkpoint
from tanpuhui.sdk import (
    AdapterPlugin,
    ItemRejected,
    Page,
    PartnerUnavailable,
    Problem,
    Pseudonymiser,
    PullStream,
    StreamContext,
)

KEY = "v1:" + base64.b64encode(b"k" * 32).decode()

PAGES: list[Page] = []
FAIL_AFTER: list[int] = []


class Rides(PullStream):
    name = "rides"
    schema = "bike-ride"
    id_field = "ride_id"

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        start = 0 if cursor is None else int(cursor)
        for i, page in enumerate(PAGES[start:], start=start):
            if FAIL_AFTER and i >= FAIL_AFTER[0]:
                raise PartnerUnavailable(f"bike_share: GET /rides?page={i}: gave up after 5 attempts (HTTP 503)")
            yield Page(page.items, i + 1, f"page {i}")

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        if item["km"] > 50:
            raise ItemRejected([Problem("/km", f"{item['km']} km is not a plausible bike ride (max 50)")])
        yield ride_record(item, ctx)


class BikeShare(BikeShareAdapter):
    stream_types = (Rides,)


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterable[Callable[[], Hub]]:
    PAGES.clear()
    FAIL_AFTER.clear()
    hubs: list[Hub] = []

    def make() -> Hub:
        config = HubConfig.from_dict(
            {"hub": {"store": str(tmp_path / "hub.db")}, "adapters": {"bike_share": {}}}, source="test"
        )
        hub = Hub(
            config,
            plugins=load_plugins([AdapterPlugin(BikeShare, methodologies=(BIKE,))], entry_points=False),
            pseudonymiser=Pseudonymiser.parse(KEY),
        )
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        asyncio.run(hub.aclose())


def pull(hub: Hub) -> Any:
    (summary,) = asyncio.run(hub.pull("bike_share", "rides"))
    return summary


def outbox(hub: Hub) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in hub.store.read_outbox(0, 10_000)]


def test_invalid_items_are_quarantined_without_blocking_their_page(hub_factory: Callable[[], Hub]) -> None:
    bad_time = {**ride(2), "start": "2024-11-05 08:02:00"}
    missing = {"ride_id": "R000003", "start": "2024-11-05T08:03:00+08:00", "km": 1.0}
    PAGES.append(Page([ride(1), bad_time, missing, ride(4, km=80.0), ride(5)], None))
    hub = hub_factory()
    summary = pull(hub)
    assert (summary.pulled, summary.valid, summary.inserted, summary.quarantined) == (5, 2, 2, 3)
    entries = hub.store.quarantine_list()
    assert [(e.partner_record_id, e.stage) for e in entries] == [
        ("R000002", "raw"),
        ("R000003", "raw"),
        ("R000004", "normalize"),
    ]
    assert entries[0].problems == [
        {"pointer": "/start", "message": '"2024-11-05 08:02:00" is not a "date-time"', "keyword": "format"}
    ]
    assert entries[1].problems[0]["message"] == '"mobile" is a required property'
    assert entries[2].problems == [{"pointer": "/km", "message": "80.0 km is not a plausible bike ride (max 50)"}]


def test_records_are_valid_pseudonymous_and_recomputable(hub_factory: Callable[[], Hub]) -> None:
    PAGES.append(Page([ride(1, km=3.0)], None))
    hub = hub_factory()
    pull(hub)
    (record,) = outbox(hub)
    assert "13955123456" not in orjson.dumps(record).decode()
    assert record["subject"]["key_version"] == "v1"
    assert record["quantification"]["reduction_kgco2e"] == pytest.approx(3.0 * 0.0933)
    assert record["quantification"]["factors"][0]["source"].startswith("Wuhan")
    assert hub.schemas.get("reduction-record").problems(record) == []


def test_quarantined_raw_payload_is_sealed_at_rest(hub_factory: Callable[[], Hub], tmp_path: Path) -> None:
    PAGES.append(Page([{**ride(1), "km": -1}], None))
    hub = hub_factory()
    pull(hub)
    asyncio.run(hub.aclose())
    for name in ("hub.db", "hub.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert b"13955123456" not in path.read_bytes()
    reopened = hub_factory()
    (entry,) = reopened.store.quarantine_list()
    assert reopened.quarantine_raw(entry)["mobile"] == "13955123456"


def test_error_messages_mask_personal_identifiers(hub_factory: Callable[[], Hub]) -> None:
    PAGES.append(Page([{**ride(1), "km": "13955123456"}], None))
    hub = hub_factory()
    pull(hub)
    (entry,) = hub.store.quarantine_list()
    assert "13955123456" not in orjson.dumps(entry.problems).decode()
    assert "139****3456" in entry.problems[0]["message"]


def test_resume_after_partner_failure_loses_and_repeats_nothing(hub_factory: Callable[[], Hub]) -> None:
    PAGES.extend(Page([ride(p * 10 + i) for i in range(10)], None) for p in range(4))
    FAIL_AFTER.append(2)
    hub = hub_factory()
    first = pull(hub)
    assert first.inserted == 20 and first.error and "HTTP 503" in first.error
    (status,) = hub.store.stream_status()
    assert status.cursor == 2 and status.last_error == first.error
    FAIL_AFTER.clear()
    second = pull(hub)
    assert (second.pulled, second.inserted, second.duplicates, second.error) == (20, 20, 0, None)
    ids = [r["source"]["partner_record_id"] for r in outbox(hub)]
    assert ids == [f"R{n:06d}" for n in range(40)]


def test_pulling_the_same_items_again_only_counts_duplicates(hub_factory: Callable[[], Hub]) -> None:
    PAGES.append(Page([ride(1), ride(2)], None))
    hub = hub_factory()
    pull(hub)
    hub.store.commit_page("bike_share", "rides", [], [], Checkpoint())  # forget the cursor, keep the records
    again = pull(hub)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert len(outbox(hub)) == 2


def test_record_ids_are_deterministic_across_hubs(hub_factory: Callable[[], Hub], tmp_path: Path) -> None:
    PAGES.append(Page([ride(1), ride(2)], None))
    first = [r["record_id"] for r in outbox(_pulled(hub_factory()))]
    (tmp_path / "hub.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"hub.db{suffix}").unlink(missing_ok=True)
    second = [r["record_id"] for r in outbox(_pulled(hub_factory()))]
    assert first == second and first == sorted(first)


def _pulled(hub: Hub) -> Hub:
    pull(hub)
    return hub


def test_replay_resolves_an_item_once_the_adapter_accepts_it(
    hub_factory: Callable[[], Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    PAGES.append(Page([ride(1, km=60.0)], None))
    hub = hub_factory()
    pull(hub)
    (entry,) = hub.store.quarantine_list()
    (still,) = asyncio.run(hub.replay_quarantine([entry.id]))
    assert still.status == "failed" and still.problems[0].pointer == "/km"
    original = Rides.normalize

    def lenient(self: Rides, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        return original(self, {**item, "km": min(item["km"], 50)}, ctx)

    monkeypatch.setattr(Rides, "normalize", lenient)
    (done,) = asyncio.run(hub.replay_quarantine([entry.id]))
    assert done.status == "resolved"
    assert hub.store.quarantine_list() == []
    assert len(outbox(hub)) == 1


def test_an_adapter_bug_quarantines_the_item_instead_of_stopping_the_run(
    hub_factory: Callable[[], Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    PAGES.append(Page([ride(1), ride(2)], None))
    original = Rides.normalize

    def buggy(self: Rides, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        if item["ride_id"] == "R000001":
            raise KeyError("station")
        return original(self, item, ctx)

    monkeypatch.setattr(Rides, "normalize", buggy)
    hub = hub_factory()
    summary = pull(hub)
    assert (summary.inserted, summary.quarantined) == (1, 1)
    (entry,) = hub.store.quarantine_list()
    assert entry.problems[0]["message"] == "adapter error KeyError: 'station'"
