"""The State Grid adapter's readings pull passes the conformance suite (cassettes recorded from StateGridSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_state_grid.py --tanpuhui-record``.
"""

from __future__ import annotations

from tanpuhui.adapters.state_grid import StateGridAdapter
from tanpuhui.adapters.state_grid import plugin as state_grid_plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox

from .sandbox_conformance import CASSETTES, SandboxConformance


class TestStateGridReadingsConformance(SandboxConformance):
    plugin = state_grid_plugin
    adapter = StateGridAdapter
    stream = "readings"
    page_path = "/api/v1/readings/daily"
    base_url = "https://sgcc-ah.sandbox.example"
    cassette_dir = CASSETTES / "state_grid"
    page_size = 8

    def open_sandbox(self) -> StateGridSandbox:
        # Three households over ten days: 30 readings in four pages; days below a household's baseline credited.
        return StateGridSandbox(households=3, days=10, seed=7, faults={})
