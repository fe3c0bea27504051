"""Holding a store lease for the length of a run: take it, renew it in the background, give it back.

    async with hold_lease(store, "transit_card", "transactions", owner, ttl=30) as lease:
        if lease is None:
            ...  # another replica has it: skip this run
        ...      # commit pages with lease_owner=lease.owner; lease.lost says whether a renewal failed

Renewals are scheduled on the event loop every ``ttl / 3`` seconds and make their store call in a worker thread:
a page processed synchronously on the loop delays a renewal by at most its own duration, so keep ``ttl`` well
above the time a page takes (a lease is then lost only when the replica really stalls or dies). See
:mod:`tanpuhui.hub.store.leases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HeldLease", "LeaseStore", "hold_lease"]

log = logging.getLogger("tanpuhui.leases")


class LeaseStore(Protocol):
    def acquire_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool: ...

    def renew_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool: ...

    def release_lease(self, adapter: str, stream: str, owner: str) -> None: ...


@dataclass
class HeldLease:
    adapter: str
    stream: str
    owner: str
    ttl: float
    lost: bool = False
    """A renewal found the lease taken over (this replica stalled past ``ttl``): stop the run."""


@contextlib.asynccontextmanager
async def hold_lease(
    store: LeaseStore, adapter: str, stream: str, owner: str, ttl: float
) -> AsyncIterator[HeldLease | None]:
    """Yield the held lease, or None when another owner holds it (nothing to release then)."""
    if not await asyncio.to_thread(store.acquire_lease, adapter, stream, owner, ttl):
        yield None
        return
    lease = HeldLease(adapter, stream, owner, ttl)
    renewer = asyncio.create_task(_renew(store, lease), name=f"lease {adapter}:{stream}")
    try:
        yield lease
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            # Not in a thread: this also runs while the task is being cancelled at shutdown.
            store.release_lease(adapter, stream, owner)
        except Exception:  # it expires by itself; a failed release only delays the next owner by ttl
            log.warning("lease %s:%s: release failed; it expires in %.0f s", adapter, stream, ttl, exc_info=True)


async def _renew(store: LeaseStore, lease: HeldLease) -> None:
    interval = max(lease.ttl / 3, 0.05)
    while True:
        await asyncio.sleep(interval)
        try:
            ok = await asyncio.to_thread(store.renew_lease, lease.adapter, lease.stream, lease.owner, lease.ttl)
        except Exception:
            log.warning("lease %s:%s: renewal failed; retrying", lease.adapter, lease.stream, exc_info=True)
            continue
        if not ok:
            lease.lost = True
            log.error(
                "lease %s:%s: taken over (another replica, or an operator's pause); this run stops",
                lease.adapter,
                lease.stream,
            )
            return
