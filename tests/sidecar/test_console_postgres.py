"""The console on PostgreSQL replicas: two sidecars on one database show the same runs and counts, and a pause set
through one holds for both (it is kept in the shared store)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from store.pg import temporary_database, temporary_schema

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.console.session import COOKIE
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.store.base import RunLog
from tanpuhui.hub.store.postgres import PostgresStore

from .conftest import SidecarFactory
from .console_kit import CONSOLE, console_sidecar, csrf_of, signed_in


@pytest.fixture
def pg_store() -> Iterator[str]:
    with temporary_database() as database, temporary_schema(database) as dsn:
        PostgresStore(dsn, migrate=True).close()
        yield dsn


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_two_replicas_on_postgresql_show_one_console(
    start_sidecar: SidecarFactory, tmp_path: Path, consumer: ConsumerServer, pg_store: str
) -> None:
    with TransitSandbox(trips=200, seed=11) as sandbox:
        first = console_sidecar(start_sidecar, tmp_path, sandbox, consumer, store=pg_store)
        second = start_sidecar(first.sidecar.config)
        store = first.sidecar.hub.store
        assert isinstance(store, RunLog)
        [run] = store.runs("transit_card", "transactions")
        outbox = store.counts()["outbox"]
        client = signed_in(first)
        there = httpx.Client(base_url=second.url, timeout=30, cookies={COOKIE: client.cookies[COOKIE]})
        try:
            for c in (client, there):
                overview = _text(c.get(f"{CONSOLE}/").text)
                assert f"Outbox {outbox} records" in overview
                stream = _text(c.get(f"{CONSOLE}/streams/transit_card/transactions").text)
                assert f"Total over 1 run(s) {run.pages} {run.items} {run.inserted}" in stream
            sinks = there.get(f"{CONSOLE}/sinks")
            assert there.post(f"{CONSOLE}/sinks/platform/pause", data={"csrf": csrf_of(sinks.text)}).status_code == 303
            assert "data-state>paused<" in client.get(f"{CONSOLE}/sinks").text
        finally:
            there.close()
            client.close()
