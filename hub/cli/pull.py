"""Moving records: ``tanpuhui pull`` from partners into the store, ``tanpuhui forward`` from the store to sinks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .common import CONFIG_OPTION, err, friendly, open_hub, out, print_json

EXIT_LEASED = 75
"""``tanpuhui pull``'s status when a stream was not pulled because another process holds its lease (sysexits'
EX_TEMPFAIL: try again later)."""


@click.command(
    epilog="Exit status: 0 every stream pulled to its end; 1 a stream stopped on an error (the table says which); "
    f"2 a usage or configuration error; {EXIT_LEASED} a stream was not pulled because another process holds its "
    "lease (a pull running elsewhere, or one that crashed: its lease runs out after [hub] lease_ttl)."
)
@click.argument("target", metavar="ADAPTER[:STREAM]")
@CONFIG_OPTION
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=None,
    is_flag=False,
    flag_value=600.0,
    metavar="[SECONDS]",
    help="Wait for a stream another process holds the lease of, up to SECONDS (600 when given alone), "
    f"instead of skipping it with exit status {EXIT_LEASED}.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Print nothing when every stream pulled to its end (for cron); a failed or skipped stream is still named "
    "on stderr. The exit status says the same.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"summaries": [...]} instead of the table: per stream the fields of the admin API\'s pull summary.',
)
@friendly
def pull(target: str, config_path: Path, wait: float | None, quiet: bool, as_json: bool) -> None:
    """Pull one adapter (all its pull streams) or one stream from the saved cursor, once."""
    adapter, _, stream = target.partition(":")
    hub = open_hub(config_path, long_running=True)
    progress = None if quiet or as_json else _progress

    async def run() -> Any:
        try:
            return await hub.pull(
                adapter,
                stream or None,
                wait=wait or 0.0,
                progress=progress,
            )
        finally:
            await hub.aclose()

    summaries = asyncio.run(run())
    if as_json:
        from ..server.admin import summary_doc

        print_json({"summaries": [{**summary_doc(s), "leased_elsewhere": s.leased_elsewhere} for s in summaries]})
    elif quiet:
        for s in summaries:
            if s.error or s.leased_elsewhere:
                problem = s.error or "skipped: another process holds its lease (see --wait)"
                err.print(f"{s.adapter}:{s.stream}: {problem}", markup=False)
    else:
        _print_table(summaries)
    if any(s.error for s in summaries):
        sys.exit(1)
    if any(s.leased_elsewhere for s in summaries):
        sys.exit(EXIT_LEASED)


def _progress(page: Any) -> None:
    err.print(
        f"{page.adapter}:{page.stream}: page of {page.items} items, {page.inserted} new, {page.quarantined} quarantined",
        markup=False,
    )


def _print_table(summaries: Sequence[Any]) -> None:
    table = Table("stream", "pages", "pulled", "valid", "new records", "duplicates", "held", "quarantined", "error")
    for s in summaries:
        table.add_row(
            f"{s.adapter}:{s.stream}",
            *(str(x) for x in (s.pages, s.pulled, s.valid, s.inserted, s.duplicates, s.held)),
            f"{s.quarantined} (+{s.quarantine_repeats} again)" if s.quarantine_repeats else str(s.quarantined),
            s.error or ("skipped: another process holds its lease (see --wait)" if s.leased_elsewhere else ""),
        )
    out.print(table)


@click.command()
@CONFIG_OPTION
@click.option("--sink", "sink_names", multiple=True, help="Only these sinks (repeatable).")
@friendly
def forward(config_path: Path, sink_names: Sequence[str]) -> None:
    """Deliver committed records from the outbox to the configured sinks."""
    from ..forwarder import Forwarder

    hub = open_hub(config_path, long_running=True)

    async def run() -> Any:
        sinks = hub.build_sinks(list(sink_names) or None)
        forwarder = Forwarder.configured(
            hub.store, sinks, hub.config.forwarder, owner=hub.replica_id, lease_ttl=hub.config.hub.lease_ttl
        )
        try:
            return await forwarder.drain()
        finally:
            for sink in sinks.values():
                await sink.aclose()
            await hub.aclose()

    summary = asyncio.run(run())
    table = Table("sink", "delivered", "batches", "retries", "dead letters", "state", "last error", title="Forwarding")
    for name, s in sorted(summary.sinks.items()):
        state = (
            "gone (410): stopped"
            if s.gone
            else "failed"
            if s.failed
            else "retrying: left in the outbox for the next run"
            if s.retrying
            else "ok"
        )
        if s.leased_elsewhere:
            state = "skipped: another replica drains it"
        table.add_row(
            name, str(s.delivered), str(s.batches), str(s.retries), str(s.dead_lettered), state, s.last_error or ""
        )
    out.print(table)
    if not summary.ok:
        sys.exit(1)
