"""``tanpuhui run``: pull every configured adapter and forward what it commits, in one process (for cron)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..config import load_config
from .common import CONFIG_OPTION, err, friendly, open_hub, out
from .pull import EXIT_LEASED, WAIT_OPTION, WORKERS_OPTION, forward_table, page_line, pull_table, start_workers


@click.command(
    epilog="Exit status: 0 every stream pulled to its end and every sink delivered; 1 a stream stopped on an error "
    "or a sink did not deliver everything (dead letters, gone, failed, or still retrying: what is left stays in the "
    f"outbox for the next run); 2 a usage or configuration error; {EXIT_LEASED} (as pull) nothing failed but a "
    "stream was not pulled because another process holds its lease: try again later. A sink another process is "
    "draining is skipped, as by forward. A stream an operator paused is skipped (the table says so) without "
    "changing the status."
)
@CONFIG_OPTION
@click.option(
    "--adapter",
    "adapter_names",
    multiple=True,
    metavar="NAME",
    help="Pull only this adapter (repeatable); default: every [adapters.NAME] of the configuration.",
)
@click.option("--sink", "sink_names", multiple=True, metavar="NAME", help="Forward only to this sink (repeatable).")
@WAIT_OPTION
@WORKERS_OPTION
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Print nothing when all went well: no page lines, no tables; problems still go to stderr.",
)
@friendly
def run(
    config_path: Path,
    adapter_names: Sequence[str],
    sink_names: Sequence[str],
    wait: float | None,
    workers: int,
    quiet: bool,
) -> None:
    """Pull every pull stream of the configured adapters and forward the new records to the sinks, in one command.

    Each page is committed (records, quarantine, cursor) before its records are forwarded, and each sink's position
    moves only once its batch was delivered, as with pull then forward; the records of a page this process just
    committed go to the sinks without being read back from the store. Run it from cron or a systemd timer.
    With --workers N, N forked processes pull (as pull --workers) while this one forwards what they commit.
    """
    from ..feed import CommittedFeed
    from ..forwarder import Forwarder

    progress = None if quiet else lambda page: err.print(page_line(page), markup=False)
    sinks_wanted = list(sink_names) or None
    pool = None
    if workers > 1:
        adapters = list(adapter_names) or list(load_config(config_path).adapters)
        targets = [(a, None) for a in adapters]
        pool = start_workers(config_path, targets, workers, wait, progress, check=lambda h: h.build_sinks(sinks_wanted))
    hub = open_hub(config_path, long_running=True)
    adapters = list(adapter_names) or list(hub.config.adapters)

    async def job() -> Any:
        if pool is None:  # a changed split is refused before anything is pulled or forwarded (workers: checked)
            try:
                for name in adapters:
                    await hub.pulls.check_splits(name)
            except BaseException:
                await hub.aclose()
                raise
        sinks = hub.build_sinks(sinks_wanted)
        if pool is None:  # this process commits the pages: they go to the sinks from memory
            feed = CommittedFeed(hub.store)
            hub.pulls.on_commit = feed.add
            read, follow = feed.read_outbox, feed.follower
        else:  # the workers commit them: read back from the outbox until they are done
            feed, read, follow = None, None, pool.follower
        forwarder = Forwarder.configured(
            hub.store,
            sinks,
            hub.config.forwarder,
            owner=hub.replica_id,
            lease_ttl=hub.config.hub.lease_ttl,
            read=read,
        )
        forwarding = asyncio.ensure_future(forwarder.drain(follow=follow))
        summaries = []
        try:
            if pool is not None:
                summaries = await asyncio.to_thread(pool.wait)
            else:
                for name in adapters:
                    summaries += await hub.pull(name, wait=wait or 0.0, progress=progress)
        finally:
            if feed is not None:
                feed.close()
            try:
                forwarded = await forwarding
            finally:
                for sink in sinks.values():
                    await sink.aclose()
                await hub.aclose()
        return summaries, forwarded

    summaries, forwarded = asyncio.run(job())
    if not quiet:
        out.print(pull_table(summaries))
        out.print(forward_table(forwarded))
    else:
        for s in summaries:
            if s.error:
                err.print(f"pull {s.adapter}:{s.stream} stopped: {s.error}", markup=False)
        for name, f in sorted(forwarded.sinks.items()):
            if f.dead_lettered or f.gone or f.failed or f.retrying:
                err.print(
                    f"sink {name}: {f.delivered} delivered, {f.dead_lettered} dead-lettered"
                    f"{', gone (410)' if f.gone else ''}{', failed' if f.failed else ''}"
                    f"{', retrying (left in the outbox)' if f.retrying else ''}: {f.last_error or ''}",
                    markup=False,
                )
    if any(s.error for s in summaries) or not forwarded.ok:
        sys.exit(1)
    if any(s.leased_elsewhere for s in summaries):
        sys.exit(EXIT_LEASED)
