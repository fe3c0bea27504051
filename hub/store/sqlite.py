"""The embedded store: one SQLite file in WAL mode.

Layout and why:
- ``outbox.seq`` is the rowid, so forwarders read with a keyset cursor (``seq > ?``) per sink instead of scanning
  for unsent rows; ``record_id`` is UNIQUE and time-ordered, so the dedup index stays append-mostly.
- a page's records, its quarantine entries and the stream's checkpoint are written in ONE transaction.
- ``synchronous`` defaults to FULL: a commit that returned (and so a webhook we acknowledged) survives power loss.
- a webhook's answer (``webhook_receipts``) is written with its records, keyed by the webhook id; several pages
  (concurrent webhook requests) can share one transaction (``commit_pages``): one sync to disk for all of them.
- the schema is versioned (``schema_migrations``, see :mod:`.migrations`): a new file is created at the current
  version; an older one is refused until ``tanpuhui migrate``; a newer one always.
- the audit log (``audit_log``, :mod:`tanpuhui.hub.audit`) is appended in the transaction of what it records:
  each committed page (with the digest of the outbox rows it inserted), dead letters added and deleted,
  quarantine entries resolved, receipts pruned; ``meta.audit_head`` (``seq:hash``) is updated with it, and each
  append chains from that head, so deleting the newest entries cannot go unnoticed by the next append either.
- ``schema_drift``: top-level fields partners send that the schema does not name, upserted with the page.
- leases (``leases``) work as in PostgreSQL, with this host's clock: several processes may share one file (a CLI
  pull next to the sidecar), one of them pulls a stream or drains a sink at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tanpuhui.sdk import OutboxRow

from ..audit import GENESIS, AuditEntry, AuditEvent, batch_digest, canonical_entry_hash
from .base import (
    Checkpoint,
    CommitResult,
    DeadLetter,
    DriftEntry,
    Lease,
    LeaseLost,
    NewQuarantine,
    NewRecord,
    OnePageCommit,
    PageWrite,
    QuarantineEntry,
    SinkBacklog,
    StreamStatus,
    WebhookReceipt,
)
from .migrations import SCHEMA_VERSION, MigrationReport, SchemaTooNew, SchemaTooOld, pending
from .migrations.sqlite import MIGRATIONS, applied_version

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

_IN_CHUNK = 500


PAGE_SIZE = 16384
"""SQLite page size of a new store file, bytes."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _from_unix(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class SQLiteStore(OnePageCommit):
    """:class:`tanpuhui.hub.store.base.Store` on SQLite (WAL)."""

    last_migration: MigrationReport
    """What opening did to the schema (a new file is created at the current version)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", migrate: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
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
            self.last_migration = self._open_schema(migrate)
        except BaseException:
            conn.close()
            raise

    def _open_schema(self, migrate: bool) -> MigrationReport:
        """Check the schema version; create a new store, or apply what is missing when ``migrate``."""
        with self._tx() as conn:
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
            now = _now()
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
        with self._lock:
            return applied_version(self._conn)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- pull / ingest -------------------------------------------------------------------------------------

    def load_checkpoint(self, adapter: str, stream: str) -> Checkpoint:
        with self._lock:
            row = self._conn.execute(
                "SELECT cursor, state FROM checkpoints WHERE adapter=? AND stream=?", (adapter, stream)
            ).fetchone()
        if row is None:
            return Checkpoint()
        return Checkpoint(orjson.loads(row[0]) if row[0] is not None else None, orjson.loads(row[1]))

    def commit_pages(self, pages: Sequence[PageWrite]) -> list[CommitResult | None]:
        now = _now()
        out: list[CommitResult | None] = []
        with self._tx() as conn:
            for page in pages:
                if page.lease_owner is not None:
                    self._check_lease(conn, page.adapter, page.stream, page.lease_owner)
            for page in pages:
                receipt = page.receipt
                if receipt is not None:
                    # First, so a repeat writes nothing else (a failed INSERT undoes only itself).
                    try:
                        conn.execute(
                            "INSERT INTO webhook_receipts (adapter, stream, webhook_id, request_hash, status, body,"
                            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (
                                page.adapter,
                                page.stream,
                                receipt.key,
                                receipt.request_hash,
                                receipt.status,
                                receipt.body,
                                now,
                            ),
                        )
                    except sqlite3.IntegrityError:
                        out.append(None)
                        continue
                result = self._write_page(
                    conn, page.adapter, page.stream, page.records, page.quarantined, page.checkpoint, now
                )
                out.append(result)
                if page.drift:
                    self._write_drift(conn, page, now)
                self._audit(conn, [self._page_event(conn, page, result)], now)
        return out

    @staticmethod
    def _page_event(conn: sqlite3.Connection, page: PageWrite, result: CommitResult) -> AuditEvent:
        """The page's audit entry: the caller's (or ``page.commit``) with what this commit did added."""
        given = page.audit or AuditEvent("page.commit", f"{page.adapter}:{page.stream}")
        details: dict[str, Any] = {
            **given.details,
            "inserted": result.inserted,
            "duplicates": result.duplicates,
            "held": result.held,
            "quarantined": result.quarantined,
        }
        if result.inserted:
            last = int(conn.execute("SELECT max(seq) FROM outbox").fetchone()[0])
            ids = result.inserted_ids
            seen: set[str] = set()
            rows: list[tuple[str, bytes]] = []
            for r in page.records:  # inserted in this order, so their seqs run first..last
                if (ids is None or r.record_id in ids) and r.record_id not in seen:
                    seen.add(r.record_id)
                    rows.append((r.record_id, r.body))
            details["first_seq"] = last - len(rows) + 1
            details["last_seq"] = last
            details["records_sha256"] = batch_digest(rows)
        if result.quarantined:
            last_q = int(conn.execute("SELECT max(id) FROM quarantine").fetchone()[0])
            details["quarantine_ids"] = [last_q - result.quarantined + 1, last_q]
        if page.drift:
            details["unknown_fields"] = sorted(page.drift)
        return AuditEvent(given.action, given.subject, details, given.actor)

    @staticmethod
    def _write_drift(conn: sqlite3.Connection, page: PageWrite, now: str) -> None:
        conn.executemany(
            "INSERT INTO schema_drift (adapter, stream, field, first_seen, last_seen, items, example)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (adapter, stream, field) DO UPDATE SET"
            " last_seen=excluded.last_seen, items=schema_drift.items + excluded.items",
            [(page.adapter, page.stream, name, now, now, n, example) for name, (n, example) in page.drift.items()],
        )

    # -- the audit log ---------------------------------------------------------------------------------------

    @staticmethod
    def _audit(conn: sqlite3.Connection, events: Sequence[AuditEvent], now: str) -> list[AuditEntry]:
        """Append ``events`` inside the caller's transaction, chained from ``meta.audit_head``."""
        if not events:
            return []
        row = conn.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        if row is not None:
            head_seq, _, prev = str(row[0]).partition(":")
            seq = int(head_seq)
        else:
            last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        entries = []
        rows = []
        for event in events:
            seq += 1
            details = dict(event.details)
            text = orjson.dumps(details, option=orjson.OPT_SORT_KEYS)  # canonical_details, made once
            digest = canonical_entry_hash(prev, seq, now, event.actor, event.action, event.subject, text)
            entries.append(AuditEntry(seq, now, event.actor, event.action, event.subject, details, prev, digest))
            rows.append((seq, now, event.actor, event.action, event.subject, text.decode(), prev, digest))
            prev = digest
        insert = (
            "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if len(rows) == 1:
            conn.execute(insert, rows[0])
        else:
            conn.executemany(insert, rows)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (f"{seq}:{prev}",),
        )
        return entries

    def audit_append(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        with self._tx() as conn:
            return self._audit(conn, events, _now())

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        out = []
        for seq, at, actor, action, subject, details, prev_hash, digest in rows:
            try:
                parsed = orjson.loads(details)
            except orjson.JSONDecodeError:
                parsed = {"unparseable": str(details)}  # an edited entry: verify reports it
            out.append(
                AuditEntry(
                    seq,
                    at,
                    actor,
                    action,
                    subject,
                    parsed if isinstance(parsed, dict) else {"value": parsed},
                    prev_hash,
                    digest,
                )
            )
        return out

    def audit_head(self) -> tuple[int, str] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        if row is None:
            return None
        seq, _, digest = str(row[0]).partition(":")
        return (int(seq), digest) if seq.isdigit() else (-1, str(row[0]))

    def audit_outbox_rows(self, first_seq: int, last_seq: int) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT record_id, body FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last_seq)
            ).fetchall()
        # A body edited with SQL text functions comes back as TEXT: compare its bytes all the same.
        return [(str(r), b if isinstance(b, bytes) else str(b).encode()) for r, b in rows]

    def schema_drift(self, adapter: str | None = None) -> list[DriftEntry]:
        sql = "SELECT adapter, stream, field, first_seen, last_seen, items, example FROM schema_drift"
        args: tuple[Any, ...] = ()
        if adapter:
            sql += " WHERE adapter=?"
            args = (adapter,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY adapter, stream, field", args).fetchall()
        return [DriftEntry(*row) for row in rows]

    def _write_page(
        self,
        conn: sqlite3.Connection,
        adapter: str,
        stream: str,
        records: Sequence[NewRecord],
        quarantined: Sequence[NewQuarantine],
        checkpoint: Checkpoint | None,
        now: str,
    ) -> CommitResult:
        held_rows = []
        fresh: Sequence[NewRecord] = records
        if records:
            claimed = self._claimed_elsewhere(conn, adapter, records)
            if claimed:
                fresh = [r for r in records if r.record_id not in claimed]
                held_rows = [
                    (r.record_id, r.fingerprint, adapter, stream, claimed[r.record_id], r.body, now)
                    for r in records
                    if r.record_id in claimed
                ]
        max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e,"
            " body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.record_id, r.fingerprint, adapter, stream, r.scenario, r.reduction_kgco2e, r.body, now) for r in fresh],
        )
        inserted = conn.total_changes - before
        inserted_ids = None
        if inserted != len(records):
            rows = conn.execute("SELECT record_id FROM outbox WHERE seq > ?", (max_seq,))
            inserted_ids = frozenset(r[0] for r in rows)
        before = conn.total_changes
        if held_rows:
            conn.executemany(
                "INSERT OR IGNORE INTO held_claims (record_id, fingerprint, adapter, stream, claimed_by, body,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                held_rows,
            )
        held = conn.total_changes - before
        if quarantined:
            conn.executemany(
                "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        adapter,
                        stream,
                        q.stage,
                        q.partner_record_id,
                        orjson.dumps([p.as_dict() for p in q.problems]).decode(),
                        q.sealed_raw,
                        now,
                    )
                    for q in quarantined
                ],
            )
        if checkpoint is not None:
            # The row holds the whole state (a YRD push stream's withdrawn log: ~100 KB), and SQLite rewrites all of
            # it for any change. A commit that changes neither cursor nor state (most webhook groups) leaves it,
            # except to move last_success on once a second (as the PostgreSQL store does).
            conn.execute(
                "INSERT INTO checkpoints (adapter, stream, cursor, state, last_success) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (adapter, stream) DO UPDATE SET cursor=excluded.cursor, state=excluded.state,"
                " last_success=excluded.last_success"
                " WHERE checkpoints.cursor IS NOT excluded.cursor OR checkpoints.state IS NOT excluded.state"
                " OR checkpoints.last_success IS NULL"
                " OR substr(checkpoints.last_success, 1, 19) <> substr(excluded.last_success, 1, 19)",
                (
                    adapter,
                    stream,
                    orjson.dumps(checkpoint.cursor).decode(),
                    orjson.dumps(checkpoint.state).decode(),
                    now,
                ),
            )
        # A held claim already on file (the same item pulled again) is a duplicate like any other.
        return CommitResult(inserted, len(records) - inserted - held, held, len(quarantined), inserted_ids)

    @staticmethod
    def _claimed_elsewhere(conn: sqlite3.Connection, adapter: str, records: Sequence[NewRecord]) -> dict[str, str]:
        """record_id -> the record of another adapter that already claimed the same behaviour."""
        keys = list(dict.fromkeys([r.fingerprint for r in records] + [r.neighbour for r in records if r.neighbour]))
        hits: dict[str, list[str]] = {}  # fingerprint -> record ids of other adapters (rare: a claim across sources)
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for fp, other_id in conn.execute(
                f"SELECT fingerprint, record_id FROM outbox WHERE fingerprint IN ({marks}) AND adapter != ?",
                [*chunk, adapter],
            ):
                hits.setdefault(fp, []).append(other_id)
        claimed: dict[str, str] = {}
        if hits:
            for r in records:
                for fp in (r.fingerprint, r.neighbour):
                    for other_id in hits.get(fp, ()):
                        if r.record_id != other_id:
                            claimed.setdefault(r.record_id, other_id)
        return claimed

    @staticmethod
    def _check_lease(conn: sqlite3.Connection, adapter: str, stream: str, owner: str) -> None:
        row = conn.execute("SELECT owner FROM leases WHERE adapter=? AND stream=?", (adapter, stream)).fetchone()
        if row is None or row[0] != owner:
            raise LeaseLost(adapter, stream, owner)

    def record_stream_error(self, adapter: str, stream: str, message: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO checkpoints (adapter, stream, last_error, last_error_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (adapter, stream) DO UPDATE SET last_error=excluded.last_error,"
                " last_error_at=excluded.last_error_at",
                (adapter, stream, message, _now()),
            )

    def stream_status(self) -> list[StreamStatus]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT adapter, stream, cursor, last_success, last_error, last_error_at FROM checkpoints"
                " ORDER BY adapter, stream"
            ).fetchall()
        return [
            StreamStatus(a, s, orjson.loads(c) if c else None, ok, err, err_at) for a, s, c, ok, err, err_at in rows
        ]

    # -- leases (expiry by this host's clock: the processes sharing a SQLite file share the host) ------------

    def acquire_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO leases (adapter, stream, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (adapter, stream) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at,"
                " acquired_at=CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at"
                " ELSE excluded.acquired_at END"
                " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (adapter, stream, owner, now, now + ttl, now),
            )
            return cur.rowcount > 0

    def renew_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at=? WHERE adapter=? AND stream=? AND owner=?",
                (time.time() + ttl, adapter, stream, owner),
            )
            return cur.rowcount > 0

    def release_lease(self, adapter: str, stream: str, owner: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM leases WHERE adapter=? AND stream=? AND owner=?", (adapter, stream, owner))

    def leases(self) -> list[Lease]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT adapter, stream, owner, acquired_at, expires_at FROM leases WHERE expires_at > ?"
                " ORDER BY adapter, stream",
                (time.time(),),
            ).fetchall()
        return [Lease(a, s, o, _from_unix(acquired), _from_unix(expires)) for a, s, o, acquired, expires in rows]

    # -- forwarding ----------------------------------------------------------------------------------------

    def sink_position(self, sink: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sink_positions WHERE sink=?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, record_id, adapter, stream, scenario, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_max_seq(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT max(seq) FROM outbox").fetchone()
        return int(row[0] or 0)

    def sink_backlog(self, sink: str) -> SinkBacklog:
        # seq is the rowid and outbox rows are never deleted, so max - position is the depth without a count(*).
        with self._lock:
            conn = self._conn
            row = conn.execute("SELECT seq FROM sink_positions WHERE sink=?", (sink,)).fetchone()
            position = int(row[0]) if row else 0
            top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])
            oldest = conn.execute(
                "SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", (position,)
            ).fetchone()
        return SinkBacklog(sink, position, max(0, top - position), oldest[0] if oldest else None)

    def advance_sink(self, sink: str, upto_seq: int, dead: Sequence[tuple[OutboxRow, int, str]] = ()) -> None:
        now = _now()
        with self._tx() as conn:
            if dead:
                conn.executemany(
                    "INSERT OR REPLACE INTO dead_letters (sink, seq, record_id, attempts, error, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(sink, row.seq, row.record_id, attempts, error, now) for row, attempts, error in dead],
                )
                seqs = [row.seq for row, _, _ in dead]
                details = {
                    "count": len(dead),
                    "first_seq": min(seqs),
                    "last_seq": max(seqs),
                    "error": dead[-1][2][:300],
                }
                self._audit(conn, [AuditEvent("deadletter.add", sink, details)], now)
            conn.execute(
                "INSERT INTO sink_positions (sink, seq) VALUES (?, ?)"
                " ON CONFLICT (sink) DO UPDATE SET seq=max(seq, excluded.seq)",
                (sink, upto_seq),
            )

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[DeadLetter]:
        sql = "SELECT id, sink, seq, record_id, attempts, error, created_at FROM dead_letters"
        args: tuple[Any, ...] = ()
        if sink:
            sql += " WHERE sink=?"
            args = (sink,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def dead_letter_rows(self, ids: Sequence[int]) -> list[tuple[DeadLetter, OutboxRow]]:
        out = []
        with self._lock:
            for i in ids:
                row = self._conn.execute(
                    "SELECT d.id, d.sink, d.seq, d.record_id, d.attempts, d.error, d.created_at,"
                    " o.seq, o.record_id, o.adapter, o.stream, o.scenario, o.body"
                    " FROM dead_letters d JOIN outbox o ON o.seq = d.seq WHERE d.id=?",
                    (i,),
                ).fetchone()
                if row is not None:
                    out.append((DeadLetter(*row[:7]), OutboxRow(*row[7:])))
        return out

    def delete_dead_letters(self, ids: Sequence[int]) -> None:
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids])
            if conn.total_changes - before:
                event = AuditEvent("deadletter.delete", "dead_letters", {"ids": sorted(ids)})
                self._audit(conn, [event], _now())

    # -- quarantine ----------------------------------------------------------------------------------------

    def quarantine_list(
        self, adapter: str | None = None, status: str = "open", limit: int = 100
    ) -> list[QuarantineEntry]:
        sql = (
            "SELECT id, adapter, stream, stage, partner_record_id, problems, raw, status, created_at, resolved_at"
            " FROM quarantine WHERE status=?"
        )
        args: list[Any] = [status]
        if adapter:
            sql += " AND adapter=?"
            args.append(adapter)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [self._entry(row) for row in rows]

    def quarantine_get(self, entry_id: int) -> QuarantineEntry | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, adapter, stream, stage, partner_record_id, problems, raw, status, created_at, resolved_at"
                " FROM quarantine WHERE id=?",
                (entry_id,),
            ).fetchone()
        return self._entry(row) if row else None

    @staticmethod
    def _entry(row: Sequence[Any]) -> QuarantineEntry:
        return QuarantineEntry(
            row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), row[6], row[7], row[8], row[9]
        )

    def quarantine_resolve(self, entry_id: int, status: str) -> None:
        now = _now()
        with self._tx() as conn:
            cur = conn.execute("UPDATE quarantine SET status=?, resolved_at=? WHERE id=?", (status, now, entry_id))
            if cur.rowcount:
                event = AuditEvent("quarantine.resolve", f"quarantine:{entry_id}", {"status": status})
                self._audit(conn, [event], now)

    # -- webhook receipts ----------------------------------------------------------------------------------

    def receipt_get(self, adapter: str, stream: str, key: str) -> WebhookReceipt | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT adapter, stream, webhook_id, request_hash, status, body, created_at FROM webhook_receipts"
                " WHERE adapter=? AND stream=? AND webhook_id=?",
                (adapter, stream, key),
            ).fetchone()
        return WebhookReceipt(*row) if row else None

    def prune_receipts(self, before: str) -> int:
        with self._tx() as conn:
            pruned = int(conn.execute("DELETE FROM webhook_receipts WHERE created_at < ?", (before,)).rowcount)
            if pruned:
                event = AuditEvent("receipts.prune", "webhook_receipts", {"before": before, "count": pruned})
                self._audit(conn, [event], _now())
            return pruned

    def check_writable(self) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_write_check', ?)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (_now(),),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            c = self._conn
            return {
                "outbox": int(c.execute("SELECT count(*) FROM outbox").fetchone()[0]),
                "quarantine_open": int(c.execute("SELECT count(*) FROM quarantine WHERE status='open'").fetchone()[0]),
                "held_claims": int(c.execute("SELECT count(*) FROM held_claims").fetchone()[0]),
                "dead_letters": int(c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]),
            }

    def pending_counts(self) -> dict[str, int]:
        with self._lock:
            c = self._conn
            return {
                "quarantine_open": int(c.execute("SELECT count(*) FROM quarantine WHERE status='open'").fetchone()[0]),
                "dead_letters": int(c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]),
            }

    def close(self) -> None:
        with self._lock:
            self._conn.close()
