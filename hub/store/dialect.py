"""What a store says in SQL: the statements both databases accept, written once; a dialect adds its own.

:class:`~.rules.RuleStore` decides what a commit does (what is held, counted, audited, refused) and writes no
SQL; for each statement it calls a :class:`Dialect`, inside a transaction the dialect opens (:meth:`Dialect.write`)
or on a connection for reading (:meth:`Dialect.read`). The statements here are portable and written with ``?``
placeholders (:meth:`Dialect.run` hands them to the driver in its own style; no ``%`` in them). The abstract ones
differ per database: batch inserts (SQLite ``executemany``, PostgreSQL ``unnest`` of arrays with ``RETURNING``),
whose clock stamps a row (SQLite: the ``now`` the store passes; PostgreSQL: the server's, shared by replicas on
several hosts), and locking (SQLite has one writer at a time; PostgreSQL writers run concurrently and take
advisory locks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from tanpuhui.sdk import OutboxRow

from ..audit import AuditEntry
from .base import (
    Checkpoint,
    DeadLetter,
    DriftEntry,
    Lease,
    NewReceipt,
    NewRecord,
    PageWrite,
    QuarantineEntry,
    SinkBacklog,
    StreamStatus,
    WebhookReceipt,
)
from .day_counts_sql import DayCountSql
from .queries import QUARANTINE_COLUMNS, FilterSql, audit_entry, dead_letter, quarantine_entry
from .runs_sql import RunHistorySql
from .sink_log import SinkStateSql
from .splits_sql import SplitSql
from .times import time_text, utc_now

__all__ = ["QUARANTINE_REPEAT", "Dialect", "OutboxInsert", "QuarantineRow", "Rows", "T", "time_text", "utc_now"]

T = TypeVar("T")
"""What a statement runs on: ``sqlite3.Connection``, ``psycopg.Cursor``."""

_IN_CHUNK = 500
"""Ids per ``IN (...)`` list (under SQLite's limit on bound parameters)."""

_QUARANTINE = QUARANTINE_COLUMNS


QUARANTINE_REPEAT = (
    " ON CONFLICT (adapter, stream, digest) WHERE digest IS NOT NULL DO UPDATE SET"
    " repeats=quarantine.repeats + excluded.repeats + 1, last_seen=excluded.last_seen,"
    " stage=CASE WHEN quarantine.status = 'open' THEN excluded.stage ELSE quarantine.stage END,"
    " problems=CASE WHEN quarantine.status = 'open' THEN excluded.problems ELSE quarantine.problems END"
)
"""The end of a quarantine INSERT: an item whose digest the stream's entries have already is a repeat of it."""


class Rows(Protocol):
    """A cursor after a statement (``sqlite3.Cursor``, ``psycopg.Cursor``)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class QuarantineRow(NamedTuple):
    """A quarantine entry to insert, or the repeat of one: a page's items with one digest come as one row."""

    stage: str
    partner_record_id: str
    problems: str
    """JSON text."""
    sealed_raw: bytes
    digest: str | None
    """None: never matched."""
    repeats: int
    """Items of the page beyond the first with this digest."""


class OutboxInsert(NamedTuple):
    """What :meth:`Dialect.insert_outbox` inserted."""

    inserted: int
    ids: frozenset[str] | None
    """The record ids inserted when not every record given was (a duplicate); None: all were."""
    seq_runs: tuple[tuple[int, int], ...]
    """The ``seq`` values the inserted rows took, as ascending ``(first, last)`` runs (SQLite: always one;
    PostgreSQL: a sequence number a conflicting insert used, or a concurrent replica took, splits them)."""


class Dialect(RunHistorySql[T], SinkStateSql[T], FilterSql[T], DayCountSql[T], SplitSql[T], ABC):
    """Connections and SQL of one database. Every method with a ``tx`` runs one statement (or a lock) on it."""

    name: str
    """The store in messages: the SQLite path, the PostgreSQL URL without its password."""

    # -- connections ---------------------------------------------------------------------------------------------

    @abstractmethod
    def write(self) -> AbstractContextManager[T]:
        """A transaction, committed when the block ends and rolled back when it raises."""

    @abstractmethod
    def read(self) -> AbstractContextManager[T]:
        """A connection for reading (each statement sees what is committed)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Execute a portable statement (``?`` placeholders)."""

    @abstractmethod
    def run_many(self, tx: T, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Execute a portable statement once per row; returns the rows it changed."""

    @abstractmethod
    def close(self) -> None: ...

    # -- committing a page: the statements that differ ----------------------------------------------------------

    @abstractmethod
    def lock_pages(self, tx: T, pages: Sequence[PageWrite]) -> None:
        """Whatever concurrent writers of these pages must take first (claim windows, the outbox)."""

    @abstractmethod
    def lease_holder(self, tx: T, adapter: str, stream: str) -> str | None:
        """The stream's lease owner, kept from changing until the transaction ends."""

    @abstractmethod
    def insert_receipt(self, tx: T, adapter: str, stream: str, receipt: NewReceipt, now: str) -> bool:
        """Store the receipt; False (and nothing written) when its key is on file already."""

    @abstractmethod
    def claims(self, tx: T, adapter: str, keys: Sequence[str]) -> Iterable[tuple[str, str]]:
        """``(fingerprint, record_id)`` of outbox rows of other adapters with one of the fingerprints ``keys``."""

    @abstractmethod
    def insert_held(
        self, tx: T, adapter: str, stream: str, rows: Sequence[tuple[str, str, str, bytes]], now: str
    ) -> int:
        """Held claims ``(record_id, fingerprint, claimed_by, body)``, a record id on file skipped; how many new."""

    @abstractmethod
    def insert_outbox(self, tx: T, adapter: str, stream: str, records: Sequence[NewRecord], now: str) -> OutboxInsert:
        """Outbox rows in the order given (their ``seq`` follows it), a record id on file skipped."""

    @abstractmethod
    def insert_quarantine(self, tx: T, adapter: str, stream: str, rows: Sequence[QuarantineRow], now: str) -> list[int]:
        """New quarantine entries; a row whose digest an entry of the stream has already is a repeat of it instead
        (``repeats`` grows by the row's plus one, ``last_seen`` moves on, the status stays, and an open entry takes
        the row's stage and problems). The ids of the new entries."""

    @abstractmethod
    def upsert_checkpoint(self, tx: T, adapter: str, stream: str, cursor: str, state: str, now: str) -> None:
        """The stream's checkpoint (JSON texts) and ``last_success``. An unchanged one is not rewritten, except to
        move ``last_success`` on once a second: the row holds the whole state (a YRD push stream's withdrawn log,
        ~100 KB) and most webhook groups change neither cursor nor state."""

    @abstractmethod
    def audit_begin(self, tx: T, now: str) -> tuple[str | None, str]:
        """Serialise audit appends until the transaction ends; ``(meta audit_head or None, the entries' time)``."""

    # -- other writes that differ --------------------------------------------------------------------------------

    @abstractmethod
    def insert_dead_letters(self, tx: T, sink: str, rows: Sequence[tuple[int, str, int, str]], now: str) -> None:
        """Dead letters ``(seq, record_id, attempts, error)``; one already on file for the seq is replaced."""

    @abstractmethod
    def resolve_quarantine(self, tx: T, entry_id: int, status: str, now: str) -> int: ...

    @abstractmethod
    def prune_receipts(self, tx: T, before: str) -> int: ...

    @abstractmethod
    def record_stream_error(self, tx: T, adapter: str, stream: str, message: str, now: str) -> None: ...

    @abstractmethod
    def acquire_lease(self, tx: T, adapter: str, stream: str, owner: str, ttl: float) -> bool: ...

    @abstractmethod
    def renew_lease(self, tx: T, adapter: str, stream: str, owner: str, ttl: float) -> bool: ...

    @abstractmethod
    def leases(self, tx: T) -> list[Lease]: ...

    @abstractmethod
    def sink_backlog(self, tx: T, sink: str) -> SinkBacklog: ...

    # -- portable writes -----------------------------------------------------------------------------------------

    def upsert_heads(self, tx: T, adapter: str, heads: Sequence[tuple[str, str, str, str]]) -> None:
        """Partner items' current records ``(stream, partner id, record id, raw hash)``, active (each item once)."""
        self.run_many(
            tx,
            "INSERT INTO record_heads (adapter, stream, partner_record_id, record_id, raw_sha256, status)"
            " VALUES (?, ?, ?, ?, ?, 'active') ON CONFLICT (adapter, stream, partner_record_id) DO UPDATE SET"
            " record_id=excluded.record_id, raw_sha256=excluded.raw_sha256, status='active'",
            [(adapter, *head) for head in heads],
        )

    def upsert_drift(self, tx: T, adapter: str, stream: str, drift: Mapping[str, tuple[int, str]], now: str) -> None:
        self.run_many(
            tx,
            "INSERT INTO schema_drift (adapter, stream, field, first_seen, last_seen, items, example)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (adapter, stream, field) DO UPDATE SET"
            " last_seen=excluded.last_seen, items=schema_drift.items + excluded.items",
            [(adapter, stream, name, now, now, n, example) for name, (n, example) in drift.items()],
        )

    def audit_last(self, tx: T) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest entry (for a log whose head is missing)."""
        row = self.run(tx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def insert_audit(self, tx: T, rows: Sequence[tuple[int, str, str, str, str, str, str, str]]) -> None:
        sql = (
            "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if len(rows) == 1:
            self.run(tx, sql, rows[0])
        else:
            self.run_many(tx, sql, rows)

    def set_audit_head(self, tx: T, head: str) -> None:
        self.run(
            tx,
            "INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (head,),
        )

    def advance_sink(self, tx: T, sink: str, upto_seq: int) -> None:
        self.run(
            tx,
            "INSERT INTO sink_positions (sink, seq) VALUES (?, ?) ON CONFLICT (sink) DO UPDATE SET"
            " seq=CASE WHEN excluded.seq > sink_positions.seq THEN excluded.seq ELSE sink_positions.seq END",
            (sink, upto_seq),
        )

    def delete_dead_letters(self, tx: T, ids: Sequence[int]) -> int:
        return self.run_many(tx, "DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids])

    def release_lease(self, tx: T, adapter: str, stream: str, owner: str) -> None:
        self.run(tx, "DELETE FROM leases WHERE adapter=? AND stream=? AND owner=?", (adapter, stream, owner))

    def check_writable(self, tx: T, now: str) -> None:
        self.run(
            tx,
            "INSERT INTO meta (key, value) VALUES ('last_write_check', ?)"
            " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (now,),
        )

    # -- portable reads ------------------------------------------------------------------------------------------

    def record_heads(
        self, tx: T, adapter: str, stream: str, partner_ids: Sequence[str]
    ) -> list[tuple[str, str, str, str]]:
        """``(partner id, record id, raw hash, status)`` of the stream's items on file among ``partner_ids``: an
        index probe each (the whole primary key)."""
        out: list[tuple[str, str, str, str]] = []
        for i in range(0, len(partner_ids), _IN_CHUNK):
            chunk = partner_ids[i : i + _IN_CHUNK]
            out += self.run(
                tx,
                "SELECT partner_record_id, record_id, raw_sha256, status FROM record_heads"
                f" WHERE adapter=? AND stream=? AND partner_record_id IN ({','.join('?' * len(chunk))})",
                (adapter, stream, *chunk),
            ).fetchall()
        return out

    def load_checkpoint(self, tx: T, adapter: str, stream: str) -> Checkpoint:
        row = self.run(
            tx, "SELECT cursor, state FROM checkpoints WHERE adapter=? AND stream=?", (adapter, stream)
        ).fetchone()
        if row is None:
            return Checkpoint()
        return Checkpoint(orjson.loads(row[0]) if row[0] is not None else None, orjson.loads(row[1]))

    def stream_status(self, tx: T) -> list[StreamStatus]:
        rows = self.run(
            tx,
            "SELECT adapter, stream, cursor, last_success, last_error, last_error_at FROM checkpoints"
            " ORDER BY adapter, stream",
        ).fetchall()
        return [
            StreamStatus(a, s, orjson.loads(c) if c else None, time_text(ok), err, time_text(err_at))
            for a, s, c, ok, err, err_at in rows
        ]

    def sink_position(self, tx: T, sink: str) -> int:
        row = self.run(tx, "SELECT seq FROM sink_positions WHERE sink=?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def read_outbox(self, tx: T, after_seq: int, limit: int, upto_seq: int | None = None) -> list[OutboxRow]:
        if upto_seq is None:
            sql, args = "WHERE seq > ?", [after_seq]
        else:
            sql, args = "WHERE seq > ? AND seq <= ?", [after_seq, upto_seq]
        rows = self.run(
            tx,
            f"SELECT seq, record_id, adapter, stream, scenario, body, kind FROM outbox {sql} ORDER BY seq LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_max_seq(self, tx: T) -> int:
        return int(self.run(tx, "SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])

    def dead_letters(self, tx: T, sink: str | None, limit: int) -> list[DeadLetter]:
        where, args = (" WHERE sink=?", [sink]) if sink else ("", [])
        rows = self.run(
            tx,
            f"SELECT id, sink, seq, record_id, attempts, error, created_at FROM dead_letters{where} ORDER BY id LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [dead_letter(row) for row in rows]

    def dead_letter_rows(self, tx: T, ids: Sequence[int]) -> list[tuple[DeadLetter, OutboxRow]]:
        wanted = list(dict.fromkeys(ids))
        found: dict[int, tuple[DeadLetter, OutboxRow]] = {}
        for i in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[i : i + _IN_CHUNK]
            for row in self.run(
                tx,
                "SELECT d.id, d.sink, d.seq, d.record_id, d.attempts, d.error, d.created_at,"
                " o.seq, o.record_id, o.adapter, o.stream, o.scenario, o.body, o.kind"
                f" FROM dead_letters d JOIN outbox o ON o.seq = d.seq WHERE d.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall():
                found[row[0]] = (dead_letter(row[:7]), OutboxRow(*row[7:]))
        return [found[i] for i in wanted if i in found]

    def quarantine_list(self, tx: T, adapter: str | None, status: str, limit: int) -> list[QuarantineEntry]:
        where, args = ("status=? AND adapter=?", [status, adapter]) if adapter else ("status=?", [status])
        rows = self.run(
            tx, f"SELECT {_QUARANTINE} FROM quarantine WHERE {where} ORDER BY id LIMIT ?", (*args, limit)
        ).fetchall()
        return [quarantine_entry(row) for row in rows]

    def quarantine_get(self, tx: T, entry_id: int) -> QuarantineEntry | None:
        row = self.run(tx, f"SELECT {_QUARANTINE} FROM quarantine WHERE id=?", (entry_id,)).fetchone()
        return quarantine_entry(row) if row else None

    def receipt_get(self, tx: T, adapter: str, stream: str, key: str) -> WebhookReceipt | None:
        row = self.run(
            tx,
            "SELECT adapter, stream, webhook_id, request_hash, status, body, created_at FROM webhook_receipts"
            " WHERE adapter=? AND stream=? AND webhook_id=?",
            (adapter, stream, key),
        ).fetchone()
        if row is None:
            return None
        return WebhookReceipt(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), time_text(row[6]) or "")

    def recent_receipts(self, tx: T, adapter: str, stream: str, limit: int) -> list[WebhookReceipt]:
        """A push stream's newest webhook requests on file (their answers), newest first."""
        rows = self.run(
            tx,
            "SELECT adapter, stream, webhook_id, request_hash, status, body, created_at FROM webhook_receipts"
            " WHERE adapter=? AND stream=? ORDER BY created_at DESC, webhook_id DESC LIMIT ?",
            (adapter, stream, limit),
        ).fetchall()
        return [WebhookReceipt(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), time_text(r[6]) or "") for r in rows]

    def counts(self, tx: T) -> dict[str, int]:
        row = self.run(
            tx,
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM quarantine WHERE status='open'),"
            " (SELECT count(*) FROM held_claims), (SELECT count(*) FROM dead_letters)",
        ).fetchone()
        return {
            "outbox": int(row[0]),
            "quarantine_open": int(row[1]),
            "held_claims": int(row[2]),
            "dead_letters": int(row[3]),
        }

    def pending_counts(self, tx: T) -> dict[str, int]:
        row = self.run(
            tx, "SELECT (SELECT count(*) FROM quarantine WHERE status='open'), (SELECT count(*) FROM dead_letters)"
        ).fetchone()
        return {"quarantine_open": int(row[0]), "dead_letters": int(row[1])}

    def schema_drift(self, tx: T, adapter: str | None) -> list[DriftEntry]:
        where, args = (" WHERE adapter=?", (adapter,)) if adapter else ("", ())
        rows = self.run(
            tx,
            "SELECT adapter, stream, field, first_seen, last_seen, items, example FROM schema_drift"
            f"{where} ORDER BY adapter, stream, field",
            args,
        ).fetchall()
        return [DriftEntry(a, s, f, first, last, int(n), ex) for a, s, f, first, last, n, ex in rows]

    def audit_head(self, tx: T) -> str | None:
        row = self.run(tx, "SELECT value FROM meta WHERE key='audit_head'").fetchone()
        return None if row is None else str(row[0])

    def audit_entries(self, tx: T, after_seq: int, limit: int) -> list[AuditEntry]:
        rows = self.run(
            tx,
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [audit_entry(row) for row in rows]

    def audit_outbox_rows(self, tx: T, first_seq: int, last_seq: int) -> list[tuple[str, bytes]]:
        rows = self.run(
            tx, "SELECT record_id, body FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last_seq)
        ).fetchall()
        # A body edited with SQL text functions comes back as TEXT: compare its bytes all the same.
        return [(str(r), str(b).encode() if isinstance(b, str) else bytes(b)) for r, b in rows]
