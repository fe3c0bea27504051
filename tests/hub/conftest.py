"""Fixtures for the hub tests: a hub with one test partner of one pull stream (for tests of the pull loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import Adapter, AdapterPlugin, AdapterSettings, PullStream

KEYS = "v1:" + "a" * 43 + "="


OneStreamHub = Callable[[str, type[PullStream]], Hub]


@pytest.fixture
def one_stream_hub(tmp_path: Path) -> OneStreamHub:
    """``make(adapter_name, stream)``: a hub (SQLite store in ``tmp_path``) whose only adapter has ``stream``; the
    items' schema (``stream.schema``) accepts any object."""
    return lambda adapter_name, stream: _one_stream_hub(tmp_path, adapter_name, stream)


def _one_stream_hub(tmp_path: Path, adapter_name: str, stream: type[PullStream]) -> Hub:
    partner = type(
        "TestPartner",
        (Adapter,),
        {
            "name": adapter_name,
            "version": "0.1.0",
            "Settings": AdapterSettings,
            "schemas": {stream.schema: {"type": "object"}},
            "stream_types": (stream,),
        },
    )

    config = HubConfig.from_dict(
        {
            "hub": {"store": str(tmp_path / "hub.db"), "pseudonym_keys": {"env": "TPH_TEST_KEYS"}},
            "adapters": {adapter_name: {}},
        },
        source="test",
        environ={"TPH_TEST_KEYS": KEYS},
    )
    plugins: Any = load_plugins([AdapterPlugin(partner)], entry_points=False)
    return Hub(config, plugins=plugins)


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    """The transit-card sandbox with 300 trips (seed 11)."""
    with TransitSandbox(trips=300, seed=11) as sandbox:
        yield sandbox
