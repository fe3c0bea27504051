"""The hub a process holds: the :class:`~tanpuhui.hub.runtime.Runtime`, its pipeline and a driver for each path.

    hub = Hub(load_config("hub.toml"))
    summaries = await hub.pull("transit_card")              # PullDriver
    outcome = hub.receive("state_grid", "demand_response", headers, body)   # PushDriver: the sidecar's path
    results = await hub.replay_quarantine([12, 13])         # ReplayDriver
    await hub.aclose()

The CLI, the sidecar, the demo and the conformance suite use it; each method is one line into a driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Unpack

from .config import HubConfig
from .drivers.pull import PullDriver
from .drivers.push import PushDriver, PushOutcome
from .drivers.replay import ReplayDriver, ReplayResult
from .pipeline import PageObserver, Pipeline
from .runtime import Runtime, RuntimeOptions

__all__ = ["Hub"]


class Hub(Runtime):
    """A runtime with its pipeline and the pull, push and replay drivers (see the module docstring)."""

    def __init__(
        self, config: HubConfig, *, observers: Iterable[PageObserver] = (), **options: Unpack[RuntimeOptions]
    ) -> None:
        super().__init__(config, **options)
        self.pipeline = Pipeline(self, observers)
        self.pulls = PullDriver(self, self.pipeline)
        self.pushes = PushDriver(self, self.pipeline)
        self.replays = ReplayDriver(self, self.pipeline)
        self.pull = self.pulls.pull
        """Pull one stream (or every pull stream of the adapter) from its saved cursor to the end:
        :meth:`PullDriver.pull`."""

    def receive(self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes) -> PushOutcome:
        """One signed webhook request: verified, processed and committed with its receipt."""
        return self.pushes.receive(adapter_name, stream_name, headers, body)

    async def replay_quarantine(self, ids: Sequence[int], *, release: bool = False) -> list[ReplayResult]:
        """Re-run quarantine entries through the pipeline (``release``: credit plausibility holds anyway)."""
        return await self.replays.replay(ids, release=release)
