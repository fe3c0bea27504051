"""Fixtures for the hub tests: a hub with one test partner of one pull stream (for tests of the pull loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from one_stream import one_stream_hub as _one_stream_hub
from store.conftest import pg_database, pg_dsn

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import PullStream

__all__ = ["one_stream_hub", "pg_database", "pg_dsn", "sandbox"]  # pg_*: a PostgreSQL schema per test (store.pg)

OneStreamHub = Callable[[str, type[PullStream]], Hub]


@pytest.fixture
def one_stream_hub(tmp_path: Path) -> OneStreamHub:
    """``make(adapter_name, stream)``: a hub (SQLite store in ``tmp_path``) whose only adapter has ``stream``; the
    items' schema (``stream.schema``) accepts any object."""
    return lambda adapter_name, stream: _one_stream_hub(tmp_path, adapter_name, stream)


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    """The transit-card sandbox with 300 trips (seed 11)."""
    with TransitSandbox(trips=300, seed=11) as sandbox:
        yield sandbox
