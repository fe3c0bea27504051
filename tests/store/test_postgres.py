"""What only the PostgreSQL store has to get right: readers never pass a row that commits later, the connection
pool under threads and server restarts, concurrent migrations, and the password never shown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from tanpuhui.hub.store.base import Checkpoint
from tanpuhui.hub.store.migrations import SCHEMA_VERSION, SchemaTooOld
from tanpuhui.hub.store.postgres import PostgresStore, display_dsn

from .pg import SlowCommitter
from .records import MORNING, trips


def test_reader_waits_for_an_earlier_row_that_commits_after_a_later_one(pg_dsn: str) -> None:
    slow = SlowCommitter(pg_dsn, migrate=True)
    fast = PostgresStore(pg_dsn)
    reader = PostgresStore(pg_dsn)
    try:
        # Hours apart: the two pages share no claim window, so neither waits for the other to commit.
        first, second = trips(3, prefix="SLOW"), trips(3, prefix="FAST", start=MORNING + timedelta(hours=3))
        committing = threading.Thread(target=slow.commit_page, args=("transit_card", "a", first, [], None))
        committing.start()
        assert slow.written.wait(5)  # seq 1-3 taken, not committed yet
        fast.commit_page("transit_card", "b", second, [], None)  # seq 4-6, committed first
        started = time.monotonic()
        rows = reader.read_outbox(0, 100)
        waited = time.monotonic() - started
        committing.join()
        assert [r.record_id for r in rows] == [r.record_id for r in first + second]
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
        assert waited > 0.2  # it waited for the slow commit instead of reading 4-6 and moving past 1-3
    finally:
        for s in (slow, fast, reader):
            s.close()


def test_reads_inside_the_safe_mark_do_not_wait(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, migrate=True)
    slow = SlowCommitter(pg_dsn)
    try:
        store.commit_page("transit_card", "a", trips(5), [], None)
        assert len(store.read_outbox(0, 2)) == 2  # sets the mark at 5
        committing = threading.Thread(
            target=slow.commit_page,
            args=("transit_card", "b", trips(2, prefix="X", start=MORNING + timedelta(hours=3)), [], None),
        )
        committing.start()
        assert slow.written.wait(5)
        started = time.monotonic()
        assert [r.seq for r in store.read_outbox(2, 10)] == [3, 4, 5]
        assert time.monotonic() - started < 0.3
        committing.join()
        assert [r.seq for r in store.read_outbox(5, 10)] == [6, 7]
    finally:
        store.close()
        slow.close()


def test_one_store_is_safe_to_use_from_many_threads(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, migrate=True)
    try:

        def work(i: int) -> int:
            total = 0
            for p in range(10):
                result = store.commit_page("transit_card", f"s{i}", trips(20, prefix=f"T{i}-{p}"), [], Checkpoint(p))
                total += result.inserted
                store.read_outbox(0, 5)
                store.advance_sink(f"sink{i}", p)
            return total

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(work, range(8))) == 8 * 10 * 20
        assert store.counts()["outbox"] == 1600
        assert {store.load_checkpoint("transit_card", f"s{i}").cursor for i in range(8)} == {9}
    finally:
        store.close()


def test_a_connection_the_server_dropped_is_not_handed_out_again(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, migrate=True)
    try:
        store.commit_page("transit_card", "a", trips(1), [], None)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'tanpuhui' AND pid <> pg_backend_pid() AND datname = current_database()"
            )
        time.sleep(1.2)  # idle long enough to be checked before reuse
        store.commit_page("transit_card", "a", trips(2, prefix="B"), [], Checkpoint("c"))
        assert store.counts()["outbox"] == 3
    finally:
        store.close()


def test_empty_database_is_refused_until_migrated(pg_dsn: str) -> None:
    with pytest.raises(SchemaTooOld, match=r"no tanpuhui schema yet .*run `tanpuhui migrate --config hub.toml`"):
        PostgresStore(pg_dsn)
    store = PostgresStore(pg_dsn, migrate=True)
    try:
        assert store.last_migration.before == 0
        assert store.last_migration.after == SCHEMA_VERSION
        assert [m.version for m in store.last_migration.applied] == list(range(1, SCHEMA_VERSION + 1))
    finally:
        store.close()


def test_replicas_migrating_at_once_apply_each_migration_once(pg_dsn: str) -> None:
    barrier = threading.Barrier(4)

    def open_and_migrate(_: int) -> Sequence[int]:
        barrier.wait()
        store = PostgresStore(pg_dsn, migrate=True)
        store.close()
        return [m.version for m in store.last_migration.applied]

    with ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(open_and_migrate, range(4)))
    assert sorted(v for a in applied for v in a) == list(range(1, SCHEMA_VERSION + 1))
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


def test_password_is_never_shown() -> None:
    dsn = "postgresql://hub:s3cr3t-Pa55@db.internal:5433/tanpuhui?sslmode=require"
    assert display_dsn(dsn) == "postgresql://hub@db.internal:5433/tanpuhui"
    assert "s3cr3t" not in display_dsn("host=db.internal user=hub password=s3cr3t-Pa55 dbname=tanpuhui")


def test_unreachable_server_fails_with_the_address_and_no_password() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        PostgresStore("postgresql://hub:s3cr3t-Pa55@127.0.0.1:9/tanpuhui?connect_timeout=2")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("table", ["record_heads", "plausibility_counts"])
def test_a_pages_lookups_probe_their_keys_even_before_the_table_is_analysed(pg_dsn: str, table: str) -> None:
    # A new table's statistics say one row a stream: an IN list or a join was run as a scan of every row of the
    # stream (~0.5 s a page at 50,000 heads). The lookups read the rows of their keys, however many are on file.
    store = PostgresStore(pg_dsn, migrate=True)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO record_heads SELECT 'transit_card', 'trips', 'HF-' || i, 'rid-' || i, 'h', 'active'"
                " FROM generate_series(1, 5000) i"
            )
            conn.execute(
                "INSERT INTO plausibility_counts SELECT 'transit_card', 'trips', 'trips_per_day', '2024-11-05',"
                " 'subject-' || i, 'rid-' || i, 1 FROM generate_series(1, 5000) i"
            )
        with store.sql.write() as cur:
            if table == "record_heads":
                found = store.sql.record_heads(cur, "transit_card", "trips", ["HF-7", "HF-4096", "HF-none"])
            else:
                keys = [("trips_per_day", "2024-11-05", s) for s in ("subject-7", "subject-4096", "subject-none")]
                found = store.sql.day_counts(cur, "transit_card", "trips", keys)
            row = cur.execute(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
                " WHERE relname = %s",
                (table,),
            ).fetchone()
        assert len(found) == 2
        assert row is not None and row[0] <= 3
    finally:
        store.close()
