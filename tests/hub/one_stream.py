"""What the tests of one test stream share: a hub whose only adapter has that stream, closed when a ``with`` block
ends, and a pull stream whose one page holds the items a test sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import Adapter, AdapterPlugin, AdapterSettings, Page, PullStream, StreamContext

KEYS = "v1:" + "a" * 43 + "="


def one_stream_hub(
    tmp_path: Path, adapter_name: str, stream: type[PullStream], observers: Any = (), **tables: Any
) -> Hub:
    """A hub (SQLite store ``tmp_path/hub.db``) whose only adapter, ``adapter_name``, has ``stream``; the items'
    schema (``stream.schema``) accepts any object. ``tables``: more hub.toml tables (``plausibility=...``)."""
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
            **tables,
        },
        source="hub.toml",
        environ={"TPH_TEST_KEYS": KEYS},
    )
    plugins: Any = load_plugins([AdapterPlugin(partner)], entry_points=False)
    return Hub(config, plugins=plugins, observers=observers)


@contextmanager
def closing_hub(hub: Hub) -> Iterator[Hub]:
    """``hub``, closed when the block ends (however it ends)."""
    try:
        yield hub
    finally:
        asyncio.run(hub.aclose())


class OnePage(PullStream):
    """A pull stream whose one page (cursor ``"end"``) holds ``items``, as a test set them."""

    items: ClassVar[list[Any]] = []

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        if cursor is None:
            yield Page(list(self.items), "end")
