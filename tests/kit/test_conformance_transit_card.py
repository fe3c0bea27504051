"""The transit card adapter passes the conformance suite (cassettes recorded from TransitSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_transit_card.py --tanpuhui-record``.
"""

from __future__ import annotations

from tanpuhui.adapters.transit_card import TransitCardAdapter
from tanpuhui.adapters.transit_card import plugin as transit_plugin
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox

from .sandbox_conformance import CASSETTES, SandboxConformance


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
