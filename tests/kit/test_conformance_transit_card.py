"""The transit card adapter passes the conformance suite (cassettes recorded from TransitSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_transit_card.py --tanpuhui-record``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tanpuhui.adapters.transit_card import TransitCardAdapter
from tanpuhui.adapters.transit_card import plugin as transit_plugin
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.testing.conformance import LivePartner

from .sandbox_conformance import FAST_RETRIES, SandboxConformance

CASSETTES = Path(__file__).parent / "cassettes"


class TestTransitCardConformance(SandboxConformance):
    plugin = transit_plugin
    adapter = TransitCardAdapter
    stream = "transactions"
    page_path = "/v1/transactions"
    base_url = "https://transit.sandbox.example"
    cassette_dir = CASSETTES / "transit_card"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        return {**self.oauth(base_url, partner), "page_size": 5, **FAST_RETRIES}

    def open_sandbox(self) -> TransitSandbox:
        # 8 journeys (metro ones are two taps), some with account mobiles: three pages of five.
        return TransitSandbox(trips=8, seed=21, bad={}, mobile_share=0.5)
