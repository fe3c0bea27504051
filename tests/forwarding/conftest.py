"""Fixtures for forwarding tests: a real SQLite store with realistic records in its outbox, a loopback consumer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from psycopg import conninfo
from sink_brokers import ADMIN_DSN

from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.store.base import NewRecord
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import behaviour_fingerprint, make_record_id

SECRET = "whsec_" + base64.b64encode(b"tanpuhui-forwarding-test-secret-32").decode()

_SCENARIOS = (
    # scenario, adapter, stream, activity unit, methodology, factor name, factor value (kgCO2e per unit)
    ("metro", "transit_card", "trips", "pkm", "tph.transit.metro", "ef_saving", 0.0512),
    ("bus", "transit_card", "trips", "pkm", "tph.transit.bus", "ef_saving", 0.0381),
    ("peak_electricity_saving", "state_grid", "peak_usage", "kWh", "tph.grid.peak_saving", "ef_grid", 0.6782),
)


def record_body(i: int, start: datetime) -> tuple[NewRecord, str, str]:
    """The i-th realistic reduction record (schemas/reduction-record.schema.json), as the pipeline stores it."""
    scenario, adapter, stream, unit, methodology, factor_name, factor = _SCENARIOS[i % len(_SCENARIOS)]
    occurred = start + timedelta(seconds=37 * i)
    partner_id = f"{adapter[:2].upper()}{20240501000000 + i}"
    record_id = make_record_id(occurred, adapter, stream, partner_id)
    pseudonym = hashlib.sha256(f"subject-{i % 97}".encode()).hexdigest()
    quantity = round(3.5 + (i % 40) * 0.7, 2)
    reduction = round(quantity * factor, 6)
    quantification: dict[str, object] = {
        "methodology_id": methodology,
        "methodology_version": "1.0.0",
        "formula": f"activity * {factor_name}",
        "factors": [
            {
                "name": factor_name,
                "value": factor,
                "unit": f"kgCO2e/{unit}",
                "source": "labelled default for tests",
                "default": True,
            },
        ],
        "reduction_kgco2e": reduction,
    }
    if scenario == "peak_electricity_saving":
        quantification["baseline"] = {"quantity": quantity * 2, "unit": unit, "method": "same hours, previous 4 weeks"}
    fingerprint = behaviour_fingerprint(pseudonym, scenario, occurred)
    if adapter == "transit_card":
        details: dict[str, object] = {
            "line": "合肥地铁1号线" if scenario == "metro" else "合肥公交226路",
            "card_type": "normal",
        }
    else:
        details = {"meter_class": "residential", "tariff": "peak"}
    body = {
        "record_id": record_id,
        "schema_version": "1.0",
        "source": {
            "adapter": adapter,
            "adapter_version": "1.2.0",
            "stream": stream,
            "partner_record_id": partner_id,
            "raw_sha256": hashlib.sha256(partner_id.encode()).hexdigest(),
        },
        "subject": {"kind": "person", "pseudonym": pseudonym, "key_version": "k2024-1"},
        "scenario": scenario,
        "period": {"start": occurred.isoformat(), "end": (occurred + timedelta(minutes=23)).isoformat()},
        "region": "340104",
        "activity": {"quantity": quantity, "unit": unit, "details": details},
        "quantification": quantification,
        "fingerprint": fingerprint,
    }
    return NewRecord(record_id, fingerprint, scenario, reduction, orjson.dumps(body)), adapter, stream


def fill_store(store: SQLiteStore, count: int, *, offset: int = 0) -> list[str]:
    """Commit ``count`` records into the outbox (page by page, per adapter stream); returns their ids in seq order."""
    start = datetime(2024, 5, 1, 7, 30, tzinfo=UTC)
    ids: list[str] = []
    for page_start in range(offset, offset + count, 500):
        by_stream: dict[tuple[str, str], list[NewRecord]] = {}
        for i in range(page_start, min(page_start + 500, offset + count)):
            record, adapter, stream = record_body(i, start)
            by_stream.setdefault((adapter, stream), []).append(record)
        for (adapter, stream), records in by_stream.items():
            result = store.commit_page(adapter, stream, records, [], None)
            assert result.inserted == len(records)
            ids.extend(r.record_id for r in records)
    return ids


class SleepRecorder:
    """A ``sleep`` for the forwarder that records what it was asked to wait, and yields without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def fill() -> Callable[..., list[str]]:
    return fill_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "hub.db", synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture
def consumer() -> Iterator[ConsumerServer]:
    with ConsumerServer(SECRET) as server:
        yield server


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_consumer() -> Iterator[Callable[..., ConsumerServer]]:
    """Build consumers that are closed after the test (not started: call ``.start()``)."""
    made: list[ConsumerServer] = []

    def make(secret: str = SECRET, **kwargs: object) -> ConsumerServer:
        server = ConsumerServer(secret, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def consumer_db() -> Iterator[str]:
    """A fresh database for a PostgreSQL sink's consumer; its URL (user postgres, trust auth as on the CI machine)."""
    name = f"tanpuhui_test_sink_{secrets.token_hex(5)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo.conninfo_to_dict(ADMIN_DSN)
    try:
        yield f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{params.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
