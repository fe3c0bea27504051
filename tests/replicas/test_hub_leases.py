"""The hub with leases, on both stores: a leased stream or sink is skipped, a lost lease stops the run, the next
owner finishes from the committed cursor; and the store is chosen (and its password kept out of hub.toml) by
config."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store.conftest import Backend

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.pipeline import PageResult
from tanpuhui.hub.store.base import SINK_LEASES
from tanpuhui.hub.store.factory import open_store, store_display_name
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import ConfigError

KEYS = "v1:" + base64.b64encode(b"replica-lease-test-pseudonym-k32").decode()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=400, seed=5) as s:
        yield s


def config(tmp_path: Path, sandbox: TransitSandbox, **hub: Any) -> HubConfig:
    return HubConfig.from_dict(
        {
            "hub": {"store": str(tmp_path / "unused.db"), "pseudonym_keys": {"env": "K"}, **hub},
            "adapters": {
                "transit_card": {**sandbox.settings(client_secret={"env": "S"}), "page_size": 100},
            },
            "sinks": {"archive": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
        },
        source="test hub.toml",
        environ={"K": KEYS, "S": sandbox.client_secret},
        base_dir=tmp_path,
    )


def hub_on(backend: Backend, tmp_path: Path, sandbox: TransitSandbox, **hub: Any) -> Hub:
    return Hub(config(tmp_path, sandbox, **hub), store=backend.open())


async def _pull(hub: Hub, progress: Any = None) -> Any:
    (summary,) = await hub.pull("transit_card", "transactions", progress=progress)
    for adapter in hub._adapters.values():
        await adapter.aclose()
    hub._adapters.clear()
    hub._streams.clear()
    return summary


def test_a_stream_leased_by_another_replica_is_skipped(
    backend: Backend, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    hub = hub_on(backend, tmp_path, sandbox)
    other = backend.open()
    assert other.acquire_lease("transit_card", "transactions", "replica-elsewhere", 30)
    summary = asyncio.run(_pull(hub))
    assert summary.leased_elsewhere and summary.error is None
    assert (summary.pages, summary.pulled) == (0, 0)
    assert hub.store.counts()["outbox"] == 0
    other.release_lease("transit_card", "transactions", "replica-elsewhere")
    done = asyncio.run(_pull(hub))
    assert not done.leased_elsewhere and done.error is None
    assert done.inserted == sandbox.dataset.expected()["records"]
    assert hub.store.leases() == []  # given back at the end of the run


def test_a_run_that_loses_its_lease_stops_and_the_next_owner_finishes(
    backend: Backend, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    expected = sandbox.dataset.expected()
    first = hub_on(backend, tmp_path, sandbox, commit_records=0)  # each page committed alone
    thief = backend.open()

    def take_over(page: PageResult) -> None:
        # After the first committed page, the lease passes to another replica (as if this one had stalled).
        first.store.release_lease("transit_card", "transactions", first.replica_id)
        assert thief.acquire_lease("transit_card", "transactions", "replica-b", 30)

    stopped = asyncio.run(_pull(first, take_over))
    assert stopped.pages == 1 and stopped.error is not None and "another replica took it over" in stopped.error
    committed = first.store.counts()["outbox"]
    assert 0 < committed < expected["records"]
    thief.release_lease("transit_card", "transactions", "replica-b")

    second = Hub(config(tmp_path, sandbox), store=backend.open())
    finished = asyncio.run(_pull(second))
    assert finished.error is None
    assert second.store.counts()["outbox"] == expected["records"]
    assert finished.duplicates == 0  # it started after the last committed page, not from the beginning
    assert len(second.store.quarantine_list(limit=10_000)) == expected["quarantined"]


def test_a_sink_leased_by_another_replica_is_skipped(backend: Backend, tmp_path: Path, sandbox: TransitSandbox) -> None:
    hub = hub_on(backend, tmp_path, sandbox)
    asyncio.run(_pull(hub))
    other = backend.open()
    assert other.acquire_lease(SINK_LEASES, "archive", "replica-elsewhere", 30)

    async def drain() -> Any:
        sinks = hub.build_sinks()
        try:
            return await Forwarder(hub.store, sinks, owner=hub.replica_id).drain()
        finally:
            for sink in sinks.values():
                await sink.aclose()

    skipped = asyncio.run(drain())
    assert skipped["archive"].leased_elsewhere and skipped["archive"].delivered == 0
    assert hub.store.sink_position("archive") == 0
    other.release_lease(SINK_LEASES, "archive", "replica-elsewhere")
    drained = asyncio.run(drain())
    assert drained["archive"].delivered == hub.store.counts()["outbox"] > 0
    assert not drained["archive"].leased_elsewhere


# -- choosing the store ---------------------------------------------------------------------------------------------


def test_the_store_is_chosen_by_its_url(tmp_path: Path, pg_dsn: str) -> None:
    lite = HubConfig.from_dict({"hub": {"store": "var/hub.db"}}, base_dir=tmp_path)
    sqlite_store = open_store(lite)
    assert isinstance(sqlite_store, SQLiteStore)
    sqlite_store.close()
    pg = HubConfig.from_dict({"hub": {"store": {"env": "URL"}}}, environ={"URL": pg_dsn}, base_dir=tmp_path)
    assert pg.store_dsn() == pg_dsn
    pg_store = open_store(pg, migrate=True)
    assert isinstance(pg_store, PostgresStore)
    pg_store.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:s3cret@db.internal/tanpuhui",
        "postgres://hub:s3cret@db.internal:5433/tanpuhui?sslmode=require",
        "postgresql://db.internal/tanpuhui?user=hub&password=s3cret",
    ],
)
def test_a_literal_database_password_in_hub_toml_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="literal database password") as caught:
        HubConfig.from_dict({"hub": {"store": url}}, source="hub.toml")
    assert "s3cret" not in str(caught.value)


def test_the_password_may_come_from_the_environment() -> None:
    by_env = HubConfig.from_dict(
        {"hub": {"store": {"env": "TANPUHUI_STORE_URL"}}},
        environ={"TANPUHUI_STORE_URL": "postgresql://hub:s3cret@db.internal/tanpuhui"},
    )
    assert by_env.store_dsn() == "postgresql://hub:s3cret@db.internal/tanpuhui"
    assert store_display_name(by_env) == "postgresql://hub@db.internal/tanpuhui"
    overridden = HubConfig.from_dict(
        {"hub": {"store": "hub.db"}},
        environ={"TANPUHUI__HUB__STORE": "postgresql://hub:s3cret@db.internal/tanpuhui"},
    )
    assert overridden.store_dsn() is not None
    libpq = HubConfig.from_dict({"hub": {"store": "postgresql://hub@db.internal/tanpuhui"}})  # PGPASSWORD
    assert libpq.store_dsn() == "postgresql://hub@db.internal/tanpuhui"


def test_lease_ttl_is_a_hub_setting() -> None:
    assert HubConfig.from_dict({}).hub.lease_ttl == 30
    assert HubConfig.from_dict({"hub": {"lease_ttl": 5}}).hub.lease_ttl == 5
    with pytest.raises(ConfigError, match="lease_ttl"):
        HubConfig.from_dict({"hub": {"lease_ttl": 0}})


def test_a_held_lease_is_renewed_while_the_run_goes_on(backend: Backend) -> None:
    from tanpuhui.hub.leasing import hold_lease

    store, other = backend.open(), backend.open()

    async def run() -> None:
        async with hold_lease(store, "transit_card", "transactions", "replica-a", 0.3) as lease:
            assert lease is not None
            for _ in range(4):  # well past the ttl
                await asyncio.sleep(0.2)
                assert not other.acquire_lease("transit_card", "transactions", "replica-b", 30)
            assert not lease.lost
        assert other.acquire_lease("transit_card", "transactions", "replica-b", 30)  # released at the end

    asyncio.run(run())


def test_a_renewal_that_finds_the_lease_taken_marks_it_lost(backend: Backend) -> None:
    from tanpuhui.hub.leasing import hold_lease

    store, other = backend.open(), backend.open()

    async def run() -> None:
        async with hold_lease(store, "transit_card", "transactions", "replica-a", 0.3) as lease:
            assert lease is not None
            store.release_lease("transit_card", "transactions", "replica-a")
            assert other.acquire_lease("transit_card", "transactions", "replica-b", 30)
            await asyncio.sleep(0.3)
            assert lease.lost
        assert [lease.owner for lease in other.leases()] == ["replica-b"]  # not released by the loser

    asyncio.run(run())
