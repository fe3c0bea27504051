"""What this process knows about delivery to one sink: ok, retrying through an outage, or stopped.

The :class:`~tanpuhui.hub.forwarder.Forwarder` keeps a :class:`SinkStates` table: one :class:`SinkState` per
sink, replaced whole on every change, so a reader on another thread (a metrics scrape) always sees a consistent
one. The table logs an outage when it begins, when it is given up on and when it ends ("sink platform recovered
after 12 min retrying, 37 failed attempt(s)"), counts recoveries, and appends ``sink.recovered`` to the audit log
when the store keeps one. ``/readyz`` and the metrics show the states. The table lives in the memory of the process
that drains the sink (the holder of its lease), and every change is written to the shared store
(:mod:`~tanpuhui.hub.store.sink_log`, with each failure in the sink's recent errors), where the console,
``tanpuhui status`` and ``/readyz`` of every worker and replica read it. The writes go through one background
thread in order when an event loop runs (a blocking write must not stall deliveries), directly otherwise.

States::

    ok         the last batch was delivered (or the consumer answered it permanently); nothing is failing
    retrying   the batch in hand failed transiently (refused, timeout, 408/425/429/5xx) and is being retried:
               since when, how many failed tries, the last error, when the next try is due
    stopped    the consumer answered 410 Gone, or the sink raised something other than a SinkError (a bug);
               the sidecar tries again after ``[server] forward_error_pause``
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from tanpuhui.sdk import redact

from .audit import AuditEvent, AuditLog
from .store.sink_log import SinkStateLog, StoredSinkState

__all__ = ["SinkCondition", "SinkState", "SinkStates", "duration_text"]

log = logging.getLogger("tanpuhui.forwarder")

SinkCondition = Literal["ok", "retrying", "stopped"]


@dataclass(frozen=True, slots=True)
class SinkState:
    """Delivery to one sink as this process sees it (see the module docstring)."""

    state: SinkCondition = "ok"
    since: float | None = None
    """Wall-clock time (epoch seconds) this state began; None while ok."""
    attempts: int = 0
    """Failed tries since then."""
    last_error: str | None = None
    next_attempt_at: float | None = None
    """Wall-clock time of the next try while retrying (None: not waiting)."""
    given_up: bool = False
    """Failing for ``[forwarder] give_up_after``: batches that keep failing are now dead-lettered."""
    recoveries: int = 0
    """Times delivery recovered (retrying or stopped -> ok) since the process started."""
    started: float | None = field(default=None, repr=False)
    """``time.monotonic()`` when this state began: outage lengths do not jump with the wall clock."""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @classmethod
    def from_stored(cls, stored: StoredSinkState) -> SinkState:
        """The state another process wrote to the store, as this one's (its length counted from ``since``)."""
        if stored.state == "ok":
            return cls(recoveries=stored.recoveries)
        since = datetime.fromisoformat(stored.since).timestamp() if stored.since else None
        upcoming = datetime.fromisoformat(stored.next_attempt_at).timestamp() if stored.next_attempt_at else None
        started = None if since is None else time.monotonic() - max(0.0, time.time() - since)
        condition: SinkCondition = "retrying" if stored.state == "retrying" else "stopped"
        return cls(
            condition,
            since,
            stored.attempts,
            stored.last_error,
            upcoming,
            stored.given_up,
            stored.recoveries,
            started,
        )

    def seconds(self) -> float:
        """How long this state has lasted (0 while ok)."""
        return 0.0 if self.started is None else max(0.0, time.monotonic() - self.started)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"state": "ok"}``, or the state with since, seconds, attempts, next try and last error."""
        if self.ok:
            return {"state": "ok"}
        out: dict[str, Any] = {
            "state": self.state,
            "since": _iso(self.since),
            "seconds": round(self.seconds(), 3),
            "attempts": self.attempts,
            "last_error": self.last_error,
        }
        if self.state == "retrying":
            out["next_attempt_at"] = _iso(self.next_attempt_at)
            out["given_up"] = self.given_up
        return out


class SinkStates(Mapping[str, SinkState]):
    """The state of each sink by name, and the transitions the forwarder reports (see the module docstring).

    ``store`` receives ``sink.recovered`` audit entries when it is an :class:`~tanpuhui.hub.audit.AuditLog`;
    ``give_up_after`` and ``max_backoff`` are the forwarder's (for :meth:`given_up` and the log lines).
    """

    def __init__(
        self, names: Iterable[str], *, give_up_after: float, max_backoff: float, store: object, owner: str = ""
    ) -> None:
        self._states: dict[str, SinkState] = {name: SinkState() for name in names}
        self.give_up_after = give_up_after
        self.max_backoff = max_backoff
        self._store = store
        self.owner = owner
        """Who writes the states to the store (the forwarder's lease owner)."""
        self._writer: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None

    def _publish(self, name: str, error: str | None = None) -> None:
        """Write ``name``'s state (and ``error``, a new failure) to the shared store, when it keeps them."""
        store = self._store
        if not isinstance(store, SinkStateLog):
            return
        s = self._states[name]
        row = StoredSinkState(
            name,
            s.state,
            _iso(s.since),
            s.attempts,
            None if s.last_error is None else redact(s.last_error),
            _iso(s.next_attempt_at),
            s.given_up,
            s.recoveries,
            self.owner,
        )
        failure = None if error is None else redact(error)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _save(store, row, failure)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-state")
        self._last = self._writer.submit(_save, store, row, failure)

    async def settled(self) -> None:
        """Wait until the states handed to the background thread are written (in order: the last one is enough)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wrap_future(last)

    def flush(self) -> None:
        """Wait for the writes handed to the background thread (at shutdown, before the store closes)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

    def __getitem__(self, name: str) -> SinkState:
        return self._states[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def failing(self, name: str, error: str) -> None:
        """A transient failure: the sink is retrying (since the first failure in a row)."""
        state = self._states[name]
        if state.state != "retrying":
            state = SinkState("retrying", time.time(), recoveries=state.recoveries, started=time.monotonic())
            log.warning(
                "sink %s: delivery failing, retrying with backoff up to %s; records wait in the outbox "
                "(dead letters only after %s of failure): %s",
                name,
                duration_text(self.max_backoff),
                duration_text(self.give_up_after),
                error,
            )
        self._states[name] = replace(state, attempts=state.attempts + 1, last_error=error, next_attempt_at=None)
        self._publish(name, error)

    def waiting(self, name: str, seconds: float) -> None:
        """The next try is due in ``seconds``."""
        self._states[name] = replace(self._states[name], next_attempt_at=time.time() + seconds)
        self._publish(name)

    def given_up(self, name: str) -> bool:
        """Retrying for ``give_up_after`` or longer: a batch that keeps failing may be dead-lettered."""
        state = self._states[name]
        return state.state == "retrying" and state.seconds() >= self.give_up_after

    def give_up(self, name: str, first_seq: int, last_seq: int) -> None:
        """The batch ``first_seq``-``last_seq`` is dead-lettered because the outage lasted ``give_up_after``."""
        state = self._states[name]
        if not state.given_up:
            log.error(
                "sink %s: failing for %s (give_up_after %s); records seq %d-%d and later batches that keep "
                "failing become dead letters until it recovers",
                name,
                duration_text(state.seconds()),
                duration_text(self.give_up_after),
                first_seq,
                last_seq,
            )
            self._states[name] = replace(state, given_up=True)
            self._publish(name)

    def stopped(self, name: str, error: str) -> None:
        """410 Gone, or a bug in the sink: delivery to it stopped."""
        state = self._states[name]
        if state.state != "stopped":
            state = SinkState("stopped", time.time(), recoveries=state.recoveries, started=time.monotonic())
        self._states[name] = replace(state, attempts=state.attempts + 1, last_error=error)
        self._publish(name, error)

    def answered(self, name: str) -> None:
        """The consumer answered (delivered, or a permanent 4xx): an outage or a stop is over."""
        state = self._states[name]
        if state.ok:
            return
        took = state.seconds()
        self._states[name] = SinkState(recoveries=state.recoveries + 1)
        self._publish(name)
        log.warning(
            "sink %s recovered after %s %s, %d failed attempt(s); last error: %s",
            name,
            duration_text(took),
            state.state,
            state.attempts,
            state.last_error,
        )
        store = self._store
        if isinstance(store, AuditLog):
            details = {
                "was": state.state,
                "since": _iso(state.since),
                "seconds": round(took, 3),
                "failed_attempts": state.attempts,
                "last_error": redact(state.last_error or ""),
            }
            try:
                store.audit_append([AuditEvent("sink.recovered", name, details)])
            except Exception:  # logged and counted already; a busy store must not stop delivery
                log.warning("sink %s: could not append its recovery to the audit log", name, exc_info=True)

    def forget(self, name: str) -> None:
        """Another replica drains the sink now: what this one saw of it is stale."""
        state = self._states[name]
        if not state.ok:
            self._states[name] = SinkState(recoveries=state.recoveries)


def _save(store: SinkStateLog, row: StoredSinkState, error: str | None) -> None:
    try:
        store.sink_state_save(row, error)
    except Exception:  # a busy or closing store must not stop delivery; the state is in memory and logged
        log.warning("sink %s: could not write its state to the store", row.sink, exc_info=True)


def duration_text(seconds: float) -> str:
    """``"0.4 s"``, ``"45 s"``, ``"12 min"``, ``"3.2 h"``, ``"2.5 d"``: a length of time for log lines."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
