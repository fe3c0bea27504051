"""Fixtures of the reliability tests: a misbehaving sandbox partner, hubs on a temporary store, recorded sleeps."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tanpuhui.adapters.transit_card.sandbox import BAD_KINDS, TransitSandbox
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import HttpOptions

from .partner import FaultyPartner

T = TypeVar("T")
KEYS = "v1:" + base64.b64encode(bytes(range(40, 72))).decode()
NO_BAD_ITEMS = {kind: 0 for kind in BAD_KINDS}


class SleepRecorder:
    """Stands in for ``asyncio.sleep`` in retry loops: records each wait, yields, and does not wait.

    ``on_wait`` (optional) is called with the number of waits so far, after recording: a test moves its fault
    scenario on from there (the consumer comes back after the third retry, ...).
    """

    def __init__(self, on_wait: Callable[[int], None] | None = None) -> None:
        self.waits: list[float] = []
        self.on_wait = on_wait

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.on_wait is not None:
            self.on_wait(len(self.waits))
        await asyncio.sleep(0)


def run(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """One event loop per call: an adapter's connections belong to the loop that opened them."""
    return asyncio.run(body())


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def faulty() -> Iterator[tuple[TransitSandbox, FaultyPartner]]:
    """A sandbox operator with 1,000 clean trips (about 1,600 transactions) behind a :class:`FaultyPartner`."""
    sandbox = TransitSandbox(trips=1000, seed=11, bad=NO_BAD_ITEMS)
    wrapper = FaultyPartner(sandbox.app)
    sandbox.app = wrapper  # served in place of the sandbox's own app
    with sandbox:
        yield sandbox, wrapper


HubFactory = Callable[..., Hub]


@pytest.fixture
def make_hub(tmp_path: Path, sleeps: SleepRecorder) -> HubFactory:
    """Hubs on one store in ``tmp_path`` pulling ``sandbox`` (page size 200, 3 attempts per request)."""

    def make(sandbox: TransitSandbox, **settings: Any) -> Hub:
        config = HubConfig.from_dict(
            {
                "hub": {"store": str(tmp_path / "hub.db"), "pseudonym_keys": {"env": "TEST_KEYS"}},
                "adapters": {
                    "transit_card": {
                        "base_url": sandbox.url,
                        "client_id": sandbox.client_id,
                        "client_secret": {"env": "TEST_TRANSIT_SECRET"},
                        "page_size": 200,
                        "retry_attempts": 3,
                        **settings,
                    }
                },
            },
            source="reliability hub.toml",
            environ={"TEST_KEYS": KEYS, "TEST_TRANSIT_SECRET": sandbox.client_secret},
        )
        return Hub(config, http=HttpOptions(sleep=sleeps))

    return make
