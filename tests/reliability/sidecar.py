"""The sidecar for the reliability tests: a YRD push stream, the admin API, a small body limit; in a thread."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tanpuhui.adapters.yrd_scenarios.sandbox import BAD_KINDS as YRD_BAD_KINDS
from tanpuhui.adapters.yrd_scenarios.sandbox import WITHDRAWN_KINDS, Dataset, sandbox_recognition
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.server import Sidecar
from tanpuhui.hub.server.run import uvicorn_config
from tanpuhui.sdk import WebhookSigner

from .conftest import KEYS

__all__ = ["ADMIN_TOKEN", "ENVIRON", "ITEMS", "MAX_BODY", "PUSH_SECRET", "WEBHOOK", "Running", "hub_document", "signed"]

PUSH_SECRET = "whsec_" + base64.b64encode(b"tanpuhui-hostile-input-push-key!!").decode()
ADMIN_TOKEN = "adm-hostile-input-0123456789abcdef"
MAX_BODY = 64 * 1024
WEBHOOK = "/v1/webhooks/yrd_scenarios/records_push"
ENVIRON = {"TEST_KEYS": KEYS, "TEST_PUSH_SECRET": PUSH_SECRET, "TEST_ADMIN_TOKEN": ADMIN_TOKEN}
ITEMS = Dataset(60, 9, bad={k: 0 for k in YRD_BAD_KINDS}, withdrawn={k: 0 for k in WITHDRAWN_KINDS}).items


def hub_document(store: str) -> dict[str, Any]:
    return {
        "hub": {"store": store, "pseudonym_keys": {"env": "TEST_KEYS"}},
        "adapters": {"yrd_scenarios": {**sandbox_recognition(), "webhook_secrets": [{"env": "TEST_PUSH_SECRET"}]}},
        "server": {
            "admin_token": {"env": "TEST_ADMIN_TOKEN"},
            "max_body_bytes": MAX_BODY,
            "forward": False,
            "access_log": False,
            "log_level": "error",
        },
    }


class Running:
    """The sidecar on a loopback port, in a thread (lifespan included)."""

    def __init__(self, tmp: Path) -> None:
        config = HubConfig.from_dict(hub_document(str(tmp / "hub.db")), source="reliability hub.toml", environ=ENVIRON)
        self.sidecar = Sidecar(config)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn_config(self.sidecar, "127.0.0.1", sock.getsockname()[1]))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "sidecar did not start"
            time.sleep(0.005)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def push(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(WEBHOOK, content=body, headers={"content-type": "application/json", **headers})

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(30)


def signed(body: bytes, msg_id: str, secret: str = PUSH_SECRET, timestamp: int | None = None) -> dict[str, str]:
    return WebhookSigner(secret).headers(msg_id, body, timestamp)
