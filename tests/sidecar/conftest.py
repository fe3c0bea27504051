"""Fixtures for the sidecar: the real server (uvicorn on a loopback port, in a thread), a real consumer, and a
shared-bike operator that pushes signed rides (a test plugin with a push stream)."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from bike_share import BIKE, BikeShareAdapter, ride_record
from bike_share import MOBILE as MOBILE  # re-exported: the sidecar tests import them from here
from bike_share import ride as ride
from pydantic import Field

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.plugins import Plugins, load_plugins
from tanpuhui.hub.server import Sidecar
from tanpuhui.hub.server.run import uvicorn_config
from tanpuhui.sdk import (
    AdapterPlugin,
    AdapterSettings,
    ItemRejected,
    PushStream,
    StreamContext,
    WebhookSigner,
)

PSEUDONYM_KEYS = "v1:" + base64.b64encode(b"sidecar-test-pseudonym-key-32byt").decode()
PUSH_SECRET = "whsec_" + base64.b64encode(b"bike-share-push-secret-2024-11!").decode()
OLD_PUSH_SECRET = "whsec_" + base64.b64encode(b"bike-share-push-secret-2024-05!").decode()
CONSUMER_SECRET = "whsec_" + base64.b64encode(b"carbon-account-platform-secret!!").decode()
ADMIN_TOKEN = "adm-7f3c9e1b2d4a6f8e0c1b3d5f7a9e2c4b"
RESIDENT_ID = "34052419800101001X"


class BikeSettings(AdapterSettings):
    webhook_secrets: list[str] = Field(default_factory=list)


class RidesPush(PushStream):
    name = "rides"
    schema = "bike-ride"
    id_field = "ride_id"
    description = "Finished rides, pushed by the operator"

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        if item.get("note") == "boom":
            raise ValueError(f"cannot read subject {item['mobile']} / {RESIDENT_ID}")
        if item["km"] > 50:
            raise ItemRejected(f"{item['km']} km is not a plausible bike ride (max 50)", "/km")
        yield ride_record(item, ctx)


class BikeShare(BikeShareAdapter):
    Settings = BikeSettings
    stream_types = (RidesPush,)


def plugins() -> Plugins:
    """Built-ins, installed entry points (transit_card) and the bike-share test plugin."""
    return load_plugins([AdapterPlugin(BikeShare, methodologies=(BIKE,))])


def signed(body: bytes, msg_id: str, secret: str = PUSH_SECRET, timestamp: int | None = None) -> dict[str, str]:
    headers = WebhookSigner(secret).headers(msg_id, body, timestamp)
    headers["content-type"] = "application/json"
    return headers


class RunningSidecar:
    """A :class:`Sidecar` served by uvicorn on a loopback port in a background thread (lifespan included)."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(sidecar, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sidecar did not start")
            time.sleep(0.005)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def post_ride(self, items: Any, msg_id: str, **kwargs: Any) -> httpx.Response:
        body = orjson.dumps(items)
        return self.http.post("/v1/webhooks/bike_share/rides", content=body, headers=signed(body, msg_id, **kwargs))

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "sidecar did not stop"


ENVIRON = {
    "TEST_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
    "TEST_PUSH_SECRET": PUSH_SECRET,
    "TEST_OLD_PUSH_SECRET": OLD_PUSH_SECRET,
    "TEST_CONSUMER_SECRET": CONSUMER_SECRET,
    "TEST_ADMIN_TOKEN": ADMIN_TOKEN,
}


def hub_config(tmp_path: Path, *, server: dict[str, Any] | None = None, **tables: Any) -> HubConfig:
    """A config with the bike-share push stream (two secrets: rotation), the admin token, and ``tables``."""
    environ = {**ENVIRON, **tables.pop("environ", {})}
    adapters = {
        "bike_share": {"webhook_secrets": [{"env": "TEST_PUSH_SECRET"}, {"env": "TEST_OLD_PUSH_SECRET"}]},
        **tables.pop("adapters", {}),
    }
    doc = {
        "hub": {"store": str(tmp_path / "hub.db"), "pseudonym_keys": {"env": "TEST_PSEUDONYM_KEYS"}},
        "adapters": adapters,
        "server": {"admin_token": {"env": "TEST_ADMIN_TOKEN"}, "forward_idle": 0.2, **(server or {})},
        **tables,
    }
    return HubConfig.from_dict(doc, source="test hub.toml", environ=environ)


SidecarFactory = Callable[..., RunningSidecar]


@pytest.fixture
def consumer() -> Iterator[ConsumerServer]:
    with ConsumerServer(CONSUMER_SECRET) as server:
        yield server


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[SidecarFactory]:
    running: list[RunningSidecar] = []

    def start(config: HubConfig | None = None, **kwargs: Any) -> RunningSidecar:
        sidecar = Sidecar(config or hub_config(tmp_path, **kwargs), plugins=plugins())
        server = RunningSidecar(sidecar)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def sink_table(consumer: ConsumerServer) -> dict[str, Any]:
    return {"platform": {"type": "http", "url": consumer.url, "secret": {"env": "TEST_CONSUMER_SECRET"}}}


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright for Python (the console's browser tests); skipped where it
    is not installed, except in CI."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()
