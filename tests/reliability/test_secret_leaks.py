"""No configured secret leaves the hub, even when a partner echoes it back (issue: a token endpoint that quoted
the refused credentials put the client secret in `tanpuhui pull`'s output, in admin answers and in the store).

The partner here is a real loopback token endpoint that writes the client secret it was sent into its
``error_description``; the hub runs for real: the CLI in a subprocess, the sidecar's admin API, the SQLite store.
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
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tanpuhui.hub.config import load_config
from tanpuhui.hub.server import Sidecar
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


@pytest.fixture
def hub_toml(tmp_path: Path) -> Any:
    with EchoingTokenEndpoint() as partner:
        path = tmp_path / "hub.toml"
        path.write_text(
            f"""
[hub]
store = "hub.db"
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


def store_text(path: Path) -> str:
    """Every row of every table of the store, as text."""
    out = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
    return "\n".join(out)


def test_the_cli_pull_output_and_the_store_hold_no_secret_the_partner_echoed(hub_toml: Path) -> None:
    cli = Path(sys.executable).with_name("tanpuhui")
    result = subprocess.run(
        [str(cli), "pull", "transit_card", "--config", str(hub_toml)],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "invalid_client" in output and "[secret]" in output, output  # the partner's answer is shown, scrubbed
    assert_no_secret("tanpuhui pull", output)
    assert_no_secret("the store", store_text(hub_toml.parent / "hub.db"))


def test_admin_answers_and_the_store_hold_no_secret_the_partner_echoed(
    hub_toml: Path, monkeypatch: pytest.MonkeyPatch
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
                ]:
                    response = await http.request(method, path)
                    answers.append((f"{method} {path}", response.text))
        finally:
            await sidecar.shutdown()
        return answers

    answers = asyncio.run(scenario())
    pulled = orjson.loads(answers[0][1])
    assert "invalid_client" in pulled["summary"]["error"]
    streams = orjson.loads(answers[1][1])["streams"]
    assert any(s["last_error"] and "[secret]" in s["last_error"] for s in streams)
    for where, text in answers:
        assert_no_secret(where, text)
    assert_no_secret("the store", store_text(hub_toml.parent / "hub.db"))
