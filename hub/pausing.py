"""Pausing a stream's pulls or a sink's deliveries, shared by every worker and replica on the store.

A pause is a lease held by the operator: :data:`PAUSED` owns the stream's lease (or, under
:data:`~.store.leases.SINK_LEASES`, the sink's) until resumed, so no replica can take it, and the runs that would
need it skip as they do for a lease held elsewhere (a scheduled pull, a ``pull now``, a CLI pull, a sink's drain).
No new state, no change to the scheduler or the forwarder, and it survives restarts. A stream busy right now cannot
be paused until its run ends (its lease is taken): the caller says so. A sink can be paused while a replica holds
it (:func:`pause_sink`: most useful while it rides out an outage, which can last days): the pause takes its lease
over, the replica's next renewal finds it lost and it stops retrying after the try in hand (a batch already on the
wire may still be delivered and marked); the records wait in the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .store.base import Store
from .store.leases import SINK_LEASES
from .store.queries import AuditQuery, FailureQueries

__all__ = ["PAUSED", "SINK_LEASES", "Pause", "pause", "pause_sink", "pause_soon", "paused", "pauses", "resume"]

PAUSE_ACTIONS = ("console.stream.pause", "cli.stream.pause", "console.sink.pause", "cli.sink.pause")
"""The audit actions that pause a stream or a sink (the console's and ``tanpuhui pause``'s)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """A stream or sink paused now: since when, and who asked (from the audit log, when it keeps one)."""

    since: str
    by: str | None = None
    """The audit entry's actor (``console@10.0.0.7``, ``cli@ops-host``)."""
    asked_at: str | None = None


PAUSED = "paused-by-operator"
"""The lease owner that means "paused"."""

_FOREVER = 100 * 365 * 86400.0
"""A pause lasts until resumed."""


def pause(store: Store, adapter: str, stream: str) -> bool:
    """Pause ``adapter:stream`` (a sink: ``SINK_LEASES, name``); False when a run holds its lease now."""
    return store.acquire_lease(adapter, stream, PAUSED, _FOREVER)


async def pause_soon(store: Store, adapter: str, stream: str, wait: float = 5.0) -> bool:
    """:func:`pause`, trying again for up to ``wait`` seconds while a run or a batch holds the lease (a busy sink
    frees it between drains); False when it is still held then."""
    deadline = time.monotonic() + wait
    while not await asyncio.to_thread(pause, store, adapter, stream):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def pause_sink(store: Store, name: str) -> bool:
    """Pause delivery to sink ``name`` now, taking its lease over from a replica draining it; False only when
    the lease keeps changing hands (tried a few times)."""
    for _ in range(5):
        if pause(store, SINK_LEASES, name):
            return True
        holder = next((x.owner for x in store.leases() if (x.adapter, x.stream) == (SINK_LEASES, name)), None)
        if holder == PAUSED:
            return True
        if holder is not None:
            store.release_lease(SINK_LEASES, name, holder)
    return False


def resume(store: Store, adapter: str, stream: str) -> None:
    """Lift a pause (nothing happens when it is not paused)."""
    store.release_lease(adapter, stream, PAUSED)


def paused(store: Store) -> set[tuple[str, str]]:
    """``(adapter, stream)`` of what is paused now; sinks as ``(SINK_LEASES, name)``."""
    return {(lease.adapter, lease.stream) for lease in store.leases() if lease.owner == PAUSED}


def pauses(store: Store, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Pause]:
    """Which of ``keys`` (``(adapter, stream)``, sinks as ``(SINK_LEASES, name)``) are paused, since when and by
    whom."""
    wanted = set(keys)
    out = {}
    for lease in store.leases():
        key = (lease.adapter, lease.stream)
        if lease.owner != PAUSED or key not in wanted:
            continue
        by = asked = None
        if isinstance(store, FailureQueries):
            subject = key[1] if key[0] == SINK_LEASES else f"{key[0]}:{key[1]}"
            for entry in store.audit_find(AuditQuery(subject=subject), 0, 50):
                if entry.subject == subject and entry.action in PAUSE_ACTIONS:
                    by, asked = entry.actor, entry.at
                    break
        out[key] = Pause(lease.acquired_at, by, asked)
    return out
