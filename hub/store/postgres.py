"""The shared store: PostgreSQL (psycopg 3), for several hub replicas working on one state.

Chosen by ``[hub] store = "postgresql://..."`` (the password from the environment: ``store = { env = "..." }``
or libpq's ``PGPASSWORD``/``~/.pgpass``). The same :class:`~tanpuhui.hub.store.base.Store` contract as
SQLite; what differs is how concurrent replicas are kept apart:

- **Dedup by the database.** ``outbox.record_id``, ``held_claims.record_id`` and the webhook receipt key are
  unique; inserts are ``ON CONFLICT DO NOTHING``, so two replicas committing the same record (or the same webhook)
  store it once: the second waits for the first's commit on the unique index, then finds it. Cross-source
  fingerprint claims are checked under transaction-scoped advisory locks on the claim keys' time windows, so two
  sources' records of one behaviour committed at the same moment by two replicas are still seen in order.
- **The outbox has no gaps for readers.** A sequence number is taken at insert time, not at commit time: with
  concurrent writers, seq 101 can become visible after seq 102. Writers hold a shared advisory lock from their
  outbox insert to their commit; a reader that has read everything up to its safe mark takes that lock exclusively
  for an instant (waiting for the commits in flight), reads ``max(seq)``, and from then on reads only up to it.
  So a sink position never moves past a row that commits later.
- **Leases** (see :mod:`.leases`) live in the ``leases`` table with the database clock deciding expiry; a page
  committed under a lease locks the lease row ``FOR SHARE`` and checks the owner, so a takeover waits for it.

Thread-safe: a small pool hands each call its own connection (the forwarder calls the store from worker threads).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus

from tanpuhui.sdk import OutboxRow

from .base import (
    Checkpoint,
    CommitResult,
    DeadLetter,
    DriftEntry,
    NewRecord,
    OnePageCommit,
    PageWrite,
    QuarantineEntry,
    SinkBacklog,
    StreamStatus,
    WebhookReceipt,
)
from .leases import Lease, LeaseLost
from .migrations import SCHEMA_VERSION, MigrationReport, SchemaTooNew, SchemaTooOld, pending
from .migrations.postgres import MIGRATIONS, SCHEMA_TABLE, applied_version

__all__ = ["PostgresStore", "display_dsn"]

# Advisory lock keys (two int4s; the first is ours, so other applications' locks in the same database never clash).
_LOCK_CLAIMS = 0x74700001
_LOCK_OUTBOX = 0x74700002
_LOCK_MIGRATE = 0x74700003
_CLAIM_BUCKETS = 256
"""Claim keys are locked by time window (the fingerprint's first 12 characters), hashed into this many buckets."""

_PING_AFTER = 1.0
"""An idle connection is checked with ``SELECT 1`` before reuse when it has been idle longer than this (seconds)."""

_QUARANTINE_COLUMNS = "id, adapter, stream, stage, partner_record_id, problems, raw, status, created_at, resolved_at"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="milliseconds")


def display_dsn(dsn: str) -> str:
    """The connection string without its password (for messages and logs)."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable connection string)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = str(params.get("host") or "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


class _Pool:
    """Idle connections to hand out, one per concurrent caller; a broken one is dropped, never reused."""

    def __init__(self, dsn: str, *, max_idle: int, synchronous_commit: bool) -> None:
        defaults: dict[str, Any] = {}
        params = conninfo.conninfo_to_dict(dsn)
        if "application_name" not in params:
            defaults["application_name"] = "tanpuhui"
        if "connect_timeout" not in params:
            defaults["connect_timeout"] = 10
        self._dsn = conninfo.make_conninfo(dsn, **defaults)
        self._max_idle = max_idle
        self._synchronous_commit = synchronous_commit
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=True)
        if not self._synchronous_commit:
            conn.execute("SET synchronous_commit = off")
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn: psycopg.Connection[Any] | None = None
        while conn is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the store is closed")
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                conn = self._connect()
            elif time.monotonic() - since > _PING_AFTER and not self._alive(conn):
                conn = None  # the server dropped it while idle (a restart, a failover, idle timeouts)
        try:
            yield conn
        finally:
            reusable = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
            with self._lock:
                if reusable and not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append((conn, time.monotonic()))
                    conn = None
            if conn is not None:
                conn.close()

    @staticmethod
    def _alive(conn: psycopg.Connection[Any]) -> bool:
        try:
            conn.execute("SELECT 1")
        except psycopg.OperationalError:
            conn.close()
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


class PostgresStore(OnePageCommit):
    """:class:`tanpuhui.hub.store.base.Store` on PostgreSQL; see the module docstring.

    ``migrate``: apply pending schema migrations first (what ``tanpuhui migrate`` does); otherwise a schema older
    or newer than this code is refused with a message saying what to do. ``synchronous="NORMAL"`` commits with
    ``synchronous_commit = off`` (faster; a server crash may lose the last commits, acknowledged ones included).
    """

    last_migration: MigrationReport
    """What opening did to the schema (nothing unless ``migrate``)."""

    def __init__(
        self, dsn: str, *, synchronous: str = "FULL", migrate: bool = False, max_idle_connections: int = 8
    ) -> None:
        self.dsn = dsn
        self.name = display_dsn(dsn)
        self._pool = _Pool(dsn, max_idle=max_idle_connections, synchronous_commit=synchronous.upper() != "NORMAL")
        self._watermark = 0
        self._watermark_lock = threading.Lock()
        try:
            if migrate:
                self.last_migration = self.migrate()
            version = self.schema_version()
            if version < SCHEMA_VERSION:
                raise SchemaTooOld(self.name, version)
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(self.name, version)
            if not migrate:
                self.last_migration = MigrationReport(self.name, version, version, ())
        except BaseException:
            self._pool.close()
            raise

    # -- schema ----------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The newest migration applied (0: no tanpuhui schema in this database)."""
        with self._pool.connection() as conn:
            return applied_version(conn)

    def migrate(self) -> MigrationReport:
        """Apply the pending migrations in one transaction, under an advisory lock (replicas may start together)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_MIGRATE,))
            conn.execute(SCHEMA_TABLE)
            before = applied_version(conn)
            if before > SCHEMA_VERSION:
                raise SchemaTooNew(self.name, before)
            todo = pending(MIGRATIONS, before)
            for migration in todo:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
                )
        return MigrationReport(self.name, before, max([before, *(m.version for m in todo)]), todo)

    # -- pull / ingest ---------------------------------------------------------------------------------------

    def load_checkpoint(self, adapter: str, stream: str) -> Checkpoint:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT cursor, state FROM checkpoints WHERE adapter=%s AND stream=%s", (adapter, stream)
            ).fetchone()
        if row is None:
            return Checkpoint()
        return Checkpoint(orjson.loads(row[0]) if row[0] is not None else None, orjson.loads(row[1]))

    def commit_pages(self, pages: Sequence[PageWrite]) -> list[CommitResult | None]:
        # Serialized before the transaction: a value that cannot be stored fails here, with nothing written.
        encoded = [_encode(page) for page in pages]
        buckets = _claim_buckets(pages)
        out: list[CommitResult | None] = []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if buckets:
                # In one order (sorted), before anything else is locked: no deadlock between replicas.
                cur.execute(
                    "SELECT count(pg_advisory_xact_lock(%s, b)) FROM (SELECT unnest(%b::int[]) AS b ORDER BY 1) t",
                    (_LOCK_CLAIMS, buckets),
                )
            if any(page.records for page in pages):
                cur.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", (_LOCK_OUTBOX,))
            for page in pages:
                if page.lease_owner is not None:
                    self._check_lease(cur, page.adapter, page.stream, page.lease_owner)
            for page, (checkpoint, quarantine_rows) in zip(pages, encoded, strict=True):
                receipt = page.receipt
                if receipt is not None:
                    cur.execute(
                        "INSERT INTO webhook_receipts (adapter, stream, webhook_id, request_hash, status, body)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                        (page.adapter, page.stream, receipt.key, receipt.request_hash, receipt.status, receipt.body),
                    )
                    if cur.fetchone() is None:  # on file already (perhaps committed by another replica just now)
                        out.append(None)
                        continue
                out.append(self._write_page(cur, page, checkpoint, quarantine_rows))
                if page.drift:
                    self._write_drift(cur, page)
        return out

    @staticmethod
    def _write_drift(cur: psycopg.Cursor[Any], page: PageWrite) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        cur.executemany(
            "INSERT INTO schema_drift (adapter, stream, field, first_seen, last_seen, items, example)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (adapter, stream, field) DO UPDATE SET"
            " last_seen=excluded.last_seen, items=schema_drift.items + excluded.items",
            [(page.adapter, page.stream, name, now, now, n, example) for name, (n, example) in page.drift.items()],
        )

    def schema_drift(self, adapter: str | None = None) -> list[DriftEntry]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT adapter, stream, field, first_seen, last_seen, items, example FROM schema_drift"
                " WHERE %(adapter)s::text IS NULL OR adapter = %(adapter)s ORDER BY adapter, stream, field",
                {"adapter": adapter or None},
            ).fetchall()
        return [DriftEntry(a, s, f, first, last, int(n), ex) for a, s, f, first, last, n, ex in rows]

    @staticmethod
    def _check_lease(cur: psycopg.Cursor[Any], adapter: str, stream: str, owner: str) -> None:
        # FOR SHARE: a replica taking the lease over now waits until this page is committed.
        cur.execute("SELECT owner FROM leases WHERE adapter=%s AND stream=%s FOR SHARE", (adapter, stream))
        row = cur.fetchone()
        if row is None or row[0] != owner:
            raise LeaseLost(adapter, stream, owner)

    def _write_page(
        self,
        cur: psycopg.Cursor[Any],
        page: PageWrite,
        checkpoint: tuple[str, str] | None,
        quarantine_rows: list[tuple[str, str, str, bytes]],
    ) -> CommitResult:
        adapter, stream, records = page.adapter, page.stream, page.records
        fresh: Sequence[NewRecord] = records
        held = 0
        claimed = self._claimed_elsewhere(cur, adapter, records) if records else {}
        if claimed:
            fresh = [r for r in records if r.record_id not in claimed]
            holds = [r for r in records if r.record_id in claimed]
            cur.execute(
                "INSERT INTO held_claims (record_id, fingerprint, adapter, stream, claimed_by, body)"
                " SELECT r, f, %s, %s, c, b FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[])"
                " WITH ORDINALITY AS t(r, f, c, b, n) ORDER BY n ON CONFLICT (record_id) DO NOTHING RETURNING 1",
                (
                    adapter,
                    stream,
                    [r.record_id for r in holds],
                    [r.fingerprint for r in holds],
                    [claimed[r.record_id] for r in holds],
                    [r.body for r in holds],
                ),
            )
            held = len(cur.fetchall())
        inserted_ids: frozenset[str] | None = None
        inserted = 0
        if fresh:
            # ORDER BY the page order: seq follows the page, as in SQLite.
            cur.execute(
                "INSERT INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e, body)"
                " SELECT r, f, %s, %s, s, k, b"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::bytea[])"
                " WITH ORDINALITY AS t(r, f, s, k, b, n) ORDER BY n"
                " ON CONFLICT (record_id) DO NOTHING RETURNING record_id",
                (
                    adapter,
                    stream,
                    [r.record_id for r in fresh],
                    [r.fingerprint for r in fresh],
                    [r.scenario for r in fresh],
                    [float(r.reduction_kgco2e) for r in fresh],
                    [r.body for r in fresh],
                ),
            )
            ids = [row[0] for row in cur.fetchall()]
            inserted = len(ids)
            if inserted != len(records):
                inserted_ids = frozenset(ids)
        elif records:
            inserted_ids = frozenset()
        if quarantine_rows:
            cur.execute(
                "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw)"
                " SELECT %s, %s, s, p, q, r FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[])"
                " WITH ORDINALITY AS t(s, p, q, r, n) ORDER BY n",
                (
                    adapter,
                    stream,
                    [q[0] for q in quarantine_rows],
                    [q[1] for q in quarantine_rows],
                    [q[2] for q in quarantine_rows],
                    [q[3] for q in quarantine_rows],
                ),
            )
        if checkpoint is not None:
            cur.execute(
                "INSERT INTO checkpoints (adapter, stream, cursor, state, last_success) VALUES (%s, %s, %s, %s, now())"
                " ON CONFLICT (adapter, stream) DO UPDATE SET cursor=excluded.cursor, state=excluded.state,"
                " last_success=excluded.last_success"
                # Unchanged cursor and state (most webhook groups): no new row version of a possibly large state,
                # last_success moved on at most once a second (as the SQLite store does).
                " WHERE checkpoints.cursor IS DISTINCT FROM excluded.cursor"
                " OR checkpoints.state IS DISTINCT FROM excluded.state OR checkpoints.last_success IS NULL"
                " OR checkpoints.last_success < excluded.last_success - interval '1 second'",
                (adapter, stream, *checkpoint),
            )
        # A held claim already on file (the same item pulled again) is a duplicate like any other.
        return CommitResult(inserted, len(records) - inserted - held, held, len(quarantine_rows), inserted_ids)

    @staticmethod
    def _claimed_elsewhere(cur: psycopg.Cursor[Any], adapter: str, records: Sequence[NewRecord]) -> dict[str, str]:
        """record_id -> the record of another adapter that already claimed the same behaviour."""
        by_fp: dict[str, list[NewRecord]] = {}
        for r in records:
            by_fp.setdefault(r.fingerprint, []).append(r)
            if r.neighbour:
                by_fp.setdefault(r.neighbour, []).append(r)
        cur.execute(
            "SELECT fingerprint, adapter, record_id FROM outbox WHERE fingerprint = ANY(%b::text[]) AND adapter <> %s",
            (list(by_fp), adapter),
        )
        claimed: dict[str, str] = {}
        for fp, _other_adapter, other_id in cur.fetchall():
            for r in by_fp[fp]:
                if r.record_id != other_id:
                    claimed.setdefault(r.record_id, other_id)
        return claimed

    def record_stream_error(self, adapter: str, stream: str, message: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO checkpoints (adapter, stream, last_error, last_error_at) VALUES (%s, %s, %s, now())"
                " ON CONFLICT (adapter, stream) DO UPDATE SET last_error=excluded.last_error,"
                " last_error_at=excluded.last_error_at",
                (adapter, stream, message),
            )

    def stream_status(self) -> list[StreamStatus]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT adapter, stream, cursor, last_success, last_error, last_error_at FROM checkpoints"
                " ORDER BY adapter, stream"
            ).fetchall()
        return [
            StreamStatus(a, s, orjson.loads(c) if c else None, _iso(ok), err, _iso(err_at))
            for a, s, c, ok, err, err_at in rows
        ]

    # -- leases ----------------------------------------------------------------------------------------------

    def acquire_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO leases AS l (adapter, stream, owner, acquired_at, expires_at)"
                " VALUES (%s, %s, %s, statement_timestamp(), statement_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (adapter, stream) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at,"
                " acquired_at=CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END"
                " WHERE l.owner = excluded.owner OR l.expires_at <= statement_timestamp()"
                " RETURNING 1",
                (adapter, stream, owner, float(ttl)),
            ).fetchone()
        return row is not None

    def renew_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "UPDATE leases SET expires_at = statement_timestamp() + make_interval(secs => %s)"
                " WHERE adapter=%s AND stream=%s AND owner=%s RETURNING 1",
                (float(ttl), adapter, stream, owner),
            ).fetchone()
        return row is not None

    def release_lease(self, adapter: str, stream: str, owner: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM leases WHERE adapter=%s AND stream=%s AND owner=%s", (adapter, stream, owner))

    def leases(self) -> list[Lease]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT adapter, stream, owner, acquired_at, expires_at FROM leases"
                " WHERE expires_at > statement_timestamp() ORDER BY adapter, stream"
            ).fetchall()
        return [Lease(a, s, o, _iso(acq) or "", _iso(exp) or "") for a, s, o, acq, exp in rows]

    # -- forwarding ------------------------------------------------------------------------------------------

    def sink_position(self, sink: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT seq FROM sink_positions WHERE sink=%s", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def _safe_mark(self) -> int:
        """The highest seq below which no row can appear any more: waits for the outbox commits in flight."""
        with self._pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_OUTBOX,))
                row = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
            mark = int(row[0]) if row else 0
        with self._watermark_lock:
            self._watermark = max(self._watermark, mark)
            return self._watermark

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]:
        with self._watermark_lock:
            mark = self._watermark
        if mark <= after_seq:
            mark = self._safe_mark()
            if mark <= after_seq:
                return []
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT seq, record_id, adapter, stream, scenario, body FROM outbox WHERE seq > %s AND seq <= %s"
                " ORDER BY seq LIMIT %s",
                (after_seq, mark, limit),
            ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_max_seq(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
        return int(row[0]) if row else 0

    def sink_backlog(self, sink: str) -> SinkBacklog:
        # Sequence numbers have gaps here (rolled back and duplicate inserts use some): count, not max - position.
        with self._pool.connection() as conn:
            row = conn.execute(
                "WITH p AS (SELECT coalesce((SELECT seq FROM sink_positions WHERE sink=%s), 0) AS seq)"
                " SELECT p.seq, (SELECT count(*) FROM outbox WHERE seq > p.seq),"
                " (SELECT created_at FROM outbox WHERE seq > p.seq ORDER BY seq LIMIT 1) FROM p",
                (sink,),
            ).fetchone()
        assert row is not None
        return SinkBacklog(sink, int(row[0]), int(row[1]), _iso(row[2]))

    def advance_sink(self, sink: str, upto_seq: int, dead: Sequence[tuple[OutboxRow, int, str]] = ()) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if dead:
                cur.executemany(
                    "INSERT INTO dead_letters (sink, seq, record_id, attempts, error) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (sink, seq) DO UPDATE SET record_id=excluded.record_id,"
                    " attempts=excluded.attempts, error=excluded.error, created_at=excluded.created_at",
                    [(sink, row.seq, row.record_id, attempts, error) for row, attempts, error in dead],
                )
            cur.execute(
                "INSERT INTO sink_positions (sink, seq) VALUES (%s, %s)"
                " ON CONFLICT (sink) DO UPDATE SET seq=greatest(sink_positions.seq, excluded.seq)",
                (sink, upto_seq),
            )

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, sink, seq, record_id, attempts, error, created_at FROM dead_letters"
                " WHERE %(sink)s::text IS NULL OR sink = %(sink)s ORDER BY id LIMIT %(limit)s",
                {"sink": sink or None, "limit": limit},
            ).fetchall()
        return [DeadLetter(i, s, q, r, a, e, _iso(c) or "") for i, s, q, r, a, e, c in rows]

    def dead_letter_rows(self, ids: Sequence[int]) -> list[tuple[DeadLetter, OutboxRow]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT d.id, d.sink, d.seq, d.record_id, d.attempts, d.error, d.created_at,"
                " o.seq, o.record_id, o.adapter, o.stream, o.scenario, o.body"
                " FROM dead_letters d JOIN outbox o ON o.seq = d.seq WHERE d.id = ANY(%b::bigint[])",
                (list(ids),),
            ).fetchall()
        found = {
            row[0]: (
                DeadLetter(row[0], row[1], row[2], row[3], row[4], row[5], _iso(row[6]) or ""),
                OutboxRow(*row[7:]),
            )
            for row in rows
        }
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def delete_dead_letters(self, ids: Sequence[int]) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM dead_letters WHERE id = ANY(%b::bigint[])", (list(ids),))

    # -- quarantine ------------------------------------------------------------------------------------------

    def quarantine_list(
        self, adapter: str | None = None, status: str = "open", limit: int = 100
    ) -> list[QuarantineEntry]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine WHERE status = %(status)s"
                " AND (%(adapter)s::text IS NULL OR adapter = %(adapter)s) ORDER BY id LIMIT %(limit)s",
                {"status": status, "adapter": adapter or None, "limit": limit},
            ).fetchall()
        return [_entry(row) for row in rows]

    def quarantine_get(self, entry_id: int) -> QuarantineEntry | None:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine WHERE id=%s", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def quarantine_resolve(self, entry_id: int, status: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE quarantine SET status=%s, resolved_at=now() WHERE id=%s", (status, entry_id))

    # -- webhook receipts ------------------------------------------------------------------------------------

    def receipt_get(self, adapter: str, stream: str, key: str) -> WebhookReceipt | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT adapter, stream, webhook_id, request_hash, status, body, created_at FROM webhook_receipts"
                " WHERE adapter=%s AND stream=%s AND webhook_id=%s",
                (adapter, stream, key),
            ).fetchone()
        if row is None:
            return None
        return WebhookReceipt(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), _iso(row[6]) or "")

    def prune_receipts(self, before: str) -> int:
        with self._pool.connection() as conn:
            cur = conn.execute("DELETE FROM webhook_receipts WHERE created_at < %s::timestamptz", (before,))
            return cur.rowcount

    def check_writable(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_write_check', now()::text)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value"
            )

    def counts(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM quarantine WHERE status='open'),"
                " (SELECT count(*) FROM held_claims), (SELECT count(*) FROM dead_letters)"
            ).fetchone()
        assert row is not None
        return {
            "outbox": int(row[0]),
            "quarantine_open": int(row[1]),
            "held_claims": int(row[2]),
            "dead_letters": int(row[3]),
        }

    def pending_counts(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM quarantine WHERE status='open'), (SELECT count(*) FROM dead_letters)"
            ).fetchone()
        assert row is not None
        return {"quarantine_open": int(row[0]), "dead_letters": int(row[1])}

    def close(self) -> None:
        self._pool.close()


def _encode(page: PageWrite) -> tuple[tuple[str, str] | None, list[tuple[str, str, str, bytes]]]:
    checkpoint = page.checkpoint
    encoded = (
        None
        if checkpoint is None
        else (orjson.dumps(checkpoint.cursor).decode(), orjson.dumps(checkpoint.state).decode())
    )
    quarantine = [
        (
            q.stage,
            q.partner_record_id,
            orjson.dumps([p.as_dict() for p in q.problems]).decode(),
            q.sealed_raw,
        )
        for q in page.quarantined
    ]
    return encoded, quarantine


def _claim_buckets(pages: Sequence[PageWrite]) -> list[int]:
    """Lock keys covering every claim key of the pages' records (by time window; see the module docstring)."""
    windows = {key[:12] for page in pages for r in page.records for key in (r.fingerprint, r.neighbour) if key}
    return sorted({zlib.crc32(w.encode()) % _CLAIM_BUCKETS for w in windows})


def _entry(row: Sequence[Any]) -> QuarantineEntry:
    return QuarantineEntry(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        orjson.loads(row[5]),
        bytes(row[6]),
        row[7],
        _iso(row[8]) or "",
        _iso(row[9]),
    )
