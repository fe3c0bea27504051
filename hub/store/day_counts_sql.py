"""The plausibility day counts' SQL, portable between the dialects: one row per distinct record a ``max_per_day``
rule counted (:mod:`tanpuhui.hub.plausibility`), read for a page's keys before it is processed and written in its
commit, the stream's days before the latest but one pruned."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from datetime import date, timedelta
from operator import itemgetter
from typing import Any, Generic, TypeVar

from .base import DayCount

__all__ = ["DayCountSql", "prune_before"]

T = TypeVar("T")

_KEY = itemgetter(0, 1, 2, 3)
"""A count's primary key in the table after (adapter, stream): rule, day, subject, record id."""

_IN_CHUNK = 500
"""Subjects per ``IN (...)`` list (under SQLite's limit on bound parameters)."""


def prune_before(day: str) -> str | None:
    """The first day kept when ``day`` is a stream's latest: the day before it (None: not a date, nothing pruned)."""
    try:
        return (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    except ValueError:
        return None


class DayCountSql(ABC, Generic[T]):
    """The day-count statements of a :class:`~.dialect.Dialect` (which provides ``run`` and ``run_many``)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a portable statement (``?`` placeholders)."""

    @abstractmethod
    def run_many(self, tx: T, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Execute a portable statement once per row."""

    def day_counts(self, tx: T, adapter: str, stream: str, keys: Collection[tuple[str, str, str]]) -> list[DayCount]:
        by_day: dict[tuple[str, str], list[str]] = {}
        for rule, day, subject in keys:
            by_day.setdefault((rule, day), []).append(subject)
        out: list[DayCount] = []
        for (rule, day), subjects in by_day.items():
            for i in range(0, len(subjects), _IN_CHUNK):
                chunk = subjects[i : i + _IN_CHUNK]
                rows = self.run(
                    tx,
                    "SELECT subject, record_id, n FROM plausibility_counts WHERE adapter=? AND stream=? AND rule=?"
                    f" AND day=? AND subject IN ({','.join('?' * len(chunk))})",
                    (adapter, stream, rule, day, *chunk),
                ).fetchall()
                out.extend(DayCount(rule, day, s, r, int(n)) for s, r, n in rows)
        return out

    def write_day_counts(self, tx: T, adapter: str, stream: str, counts: Sequence[DayCount], now: str) -> None:
        """Insert a page's new counts (one already on file, from a concurrent writer, is left as it is), then
        prune each rule's days before the day preceding the page's latest; a record dated after today (UTC, from
        ``now``) does not move that day past today, so a partner's clock error cannot wipe the day's counts.

        Inserted in key order (a stable sort: of two counts with one key, the first is still the one kept): one
        insert after another falls in the same leaf of the table, where random order (subjects are pseudonyms) sends
        each to a leaf of its own."""
        self.insert_day_counts(tx, adapter, stream, sorted(counts, key=_KEY))
        today = now[:10]
        latest: dict[str, str] = {}
        for c in counts:
            if c.day > latest.get(c.rule, ""):
                latest[c.rule] = min(c.day, today)
        for rule, day in latest.items():
            before = prune_before(day)
            if before is not None:
                self.run(
                    tx,
                    "DELETE FROM plausibility_counts WHERE adapter=? AND stream=? AND rule=? AND day<?",
                    (adapter, stream, rule, before),
                )

    def insert_day_counts(self, tx: T, adapter: str, stream: str, counts: Sequence[DayCount]) -> None:
        self.run_many(
            tx,
            "INSERT INTO plausibility_counts (adapter, stream, rule, day, subject, record_id, n)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(adapter, stream, *c) for c in counts],
        )
