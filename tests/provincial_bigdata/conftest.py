"""Shared helpers for the provincial big-data adapter tests: settings, a stream context, a hub on a temp store."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tanpuhui.adapters.provincial_bigdata import plugin
from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter, ProvincialBigDataSettings
from tanpuhui.adapters.provincial_bigdata.methodologies import APPLIANCE_METHODOLOGIES
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import HttpOptions, Pseudonymiser, StreamContext
from tanpuhui.testing import SleepRecorder as FakeSleep

from .record_cassettes import APP_KEY, APP_SECRET, BASE_URL, MAC_KEY, SETTINGS, SM4_KEY

__all__ = ["APP_KEY", "APP_SECRET", "BASE_URL", "MAC_KEY", "SM4_KEY"]

CASSETTES = Path(__file__).parent.parent / "cassettes" / "provincial_bigdata"
KEYS = Pseudonymiser.parse("v1:" + base64.b64encode(bytes(range(7, 39))).decode())
METHODOLOGIES = {m.id: m for m in (*BUILTIN_METHODOLOGIES, *APPLIANCE_METHODOLOGIES)}
RECORD = Draft202012Validator(load_builtin("reduction-record"), format_checker=Draft202012Validator.FORMAT_CHECKER)
ENV = {"PBD_APP_SECRET": APP_SECRET, "PBD_SM4_KEY": SM4_KEY, "PBD_MAC_KEY": MAC_KEY}


def make_settings(**overrides: Any) -> ProvincialBigDataSettings:
    return ProvincialBigDataSettings(**{**SETTINGS, **overrides})


def make_adapter(**overrides: Any) -> ProvincialBigDataAdapter:
    return ProvincialBigDataAdapter(make_settings(**overrides))


def make_ctx(stream: str, state: dict[str, Any] | None = None) -> StreamContext:
    return StreamContext(
        adapter="provincial_bigdata",
        adapter_version=ProvincialBigDataAdapter.version,
        stream=stream,
        pseudonymiser=KEYS,
        methodologies=METHODOLOGIES.__getitem__,
        state=state,
    )


def table(**overrides: Any) -> dict[str, Any]:
    """An ``[adapters.provincial_bigdata]`` table as an operator writes it: secrets as environment references."""
    return {
        "base_url": BASE_URL,
        "app_key": APP_KEY,
        "app_secret": {"env": "PBD_APP_SECRET"},
        "sm4_key_secret": {"env": "PBD_SM4_KEY"},
        "mac_key_secret": {"env": "PBD_MAC_KEY"},
        **overrides,
    }


HubFactory = Callable[..., Hub]


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[HubFactory]:
    """Build a Hub on a SQLite store in tmp_path with this adapter loaded (no entry points needed)."""

    hubs: list[Hub] = []

    def make(
        adapter_table: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        sleep: FakeSleep | None = None,
        methodologies: dict[str, Any] | None = None,
    ) -> Hub:
        """``methodologies``: the ``[methodologies]`` table of hub.toml (factor overrides)."""
        config = HubConfig.from_dict(
            {
                "hub": {"store": str(tmp_path / "hub.db")},
                "adapters": {"provincial_bigdata": adapter_table},
                "methodologies": methodologies or {},
            },
            source="test hub.toml",
            environ=env if env is not None else ENV,
        )
        http = HttpOptions(sleep=sleep or FakeSleep())
        hub = Hub(config, plugins=load_plugins([plugin], entry_points=False), pseudonymiser=KEYS, http=http)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.store.close()


def run(hub: Hub, body: Callable[[Hub], Awaitable[Any]]) -> Any:
    """Run ``body``, then close the adapter's HTTP clients in the same event loop (pooled connections belong to
    one loop); the store stays open for assertions and is closed by the fixture."""

    async def go() -> Any:
        try:
            return await body(hub)
        finally:
            await hub.adapter("provincial_bigdata").aclose()

    return asyncio.run(go())


def outbox(hub: Hub) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in hub.store.read_outbox(0, 100_000)]
