"""Filtered, paged reads of what failed and what was done: quarantine, dead letters and the audit log, in SQL.

A query is a frozen dataclass of optional filters (empty: no filter) that says itself as a portable ``WHERE`` clause;
:class:`FilterSql` runs it over the whole table with keyset paging (``after`` an id, or ``before`` an audit seq), and
counts what it selects, so a console filter finds every matching row however many there are. Texts are matched
case-insensitively as substrings (``LIKE`` with its wildcards escaped); times are full ISO timestamps (see
:func:`time_bound`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import orjson

from ..audit import AuditEntry
from .base import DeadLetter, QuarantineEntry, WebhookReceipt
from .times import time_text

__all__ = [
    "QUARANTINE_COLUMNS",
    "AuditQuery",
    "DeadLetterQuery",
    "FailureQueries",
    "FilterSql",
    "QuarantineQuery",
    "dead_letter",
    "quarantine_entry",
    "time_bound",
]

T = TypeVar("T")

QUARANTINE_COLUMNS = (
    "id, adapter, stream, stage, partner_record_id, problems, raw, status, created_at, resolved_at, repeats, last_seen"
)
_DEAD = "id, sink, seq, record_id, attempts, error, created_at"
_AUDIT = "seq, at, actor, action, subject, details, prev_hash, hash"


def time_bound(text: str, *, end: bool = False) -> str:
    """A time filter as the stores compare it: ``2026-12-01``, ``2026-12-01T08:30``, ``...Z`` or with an offset
    (no zone: UTC) -> ``2026-12-01T00:00:00.000+00:00``. ``end``: a bare date means the end of that day.

    Raises ValueError naming what was expected."""
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give a date (2026-12-01) or a date and time (2026-12-01T08:30)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end and len(raw) == 10:
        parsed += timedelta(days=1)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds")


def _like(text: str, *, prefix: bool = False) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


class _Where:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def add(self, sql: str, *args: Any) -> None:
        self.parts.append(sql)
        self.args.extend(args)

    def when(self, sql: str, value: Any) -> None:
        """``add`` a filter that is set (an empty value filters nothing)."""
        if value:
            self.add(sql, value)

    def contains(self, column: str, text: str, *, prefix: bool = False) -> None:
        if text:
            self.add(f"lower({column}) LIKE ? ESCAPE '\\'", _like(text, prefix=prefix))

    def clause(self) -> str:
        return f" WHERE {' AND '.join(self.parts)}" if self.parts else ""


@dataclass(frozen=True, slots=True)
class QuarantineQuery:
    """Quarantine entries of one status, optionally of an adapter, stream and stage, with a problem text (in a
    problem's pointer, message or keyword), last seen at or after ``since`` and first seen before ``until``."""

    status: str = "open"
    adapter: str = ""
    stream: str = ""
    stage: str = ""
    problem: str = ""
    since: str = ""
    until: str = ""

    def where(self) -> _Where:
        w = _Where()
        w.add("status=?", self.status)
        for column in ("adapter", "stream", "stage"):
            w.when(f"{column}=?", getattr(self, column))
        w.contains("problems", self.problem)
        w.when("last_seen >= ?", self.since)
        w.when("created_at < ?", self.until)
        return w


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Dead letters of a sink (or all), with an error text, created at or after ``since``."""

    sink: str = ""
    error: str = ""
    since: str = ""

    def where(self) -> _Where:
        w = _Where()
        w.when("sink=?", self.sink)
        w.contains("error", self.error)
        w.when("created_at >= ?", self.since)
        return w


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Audit entries whose action starts with ``action``, whose subject and actor contain the texts given, at or
    after ``since`` (entries keep their time as ISO text)."""

    action: str = ""
    subject: str = ""
    actor: str = ""
    since: str = ""

    def where(self) -> _Where:
        w = _Where()
        w.contains("action", self.action, prefix=True)
        w.contains("subject", self.subject)
        w.contains("actor", self.actor)
        w.when("at >= ?", self.since)
        return w


class FilterSql(ABC, Generic[T]):
    """The filtered reads of a :class:`~.dialect.Dialect` (which provides ``run``)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a portable statement (``?`` placeholders)."""

    def _count(self, tx: T, table: str, w: _Where) -> int:
        return int(self.run(tx, f"SELECT count(*) FROM {table}{w.clause()}", w.args).fetchone()[0])

    def _page(self, tx: T, columns: str, table: str, w: _Where, order: str, limit: int) -> list[Any]:
        """The rows selected by ``w``, ``limit`` of them in ``order``."""
        sql = f"SELECT {columns} FROM {table}{w.clause()} ORDER BY {order} LIMIT ?"
        return list(self.run(tx, sql, (*w.args, limit)).fetchall())

    def _ids(self, tx: T, table: str, w: _Where) -> list[int]:
        return [int(r[0]) for r in self.run(tx, f"SELECT id FROM {table}{w.clause()} ORDER BY id", w.args)]

    def quarantine_find(self, tx: T, q: QuarantineQuery, after: int, limit: int) -> list[QuarantineEntry]:
        w = q.where()
        w.add("id > ?", after)
        return [quarantine_entry(row) for row in self._page(tx, QUARANTINE_COLUMNS, "quarantine", w, "id", limit)]

    def quarantine_count(self, tx: T, q: QuarantineQuery) -> int:
        return self._count(tx, "quarantine", q.where())

    def quarantine_ids(self, tx: T, q: QuarantineQuery) -> list[int]:
        return self._ids(tx, "quarantine", q.where())

    def quarantine_facets(self, tx: T, status: str) -> dict[str, list[str]]:
        rows = self.run(
            tx, "SELECT DISTINCT adapter, stream, stage FROM quarantine WHERE status=?", (status,)
        ).fetchall()
        return {name: sorted({row[i] for row in rows}) for i, name in enumerate(("adapter", "stream", "stage"))}

    def dead_letters_find(self, tx: T, q: DeadLetterQuery, after: int, limit: int, newest: bool) -> list[DeadLetter]:
        w = q.where()
        if newest:
            if after > 0:
                w.add("id < ?", after)
        else:
            w.add("id > ?", after)
        order = "id DESC" if newest else "id"
        return [dead_letter(row) for row in self._page(tx, _DEAD, "dead_letters", w, order, limit)]

    def dead_letters_count(self, tx: T, q: DeadLetterQuery) -> int:
        return self._count(tx, "dead_letters", q.where())

    def dead_letter_ids(self, tx: T, q: DeadLetterQuery) -> list[int]:
        return self._ids(tx, "dead_letters", q.where())

    def dead_letters_by_sink(self, tx: T) -> dict[str, int]:
        return {s: int(n) for s, n in self.run(tx, "SELECT sink, count(*) FROM dead_letters GROUP BY sink")}

    def audit_find(self, tx: T, q: AuditQuery, before: int, limit: int) -> list[AuditEntry]:
        """Newest first, from the entry before ``before`` (0: the newest)."""
        w = q.where()
        if before > 0:
            w.add("seq < ?", before)
        return [audit_entry(row) for row in self._page(tx, _AUDIT, "audit_log", w, "seq DESC", limit)]

    def audit_count(self, tx: T, q: AuditQuery) -> int:
        return self._count(tx, "audit_log", q.where())


def audit_entry(row: Sequence[Any]) -> AuditEntry:
    seq, at, actor, action, subject, details, prev_hash, digest = row
    try:
        parsed = orjson.loads(details)
    except orjson.JSONDecodeError:
        parsed = {"unparseable": str(details)}  # an edited entry: verify reports it
    as_dict = parsed if isinstance(parsed, dict) else {"value": parsed}
    return AuditEntry(int(seq), at, actor, action, subject, as_dict, prev_hash, digest)


def dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(row[0], row[1], row[2], row[3], row[4], row[5], time_text(row[6]) or "")


def quarantine_entry(row: Sequence[Any]) -> QuarantineEntry:
    return QuarantineEntry(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        orjson.loads(row[5]),
        bytes(row[6]),
        row[7],
        time_text(row[8]) or "",
        time_text(row[9]),
        int(row[10]),
        time_text(row[11]) or "",
    )


@runtime_checkable
class FailureQueries(Protocol):
    """A store that filters and pages quarantine, dead letters and the audit log in SQL (see the module docstring)."""

    def quarantine_find(self, query: QuarantineQuery, after: int = 0, limit: int = 100) -> list[QuarantineEntry]:
        """Entries matching ``query`` with ids after ``after``, oldest first."""
        ...

    def quarantine_count(self, query: QuarantineQuery) -> int: ...

    def quarantine_ids(self, query: QuarantineQuery) -> list[int]: ...

    def quarantine_facets(self, status: str) -> dict[str, list[str]]:
        """The adapters, streams and stages of the entries of ``status`` (``{"adapter": [...], ...}``)."""
        ...

    def dead_letters_find(
        self, query: DeadLetterQuery, after: int = 0, limit: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        """Dead letters matching ``query``: ids after ``after``, oldest first; ``newest``: ids before ``after``
        (0: from the newest), newest first."""
        ...

    def dead_letters_count(self, query: DeadLetterQuery) -> int: ...

    def dead_letter_ids(self, query: DeadLetterQuery) -> list[int]: ...

    def dead_letters_by_sink(self) -> dict[str, int]: ...

    def audit_find(self, query: AuditQuery, before: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries matching ``query`` with seq before ``before`` (0: from the newest), newest first."""
        ...

    def audit_count(self, query: AuditQuery) -> int: ...

    def recent_receipts(self, adapter: str, stream: str, limit: int = 200) -> list[WebhookReceipt]:
        """A push stream's newest webhook requests on file (each with the answer it got), newest first; the
        receipts kept for ``receipt_retention``."""
        ...
