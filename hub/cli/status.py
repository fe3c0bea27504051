"""``tanpuhui status``: the console's overview for terminals and scripts, read from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson
from rich.markup import escape
from rich.table import Table

from ..console.overview import overview
from ..server.settings import ServerSettings
from ..server.streams import Configured
from ..web import duration, when
from .common import CONFIG_OPTION, err, friendly, open_hub, out


@click.command()
@CONFIG_OPTION
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the overview as one JSON document, the one the admin API answers to GET /v1/admin/overview.",
)
@friendly
def status(config_path: Path, as_json: bool) -> None:
    """Each stream's last and next run, freshness and cursor; each sink's state and backlog.

    Read from the store the sidecar shares, so it works beside a running `tanpuhui serve`. The next run is
    estimated from the schedule (the sidecar's own is on the console). A sink's state (ok, retrying, stopped,
    paused), last delivery and last error are those the replica draining it wrote to the store."""
    hub = open_hub(config_path)
    try:
        configured = Configured.load(hub)
        for problem in configured.problems:
            err.print(f"[yellow]warning:[/] {escape(problem)}")
        settings = ServerSettings.from_config(hub.config)
        table = settings.stream_schedules()
        schedules = {}
        for adapter, stream in configured.of_kind("pull"):
            chosen = table.get((adapter, stream)) or table.get((adapter, None))
            if chosen is not None:
                schedules[(adapter, stream)] = chosen.interval
        data = overview(
            hub.store,
            {key: info.kind for key, info in configured.streams.items()},
            schedules=schedules,
            sinks=list(hub.config.sinks),
            stale_after=settings.stale_after,
        )
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        click.echo(orjson.dumps(data.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    streams = Table(
        "stream",
        "kind",
        "schedule",
        "last run",
        "took",
        "items",
        "new",
        "dup",
        "quar.",
        "outcome",
        "next run",
        "freshness",
        "cursor",
        title="Streams",
    )
    for s in data.streams:
        r = s.last_run
        fresh = duration(s.freshness_seconds) if s.freshness_seconds is not None else "never"
        outcome = "-" if r is None else r.outcome + (f": {r.error}" if r.error else "")
        last: tuple[str, ...] = (
            (
                when(r.started_at),
                duration(r.seconds),
                *(str(v) for v in (r.items, r.inserted, r.duplicates, r.quarantined)),
            )
            if r
            else ("-",) * 6
        )
        if r is None and (q := s.last_request) is not None:  # a push stream: its newest webhook request
            last = (when(q.received_at), "-", str(q.items), "-", "-", str(q.quarantined))
            outcome = f"received (HTTP {q.status}, {q.records} record(s))"
        streams.add_row(
            f"{s.adapter}:{s.stream}" + (" (paused)" if s.paused else ""),
            s.kind,
            f"every {duration(s.schedule_seconds)}" if s.schedule_seconds else "-",
            *last,
            escape(outcome),  # a partner's error text, "[secret]" where a secret was: not rich markup
            when(s.next_run),
            f"[red]{fresh}[/]" if s.stale else fresh,
            escape(s.cursor[:40]) or "-",
        )
    streams.columns[0].no_wrap = True
    out.print(streams)
    sinks = Table(
        "sink", "state", "backlog", "oldest waiting", "last delivery", "dead letters", "last error", title="Sinks"
    )
    for k in data.sinks:
        state = k.state if k.state in ("ok", "paused") else f"[red]{k.state}[/] since {when(k.since)}"
        sinks.add_row(
            k.name,
            state,
            str(k.backlog),
            when(k.oldest_waiting),
            when(k.last_delivery),
            str(k.dead_letters),
            escape((k.last_error or "-")[:80]) if k.state not in ("ok", "paused") else "-",
        )
    out.print(sinks)
    c = data.counts
    out.print(
        f"outbox {c['outbox']} · open quarantine {c['quarantine_open']} · dead letters {c['dead_letters']}"
        f" · held claims {c['held_claims']}"
    )
