"""When a sandbox endpoint answers with an error instead of data: every N-th request, or queued one-off answers.

    schedule = FaultSchedule(fail_every=5, throttle_every=3, retry_after=2)
    schedule.fail_next(503, count=2)                 # the next two requests, whatever their number
    fault = schedule.next(serial)                    # serial: the endpoint's request count, this one included
    if fault is not None:
        return json_response(fault.status, {"error": ...}, fault.headers)

The sandbox renders the answer in its partner's own error format; the schedule only decides when and what.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["FaultSchedule", "ScheduledFault"]


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """An error answer: its HTTP status, ``Retry-After`` seconds, the partner's error code, and the requests it is
    for (``scope``: e.g. a dataset name; None: any)."""

    status: int
    retry_after: float | None = None
    code: str | None = None
    scope: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After`` when the answer carries one."""
        return {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}


class FaultSchedule:
    """Queued one-off answers first (in order); else a 500 on every ``fail_every``-th request and a 429 with
    ``Retry-After: retry_after`` on every ``throttle_every``-th (0: never). Thread-safe."""

    def __init__(self, *, fail_every: int = 0, throttle_every: int = 0, retry_after: float = 1) -> None:
        self.fail_every = fail_every
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self._queue: deque[ScheduledFault] = deque()
        self._lock = threading.Lock()

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: float | None = None,
        code: str | None = None,
        scope: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``scope``, or any) with ``status`` (and ``code``, ``Retry-After``)."""
        with self._lock:
            self._queue.extend([ScheduledFault(status, retry_after, code, scope)] * count)

    def next(self, serial: int, scope: str | None = None) -> ScheduledFault | None:
        """The fault for request number ``serial`` (of ``scope``), or None to answer it normally.

        A queued answer waits, blocking the queue, until a request of its scope comes.
        """
        with self._lock:
            if self._queue and self._queue[0].scope in (None, scope):
                return self._queue.popleft()
        if self.fail_every and serial % self.fail_every == 0:
            return ScheduledFault(500)
        if self.throttle_every and serial % self.throttle_every == 0:
            return ScheduledFault(429, self.retry_after)
        return None
