"""The console of a real `tanpuhui serve --workers 2`: each worker shows what the other did and saw.

Both workers share one SQLite file, or one PostgreSQL database (as replicas on several hosts would). One of them drains the sinks; a consumer that refuses connections makes the
platform sink retry there, and the console, ``/readyz`` and ``tanpuhui status`` of either worker (and of a CLI
process beside them) show it retrying with its last error. A stream and a sink paused through one worker's console
show paused on the other's, and ``tanpuhui pull`` of the paused stream says so with its own exit status.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from store.pg import temporary_database, temporary_schema

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.testing.loopback import free_port, wait_until

from .conftest import ADMIN_TOKEN
from .console_kit import CONSOLE, csrf_of
from .serving import EXE, serve_process, transit_env, transit_hub_toml
from .test_workers import _children


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """One SQLite file, or one PostgreSQL database (a schema of a database made for the test, migrated)."""
    if request.param == "sqlite":
        yield "hub.db"
        return
    with temporary_database() as database, temporary_schema(database) as dsn:
        PostgresStore(dsn, migrate=True).close()
        yield dsn


@pytest.fixture
def serving(tmp_path: Path, store_url: str) -> Iterator[tuple[int, set[int], Path, dict[str, str]]]:
    with TransitSandbox(trips=300, seed=5) as sandbox:
        config = transit_hub_toml(
            tmp_path,
            sandbox,
            f"http://127.0.0.1:{free_port()}/carbon/records",  # nothing listens: every try is refused, so it retries
            shutdown_timeout="3s",
            store=store_url,
            sinks={"archive": {"type": "jsonl", "path": str(tmp_path / "archive.jsonl")}},
            forwarder={"initial_backoff": "200ms", "max_backoff": "1s"},
            page_size=100,
        )
        env = transit_env(sandbox)
        log = tmp_path / "serve.log"
        with serve_process(config, log, env, "--workers", "2", cwd=tmp_path) as (proc, port):
            workers = wait_until(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 30, "two workers")
            yield port, workers, config, env
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]


class Worker:
    """Requests that land on one chosen worker: a new connection each try until that worker answers (the kernel
    spreads connections over the workers), told by the pid the console shows in every page's footer."""

    def __init__(self, port: int, pid: int, cookie: str) -> None:
        self.port, self.pid, self.cookie = port, pid, cookie

    def _on_me(self, send: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        for _ in range(200):
            with httpx.Client(
                base_url=f"http://127.0.0.1:{self.port}", cookies={"tanpuhui_console": self.cookie}, timeout=20
            ) as client:
                answer = send(client)
                served = re.search(r'id="served-by">served by process (\d+)<', answer.text)
                if served and int(served.group(1)) == self.pid:
                    return answer
        raise AssertionError(f"worker {self.pid} never answered")

    def get(self, path: str) -> str:
        answer = self._on_me(lambda c: c.get(f"{CONSOLE}{path}"))
        assert answer.status_code == 200, answer.text
        return answer.text

    def post(self, path: str, form: dict[str, str]) -> str:
        """Post a console form here, and return the page it redirects to (as this worker renders it)."""
        csrf = csrf_of(self.get("/"))

        def send(c: httpx.Client) -> httpx.Response:
            answer = c.post(f"{CONSOLE}{path}", data={"csrf": csrf, **form})
            assert answer.status_code == 303, answer.text
            return c.get(answer.headers["location"])

        return self._on_me(send).text


def _row(page: str, attribute: str, name: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert match, f"no row {name} in the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1)))


def _sign_in(port: int) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        answer = client.post(f"{CONSOLE}/signin", data={"token": ADMIN_TOKEN, "next": f"{CONSOLE}/"})
        assert answer.status_code == 303, answer.text
        return answer.cookies["tanpuhui_console"]


def _ready_sinks(port: int) -> dict[int, dict[str, object]]:
    """Each worker's /readyz sink checks, by pid (a new connection each time: the kernel picks the worker; both
    requests of a time go on one connection, so to one worker)."""
    seen: dict[int, dict[str, object]] = {}
    for _ in range(40):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            pid = int(client.get("/healthz").json()["pid"])
            if pid not in seen:
                answer = client.get("/readyz")
                body = orjson.loads(answer.content)
                seen[pid] = {"status": answer.status_code, **body["checks"]["sinks"]}
    return seen


def _metrics(port: int) -> dict[int, str]:
    """Each worker's /metrics, by pid (a new connection each time: the kernel picks the worker)."""
    seen: dict[int, str] = {}
    for _ in range(40):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            pid = int(client.get("/healthz").json()["pid"])
            if pid not in seen:
                seen[pid] = client.get("/metrics").text
    return seen


def test_both_workers_show_a_failing_sink_and_what_the_other_paused(
    serving: tuple[int, set[int], Path, dict[str, str]], tmp_path: Path
) -> None:
    port, pids, config, env = serving
    cookie = _sign_in(port)
    one, other = (Worker(port, pid, cookie) for pid in sorted(pids))

    # The pull at start-up committed the trips; the platform sink fails on them in whichever worker drains it.
    stream = "transit_card:transactions"
    wait_until(lambda: " ok " in _row(one.get("/"), "data-stream", stream), 60, "the first pull to end")
    for worker in (one, other):
        wait_until(lambda w=worker: "retrying" in _row(w.get("/"), "data-sink", "platform"), 60, "platform retrying")
        row = _row(worker.get("/"), "data-sink", "platform")
        assert "Connect" in row or "refused" in row, row  # the last error, from the store
        sinks_page = worker.get("/sinks")
        assert "failed attempt(s)" in sinks_page and 'data-sink-errors="platform"' in sinks_page
        archive = _row(worker.get("/"), "data-sink", "archive")  # the other sink is delivered, seen by both
        assert " ok " in archive and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", archive), archive

    ready = wait_until(lambda: (r := _ready_sinks(port)) and len(r) == 2 and r, 30, "both workers' /readyz")
    for pid, checks in ready.items():
        assert checks["status"] == 503, (pid, checks)
        platform = checks["platform"]
        assert isinstance(platform, dict) and platform["ok"] is False and platform["state"] == "retrying"

    retrying = 'tanpuhui_sink_state{sink="platform",state="retrying"} 1.0'
    scraped = wait_until(lambda: (m := _metrics(port)) and len(m) == 2 and m, 30, "both workers' /metrics")
    for pid, text in scraped.items():
        assert retrying in text, (pid, [line for line in text.splitlines() if "sink_state" in line])

    status = subprocess.run(
        [str(EXE), "status", "--config", str(config), "--json"], capture_output=True, env=env, cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr.decode()
    sinks = {s["name"]: s for s in orjson.loads(status.stdout)["sinks"]}
    assert sinks["platform"]["state"] == "retrying" and sinks["platform"]["attempts"] >= 1
    assert sinks["platform"]["last_error"]
    assert sinks["archive"]["state"] == "ok" and sinks["archive"]["last_delivery"]

    # Paused through one worker's console, seen paused on the other's.
    answer = one.post("/streams/transit_card/transactions/pause", {})
    assert "paused: no scheduled or manual pull runs" in answer
    assert "paused" in _row(other.get("/"), "data-stream", stream)
    answer = other.post("/sinks/archive/pause", {})
    assert "archive paused" in answer
    assert "paused" in _row(one.get("/sinks"), "data-sink", "archive")

    # A CLI pull of the paused stream says it is paused, by whom and how to resume, with its own exit status.
    pulled = subprocess.run(
        [str(EXE), "pull", "--config", str(config), "transit_card:transactions"],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    said = pulled.stdout.decode() + pulled.stderr.decode()
    assert pulled.returncode == 4, said
    assert "transit_card:transactions is paused since" in said and "paused by console@127.0.0.1" in said, said
    assert "tanpuhui resume --config hub.toml transit_card:transactions" in said, said
    assert "/console/streams/transit_card/transactions" in said
    assert "another process holds its lease" not in said

    resumed = subprocess.run(
        [str(EXE), "resume", "--config", str(config), "transit_card:transactions"],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0 and "transit_card:transactions resumed" in resumed.stdout.decode()
    for worker in (one, other):
        assert "paused" not in _row(worker.get("/"), "data-stream", stream)
    other.post("/sinks/archive/resume", {})
    assert "paused" not in _row(one.get("/sinks"), "data-sink", "archive")
