"""``tanpuhui demo``: the whole hub on embedded defaults, against the sandbox partners of the installed adapters.

Every installed adapter whose plugin offers a sandbox (hook ``register_sandboxes``) takes part, third-party ones as
much as the built-in ones; the demo knows none of them by name. It is configured the way an operator configures the
hub: it writes a ``hub.toml`` from each sandbox's :meth:`~tanpuhui.sdk.Sandbox.hub_settings`, secrets as references
to environment variables (set here), with a SQLite store, a JSONL sink and an HTTP sink in the work folder. It pulls
every pull stream, delivers each sandbox's signed pushes through the path the sidecar uses (webhook receipts
included), and forwards. The pseudonym key is generated once per work folder and kept there: a sandbox key, never
for real data.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tanpuhui.sdk import ConfigError, PullStream, Sandbox, TanpuhuiError, WebhookRequest

from .config import load_config
from .consumer import ConsumerServer
from .demo_sinks import Arrived, demo_broker
from .drivers.pull import PullSummary
from .drivers.push import Refused
from .forwarder import Forwarder, ForwardSummary
from .hub import Hub
from .pipeline import PageResult
from .plugins import Plugins, load_plugins
from .store.base import Checkpoint

__all__ = ["run_demo"]

_KEY_FILE = "sandbox-pseudonym.key"
_TRIPS_GO_TO = "transit_card"
"""The adapter whose sandbox ``--trips`` sizes (the option predates discovered sandboxes)."""


@dataclass
class _Totals:
    streams: list[PullSummary] = field(default_factory=list)
    pushes: list[PullSummary] = field(default_factory=list)
    replayed: int = 0
    """Webhook requests answered from their receipts: delivered by an earlier run, nothing stored again."""
    errors: list[str] = field(default_factory=list)
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


def _env_prefix(adapter: str) -> str:
    """The prefix of the environment variables holding an adapter's sandbox secrets: ``DEMO_<ADAPTER>_``."""
    return "DEMO_" + re.sub(r"[^A-Z0-9]", "_", adapter.upper()) + "_"


def run_demo(
    *,
    workdir: Path,
    trips: int | None = None,
    fresh: bool,
    from_start: bool,
    console: Console,
    plugins: Plugins | None = None,
    sandbox_options: Mapping[str, Mapping[str, Any]] | None = None,
    sink: str | None = None,
) -> None:
    """Run the demo in ``workdir`` (kept between runs) and print the summary.

    ``trips`` sizes the transit card sandbox; ``sandbox_options`` (adapter name -> keyword arguments of its sandbox
    factory) size any sandbox. ``plugins`` defaults to the installed ones. ``sink``: also forward to that broker
    (``"nats"``: JetStream at ``NATS_URL``; see :mod:`.demo_sinks`) and read back what arrived.
    """
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plugins = plugins if plugins is not None else load_plugins()
    options: dict[str, Mapping[str, Any]] = {_TRIPS_GO_TO: {"trips": trips}} if trips is not None else {}
    options.update(sandbox_options or {})
    key = _persistent_secret(workdir, _KEY_FILE, "sandbox:" + base64.b64encode(secrets.token_bytes(32)).decode())
    consumer_secret = _persistent_secret(workdir, "sandbox-consumer.secret", _whsec())
    started = time.perf_counter()
    broker = demo_broker(sink) if sink else None
    arrived: Arrived | None = None
    if broker is not None:
        asyncio.run(broker.prepare())
    with ExitStack() as stack:
        sandboxes = _start_sandboxes(plugins, options, stack, console)
        consumer = stack.enter_context(ConsumerServer(consumer_secret, jsonl_path=workdir / "consumer.jsonl"))
        env = {"TANPUHUI_PSEUDONYM_KEYS": key, "DEMO_CONSUMER_SECRET": consumer_secret}
        adapters: dict[str, Any] = {}
        for name, sandbox in sandboxes.items():
            prefix = _env_prefix(name)
            adapters[name], sandbox_env = sandbox.hub_settings(prefix)
            stray = sorted(var for var in sandbox_env if not var.startswith(prefix))
            if stray:
                raise ConfigError(
                    f"the {name} sandbox's hub_settings set {', '.join(stray)}: names must start {prefix}"
                )
            env.update(sandbox_env)
        os.environ.update(env)
        env_file = workdir / "sandbox.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        env_file.chmod(0o600)
        document = {
            "hub": {"store": "hub.db", "pseudonym_keys": {"env": "TANPUHUI_PSEUDONYM_KEYS"}},
            "adapters": adapters,
            "sinks": {
                "archive": {"type": "jsonl", "path": "records.jsonl"},
                "platform": {"type": "http", "url": consumer.url, "secret": {"env": "DEMO_CONSUMER_SECRET"}},
            },
        }
        if broker is not None:
            document["sinks"][broker.name] = broker.sink_table()
        config_path = workdir / "hub.toml"
        config_path.write_text(
            "# Written by `tanpuhui demo`: the configuration it ran with. Secrets are environment references.\n"
            + to_toml(document),
            encoding="utf-8",
        )
        config = load_config(config_path)
        pushes = {
            (name, stream): requests
            for name, sandbox in sandboxes.items()
            for stream, requests in sandbox.webhook_requests().items()
        }
        totals, forwarded = asyncio.run(_run(Hub(config, plugins=plugins), from_start, pushes, console))
        consumer_stats: dict[str, Any] = consumer.stats()
        if broker is not None:
            arrived = asyncio.run(broker.arrived())
    _summary(
        console, totals, len(sandboxes), forwarded, consumer_stats, workdir, time.perf_counter() - started, arrived
    )


def _start_sandboxes(
    plugins: Plugins, options: Mapping[str, Mapping[str, Any]], stack: ExitStack, console: Console
) -> dict[str, Sandbox]:
    """Start the sandbox of every installed adapter that offers one; a broken one is skipped with a warning."""
    started: dict[str, Sandbox] = {}
    for name in sorted(plugins.sandboxes):
        if name not in plugins.adapters:
            console.print(f"sandbox {name!r} skipped: no adapter {name!r} is installed", style="yellow", markup=False)
            continue
        try:
            sandbox = plugins.sandboxes[name](**options.get(name, {}))
            if not isinstance(sandbox, Sandbox):
                raise TypeError(f"its factory returned {type(sandbox).__name__}, not a tanpuhui.sdk.Sandbox")
            started[name] = stack.enter_context(sandbox)
        except Exception as exc:  # a third party's broken sandbox must not take the demo down
            console.print(f"sandbox {name!r} skipped: {type(exc).__name__}: {exc}", style="yellow", markup=False)
    if not started:
        raise ConfigError("no installed adapter offers a sandbox (plugin hook register_sandboxes): nothing to run")
    return started


async def _run(
    hub: Hub,
    from_start: bool,
    pushes: dict[tuple[str, str], list[WebhookRequest]],
    console: Console,
) -> tuple[_Totals, ForwardSummary]:
    totals = _Totals()
    try:
        pulls = [
            (name, stream.name)
            for name in hub.config.adapters
            for stream in hub.adapter(name).streams()
            if isinstance(stream, PullStream)
        ]
        if from_start:  # forget the cursors, not the records: everything is pulled again and must dedup
            for adapter, stream in pulls:
                hub.store.commit_page(adapter, stream, [], [], Checkpoint())
        columns = (TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            for adapter, stream in pulls:
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
                summary = PullSummary(adapter, stream)
                for headers, body in requests:
                    _deliver(hub, summary, totals, headers, body)
                    progress.advance(task)
                totals.pushes.append(summary)
                totals.kg.update(summary.kg_by_scenario)
                totals.records.update(summary.records_by_scenario)
            sinks = hub.build_sinks()
            pending = sum(hub.store.outbox_max_seq() - hub.store.sink_position(n) for n in sinks)
            ftask = progress.add_task(f"forward → {', '.join(sinks)}", total=max(pending, 1))
            forwarder = Forwarder.configured(hub.store, sinks, hub.config.forwarder)
            try:
                forwarded = await forwarder.drain(progress=lambda _sink, n: progress.advance(ftask, n))
            finally:
                for sink in sinks.values():
                    await sink.aclose()
            progress.update(ftask, completed=max(pending, 1))
        return totals, forwarded
    finally:
        await hub.aclose()


def _deliver(hub: Hub, summary: PullSummary, totals: _Totals, headers: dict[str, str], body: bytes) -> None:
    """One signed push through the sidecar's path: verified, committed with its receipt, answered."""
    where = f"{summary.adapter}:{summary.stream}"
    try:
        outcome = hub.receive(summary.adapter, summary.stream, headers, body)
    except TanpuhuiError as exc:  # a signature the hub refuses: the sandbox and its settings disagree
        totals.errors.append(f"{where} push refused: {exc}")
        return
    if isinstance(outcome, Refused):
        totals.errors.append(f"{where} push refused ({outcome.reason}): {outcome.detail}")
    elif outcome.page is not None:
        summary.add(outcome.page)
    else:  # delivered by an earlier run: the receipt's answer, nothing stored again
        answer = orjson.loads(outcome.receipt)
        totals.replayed += 1
        summary.pulled += answer["items"]
        summary.valid += answer["accepted"]
        summary.duplicates += answer["records"]


def _summary(
    console: Console,
    totals: _Totals,
    partners: int,
    forwarded: ForwardSummary,
    consumer: dict[str, Any],
    workdir: Path,
    seconds: float,
    arrived: Arrived | None = None,
) -> None:
    noun = "partner" if partners == 1 else "partners"
    table = Table(
        title=f"tanpuhui demo: {partners} sandbox {noun} → SQLite outbox → JSONL + signed CloudEvents consumer"
    )
    table.add_column("stream", no_wrap=True)
    for column in ("items", "valid", "quar.", "new", "dup.", "held"):
        table.add_column(column, justify="right")
    labelled = [(f"{s.adapter}:{s.stream}", s) for s in totals.streams]
    labelled += [(f"{s.adapter}:{s.stream} (push)", s) for s in totals.pushes]
    rows = [(label, s.pulled, s.valid, s.quarantined, s.inserted, s.duplicates, s.held) for label, s in labelled]
    for row in rows:
        table.add_row(*(str(x) for x in row))
    sums = [sum(int(r[i]) for r in rows) for i in range(1, 7)]
    table.add_row("total", *(str(x) for x in sums), style="bold")
    console.print(table)
    for s in totals.streams:
        if s.error:
            console.print(f"[red]{s.adapter}:{s.stream} stopped:[/] {s.error}")
    for error in totals.errors:
        console.print(error, style="red", markup=False)
    if totals.replayed:
        console.print(
            f"{totals.replayed} pushed requests were delivered by an earlier run: answered from their receipts, "
            "nothing stored again (their records count as dup.)"
        )
    delivery = Table(title="Forwarding")
    delivery.add_column("sink")
    delivery.add_column("forwarded", justify="right")
    delivery.add_column("dead letters", justify="right")
    for name, sink in sorted(forwarded.sinks.items()):
        delivery.add_row(name, str(sink.delivered), str(sink.dead_lettered))
    delivery.add_row("consumer received / unique", f"{consumer.get('received', 0)} / {consumer.get('unique', 0)}", "")
    if arrived is not None:
        delivery.add_row(f"{arrived.where}: arrived / unique", f"{arrived.messages} / {arrived.unique}", "")
    console.print(delivery)
    kg = Table(title="kgCO2e credited in this run, by scenario")
    kg.add_column("scenario")
    kg.add_column("records", justify="right")
    kg.add_column("kgCO2e", justify="right")
    for scenario in sorted(totals.kg):
        kg.add_row(scenario, str(totals.records[scenario]), f"{totals.kg[scenario]:.3f}")
    kg.add_row("total", str(sum(totals.records.values())), f"{sum(totals.kg.values()):.3f}", style="bold")
    console.print(kg)
    if consumer.get("current_records") is not None:
        console.print(
            f"The consumer holds {consumer['current_records']} current records, {consumer.get('kgco2e_total', 0):.3f} "
            "kgCO2e: corrections replace what they supersede (e.g. a day's peak saving netted of its demand-response "
            "kWh) and voids remove (docs/verification.md; `tanpuhui report` gives the same totals per period).",
            markup=False,
        )
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
