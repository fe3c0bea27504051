"""What the console's overview and ``tanpuhui status`` show: each stream and sink, read from the shared store.

Everything durable comes from the store (run history, checkpoints, webhook receipts, pauses, backlog, each sink's
delivery state, recent errors and last delivery as the replica draining it wrote them), so every worker and
replica shows the same page. What only the process running the work knows (a scheduled run's next time, whether a
pull is in flight) is added when the caller has it: the sidecar passes its scheduler; the CLI has none and
estimates the next run from the schedule.

Freshness: a pull stream's is the time since its last successful run (the checkpoint's ``last_success``), a push
stream's the time since its last accepted webhook request (its newest receipt; the checkpoint's time once the
receipts are pruned).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ..pausing import SINK_LEASES, paused
from ..store.base import RunLog, RunRecord, Store, WebhookReceipt
from ..store.queries import FailureQueries
from ..store.sink_log import SinkStateLog, StoredSinkState

if TYPE_CHECKING:
    from ..scheduler import Scheduler
    from ..server.streams import Configured

__all__ = ["Overview", "PushRequest", "SinkRow", "StreamRow", "gather_overview", "overview"]


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One webhook request a push stream accepted, as its receipt answered it (push streams have no runs: each
    request is committed on its own, with its receipt)."""

    received_at: str
    webhook_id: str
    """As the answer names it (redacted like every partner string)."""
    status: int
    items: int
    accepted: int
    quarantined: int
    records: int
    """Records the accepted items made (new ones and ones already on file alike)."""

    @classmethod
    def of(cls, receipt: WebhookReceipt) -> PushRequest:
        answer = orjson.loads(receipt.body)
        return cls(
            received_at=receipt.created_at,
            webhook_id=str(answer.get("webhook_id", "")),
            status=receipt.status,
            items=int(answer.get("items", 0)),
            accepted=int(answer.get("accepted", 0)),
            quarantined=int(answer.get("quarantined", 0)),
            records=int(answer.get("records", 0)),
        )


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
    """Pull: the last successful run; push: the last accepted webhook request."""
    freshness_seconds: float | None
    """Seconds since ``last_success``; None: never."""
    stale: bool
    """No successful run within the freshness threshold (pull streams only)."""
    cursor: str
    """The cursor as compact JSON text ("" when none)."""
    paused: bool
    running: bool
    last_error: str | None
    last_request: PushRequest | None = None
    """Push: the newest webhook request on file (None for pull streams)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_run"] = None if self.last_run is None else asdict(self.last_run)
        out["last_request"] = None if self.last_request is None else asdict(self.last_request)
        return out


@dataclass(frozen=True, slots=True)
class SinkRow:
    """One configured sink."""

    name: str
    state: str
    """ok, retrying, stopped (as the replica draining it wrote it) or paused."""
    backlog: int
    oldest_waiting: str | None
    position: int
    last_delivery: str | None
    last_error: str | None
    dead_letters: int
    since: str | None = None
    """When it began retrying or stopped."""
    attempts: int = 0
    """Failed tries since then."""
    next_attempt_at: str | None = None

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


def overview(
    store: Store,
    streams: Mapping[tuple[str, str], str],
    *,
    schedules: Mapping[tuple[str, str], float],
    sinks: Iterable[str],
    stale_after: float,
    live: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> Overview:
    """Gather the overview (blocking: call it off the event loop).

    ``streams``: (adapter, stream) -> kind; ``schedules``: interval seconds of scheduled pull streams; ``live``:
    the scheduler's ``{"running": bool, "next_run_at": iso}`` per stream, when the caller runs one."""
    now = now or datetime.now(UTC)
    latest = {(r.adapter, r.stream): r for r in store.latest_runs()} if isinstance(store, RunLog) else {}
    statuses = {(s.adapter, s.stream): s for s in store.stream_status()}
    held = paused(store)
    finder = store if isinstance(store, FailureQueries) else None
    requests: dict[tuple[str, str], PushRequest] = {}  # a push stream's newest webhook request on file
    if finder is not None:
        for key in [k for k, kind in streams.items() if kind == "push"]:
            newest = finder.recent_receipts(*key, limit=1)
            if newest:
                requests[key] = PushRequest.of(newest[0])
    pushed = {key: q.received_at for key, q in requests.items()}
    rows = []
    for key in sorted(set(streams) | set(statuses) | set(latest)):
        kind = streams.get(key, "unconfigured")
        st = statuses.get(key)
        run = latest.get(key)
        state = (live or {}).get(key, {})
        interval = schedules.get(key)
        last_success = pushed.get(key) or (st.last_success if st else None)
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
                last_request=requests.get(key),
            )
        )
    if finder is not None:
        dead = finder.dead_letters_by_sink()
    else:
        dead = {}
        for letter in store.dead_letters(None, 1_000_000):
            dead[letter.sink] = dead.get(letter.sink, 0) + 1
    shared = store.sink_states() if isinstance(store, SinkStateLog) else {}
    sink_rows = []
    for name in sorted(sinks):
        backlog = store.sink_backlog(name)
        known = shared.get(name) or StoredSinkState(name, "ok")
        sink_rows.append(
            SinkRow(
                name=name,
                state="paused" if (SINK_LEASES, name) in held else known.state,
                backlog=backlog.depth,
                oldest_waiting=backlog.oldest_created_at,
                position=backlog.position,
                last_delivery=known.last_delivery,
                last_error=known.last_error,
                dead_letters=dead.get(name, 0),
                since=known.since,
                attempts=known.attempts,
                next_attempt_at=known.next_attempt_at,
            )
        )
    return Overview(rows, sink_rows, store.counts(), stale_after)


def gather_overview(
    store: Store, configured: Configured, scheduler: Scheduler, sinks: Iterable[str], stale_after: float
) -> Overview:
    """The overview as a sidecar sees it, its scheduler's live state included (blocking: call off the event loop).
    The console's overview page and the admin API's ``GET /v1/admin/overview`` both show this."""
    schedules = {key: run.schedule.interval for key, run in scheduler.runs.items() if run.schedule is not None}
    live = {key: run.as_dict() for key, run in scheduler.runs.items()}
    return overview(
        store,
        {key: info.kind for key, info in configured.streams.items()},
        schedules=schedules,
        sinks=list(sinks),
        stale_after=stale_after,
        live=live,
    )
