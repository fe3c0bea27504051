"""The embedded store: one SQLite file in WAL mode.

Layout and why:
- ``outbox.seq`` is the rowid, so forwarders read with a keyset cursor (``seq > ?``) per sink instead of scanning
  for unsent rows; ``record_id`` is UNIQUE and time-ordered, so the dedup index stays append-mostly.
- a page's records, its quarantine entries and the stream's checkpoint are written in ONE transaction.
- ``synchronous`` defaults to FULL: a commit that returned (and so a webhook we acknowledged) survives power loss.
- a webhook's answer (``webhook_receipts``) is written with its records, keyed by the webhook id; several pages
  (concurrent webhook requests) can share one transaction (``commit_pages``): one sync to disk for all of them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from tanpuhui.sdk import OutboxRow

from .base import (
    Checkpoint,
    CommitResult,
    DeadLetter,
    DuplicateReceipt,
    NewQuarantine,
    NewReceipt,
    NewRecord,
    PageWrite,
    QuarantineEntry,
    SinkBacklog,
    StreamStatus,
    WebhookReceipt,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    adapter TEXT NOT NULL,
    stream TEXT NOT NULL,
    scenario TEXT NOT NULL,
    reduction_kgco2e REAL NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_fingerprint ON outbox (fingerprint);
CREATE TABLE IF NOT EXISTS held_claims (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    adapter TEXT NOT NULL,
    stream TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    adapter TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor TEXT,
    state TEXT NOT NULL DEFAULT '{}',
    last_success TEXT,
    last_error TEXT,
    last_error_at TEXT,
    PRIMARY KEY (adapter, stream)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    adapter TEXT NOT NULL,
    stream TEXT NOT NULL,
    stage TEXT NOT NULL,
    partner_record_id TEXT NOT NULL,
    problems TEXT NOT NULL,
    raw BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX IF NOT EXISTS quarantine_status ON quarantine (status, adapter);
CREATE TABLE IF NOT EXISTS sink_positions (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (sink, seq)
);
CREATE TABLE IF NOT EXISTS webhook_receipts (
    adapter TEXT NOT NULL,
    stream TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (adapter, stream, webhook_id)
);
CREATE INDEX IF NOT EXISTS webhook_receipts_created ON webhook_receipts (created_at);
"""

_IN_CHUNK = 500


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SQLiteStore:
    """:class:`tanpuhui.hub.store.base.Store` on SQLite (WAL)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._tx():
            for statement in filter(str.strip, _DDL.split(";")):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: store schema version {row[0]} is newer than this tanpuhui ({SCHEMA_VERSION})"
                )

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

    def commit_page(
        self,
        adapter: str,
        stream: str,
        records: Sequence[NewRecord],
        quarantined: Sequence[NewQuarantine],
        checkpoint: Checkpoint | None,
        *,
        receipt: NewReceipt | None = None,
    ) -> CommitResult:
        (result,) = self.commit_pages([PageWrite(adapter, stream, records, quarantined, checkpoint, receipt)])
        if result is None:
            assert receipt is not None
            raise DuplicateReceipt(adapter, stream, receipt.key)
        return result

    def commit_pages(self, pages: Sequence[PageWrite]) -> list[CommitResult | None]:
        now = _now()
        out: list[CommitResult | None] = []
        with self._tx() as conn:
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
                out.append(
                    self._write_page(
                        conn, page.adapter, page.stream, page.records, page.quarantined, page.checkpoint, now
                    )
                )
        return out

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
            conn.execute(
                "INSERT INTO checkpoints (adapter, stream, cursor, state, last_success) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (adapter, stream) DO UPDATE SET cursor=excluded.cursor, state=excluded.state,"
                " last_success=excluded.last_success",
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
        by_fp: dict[str, list[NewRecord]] = {}
        for r in records:
            by_fp.setdefault(r.fingerprint, []).append(r)
            if r.neighbour:
                by_fp.setdefault(r.neighbour, []).append(r)
        fps = list(by_fp)
        claimed: dict[str, str] = {}
        for i in range(0, len(fps), _IN_CHUNK):
            chunk = fps[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for fp, other_adapter, other_id in conn.execute(
                f"SELECT fingerprint, adapter, record_id FROM outbox WHERE fingerprint IN ({marks})", chunk
            ):
                if other_adapter == adapter:
                    continue
                for r in by_fp[fp]:
                    if r.record_id != other_id:
                        claimed.setdefault(r.record_id, other_id)
        return claimed

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
            conn.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids])

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
        with self._tx() as conn:
            conn.execute("UPDATE quarantine SET status=?, resolved_at=? WHERE id=?", (status, _now(), entry_id))

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
            return conn.execute("DELETE FROM webhook_receipts WHERE created_at < ?", (before,)).rowcount

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
