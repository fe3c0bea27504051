"""Scheduled pulls and the forwarder loop in the sidecar process."""

from __future__ import annotations

import random
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.scheduler import Schedule, Scheduler, Stopping
from tanpuhui.hub.server import ServerSettings
from tanpuhui.hub.store.base import RunLog
from tanpuhui.sdk import ConfigError
from tanpuhui.testing.loopback import wait_until

from .conftest import RunningSidecar, SidecarFactory, hub_config, sink_table


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=800, seed=5) as partner:
        yield partner


def test_a_scheduled_stream_is_pulled_and_forwarded_to_the_consumer(
    start_sidecar: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox, consumer: ConsumerServer
) -> None:
    config = hub_config(
        tmp_path,
        adapters={"transit_card": sandbox.settings(client_secret={"env": "TRANSIT_SECRET"}, page_size=200)},
        environ={"TRANSIT_SECRET": sandbox.client_secret},
        server={"schedules": {"transit_card": {"interval": "200ms", "jitter": 0.2}}},
        sinks=sink_table(consumer),
    )
    server = start_sidecar(config)
    expected = sandbox.dataset.expected()["records"]
    wait_until(lambda: consumer.stats()["unique"] == expected, timeout=30, what="every record at the consumer")
    sandbox.publish()  # nothing new: later runs find nothing and forward nothing twice
    runs = wait_until(
        lambda: server.sidecar.scheduler.runs[("transit_card", "transactions")].last_summary, what="a finished run"
    )
    assert runs.error is None
    assert consumer.stats()["duplicates"] == 0


def test_a_partner_that_is_down_backs_off_and_shows_its_last_error(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: connections are refused
        config = hub_config(
            tmp_path,
            adapters={
                "transit_card": {
                    "base_url": url,
                    "client_id": "anhui-hub",
                    "client_secret": {"env": "TRANSIT_SECRET"},
                    "retry_attempts": 1,
                }
            },
            environ={"TRANSIT_SECRET": "s3cret-transit"},
            server={"schedules": {"transit_card": {"interval": "50ms", "jitter": 0, "max_backoff": "400ms"}}},
        )
        server = start_sidecar(config)
        run = server.sidecar.scheduler.runs[("transit_card", "transactions")]
        wait_until(lambda: run.failures >= 3, timeout=10, what="three failed runs")
        (status,) = [
            s for s in server.admin("GET", "/v1/admin/streams").json()["streams"] if s["stream"] == "transactions"
        ]
        assert status["consecutive_failures"] >= 3
        assert "token endpoint" in status["last_error"] or "connection" in status["last_error"]


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    scheduler = Scheduler.__new__(Scheduler)
    scheduler._rng = random.Random(1)
    schedule = Schedule(interval=60.0, jitter=0.0, max_backoff=300.0)
    delays = [scheduler._delay(schedule, failures) for failures in range(6)]
    assert delays == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]


def test_jitter_spreads_runs_within_the_fraction() -> None:
    scheduler = Scheduler.__new__(Scheduler)
    scheduler._rng = random.Random(7)
    schedule = Schedule(interval=100.0, jitter=0.1)
    delays = [scheduler._delay(schedule, 0) for _ in range(200)]
    assert min(delays) >= 90.0 and max(delays) <= 110.0 and len(set(delays)) > 100


def test_schedules_name_configured_pull_streams_only(tmp_path: Path) -> None:
    from tanpuhui.hub.server import Sidecar

    from .conftest import plugins

    bad = hub_config(tmp_path, server={"schedules": {"bike_share": {"rides": {"interval": "1m"}}}})
    with pytest.raises(ConfigError, match=r"has no pull stream 'rides'"):
        Sidecar(bad, plugins=plugins())
    unknown = hub_config(tmp_path, server={"schedules": {"water": {"interval": "1m"}}})
    with pytest.raises(ConfigError, match=r"adapter 'water' is not configured"):
        Sidecar(unknown, plugins=plugins())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"transit_card": {"interval": "soon"}}, "not a duration"),
        ({"transit_card": {"jitter": 0.1}}, "interval is required"),
        ({"transit_card": {"interval": "5m", "every": 3}}, "unknown key"),
        ({"transit_card": {"interval": 0}}, "greater than 0"),
    ],
)
def test_bad_schedules_are_config_errors_naming_the_key(tmp_path: Path, table: dict[str, object], message: str) -> None:
    config = hub_config(tmp_path, server={"schedules": table})
    with pytest.raises(ConfigError, match=message):
        ServerSettings.from_config(config)


def test_durations_take_units() -> None:
    settings = ServerSettings.model_validate(
        {"shutdown_timeout": "1500ms", "forward_idle": "2m", "receipt_retention": "7d", "forward_linger": 0.5}
    )
    assert (settings.shutdown_timeout, settings.forward_idle, settings.receipt_retention) == (1.5, 120.0, 604800.0)
    assert settings.forward_linger == 0.5


def test_stopping_interrupts_a_retry_wait() -> None:
    import asyncio

    from tanpuhui.hub.scheduler import ShutdownRequested

    async def body() -> float:
        stopping = Stopping()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, stopping.set)
        started = loop.time()
        with pytest.raises(ShutdownRequested):
            await stopping.sleep(30)
        return loop.time() - started

    assert asyncio.run(body()) < 1.0


def test_the_sidecar_forgets_runs_older_than_run_retention_but_each_streams_newest(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    """``[server] run_retention`` end to end: three real pulls, their runs aged 40 days, 3 days and none; a sidecar
    started with the default (30d) forgets the first only, one started with 1d the second too; another stream's only
    run, 5 days old, stays (a stream's newest run is always kept)."""
    with TransitSandbox(trips=100, seed=3) as partner:
        tables: dict[str, Any] = {
            "adapters": {"transit_card": partner.settings(client_secret={"env": "TRANSIT_SECRET"}, page_size=50)},
            "environ": {"TRANSIT_SECRET": partner.client_secret},
        }
        first = start_sidecar(hub_config(tmp_path, **tables))
        for _ in range(3):
            pulled = first.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true")
            assert pulled.status_code == 200, pulled.text
        store = first.sidecar.hub.store
        assert isinstance(store, RunLog)
        other = store.run_begin("state_grid", "readings", "cron")  # another stream's only run, kept however old
        store.run_end(other, "ok", None, 0.3)
        oldest, older, newest = sorted(r.id for r in store.runs("transit_card", "transactions"))
        first.stop()
    now = datetime.now(UTC)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        for run_id, age in ((oldest, timedelta(days=40)), (older, timedelta(days=3)), (other, timedelta(days=5))):
            started = (now - age).isoformat(timespec="milliseconds")
            db.execute("UPDATE runs SET started_at = ?, finished_at = ? WHERE id = ?", (started, started, run_id))
    db.close()

    def kept(running: RunningSidecar) -> set[int]:
        log = running.sidecar.hub.store
        assert isinstance(log, RunLog)
        return {r.id for r in log.runs()}

    default = start_sidecar(hub_config(tmp_path, **tables))  # run_retention 30d: only the 40-day-old run goes
    wait_until(lambda: oldest not in kept(default), what="the 40-day-old run forgotten")
    assert kept(default) == {older, newest, other}
    default.stop()
    one_day = start_sidecar(hub_config(tmp_path, server={"run_retention": "1d"}, **tables))
    wait_until(lambda: older not in kept(one_day), what="the 3-day-old run forgotten (run_retention 1d)")
    assert kept(one_day) == {newest, other}


def test_a_scheduled_pull_of_a_stream_whose_split_changed_is_refused_with_the_way_on_and_no_traceback(
    start_sidecar: SidecarFactory,
    tmp_path: Path,
    sandbox: TransitSandbox,
    consumer: ConsumerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tanpuhui.hub.store.base import Checkpoint, PageWrite
    from tanpuhui.hub.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "hub.db")  # the feed was read unsplit up to its page 5
    try:
        store.commit_pages([PageWrite("transit_card", "transactions", [], [], Checkpoint({"page": 5}))])
    finally:
        store.close()
    config = hub_config(
        tmp_path,
        adapters={
            "transit_card": sandbox.settings(
                client_secret={"env": "TRANSIT_SECRET"}, page_size=200, partitions={"transactions": 2}
            )
        },
        environ={"TRANSIT_SECRET": sandbox.client_secret},
        server={"schedules": {"transit_card": {"interval": "100ms", "jitter": 0}}},
        sinks=sink_table(consumer),
    )
    server = start_sidecar(config)
    run = server.sidecar.scheduler.runs[("transit_card", "transactions_1of2")]
    summary = wait_until(lambda: run.last_summary, timeout=10, what="a refused run")
    assert summary.error is not None and summary.pages == 0
    assert "transit_card:transactions is configured in 2 parts" in summary.error
    assert "tanpuhui repartition --config test hub.toml transit_card:transactions" in summary.error
    refused = [r for r in caplog.records if r.name == "tanpuhui.scheduler" and "refused" in r.getMessage()]
    assert refused and all(r.exc_info is None for r in refused)
    assert server.sidecar.hub.store.counts()["outbox"] == 0
    assert consumer.stats()["unique"] == 0
