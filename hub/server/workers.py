"""Several sidecar processes on one listening socket: ``tanpuhui serve --workers N`` (``[server] workers``).

One sidecar process runs the pipeline on one core (Python's GIL). With ``workers > 1`` the parent checks the
address, forks N workers that each run a whole sidecar on their own ``SO_REUSEPORT`` socket on that port (the
kernel spreads new connections over them), and supervises them:

- each worker opens its own store connection, and they share the store as replicas do (docs/scaling.md): webhook
  ids, record ids and behaviour fingerprints are unique in the database, scheduled pulls take the stream's lease and
  forwarding takes the sink's, so N workers never pull a stream or deliver a batch twice;
- SIGTERM or SIGINT to the parent is passed to every worker as SIGTERM: each drains as a single sidecar does, and
  the parent exits 0 once all have stopped cleanly;
- a supervisor that dies, even by SIGKILL, takes its workers with it (Linux ``PR_SET_PDEATHSIG``: SIGTERM);
- a worker that dies on its own is replaced; one that could not start (bad configuration, the store refused) or
  died within :data:`MIN_LIFETIME` seconds of starting stops the others, and ``serve`` exits with status 3.

``/metrics`` counters are per process: a scrape reaches one worker (its ``pid`` is in ``/healthz``). Forking is
done before any worker builds its hub, so no thread or connection crosses a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from ..process import stop_with_parent

__all__ = ["MIN_LIFETIME", "bind", "check_address", "run_workers"]

log = logging.getLogger("tanpuhui.server")

MIN_LIFETIME = 5.0
"""A worker that ends sooner than this after it started is taken for a start-up failure, not replaced."""


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` with ``SO_REUSEPORT``: each worker opens its own, and the kernel
    spreads new connections over them (a socket shared by all would let one worker's accept loop take a burst of
    connections alone)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def check_address(host: str, port: int) -> None:
    """Raise OSError now, in the parent, when the workers could not listen on ``host:port``."""
    if port == 0:
        raise OSError(0, "workers need a fixed port (each opens its own socket on it), not 0")
    bind(host, port, backlog=0).close()  # bound, never listening: no connection is queued on it


def run_workers(workers: int, host: str, port: int, worker: Callable[[socket.socket], int]) -> int:
    """Fork ``workers`` processes, each running ``worker(its socket on host:port)`` (the return value is the
    process's exit status), and supervise them until all have stopped; returns the exit status for ``serve``."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
    parent = os.getpid()
    stopping = False
    failed = 0

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, _stop_starting)  # until the server takes the signals over
                stop_with_parent(parent)
                status = worker(bind(host, port))
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", slot)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = (slot, time.monotonic())
        log.info("worker %d started (pid %d)", slot, pid)

    def stop_all(sig: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # a second SIGINT would make uvicorn drop in-flight requests

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(workers):
            start(slot)
        while children:
            pid, wait_status = os.wait()
            if pid not in children:
                continue
            slot, started = children.pop(pid)
            status = os.waitstatus_to_exitcode(wait_status)
            status = status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says
            if stopping:
                if status != 0:
                    log.warning("worker %d (pid %d) stopped with status %d", slot, pid, status)
                    failed = failed or status
                continue
            if status == 3 or time.monotonic() - started < MIN_LIFETIME:
                log.error("worker %d (pid %d) could not start (status %d); stopping the others", slot, pid, status)
                failed = 3
                stop_all()
                continue
            log.error("worker %d (pid %d) ended unexpectedly (status %d); starting a new one", slot, pid, status)
            start(slot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return failed


def _stop_starting(sig: int, frame: FrameType | None) -> None:
    """A stop signal to a worker still starting: it ends cleanly (nothing was accepted yet)."""
    raise SystemExit(0)
