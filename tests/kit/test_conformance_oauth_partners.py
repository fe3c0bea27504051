"""The adapters of the OAuth partners pass the conformance suite, replaying cassettes recorded from their sandboxes:
the transit card (TransitSandbox), State Grid readings (StateGridSandbox) and YRD records (YrdSandbox).

Re-record one: ``.venv/bin/pytest tests/kit/test_conformance_oauth_partners.py -k TestTransitCard --tanpuhui-record``.
"""

from __future__ import annotations

from typing import Any

from tanpuhui.adapters.state_grid import StateGridAdapter
from tanpuhui.adapters.state_grid import plugin as state_grid_plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.adapters.transit_card import TransitCardAdapter
from tanpuhui.adapters.transit_card import plugin as transit_plugin
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter
from tanpuhui.adapters.yrd_scenarios import plugin as yrd_plugin
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox, sandbox_recognition
from tanpuhui.testing.conformance import LivePartner

from .sandbox_conformance import CASSETTES, FAST_RETRIES, SandboxConformance


class TestTransitCardConformance(SandboxConformance):
    plugin = transit_plugin
    adapter = TransitCardAdapter
    stream = "transactions"
    page_path = "/v1/transactions"
    base_url = "https://transit.sandbox.example"
    cassette_dir = CASSETTES / "transit_card"
    page_size = 5

    def open_sandbox(self) -> TransitSandbox:
        # 8 journeys (metro ones are two taps), some with account mobiles: three pages of five.
        return TransitSandbox(trips=8, seed=21, bad={}, mobile_share=0.5)


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


class TestYrdRecordsConformance(SandboxConformance):
    plugin = yrd_plugin
    adapter = YrdScenariosAdapter
    stream = "records"
    page_path = "/v1/records"
    base_url = "https://yrd-exchange.sandbox.example"
    cassette_dir = CASSETTES / "yrd_scenarios"

    replay_client_id = "anhui-tanpuhui-sandbox"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        endpoint = {**self.oauth(base_url, partner), "platforms": ["shanghai", "zhejiang", "jiangsu"]}
        return {"endpoints": {"exchange": endpoint}, **sandbox_recognition(), "page_size": 5, **FAST_RETRIES}

    def open_sandbox(self) -> YrdSandbox:
        # Twelve records of Anhui residents (mobiles and resident IDs), in three pages of five.
        return YrdSandbox(records=12, seed=7, bad={}, withdrawn={})
