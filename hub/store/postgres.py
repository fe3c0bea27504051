"""The shared store: PostgreSQL (psycopg 3), for several hub replicas working on one state.

Chosen by ``[hub] store = "postgresql://..."`` (the password from the environment: ``store = { env = "..." }``
or libpq's ``PGPASSWORD``/``~/.pgpass``). The rules are the SQLite store's (:mod:`.rules`); this module is the
SQL, the connections (:mod:`.pgpool`) and how concurrent replicas are kept apart:

- **Dedup by the database.** ``outbox.record_id``, ``held_claims.record_id`` and the webhook receipt key are
  unique; inserts are ``ON CONFLICT DO NOTHING``, so two replicas committing the same record (or the same webhook)
  store it once: the second waits for the first's commit on the unique index, then finds it. Cross-source
  fingerprint claims are checked under transaction-scoped advisory locks on the claim keys' time windows, so two
  sources' records of one behaviour committed at the same moment by two replicas are still seen in order.
- **One writer per partner item.** A page that credits or withdraws a partner item takes a transaction-scoped
  advisory lock keyed by a 64-bit hash of (adapter, head stream, partner id), all in sorted order after the claim
  buckets (a page of many items: the items' buckets, see :meth:`PostgresDialect.lock_pages`): two replicas receiving two versions of one item at once read its head one after the other, so the
  record is corrected once and the correction corrected next, never twice side by side.
- **The outbox has no gaps for readers.** A sequence number is taken at insert time, not at commit time: with
  concurrent writers, seq 101 can become visible after seq 102. Writers hold a shared advisory lock from their
  outbox insert to their commit; a reader that has read everything up to its safe mark takes that lock exclusively
  for an instant (waiting for the commits in flight), reads ``max(seq)``, and from then on reads only up to it.
  So a sink position never moves past a row that commits later.
- **One audit chain.** Appends take an advisory lock (after everything else the transaction locks, and held to
  its commit), then read ``meta.audit_head``: each statement sees what committed before it started, so the next
  writer chains from the entry just committed. Entry times are the server's clock. A page's outbox rows may not
  take consecutive seqs (a conflicting insert uses one up, another replica's insert takes some): its entry
  carries their runs.
- **Leases** (see :mod:`.leases`) live in the ``leases`` table with the database clock deciding expiry; a page
  committed under a lease locks the lease row ``FOR SHARE`` and checks the owner, so a takeover waits for it.

Thread-safe: each call gets its own connection from the pool.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import conninfo

from tanpuhui.sdk import OutboxRow

from .base import DayCount, Lease, NewReceipt, NewRecord, PageWrite, SinkBacklog
from .dialect import QUARANTINE_REPEAT, Dialect, OutboxInsert, QuarantineRow, Rows, time_text
from .migrations import SCHEMA_VERSION, MigrationReport, SchemaTooNew, SchemaTooOld, pending
from .migrations.postgres import MIGRATIONS, SCHEMA_TABLE, applied_version
from .pgpool import Pool
from .rules import RuleStore

__all__ = ["PostgresDialect", "PostgresStore", "display_dsn"]

Cursor = psycopg.Cursor[Any]

# Advisory lock keys (two int4s; the first is ours, so other applications' locks in the same database never clash).
_LOCK_CLAIMS = 0x74700001
_LOCK_OUTBOX = 0x74700002
_LOCK_MIGRATE = 0x74700003
_LOCK_AUDIT = 0x74700004
_LOCK_ITEMS = 0x74700005
_ITEM_BUCKETS = 256
_ITEM_KEYS_MAX = 64
"""A page writing more partner items than this locks their buckets, not each item (see ``lock_pages``)."""
_CLAIM_BUCKETS = 256
"""Claim keys are locked by time window (the fingerprint's first 12 characters), hashed into this many buckets."""


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


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


def _runs(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return tuple(runs)


def _claim_buckets(pages: Sequence[PageWrite], withdrawn: Iterable[tuple[str, str]] = ()) -> list[int]:
    """Lock keys covering every claim key of the pages' records (by time window; see the module docstring), and
    the overlap keys (rule, match key) of the records the pages' voids withdraw (``withdrawn``)."""
    windows = {key[:12] for page in pages for r in page.records for key in (r.fingerprint, r.neighbour) if key}
    windows.update(key[:12] for page in pages for r in page.records for key in r.aliases)
    # Overlap rules pair records by subject and day: both records of a pair lock the same bucket, and so does the
    # withdrawal of either (the other is netted again in its transaction).
    windows.update(f"overlap:{o.rule}:{o.match_key}" for page in pages for r in page.records for o in r.overlaps)
    windows.update(f"overlap:{rule}:{match_key}" for rule, match_key in withdrawn)
    return sorted({zlib.crc32(w.encode()) % _CLAIM_BUCKETS for w in windows})


def _item_locks(pages: Sequence[PageWrite]) -> tuple[list[int], list[int]]:
    """The buckets and the 64-bit advisory lock keys of the partner items the pages credit or withdraw: (adapter,
    head stream, partner id) hashed, so unrelated items practically never share a key. No keys, only the buckets,
    past ``_ITEM_KEYS_MAX`` items (see :meth:`PostgresDialect.lock_pages`)."""
    items = {
        (page.adapter, r.head_stream or page.stream, r.partner_record_id)
        for page in pages
        for r in page.records
        if r.partner_record_id
    }
    items.update((page.adapter, v.head_stream, v.partner_record_id) for page in pages for v in page.voids)
    keys = {
        int.from_bytes(hashlib.sha256("\x1f".join(item).encode()).digest()[:8], "big", signed=True) for item in items
    }
    buckets = sorted({key % _ITEM_BUCKETS for key in keys})
    return buckets, (sorted(keys) if len(keys) <= _ITEM_KEYS_MAX else [])


class PostgresDialect(Dialect[Cursor]):
    """Statements on a cursor of a pooled connection (in a transaction for :meth:`write`)."""

    def __init__(self, pool: Pool, name: str) -> None:
        self.pool = pool
        self.name = name

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    def run(self, tx: Cursor, sql: str, params: Sequence[Any] = ()) -> Rows:
        return tx.execute(_placeholders(sql), params)

    def run_many(self, tx: Cursor, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        tx.executemany(_placeholders(sql), rows)
        return max(tx.rowcount, 0)

    def close(self) -> None:
        self.pool.close()

    # -- committing a page ---------------------------------------------------------------------------------------

    def lock_pages(self, tx: Cursor, pages: Sequence[PageWrite]) -> None:
        buckets = _claim_buckets(pages, self._withdrawn_overlaps(tx, pages))
        if buckets:
            # In one order (sorted), before anything else is locked: no deadlock between replicas.
            tx.execute(
                "SELECT count(pg_advisory_xact_lock(%s, b)) FROM (SELECT unnest(%b::int[]) AS b ORDER BY 1) t",
                (_LOCK_CLAIMS, buckets),
            )
        buckets, items = _item_locks(pages)
        if buckets:
            # One writer at a time per partner item (its head is read, then revised): two replicas receiving two
            # versions of one item at once write one correction, then the next. A page of a few items locks each
            # item's 64-bit key, and its items' buckets shared; a larger one locks the buckets alone, exclusively
            # (a transaction holding thousands of advisory locks would exhaust the server's lock table). So writers
            # of one item always meet on a lock, and small writers of different items never wait for each other.
            # Sorted, after the claim buckets, buckets before keys: every writer locks in the same order.
            lock = "pg_advisory_xact_lock_shared" if items else "pg_advisory_xact_lock"
            tx.execute(
                f"SELECT count({lock}(%s, b)) FROM (SELECT unnest(%b::int[]) AS b ORDER BY 1) t",
                (_LOCK_ITEMS, buckets),
            )
        if items:
            tx.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%b::int8[]) AS k ORDER BY 1) t", (items,)
            )
        if any(page.records or page.voids for page in pages):
            tx.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", (_LOCK_OUTBOX,))

    def _withdrawn_overlaps(self, tx: Cursor, pages: Sequence[PageWrite]) -> list[tuple[str, str]]:
        """The overlap keys of the current records of the items the pages' voids withdraw: read before any lock is
        taken (a record's keys never change; its head may be corrected meanwhile, and the correction keeps the
        subject and day), so that the withdrawal and a page crediting the same day meet on one lock."""
        voids = [(page.adapter, v.head_stream, v.partner_record_id) for page in pages for v in page.voids]
        if not voids:
            return []
        rows = tx.execute(
            "SELECT o.rule, o.match_key FROM unnest(%b::text[], %b::text[], %b::text[]) AS k(a, s, p)"
            " CROSS JOIN LATERAL (SELECT record_id FROM record_heads WHERE adapter = k.a AND stream = k.s"
            " AND partner_record_id = k.p LIMIT 1) h JOIN overlap_keys o ON o.record_id = h.record_id",
            tuple(list(column) for column in zip(*voids, strict=True)),
        ).fetchall()
        return [(str(rule), str(match_key)) for rule, match_key in rows]

    def lease_holder(self, tx: Cursor, adapter: str, stream: str) -> str | None:
        # FOR SHARE: a replica taking the lease over now waits until this page is committed.
        row = tx.execute(
            "SELECT owner FROM leases WHERE adapter=%s AND stream=%s FOR SHARE", (adapter, stream)
        ).fetchone()
        return None if row is None else str(row[0])

    def insert_receipt(self, tx: Cursor, adapter: str, stream: str, receipt: NewReceipt, now: str) -> bool:
        # Nothing returned: on file already (perhaps committed by another replica just now).
        return (
            tx.execute(
                "INSERT INTO webhook_receipts (adapter, stream, webhook_id, request_hash, status, body)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (adapter, stream, receipt.key, receipt.request_hash, receipt.status, receipt.body),
            ).fetchone()
            is not None
        )

    def claims(self, tx: Cursor, adapter: str, keys: Sequence[str]) -> Iterable[tuple[str, str]]:
        return tx.execute(
            "SELECT fingerprint, record_id FROM outbox WHERE fingerprint = ANY(%b::text[]) AND adapter <> %s",
            (list(keys), adapter),
        ).fetchall()

    def record_heads(
        self, tx: Cursor, adapter: str, stream: str, partner_ids: Sequence[str]
    ) -> list[tuple[str, str, str, str]]:
        # One probe of the primary key per id, whatever the planner knows: a plain ``IN``/``= ANY`` list filtered
        # every head of the stream until the table had been analysed (the statistics of a new table say "1 row"),
        # ~480 ms for 500 ids among 50,000 heads. LIMIT 1 (the key is unique) keeps the subquery a probe.
        return tx.execute(
            "SELECT h.partner_record_id, h.record_id, h.raw_sha256, h.status FROM unnest(%b::text[]) AS k(p)"
            " CROSS JOIN LATERAL (SELECT partner_record_id, record_id, raw_sha256, status FROM record_heads"
            " WHERE adapter = %s AND stream = %s AND partner_record_id = k.p LIMIT 1) h",
            (list(partner_ids), adapter, stream),
        ).fetchall()

    def day_counts(
        self, tx: Cursor, adapter: str, stream: str, keys: Collection[tuple[str, str, str]]
    ) -> list[DayCount]:
        # One statement for all the page's keys, a probe of the primary key each: OFFSET 0 keeps the subquery from
        # being flattened into a join the planner may run as a scan (until the table is analysed it reckons with
        # one row a stream: 2.7 s, not 2 ms, for 600 keys among 50,000 counts).
        rows = tx.execute(
            "SELECT p.rule, p.day, p.subject, p.record_id, p.n FROM unnest(%b::text[], %b::text[], %b::text[])"
            " AS k(r, d, s) CROSS JOIN LATERAL (SELECT rule, day, subject, record_id, n FROM plausibility_counts"
            " WHERE adapter = %s AND stream = %s AND rule = k.r AND day = k.d AND subject = k.s OFFSET 0) p",
            (*(list(column) for column in zip(*keys, strict=True)), adapter, stream),
        ).fetchall()
        return [DayCount(*row) for row in rows]

    def insert_day_counts(self, tx: Cursor, adapter: str, stream: str, counts: Sequence[DayCount]) -> None:
        tx.execute(
            "INSERT INTO plausibility_counts (adapter, stream, rule, day, subject, record_id, n)"
            " SELECT %s, %s, r, d, s, i, n FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::int[])"
            " AS t(r, d, s, i, n) ON CONFLICT DO NOTHING",
            (adapter, stream, *(list(column) for column in zip(*counts, strict=True))),
        )

    def upsert_heads(self, tx: Cursor, adapter: str, heads: Sequence[tuple[str, str, str, str]]) -> None:
        # One statement for the page's heads (not one per item); each item once, as ON CONFLICT DO UPDATE needs.
        tx.execute(
            "INSERT INTO record_heads (adapter, stream, partner_record_id, record_id, raw_sha256, status)"
            " SELECT %s, s, p, r, h, 'active' FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])"
            " WITH ORDINALITY AS t(s, p, r, h, n) ORDER BY n"
            " ON CONFLICT (adapter, stream, partner_record_id) DO UPDATE SET"
            " record_id=excluded.record_id, raw_sha256=excluded.raw_sha256, status='active'",
            (adapter, *(list(column) for column in zip(*heads, strict=True))),
        )

    def insert_held(
        self, tx: Cursor, adapter: str, stream: str, rows: Sequence[tuple[str, str, str, bytes]], now: str
    ) -> int:
        tx.execute(
            "INSERT INTO held_claims (record_id, fingerprint, adapter, stream, claimed_by, body)"
            " SELECT r, f, %s, %s, c, b FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[])"
            " WITH ORDINALITY AS t(r, f, c, b, n) ORDER BY n ON CONFLICT (record_id) DO NOTHING RETURNING 1",
            (adapter, stream, *(list(column) for column in zip(*rows, strict=True))),
        )
        return len(tx.fetchall())

    def insert_outbox(
        self, tx: Cursor, adapter: str, stream: str, records: Sequence[NewRecord], now: str
    ) -> OutboxInsert:
        # ORDER BY the page order: seq follows the page, as in SQLite.
        tx.execute(
            "INSERT INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e, body)"
            " SELECT r, f, %s, %s, s, k, b"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::bytea[])"
            " WITH ORDINALITY AS t(r, f, s, k, b, n) ORDER BY n"
            " ON CONFLICT (record_id) DO NOTHING RETURNING record_id, seq",
            (
                adapter,
                stream,
                [r.record_id for r in records],
                [r.fingerprint for r in records],
                [r.scenario for r in records],
                [float(r.reduction_kgco2e) for r in records],
                [r.body for r in records],
            ),
        )
        rows = tx.fetchall()
        ids = None if len(rows) == len(records) else frozenset(r[0] for r in rows)
        return OutboxInsert(len(rows), ids, _runs(r[1] for r in rows))

    def insert_quarantine(
        self, tx: Cursor, adapter: str, stream: str, rows: Sequence[QuarantineRow], now: str
    ) -> list[int]:
        tx.execute(
            "INSERT INTO quarantine (adapter, stream, stage, partner_record_id, problems, raw, digest, repeats)"
            " SELECT %s, %s, s, p, q, r, d, k"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[], %b::int[])"
            " WITH ORDINALITY AS t(s, p, q, r, d, k, n) ORDER BY n"
            + QUARANTINE_REPEAT
            + " RETURNING id, digest, repeats",
            (adapter, stream, *(list(column) for column in zip(*rows, strict=True))),
        )
        # A new entry keeps the repeats it was given; a repeat's grew past them (one row per digest in a page).
        given = {row.digest: row.repeats for row in rows}
        return [int(i) for i, digest, repeats in tx.fetchall() if digest is None or repeats == given[digest]]

    def upsert_checkpoint(self, tx: Cursor, adapter: str, stream: str, cursor: str, state: str, now: str) -> None:
        tx.execute(
            "INSERT INTO checkpoints (adapter, stream, cursor, state, last_success) VALUES (%s, %s, %s, %s, now())"
            " ON CONFLICT (adapter, stream) DO UPDATE SET cursor=excluded.cursor, state=excluded.state,"
            " last_success=excluded.last_success"
            " WHERE checkpoints.cursor IS DISTINCT FROM excluded.cursor"
            " OR checkpoints.state IS DISTINCT FROM excluded.state OR checkpoints.last_success IS NULL"
            " OR checkpoints.last_success < excluded.last_success - interval '1 second'",
            (adapter, stream, cursor, state),
        )

    def audit_begin(self, tx: Cursor, now: str) -> tuple[str | None, str]:
        tx.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_AUDIT,))
        # A statement of its own, after the lock: it sees the head the previous holder committed.
        row = tx.execute("SELECT (SELECT value FROM meta WHERE key='audit_head'), clock_timestamp()").fetchone()
        assert row is not None
        return (None if row[0] is None else str(row[0])), time_text(row[1]) or now

    # -- other writes --------------------------------------------------------------------------------------------

    def insert_dead_letters(self, tx: Cursor, sink: str, rows: Sequence[tuple[int, str, int, str]], now: str) -> None:
        tx.executemany(
            "INSERT INTO dead_letters (sink, seq, record_id, attempts, error) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (sink, seq) DO UPDATE SET record_id=excluded.record_id,"
            " attempts=excluded.attempts, error=excluded.error, created_at=excluded.created_at",
            [(sink, *row) for row in rows],
        )

    def resolve_quarantine(self, tx: Cursor, entry_id: int, status: str, now: str) -> int:
        return tx.execute("UPDATE quarantine SET status=%s, resolved_at=now() WHERE id=%s", (status, entry_id)).rowcount

    def prune_receipts(self, tx: Cursor, before: str) -> int:
        return tx.execute("DELETE FROM webhook_receipts WHERE created_at < %s::timestamptz", (before,)).rowcount

    def record_stream_error(self, tx: Cursor, adapter: str, stream: str, message: str, now: str) -> None:
        tx.execute(
            "INSERT INTO checkpoints (adapter, stream, last_error, last_error_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (adapter, stream) DO UPDATE SET last_error=excluded.last_error,"
            " last_error_at=excluded.last_error_at",
            (adapter, stream, message),
        )

    def acquire_lease(self, tx: Cursor, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        row = tx.execute(
            "INSERT INTO leases AS l (adapter, stream, owner, acquired_at, expires_at)"
            " VALUES (%s, %s, %s, statement_timestamp(), statement_timestamp() + make_interval(secs => %s))"
            " ON CONFLICT (adapter, stream) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at,"
            " acquired_at=CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END"
            " WHERE l.owner = excluded.owner OR l.expires_at <= statement_timestamp()"
            " RETURNING 1",
            (adapter, stream, owner, float(ttl)),
        ).fetchone()
        return row is not None

    def renew_lease(self, tx: Cursor, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        row = tx.execute(
            "UPDATE leases SET expires_at = statement_timestamp() + make_interval(secs => %s)"
            " WHERE adapter=%s AND stream=%s AND owner=%s RETURNING 1",
            (float(ttl), adapter, stream, owner),
        ).fetchone()
        return row is not None

    def leases(self, tx: Cursor) -> list[Lease]:
        rows = tx.execute(
            "SELECT adapter, stream, owner, acquired_at, expires_at FROM leases"
            " WHERE expires_at > statement_timestamp() ORDER BY adapter, stream"
        ).fetchall()
        return [Lease(a, s, o, time_text(acq) or "", time_text(exp) or "") for a, s, o, acq, exp in rows]

    def sink_backlog(self, tx: Cursor, sink: str) -> SinkBacklog:
        # Sequence numbers have gaps here (rolled back and duplicate inserts use some): count, not max - position.
        row = tx.execute(
            "WITH p AS (SELECT coalesce((SELECT seq FROM sink_positions WHERE sink=%s), 0) AS seq)"
            " SELECT p.seq, (SELECT count(*) FROM outbox WHERE seq > p.seq),"
            " (SELECT created_at FROM outbox WHERE seq > p.seq ORDER BY seq LIMIT 1) FROM p",
            (sink,),
        ).fetchone()
        assert row is not None
        return SinkBacklog(sink, int(row[0]), int(row[1]), time_text(row[2]))


class PostgresStore(RuleStore[Cursor]):
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
        self._pool = Pool(dsn, max_idle=max_idle_connections, synchronous_commit=synchronous.upper() != "NORMAL")
        super().__init__(PostgresDialect(self._pool, self.name))
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
        return self._reading(self.sql.read_outbox, after_seq, limit, mark)
