"""`tanpuhui serve` as a real process for the sidecar tests: the environment holding its secrets, and the process
started on a free loopback port with its log in a file, never left running after the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.demo import to_toml
from tanpuhui.testing.loopback import free_port

from .conftest import ADMIN_TOKEN, CONSUMER_SECRET, PSEUDONYM_KEYS

EXE = Path(sys.executable).parent / "tanpuhui"


def transit_hub_toml(
    directory: Path,
    sandbox: TransitSandbox,
    consumer_url: str,
    *,
    shutdown_timeout: str,
    store: str = "hub.db",
    sinks: dict[str, Any] | None = None,
    forwarder: dict[str, Any] | None = None,
    **adapter: Any,
) -> Path:
    """``directory/hub.toml`` for serving ``sandbox`` (pulled hourly) to the HTTP sink ``platform`` at
    ``consumer_url``, secrets from :func:`transit_env`. ``sinks``: more sinks; ``adapter``: more
    ``[adapters.transit_card]`` keys."""
    document: dict[str, Any] = {
        "hub": {"store": store, "pseudonym_keys": {"env": "TANPUHUI_PSEUDONYM_KEYS"}},
        "adapters": {
            "transit_card": {
                "base_url": sandbox.url,
                "client_id": sandbox.client_id,
                "client_secret": {"env": "TRANSIT_CLIENT_SECRET"},
                **adapter,
            }
        },
        "sinks": {
            "platform": {"type": "http", "url": consumer_url, "secret": {"env": "PLATFORM_WEBHOOK_SECRET"}},
            **(sinks or {}),
        },
        "forwarder": forwarder or {},
        "server": {
            "admin_token": {"env": "TANPUHUI_ADMIN_TOKEN"},
            "shutdown_timeout": shutdown_timeout,
            "forward_idle": "200ms",
            "schedules": {"transit_card": {"interval": "1h", "jitter": 0.0}},
        },
    }
    path = directory / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


def transit_env(sandbox: TransitSandbox) -> dict[str, str]:
    """This process's environment plus the secrets a hub.toml for ``sandbox`` and the platform sink refers to."""
    return {
        **os.environ,
        "TANPUHUI_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
        "TRANSIT_CLIENT_SECRET": sandbox.client_secret,
        "PLATFORM_WEBHOOK_SECRET": CONSUMER_SECRET,
        "TANPUHUI_ADMIN_TOKEN": ADMIN_TOKEN,
    }


def start_serve(
    config: Path, port: int, log: Path, env: Mapping[str, str], *extra: str, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``tanpuhui serve --config CONFIG --port PORT EXTRA...``, its stderr (the JSON log) written to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(EXE), "serve", "--config", str(config), "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=dict(env),
            cwd=cwd,
        )


@contextmanager
def serve_process(
    config: Path, log: Path, env: Mapping[str, str], *extra: str, cwd: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """:func:`start_serve` on a free port: yields the process and its port; killed on the way out if it still runs."""
    port = free_port()
    proc = start_serve(config, port, log, env, *extra, cwd=cwd)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
