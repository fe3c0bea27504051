"""Leases: which replica pulls a stream, or drains a sink, right now.

A lease is a row ``(adapter, stream) -> owner, expires_at`` in the store. A replica takes it before a pull run
(sinks use the scope :data:`SINK_LEASES`: ``(SINK_LEASES, sink_name)``), renews it while the run goes on, and
releases it at the end. A replica that dies stops renewing: its lease expires after ``ttl`` seconds and another
replica takes it and carries on from the committed cursor (or sink position). Every page of a leased pull is
committed with ``lease_owner``: the store checks, in the page's transaction, that the lease is still this
replica's, so a replica that stalled past its lease cannot move the cursor under the new owner
(:class:`LeaseLost`; nothing of the page is written).

Expiry is decided by the store's clock: the database server's for PostgreSQL, the host's for SQLite.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from tanpuhui.sdk import TanpuhuiError

__all__ = ["SINK_LEASES", "Lease", "LeaseHeld", "LeaseLost", "new_owner_id"]

SINK_LEASES = "@sink"
"""The ``adapter`` part of a sink's lease key (adapter names cannot start with ``@``)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease on file (ISO timestamps)."""

    adapter: str
    stream: str
    owner: str
    acquired_at: str
    expires_at: str


class LeaseLost(TanpuhuiError):
    """A commit made under a lease that is not the committer's any more; nothing was written."""

    def __init__(self, adapter: str, stream: str, owner: str) -> None:
        super().__init__(f"{adapter}:{stream}: the lease of {owner} expired and another replica took it over")
        self.adapter = adapter
        self.stream = stream
        self.owner = owner


class LeaseHeld(TanpuhuiError):
    """A change refused because a stream it concerns is leased now (a run is on it); nothing was written."""

    def __init__(self, leases: list[Lease]) -> None:
        held = ", ".join(f"{x.adapter}:{x.stream} (by {x.owner} until {x.expires_at})" for x in leases)
        super().__init__(f"leased now: {held}")
        self.leases = leases


def new_owner_id() -> str:
    """A replica id for lease ownership: host, process id and a random part (unique even across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
