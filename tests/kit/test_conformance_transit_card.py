"""The transit card adapter passes the conformance suite (cassettes recorded from TransitSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_transit_card.py --tanpuhui-record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tanpuhui.adapters.transit_card import TransitCardAdapter
from tanpuhui.adapters.transit_card import plugin as transit_plugin
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.testing.conformance import AdapterConformance, LivePartner

CASSETTES = Path(__file__).parent / "cassettes"


class TestTransitCardConformance(AdapterConformance):
    plugin = transit_plugin
    adapter = TransitCardAdapter
    stream = "transactions"
    page_path = "/v1/transactions"
    base_url = "https://transit.sandbox.example"
    cassette_dir = CASSETTES / "transit_card"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        sandbox = partner.handle if partner is not None else None
        return {
            "base_url": base_url,
            "client_id": sandbox.client_id if sandbox else "tanpuhui-sandbox",
            "client_secret": sandbox.client_secret if sandbox else "replayed-secret",
            "page_size": 5,
            "retry_attempts": 3,
            "retry_initial_backoff": 0.5,
            "retry_max_backoff": 4.0,
        }

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        # 8 journeys (metro ones are two taps), some with account mobiles: three pages of five.
        with TransitSandbox(trips=8, seed=21, bad={}, mobile_share=0.5) as sandbox:
            yield LivePartner(sandbox.url, handle=sandbox)
