"""Running the hub: ``serve`` (the sidecar), ``demo`` (sandbox partners on loopback) and ``migrate`` (the store schema)."""

from __future__ import annotations

import signal
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from tanpuhui.sdk import ConfigError

from ..config import load_config
from ..plugins import PluginWarning, load_plugins
from .common import CONFIG_OPTION, UserError, folder_option, friendly, out


@click.command()
@click.option("--trips", default=5000, show_default=True, help="Journeys the transit card operator's sandbox serves.")
@folder_option("--workdir", ".tanpuhui-demo", "Where the demo keeps its store, key and outputs (reused between runs).")
@click.option("--fresh", is_flag=True, help="Start from an empty workdir.")
@click.option("--from-start", is_flag=True, help="Ignore saved cursors and pull everything again (shows dedup).")
@click.option(
    "--sink",
    type=click.Choice(["nats"]),
    default=None,
    help="Also forward to a broker and read back what arrived: nats = JetStream at $NATS_URL "
    "(default nats://127.0.0.1:4222; the demo creates its stream TANPUHUI_DEMO).",
)
@friendly
def demo(trips: int, workdir: Path, fresh: bool, from_start: bool, sink: str | None) -> None:
    """Run the hub end to end on embedded defaults against sandbox partners on loopback.

    Starts the sandbox of every installed adapter that offers one (the four built-in partners: transit card
    operator, State Grid, the YRD scenario exchange, the provincial big-data gateway; third-party adapters too)
    and a loopback consumer; pulls every pull stream into SQLite, delivers the partners' signed pushes through the
    sidecar's push path, forwards to a JSONL file and (CloudEvents, signed) to the consumer, and prints a summary.
    Run it twice: the second run forwards nothing twice.
    """
    from ..demo import run_demo

    run_demo(workdir=workdir, trips=trips, fresh=fresh, from_start=from_start, console=out, sink=sink)


def _stop_while_starting(signum: int, frame: Any) -> None:
    """SIGTERM before the sidecar is up: nothing was accepted yet, so stopping is clean (status 0)."""
    raise SystemExit(0)


@click.command()
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
    from ..logging import configure_logging
    from ..server import ServerSettings, Sidecar
    from ..server import serve as run_sidecar

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
    from ..server.workers import check_address, run_workers
    from ..store.factory import open_store

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


@click.command()
@CONFIG_OPTION
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when migrations are pending, 2 when newer.")
@friendly
def migrate(config_path: Path, check: bool) -> None:
    """Bring the store's schema up to this tanpuhui version (the SQLite file or the PostgreSQL database).

    Run it after installing or upgrading, before starting the hub: a store older than the code is refused at
    start-up until it is migrated, a newer one always. Applies what is missing in one transaction; safe to run
    again, and from several replicas at once. See docs/scaling.md.
    """
    from ..store.factory import migrate_store, schema_status

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
