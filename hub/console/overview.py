"""What the console's overview and ``tanpuhui status`` show: each stream and sink, read from the shared store.

Everything durable comes from the store (run history, checkpoints, pauses, backlog), so every worker and replica
shows the same page. What only the process running the work knows (a scheduled run's next time, whether a pull or
a delivery is in flight, a sink's outage state) is added when the caller has it: the sidecar passes its scheduler
and forwarder; the CLI has neither and estimates the next run from the schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..pausing import SINK_LEASES, paused
from ..store.base import RunLog, RunRecord, Store

__all__ = ["Overview", "SinkRow", "StreamRow", "overview"]


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One configured (or once-pulled) stream."""

    adapter: str
    stream: str
    kind: str
    schedule_seconds: float | None
    last_run: RunRecord | None
    next_run: str | None
    last_success: str | None
    freshness_seconds: float | None
    """Seconds since the last successful run; None: never succeeded."""
    stale: bool
    """No successful run within the freshness threshold (pull streams only)."""
    cursor: str
    """The cursor as compact JSON text ("" when none)."""
    paused: bool
    running: bool
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_run"] = None if self.last_run is None else asdict(self.last_run)
        return out


@dataclass(frozen=True, slots=True)
class SinkRow:
    """One configured sink."""

    name: str
    state: str
    """ok, retrying, stopped (the forwarder's view, in the process that drains it) or paused (the store's)."""
    backlog: int
    oldest_waiting: str | None
    position: int
    last_delivery: str | None
    last_error: str | None
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Overview:
    streams: list[StreamRow]
    sinks: list[SinkRow]
    counts: dict[str, int]
    stale_after: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": [s.as_dict() for s in self.streams],
            "sinks": [s.as_dict() for s in self.sinks],
            "counts": self.counts,
            "stale_after_seconds": self.stale_after,
        }


SinkView = Callable[[str], Mapping[str, Any]]
"""sink name -> ``{"state": ..., "last_error": ..., "last_delivery": ...}`` as this process knows it."""


def overview(
    store: Store,
    streams: Mapping[tuple[str, str], str],
    *,
    schedules: Mapping[tuple[str, str], float],
    sinks: Iterable[str],
    stale_after: float,
    live: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    sink_view: SinkView | None = None,
    now: datetime | None = None,
) -> Overview:
    """Gather the overview (blocking: call it off the event loop).

    ``streams``: (adapter, stream) -> kind; ``schedules``: interval seconds of scheduled pull streams; ``live``:
    the scheduler's ``{"running": bool, "next_run_at": iso}`` per stream, when the caller runs one."""
    now = now or datetime.now(UTC)
    latest = {(r.adapter, r.stream): r for r in store.latest_runs()} if isinstance(store, RunLog) else {}
    statuses = {(s.adapter, s.stream): s for s in store.stream_status()}
    held = paused(store)
    rows = []
    for key in sorted(set(streams) | set(statuses) | set(latest)):
        kind = streams.get(key, "unconfigured")
        st = statuses.get(key)
        run = latest.get(key)
        state = (live or {}).get(key, {})
        interval = schedules.get(key)
        last_success = st.last_success if st else None
        fresh = None if last_success is None else (now - datetime.fromisoformat(last_success)).total_seconds()
        next_run = state.get("next_run_at")
        if next_run is None and interval is not None and live is None:
            base = run.finished_at or run.started_at if run else None
            next_run = (
                (datetime.fromisoformat(base) + timedelta(seconds=interval)).isoformat(timespec="seconds")
                if base
                else None
            )
        rows.append(
            StreamRow(
                adapter=key[0],
                stream=key[1],
                kind=kind,
                schedule_seconds=interval,
                last_run=run,
                next_run=next_run,
                last_success=last_success,
                freshness_seconds=None if fresh is None else max(0.0, fresh),
                stale=kind == "pull" and (fresh is None or fresh > stale_after),
                cursor="" if st is None or st.cursor is None else orjson.dumps(st.cursor).decode(),
                paused=key in held,
                running=bool(state.get("running")) or (run is not None and run.outcome == "running"),
                last_error=st.last_error if st else None,
            )
        )
    dead: dict[str, int] = {}
    for letter in store.dead_letters(None, 1_000_000):
        dead[letter.sink] = dead.get(letter.sink, 0) + 1
    sink_rows = []
    for name in sorted(sinks):
        backlog = store.sink_backlog(name)
        view = dict(sink_view(name)) if sink_view else {}
        condition = "paused" if (SINK_LEASES, name) in held else str(view.get("state", "ok"))
        sink_rows.append(
            SinkRow(
                name=name,
                state=condition,
                backlog=backlog.depth,
                oldest_waiting=backlog.oldest_created_at,
                position=backlog.position,
                last_delivery=view.get("last_delivery"),
                last_error=view.get("last_error"),
                dead_letters=dead.get(name, 0),
            )
        )
    return Overview(rows, sink_rows, store.counts(), stale_after)
