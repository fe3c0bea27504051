"""Each sink's delivery state in the shared store, so every worker and replica shows the same.

The process draining a sink (the holder of its lease) writes its state on every change (ok, retrying since when
with the failed tries, the next try and the last error, stopped) and appends each failure to a short list of recent
errors (the newest :data:`KEEP_ERRORS` per sink are kept). A delivered batch stamps the sink's position with its
time (``delivered_at``) and clears a failing state left by a replica that died while it was failing. The console,
``tanpuhui status`` and ``/readyz`` of any worker or replica read them here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from .times import time_text

__all__ = ["KEEP_ERRORS", "SinkFailure", "SinkStateLog", "SinkStateSql", "StoredSinkState"]

T = TypeVar("T")

KEEP_ERRORS = 20
"""Recent failures kept per sink."""


@dataclass(frozen=True, slots=True)
class StoredSinkState:
    """A sink's delivery state as the process draining it last wrote it (see :mod:`tanpuhui.hub.sink_state`)."""

    sink: str
    state: str
    """ok, retrying or stopped."""
    since: str | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: str | None = None
    given_up: bool = False
    recoveries: int = 0
    owner: str = ""
    """The replica (lease owner) that wrote it."""
    updated_at: str = ""
    last_delivery: str | None = None
    """When a batch was last delivered to it (from any replica)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, in the shape of :meth:`tanpuhui.hub.sink_state.SinkState.as_dict` plus the last delivery."""
        out: dict[str, Any] = {"state": self.state, "last_delivery": self.last_delivery}
        if self.state == "ok":
            return out
        out.update(since=self.since, attempts=self.attempts, last_error=self.last_error)
        if self.state == "retrying":
            out.update(next_attempt_at=self.next_attempt_at, given_up=self.given_up)
        return out


@dataclass(frozen=True, slots=True)
class SinkFailure:
    """One failed delivery attempt (or a stop) of a sink."""

    id: int
    sink: str
    at: str
    state: str
    error: str


@runtime_checkable
class SinkStateLog(Protocol):
    """A store that keeps each sink's delivery state for every worker and replica (see the module docstring)."""

    def sink_state_save(self, state: StoredSinkState, error: str | None = None) -> None:
        """Write ``state`` (its ``updated_at`` is now) and, when given, append ``error`` to the sink's failures."""
        ...

    def sink_states(self) -> dict[str, StoredSinkState]:
        """Every sink that has a state or a delivery on file, by name."""
        ...

    def sink_failures(self, sink: str | None = None, limit: int = 20) -> list[SinkFailure]:
        """Recent failures, newest first, of one sink or all."""
        ...


class SinkStateSql(ABC, Generic[T]):
    """The shared sink-state statements of a :class:`~.dialect.Dialect` (which provides ``run``)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a portable statement (``?`` placeholders)."""

    def sink_state_save(self, tx: T, s: StoredSinkState, error: str | None, now: str) -> None:
        self.run(
            tx,
            "INSERT INTO sink_states (sink, state, since, attempts, last_error, next_attempt_at, given_up,"
            " recoveries, owner, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sink) DO UPDATE SET"
            " state=excluded.state, since=excluded.since, attempts=excluded.attempts,"
            " last_error=excluded.last_error, next_attempt_at=excluded.next_attempt_at,"
            " given_up=excluded.given_up, recoveries=excluded.recoveries, owner=excluded.owner,"
            " updated_at=excluded.updated_at",
            (
                s.sink,
                s.state,
                s.since,
                s.attempts,
                s.last_error,
                s.next_attempt_at,
                s.given_up,
                s.recoveries,
                s.owner,
                now,
            ),
        )
        if error is not None:
            self.run(
                tx,
                "INSERT INTO sink_errors (sink, at, state, error) VALUES (?, ?, ?, ?)",
                (s.sink, now, s.state, error[:2000]),
            )
            self.run(
                tx,
                "DELETE FROM sink_errors WHERE sink=? AND id < (SELECT min(id) FROM"
                " (SELECT id FROM sink_errors WHERE sink=? ORDER BY id DESC LIMIT ?) AS newest)",
                (s.sink, s.sink, KEEP_ERRORS),
            )

    def sink_delivered(self, tx: T, sink: str, now: str) -> None:
        """A batch was delivered: stamp the position; a failing state on file (written by a replica that died while
        failing, or before a takeover) is over."""
        self.run(tx, "UPDATE sink_positions SET delivered_at=? WHERE sink=?", (now, sink))
        self.run(
            tx,
            "UPDATE sink_states SET state='ok', since=NULL, attempts=0, next_attempt_at=NULL, given_up=?,"
            " updated_at=? WHERE sink=? AND state <> 'ok'",
            (False, now, sink),
        )

    def sink_states(self, tx: T) -> dict[str, StoredSinkState]:
        rows = self.run(
            tx,
            "SELECT n.sink, s.state, s.since, s.attempts, s.last_error, s.next_attempt_at, s.given_up,"
            " s.recoveries, s.owner, s.updated_at, p.delivered_at"
            " FROM (SELECT sink FROM sink_states UNION SELECT sink FROM sink_positions) AS n"
            " LEFT JOIN sink_states s ON s.sink = n.sink LEFT JOIN sink_positions p ON p.sink = n.sink",
        ).fetchall()
        out = {}
        for row in rows:
            out[row[0]] = StoredSinkState(
                row[0],
                row[1] or "ok",
                time_text(row[2]),
                int(row[3] or 0),
                row[4],
                time_text(row[5]),
                bool(row[6]),
                int(row[7] or 0),
                row[8] or "",
                time_text(row[9]) or "",
                time_text(row[10]),
            )
        return out

    def sink_failures(self, tx: T, sink: str | None, limit: int) -> list[SinkFailure]:
        where, args = (" WHERE sink=?", [sink]) if sink else ("", [])
        rows = self.run(
            tx, f"SELECT id, sink, at, state, error FROM sink_errors{where} ORDER BY id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [SinkFailure(int(i), s, time_text(at) or "", st, e) for i, s, at, st, e in rows]
