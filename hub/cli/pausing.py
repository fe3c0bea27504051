"""``tanpuhui pause`` and ``tanpuhui resume``: the console's pause buttons for terminals and scripts.

A pause is kept in the store every worker and replica shares (:mod:`tanpuhui.hub.pausing`), so it works beside a
running `tanpuhui serve`, and it is written to the audit log with ``cli@HOST`` as its actor.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tanpuhui.sdk import ConfigError

from ..audit import AuditEvent, AuditLog
from ..pausing import SINK_LEASES, pause_sink, pause_soon, paused
from ..pausing import resume as lift_pause
from .common import CONFIG_OPTION, friendly, open_hub, out

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["pause", "resume"]

EXIT_BUSY = 75
"""``tanpuhui pause``: a run or a delivery holds the stream or sink now (try again when it ends)."""

_SINK = click.option("--sink", "is_sink", is_flag=True, help="TARGET is a sink name, not ADAPTER:STREAM.")


def _key(hub: Hub, target: str, is_sink: bool) -> tuple[str, str, str]:
    """``(lease adapter, lease stream, subject)`` of a configured stream or sink; ConfigError naming what exists."""
    config = hub.config
    if is_sink:
        if target not in config.sinks:
            raise ConfigError(f"no sink {target!r}; configured sinks: {', '.join(sorted(config.sinks)) or 'none'}")
        return SINK_LEASES, target, target
    adapter, sep, stream = target.partition(":")
    if not sep or not stream:
        raise ConfigError(f"give the stream as ADAPTER:STREAM, got {target!r}")
    if adapter not in config.adapters:
        known = ", ".join(sorted(config.adapters)) or "none"
        raise ConfigError(f"adapter {adapter!r} is not configured in [adapters]; configured: {known}")
    names = [s.name for s in hub.adapter(adapter).streams()]
    if stream not in names:
        raise ConfigError(f"{adapter!r} has no stream {stream!r}; its streams: {', '.join(names)}")
    return adapter, stream, target


def _audit(hub: Hub, action: str, subject: str) -> None:
    store = hub.store
    if isinstance(store, AuditLog):
        store.audit_append([AuditEvent(action, subject, {}, actor=f"cli@{socket.gethostname()}")])


@click.command()
@click.argument("target")
@CONFIG_OPTION
@_SINK
@friendly
def pause(target: str, config_path: Path, is_sink: bool) -> None:
    """Pause a stream's pulls (TARGET is ADAPTER:STREAM) or a sink's deliveries (--sink NAME) on every replica.

    Scheduled, manual and CLI pulls of a paused stream skip it (`tanpuhui pull` exits 4); a paused sink's records
    wait in the outbox; a sink riding out an outage stops retrying after the try in hand. Exit status 75: a pull
    run holds the stream now; try again when it ends."""
    hub: Hub = open_hub(config_path)
    try:
        adapter, stream, subject = _key(hub, target, is_sink)
        what = "sink" if is_sink else "stream"
        _audit(hub, f"cli.{what}.pause", subject)
        done = pause_sink(hub.store, stream) if is_sink else asyncio.run(pause_soon(hub.store, adapter, stream))
    finally:
        asyncio.run(hub.aclose())
    if not done:
        out.print(f"{subject} is busy (a run or a delivery holds it now): pause it when that ends", markup=False)
        sys.exit(EXIT_BUSY)
    out.print(
        f"{subject} paused; resume it with `tanpuhui resume --config {config_path}"
        f"{' --sink' if is_sink else ''} {subject}`",
        markup=False,
    )


@click.command()
@click.argument("target")
@CONFIG_OPTION
@_SINK
@friendly
def resume(target: str, config_path: Path, is_sink: bool) -> None:
    """Resume a paused stream (ADAPTER:STREAM) or sink (--sink NAME) on every replica."""
    hub: Hub = open_hub(config_path)
    try:
        adapter, stream, subject = _key(hub, target, is_sink)
        was = (adapter, stream) in paused(hub.store)
        _audit(hub, f"cli.{'sink' if is_sink else 'stream'}.resume", subject)
        lift_pause(hub.store, adapter, stream)
    finally:
        asyncio.run(hub.aclose())
    out.print(f"{subject} resumed" if was else f"{subject} was not paused", markup=False)
