"""The State Grid adapter's readings pull passes the conformance suite (cassettes recorded from StateGridSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_state_grid.py --tanpuhui-record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tanpuhui.adapters.state_grid import StateGridAdapter
from tanpuhui.adapters.state_grid import plugin as state_grid_plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.testing.conformance import AdapterConformance, LivePartner

CASSETTES = Path(__file__).parent / "cassettes"


class TestStateGridReadingsConformance(AdapterConformance):
    plugin = state_grid_plugin
    adapter = StateGridAdapter
    stream = "readings"
    page_path = "/api/v1/readings/daily"
    base_url = "https://sgcc-ah.sandbox.example"
    cassette_dir = CASSETTES / "state_grid"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        sandbox = partner.handle if partner is not None else None
        return {
            "base_url": base_url,
            "client_id": sandbox.client_id if sandbox else "tanpuhui-sandbox",
            "client_secret": sandbox.client_secret if sandbox else "replayed-secret",
            "page_size": 8,
            "retry_attempts": 3,
            "retry_initial_backoff": 0.5,
            "retry_max_backoff": 4.0,
        }

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        # Three households over ten days: 30 readings in four pages; days below a household's baseline credited.
        with StateGridSandbox(households=3, days=10, seed=7, faults={}) as sandbox:
            yield LivePartner(sandbox.url, handle=sandbox)
