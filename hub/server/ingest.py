"""Group commit of webhook requests: requests that arrive together share one transaction.

A commit with ``synchronous = FULL`` waits for the disk (about a millisecond here), so one transaction per request
would cap the sidecar at about a thousand requests a second however fast the rest is. Instead each request is
queued, and once per turn of the event loop everything queued is processed and committed in one transaction
(group commit): each request still gets its 2xx only after its own records are durable, and a burst costs one
sync instead of one each. When the previous group was committed less than ``busy_window`` ago (under load), a
group waits ``commit_delay`` (2 ms) for the requests already on the wire to join it; when idle it commits at once.

This runs on the event loop's thread, on purpose. On a thread of its own the work would not overlap anyway (the
GIL), and worse: SQLite releases the GIL around every statement, and under load each re-acquisition waits for the
busy loop thread's switch interval (5 ms), which turned a 1 ms group into tens of milliseconds. A group is capped
(``max_group`` requests, ``max_bytes`` of bodies) so one turn of the loop stays short; the rest goes into the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass

from ..drivers.push import PreparedPush, PushDriver, PushOutcome, PushStates
from ..metrics import HubMetrics

__all__ = ["IngestWorker", "NotCommitted"]

log = logging.getLogger("tanpuhui.ingest")


@dataclass(frozen=True, slots=True)
class NotCommitted:
    """The request could not be processed (500) or its group not committed (503): our failure; the partner
    retries, and nothing of the request was stored."""

    status: int
    detail: str
    page: None = None


_PROCESSING_FAILED = NotCommitted(500, "processing failed; retry")
_COMMIT_FAILED = NotCommitted(503, "the store could not commit; retry")


@dataclass(slots=True)
class _Push:
    adapter: str
    stream: str
    key: str
    headers: Mapping[str, str]
    body: bytes
    future: asyncio.Future[PushOutcome | NotCommitted]


@dataclass(eq=False)
class IngestWorker:
    """Processes and group-commits webhook requests (see the module docstring)."""

    pushes: PushDriver
    metrics: HubMetrics
    _: KW_ONLY
    max_group: int = 64
    max_bytes: int = 4 * 1024 * 1024
    commit_delay: float = 0.002
    on_commit: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        self.busy_window = 0.01
        self._pending: list[_Push] = []
        self._scheduled = False
        self._last_flush = -1.0

    async def push(
        self, adapter: str, stream: str, key: str, headers: Mapping[str, str], body: bytes
    ) -> PushOutcome | NotCommitted:
        """Process and commit one verified request; resolves once its records are committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PushOutcome | NotCommitted] = loop.create_future()
        self._pending.append(_Push(adapter, stream, key, headers, body, future))
        if not self._scheduled:
            self._scheduled = True
            if loop.time() - self._last_flush < self.busy_window:
                # Under load: let the requests already on the wire join this group (one sync for all of them).
                loop.call_later(self.commit_delay, self._flush)
            else:
                loop.call_soon(self._flush)  # idle: commit at once
        return await future

    async def stop(self) -> None:
        """Commit whatever is still queued."""
        while self._pending:
            self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        size = 0
        take = 0
        for job in self._pending:
            if take and (take >= self.max_group or size + len(job.body) > self.max_bytes):
                break
            take += 1
            size += len(job.body)
        jobs, self._pending = self._pending[:take], self._pending[take:]
        if self._pending:
            self._scheduled = True
            loop.call_soon(self._flush)
        if jobs:
            self._group(jobs)
        self._last_flush = loop.time()

    def _group(self, jobs: list[_Push]) -> None:
        states: PushStates = {}
        prepared: list[tuple[_Push, PreparedPush]] = []
        for job in jobs:
            try:
                outcome = self.pushes.prepare(job.adapter, job.stream, job.key, job.headers, job.body, states=states)
            except Exception:
                log.exception("webhook %s:%s: processing failed", job.adapter, job.stream)
                _resolve(job, _PROCESSING_FAILED)
                continue
            if isinstance(outcome, PreparedPush):
                prepared.append((job, outcome))
            else:
                _resolve(job, outcome)
        if not prepared:
            return
        started = time.perf_counter()
        try:
            outcomes = self.pushes.commit([p for _, p in prepared])
        except Exception:
            log.exception("commit of %d webhook request(s) failed; nothing of them was stored", len(prepared))
            for job, _ in prepared:
                _resolve(job, _COMMIT_FAILED)
            return
        self.metrics.commit_group.observe(len(prepared))
        log.debug("committed %d webhook request(s) in %.1f ms", len(prepared), (time.perf_counter() - started) * 1e3)
        inserted = False
        for (job, _), outcome in zip(prepared, outcomes, strict=True):
            if outcome.page is not None:
                self.metrics.page(outcome.page)
                inserted = inserted or outcome.page.inserted > 0
            _resolve(job, outcome)
        if inserted:
            self.on_commit()


def _resolve(job: _Push, outcome: PushOutcome | NotCommitted) -> None:
    if not job.future.done():  # the client may have gone away (the request task was cancelled)
        job.future.set_result(outcome)
