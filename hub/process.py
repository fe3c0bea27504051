"""Process-wide settings for the hub's long-running commands (``serve``, ``pull``, ``forward``)."""

from __future__ import annotations

import ctypes
import gc
import os
import signal

__all__ = ["stop_with_parent", "tune_gc"]


def tune_gc() -> None:
    """Garbage collection for a hub process, called once its start-up is done (configuration, plugins, schemas).

    What exists by then (modules, compiled schemas, adapters, configuration: ~67,000 tracked objects, kept for
    the life of the process) is moved out of the collector's generations (``gc.freeze``). Each full collection
    walked all of it: ~50 ms on the benchmark machine, during which the sidecar answered nothing (4 times in a
    20-second run, each past the 25 ms p99 target for the requests it held up), and ~4% of a long pull's time.
    After the freeze a collection walks only what was allocated since. The thresholds stay the defaults.
    """
    gc.collect()
    gc.freeze()


def stop_with_parent(parent: int) -> None:
    """In a forked worker: have the kernel send it SIGTERM when ``parent`` (its supervisor) dies, even by SIGKILL,
    so no orphan goes on alone (``serve --workers``: none keeps the port; ``pull --workers``: none pulls on after a
    cron job's timeout killed the command). Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere workers outlive a
    killed supervisor. Exits at once when the supervisor died before the call (no signal would come)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        raise SystemExit(0)
