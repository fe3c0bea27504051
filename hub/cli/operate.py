"""What an operator mends: quarantined items and dead letters (list, show, replay)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson
from rich.markup import escape
from rich.table import Table

from tanpuhui.sdk import redact

from .common import CONFIG_OPTION, JSON_OPTION, UserError, choice_option, friendly, open_hub, out, print_json


@click.group()
def quarantine() -> None:
    """Inspect and replay items that failed validation or normalization."""


@quarantine.command("list")
@CONFIG_OPTION
@click.option("--adapter", default=None, help="Only this adapter's items.")
@choice_option(
    "--status",
    ["open", "resolved", "discarded"],
    "open",
    "Open items wait for a fix; resolved ones were replayed into records; discarded ones were given up.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many items.")
@JSON_OPTION
@friendly
def quarantine_list(config_path: Path, adapter: str | None, status: str, limit: int, as_json: bool) -> None:
    """List quarantined items.

    With --json: {"entries": [...]}, the fields of the admin API's GET /v1/admin/quarantine.
    """
    hub = open_hub(config_path)
    try:
        entries = hub.store.quarantine_list(adapter, status, limit)
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        from ..server.admin import entry_doc

        print_json({"entries": [entry_doc(e) for e in entries]})
        return
    table = Table(
        "id", "adapter:stream", "stage", "partner id", "first error", "errors", "at", title=f"Quarantine ({status})"
    )
    for e in entries:
        first = e.problems[0] if e.problems else {"pointer": "", "message": ""}
        table.add_row(
            str(e.id),
            f"{e.adapter}:{e.stream}",
            e.stage,
            escape(e.partner_record_id),  # a partner's text, not rich markup
            escape(f"{first['pointer'] or '/'}: {first['message']}"),
            str(len(e.problems)),
            e.created_at,
        )
    out.print(table)


@quarantine.command("show")
@click.argument("entry_id", type=int)
@CONFIG_OPTION
@JSON_OPTION
@friendly
def quarantine_show(entry_id: int, config_path: Path, as_json: bool) -> None:
    """Show one quarantined item: every error, and the raw item with personal data masked.

    With --json: the document of the admin API's GET /v1/admin/quarantine/{id} (the entry and its masked "raw").
    """
    from ..encoding import dumps_any
    from ..privacy_view import masked

    hub = open_hub(config_path)
    try:
        entry = hub.store.quarantine_get(entry_id)
        if entry is None:
            raise UserError(f"no quarantine entry {entry_id}")
        raw = masked(hub.quarantine_raw(entry), hub.stream_schema(entry.adapter, entry.stream).personal_fields)
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        from ..server.admin import entry_doc

        sys.stdout.write(dumps_any({**entry_doc(entry), "raw": raw}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out.print(
        f"entry {entry.id}  {entry.adapter}:{entry.stream}  stage={entry.stage}  status={entry.status}  at {entry.created_at}"
    )
    for p in entry.problems:
        out.print(f"  {p['pointer'] or '/'}: {p['message']}", markup=False)
    out.print("raw item (personal data masked):")
    out.print(dumps_any(raw, option=orjson.OPT_INDENT_2).decode(), markup=False)


@quarantine.command("replay")
@click.argument("entry_ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every open entry.")
@click.option(
    "--release",
    is_flag=True,
    help="Credit entries held by a plausibility rule even if the rule still fires (written into the record).",
)
@CONFIG_OPTION
@friendly
def quarantine_replay(entry_ids: Sequence[int], replay_all: bool, release: bool, config_path: Path) -> None:
    """Re-run quarantined items through the pipeline (after a partner or adapter fix, or a new factor vintage).

    Items held by a plausibility rule (stage "plausibility") are checked again against the thresholds in force;
    --release credits them anyway.
    """
    hub = open_hub(config_path)
    ids = list(entry_ids)
    if replay_all:
        ids += [e.id for e in hub.store.quarantine_list(None, "open", 1_000_000)]
    if not ids:
        raise UserError("give entry ids or --all")

    async def run() -> Any:
        try:
            return await hub.replay_quarantine(ids, release=release)
        finally:
            await hub.aclose()

    results = asyncio.run(run())
    for r in results:
        detail = "; ".join(f"{p.pointer or '/'}: {p.message}" for p in r.problems)
        out.print(f"{r.entry_id}: {r.status}{' - ' + detail if detail else ''}", markup=False)
    if any(r.status != "resolved" for r in results):
        sys.exit(1)


@click.group("dead-letters")
def dead_letters() -> None:
    """List and replay deliveries that exhausted their retries."""


@dead_letters.command("list")
@CONFIG_OPTION
@click.option("--sink", default=None, help="Only this sink.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many dead letters."
)
@JSON_OPTION
@friendly
def dead_letters_list(config_path: Path, sink: str | None, limit: int, as_json: bool) -> None:
    """List dead letters.

    With --json: {"dead_letters": [...]}, the fields of the admin API's GET /v1/admin/dead-letters.
    """
    hub = open_hub(config_path)
    try:
        letters = hub.store.dead_letters(sink, limit)
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        from ..server.admin import dead_letter_doc

        print_json({"dead_letters": [dead_letter_doc(d) for d in letters]})
        return
    table = Table("id", "sink", "record id", "attempts", "error", "at", title="Dead letters")
    for d in letters:
        table.add_row(str(d.id), d.sink, d.record_id, str(d.attempts), escape(redact(d.error)), d.created_at)
    out.print(table)


@dead_letters.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@CONFIG_OPTION
@friendly
def dead_letters_replay(ids: Sequence[int], replay_all: bool, config_path: Path) -> None:
    """Send dead letters again; delivered ones are removed."""
    from ..forwarder import Forwarder

    hub = open_hub(config_path)
    chosen = list(ids) + ([d.id for d in hub.store.dead_letters(None, 1_000_000)] if replay_all else [])
    if not chosen:
        raise UserError("give dead-letter ids or --all")

    async def run() -> Any:
        sinks = hub.build_sinks()
        try:
            return await Forwarder.configured(hub.store, sinks, hub.config.forwarder).replay(chosen)
        finally:
            for sink in sinks.values():
                await sink.aclose()
            await hub.aclose()

    result = asyncio.run(run())
    out.print(
        f"delivered {len(result.delivered)}, still failing {len(result.still_failing)}, missing {len(result.missing)}"
    )
    for sink_name, error in result.errors.items():
        out.print(f"  {sink_name}: {error}", markup=False)
    if result.still_failing:
        sys.exit(1)
