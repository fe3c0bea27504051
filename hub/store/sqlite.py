"""The embedded store: one SQLite file in WAL mode (the rules are :mod:`.rules`; this is its SQL and connection).

Layout and why:
- ``outbox.seq`` is the rowid, so forwarders read with a keyset cursor (``seq > ?``) per sink instead of scanning
  for unsent rows; ``record_id`` is UNIQUE and time-ordered, so the dedup index stays append-mostly. Rows are never
  deleted and one writer inserts at a time, so a page's rows take consecutive seqs (its audit entry's range).
- one connection, one writer: a transaction is ``BEGIN IMMEDIATE`` under the store's lock; several processes on
  one file (a CLI pull next to the sidecar) take turns on SQLite's write lock (``busy_timeout``).
- ``synchronous`` defaults to FULL: a commit that returned (and so a webhook we acknowledged) survives power loss.
- batch inserts are one ``executemany`` per page; ``total_changes`` counts what they inserted.
- times are ISO texts the hub passes (``now``); leases keep unix seconds of this host's clock (the processes
  sharing a file share the host).
- the schema is versioned (``schema_migrations``, see :mod:`.migrations`): a new file is created at the current
  version; an older one is refused until ``tanpuhui migrate``; a newer one always.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import Lease, NewReceipt, NewRecord, PageWrite, SinkBacklog
from .dialect import QUARANTINE_REPEAT, Dialect, OutboxInsert, QuarantineRow, Rows, time_text, utc_now
from .migrations import SCHEMA_VERSION, MigrationReport, SchemaTooNew, SchemaTooOld, pending
from .migrations.sqlite import MIGRATIONS, applied_version
from .rules import RuleStore

__all__ = ["PAGE_SIZE", "SCHEMA_VERSION", "SQLiteDialect", "SQLiteStore"]

_IN_CHUNK = 500

PAGE_SIZE = 16384
"""SQLite page size of a new store file, bytes."""


class SQLiteDialect(Dialect[sqlite3.Connection]):
    """One connection to the file, used under a lock by every thread of the process."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.name = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        conn = self._conn
        try:
            # Only takes effect when the file is created (an existing store keeps its page size). 16 KiB pages
            # write a page's ~600 records (~1.2 KB bodies) in a quarter of the WAL frames 4 KiB pages need: the
            # COMMIT of a pull page costs ~6 instead of ~9 µs of CPU per record (docs/performance.md).
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def run(self, tx: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Rows:
        return tx.execute(sql, params)

    def run_many(self, tx: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        before = tx.total_changes
        tx.executemany(sql, rows)
        return tx.total_changes - before

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- committing a page ---------------------------------------------------------------------------------------

    def lock_pages(self, tx: sqlite3.Connection, pages: Sequence[PageWrite]) -> None:
        pass  # BEGIN IMMEDIATE took the file's write lock: no other writer until the commit

    def lease_holder(self, tx: sqlite3.Connection, adapter: str, stream: str) -> str | None:
        row = tx.execute("SELECT owner FROM leases WHERE adapter=? AND stream=?", (adapter, stream)).fetchone()
        return None if row is None else str(row[0])

    def insert_receipt(self, tx: sqlite3.Connection, adapter: str, stream: str, receipt: NewReceipt, now: str) -> bool:
        try:  # a failed INSERT undoes only itself
            tx.execute(
                "INSERT INTO webhook_receipts (adapter, stream, webhook_id, request_hash, status, body, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (adapter, stream, receipt.key, receipt.request_hash, receipt.status, receipt.body, now),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def claims(self, tx: sqlite3.Connection, adapter: str, keys: Sequence[str]) -> Iterable[tuple[str, str]]:
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from tx.execute(
                f"SELECT fingerprint, record_id FROM outbox WHERE fingerprint IN ({marks}) AND adapter != ?",
                [*chunk, adapter],
            )

    def insert_held(
        self, tx: sqlite3.Connection, adapter: str, stream: str, rows: Sequence[tuple[str, str, str, bytes]], now: str
    ) -> int:
        return self.run_many(
            tx,
            "INSERT OR IGNORE INTO held_claims (record_id, fingerprint, adapter, stream, claimed_by, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r, f, adapter, stream, c, b, now) for r, f, c, b in rows],
        )

    def insert_outbox(
        self, tx: sqlite3.Connection, adapter: str, stream: str, records: Sequence[NewRecord], now: str
    ) -> OutboxInsert:
        max_seq = tx.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        inserted = self.run_many(
            tx,
            "INSERT OR IGNORE INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e,"
            " body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.record_id, r.fingerprint, adapter, stream, r.scenario, r.reduction_kgco2e, r.body, now)
                for r in records
            ],
        )
        ids = None
        if inserted != len(records):
            ids = frozenset(r[0] for r in tx.execute("SELECT record_id FROM outbox WHERE seq > ?", (max_seq,)))
        return OutboxInsert(inserted, ids, ((max_seq + 1, max_seq + inserted),) if inserted else ())

    def insert_quarantine(
        self, tx: sqlite3.Connection, adapter: str, stream: str, rows: Sequence[QuarantineRow], now: str
    ) -> list[int]:
        top = tx.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()[0]
        tx.executemany(
            "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw, digest, repeats,"
            " created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + QUARANTINE_REPEAT,
            [(adapter, stream, *row, now, now) for row in rows],
        )
        # New entries take the ids after the largest (one writer; entries are never deleted), a repeat none.
        last = tx.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()[0]
        return list(range(top + 1, last + 1))

    def upsert_checkpoint(
        self, tx: sqlite3.Connection, adapter: str, stream: str, cursor: str, state: str, now: str
    ) -> None:
        # SQLite rewrites the whole row for any change: the WHERE keeps an unchanged one as it is.
        tx.execute(
            "INSERT INTO checkpoints (adapter, stream, cursor, state, last_success) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (adapter, stream) DO UPDATE SET cursor=excluded.cursor, state=excluded.state,"
            " last_success=excluded.last_success"
            " WHERE checkpoints.cursor IS NOT excluded.cursor OR checkpoints.state IS NOT excluded.state"
            " OR checkpoints.last_success IS NULL"
            " OR substr(checkpoints.last_success, 1, 19) <> substr(excluded.last_success, 1, 19)",
            (adapter, stream, cursor, state, now),
        )

    def audit_begin(self, tx: sqlite3.Connection, now: str) -> tuple[str | None, str]:
        return self.audit_head(tx), now  # appends are serialised by the write lock

    # -- other writes --------------------------------------------------------------------------------------------

    def insert_dead_letters(
        self, tx: sqlite3.Connection, sink: str, rows: Sequence[tuple[int, str, int, str]], now: str
    ) -> None:
        tx.executemany(
            "INSERT INTO dead_letters (sink, seq, record_id, attempts, error, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (sink, seq) DO UPDATE SET record_id=excluded.record_id, attempts=excluded.attempts,"
            " error=excluded.error, created_at=excluded.created_at",
            [(sink, seq, record_id, attempts, error, now) for seq, record_id, attempts, error in rows],
        )

    def resolve_quarantine(self, tx: sqlite3.Connection, entry_id: int, status: str, now: str) -> int:
        return tx.execute("UPDATE quarantine SET status=?, resolved_at=? WHERE id=?", (status, now, entry_id)).rowcount

    def prune_receipts(self, tx: sqlite3.Connection, before: str) -> int:
        return tx.execute("DELETE FROM webhook_receipts WHERE created_at < ?", (before,)).rowcount

    def record_stream_error(self, tx: sqlite3.Connection, adapter: str, stream: str, message: str, now: str) -> None:
        tx.execute(
            "INSERT INTO checkpoints (adapter, stream, last_error, last_error_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (adapter, stream) DO UPDATE SET last_error=excluded.last_error,"
            " last_error_at=excluded.last_error_at",
            (adapter, stream, message, now),
        )

    def acquire_lease(self, tx: sqlite3.Connection, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        now = time.time()
        return (
            tx.execute(
                "INSERT INTO leases (adapter, stream, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (adapter, stream) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at,"
                " acquired_at=CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at"
                " ELSE excluded.acquired_at END"
                " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (adapter, stream, owner, now, now + ttl, now),
            ).rowcount
            > 0
        )

    def renew_lease(self, tx: sqlite3.Connection, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        return (
            tx.execute(
                "UPDATE leases SET expires_at=? WHERE adapter=? AND stream=? AND owner=?",
                (time.time() + ttl, adapter, stream, owner),
            ).rowcount
            > 0
        )

    def leases(self, tx: sqlite3.Connection) -> list[Lease]:
        rows = tx.execute(
            "SELECT adapter, stream, owner, acquired_at, expires_at FROM leases WHERE expires_at > ?"
            " ORDER BY adapter, stream",
            (time.time(),),
        ).fetchall()
        return [
            Lease(a, s, o, time_text(acquired) or "", time_text(expires) or "") for a, s, o, acquired, expires in rows
        ]

    def sink_backlog(self, tx: sqlite3.Connection, sink: str) -> SinkBacklog:
        # seq is the rowid and outbox rows are never deleted, so max - position is the depth without a count(*).
        position = self.sink_position(tx, sink)
        top = self.outbox_max_seq(tx)
        oldest = tx.execute("SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", (position,)).fetchone()
        return SinkBacklog(sink, position, max(0, top - position), oldest[0] if oldest else None)


class SQLiteStore(RuleStore[sqlite3.Connection]):
    """:class:`tanpuhui.hub.store.base.Store` on SQLite (WAL)."""

    last_migration: MigrationReport
    """What opening did to the schema (a new file is created at the current version)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", migrate: bool = False) -> None:
        self.path = str(path)
        super().__init__(SQLiteDialect(self.path, synchronous))
        try:
            self.last_migration = self._open_schema(migrate)
        except BaseException:
            self.sql.close()
            raise

    def _open_schema(self, migrate: bool) -> MigrationReport:
        """Check the schema version; create a new store, or apply what is missing when ``migrate``."""
        with self.sql.write() as conn:
            found = applied_version(conn)
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(self.path, found)
            fresh = found == 0 and not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table'").fetchone()
            if found == SCHEMA_VERSION:
                return MigrationReport(self.path, found, found, ())
            if not (migrate or fresh):
                raise SchemaTooOld(self.path, found)
            todo = pending(MIGRATIONS, found)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)"
            )
            now = utc_now()
            # A store from before versioned migrations (meta.schema_version only) is recorded as having those.
            adopted = [(m.version, m.name, now) for m in MIGRATIONS if m.version <= found]
            conn.executemany(
                "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", adopted
            )
            for migration in todo:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now),
                )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (str(SCHEMA_VERSION),),
            )
            return MigrationReport(self.path, found, SCHEMA_VERSION, todo)

    def schema_version(self) -> int:
        """The newest migration applied to this file."""
        with self.sql.read() as conn:
            return applied_version(conn)
