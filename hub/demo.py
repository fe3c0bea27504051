"""``tanpuhui demo``: the whole hub on embedded defaults, against sandbox partners on loopback.

The demo is configured the way an operator configures the hub: a config whose secrets are references to
environment variables (set here for the sandbox), a SQLite store in the work folder, a JSONL sink and an HTTP
sink. The pseudonym key is generated once per work folder and kept there (a sandbox key, never for real data).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox

from .config import HubConfig, load_config
from .consumer import ConsumerServer
from .forwarder import Forwarder
from .pipeline import Hub, PageResult, PullSummary

__all__ = ["run_demo"]

_DEMO_TOML = """\
# Written by `tanpuhui demo`: the configuration the demo ran with. Secrets are environment references.
[hub]
store = "hub.db"
pseudonym_keys = {{ env = "TANPUHUI_PSEUDONYM_KEYS" }}

[adapters.transit_card]
base_url = "{partner.url}"
client_id = "{partner.client_id}"
client_secret = {{ env = "DEMO_TRANSIT_CLIENT_SECRET" }}
page_size = 500

[sinks.archive]
type = "jsonl"
path = "records.jsonl"

[sinks.platform]
type = "http"
url = "{consumer.url}"
secret = {{ env = "DEMO_CONSUMER_SECRET" }}
"""

_KEY_FILE = "sandbox-pseudonym.key"
_WEBHOOK_FILE = "sandbox-webhook.secret"


def _persistent_secret(workdir: Path, name: str, make: str) -> str:
    path = workdir / name
    if not path.exists():
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def run_demo(*, workdir: Path, trips: int, fresh: bool, from_start: bool, console: Console) -> None:
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = _persistent_secret(workdir, _KEY_FILE, "sandbox:" + base64.b64encode(secrets.token_bytes(32)).decode())
    webhook_secret = _persistent_secret(
        workdir, _WEBHOOK_FILE, "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    started = time.perf_counter()
    with TransitSandbox(trips=trips, seed=7) as partner, ConsumerServer(webhook_secret) as consumer:
        env = {
            "TANPUHUI_PSEUDONYM_KEYS": key,
            "DEMO_TRANSIT_CLIENT_SECRET": partner.client_secret,
            "DEMO_CONSUMER_SECRET": webhook_secret,
        }
        os.environ.update(env)
        config_path = workdir / "hub.toml"
        config_path.write_text(_DEMO_TOML.format(partner=partner, consumer=consumer), encoding="utf-8")
        config = load_config(config_path)
        pulled, forwarded = asyncio.run(_run(config, from_start, len(partner.dataset.items), console))
        consumer_stats: dict[str, Any] = consumer.stats()
    _summary(console, pulled, forwarded, consumer_stats, workdir, time.perf_counter() - started)


async def _run(config: HubConfig, from_start: bool, items: int, console: Console) -> tuple[PullSummary, Any]:
    hub = Hub(config)
    try:
        if from_start:
            # Forget the cursor (not the records): everything is pulled again and must dedup.
            hub.store.commit_page("transit_card", "transactions", [], [], _empty_checkpoint())
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("pull transit_card:transactions", total=items)

            def advance(page: PageResult) -> None:
                progress.advance(task, page.items)

            (summary,) = await hub.pull("transit_card", "transactions", progress=advance)
            progress.update(task, total=max(summary.pulled, 1), completed=summary.pulled)
            sinks = hub.build_sinks()
            pending = hub.store.outbox_max_seq() - min(hub.store.sink_position(n) for n in sinks)
            ftask = progress.add_task("forward to sinks", total=max(pending, 0) * len(sinks) or 1)
            f = config.forwarder
            forwarder = Forwarder(
                hub.store,
                sinks,
                batch_size=f.batch_size,
                attempts=f.attempts,
                initial_backoff=f.initial_backoff,
                max_backoff=f.max_backoff,
                max_retry_after=f.max_retry_after,
            )
            try:
                forwarded = await forwarder.drain(progress=lambda _sink, n: progress.advance(ftask, n))
            finally:
                for sink in sinks.values():
                    await sink.aclose()
            progress.update(ftask, completed=progress.tasks[ftask].total)
        return summary, forwarded
    finally:
        await hub.aclose()


def _empty_checkpoint() -> Any:
    from .store.base import Checkpoint

    return Checkpoint(None, {})


def _summary(
    console: Console, pulled: PullSummary, forwarded: Any, consumer: dict[str, Any], workdir: Path, seconds: float
) -> None:
    table = Table(title="tanpuhui demo: transit_card → SQLite outbox → JSONL + CloudEvents consumer")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("pulled (partner items)", str(pulled.pulled))
    table.add_row("valid items", str(pulled.valid))
    table.add_row("quarantined", str(pulled.quarantined))
    table.add_row("new reduction records", str(pulled.inserted))
    table.add_row("duplicates (already stored)", str(pulled.duplicates))
    table.add_row("held (claimed via another source)", str(pulled.held))
    for name, sink in sorted(_per_sink(forwarded).items()):
        table.add_row(f"forwarded → {name}", str(sink.get("delivered", 0)))
        if sink.get("dead_lettered"):
            table.add_row(f"dead letters ← {name}", str(sink["dead_lettered"]))
    table.add_row("consumer: events received / unique", f"{consumer.get('received', 0)} / {consumer.get('unique', 0)}")
    console.print(table)
    kg = Table(title="kgCO2e credited in this run, by scenario")
    kg.add_column("scenario")
    kg.add_column("records", justify="right")
    kg.add_column("kgCO2e", justify="right")
    totals: Counter[str] = pulled.kg_by_scenario
    for scenario in sorted(totals):
        kg.add_row(scenario, str(pulled.records_by_scenario[scenario]), f"{totals[scenario]:.3f}")
    kg.add_row("total", str(sum(pulled.records_by_scenario.values())), f"{sum(totals.values()):.3f}")
    console.print(kg)
    if pulled.error:
        console.print(f"[red]pull stopped:[/] {pulled.error}")
    console.print(
        f"done in {seconds:.1f} s; state in {workdir}/ (hub.db, records.jsonl). "
        "Run again: nothing is forwarded twice; add --from-start to re-pull everything and see it deduplicated.\n"
        f"Inspect the quarantine: TANPUHUI_PSEUDONYM_KEYS=$(cat {workdir}/{_KEY_FILE}) "
        f"tanpuhui quarantine list --config {workdir}/hub.toml"
    )


def _per_sink(forwarded: Any) -> dict[str, dict[str, Any]]:
    """The forwarder summary as plain dicts per sink."""
    sinks = getattr(forwarded, "sinks", forwarded)
    out: dict[str, dict[str, Any]] = {}
    for name, s in dict(sinks).items():
        out[name] = (
            s if isinstance(s, dict) else {k: getattr(s, k) for k in ("delivered", "dead_lettered") if hasattr(s, k)}
        )
    return out
