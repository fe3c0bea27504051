"""Versioned schemas for both stores: checked at start-up, brought up to date by `tanpuhui migrate`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.store.migrations import SCHEMA_VERSION, SchemaTooNew, SchemaTooOld
from tanpuhui.hub.store.migrations.postgres import MIGRATIONS as PG_MIGRATIONS
from tanpuhui.hub.store.migrations.postgres import SCHEMA_TABLE
from tanpuhui.hub.store.migrations.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.hub.store.sqlite import SQLiteStore

from .conftest import Backend
from .records import bad_item, trips


def test_both_stores_have_the_same_numbered_migrations() -> None:
    assert [m.version for m in SQLITE_MIGRATIONS] == [m.version for m in PG_MIGRATIONS]
    assert [m.name for m in SQLITE_MIGRATIONS] == [m.name for m in PG_MIGRATIONS]
    assert SQLITE_MIGRATIONS[-1].version == SCHEMA_VERSION


def _version_1_sqlite(path: Path) -> None:
    """A store as the first release wrote it: baseline tables, ``meta.schema_version = 1``, one record."""
    conn = sqlite3.connect(path)
    with conn:
        for statement in SQLITE_MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(
            "INSERT INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e, body, created_at)"
            " VALUES ('01HXOLD', 'fp', 'transit_card', 'trips', 'metro', 0.4, x'7b7d', '2024-05-01T00:00:00+00:00')"
        )
        conn.execute(
            "INSERT INTO checkpoints (adapter, stream, cursor, state) VALUES ('transit_card', 'trips', '\"c-9\"', '{}')"
        )
        conn.execute(
            "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw, created_at)"
            " VALUES ('transit_card', 'trips', 'raw', 'HF-OLD', '[]', x'00', '2024-05-01T00:00:00.000+00:00')"
        )
    conn.close()


def _version_1_postgres(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(SCHEMA_TABLE)
        for statement in PG_MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'baseline')")
        conn.execute(
            "INSERT INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e, body)"
            " VALUES ('01HXOLD', 'fp', 'transit_card', 'trips', 'metro', 0.4, '\\x7b7d')"
        )
        conn.execute(
            "INSERT INTO checkpoints (adapter, stream, cursor, state) VALUES ('transit_card', 'trips', '\"c-9\"', '{}')"
        )
        conn.execute(
            "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw, created_at)"
            " VALUES ('transit_card', 'trips', 'raw', 'HF-OLD', '[]', '\\x00', '2024-05-01T00:00:00+00:00')"
        )


def _old_store(backend: Backend) -> Callable[..., Any]:
    """Make the backend's store a version-1 one; returns the opener (``migrate=`` keyword)."""
    if backend.kind == "sqlite":
        Path(backend.target).parent.mkdir(parents=True, exist_ok=True)
        _version_1_sqlite(Path(backend.target))
    else:
        _version_1_postgres(backend.target)
    return lambda migrate=False: backend.open(migrate=migrate)


def test_an_older_store_is_refused_until_migrated_and_keeps_its_data(backend: Backend) -> None:
    open_store = _old_store(backend)
    with pytest.raises(SchemaTooOld, match=r"schema version 1 is older .*run `tanpuhui migrate --config hub.toml`"):
        open_store()
    store = open_store(migrate=True)
    assert (store.last_migration.before, store.last_migration.after) == (1, SCHEMA_VERSION)
    assert [m.version for m in store.last_migration.applied] == list(range(2, SCHEMA_VERSION + 1))
    assert [(r.record_id, r.kind) for r in store.read_outbox(0, 10)] == [("01HXOLD", "created")]  # 6: kind
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-9"
    assert store.acquire_lease("transit_card", "trips", "replica-a", 30)  # the new table is there
    store.commit_page("transit_card", "trips", trips(2), [], None)
    assert store.counts()["outbox"] == 3
    # An entry from before quarantine dedup has no digest: never matched, seen once, when it was created.
    [old] = store.quarantine_list()
    assert (old.partner_record_id, old.repeats, old.last_seen) == ("HF-OLD", 0, old.created_at)
    assert old.created_at.startswith("2024-05-01T00:00:00")
    for _ in range(2):
        store.commit_page("transit_card", "trips", [], [bad_item("HF-OLD", digest="d1" * 32)], None)
    assert [(e.partner_record_id, e.repeats) for e in store.quarantine_list()] == [("HF-OLD", 0), ("HF-OLD", 1)]
    again = open_store()  # now it opens without migrating
    assert again.schema_version() == SCHEMA_VERSION
    assert again.last_migration.applied == ()


def test_migrating_an_up_to_date_store_does_nothing(backend: Backend) -> None:
    first = backend.open()
    first.commit_page("transit_card", "trips", trips(2), [], None)
    second = backend.open(migrate=True)
    assert second.last_migration.applied == ()
    assert second.counts()["outbox"] == 2


def test_a_newer_store_is_refused_with_or_without_migrate(backend: Backend) -> None:
    backend.open().close()
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        with conn:
            conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01')")
        conn.close()
    else:
        with psycopg.connect(backend.target) as conn:
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')")
    for migrate in (False, True):
        with pytest.raises(SchemaTooNew, match=r"schema version 99 is newer than this tanpuhui .*upgrade tanpuhui"):
            backend.open(migrate=migrate)


def test_a_new_sqlite_file_is_created_at_the_current_version(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new.db")
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert [m.version for m in store.last_migration.applied] == list(range(1, SCHEMA_VERSION + 1))
    finally:
        store.close()


# -- the command -----------------------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nstore = { env = "TANPUHUI_STORE_URL" }\n')
    return path


def test_migrate_command_on_sqlite(tmp_path: Path) -> None:
    _version_1_sqlite(tmp_path / "hub.db")
    config = _config(tmp_path)
    env = {"TANPUHUI_STORE_URL": "hub.db"}
    runner = CliRunner()
    check = runner.invoke(main, ["migrate", "--check", "--config", str(config)], env=env)
    assert check.exit_code == 1, check.output
    assert "schema version 1, this tanpuhui needs" in check.output
    done = runner.invoke(main, ["migrate", "--config", str(config)], env=env)
    assert done.exit_code == 0, done.output
    assert "applied 2: leases" in done.output
    assert f"schema version 1 -> {SCHEMA_VERSION}" in done.output
    again = runner.invoke(main, ["migrate", "--config", str(config)], env=env)
    assert "up to date (nothing to do)" in again.output
    check = runner.invoke(main, ["migrate", "--check", "--config", str(config)], env=env)
    assert check.exit_code == 0 and "up to date" in check.output


def test_migrate_check_without_a_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(
        main, ["migrate", "--check", "--config", str(config)], env={"TANPUHUI_STORE_URL": "var/hub.db"}
    )
    assert result.exit_code == 0 and "no store yet" in result.output
    assert not (tmp_path / "var" / "hub.db").exists()


def test_migrate_command_on_postgres(tmp_path: Path, pg_dsn: str) -> None:
    config = _config(tmp_path)
    env = {"TANPUHUI_STORE_URL": pg_dsn, "TANPUHUI_PSEUDONYM_KEYS": "v1:" + "QUFB" * 10 + "QUE="}
    runner = CliRunner()
    check = runner.invoke(main, ["migrate", "--check", "--config", str(config)], env=env)
    assert check.exit_code == 1 and f"schema version 0, this tanpuhui needs {SCHEMA_VERSION}" in check.output
    pulled = runner.invoke(main, ["pull", "transit_card", "--config", str(config)], env=env)
    assert pulled.exit_code == 2
    assert "no tanpuhui schema yet" in pulled.output and "tanpuhui migrate" in pulled.output
    done = runner.invoke(main, ["migrate", "--config", str(config)], env=env)
    assert done.exit_code == 0, done.output
    assert f"schema version 0 -> {SCHEMA_VERSION}" in done.output
    assert "postgresql://" in done.output and "options" not in done.output
    store = PostgresStore(pg_dsn)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def _version_5(backend: Backend) -> None:
    """A store as schema version 5 left it (before the shared sink state), a sink position and a dead letter."""
    _at_version(
        backend,
        5,
        [
            "INSERT INTO sink_positions (sink, seq) VALUES ('platform', 7)",
            "INSERT INTO dead_letters (sink, seq, record_id, attempts, error, created_at)"
            " VALUES ('platform', 3, '01HXOLD', 8, 'HTTP 422', '2024-05-01T00:00:00+00:00')",
        ],
    )


def _at_version(backend: Backend, version: int, rows: list[str]) -> None:
    """A store as schema ``version`` left it, with ``rows`` inserted."""
    statements = [
        s for m in (SQLITE_MIGRATIONS if backend.kind == "sqlite" else PG_MIGRATIONS)[:version] for s in m.statements
    ]
    if backend.kind == "sqlite":
        Path(backend.target).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(backend.target)
        with conn:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
            for row in rows:
                conn.execute(row)
        conn.close()
        return
    with psycopg.connect(backend.target) as pg:
        pg.execute(SCHEMA_TABLE)
        for statement in statements:
            pg.execute(statement)
        for v in range(1, version + 1):
            pg.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'old')", (v,))
        for row in rows:
            pg.execute(row)


def test_a_version_5_store_gets_the_shared_sink_state_and_keeps_its_positions(backend: Backend) -> None:
    _version_5(backend)
    with pytest.raises(SchemaTooOld, match="schema version 5 is older"):
        backend.open(migrate=False)
    store = backend.open(migrate=True)
    assert [m.version for m in store.last_migration.applied] == list(range(6, SCHEMA_VERSION + 1))
    assert store.sink_position("platform") == 7
    assert store.dead_letters_by_sink() == {"platform": 1}
    assert store.sink_states()["platform"].state == "ok"  # a position and no state yet: ok, never delivered
    assert store.sink_states()["platform"].last_delivery is None


def test_a_version_7_store_gets_the_plausibility_counts_and_its_old_state_still_loads(backend: Backend) -> None:
    # Version 7 kept the max_per_day counts in the stream state (``_plausibility``): that state still loads as it
    # is, and the counts start afresh in the store's table.
    old_state = '{"open": {}, "_plausibility": {"transit_trips_per_day": {"2024-11-05": {"ab12": ["7f3a9c0e21"]}}}}'
    _at_version(
        backend,
        7,
        [
            f"INSERT INTO checkpoints (adapter, stream, cursor, state) VALUES ('transit_card', 'trips', '\"c-9\"', '{old_state}')"
        ],
    )
    with pytest.raises(SchemaTooOld, match="schema version 7 is older"):
        backend.open(migrate=False)
    store = backend.open(migrate=True)
    assert [m.version for m in store.last_migration.applied] == list(range(8, SCHEMA_VERSION + 1))
    checkpoint = store.load_checkpoint("transit_card", "trips")
    assert checkpoint.cursor == "c-9" and checkpoint.state["_plausibility"]["transit_trips_per_day"]
    assert store.day_counts("transit_card", "trips", {("transit_trips_per_day", "2024-11-05", "ab12")}) == []


def test_a_version_8_store_gets_its_heads_and_overlap_keys_indexed_by_record_id_and_voids_use_them(
    backend: Backend,
) -> None:
    _at_version(
        backend,
        8,
        [
            "INSERT INTO record_heads (adapter, stream, partner_record_id, record_id, raw_sha256)"
            " VALUES ('state_grid', 'readings', 'SG-1', '01HXOLD', 'ab')",
            "INSERT INTO overlap_keys (rule, match_key, role, record_id, amount)"
            " VALUES ('demand_response_in_peak_saving', 'h:2024-05-01', 'keep', '01HXOLD', 0.74)",
        ],
    )
    with pytest.raises(SchemaTooOld, match="schema version 8 is older"):
        backend.open(migrate=False)
    store = backend.open(migrate=True)
    assert [m.version for m in store.last_migration.applied] == [9]
    store.close()
    lookups = {  # what a void or a correction asks of each table, by record id
        "record_heads": "UPDATE record_heads SET status='voided' WHERE record_id='01HXOLD'",
        "overlap_keys": "SELECT rule, match_key FROM overlap_keys WHERE record_id='01HXOLD' AND role='keep'",
    }
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.target)
        for table, statement in lookups.items():
            plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + statement))
            assert f"USING INDEX {table}_record_id (record_id=?)" in plan, plan
        assert conn.execute("SELECT count(*) FROM record_heads").fetchone() == (1,)
        conn.close()
        return
    with psycopg.connect(backend.target) as pg:
        pg.execute("SET enable_seqscan = off")  # a table this small is scanned anyway; ask whether an index serves
        for table, statement in lookups.items():
            plan = " ".join(row[0] for row in pg.execute("EXPLAIN " + statement))
            assert f"{table}_record_id" in plan, plan
        assert pg.execute("SELECT count(*) FROM overlap_keys").fetchone() == (1,)
