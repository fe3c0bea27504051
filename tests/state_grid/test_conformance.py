"""The SDK's adapter conformance suite, run for the readings pull stream (cassettes recorded from the sandbox).

Re-record with ``.venv/bin/pytest tests/state_grid/test_conformance.py --tanpuhui-record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from tanpuhui.adapters.state_grid import StateGridAdapter, plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.testing.conformance import AdapterConformance, LivePartner


class TestReadingsConformance(AdapterConformance):
    plugin = plugin
    adapter = StateGridAdapter
    stream = "readings"
    page_path = "/api/v1/readings/daily"
    cassette_dir = Path(__file__).parent.parent / "cassettes" / "state_grid" / "conformance"
    base_url = "https://sgcc-sandbox.example"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        secret = partner.handle.client_secret if partner is not None else "replayed-secret"
        return {
            "base_url": base_url,
            "client_id": "tanpuhui-sandbox",
            "client_secret": secret,
            "page_size": 8,
            "retry_attempts": 3,
        }

    def sandbox(self) -> AbstractContextManager[LivePartner | None]:
        @contextmanager
        def live() -> Iterator[LivePartner]:
            # 3 households x 9 days: 27 readings in 4 pages, enough days for a baseline and a few credited days
            with StateGridSandbox(households=3, days=9, seed=31, faults={}, dr_bad=0) as sb:
                yield LivePartner(sb.url, handle=sb)

        return live()
