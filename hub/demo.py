"""``tanpuhui demo``: the whole hub on embedded defaults, against the four sandbox partners on loopback.

The demo is configured the way an operator configures the hub: it writes a ``hub.toml`` whose secrets are
references to environment variables (set here for the sandboxes), with a SQLite store, a JSONL sink and an HTTP
sink in the work folder. It pulls every pull stream, delivers the sandboxes' signed pushes (State Grid
demand-response results, YRD scenario records) through the same path the sidecar uses, and forwards. The pseudonym
key is generated once per work folder and kept there: a sandbox key, never for real data.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tanpuhui.adapters.provincial_bigdata.sandbox import ProvincialSandbox
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox

from .config import load_config
from .consumer import ConsumerServer
from .drivers.pull import PullSummary
from .forwarder import Forwarder, ForwardSummary
from .hub import Hub
from .pipeline import PageResult
from .store.base import Checkpoint

__all__ = ["run_demo"]

_KEY_FILE = "sandbox-pseudonym.key"
_PULLS = (
    ("transit_card", "transactions"),
    ("state_grid", "readings"),
    ("yrd_scenarios", "catalog"),
    ("yrd_scenarios", "records"),
    ("provincial_bigdata", "green_appliances"),
    ("provincial_bigdata", "water_usage"),
    ("provincial_bigdata", "gas_usage"),
    ("provincial_bigdata", "rooftop_pv"),
)


@dataclass
class _Totals:
    streams: list[PullSummary] = field(default_factory=list)
    kg: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)


def _persistent_secret(workdir: Path, name: str, make: str) -> str:
    path = workdir / name
    if not path.exists():
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def run_demo(*, workdir: Path, trips: int, fresh: bool, from_start: bool, console: Console) -> None:
    """Run the demo in ``workdir`` (kept between runs) and print the summary."""
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = _persistent_secret(workdir, _KEY_FILE, "sandbox:" + base64.b64encode(secrets.token_bytes(32)).decode())
    consumer_secret = _persistent_secret(workdir, "sandbox-consumer.secret", _whsec())
    yrd_webhook_secret = _persistent_secret(workdir, "sandbox-yrd-webhook.secret", _whsec())
    started = time.perf_counter()
    with ExitStack() as stack:
        transit = stack.enter_context(TransitSandbox(trips=trips, seed=7))
        grid = stack.enter_context(StateGridSandbox(households=200, days=30, seed=7))
        yrd = stack.enter_context(YrdSandbox(records=1000, seed=7))
        pbd = stack.enter_context(ProvincialSandbox(seed=7))
        consumer = stack.enter_context(ConsumerServer(consumer_secret, jsonl_path=workdir / "consumer.jsonl"))
        pbd_table, pbd_env = pbd.secrets_env("DEMO_PBD_")
        env = {
            "TANPUHUI_PSEUDONYM_KEYS": key,
            "DEMO_TRANSIT_CLIENT_SECRET": transit.client_secret,
            "DEMO_YRD_CLIENT_SECRET": yrd.client_secret,
            "DEMO_YRD_WEBHOOK_SECRET": yrd_webhook_secret,
            "DEMO_CONSUMER_SECRET": consumer_secret,
            **grid.environ(),
            **pbd_env,
        }
        os.environ.update(env)
        env_file = workdir / "sandbox.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        env_file.chmod(0o600)
        document = {
            "hub": {"store": "hub.db", "pseudonym_keys": {"env": "TANPUHUI_PSEUDONYM_KEYS"}},
            "adapters": {
                "transit_card": {
                    "base_url": transit.url,
                    "client_id": transit.client_id,
                    "client_secret": {"env": "DEMO_TRANSIT_CLIENT_SECRET"},
                    "page_size": 1000,
                },
                "state_grid": grid.hub_table(),
                "yrd_scenarios": yrd.settings(
                    client_secret_env="DEMO_YRD_CLIENT_SECRET",
                    webhook_secrets=[{"env": "DEMO_YRD_WEBHOOK_SECRET"}],
                ),
                "provincial_bigdata": pbd_table,
            },
            "sinks": {
                "archive": {"type": "jsonl", "path": "records.jsonl"},
                "platform": {"type": "http", "url": consumer.url, "secret": {"env": "DEMO_CONSUMER_SECRET"}},
            },
        }
        config_path = workdir / "hub.toml"
        config_path.write_text(
            "# Written by `tanpuhui demo`: the configuration it ran with. Secrets are environment references.\n"
            + to_toml(document),
            encoding="utf-8",
        )
        config = load_config(config_path)
        pushes = {
            ("state_grid", "demand_response"): grid.signed_demand_response(100),
            ("yrd_scenarios", "records_push"): yrd.signed_pushes(yrd_webhook_secret, batch=100),
        }
        totals, pushed, forwarded = asyncio.run(_run(config, from_start, pushes, console))
        consumer_stats: dict[str, Any] = consumer.stats()
    _summary(console, totals, pushed, forwarded, consumer_stats, workdir, time.perf_counter() - started)


async def _run(
    config: Any,
    from_start: bool,
    pushes: dict[tuple[str, str], list[tuple[dict[str, str], bytes]]],
    console: Console,
) -> tuple[_Totals, dict[str, PageResult], ForwardSummary]:
    hub = Hub(config)
    totals = _Totals()
    pushed: dict[str, PageResult] = {}
    try:
        if from_start:  # forget the cursors, not the records: everything is pulled again and must dedup
            for adapter, stream in _PULLS:
                hub.store.commit_page(adapter, stream, [], [], Checkpoint())
        columns = (TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            for adapter, stream in _PULLS:
                task = progress.add_task(f"pull {adapter}:{stream}", total=None)

                def advance(page: PageResult, task: Any = task) -> None:
                    progress.advance(task, page.items)

                (summary,) = await hub.pull(adapter, stream, progress=advance)
                progress.update(task, total=max(summary.pulled, 1), completed=summary.pulled)
                totals.streams.append(summary)
                totals.kg.update(summary.kg_by_scenario)
                totals.records.update(summary.records_by_scenario)
            for (adapter, stream), requests in pushes.items():
                task = progress.add_task(f"receive {adapter}:{stream}", total=len(requests))
                result = PageResult(adapter, stream)
                for headers, body in requests:
                    page = hub.receive(adapter, stream, headers, body).page
                    progress.advance(task)
                    if page is None:  # a repeat of an earlier run's request, answered from its receipt
                        continue
                    for name in ("items", "valid_items", "records", "inserted", "duplicates", "held", "quarantined"):
                        setattr(result, name, getattr(result, name) + getattr(page, name))
                    result.kg_by_scenario.update(page.kg_by_scenario)
                    result.inserted_by_scenario.update(page.inserted_by_scenario)
                pushed[f"{adapter}:{stream}"] = result
                totals.kg.update(result.kg_by_scenario)
                totals.records.update(result.inserted_by_scenario)
            sinks = hub.build_sinks()
            pending = sum(hub.store.outbox_max_seq() - hub.store.sink_position(n) for n in sinks)
            ftask = progress.add_task("forward → archive (JSONL), platform (HTTP)", total=max(pending, 1))
            forwarder = Forwarder.configured(hub.store, sinks, config.forwarder)
            try:
                forwarded = await forwarder.drain(progress=lambda _sink, n: progress.advance(ftask, n))
            finally:
                for sink in sinks.values():
                    await sink.aclose()
            progress.update(ftask, completed=max(pending, 1))
        return totals, pushed, forwarded
    finally:
        await hub.aclose()


def _summary(
    console: Console,
    totals: _Totals,
    pushed: dict[str, PageResult],
    forwarded: ForwardSummary,
    consumer: dict[str, Any],
    workdir: Path,
    seconds: float,
) -> None:
    table = Table(title="tanpuhui demo: 4 sandbox partners → SQLite outbox → JSONL + signed CloudEvents consumer")
    table.add_column("stream", no_wrap=True)
    for column in ("items", "valid", "quar.", "new", "dup.", "held"):
        table.add_column(column, justify="right")
    rows = [
        (f"{s.adapter}:{s.stream}", s.pulled, s.valid, s.quarantined, s.inserted, s.duplicates, s.held)
        for s in totals.streams
    ]
    rows += [
        (f"{name} (push)", r.items, r.valid_items, r.quarantined, r.inserted, r.duplicates, r.held)
        for name, r in pushed.items()
    ]
    for row in rows:
        table.add_row(*(str(x) for x in row))
    sums = [sum(int(r[i]) for r in rows) for i in range(1, 7)]
    table.add_row("total", *(str(x) for x in sums), style="bold")
    console.print(table)
    for s in totals.streams:
        if s.error:
            console.print(f"[red]{s.adapter}:{s.stream} stopped:[/] {s.error}")
    delivery = Table(title="Forwarding")
    delivery.add_column("sink")
    delivery.add_column("forwarded", justify="right")
    delivery.add_column("dead letters", justify="right")
    for name, sink in sorted(forwarded.sinks.items()):
        delivery.add_row(name, str(sink.delivered), str(sink.dead_lettered))
    delivery.add_row("consumer received / unique", f"{consumer.get('received', 0)} / {consumer.get('unique', 0)}", "")
    console.print(delivery)
    kg = Table(title="kgCO2e credited in this run, by scenario")
    kg.add_column("scenario")
    kg.add_column("records", justify="right")
    kg.add_column("kgCO2e", justify="right")
    for scenario in sorted(totals.kg):
        kg.add_row(scenario, str(totals.records[scenario]), f"{totals.kg[scenario]:.3f}")
    kg.add_row("total", str(sum(totals.records.values())), f"{sum(totals.kg.values()):.3f}", style="bold")
    console.print(kg)
    console.print(
        f"done in {seconds:.1f} s; state in {workdir}/ (hub.toml, hub.db, records.jsonl). Run again: nothing is "
        "forwarded twice; add --from-start to re-pull everything and see it deduplicated.\n"
        f"Inspect the quarantine (the sandbox secrets are in {workdir}/sandbox.env): "
        f"set -a; . {workdir}/sandbox.env; set +a; tanpuhui quarantine list --config {workdir}/hub.toml",
        markup=False,
    )


def to_toml(document: dict[str, Any]) -> str:
    """A TOML rendering of plain config data (tables, strings, numbers, booleans, lists, env references)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else orjson.dumps(k).decode()

    def table(path: list[str], data: dict[str, Any]) -> None:
        inline = {k: v for k, v in data.items() if not (isinstance(v, dict) and "env" not in v)}
        nested = {k: v for k, v in data.items() if k not in inline}
        if path and (inline or not nested):
            lines.append(f"\n[{'.'.join(key(p) for p in path)}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in inline.items())
        for k, v in nested.items():
            table([*path, k], v)

    table([], document)
    return "\n".join(lines).lstrip("\n") + "\n"
