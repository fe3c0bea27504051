"""Pulling with several processes: ``tanpuhui pull --workers N`` and ``tanpuhui run --workers N``.

One process pulls on one core (Python's GIL). With ``workers > 1`` the command works out the pull streams to pull
(a partitioned stream counts once per partition: ``partitions = {transactions = 2}`` gives two), closes its hub,
and forks N workers; worker ``k`` pulls the streams ``k``, ``k + N``, ... of that list, each through its own hub on
the shared store, exactly as a single ``pull`` would: each page commits with its cursor under the stream's lease,
so a killed worker loses nothing and the next run resumes its streams from their committed cursors. The workers
send their pull summaries back through a pipe; ``run`` forwards in the parent meanwhile, reading the outbox the
workers commit to.

- SIGTERM or SIGINT to the parent is passed to every worker as SIGTERM (what each committed stays committed);
- a parent that dies, even by SIGKILL, takes its workers with it (:func:`tanpuhui.hub.process.stop_with_parent`);
- a worker that ends without its summaries (killed, crashed) is reported as an error on each of its streams.

Forking is done before any worker opens its hub, so no thread or connection crosses a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from tanpuhui.sdk import redact

from .drivers.pull import PullSummary
from .process import stop_with_parent

__all__ = ["PullWorkers", "StreamKey", "share"]

log = logging.getLogger("tanpuhui.pull")

StreamKey = tuple[str, str]
"""(adapter, stream): a pull stream, or one partition of a partitioned one."""


def share(keys: Sequence[StreamKey], slot: int, workers: int) -> list[StreamKey]:
    """The streams worker ``slot`` of ``workers`` pulls: every ``workers``-th one from the ``slot``-th."""
    return list(keys[slot::workers])


@dataclass
class _Worker:
    slot: int
    pid: int
    reader: int
    keys: list[StreamKey]
    summaries: list[PullSummary] | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class PullWorkers:
    """N forked processes, worker ``k`` calling ``job(its streams)`` and sending back the summaries it returns.

    :meth:`start` forks them; :meth:`wait` (from any thread: ``run`` waits in one while it forwards) collects what
    each sent and how it ended.
    """

    keys: Sequence[StreamKey]
    workers: int
    job: Callable[[list[StreamKey]], list[PullSummary]]
    _children: list[_Worker] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)
    _handlers: dict[int, Any] = field(default_factory=dict)

    def start(self) -> None:
        """Fork the workers (from the main thread: it takes SIGTERM and SIGINT over until :meth:`wait` ends)."""
        parent = os.getpid()
        self._handlers = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        for slot in range(min(self.workers, len(self.keys))):
            keys = share(self.keys, slot, self.workers)
            reader, writer = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(reader)
                self._run_worker(parent, keys, writer)
            os.close(writer)
            self._children.append(_Worker(slot, pid, reader, keys))
            log.info("pull worker %d started (pid %d): %s", slot, pid, ", ".join(f"{a}:{s}" for a, s in keys))

    def _run_worker(self, parent: int, keys: list[StreamKey], writer: int) -> None:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            stop_with_parent(parent)
            sent: list[PullSummary] | str = self.job(keys)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
            sent = f"exited with status {status}"
        except BaseException as exc:  # the parent reports it as an error of each of the worker's streams
            sent = redact(str(exc)) or type(exc).__name__
        try:
            with os.fdopen(writer, "wb") as pipe:
                pipe.write(pickle.dumps(sent))
        finally:
            logging.shutdown()
            os._exit(status)

    def stop(self, sig: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Pass a stop signal on to every worker still running."""
        for child in self._children:
            if child.status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def wait(self) -> list[PullSummary]:
        """Each worker's summaries, in the order of :attr:`keys` (a worker that sent none: an error summary for each
        of its streams), once every worker has ended."""
        for child in self._children:
            with os.fdopen(child.reader, "rb") as pipe:
                data = pipe.read()
            _, wait_status = os.waitpid(child.pid, 0)
            status = os.waitstatus_to_exitcode(wait_status)
            child.status = status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says
            sent = pickle.loads(data) if data else None  # our own child's pipe
            if isinstance(sent, list):
                child.summaries = sent
            elif isinstance(sent, str):
                child.error = sent
        self._done.set()
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)
        order = {key: i for i, key in enumerate(self.keys)}
        found: list[PullSummary] = []
        for child in self._children:
            if child.summaries is not None:
                found += child.summaries
                continue
            why = f"failed: {child.error}" if child.error else f"ended with status {child.status} before it reported"
            problem = (
                f"pull worker {child.slot} (pid {child.pid}) {why}; what it committed stays committed, and the next "
                "run resumes its streams from their cursors"
            )
            found += [PullSummary(adapter, stream, error=problem) for adapter, stream in child.keys]
        return sorted(found, key=lambda s: order.get((s.adapter, s.stream), len(order)))

    def follower(self, poll: float = 0.05) -> Callable[[], Awaitable[bool]]:
        """A ``follow`` for :meth:`tanpuhui.hub.forwarder.Forwarder.drain` while the workers pull (``run``): the
        outbox is read again every ``poll`` seconds until :meth:`wait` has seen every worker end, then once more
        (what they committed last), then the drain ends."""
        last = False

        async def follow() -> bool:
            nonlocal last
            if last:
                return False
            if self._done.is_set():
                last = True
                return True
            await asyncio.sleep(poll)
            return True

        return follow
