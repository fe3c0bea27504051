"""``tanpuhui repartition``: acknowledge a change of a stream's split (``partitions`` in the adapter's table).

A pull refuses a stream whose configured split has no checkpoint yet while another split of it has one
(:mod:`tanpuhui.hub.splits`): reading it in the new split would fetch the whole feed again. This command is the
operator's "yes, do that": it removes the other splits' checkpoints in one transaction, with an audit entry
(actor ``cli@HOST``).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tanpuhui.sdk import ConfigError

from ..store.leases import LeaseHeld
from .common import CONFIG_OPTION, friendly, open_hub, out

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["repartition"]


@click.command(
    epilog="Exit status: 0 done (or nothing to do); 2 a usage or configuration error, or a run holds one of the "
    "old split's streams now (try again when it ends; nothing was removed)."
)
@click.argument("target", metavar="ADAPTER:STREAM")
@CONFIG_OPTION
@friendly
def repartition(target: str, config_path: Path) -> None:
    """Acknowledge a change of STREAM's split: remove the checkpoints of its other splits so the next pull reads
    it, in the parts configured now (partitions = {STREAM = N} in the adapter's table; none: unsplit), from the
    partner's beginning.

    Records already credited are recognised by their ids and not credited twice; the whole feed is fetched again.
    The removal and an audit entry are one transaction; refused while a run holds one of the old streams' leases
    (an operator's pause on them is lifted with them). See docs/scaling.md."""
    from ..splits import describe
    from ..splits import repartition as acknowledge

    adapter_name, sep, base = target.partition(":")
    if not sep or not base:
        raise ConfigError(f"give the stream as ADAPTER:STREAM, got {target!r}")
    hub: Hub = open_hub(config_path)
    try:
        try:
            done = acknowledge(hub.store, hub.adapter(adapter_name), base, f"cli@{socket.gethostname()}")
        except LeaseHeld as exc:
            raise ConfigError(
                f"{target}: a run holds the old split now ({exc}); nothing was removed: try again when it ends"
            ) from None
    finally:
        asyncio.run(hub.aclose())
    split = describe(base, done.parts)
    if not done.removed:
        out.print(f"{target}: no checkpoint of another split on file; nothing to do (configured {split})", markup=False)
        return
    out.print(f"{target}: removed the checkpoints of the split no longer configured:", markup=False)
    for status in done.removed:
        when = f"last committed {status.last_success[:19].replace('T', ' ')} UTC" if status.last_success else ""
        out.print(f"  {adapter_name}:{status.stream} {when}".rstrip(), markup=False)
    for stream in done.paused:
        out.print(f"  (the pause of {adapter_name}:{stream} was lifted with it)", markup=False)
    out.print(
        f"The next pull reads {target} {split} from the partner's beginning; records already credited are not "
        "credited again. Recorded in the audit log (cli.stream.repartition).",
        markup=False,
    )
