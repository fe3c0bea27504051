"""The Hefei water adapter passes the tanpuhui conformance suite.

Replays ``tests/cassettes/bills``; ``pytest --tanpuhui-record`` re-records them from the in-process sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hefei_water import plugin
from hefei_water.adapter import HefeiWaterAdapter
from hefei_water.sandbox import WaterSandbox
from tanpuhui.testing.conformance import AdapterConformance, LivePartner


class TestBillsConformance(AdapterConformance):
    plugin = plugin
    adapter = HefeiWaterAdapter
    stream = "bills"
    page_path = "/api/v2/bills"
    base_url = "https://api.hfwater.sandbox.example"
    cassette_dir = Path(__file__).parent / "cassettes" / "bills"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "client_id": "anhui-carbon-hub",
            # The sandbox's secret; HFWATER_CLIENT_SECRET's when recording from a URL; a stand-in when replaying.
            "client_secret": self.secret(partner, "HFWATER_CLIENT_SECRET"),
            "page_size": 5,
            "retry_attempts": 3,
        }

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        partner = WaterSandbox(households=12, seed=7)
        yield LivePartner("http://sandbox.invalid", transport=httpx.ASGITransport(app=partner.app), handle=partner)
