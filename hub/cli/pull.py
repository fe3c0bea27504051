"""Moving records: ``tanpuhui pull`` from partners into the store, ``tanpuhui forward`` from the store to sinks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from ..pausing import Pause, pauses
from ..web import when
from .common import CONFIG_OPTION, err, friendly, open_hub, out, print_json

if TYPE_CHECKING:
    from ..drivers.pull import Progress, PullSummary
    from ..forwarder import ForwardSummary
    from ..hub import Hub
    from ..pipeline import PageResult
    from ..pull_workers import PullWorkers

EXIT_LEASED = 75
"""``tanpuhui pull``'s status when a stream was not pulled because another process holds its lease (sysexits'
EX_TEMPFAIL: try again later)."""
EXIT_PAUSED = 4
"""``tanpuhui pull``'s status when a stream was not pulled because an operator paused it (trying again will not
help until it is resumed)."""

WAIT_OPTION = click.option(
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


WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Pull the streams in this many processes at once (each on its own core), a partitioned stream's partitions "
    "(partitions = {STREAM = N} in the adapter's table) counting as streams; see docs/scaling.md.",
)


@click.command(
    epilog="Exit status: 0 every stream pulled to its end; 1 a stream stopped on an error (the table says which); "
    "2 a usage or configuration error (also: a stream whose partitions changed since its last pull, until "
    f"`tanpuhui repartition` acknowledges the new split); {EXIT_PAUSED} a stream was not pulled because an operator paused it "
    "(resume it on the console's stream page or with `tanpuhui resume`); "
    f"{EXIT_LEASED} a stream was not pulled because another process holds its "
    "lease (a pull running elsewhere, or one that crashed: its lease runs out after [hub] lease_ttl)."
)
@click.argument("target", metavar="ADAPTER[:STREAM]")
@CONFIG_OPTION
@WAIT_OPTION
@WORKERS_OPTION
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
def pull(target: str, config_path: Path, wait: float | None, workers: int, quiet: bool, as_json: bool) -> None:
    """Pull one adapter (all its pull streams) or one stream from the saved cursor, once."""
    adapter, _, stream = target.partition(":")
    progress = None if quiet or as_json else (lambda page: err.print(page_line(page), markup=False))
    if workers > 1:
        pool = start_workers(config_path, [(adapter, stream or None)], workers, wait, progress)
        summaries = pool.wait()
    else:
        hub: Hub = open_hub(config_path, long_running=True)

        async def run() -> list[PullSummary]:
            try:
                return await hub.pull(adapter, stream or None, wait=wait or 0.0, progress=progress)
            finally:
                await hub.aclose()

        summaries = asyncio.run(run())
    paused = paused_since(config_path, summaries)
    if as_json:
        from ..server.admin import summary_doc

        print_json(
            {
                "summaries": [
                    {**summary_doc(s), "leased_elsewhere": s.leased_elsewhere, "paused": s.paused} for s in summaries
                ]
            }
        )
    elif quiet:
        for s in summaries:
            if s.error or s.leased_elsewhere:
                problem = s.error or "skipped: another process holds its lease (see --wait)"
                err.print(f"{s.adapter}:{s.stream}: {problem}", markup=False)
    else:
        out.print(pull_table(summaries))
    if not as_json:
        for s in summaries:
            if s.paused:
                err.print(_paused_text(s.adapter, s.stream, paused.get((s.adapter, s.stream))), markup=False)
    exit_for(summaries)


def start_workers(
    config_path: Path,
    targets: Sequence[tuple[str, str | None]],
    workers: int,
    wait: float | None,
    progress: Progress | None,
    *,
    check: Callable[[Hub], object] | None = None,
) -> PullWorkers:
    """Fork ``workers`` processes pulling the streams of ``targets`` ((adapter, stream or None for all), checked
    here first, with ``check(hub)`` if given: a configuration error stops the command before any worker starts);
    see :mod:`tanpuhui.hub.pull_workers`."""
    from ..drivers.pull import pull_stream_names
    from ..pull_workers import PullWorkers
    from ..splits import check_splits

    hub: Hub = open_hub(config_path)
    try:
        keys = [(a, name) for a, s in targets for name in pull_stream_names(hub.adapter(a), s)]
        for a, name in keys:
            hub.stream(a, name)  # an unknown stream is refused here, naming the ones there are
        for a in dict.fromkeys(a for a, _ in keys):  # a changed split is refused before any worker starts
            check_splits(hub.store, hub.adapter(a), [name for b, name in keys if b == a], hub.config.source)
        if check is not None:
            check(hub)
    finally:
        asyncio.run(hub.aclose())

    def job(mine: list[tuple[str, str]]) -> list[PullSummary]:
        worker_hub: Hub = open_hub(config_path, long_running=True)

        async def run() -> list[PullSummary]:
            try:
                found: list[PullSummary] = []
                for a, name in mine:
                    found += await worker_hub.pull(a, name, wait=wait or 0.0, progress=progress)
                return found
            finally:
                await worker_hub.aclose()

        return asyncio.run(run())

    pool = PullWorkers(keys, workers, job)
    pool.start()
    return pool


def paused_since(config_path: Path, summaries: Sequence[PullSummary]) -> dict[tuple[str, str], Pause]:
    """Since when and by whom the streams ``summaries`` skipped as paused were paused (for the message)."""
    skipped = [(s.adapter, s.stream) for s in summaries if s.paused]
    if not skipped:
        return {}
    hub = open_hub(config_path)
    try:
        return pauses(hub.store, skipped)
    finally:
        asyncio.run(hub.aclose())


def exit_for(summaries: Sequence[PullSummary]) -> None:
    """Exit with ``pull``'s documented status (see its epilog): 1 on an error, then paused, then leased."""
    if any(s.error for s in summaries):
        sys.exit(1)
    if any(s.paused for s in summaries):
        sys.exit(EXIT_PAUSED)
    if any(s.leased_elsewhere for s in summaries):
        sys.exit(EXIT_LEASED)


def page_line(page: PageResult) -> str:
    """The progress line of one committed page (stderr)."""
    return (
        f"{page.adapter}:{page.stream}: page of {page.items} items, {page.inserted} new, {page.quarantined} quarantined"
    )


def pull_table(summaries: Sequence[PullSummary]) -> Table:
    """What ``pull`` (and ``run``) print: one row per stream."""
    table = Table("stream", "pages", "pulled", "valid", "new records", "duplicates", "held", "quarantined", "error")
    for s in summaries:
        table.add_row(
            f"{s.adapter}:{s.stream}",
            *(str(x) for x in (s.pages, s.pulled, s.valid, s.inserted, s.duplicates, s.held)),
            f"{s.quarantined} (+{s.quarantine_repeats} again)" if s.quarantine_repeats else str(s.quarantined),
            escape(s.error or "")  # a partner's text (and "[secret]"), not rich markup
            or ("skipped: paused" if s.paused else "")
            or ("skipped: another process holds its lease (see --wait)" if s.leased_elsewhere else ""),
        )
    return table


def _paused_text(adapter: str, stream: str, pause: Pause | None) -> str:
    key = f"{adapter}:{stream}"
    text = f"{key} is paused"
    if pause is not None:
        text += f" since {when(pause.since)} UTC"
        if pause.by:
            text += f" (paused by {pause.by} at {when(pause.asked_at)} UTC)"
    return (
        f"{text}: not pulled. Resume it with `tanpuhui resume --config hub.toml {key}` or the Resume button on "
        f"the console's page /console/streams/{adapter}/{stream}."
    )


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
    out.print(forward_table(summary))
    if not summary.ok:
        sys.exit(1)


def forward_table(summary: ForwardSummary) -> Table:
    """What ``forward`` (and ``run``) print: one row per sink."""
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
            name,
            str(s.delivered),
            str(s.batches),
            str(s.retries),
            str(s.dead_lettered),
            state,
            escape(s.last_error or ""),
        )
    return table
