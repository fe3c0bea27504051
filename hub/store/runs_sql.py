"""The run history's SQL, portable between the dialects: one row per pull run, its counters added in each page's
own commit (see :mod:`tanpuhui.hub.run_history`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from .base import RunRecord
from .times import time_text

__all__ = ["RunHistorySql"]

T = TypeVar("T")


class RunHistorySql(ABC, Generic[T]):
    """The run-history statements of a :class:`~.dialect.Dialect` (which provides ``run``)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a portable statement (``?`` placeholders)."""

    # -- run history ---------------------------------------------------------------------------------

    def run_begin(self, tx: T, adapter: str, stream: str, owner: str, now: str) -> int:
        self.run(
            tx,
            "UPDATE runs SET outcome='interrupted' WHERE adapter=? AND stream=? AND outcome='running'",
            (adapter, stream),
        )
        row = self.run(
            tx,
            "INSERT INTO runs (adapter, stream, owner, started_at, outcome) VALUES (?, ?, ?, ?, 'running') RETURNING id",
            (adapter, stream, owner, now),
        ).fetchone()
        return int(row[0])

    def run_add(self, tx: T, run_id: int, items: int, pages: int, result: tuple[int, int, int, int, int]) -> None:
        inserted, duplicates, held, quarantined, repeats = result
        self.run(
            tx,
            "UPDATE runs SET pages=pages+?, items=items+?, inserted=inserted+?, duplicates=duplicates+?,"
            " held=held+?, quarantined=quarantined+?, quarantine_repeats=quarantine_repeats+? WHERE id=?",
            (pages, items, inserted, duplicates, held, quarantined, repeats, run_id),
        )

    def run_end(self, tx: T, run_id: int, outcome: str, error: str | None, seconds: float, now: str) -> None:
        self.run(
            tx,
            "UPDATE runs SET outcome=?, error=?, seconds=?, finished_at=? WHERE id=?",
            (outcome, error, float(seconds), now, run_id),
        )

    def runs(self, tx: T, adapter: str | None, stream: str | None, limit: int) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if adapter:
            where.append("adapter=?")
            args.append(adapter)
        if stream:
            where.append("stream=?")
            args.append(stream)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.run(tx, f"SELECT {_RUN} FROM runs{clause} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_run_record(row) for row in rows]

    def latest_runs(self, tx: T) -> list[RunRecord]:
        rows = self.run(
            tx,
            f"SELECT {_RUN} FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY adapter, stream)"
            " ORDER BY adapter, stream",
        ).fetchall()
        return [_run_record(row) for row in rows]

    def prune_runs(self, tx: T, before: str) -> int:
        return int(
            self.run(
                tx,
                "DELETE FROM runs WHERE started_at < ? AND outcome <> 'running'"
                " AND id NOT IN (SELECT max(id) FROM runs GROUP BY adapter, stream)",
                (before,),
            ).rowcount
        )


_RUN = (
    "id, adapter, stream, owner, started_at, finished_at, seconds, outcome, pages, items, inserted, duplicates,"
    " held, quarantined, quarantine_repeats, error"
)


def _run_record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        time_text(row[4]) or "",
        time_text(row[5]),
        None if row[6] is None else float(row[6]),
        row[7],
        int(row[8]),
        int(row[9]),
        int(row[10]),
        int(row[11]),
        int(row[12]),
        int(row[13]),
        int(row[14]),
        row[15],
    )
