"""The audit log (list, verify) and the schema drift report."""

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

from .common import CONFIG_OPTION, JSON_OPTION, UserError, err, friendly, open_hub, out, print_json


@click.group()
def audit() -> None:
    """The tamper-evident audit log: what the hub accepted and what operators did, hash-chained.

    Each accepted batch (a pulled page, a webhook), quarantine replay and resolution, dead letter and admin
    action is appended in the transaction that does it. See docs/reliability.md.
    """


def _audit_store(config_path: Path) -> tuple[Any, Any]:
    from ..audit import AuditLog

    hub = open_hub(config_path)
    if not isinstance(hub.store, AuditLog):
        asyncio.run(hub.aclose())
        raise UserError(f"{config_path}: this store ({type(hub.store).__name__}) keeps no audit log")
    return hub, hub.store


@audit.command("list")
@CONFIG_OPTION
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many entries (the newest, unless --after).",
)
@click.option("--after", "after_seq", type=int, default=None, help="Entries after this sequence number.")
@click.option("--action", default=None, help="Only this action (page.commit, webhook.accept, quarantine.replay ...).")
@JSON_OPTION
@friendly
def audit_list(config_path: Path, limit: int, after_seq: int | None, action: str | None, as_json: bool) -> None:
    """List audit log entries.

    With --json: {"entries": [...]}, each with seq, at, actor, action, subject, details, prev_hash and hash.
    """
    from ..audit import AuditEntry, iter_pages

    hub, log = _audit_store(config_path)
    try:
        newest = after_seq is None
        if newest and action is None:  # the newest `limit` entries, without reading the whole log
            head = log.audit_head()
            after_seq = max(0, (head[0] if head else 0) - limit)
        start = after_seq or 0
        entries: list[AuditEntry] = []
        for entry in iter_pages(lambda after, n: log.audit_entries(max(after, start), n)):
            if action is None or entry.action == action:
                entries.append(entry)
                if not newest and len(entries) >= limit:
                    break
        entries = entries[-limit:]
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        print_json({"entries": [e.as_dict() for e in entries]})
        return
    table = Table("seq", "at", "actor", "action", "subject", "details", "hash", title="Audit log")
    for e in entries:
        details = orjson.dumps(e.details, option=orjson.OPT_SORT_KEYS).decode()
        table.add_row(
            str(e.seq),
            e.at,
            e.actor,
            e.action,
            escape(e.subject),  # what an operator typed or a partner sent, not rich markup
            escape(details if len(details) <= 160 else details[:157] + "..."),
            e.hash[:12],
        )
    out.print(table)


@audit.command("verify")
@CONFIG_OPTION
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    help="A head printed by an earlier verify and kept elsewhere: the chain must still contain it (repeatable).",
)
@click.option("--records", is_flag=True, help="Also check every outbox row against its batch's digest.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def audit_verify(config_path: Path, anchors: Sequence[str], records: bool, as_json: bool) -> None:
    """Check the audit log's hash chain: detects an edited, deleted or replaced entry and says which.

    Exit status 0 when intact, 1 when tampered with. Prints the head (SEQ:HASH); record it elsewhere from time
    to time and pass it back with --anchor to detect a rewrite of the whole log.
    """
    from ..audit import parse_anchor, verify_log

    try:
        parsed = [parse_anchor(a) for a in anchors]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    hub, log = _audit_store(config_path)
    try:
        result = verify_log(log, anchors=parsed, records=records)
    finally:
        asyncio.run(hub.aclose())
    head = f"{result.head[0]}:{result.head[1]}" if result.head else None
    if as_json:
        doc = {
            "ok": result.ok,
            "entries": result.entries,
            "head": head,
            "records_checked": result.records_checked,
            "problems": result.problems,
            "bad_seqs": result.bad_seqs,
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif result.ok:
        checked = f", {result.records_checked} outbox rows match their batches" if records else ""
        out.print(f"audit log intact: {result.entries} entries{checked}; head {head or '(empty)'}", markup=False)
    else:
        err.print(f"[bold red]audit log tampered with:[/] {len(result.bad_seqs)} problem(s)")
        for problem in result.problems:
            out.print(f"  {problem}", markup=False)
    if not result.ok:
        sys.exit(1)


@click.command()
@CONFIG_OPTION
@click.option("--adapter", default=None, help="Only this adapter's streams.")
@JSON_OPTION
@friendly
def drift(config_path: Path, adapter: str | None, as_json: bool) -> None:
    """Schema drift: top-level fields partners send that their stream's schema does not name.

    With --json: {"drift": [...]}, the fields of each stream's "drift" in the admin API's GET /v1/admin/streams,
    with the adapter and stream.

    Such fields are accepted (the schemas admit additional properties) and kept here, so a partner's interface
    change is noticed; a field that changes type fails validation instead and lands in quarantine.
    """
    from ..store.base import DriftLog

    hub = open_hub(config_path)
    try:
        store = hub.store
        entries = store.schema_drift(adapter) if isinstance(store, DriftLog) else []
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        rows = [
            {
                "adapter": d.adapter,
                "stream": d.stream,
                "field": d.field,
                "items": d.items,
                "example": d.example,
                "first_seen": d.first_seen,
                "last_seen": d.last_seen,
            }
            for d in entries
        ]
        print_json({"drift": rows})
        return
    if not entries:
        out.print("no schema drift: every field partners sent is named by their schema", markup=False)
        return
    table = Table("adapter:stream", "field", "items", "example", "first seen", "last seen", title="Schema drift")
    for d in entries:
        table.add_row(
            f"{d.adapter}:{d.stream}", escape(d.field), str(d.items), escape(d.example), d.first_seen, d.last_seen
        )
    out.print(table)
