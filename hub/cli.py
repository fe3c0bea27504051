"""The ``tanpuhui`` command line."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tanpuhui.sdk import ConfigError, Problem, PullStream, TanpuhuiError, redact

from .config import HubConfig, load_config
from .plugins import Plugins, PluginWarning, load_plugins
from .validation import DocumentReport, SchemaRegistry, read_documents

P = ParamSpec("P")
R = TypeVar("R")

# Piped output (logs, CI, `| less`) gets wide tables instead of rich's 80-column default for non-terminals.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="hub.toml",
    envvar="TANPUHUI_CONFIG",
    show_default=True,
    help="Hub configuration (TOML). Env: TANPUHUI_CONFIG.",
)


class UserError(click.ClickException):
    """A mistake in the input or configuration: printed as one line, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        err.print(f"[bold red]error:[/] {escape(self.message)}", markup=True)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the project's own errors into one clear line instead of a stack trace."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TanpuhuiError as exc:
            raise UserError(redact(str(exc))) from None

    return wrapper


def _plugins() -> Plugins:
    """Load plugins; a broken plugin is reported once as a clean warning line (the hub goes on without it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        plugins = load_plugins()
    for problem in plugins.problems:
        err.print(f"[yellow]warning:[/] {problem}")
    return plugins


def _schemas(plugins: Plugins) -> SchemaRegistry:
    docs: dict[str, Any] = {}
    for cls in plugins.adapters.values():
        docs.update(cls.schemas)
    return SchemaRegistry(docs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tanpuhui")
def main() -> None:
    """tanpuhui: the carbon-inclusion (碳普惠) integration hub.

    Pulls and receives low-carbon behaviour data from partners, validates it against shared JSON Schemas,
    quantifies reductions with cited methodologies, pseudonymises people, deduplicates, and forwards
    normalized reduction records. Start with `tanpuhui demo`.
    """


# -- listings ----------------------------------------------------------------------------------------------


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Also show each plugin's distribution, version and hooks.")
@friendly
def adapters(verbose: bool) -> None:
    """List installed adapters and their streams."""
    plugins = _plugins()
    table = Table("adapter", "version", "streams", "schemas", "plugin", title="Adapters")
    owner = {a: p for p in plugins.info for a in p.adapters}
    for name, cls in sorted(plugins.adapters.items()):
        streams = ", ".join(f"{t.name} ({'pull' if issubclass(t, PullStream) else 'push'})" for t in cls.stream_types)
        info = owner.get(name)
        table.add_row(name, cls.version, streams or "-", ", ".join(cls.schemas) or "-", info.name if info else "?")
    out.print(table)
    if verbose:
        ptable = Table("plugin", "distribution", "version", "hooks", "registered", title="Plugins")
        for p in plugins.info:
            registered = ", ".join(p.adapters + p.methodologies + p.sinks)
            ptable.add_row(p.name, p.distribution, p.version, ", ".join(sorted(p.hooks)), registered)
        out.print(ptable)


@main.command()
@click.argument("name", required=False)
@friendly
def schemas(name: str | None) -> None:
    """List the shared JSON Schemas, or print one (NAME)."""
    registry = _schemas(_plugins())
    if name:
        sys.stdout.write(orjson.dumps(registry.document(name), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table("schema", "$id", "title", title="Schemas (draft 2020-12)")
    for n in registry.names():
        doc = registry.document(n)
        table.add_row(n, str(doc.get("$id", "")), str(doc.get("title", "")))
    out.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def methodologies(as_json: bool) -> None:
    """List registered methodologies with their factors and sources."""
    plugins = _plugins()
    items = [m for versions in plugins.methodologies.values() for m in versions.values()]
    items.sort(key=lambda m: (m.id, m.version))
    if as_json:
        sys.stdout.write(orjson.dumps([m.describe() for m in items], option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table("id", "version", "scenario", "formula", "factors", title="Methodologies", show_lines=True)
    for m in items:
        factors = "\n".join(
            f"{f.name} = {f.value} {f.unit}{' [labelled default]' if f.default else ''}\n  source: {f.source}"
            for f in m.factors
        )
        table.add_row(m.id, m.version, m.scenario, m.formula.text, factors)
    out.print(table)


# -- validate ----------------------------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--schema", "schema_name", required=True, help="Schema name (see `tanpuhui schemas`).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@friendly
def validate(file: str, schema_name: str, fmt: str) -> None:
    """Validate FILE (`-` for stdin) against a schema.

    FILE holds a JSON document, a JSON array of documents, or JSON Lines. Exit status: 0 all valid, 1 some
    invalid, 2 usage error (unknown schema, unreadable file). Errors are JSON pointers with messages.
    """
    registry = _schemas(_plugins())
    compiled = registry.get(schema_name)
    if file == "-":
        data, source = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            data, source = Path(file).read_bytes(), file
        except OSError as exc:
            raise UserError(f"{file}: cannot read: {exc.strerror}") from None
    reports = []
    for index, line, doc in read_documents(data, source):
        problems = [doc] if isinstance(doc, Problem) else compiled.problems(doc)
        reports.append(DocumentReport(index, line, problems))
    invalid = [r for r in reports if not r.valid]
    if fmt == "json":
        body = {
            "source": source,
            "schema": schema_name,
            "documents": len(reports),
            "invalid": len(invalid),
            "results": [r.as_dict() for r in reports],
        }
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for r in invalid:
            where = f"{source}:{r.line}" if r.line is not None else f"{source}[{r.index}]"
            for p in r.problems:
                out.print(f"{where} {p.pointer or '/'}: {p.message}", markup=False)
        status = "[green]valid[/]" if not invalid else f"[red]{len(invalid)} invalid[/]"
        err.print(f"{source}: {len(reports)} document(s) checked against {schema_name}: {status}")
    sys.exit(1 if invalid else 0)


# -- pull / forward ----------------------------------------------------------------------------------------


def _open_hub(config_path: Path, *, long_running: bool = False) -> Any:
    from .hub import Hub
    from .process import tune_gc

    config: HubConfig = load_config(config_path)
    hub = Hub(config, plugins=_plugins())
    if long_running:
        tune_gc()  # what start-up built stays for the whole command: not walked by every full collection
    return hub


EXIT_LEASED = 75
"""``tanpuhui pull``'s status when a stream was not pulled because another process holds its lease (sysexits'
EX_TEMPFAIL: try again later)."""


@main.command(
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
@friendly
def pull(target: str, config_path: Path, wait: float | None) -> None:
    """Pull one adapter (all its pull streams) or one stream from the saved cursor, once."""
    adapter, _, stream = target.partition(":")
    hub = _open_hub(config_path, long_running=True)

    async def run() -> Any:
        try:
            return await hub.pull(
                adapter,
                stream or None,
                wait=wait or 0.0,
                progress=lambda page: err.print(
                    f"{page.adapter}:{page.stream}: page of {page.items} items, {page.inserted} new, "
                    f"{page.quarantined} quarantined",
                    markup=False,
                ),
            )
        finally:
            await hub.aclose()

    summaries = asyncio.run(run())
    table = Table("stream", "pages", "pulled", "valid", "new records", "duplicates", "held", "quarantined", "error")
    for s in summaries:
        table.add_row(
            f"{s.adapter}:{s.stream}",
            *(str(x) for x in (s.pages, s.pulled, s.valid, s.inserted, s.duplicates, s.held)),
            f"{s.quarantined} (+{s.quarantine_repeats} again)" if s.quarantine_repeats else str(s.quarantined),
            s.error or ("skipped: another process holds its lease (see --wait)" if s.leased_elsewhere else ""),
        )
    out.print(table)
    if any(s.error for s in summaries):
        sys.exit(1)
    if any(s.leased_elsewhere for s in summaries):
        sys.exit(EXIT_LEASED)


@main.command()
@CONFIG_OPTION
@click.option("--sink", "sink_names", multiple=True, help="Only these sinks (repeatable).")
@friendly
def forward(config_path: Path, sink_names: Sequence[str]) -> None:
    """Deliver committed records from the outbox to the configured sinks."""
    from .forwarder import Forwarder

    hub = _open_hub(config_path, long_running=True)

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
        state = "gone (410): stopped" if s.gone else "failed" if s.failed else "ok"
        if s.leased_elsewhere:
            state = "skipped: another replica drains it"
        table.add_row(
            name, str(s.delivered), str(s.batches), str(s.retries), str(s.dead_lettered), state, s.last_error or ""
        )
    out.print(table)
    if not summary.ok:
        sys.exit(1)


@main.group("dead-letters")
def dead_letters() -> None:
    """List and replay deliveries that exhausted their retries."""


@dead_letters.command("list")
@CONFIG_OPTION
@click.option("--sink", default=None, help="Only this sink.")
@click.option("--limit", default=100, show_default=True)
@friendly
def dead_letters_list(config_path: Path, sink: str | None, limit: int) -> None:
    """List dead letters."""
    hub = _open_hub(config_path)
    table = Table("id", "sink", "record id", "attempts", "error", "at", title="Dead letters")
    for d in hub.store.dead_letters(sink, limit):
        table.add_row(str(d.id), d.sink, d.record_id, str(d.attempts), d.error, d.created_at)
    out.print(table)
    asyncio.run(hub.aclose())


@dead_letters.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@CONFIG_OPTION
@friendly
def dead_letters_replay(ids: Sequence[int], replay_all: bool, config_path: Path) -> None:
    """Send dead letters again; delivered ones are removed."""
    from .forwarder import Forwarder

    hub = _open_hub(config_path)
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


# -- quarantine --------------------------------------------------------------------------------------------


@main.group()
def quarantine() -> None:
    """Inspect and replay items that failed validation or normalization."""


@quarantine.command("list")
@CONFIG_OPTION
@click.option("--adapter", default=None)
@click.option("--status", type=click.Choice(["open", "resolved", "discarded"]), default="open", show_default=True)
@click.option("--limit", default=100, show_default=True)
@friendly
def quarantine_list(config_path: Path, adapter: str | None, status: str, limit: int) -> None:
    """List quarantined items."""
    hub = _open_hub(config_path)
    entries = hub.store.quarantine_list(adapter, status, limit)
    table = Table(
        "id", "adapter:stream", "stage", "partner id", "first error", "errors", "at", title=f"Quarantine ({status})"
    )
    for e in entries:
        first = e.problems[0] if e.problems else {"pointer": "", "message": ""}
        table.add_row(
            str(e.id),
            f"{e.adapter}:{e.stream}",
            e.stage,
            e.partner_record_id,
            f"{first['pointer'] or '/'}: {first['message']}",
            str(len(e.problems)),
            e.created_at,
        )
    out.print(table)
    asyncio.run(hub.aclose())


@quarantine.command("show")
@click.argument("entry_id", type=int)
@CONFIG_OPTION
@friendly
def quarantine_show(entry_id: int, config_path: Path) -> None:
    """Show one quarantined item: every error, and the raw item with personal data masked."""
    from .encoding import dumps_any
    from .privacy_view import masked

    hub = _open_hub(config_path)
    entry = hub.store.quarantine_get(entry_id)
    if entry is None:
        raise UserError(f"no quarantine entry {entry_id}")
    raw = hub.quarantine_raw(entry)
    out.print(
        f"entry {entry.id}  {entry.adapter}:{entry.stream}  stage={entry.stage}  status={entry.status}  at {entry.created_at}"
    )
    for p in entry.problems:
        out.print(f"  {p['pointer'] or '/'}: {p['message']}", markup=False)
    out.print("raw item (personal data masked):")
    out.print(
        dumps_any(
            masked(raw, hub.stream_schema(entry.adapter, entry.stream).personal_fields), option=orjson.OPT_INDENT_2
        ).decode(),
        markup=False,
    )
    asyncio.run(hub.aclose())


@quarantine.command("replay")
@click.argument("entry_ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every open entry.")
@CONFIG_OPTION
@friendly
def quarantine_replay(entry_ids: Sequence[int], replay_all: bool, config_path: Path) -> None:
    """Re-run quarantined items through the pipeline (after a partner or adapter fix)."""
    hub = _open_hub(config_path)
    ids = list(entry_ids)
    if replay_all:
        ids += [e.id for e in hub.store.quarantine_list(None, "open", 1_000_000)]
    if not ids:
        raise UserError("give entry ids or --all")

    async def run() -> Any:
        try:
            return await hub.replay_quarantine(ids)
        finally:
            await hub.aclose()

    results = asyncio.run(run())
    for r in results:
        detail = "; ".join(f"{p.pointer or '/'}: {p.message}" for p in r.problems)
        out.print(f"{r.entry_id}: {r.status}{' - ' + detail if detail else ''}", markup=False)
    if any(r.status != "resolved" for r in results):
        sys.exit(1)


# -- demo --------------------------------------------------------------------------------------------------


@main.command()
@click.option("--trips", default=5000, show_default=True, help="Transactions the sandbox partner serves.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".tanpuhui-demo"),
    show_default=True,
    help="Where the demo keeps its store, key and outputs (reused between runs).",
)
@click.option("--fresh", is_flag=True, help="Start from an empty workdir.")
@click.option("--from-start", is_flag=True, help="Ignore saved cursors and pull everything again (shows dedup).")
@friendly
def demo(trips: int, workdir: Path, fresh: bool, from_start: bool) -> None:
    """Run the hub end to end on embedded defaults against sandbox partners on loopback.

    Starts a sandbox transit-card partner and a loopback consumer, pulls everything into SQLite, forwards
    to a JSONL file and (CloudEvents, signed) to the consumer, and prints a summary. Run it twice: the second
    run forwards nothing twice.
    """
    from .demo import run_demo

    run_demo(workdir=workdir, trips=trips, fresh=fresh, from_start=from_start, console=out)


# -- serve -------------------------------------------------------------------------------------------------


def _stop_while_starting(signum: int, frame: Any) -> None:
    """SIGTERM before the sidecar is up: nothing was accepted yet, so stopping is clean (status 0)."""
    raise SystemExit(0)


@main.command()
@CONFIG_OPTION
@click.option("--host", default=None, help="Address to bind (default: [server] host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default: [server] port, 8700).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Sidecar processes sharing the port, one core each (default: [server] workers, 1).",
)
@friendly
def serve(config_path: Path, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the sidecar: webhooks, validation, health, metrics and admin API, scheduled pulls and forwarding.

    Logs are JSON lines on stderr (personal identifiers and secrets masked). SIGTERM or Ctrl-C stops it cleanly
    within [server] shutdown_timeout. With --workers N, N processes share the port and the store (pulls and
    deliveries are leased, so none is done twice). See docs/operator-guide.md.
    """
    signal.signal(signal.SIGTERM, _stop_while_starting)  # until the server installs its own handlers
    from .logging import configure_logging
    from .server import ServerSettings, Sidecar
    from .server import serve as run_sidecar

    config = load_config(config_path)
    settings = ServerSettings.from_config(config)
    configure_logging(settings.log_level, secrets=config.secret_values())
    workers = workers or settings.workers

    def run(sock: socket.socket | None = None) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            plugins = load_plugins()  # problems are logged (as JSON) and shown by /readyz
        sidecar = Sidecar(config, plugins=plugins, settings=settings)
        return 0 if run_sidecar(sidecar, host, port, sock) else 3

    if workers == 1:
        sys.exit(run())
    from .server.workers import check_address, run_workers
    from .store.factory import open_store

    if config.store_dsn() is None and config.store_path() == ":memory:":
        raise ConfigError(
            f"{config.source}: [server] workers = {workers} needs a store file or PostgreSQL, not :memory:"
        )
    open_store(config, migrate=False).close()  # the schema exists (or the error is shown) before any worker starts
    address = (host or settings.host, settings.port if port is None else port)
    try:
        check_address(*address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}") from None
    sys.exit(run_workers(workers, *address, run))


# -- plugins and scaffolding (the adapter author's kit) ------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version, hooks implemented and what each registered.

    Plugins come from the `tanpuhui` entry-point group (built-in adapters included). Set TANPUHUI_TRACE_HOOKS=1 to
    log every hook call.
    """
    loaded = _plugins()
    if as_json:
        rows = [
            {
                "plugin": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "hooks": sorted(p.hooks),
                "adapters": p.adapters,
                "methodologies": p.methodologies,
                "sinks": p.sinks,
            }
            for p in loaded.info
        ]
        sys.stdout.write(
            orjson.dumps({"plugins": rows, "problems": loaded.problems}, option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return
    table = Table("plugin", "distribution", "version", "hooks", "registered", title="Plugins")
    for p in loaded.info:
        registered = ", ".join(p.adapters + p.methodologies + p.sinks) or "-"
        table.add_row(p.name, p.distribution, p.version or "-", ", ".join(sorted(p.hooks)) or "-", registered)
    out.print(table)


@main.command("new-adapter")
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the NAME folder.",
)
@click.option("--no-record", is_flag=True, help="Do not record the conformance cassettes from the sandbox now.")
@click.option("--force", is_flag=True, help="Write into an existing, non-empty NAME folder.")
@friendly
def new_adapter(name: str, directory: Path, no_record: bool, force: bool) -> None:
    """Scaffold an installable adapter package NAME that passes the conformance suite.

    Writes ./NAME (pyproject with the `tanpuhui` entry point, adapter, partner schema, methodology, sandbox,
    conformance tests), then records its cassettes from the sandbox with `pytest --tanpuhui-record`.
    """
    from .scaffold import record_cassettes, scaffold

    made = scaffold(name, directory, force=force)
    for rel in made.files:
        out.print(f"  created {made.root / rel}", markup=False)
    if not no_record:
        err.print("recording the conformance cassettes from the sandbox (pytest --tanpuhui-record) ...")
        result = record_cassettes(made.root)
        if result.returncode != 0:
            err.print(result.stdout[-4000:] + result.stderr[-2000:], markup=False)
            raise UserError(f"recording the cassettes failed (pytest exit {result.returncode}); see above")
        cassettes = sorted((made.root / "tests" / "cassettes").rglob("*.json"))
        out.print(f"  recorded {len(cassettes)} cassettes in {made.root / 'tests' / 'cassettes'}", markup=False)
    out.print(
        f"\nNext: cd {made.root} && pip install -e '.[test]' && pytest\n"
        "Then make it yours: docs/adapter-authors.md (partner interface, schema, methodology, re-record).",
        markup=False,
    )


# -- store schema ----------------------------------------------------------------------------------------------


@main.command()
@CONFIG_OPTION
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when migrations are pending, 2 when newer.")
@friendly
def migrate(config_path: Path, check: bool) -> None:
    """Bring the store's schema up to this tanpuhui version (the SQLite file or the PostgreSQL database).

    Run it after installing or upgrading, before starting the hub: a store older than the code is refused at
    start-up until it is migrated, a newer one always. Applies what is missing in one transaction; safe to run
    again, and from several replicas at once. See docs/scaling.md.
    """
    from .store.factory import migrate_store, schema_status

    config = load_config(config_path)
    if check:
        status = schema_status(config)
        if status.found is None:
            out.print(f"{status.store}: no store yet (created at version {status.expected} on first use)", markup=False)
        elif status.newer:
            raise UserError(
                f"{status.store}: schema version {status.found} is newer than this tanpuhui ({status.expected})"
            )
        elif status.pending:
            out.print(
                f"{status.store}: schema version {status.found}, this tanpuhui needs {status.expected}: "
                "run `tanpuhui migrate`",
                markup=False,
            )
            sys.exit(1)
        else:
            out.print(f"{status.store}: schema version {status.found}, up to date", markup=False)
        return
    report = migrate_store(config)
    for m in report.applied:
        out.print(f"  applied {m.version}: {m.name}", markup=False)
    if report.applied:
        out.print(f"{report.store}: schema version {report.before} -> {report.after}", markup=False)
    else:
        out.print(f"{report.store}: schema version {report.after}, up to date (nothing to do)", markup=False)


# -- audit log and schema drift ------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The tamper-evident audit log: what the hub accepted and what operators did, hash-chained.

    Each accepted batch (a pulled page, a webhook), quarantine replay and resolution, dead letter and admin
    action is appended in the transaction that does it. See docs/reliability.md.
    """


def _audit_store(config_path: Path) -> tuple[Any, Any]:
    from .audit import AuditLog

    hub = _open_hub(config_path)
    if not isinstance(hub.store, AuditLog):
        asyncio.run(hub.aclose())
        raise UserError(f"{config_path}: this store ({type(hub.store).__name__}) keeps no audit log")
    return hub, hub.store


@audit.command("list")
@CONFIG_OPTION
@click.option("--limit", default=50, show_default=True, help="How many entries (the newest, unless --after).")
@click.option("--after", "after_seq", type=int, default=None, help="Entries after this sequence number.")
@click.option("--action", default=None, help="Only this action (page.commit, webhook.accept, quarantine.replay ...).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@friendly
def audit_list(config_path: Path, limit: int, after_seq: int | None, action: str | None, as_json: bool) -> None:
    """List audit log entries."""
    from .audit import AuditEntry, iter_pages

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
        sys.stdout.write("".join(orjson.dumps(e.as_dict()).decode() + "\n" for e in entries))
        return
    table = Table("seq", "at", "actor", "action", "subject", "details", "hash", title="Audit log")
    for e in entries:
        details = orjson.dumps(e.details, option=orjson.OPT_SORT_KEYS).decode()
        table.add_row(
            str(e.seq),
            e.at,
            e.actor,
            e.action,
            e.subject,
            details if len(details) <= 160 else details[:157] + "...",
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
    from .audit import parse_anchor, verify_log

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


@main.command()
@CONFIG_OPTION
@click.option("--adapter", default=None, help="Only this adapter's streams.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def drift(config_path: Path, adapter: str | None, as_json: bool) -> None:
    """Schema drift: top-level fields partners send that their stream's schema does not name.

    Such fields are accepted (the schemas admit additional properties) and kept here, so a partner's interface
    change is noticed; a field that changes type fails validation instead and lands in quarantine.
    """
    from .store.base import DriftLog

    hub = _open_hub(config_path)
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
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not entries:
        out.print("no schema drift: every field partners sent is named by their schema", markup=False)
        return
    table = Table("adapter:stream", "field", "items", "example", "first seen", "last seen", title="Schema drift")
    for d in entries:
        table.add_row(f"{d.adapter}:{d.stream}", d.field, str(d.items), d.example, d.first_seen, d.last_seen)
    out.print(table)
