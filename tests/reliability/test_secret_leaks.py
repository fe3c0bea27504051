"""No configured secret leaves the hub, even when a partner echoes it back (issue: a token endpoint that quoted
the refused credentials put the client secret in `tanpuhui pull`'s output, in admin answers and in the store).

The partner here is a real loopback token endpoint that writes the client secret it was sent into its
``error_description``; the hub runs for real: the CLI in a subprocess (``pull``, then ``status`` as a table and as
JSON), the sidecar's admin API and console pages, on the SQLite store and on PostgreSQL (every row of both read back).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from store.pg import temporary_database, temporary_schema

from tanpuhui.hub.config import load_config
from tanpuhui.hub.server import Sidecar
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.testing.loopback import LoopbackServer

from .conftest import KEYS

CLIENT_SECRET = "tph-transit-client-secret-9f8e7d6c5b4a"
ADMIN_TOKEN = "adm-secret-leak-test-0123456789abcdef"
SECRETS = (CLIENT_SECRET, ADMIN_TOKEN, KEYS.partition(":")[2])


class EchoingTokenEndpoint(LoopbackServer):
    """An OAuth2 token endpoint that refuses every client and quotes its credentials back (a partner bug)."""

    server_name = "echoing token endpoint"

    def asgi_app(self) -> Any:
        async def token(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            basic = request.headers.get("authorization", "").removeprefix("Basic ")
            sent = base64.b64decode(basic).decode() if basic else f"{form.get('client_id')}:{form.get('client_secret')}"
            description = f"client credentials {sent} are not registered (secret {sent.partition(':')[2]})"
            return JSONResponse({"error": "invalid_client", "error_description": description}, status_code=401)

        return Starlette(routes=[Route("/oauth/token", token, methods=["POST"])])


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The hub's store: a SQLite file, or a migrated schema in a database of its own on the loopback PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "hub.db")
        return
    with temporary_database() as database, temporary_schema(database) as dsn:
        PostgresStore(dsn, migrate=True).close()
        yield dsn


@pytest.fixture
def hub_toml(tmp_path: Path, store_url: str) -> Any:
    with EchoingTokenEndpoint() as partner:
        path = tmp_path / "hub.toml"
        path.write_text(
            f"""
[hub]
store = "{store_url}"
pseudonym_keys = {{ env = "LEAK_TEST_KEYS" }}

[adapters.transit_card]
base_url = "{partner.url}"
client_id = "anhui-carbon-hub"
client_secret = {{ env = "LEAK_TEST_CLIENT_SECRET" }}
retry_attempts = 1

[server]
admin_token = {{ env = "LEAK_TEST_ADMIN_TOKEN" }}
""",
            encoding="utf-8",
        )
        yield path


ENV = {"LEAK_TEST_KEYS": KEYS, "LEAK_TEST_CLIENT_SECRET": CLIENT_SECRET, "LEAK_TEST_ADMIN_TOKEN": ADMIN_TOKEN}


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a configured secret: {text[:2000]}"


def assert_stored_scrubbed(url: str) -> None:
    """The store keeps the partner's answer (the run's error), scrubbed, and no secret in any row."""
    text = store_text(url)
    assert "invalid_client" in text and "[secret]" in text, "the store holds no trace of the refused pull"
    assert_no_secret("the store", text)


def store_text(url: str) -> str:
    """Every row of every table of the store (SQLite or PostgreSQL), as text."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url) as pg:
            listed = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            tables = [r[0] for r in pg.execute(listed)]
            rows = [row for table in tables for row in pg.execute(f'SELECT * FROM "{table}"')]
    else:
        with sqlite3.connect(url) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = [row for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')]
    assert "runs" in tables and "checkpoints" in tables, tables
    return "\n".join(
        bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v) for r in rows for v in r
    )


def tanpuhui(*args: str) -> str:
    """The CLI's output (stdout and stderr) in a subprocess, with the secrets in its environment."""
    cli = Path(sys.executable).with_name("tanpuhui")
    result = subprocess.run(
        [str(cli), *args], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120, check=False
    )
    return result.stdout + result.stderr


def test_the_cli_pull_and_status_output_and_the_store_hold_no_secret_the_partner_echoed(
    hub_toml: Path, store_url: str
) -> None:
    output = tanpuhui("pull", "transit_card", "--config", str(hub_toml))
    assert "invalid_client" in output and "[secret]" in output, output  # the partner's answer is shown, scrubbed
    assert_no_secret("tanpuhui pull", output)
    table = tanpuhui("status", "--config", str(hub_toml))
    assert "transit_card" in table and "[secret]" in table, table  # the error shown, scrubbed (not eaten as markup)
    assert_no_secret("tanpuhui status", table)
    as_json = tanpuhui("status", "--config", str(hub_toml), "--json")
    assert "invalid_client" in as_json and "[secret]" in as_json, as_json  # the last run's error, scrubbed
    assert_no_secret("tanpuhui status --json", as_json)
    assert_stored_scrubbed(store_url)


CONSOLE_PAGES = ["/", "/streams/transit_card/transactions", "/quarantine", "/dead-letters", "/sinks", "/audit"]


def test_admin_answers_console_pages_and_the_store_hold_no_secret_the_partner_echoed(
    hub_toml: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sidecar = Sidecar(load_config(hub_toml))

    async def scenario() -> list[tuple[str, str]]:
        await sidecar.startup()
        answers = []
        try:
            transport = httpx.ASGITransport(app=sidecar.app)
            headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://sidecar", headers=headers) as http:
                for method, path in [
                    ("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=1"),
                    ("GET", "/v1/admin/streams"),
                    ("GET", "/readyz"),
                    ("GET", "/metrics"),
                    ("GET", "/v1/admin/quarantine"),
                    ("GET", "/v1/admin/overview"),
                ]:
                    response = await http.request(method, path)
                    answers.append((f"{method} {path}", response.text))
            async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as console:
                signin = await console.post("/console/signin", data={"token": ADMIN_TOKEN, "next": "/console/"})
                answers.append(("POST /console/signin", signin.text + str(signin.headers)))
                for page in CONSOLE_PAGES:
                    response = await console.get(f"/console{page}")
                    assert response.status_code == 200, (page, response.status_code)
                    answers.append((f"console {page}", response.text))
        finally:
            await sidecar.shutdown()
        return answers

    answers = asyncio.run(scenario())
    pulled = orjson.loads(answers[0][1])
    assert "invalid_client" in pulled["summary"]["error"]
    streams = orjson.loads(answers[1][1])["streams"]
    assert any(s["last_error"] and "[secret]" in s["last_error"] for s in streams)
    shown = dict(answers)
    for where in ("GET /v1/admin/overview", "console /", "console /streams/transit_card/transactions"):
        assert "invalid_client" in shown[where] and "[secret]" in shown[where], where  # the error is shown, scrubbed
    for where, text in answers:
        assert_no_secret(where, text)
    assert_stored_scrubbed(store_url)
