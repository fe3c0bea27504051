"""The provincial big-data adapter passes the conformance suite for each of its four datasets.

Cassettes recorded from ProvincialSandbox (signed gateway requests; water usage SM4-sealed). Re-record:
``.venv/bin/pytest tests/kit/test_conformance_provincial_bigdata.py --tanpuhui-record``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tanpuhui.adapters.provincial_bigdata import plugin as provincial_plugin
from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter
from tanpuhui.adapters.provincial_bigdata.sandbox import ProvincialSandbox
from tanpuhui.testing.conformance import LivePartner

from .sandbox_conformance import FAST_RETRIES, SandboxConformance

CASSETTES = Path(__file__).parent / "cassettes" / "provincial_bigdata"
# Fixed keys: replaying a sealed dataset needs the keys it was sealed with (test keys, nobody's real ones).
SM4_KEY = "0123456789abcdeffedcba9876543210"
MAC_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


class ProvincialConformance(SandboxConformance):
    plugin = provincial_plugin
    adapter = ProvincialBigDataAdapter
    base_url = "https://data-ah.sandbox.example"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        sandbox = partner.handle if partner is not None else None
        return {
            "base_url": base_url,
            "app_key": "ak-sandbox-340000",
            "app_secret": sandbox.app_secret if sandbox else "replayed-secret",
            "sm4_key_secret": SM4_KEY,
            "mac_key_secret": MAC_KEY,
            "page_size": 10,
            **FAST_RETRIES,
        }

    def open_sandbox(self) -> ProvincialSandbox:
        options: dict[str, Any] = {"sm4_key": SM4_KEY, "mac_key": MAC_KEY, "bad": {}}
        return ProvincialSandbox(7, days=8, purchases=24, households=3, installations=3, **options)


class TestGreenAppliancesConformance(ProvincialConformance):
    stream = "green_appliances"
    page_path = "/green_appliances/records"
    cassette_dir = CASSETTES / "green_appliances"


class TestWaterUsageConformance(ProvincialConformance):
    stream = "water_usage"
    page_path = "/water_usage/records"
    cassette_dir = CASSETTES / "water_usage"


class TestGasUsageConformance(ProvincialConformance):
    stream = "gas_usage"
    page_path = "/gas_usage/records"
    cassette_dir = CASSETTES / "gas_usage"


class TestRooftopPVConformance(ProvincialConformance):
    stream = "rooftop_pv"
    page_path = "/rooftop_pv/records"
    cassette_dir = CASSETTES / "rooftop_pv"
