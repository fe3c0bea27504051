"""Verification: ``tanpuhui report`` (the signed reconciliation statement) and ``tanpuhui evidence`` (a verifier's
pack per record). docs/verification.md describes both."""

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

from .common import CONFIG_OPTION, UserError, file_option, friendly, open_hub, out


@click.command()
@CONFIG_OPTION
@click.option("--period", required=True, help="A month (2024-11) or a day (2024-11-05) of activity.")
@click.option("--timezone", "offset", default="+08:00", show_default=True, help="UTC offset of the period's days.")
@click.option("--sink", default=None, help="Only what this sink has been handed (its position), not the whole outbox.")
@click.option(
    "--forward",
    "forward_to",
    default=None,
    metavar="SINK",
    help="Also POST the statement to this http sink as a signed CloudEvent (org.tanpuhui.statement.v1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statement as JSON.")
@friendly
def report(
    config_path: Path, period: str, offset: str, sink: str | None, forward_to: str | None, as_json: bool
) -> None:
    """The reconciliation statement for a day or a month: totals per adapter, scenario and region.

    The totals are those of the current records (corrections replace what they supersede, voids remove) whose
    activity starts in the period: the sum of what a consumer holds from the forwarded events. With --forward,
    the statement goes to the sink's consumer signed like the records (Standard Webhooks).
    """
    from ..reconcile import STATEMENT_TYPE, build_statement, parse_period

    parsed = parse_period(period, offset)
    hub = open_hub(config_path)
    try:
        if sink is not None and sink not in hub.config.sinks:
            raise UserError(f"{config_path}: --sink {sink!r}: no [sinks.{sink}] table")
        statement = build_statement(hub.store, parsed, sink=sink)
        headers: dict[str, str] | None = None
        if forward_to is not None:
            headers = asyncio.run(_forward(hub, forward_to, STATEMENT_TYPE, statement))
    finally:
        asyncio.run(hub.aclose())
    if as_json:
        doc = dict(statement)
        if headers is not None:
            doc["forwarded"] = {"sink": forward_to, **{k: v for k, v in headers.items() if k.startswith("webhook-")}}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    title = f"Statement {statement['period']} ({statement['from']} .. {statement['to']}), through seq {statement['through_seq']}"
    # the records' own text, shown as it is (not rich markup)
    table = Table("adapter", "scenario", "region", "records", "kgCO2e", title=escape(title))
    for row in statement["rows"]:
        cells = (escape(str(row[k])) for k in ("adapter", "scenario", "region"))
        table.add_row(*cells, str(row["records"]), f"{row['kgco2e']:.6f}")
    totals = statement["totals"]
    table.add_row("total", "", "", str(totals["records"]), f"{totals['kgco2e']:.6f}")
    out.print(table)
    events = statement["events"]
    out.print(
        f"events in the period: {events['created']} created, {events['corrected']} corrected, "
        f"{events['voided']} voided; records_sha256 {statement['records_sha256']}",
        markup=False,
    )
    if headers is not None:
        out.print(f"forwarded to sink {forward_to!r}: webhook-id {headers['webhook-id']}", markup=False)


async def _forward(hub: Any, name: str, event_type: str, statement: dict[str, Any]) -> dict[str, str]:
    from ..sinks.http import HttpSink

    sinks = hub.build_sinks([name])
    sink = sinks[name]
    try:
        if not isinstance(sink, HttpSink):
            raise UserError(f"--forward {name!r}: a statement goes to an http sink, [sinks.{name}] is {sink.kind!r}")
        event_id = f"statement-{statement['period']}-{statement['through_seq']}"
        data = orjson.dumps(statement)
        return await sink.send_event(event_id, event_type, data)
    finally:
        await sink.aclose()


@click.command()
@CONFIG_OPTION
@click.argument("record_ids", nargs=-1, required=True)
@file_option("--output", "Write the pack(s) to this file instead of printing them.")
@friendly
def evidence(config_path: Path, record_ids: Sequence[str], output: Path | None) -> None:
    """A verifier's evidence pack for each RECORD_ID: the record, its raw item's hash, the methodology and
    factors with their sources, the computation, and the audit-log proof that the record's entry is in the log.

    Prints a JSON document ({"packs": [...]}); exit status 1 when a record is missing or its proof fails.
    """
    from ..evidence import EvidenceError, evidence_pack

    hub = open_hub(config_path)
    packs = []
    missing = []
    try:
        plugins = hub.plugins

        def methodology(mid: str, version: str) -> Any:
            try:
                return plugins.methodology(mid, version)
            except Exception:
                return None

        for record_id in record_ids:
            try:
                packs.append(evidence_pack(hub.store, record_id, methodology))
            except EvidenceError as exc:
                missing.append(str(exc))
    finally:
        asyncio.run(hub.aclose())
    doc = orjson.dumps({"packs": packs, "problems": missing}, option=orjson.OPT_INDENT_2) + b"\n"
    if output is not None:
        output.write_bytes(doc)
        out.print(f"{len(packs)} evidence pack(s) written to {output}", markup=False)
    else:
        sys.stdout.write(doc.decode())
    failed = [p for p in packs if not _sound(p)]
    if missing or failed:
        for problem in missing:
            click.echo(f"error: {problem}", err=True)
        for pack in failed:
            click.echo(f"error: {pack['record_id']}: its computation or audit proof does not check out", err=True)
        sys.exit(1)


def _sound(pack: dict[str, Any]) -> bool:
    audit = pack["audit"]
    computation = pack.get("computation", {"matches": True})
    batch = audit.get("batch") or {}
    return bool(computation["matches"] and audit["log_verifies"] and batch.get("matches_entry"))
