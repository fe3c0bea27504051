"""Background work of the sidecar: scheduled pulls per stream and the forwarder loop, with a clean stop.

Pulls: each scheduled stream has its own task. It waits ``interval`` (times a random factor in
``1 ± jitter``, so streams and replicas spread out), then pulls from the saved cursor to the end. One run at a time
per stream: an ``asyncio.Lock`` per stream is shared with the admin API's "pull now" (a tick that finds the stream
busy is skipped; the admin gets a 409). When a run ends in an error (the partner is down and the client's retries
ran out, or it refused us) the next wait doubles with each failure in a row, up to ``max_backoff``; a success
resets it.

Forwarding: one task per sink drains the outbox; when the outbox is empty it sleeps until a commit wakes it
(:meth:`ForwarderLoop.notify`, then a short ``linger`` so concurrent commits travel in one batch) or until
``idle`` seconds passed (commits by other processes, e.g. a CLI pull). Drains ride out consumer outages: a batch
that fails transiently is retried on the forwarder's backoff, with nothing after it sent, until it is delivered
or ``[forwarder] give_up_after`` has passed (the sink's state meanwhile says ``retrying``). A sink that is gone
(410) or broken is tried again after ``error_pause``.

Stopping (SIGTERM): :class:`Stopping` is set; nothing new starts; a pull stops after the page it is committing, a
forwarder after the batch it is marking, and retry waits (partner or sink) end at once by raising
:class:`ShutdownRequested`. Committed work is never undone: each page commits with its cursor, each batch is
marked after it was delivered (an interrupted batch is sent again later; the consumer dedups). Whatever still
runs at the deadline is cancelled, which is just as safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any

from tanpuhui.sdk import ConfigError, redact

from .drivers.pull import PullSummary
from .forwarder import Forwarder, ForwardSummary
from .hub import Hub
from .pipeline import PageResult

__all__ = ["ForwarderLoop", "Schedule", "Scheduler", "ShutdownRequested", "Stopping", "StreamBusy"]

log = logging.getLogger("tanpuhui.scheduler")

StreamKey = tuple[str, str]


class ShutdownRequested(BaseException):
    """Raised inside a pull or a delivery to stop it at a safe point during shutdown.

    A ``BaseException`` like ``asyncio.CancelledError``: handlers of ordinary errors (a sink's, a partner
    client's) must not mistake it for a failure to record or retry.
    """


class StreamBusy(Exception):
    """A pull of this stream is already running."""


class Stopping:
    """The shutdown flag shared by the background tasks, with an interruptible sleep."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set (True) or ``timeout`` seconds passed (False)."""
        if self._event.is_set():
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the process is stopping: then raise :class:`ShutdownRequested` (at once, or when set)."""
        if await self.wait(max(0.0, seconds)):
            raise ShutdownRequested


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a stream is pulled: every ``interval`` seconds ± ``jitter`` (a fraction), backing off to ``max_backoff``."""

    interval: float
    jitter: float = 0.1
    max_backoff: float = 3600.0
    run_at_start: bool = True


@dataclass(slots=True)
class StreamRun:
    """What the scheduler knows about one pull stream (shown by the admin API)."""

    schedule: Schedule | None = None
    running: bool = False
    next_run_at: float | None = None
    failures: int = 0
    last_started_at: float | None = None
    last_summary: PullSummary | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.last_summary
        return {
            "schedule": None
            if self.schedule is None
            else {
                "interval_seconds": self.schedule.interval,
                "jitter": self.schedule.jitter,
                "max_backoff_seconds": self.schedule.max_backoff,
            },
            "running": self.running,
            "next_run_at": _iso(self.next_run_at),
            "consecutive_failures": self.failures,
            "last_run": None
            if s is None
            else {
                "started_at": _iso(self.last_started_at),
                "seconds": round(s.seconds, 3),
                "pages": s.pages,
                "pulled": s.pulled,
                "inserted": s.inserted,
                "duplicates": s.duplicates,
                "held": s.held,
                "quarantined": s.quarantined,
                "error": s.error,
            },
        }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class Scheduler:
    """Runs pulls: on schedules, and on demand (:meth:`start_now`), one at a time per stream."""

    def __init__(
        self,
        hub: Hub,
        streams: Iterable[StreamKey],
        schedules: Mapping[StreamKey, Schedule],
        stopping: Stopping,
        *,
        on_page: Callable[[PageResult], None] = lambda page: None,
        on_summary: Callable[[PullSummary], None] = lambda summary: None,
        rng: random.Random | None = None,
    ) -> None:
        self.hub = hub
        self.stopping = stopping
        self.runs: dict[StreamKey, StreamRun] = {key: StreamRun(schedules.get(key)) for key in streams}
        unknown = set(schedules) - set(self.runs)
        if unknown:
            raise ValueError(f"schedules for streams that are not pull streams: {sorted(unknown)}")
        self._locks: dict[StreamKey, asyncio.Lock] = {key: asyncio.Lock() for key in self.runs}
        self._on_page = on_page
        self._on_summary = on_summary
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Start one task per scheduled stream."""
        for key, run in self.runs.items():
            if run.schedule is not None:
                self._spawn(self._every(key, run.schedule), f"schedule {key[0]}:{key[1]}")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _delay(self, schedule: Schedule, failures: int) -> float:
        base = min(schedule.max_backoff, schedule.interval * 2.0**failures) if failures else schedule.interval
        return max(0.0, base * self._rng.uniform(1.0 - schedule.jitter, 1.0 + schedule.jitter))

    async def _every(self, key: StreamKey, schedule: Schedule) -> None:
        run = self.runs[key]
        if schedule.run_at_start:
            delay = self._rng.uniform(0.0, schedule.interval * schedule.jitter)
        else:
            delay = self._delay(schedule, 0)
        try:
            while True:
                run.next_run_at = time.time() + delay
                if await self.stopping.wait(delay):
                    return
                lock = self._locks[key]
                if lock.locked():
                    log.info("pull %s:%s skipped: a run is in progress", *key)
                    delay = self._delay(schedule, run.failures)
                    continue
                async with lock:
                    summary = await self._pull(key)
                if summary is None:
                    return
                delay = self._delay(schedule, run.failures)
                if summary.error:
                    log.warning("pull %s:%s failed (%d in a row); next run in %.0f s", *key, run.failures, delay)
        except ShutdownRequested:
            return

    def busy(self, adapter: str, stream: str) -> bool:
        return self._locks[(adapter, stream)].locked()

    async def start_now(self, adapter: str, stream: str) -> asyncio.Task[PullSummary | None]:
        """Start a pull of one stream now; raises :class:`StreamBusy` when one is running, KeyError when the
        stream is not a configured pull stream. The task's result is the summary (None when stopped by shutdown).
        """
        key = (adapter, stream)
        lock = self._locks[key]
        if lock.locked() or self.stopping.is_set:
            raise StreamBusy(f"{adapter}:{stream}: a pull is already running" if lock.locked() else "shutting down")
        await lock.acquire()  # free: returns without yielding, so no other caller can slip in between

        async def run() -> PullSummary | None:
            try:
                return await self._pull(key)
            except ShutdownRequested:
                return None
            finally:
                lock.release()

        return self._spawn(run(), f"pull now {adapter}:{stream}")

    async def _pull(self, key: StreamKey) -> PullSummary | None:
        """One run (the caller holds the stream's lock); None when shutdown interrupted it."""
        run = self.runs[key]
        run.running = True
        run.last_started_at = time.time()

        def progress(page: PageResult) -> None:
            self._on_page(page)
            if self.stopping.is_set:
                raise ShutdownRequested  # after this page's commit: the cursor is where the next run resumes

        try:
            log.info("pull %s:%s started", *key)
            (summary,) = await self.hub.pull(key[0], key[1], progress=progress)
        except ShutdownRequested:
            log.info("pull %s:%s stopped for shutdown; it resumes from its cursor", *key)
            raise
        except ConfigError as exc:  # e.g. a split changed without being acknowledged (hub.splits): said, no trace
            log.error("pull %s:%s refused: %s", *key, redact(str(exc)))
            summary = PullSummary(key[0], key[1], error=redact(str(exc)))
        except Exception as exc:  # a bug in an adapter must not end the schedule
            log.exception("pull %s:%s crashed", *key)
            summary = PullSummary(key[0], key[1], error=redact(f"{type(exc).__name__}: {exc}"))
        finally:
            run.running = False
        run.last_summary = summary
        run.failures = run.failures + 1 if summary.error else 0
        self._on_summary(summary)
        log.info(
            "pull %s:%s finished: %d pages, %d items, %d new, %d quarantined%s",
            *key,
            summary.pages,
            summary.pulled,
            summary.inserted,
            summary.quarantined,
            f", error: {summary.error}" if summary.error else "",
        )
        return summary

    async def stop(self, deadline: float) -> None:
        """Stop scheduling; wait for running pulls until ``deadline`` (monotonic), then cancel them."""
        self.stopping.set()
        await _finish(self._tasks, deadline, "pull")


@dataclass(eq=False)
class ForwarderLoop:
    """Keeps draining the outbox to each sink (one task per sink); see the module docstring."""

    forwarder: Forwarder
    stopping: Stopping
    _: KW_ONLY
    idle: float = 5.0
    linger: float = 0.05
    error_pause: float = 30.0
    on_summary: Callable[[str, ForwardSummary], None] = lambda sink, summary: None

    def __post_init__(self) -> None:
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.forwarder.sinks}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining: dict[str, bool] = dict.fromkeys(self.forwarder.sinks, False)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name in self.forwarder.sinks:
            task = loop.create_task(self._run(name), name=f"forward {name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def notify(self) -> None:
        """New records were committed (call on the event loop's thread)."""
        for event in self._wake.values():
            event.set()

    def _progress(self, sink: str, rows: int) -> None:
        if self.stopping.is_set:
            raise ShutdownRequested  # after the batch was marked: nothing is sent twice for this stop

    async def _run(self, name: str) -> None:
        wake = self._wake[name]
        try:
            while not self.stopping.is_set:
                wake.clear()
                pause = self.idle
                self.draining[name] = True
                try:
                    summary = await self.forwarder.drain(name, progress=self._progress, ride_out=True)
                except ShutdownRequested:
                    return
                except Exception:
                    log.exception("forwarding to %s failed", name)
                    pause = self.error_pause
                else:
                    self.on_summary(name, summary)
                    s = summary[name]
                    if s.gone or s.failed:
                        pause = self.error_pause
                finally:
                    self.draining[name] = False
                if pause == self.idle:
                    woken = await _wait_any(wake, self.stopping, pause)
                    if woken and self.linger > 0 and not self.stopping.is_set:
                        await self.stopping.wait(self.linger)  # let concurrent commits join the batch
                elif await self.stopping.wait(pause):
                    return
        except ShutdownRequested:
            return

    async def stop(self, deadline: float) -> None:
        self.stopping.set()
        for event in self._wake.values():
            event.set()
        await _finish(self._tasks, deadline, "forwarder")


async def _wait_any(event: asyncio.Event, stopping: Stopping, timeout: float) -> bool:
    """Wait for ``event`` or shutdown, at most ``timeout`` seconds; True when the event fired."""
    waiter = asyncio.ensure_future(event.wait())
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (waiter, stopper):
            if not f.done():
                f.cancel()
    return event.is_set()


async def _finish(tasks: set[asyncio.Task[Any]], deadline: float, what: str) -> None:
    pending = set(tasks)
    if not pending:
        return
    timeout = max(0.0, deadline - time.monotonic())
    _, late = await asyncio.wait(pending, timeout=timeout)
    for task in late:
        log.warning("%s task %s did not finish by the shutdown deadline; cancelled", what, task.get_name())
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5.0)
