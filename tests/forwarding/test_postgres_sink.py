"""The PostgreSQL sink against the server on loopback: rows keyed by record id, sessions terminated mid-delivery.

Each test gets its own database (conftest.py's ``consumer_db``, dropped afterwards); the shared server is never
restarted: the outage is the server terminating the sink's session (``pg_terminate_backend``, what an admin or a
failover does), repeatedly for a while, plus a proxy cut between the sink and the server.
"""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import conninfo
from sink_brokers import ADMIN_DSN, CuttableProxy, drain_through_outage, sink_failure

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.postgres import PostgresSink, consumer_table_ddl
from tanpuhui.sdk import OutboxRow


def pg_sink(url: str, **settings: object) -> PostgresSink:
    return PostgresSink("bus", PostgresSink.Settings.model_validate({"type": "postgres", "url": url, **settings}))


def rows(url: str, table: str = "tanpuhui_records") -> list[tuple[str, str, str, str, dict[str, object]]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT record_id, adapter, stream, scenario, record FROM {table} ORDER BY record_id"
        ).fetchall()  # type: ignore[return-value]


def test_inserts_one_row_per_record_and_a_resent_batch_adds_nothing(store, fill, consumer_db):
    ids = fill(store, 400)

    async def run():
        sink = pg_sink(consumer_db, create_table=True)
        try:
            summary = await Forwarder(store, {"bus": sink}, batch_size=150).drain()
            await sink.send(store.read_outbox(0, 150))  # what a crash between send and mark re-sends
            await sink.check()
            return summary
        finally:
            await sink.aclose()

    summary = asyncio.run(run())

    assert summary["bus"].delivered == 400
    table = rows(consumer_db)
    assert [r[0] for r in table] == sorted(ids)
    record_id, adapter, stream, scenario, record = table[0]
    assert record["record_id"] == record_id
    assert (record["source"]["adapter"], record["source"]["stream"], record["scenario"]) == (adapter, stream, scenario)


def test_every_record_arrives_when_the_server_terminates_the_session_mid_delivery(store, fill, consumer_db):
    ids = fill(store, 600)
    with psycopg.connect(consumer_db, autocommit=True) as conn:
        conn.execute(consumer_table_ddl("reductions"))
    stop = asyncio.Event()

    async def terminate_repeatedly() -> None:
        """Kill the sink's session every few ms for the outage (each reconnect is killed again)."""
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
            while not stop.is_set():
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
                    ("tanpuhui sink bus", conninfo.conninfo_to_dict(consumer_db)["dbname"]),
                )
                await asyncio.sleep(0.01)

    async def run():
        tasks: list[asyncio.Task[None]] = []

        def begin() -> None:
            stop.clear()
            tasks.append(asyncio.create_task(terminate_repeatedly()))

        async def end() -> None:
            stop.set()
            await asyncio.gather(*tasks)

        sink = pg_sink(consumer_db, table="reductions", timeout=2)
        return await drain_through_outage(store, sink, after_rows=150, begin=begin, end=end, outage_seconds=0.8)

    summary, forwarder = asyncio.run(run())

    assert forwarder.states["bus"].recoveries >= 1, "the terminations did not hit the delivery"
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    assert [r[0] for r in rows(consumer_db, "reductions")] == sorted(ids)  # every record, once


def test_every_record_arrives_when_the_connection_is_cut_mid_delivery(store, fill, consumer_db):
    ids = fill(store, 600)
    with psycopg.connect(consumer_db, autocommit=True) as conn:
        conn.execute(consumer_table_ddl())
    dbname = conninfo.conninfo_to_dict(consumer_db)["dbname"]

    async def run():
        async with CuttableProxy(5432) as proxy:
            sink = pg_sink(f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}", timeout=2)
            return await drain_through_outage(
                store, sink, after_rows=150, begin=proxy.cut, end=proxy.restore, outage_seconds=0.8
            )

    summary, forwarder = asyncio.run(run())

    assert forwarder.states["bus"].recoveries >= 1
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (600, 0)
    assert [r[0] for r in rows(consumer_db)] == sorted(ids)


def test_a_missing_table_is_retried_and_a_missing_column_is_dead_lettered(store, fill, consumer_db):
    fill(store, 4)
    with psycopg.connect(consumer_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE narrow (record_id text PRIMARY KEY)")

    missing = sink_failure(pg_sink(consumer_db, table="not_created_yet"), store.read_outbox(0, 4))
    narrow = sink_failure(pg_sink(consumer_db, table="narrow"), store.read_outbox(0, 4))

    assert missing.retryable and "42P01" in str(missing) and "postgres sink 'bus'" in str(missing)
    assert not narrow.retryable and "42703" in str(narrow)


def test_a_readiness_check_during_a_delivery_shares_the_one_connection(store, fill, consumer_db):
    fill(store, 50)
    dbname = conninfo.conninfo_to_dict(consumer_db)["dbname"]

    async def run():
        sink = pg_sink(consumer_db, create_table=True)
        try:
            await asyncio.gather(sink.check(), sink.send(store.read_outbox(0, 50)), sink.check())
            with psycopg.connect(ADMIN_DSN) as admin:
                return admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'tanpuhui sink bus'",
                    (dbname,),
                ).fetchone()[0]
        finally:
            await sink.aclose()

    assert asyncio.run(run()) == 1
    assert len(rows(consumer_db)) == 50


def test_the_urls_own_options_are_kept(store, fill, consumer_db):
    """A search_path in the URL (libpq ``options``) still applies: the unqualified table lands in that schema."""
    fill(store, 10)
    with psycopg.connect(consumer_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA carbon")
    url = consumer_db + "?options=-csearch_path%3Dcarbon"

    async def run():
        sink = pg_sink(url, create_table=True)
        try:
            await sink.send(store.read_outbox(0, 10))
        finally:
            await sink.aclose()

    asyncio.run(run())
    assert len(rows(consumer_db, "carbon.tanpuhui_records")) == 10


def test_corrections_and_voids_arrive_with_their_kind(consumer_db):
    # The consumer rebuilds current state from the kinds (docs/verification.md): a correction supersedes a record,
    # a void withdraws one; neither may land in the table looking like a new record.
    created = OutboxRow(1, "01JCN1V380286DNTVYFJ1T13KA", "state_grid", "readings", "peak_electricity_saving", b"{}")
    corrected = created._replace(seq=2, record_id="01JCN1V380286DNTVYFJ1T13KB", kind="corrected")
    voided = created._replace(seq=3, record_id="01JCN1V380286DNTVYFJ1T13KC", kind="voided")

    async def run():
        sink = pg_sink(consumer_db, create_table=True)
        try:
            await sink.send([created, corrected, voided])
        finally:
            await sink.aclose()

    asyncio.run(run())
    with psycopg.connect(consumer_db) as conn:
        kinds = conn.execute("SELECT record_id, kind FROM tanpuhui_records ORDER BY record_id").fetchall()
    assert [k for _, k in kinds] == ["created", "corrected", "voided"]
